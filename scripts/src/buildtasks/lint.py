"""Plans for the linters: ruff, shellcheck, hadolint and trivy's Dockerfile checks."""

from __future__ import annotations

from pathlib import Path

from buildtasks import trivy
from buildtasks.command import Command
from buildtasks.config import Config

SHELL_SCRIPTS = ("apps/backend/docker-entrypoint.sh", ".ci/run", "scripts/docker/build.sh")


def dockerfiles(config: Config) -> tuple[str, ...]:
    """Every configured image's Dockerfile, relative to the root, without repeats."""
    return tuple(dict.fromkeys(image.dockerfile for image in config.images.values()))


def ruff_commands(root: Path) -> tuple[Command, ...]:
    return (
        Command(("ruff", "check", str(root))),
        Command(("ruff", "format", "--check", str(root))),
    )


def shellcheck_command(root: Path) -> Command:
    scripts = [str(root / s) for s in SHELL_SCRIPTS if (root / s).is_file()]
    return Command(("shellcheck", "--severity=style", *scripts))


def hadolint_command(root: Path, files: tuple[str, ...]) -> Command:
    argv = ["hadolint"]
    if (root / ".hadolint.yaml").is_file():
        argv += ["--config", str(root / ".hadolint.yaml")]
    return Command((*argv, *(str(root / f) for f in files)))


def trivy_config_command(root: Path, dockerfile: str) -> Command:
    """Trivy's misconfiguration checks on one Dockerfile: fail on HIGH or CRITICAL."""
    return trivy.config_scan(
        root / dockerfile, severity=("HIGH", "CRITICAL"), exit_code=1, quiet=True
    )


def dockerfile_commands(root: Path, config: Config) -> tuple[Command, ...]:
    """hadolint over every Dockerfile, then trivy's misconfiguration checks on each."""
    files = dockerfiles(config)
    return (hadolint_command(root, files), *(trivy_config_command(root, f) for f in files))


def workflow_command(root: Path) -> Command | None:
    """zizmor's offline audit of the GitHub workflows (none when there are no workflows)."""
    workflows = root / ".github" / "workflows"
    if not workflows.is_dir():
        return None
    return Command(("zizmor", "--offline", "--min-severity", "medium", str(workflows)))


def lint_commands(root: Path, config: Config) -> tuple[Command, ...]:
    """Every linter, cheapest first."""
    workflows = workflow_command(root)
    return (
        *ruff_commands(root),
        shellcheck_command(root),
        *dockerfile_commands(root, config),
        *((workflows,) if workflows else ()),
    )
