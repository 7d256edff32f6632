"""Helpers shared by the buildtasks tests: the lab registry, unique names, running invoke."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]


def artifacts() -> str:
    """The artifacts directory of this test session (set by conftest's pytest_configure)."""
    return os.environ["BUILDTASKS_ARTIFACTS_DIR"]


def lab_registry() -> str:
    return os.environ.get("BUILDTASKS_LAB_REGISTRY", "127.0.0.1:5000")


def registry_reachable(address: str) -> bool:
    """Whether a registry answers /v2/ at `address` (the lab's own probe)."""
    from buildtasks.registry import registry_up

    return registry_up(address)


def unique_repo(lab: str, stem: str) -> str:
    """A repository no other test run uses, so tests never see each other's tags."""
    return f"{lab}/itest-{uuid.uuid4().hex[:10]}/{stem}"


def invoke(*args: str, cwd: Path = ROOT, env: dict[str, str] | None = None, timeout: float = 600):
    """Run `invoke ARGS` the way a user does, from the project's environment."""
    full_env = {**os.environ, **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "invoke", "--search-root", str(ROOT), *args],
        cwd=cwd,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


#: The image stores the lab runs an engine with: the main engine's and the second one's.
STORES = ("containerd", "classic")


def engine_env(store: str) -> dict[str, str]:
    """The environment that points docker at the lab engine with `store` ({} for the main one).

    Fails (not skips) when the second engine is not running: CI starts it with lab.up.
    """
    import pytest

    from buildtasks import labstate

    if store == "containerd":
        return {}
    host = labstate.read().engines.get(store)
    if not host:
        pytest.fail(
            f"the lab's {store}-store engine is not running: run "
            "`uv run invoke lab.up --classic-engine` first"
        )
    return {"DOCKER_HOST": host}


def cosign_key_pair(directory: Path, password: str = "") -> Path:
    """Make `cosign.key` / `cosign.pub` in `directory`; return the private key's path."""
    directory.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        ["cosign", "generate-key-pair"],
        cwd=directory,
        env={"COSIGN_PASSWORD": password, "PATH": "/usr/bin:/bin"},
        check=True,
        capture_output=True,
    )
    return directory / "cosign.key"


def registry_tags(repo: str) -> list[str]:
    """The tags of `repo` in its registry ([] when it has none, or no such repository)."""
    listing = subprocess.run(["crane", "ls", repo], capture_output=True, text=True, check=False)
    return listing.stdout.split() if listing.returncode == 0 else []


@contextlib.contextmanager
def scratch_registry(directory: Path, *, delete: bool = True) -> Iterator[tuple[str, Path]]:
    """A distribution registry of its own (the lab's config, storage under `directory`), for
    tests that delete and collect garbage: (address, config file). Stopped on exit."""
    import json
    import shutil
    import socket
    import time

    from buildtasks.lab.plan import registry_config
    from buildtasks.registry import registry_up

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        address = f"127.0.0.1:{probe.getsockname()[1]}"
    config = json.loads(registry_config(address, directory / "storage"))
    config["storage"]["delete"]["enabled"] = delete
    path = directory / "registry.json"
    path.write_text(json.dumps(config), encoding="utf-8")
    binary = shutil.which("docker-registry") or shutil.which("registry")
    assert binary, "the lab installs docker-registry: run `uv run invoke lab.up`"
    log = (directory / "registry.log").open("wb")
    process = subprocess.Popen([binary, "serve", str(path)], stdout=log, stderr=log)
    try:
        deadline = time.monotonic() + 15
        while not registry_up(address):
            assert process.poll() is None and time.monotonic() < deadline, (
                directory / "registry.log"
            ).read_text()[-2000:]
            time.sleep(0.1)
        yield address, path
    finally:
        process.terminate()
        process.wait(timeout=15)
        log.close()


def git_project(directory: Path, files: dict[str, str]) -> Path:
    """A project of its own: `files` (path → text) written under `directory`, committed once,
    for tests that build Dockerfiles the repository does not have."""
    for name, text in files.items():
        path = directory / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    for argv in (["init", "-q"], ["add", "-A"], ["commit", "-qm", "init"]):
        subprocess.run(
            ["git", "-c", "user.email=t@example.com", "-c", "user.name=t", *argv],
            cwd=directory,
            check=True,
        )
    return directory
