"""Helpers shared by the buildtasks tests: the lab registry, unique names, running invoke."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
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
