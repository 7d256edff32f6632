"""`invoke ci.*`: what the GitHub workflows ask of the tasks, and running them here with act."""

from __future__ import annotations

import os

from invoke import task
from invoke.context import Context

from buildtasks.tasks.adapter import errors_to_exit, load_config


@task(help={"image": "Configured image whose build jobs to list"})
@errors_to_exit
def matrix(c: Context, image: str) -> None:
    """Print the build jobs of an image: one per platform, with its runner (a job output in CI)."""
    from buildtasks import ci
    from buildtasks.files import append_text

    config = load_config(c)
    jobs = ci.matrix(config, config.image(image))
    for job in jobs:
        print(f"{job['platform']}: runs-on {job['runner']}")
    if path := os.environ.get("GITHUB_OUTPUT"):
        append_text(path, ci.output_lines({"matrix": ci.compact(jobs)}))
        print(f"matrix written to $GITHUB_OUTPUT ({len(jobs)} jobs)")


@task(
    help={
        "workflow": "Workflow file in .github/workflows, or an image key (backend runs "
        "backend-docker-build.yml)",
        "event": "push:BRANCH, tag:NAME, pr:NUMBER or dispatch:SUFFIX (dispatch: for none; "
        "add +no-cache), e.g. push:main, tag:v1.0.0, dispatch:staging+no-cache",
        "namespace": "Lab registry namespace the images go to (default: act)",
        "run-number": "github.run_number of the run (manual-<N> tags use it)",
        "workdir": "Folder for the run's artifacts, SARIF, docker login and signing key "
        "(default: <lab home>/act)",
    },
)
@errors_to_exit
def act(
    c: Context,
    workflow: str,
    event: str = "push:main",
    namespace: str = "act",
    run_number: int = 1,
    workdir: str = "",
) -> None:
    """Run a workflow here with act for one event, against the lab registry (docs/ci.md)."""
    from pathlib import Path

    from buildtasks import act as act_plan
    from buildtasks.actrun import require_ok, run_workflow
    from buildtasks.labstate import lab_home

    config = load_config(c)
    dry = bool(c.config.get("run", {}).get("dry", False))
    result = run_workflow(
        config,
        act_plan.workflow_path(config.root, workflow),
        act_plan.event(event, "", run_number=run_number),
        registry=f"{config.lab.registry}/{namespace}",
        workdir=Path(workdir) if workdir else lab_home(os.environ) / "act",
        env=os.environ,
        dry=dry,
    )
    if dry:
        print(f"{result.workflow}: {event}: --dry, act not started")
        return
    require_ok(result)
    print(f"{result.workflow}: {event} passed in {result.seconds:.0f}s (log: {result.log})")
