"""The bodies of the Nox sessions, kept out of noxfile.py so it stays a thin list of names.

Sessions run in the project's locked environment (`uv run --locked nox`), so the tools are
the exact versions in uv.lock and no second environment is built per session.
"""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

from buildtasks import config as config_mod
from buildtasks import imagetests, labstate, tools
from buildtasks.build import BuildOptions, build_image, preflight
from buildtasks.command import Command
from buildtasks.errors import BuildtasksError, filesystem_error
from buildtasks.lint import lint_commands, prepare_actionlint
from buildtasks.runner import Runner


@contextlib.contextmanager
def errors_to_session(session) -> Iterator[None]:
    """Turn `BuildtasksError` into `session.error(message)`: one line, no traceback."""
    try:
        yield
    except BuildtasksError as exc:
        session.error(str(exc))
    except OSError as exc:
        if (error := filesystem_error(exc)) is None:
            raise
        session.error(str(error))


def run(session, command: Command) -> None:
    """Run a planned command through Nox (so it is echoed and logged like any session step).

    The tool is looked up as the tasks look it up (`tools.locate`: PATH, then the locked wheel).
    """
    runner = Runner(echo=False, out=sys.stdout)
    executable = runner.resolve(command.tool)
    with session.chdir(command.cwd) if command.cwd else contextlib.nullcontext():
        session.run(executable, *command.argv[1:], env=dict(command.env) or None, external=True)


#: The long suites end by listing their slowest tests, so a slow run says where its time went.
SLOWEST = "--durations=15"


def pytest(session, *args: str, env: dict[str, str] | None = None) -> None:
    """Run pytest in the project's environment.

    Any non-zero exit fails the session, including 5 (pytest collected nothing), which pytest
    itself reports as "no tests ran": a broken selection never passes.
    """
    session.run(sys.executable, "-m", "pytest", *args, env=env or None, external=True)


def lint(session) -> None:
    with errors_to_session(session):
        config = config_mod.load()
        actionlint = prepare_actionlint(Runner(out=sys.stdout), config.root, tools.cache_home())
        for command in lint_commands(config.root, config, actionlint=actionlint):
            run(session, command)


def tests(session) -> None:
    root = config_mod.load().root
    frontend_tests = root / "apps/frontend/test"
    if frontend_tests.is_dir():
        session.run("node", "--test", str(frontend_tests), external=True)
    pytest(
        session,
        str(root / "scripts/tests"),
        str(root / "apps/backend/tests"),
        f"--ignore={root / 'apps/backend/tests/image'}",
        f"--ignore={root / 'scripts/tests/workflows'}",
        f"--ignore={root / 'scripts/tests/recipes'}",
        SLOWEST,
        *session.posargs,
    )


def recipes(session) -> None:
    root = config_mod.load().root
    pytest(session, str(root / "scripts/tests/recipes"), "-rs", SLOWEST, *session.posargs)


def workflows(session) -> None:
    root = config_mod.load().root
    pytest(session, str(root / "scripts/tests/workflows"), SLOWEST, *session.posargs)


def image_tests(session) -> None:
    with errors_to_session(session):
        config = config_mod.load()
        runner = Runner()
        preflight(runner)
        now = datetime.now(UTC)
        # Each suite also sees the other images (BUILDTASKS_IMAGE_<KEY>), so the web image
        # is tested against a real gateway container.
        tested = [image for image in config.images.values() if image.tests]
        for image in config.images.values():
            if not image.tests:
                session.log(f"{image.key}: no image tests configured")
        # Every tested image in one BuildKit solve (one alone: its own build), then the tests.
        if len(tested) > 1:
            from buildtasks.bake import build_all

            outcomes = build_all(config, tested, BuildOptions(), runner, env=os.environ, now=now)
        else:
            outcomes = [
                build_image(config, image, BuildOptions(), runner, env=os.environ, now=now)
                for image in tested
            ]
        built = {imagetests.image_env(o.image.key): o.digest for o in outcomes}
        for image, outcome in zip(tested, outcomes, strict=True):
            session.log(f"{image.key}: testing {outcome.digest}")
            plan = imagetests.image_tests(image, outcome.digest, root=config.root)
            pytest(session, *plan.args, *session.posargs, env={**built, **plan.env})


def benchmark(session) -> None:
    from buildtasks import benchmark as bench

    with errors_to_session(session):
        # Records and reports go to a scratch directory: the user's last build stays theirs.
        scratch = tempfile.mkdtemp(prefix="buildtasks-bench-")
        # One image, one platform: this machine's (the distribution rows build both).
        from buildtasks.platforms import native_platform

        env = {"BUILDTASKS_PLATFORMS": native_platform(os.uname().machine), **os.environ}
        config = replace(config_mod.load(env=env), artifacts_dir=scratch)
        runner = Runner(echo=False)
        preflight(runner)
        runs = 3
        figures = []
        for image in config.images.values():
            session.log(f"{image.key}: measuring (cold build, rebuilds, start-up, size)")
            figures += bench.measure_image(config, image, runner, runs)
            session.log(f"{image.key}: measuring the task against raw buildx")
            figures += bench.measure_wrapper(
                config.root, image, runs=5, env={**env, "BUILDTASKS_ARTIFACTS_DIR": scratch}
            )
        session.log("stack: up, a task through all three services, an outage, down (3 runs)")
        figures += bench.measure_stack(config, runner, runs)
        backend = config.image("backend")
        session.log("backend: measuring the warm release chain, step by step")
        release_env, release_args = bench.release_setup(
            config.root, Path(scratch), config.lab.registry
        )
        figures += bench.measure_release(
            config.root,
            backend,
            runs=runs,
            env={**env, **release_env, "BUILDTASKS_ARTIFACTS_DIR": scratch},
            args=release_args,
        )
        session.log("many images: one bake against one after the other, 1 to 20 images")
        figures += bench.measure_scale(
            config.root, Path(scratch), env={"BUILDTASKS_PLATFORMS": env["BUILDTASKS_PLATFORMS"]}
        )
        second = labstate.read().engines.get("classic")
        if second:
            session.log("backend: measuring one engine against two, and the registry cache")
            figures += bench.measure_distribution(config, backend, runner, second)
        else:
            session.log("no second engine (lab.up --classic-engine): distribution not measured")
        figures.append(
            bench.Figure(
                "`uv run invoke --list`",
                bench.invoke_list_seconds(config.root, 5),
                "s",
                "≤ 0.5 s",
                5,
            )
        )
        text = bench.table(
            figures, datetime.now(UTC), f"{os.cpu_count()} cores, {os.uname().machine}"
        )
        print(text)
        if "--write" in session.posargs:
            bench.write_table(config.root / "docs/benchmarks.md", text)
            session.log("updated docs/benchmarks.md")
