"""Which Docker engine the tasks talk to, and what to tell a user whose engine is not the lab's.

The tasks work against any engine with buildx: the lab's, Docker Desktop (containerd image
store, multi-platform through its own QEMU), Colima, a remote host (`DOCKER_HOST=tcp://…` or
`ssh://…`, or a docker context). Nothing here reads the lab's state: it only shapes messages
and reports.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from urllib.parse import urlsplit

from buildtasks import buildx, labstate, tools
from buildtasks.errors import BuildtasksError
from buildtasks.runner import Runner

#: The engine's socket when DOCKER_HOST is not set (Linux; macOS symlinks it too).
DEFAULT_SOCKET = "unix:///var/run/docker.sock"


def remote_host(docker_host: str) -> str:
    """The host name of a remote engine endpoint (`tcp://h:2376`, `ssh://u@h`), '' for sockets."""
    parts = urlsplit(docker_host)
    if parts.scheme in ("tcp", "ssh", "http", "https") and parts.hostname:
        return parts.hostname
    return ""


def start_hint(
    env: Mapping[str, str] | None = None, family: str | None = None, *, builder: str = ""
) -> str:
    """How to get the engine answering: for a builder's endpoint, this DOCKER_HOST, this host."""
    if builder:
        return (
            f"the Docker engine is not running at {builder}: start it, or change that "
            "builder's endpoint ([tool.buildtasks.builders] or BUILDTASKS_BUILDERS)"
        )
    env = os.environ if env is None else env
    host = env.get("DOCKER_HOST", "")
    if host and host != DEFAULT_SOCKET:
        return (
            f"the Docker engine is not running at DOCKER_HOST={host}: start it, "
            "or unset DOCKER_HOST to use the default engine"
        )
    family = family or tools.host_family()
    if family == "macos":
        return "the Docker engine is not running: start Docker Desktop (or `colima start`)"
    if family == "windows":
        return "the Docker engine is not running: start Docker Desktop (WSL 2 backend)"
    if family in ("debian", "ubuntu"):
        return (
            "the Docker engine is not running: start it with `uv run invoke lab.up` "
            "(or your service manager)"
        )
    return "the Docker engine is not running: start it (e.g. `sudo systemctl start docker`)"


def check_rows(runner: Runner) -> list[tools.Row]:
    """`tools.check`'s lines about the engine, buildx and (optionally) the lab."""
    from buildtasks.build import current_builder

    quiet = Runner(echo=False, out=runner.out)
    rows = []
    endpoint = os.environ.get("DOCKER_HOST") or "the current docker context"
    try:
        version = quiet.output(buildx.engine_probe(), timeout=30)
    except BuildtasksError:
        rows.append(tools.Row("engine", False, start_hint(), core=True))
        return rows
    try:
        builder = current_builder(quiet)
        store = f", {builder.store} image store" if builder.store else ""
        rows.append(tools.Row("engine", True, f"Docker {version}{store} ({endpoint})", core=True))
        buildx_version = quiet.output(buildx.buildx_version(), timeout=30).split()
        rows.append(
            tools.Row(
                "buildx",
                True,
                f"{buildx_version[1] if len(buildx_version) > 1 else '?'}  driver "
                f"{builder.driver or '?'}, platforms {', '.join(builder.platforms) or '?'}",
                core=True,
            )
        )
    except BuildtasksError:
        rows.append(
            tools.Row(
                "buildx",
                False,
                f"docker buildx is missing: {tools.install_line('docker')}",
                core=True,
            )
        )
    state = labstate.read()
    if state.started or state.seeded:
        detail = f"up (registry {state.registry or '?'}, stand-ins for {len(state.seeded)} bases)"
    else:
        detail = "not set up: optional, the tasks use your engine and registry as they are"
    rows.append(tools.Row("lab", True, detail))
    return rows
