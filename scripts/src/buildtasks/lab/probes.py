"""Probes of this machine for the lab: is the engine up, is an upstream registry reachable,
which apt sources it has; and the one place the lab starts long-running daemons.

Daemons (`dockerd`, the registry) outlive the task that starts them, so `spawn` starts them
detached with `subprocess.Popen`; every other command goes through the `Runner`.
"""

from __future__ import annotations

import contextlib
import os
import platform as host_platform
import signal
import socket
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path

from buildtasks.buildx import engine_probe
from buildtasks.command import Command
from buildtasks.errors import BuildtasksError, EngineUnavailable
from buildtasks.lab.plan import image_store, parse_binfmt_entry, qemu_name, status_uid
from buildtasks.runner import Runner

UPSTREAMS = {"docker.io": "registry-1.docker.io", "ghcr.io": "ghcr.io"}


def upstream_reachable(registry: str, timeout: float = 3.0) -> bool:
    """Return True when the upstream registry host resolves and accepts a TLS connection."""
    host = UPSTREAMS.get(registry, registry)
    try:
        with socket.create_connection((host, 443), timeout=timeout):
            return True
    except OSError:
        return False


def engine_running(runner: Runner) -> str:
    """Return the engine's server version, or "" when no engine answers."""
    try:
        return runner.output(engine_probe(), timeout=20)
    except (BuildtasksError, OSError):
        return ""


def engine_store(runner: Runner) -> str:
    """The running engine's image store, "containerd" or "classic"; "" when none answers."""
    try:
        status = runner.output(
            Command(("docker", "info", "--format", "{{json .DriverStatus}}")), timeout=20
        )
    except (BuildtasksError, OSError):
        return ""
    return image_store(status)


def wait_for(check, what: str, seconds: float, log: Path | None = None) -> None:
    """Poll `check()` until true, or fail naming the log to read."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.2)
    where = f"; see {log}" if log else ""
    raise EngineUnavailable(f"{what} did not become ready within {seconds:.0f}s{where}")


def spawn(argv: Sequence[str], log: Path) -> int:
    """Start a long-running daemon detached from this process; return its pid."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "ab") as out:
        proc = subprocess.Popen(
            list(argv),
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    return proc.pid


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except OSError:
        return False
    return True


def stop_pid(pid: int, runner: Runner, what: str, *, grace: float = 30) -> None:
    """SIGTERM a daemon the lab started, wait up to `grace` seconds, then SIGKILL it."""
    if not pid_alive(pid):
        return
    runner.say(f"+ kill -TERM {pid}  # {what}")
    if runner.dry:
        return
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while pid_alive(pid) and time.monotonic() < deadline:
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)
        time.sleep(0.2)
    if pid_alive(pid):
        os.kill(pid, signal.SIGKILL)


def is_root() -> bool:
    return os.geteuid() == 0


def foreign_platforms(platforms: Sequence[str]) -> tuple[str, ...]:
    """The requested platforms whose architecture differs from this machine's."""
    return tuple(p for p in platforms if p.split("/")[1] != native_arch())


def native_arch() -> str:
    """This machine's architecture as Docker names it (`amd64`, `arm64`)."""
    return {"x86_64": "amd64", "aarch64": "arm64"}.get(
        host_platform.machine(), host_platform.machine()
    )


def read_text(path: str | Path) -> str:
    """A file's text, or "" when it cannot be read."""
    try:
        return Path(path).read_text(encoding="utf-8")
    except OSError:
        return ""


def read_optional(path: Path) -> str | None:
    """A file's text, None when it does not exist (other errors are raised)."""
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None


def binfmt_registered(arch: str) -> bool:
    """Whether the kernel has an enabled QEMU handler for `arch` (any registrar's)."""
    entry = Path("/proc/sys/fs/binfmt_misc") / f"qemu-{qemu_name(arch)}"
    return parse_binfmt_entry(read_text(entry)).enabled


def apt_sources_text() -> str:
    """The machine's active apt sources (apt reads only *.list and *.sources files)."""
    directory = Path("/etc/apt/sources.list.d")
    paths = [
        Path("/etc/apt/sources.list"),
        *sorted(directory.glob("*.sources")),
        *sorted(directory.glob("*.list")),
    ]
    return "\n\n".join(
        p.read_text(encoding="utf-8", errors="replace")
        for p in paths
        if p.is_file() and not p.name.startswith("buildtasks-lab")
    )


def process_uid(pid: int) -> int | None:
    """The real uid a process runs as (None when it is gone)."""
    return status_uid(read_text(f"/proc/{pid}/status"))


def process_cmdline(pid: int) -> str:
    """A process's command line, space-joined ("" when it is gone)."""
    try:
        return (
            Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        )
    except OSError:
        return ""
