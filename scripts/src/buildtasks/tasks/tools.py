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
