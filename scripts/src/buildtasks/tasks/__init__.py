"""The Invoke namespace: collections are nouns, tasks are verbs."""

from __future__ import annotations

from invoke import Collection

from buildtasks.tasks import (
    ci,
    docker,
    docker_distribute,
    docker_retention,
    docker_scan,
    docker_sign,
    lab,
    lint,
    secrets,
    stack,
    tools,
    usage,
)

usage.install()

namespace = Collection()
docker_tasks = Collection.from_module(docker)
for module in (docker_distribute, docker_retention, docker_scan, docker_sign):
    for name, task_object in Collection.from_module(module).tasks.items():
        docker_tasks.add_task(task_object, name=name)
namespace.add_collection(docker_tasks, name="docker")
namespace.add_collection(Collection.from_module(ci), name="ci")
namespace.add_collection(Collection.from_module(lab), name="lab")
namespace.add_collection(Collection.from_module(lint), name="lint")
namespace.add_collection(Collection.from_module(secrets), name="secrets")
namespace.add_collection(Collection.from_module(stack), name="stack")
namespace.add_collection(Collection.from_module(tools), name="tools")
