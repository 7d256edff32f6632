"""Nox sessions: `uv run --locked nox` runs what CI runs; `nox --list` shows them all."""

from __future__ import annotations

import nox

from buildtasks import sessions

nox.options.default_venv_backend = "none"
nox.options.sessions = ["lint", "tests", "image_tests", "recipes", "workflows"]
nox.options.error_on_external_run = False


@nox.session
def lint(session: nox.Session) -> None:
    """Lint Python (ruff), shell (shellcheck), Dockerfiles (hadolint, trivy), compose, workflows (zizmor, actionlint)."""
    sessions.lint(session)


@nox.session
def tests(session: nox.Session) -> None:
    """Run the tooling, backend and frontend test suites, including the real-tool lab tests."""
    sessions.tests(session)


@nox.session
def image_tests(session: nox.Session) -> None:
    """Build each image through the docker.build plan and test the running containers."""
    sessions.image_tests(session)


@nox.session
def recipes(session: nox.Session) -> None:
    """Run every recipe of README and docs/ marked `run`, in a fresh clone, against the lab."""
    sessions.recipes(session)


@nox.session
def workflows(session: nox.Session) -> None:
    """Run the image workflows with act for each event against the lab, then check the registry."""
    sessions.workflows(session)


@nox.session
def benchmark(session: nox.Session) -> None:
    """Measure builds, start-up, sizes, the stack, the wrapper and the release chain; `-- --write` updates docs."""
    sessions.benchmark(session)
