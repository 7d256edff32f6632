"""Invoke entry point: `uv run invoke --list` shows every task."""

from buildtasks.tasks import namespace as ns  # noqa: F401
