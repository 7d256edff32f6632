"""Writes that a reader never sees half of: build records, reports, the lab's system files."""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path


def write_atomic(
    path: Path, text: str, *, mode: int | None = None, owner: tuple[int, int] | None = None
) -> None:
    """Replace `path` with `text` atomically: a temporary file in the same directory, synced,
    then `os.replace`d over it.

    The new file keeps the old one's mode and owner unless `mode` / `owner` (uid, gid) say
    otherwise; a new file defaults to 0644.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        old = path.stat()
        keep_mode, keep_owner = old.st_mode & 0o7777, (old.st_uid, old.st_gid)
    except FileNotFoundError:
        keep_mode, keep_owner = 0o644, None
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            out.write(text)
            out.flush()
            os.fchmod(out.fileno(), keep_mode if mode is None else mode)
            chown = owner or keep_owner
            if chown and os.geteuid() == 0:
                os.fchown(out.fileno(), chown[0], chown[1])
            os.fsync(out.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    directory = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)


def append_text(path: str | Path, text: str) -> None:
    """Append `text` to `path` (GitHub's `$GITHUB_OUTPUT`, `$GITHUB_STEP_SUMMARY`, ...).

    A file that cannot be written is a one-line error naming it, not a traceback.
    """
    from buildtasks.errors import BuildtasksError

    try:
        with open(path, "a", encoding="utf-8") as out:
            out.write(text)
    except OSError as exc:
        raise BuildtasksError(f"cannot write {path}: {exc.strerror or exc}") from None
