"""How long each step of a task took: measured around the step, printed as a table, recorded.

`docker.build` and `docker.release` end with the table and keep it in the build record
(`buildtasks.timings` in `.buildtasks/<image>/metadata.json`), so build times can be compared
between runs and machines.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

Steps = list[tuple[str, float]]


@contextmanager
def step(steps: Steps, name: str) -> Iterator[None]:
    """Append (`name`, seconds) to `steps` when the block ends, failed or not."""
    started = time.monotonic()
    try:
        yield
    finally:
        steps.append((name, time.monotonic() - started))


#: Put before the name of a step that ran inside the step above it, at the same time as its
#: siblings: it is shown indented and not added to the total (the step above holds its time).
INSIDE = "  "


def table(title: str, steps: Sequence[tuple[str, float]]) -> list[str]:
    """The steps as aligned lines, with their total: what the tasks print last."""
    if not steps:
        return []
    width = max(len(name) for name, _ in (*steps, ("total", 0.0)))
    lines = [title]
    lines += [f"  {name.ljust(width)}  {seconds:7.2f} s" for name, seconds in steps]
    lines.append(f"  {'total'.ljust(width)}  {total(steps):7.2f} s")
    return lines


def total(steps: Sequence[tuple[str, float]]) -> float:
    """The time the steps took: steps run inside another one are counted by that one."""
    return sum(seconds for name, seconds in steps if not name.startswith(INSIDE))


def as_record(steps: Sequence[tuple[str, float]]) -> list[list[object]]:
    """The steps as the build record keeps them: [[name, seconds], ...], to the millisecond."""
    return [[name, round(seconds, 3)] for name, seconds in steps]
