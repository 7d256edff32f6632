"""Serialise what two tasks must not do at once: write one build record, use one local cache.

Builds run side by side (CI runners on one machine, a developer's two terminals, a checkout
and its worktree). Two builds of one image in one checkout would write the same record and
load the same names into the engine, and two builds sharing a local cache directory would
export into and prune the same blobs. Each of those is taken under an exclusive lock
(`flock`, released by the kernel when a process dies, so a crash never leaves one behind).
A task that has to wait says for what, who holds it and since when, then waits.

Where `fcntl` does not exist (Windows) builds are not serialised.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from buildtasks.runner import Runner

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]


def lock_path(path: Path) -> Path:
    """The lock file that guards `path` (a record file, a cache directory): its sibling."""
    return path.with_name(f".{path.name}.lock")


@contextmanager
def held(path: Path, what: str, runner: Runner) -> Iterator[None]:
    """Hold the lock guarding `path` for the block; `what` names it when someone else has it."""
    if runner.dry or fcntl is None:
        yield
        return
    lock = lock_path(path)
    lock.parent.mkdir(parents=True, exist_ok=True)
    with open(lock, "a+", encoding="utf-8") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "another process"
            runner.say(f"note: waiting for {what} ({holder}) to finish: {lock}")
            started = time.monotonic()
            fcntl.flock(handle, fcntl.LOCK_EX)
            runner.say(f"note: waited {time.monotonic() - started:.1f} s for {what}")
        handle.seek(0)
        handle.truncate()
        handle.write(f"pid {os.getpid()}, since {time.strftime('%H:%M:%S')}\n")
        handle.flush()
        try:
            yield
        finally:
            handle.seek(0)
            handle.truncate()
            fcntl.flock(handle, fcntl.LOCK_UN)
