"""Run independent steps at once and report their failures as one error.

The spread build (`fanout`) and the release chain's gates (`release`) both start a few
steps at the same time, wait for every one of them (a step is never left running behind
an error), and end with one line: the first failure, with the others counted.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

from buildtasks.errors import BuildtasksError, CommandFailed

T = TypeVar("T")


def run_all(calls: Sequence[Callable[[], T]]) -> tuple[list[T], list[BuildtasksError]]:
    """Run `calls` at once (one alone runs here); return what succeeded and what failed.

    Results and errors keep the order of `calls`. Only `BuildtasksError`s are collected;
    anything else (a bug, Ctrl-C) propagates once every call has ended.
    """
    results: list[T] = []
    errors: list[BuildtasksError] = []
    if len(calls) == 1:
        try:
            results.append(calls[0]())
        except BuildtasksError as exc:
            errors.append(exc)
        return results, errors
    with ThreadPoolExecutor(max_workers=max(1, len(calls))) as pool:
        futures = [pool.submit(call) for call in calls]
        for future in futures:
            try:
                results.append(future.result())
            except BuildtasksError as exc:
                errors.append(exc)
    return results, errors


def relabel(exc: BuildtasksError, message: str) -> BuildtasksError:
    """`exc`'s kind and exit code with another message (a failed command stays one line)."""
    cls = BuildtasksError if isinstance(exc, CommandFailed) else type(exc)
    return cls(message, exit_code=exc.exit_code)


def first_failure(errors: Sequence[BuildtasksError], tail: str = "") -> BuildtasksError:
    """The first of `errors`, its kind and exit code kept, counting the others; `tail` appended."""
    first = errors[0]
    rest = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
    return relabel(first, f"{first}{rest}{tail}")
