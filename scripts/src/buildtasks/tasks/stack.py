"""`invoke stack.*`: the gateway, the agents worker and the web page together (compose.yaml)."""

from __future__ import annotations

from invoke import task
from invoke.context import Context

from buildtasks.tasks.adapter import Task, errors_to_exit, load_config, many, runner_for

DEV_HELP = (
    "Development: compose.dev.yaml on top (backend source mounted with auto-reload, Vite's "
    "dev server for the page, .env.local read when present)"
)
PROJECT_HELP = "Compose project name (default: monorepo)"


def _prepared(c: Context, *, dev: bool, project: str):
    """The config, runner and stack, after checking the engine and Compose v2 are there."""
    from buildtasks import labstate, stack
    from buildtasks.build import preflight

    config = load_config(c)
    runner = runner_for(c)
    preflight(runner)
    if not runner.dry:
        probe = runner.run(stack.compose_version(), capture=True, check=False, quiet=True)
        stack.require_compose(probe.stdout.strip(), probe.ok)
    env = {}
    if dev:  # the dev web server's build may need the proxy CA, as docker.build does
        ca = labstate.ca_cert(config.ca_cert, labstate.read())
        if ca:
            env["BUILDTASKS_CA_CERT"] = ca
    return config, runner, stack.stack_for(config, dev=dev, project=project, env=env)


@task(klass=Task, help={"dev": DEV_HELP, "project": PROJECT_HELP})
@errors_to_exit
def up(c: Context, dev: bool = False, project: str = "") -> None:
    """Start the stack from the images of the last docker.build (by digest) and wait until healthy."""
    from buildtasks import stack as stack_mod

    config, runner, stack = _prepared(c, dev=dev, project=project)
    for var, ref in stack_mod.recorded_images(config, stack, runner).items():
        runner.say(f"stack: {stack_mod.key_of(var)} {ref}")
    if dev:
        runner.run(stack_mod.build_dev(stack))
    runner.run(stack_mod.up(stack))
    if not runner.dry:
        print(runner.run(stack_mod.ps(stack), capture=True, quiet=True).stdout.rstrip())


@task(klass=Task, help={"project": PROJECT_HELP})
@errors_to_exit
def down(c: Context, project: str = "") -> None:
    """Stop the stack and remove its containers, network and volumes."""
    from buildtasks import stack as stack_mod

    _, runner, stack = _prepared(c, dev=False, project=project)
    runner.run(stack_mod.down(stack))


@task(
    klass=Task,
    iterable=["service"],
    help={
        "service": "Only this service: gateway, agents or web (repeatable)",
        "follow": "Keep printing new lines until Ctrl-C",
        "tail": "Only the last N lines of each service",
        "project": PROJECT_HELP,
    },
)
@errors_to_exit
def logs(
    c: Context,
    service: list[str] | None = None,
    follow: bool = False,
    tail: str = "",
    project: str = "",
) -> None:
    """Print the stack's logs, timestamped, one prefix per service."""
    from buildtasks import stack as stack_mod

    _, runner, stack = _prepared(c, dev=False, project=project)
    runner.run(stack_mod.logs(stack, many(service), follow=follow, tail=tail))


@task(klass=Task)
@errors_to_exit
def smoke(c: Context) -> None:
    """Up in a project of its own, a task web → gateway → agents and back, an outage, down."""
    from buildtasks import stacksmoke

    config, runner, _ = _prepared(c, dev=False, project="")
    figures = stacksmoke.smoke(config, runner)
    for line in figures.lines():
        print(f"stack smoke: {line}")
