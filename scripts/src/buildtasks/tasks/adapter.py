"""Glue between Invoke and the plain-Python layers: errors become `Exit`, config loads once."""

from __future__ import annotations

import functools
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from invoke.context import Context
from invoke.exceptions import Exit
from invoke.tasks import Task as InvokeTask

from buildtasks import config as config_mod
from buildtasks.errors import BuildtasksError, filesystem_error
from buildtasks.runner import Runner

F = TypeVar("F", bound=Callable[..., Any])


def runner_for(c: Context) -> Runner:
    """Return a runner honouring Invoke's `--dry` (print every command, run none).

    Commands are always echoed (`+ docker buildx build ...`), with or without `--echo`: what
    the tooling runs is part of its output, so a log shows exactly what happened.
    """
    run = c.config.get("run", {})
    return Runner(dry=bool(run.get("dry", False)), echo=True)


def load_config(c: Context) -> config_mod.Config:
    """Load `[tool.buildtasks]` from the repository the task runs in (`c.cd(...)` honoured)."""
    return config_mod.load(Path(c.cwd) if c.cwd else None)


def errors_to_exit(func: F) -> F:
    """Turn `BuildtasksError` into Invoke's `Exit`: one line on stderr, the error's exit code."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            result = func(*args, **kwargs)
            sys.stdout.flush()  # a closed pipe shows here, not in a traceback at exit
            return result
        except BuildtasksError as exc:
            raise Exit(f"error: {exc}", code=exc.exit_code) from None
        except KeyboardInterrupt:
            print("interrupted", file=sys.stderr)
            raise Exit(code=130) from None
        except BrokenPipeError:
            # The reader went away (`| head -1`): stop quietly, as other tools do on SIGPIPE.
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            raise Exit(code=141) from None
        except OSError as exc:
            # A file the task writes: unwritable, read-only, immutable, or the disk is full.
            if (error := filesystem_error(exc)) is None:
                raise
            raise Exit(f"error: {error}", code=error.exit_code) from None

    return wrapper  # type: ignore[return-value]


def many(value: list[str] | str | None) -> tuple[str, ...]:
    """A repeatable option's values (Invoke gives a list; a caller may pass one string)."""
    if value is None:
        return ()
    return (value,) if isinstance(value, str) else tuple(value)


class Task(InvokeTask):
    """An Invoke task whose options never take `-h`: that stays `--help` in every task."""

    def arg_opts(self, name: str, default: str, taken_names: set[str]) -> dict[str, Any]:
        return super().arg_opts(name, default, taken_names | {"h"})
