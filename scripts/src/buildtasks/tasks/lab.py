"""`invoke lab.*`: the local build lab (engine, registry, base stand-ins, QEMU)."""

from __future__ import annotations

from invoke import task
from invoke.context import Context

from buildtasks.config import parse_platforms
from buildtasks.errors import BuildtasksError
from buildtasks.tasks.adapter import errors_to_exit, load_config, runner_for


@task(
    help={
        "qemu": "Also set up QEMU so foreign platforms (linux/arm64) build and run",
        "platform": "Platforms to seed base-image stand-ins for (default linux/amd64)",
    }
)
@errors_to_exit
def up(c: Context, qemu: bool = False, platform: str = "linux/amd64") -> None:
    """Make this machine ready to build: engine, buildx, registry, base images."""
    from buildtasks.lab.ops import Lab

    platforms = parse_platforms(platform)
    Lab(load_config(c), runner_for(c)).up(qemu=qemu, platforms=platforms)


@task
@errors_to_exit
def status(c: Context) -> None:
    """Report each part of the lab; exit 1 when a required part is down."""
    from buildtasks.lab.ops import Lab

    rows = Lab(load_config(c), runner_for(c)).status()
    width = max(len(part) for part, _, _ in rows)
    for part, ok, detail in rows:
        print(f"{'ok  ' if ok else 'FAIL'} {part.ljust(width)}  {detail}")
    required = {"packages", "engine", "buildx", "registry"}
    if not all(ok for part, ok, _ in rows if part in required):
        raise BuildtasksError("the lab is not ready: run `uv run invoke lab.up`")


@task
@errors_to_exit
def down(c: Context) -> None:
    """Stop the daemons lab.up started, and only those."""
    from buildtasks.lab.ops import Lab

    Lab(load_config(c), runner_for(c)).down()
