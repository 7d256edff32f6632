"""`invoke lab.*`: the local build lab (engine, registry, base stand-ins, QEMU)."""

from __future__ import annotations

from invoke import task
from invoke.context import Context

from buildtasks.config import parse_platforms
from buildtasks.errors import BuildtasksError
from buildtasks.tasks.adapter import errors_to_exit, load_config, runner_for


@task(
    help={
        "qemu": "Also set up QEMU so foreign platforms (linux/arm64) build and run "
        "(on a GitHub-hosted runner: the pinned tonistiigi/binfmt image)",
        "platform": "Platforms to seed base-image stand-ins for (default: every platform the "
        "configured images build, e.g. linux/amd64,linux/arm64; none on a GitHub-hosted runner)",
        "classic-engine": "Also start a second engine with the classic (overlay2) image store "
        "(default: [tool.buildtasks.lab] classic-engine; never on a GitHub-hosted runner)",
    }
)
@errors_to_exit
def up(c: Context, qemu: bool = False, platform: str = "", classic_engine: bool = False) -> None:
    """Make this machine ready to build: engine, buildx, registry, base images.

    On a GitHub-hosted runner (GITHUB_ACTIONS=true and RUNNER_ENVIRONMENT=github-hosted) it
    installs and starts nothing: it gives the runner's engine the containerd image store.
    """
    from buildtasks.lab.ops import Lab

    config = load_config(c)
    if platform:
        platforms = parse_platforms(platform)
    else:
        # What `docker.build` will ask for: a foreign one also gets QEMU.
        platforms = tuple(dict.fromkeys(p for i in config.images.values() for p in i.platforms))
    Lab(config, runner_for(c)).up(qemu=qemu, platforms=platforms, classic_engine=classic_engine)


@task
@errors_to_exit
def status(c: Context) -> None:
    """Report each part of the lab; exit 1 when a required part is down.

    On a GitHub-hosted runner the lab is the runner's engine and buildx: no registry or
    stand-in rows, and the engine row fails unless it uses the containerd image store.
    """
    from buildtasks.lab.ops import Lab

    rows = Lab(load_config(c), runner_for(c)).status()
    width = max(len(part) for part, _, _ in rows)
    for part, ok, detail in rows:
        print(f"{'ok  ' if ok else 'FAIL'} {part.ljust(width)}  {detail}")
    required = {"packages", "engine", "buildx", "registry"}
    if not all(ok for part, ok, _ in rows if part in required):
        raise BuildtasksError("the lab is not ready: run `uv run invoke lab.up`")


@task(
    help={
        "purge_apt": "Also delete the trixie/sid apt sources and pins lab.up added "
        "(the lab's packages then get no more updates from those suites)",
    }
)
@errors_to_exit
def down(c: Context, purge_apt: bool = False) -> None:
    """Take the lab's mirror out of the engine and stop the daemons lab.up started.

    The registry mirror leaves /etc/docker/daemon.json (a running engine that lab.up did not
    start is reloaded, not restarted); the dockerd and registry lab.up started are stopped,
    nothing else. Packages, the containerd image store setting, registry data and cached
    stand-in layers stay; lab.down lists them.
    """
    from buildtasks.lab.ops import Lab

    Lab(load_config(c), runner_for(c)).down(purge_apt=purge_apt)
