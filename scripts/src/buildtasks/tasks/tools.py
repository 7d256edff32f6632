"""`invoke tools.*`: which tools and which engine the tasks would use on this machine."""

from __future__ import annotations

from invoke import task
from invoke.context import Context

from buildtasks.errors import BuildtasksError
from buildtasks.tasks.adapter import errors_to_exit, runner_for


@task
@errors_to_exit
def check(c: Context) -> None:
    """Report each tool (version, PATH or locked wheel, why) and the engine; exit 1 when the build path lacks one.

    Tools are looked up as every task looks them up: PATH first (brew, apt, the setup
    actions), then the locked wheel of `uv sync`. A missing tool's line says how to install it
    on this kind of host. Nothing here needs the lab.
    """
    from buildtasks import engine, tools

    rows = [tools.check(name) for name in tools.REPORTED]
    rows += engine.check_rows(runner_for(c))
    width = max(len(row.name) for row in rows)
    for row in rows:
        mark = "ok  " if row.ok else ("FAIL" if row.core else "--  ")
        print(f"{mark} {row.name.ljust(width)}  {row.detail}")
    failed = [row.name for row in rows if row.core and not row.ok]
    if failed:
        raise BuildtasksError(
            f"cannot build here: {', '.join(failed)} not ready (the lines above say how)"
        )


@task(
    help={
        "name": "Tool to install, e.g. gitleaks (also the first positional argument)",
        "dest": "Directory to install the binary into (default: ~/.local/bin)",
        "mirror": "URL standing for the release downloads, e.g. an internal mirror of "
        "https://github.com/gitleaks/gitleaks/releases/download (the checksum is still checked)",
    }
)
@errors_to_exit
def install(c: Context, name: str, dest: str = "", mirror: str = "") -> None:
    """Install a pinned tool release, checksum-verified, unless a good enough copy is on PATH.

    A copy on PATH that passes the checks every task makes (gitleaks: 8.19 or later) is used
    and nothing is downloaded. Otherwise the release `tools.TOOLS` pins for this OS and CPU is
    downloaded (the proxy environment and system CAs honoured), its sha256 checked before it
    is unpacked, and the binary put in --dest; under GitHub Actions the directory is appended
    to $GITHUB_PATH so the next steps find it.
    """
    import os
    import platform
    from pathlib import Path

    from buildtasks import downloads, tools

    github_path = os.environ.get("GITHUB_PATH")
    downloads.install(
        name,
        dest=Path(dest or "~/.local/bin").expanduser().absolute(),
        host=downloads.host_platform(platform.system(), platform.machine()),
        family=tools.host_family(),
        mirror=mirror,
        github_path=Path(github_path) if github_path else None,
        dry=runner_for(c).dry,
    )
