"""Shared fixtures for the buildtasks tests."""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pytest
from support.lab import ROOT, artifacts, lab_registry, registry_reachable, unique_repo

#: What the suite takes from the user's environment: where their lab is. Every other
#: `BUILDTASKS_*` setting (a registry, a signing key, platforms, a cache) is theirs, for their
#: builds; the tests set what they need themselves.
USER_SETTINGS_KEPT = ("BUILDTASKS_LAB_HOME", "BUILDTASKS_LAB_REGISTRY")


def pytest_configure(config) -> None:
    """Isolate the suite from the user's `BUILDTASKS_*` settings, and keep build records and
    reports of test builds out of the repository's .buildtasks/ (and out of the user's).

    The tests scan with their own invented vulnerability DB (`support.vulndb`), which
    `docker.scan` refuses unless told it is a test.
    """
    for name in [n for n in os.environ if n.startswith("BUILDTASKS_")]:
        if name not in USER_SETTINGS_KEPT:
            del os.environ[name]
    os.environ["BUILDTASKS_ARTIFACTS_DIR"] = tempfile.mkdtemp(prefix="buildtasks-tests-")
    os.environ["BUILDTASKS_ALLOW_TEST_DB"] = "1"
    # The images ship linux/amd64 and linux/arm64; a test builds this machine's platform
    # unless it asks for more (test_distribution.py, the workflows under act, and
    # `nox -s image_tests` build both), so the suite stays within its time.
    from buildtasks.platforms import native_platform

    os.environ["BUILDTASKS_PLATFORMS"] = native_platform(os.uname().machine)


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return ROOT


@pytest.fixture(scope="session")
def lab() -> str:
    """The lab registry address; fails (not skips) when the lab is down, since CI brings it up."""
    address = lab_registry()
    if not registry_reachable(address):
        pytest.fail(f"the lab registry {address} is down: run `uv run invoke lab.up` first")
    return address


@dataclass(frozen=True)
class BuiltImage:
    """A backend image built through the docker.build plan and pushed to the lab registry."""

    digest: str
    name: str  # repository in the lab registry, without tag
    tag: str  # the one tag it was pushed under

    @property
    def ref(self) -> str:
        return f"{self.name}@{self.digest}"

    @property
    def local(self) -> str:
        return self.digest


@pytest.fixture(scope="session")
def backend_image(lab, repo_root) -> BuiltImage:
    """The backend image, built once per session through `build_image` and pushed by digest."""
    from buildtasks import config as config_mod
    from buildtasks.build import BuildOptions, build_image
    from buildtasks.runner import Runner

    config = config_mod.load(
        repo_root,
        env={
            "BUILDTASKS_ARTIFACTS_DIR": artifacts(),
            "BUILDTASKS_PLATFORMS": os.environ["BUILDTASKS_PLATFORMS"],
        },
    )
    name = unique_repo(lab, "monorepo")
    runner = Runner()
    outcome = build_image(
        config,
        config.image("backend"),
        # With a provenance attestation: an index (the signing tests sign its platform
        # manifests) whose digest no other test's build of this commit shares.
        BuildOptions(name=name, tags=("itest",), push=True, provenance="mode=min"),
        runner,
        env={},
        now=datetime.now(UTC),
    )
    return BuiltImage(outcome.registry_digest, name, "itest")
