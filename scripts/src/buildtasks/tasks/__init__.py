"""The Invoke namespace: collections are nouns, tasks are verbs."""

from __future__ import annotations

from invoke import Collection

from buildtasks.tasks import docker, lab, lint, secrets

namespace = Collection()
namespace.add_collection(Collection.from_module(docker), name="docker")
namespace.add_collection(Collection.from_module(lab), name="lab")
namespace.add_collection(Collection.from_module(lint), name="lint")
namespace.add_collection(Collection.from_module(secrets), name="secrets")
