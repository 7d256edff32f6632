"""`invoke lint.*`: the same linters the `lint` Nox session and CI run."""

from __future__ import annotations

from collections.abc import Iterable

from invoke import task
from invoke.context import Context

from buildtasks import lint as plans
from buildtasks import tools
from buildtasks.command import Command
from buildtasks.errors import CommandFailed, GateFailed
from buildtasks.runner import Runner
from buildtasks.tasks.adapter import errors_to_exit, load_config, runner_for


def _run_all(runner: Runner, commands: Iterable[Command]) -> None:
    """Run each linter; a linter that fails has findings: a crossed gate (exit 1)."""
    for command in commands:
        try:
            runner.run(command)
        except CommandFailed as exc:
            raise GateFailed(str(exc)) from None


@task
@errors_to_exit
def python(c: Context) -> None:
    """Check Python style and formatting with ruff."""
    _run_all(runner_for(c), plans.ruff_commands(load_config(c).root))


@task
@errors_to_exit
def shell(c: Context) -> None:
    """Check the shell scripts with shellcheck."""
    _run_all(runner_for(c), (plans.shellcheck_command(load_config(c).root),))


@task
@errors_to_exit
def dockerfiles(c: Context) -> None:
    """Check every configured Dockerfile with hadolint and trivy's config checks."""
    config = load_config(c)
    _run_all(runner_for(c), plans.dockerfile_commands(config.root, config))


@task
@errors_to_exit
def compose(c: Context) -> None:
    """Validate compose.yaml, alone and with compose.dev.yaml, with `docker compose config`."""
    _run_all(runner_for(c), plans.compose_commands(load_config(c).root))


@task
@errors_to_exit
def workflows(c: Context) -> None:
    """Audit the GitHub workflows with zizmor (offline rules) and actionlint."""
    root = load_config(c).root
    runner = runner_for(c)
    home = plans.prepare_actionlint(runner, root, tools.cache_home())
    _run_all(runner, plans.workflow_commands(root, home))


@task(name="all", default=True)
@errors_to_exit
def all_(c: Context) -> None:
    """Run every linter: ruff, shellcheck, hadolint, trivy config, compose, zizmor, actionlint."""
    config = load_config(c)
    runner = runner_for(c)
    home = plans.prepare_actionlint(runner, config.root, tools.cache_home())
    _run_all(runner, plans.lint_commands(config.root, config, actionlint=home))
