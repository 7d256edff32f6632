"""The lab's writes to files outside its own directory (daemon.json, apt files, registry config).

Every such write goes through `write_atomic`: a reader (dockerd on SIGHUP, apt, a crash in the
middle) sees the old file or the new one, never half of one.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from pathlib import Path

from buildtasks.errors import BuildtasksError

#: The engine configuration the lab merges its needs into.
DAEMON_JSON = Path("/etc/docker/daemon.json")


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


def read_daemon_json(path: Path = DAEMON_JSON) -> dict[str, object]:
    """The engine's daemon.json as a dict ({} when absent or empty), or a one-line error."""
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8") or "{}")
    except json.JSONDecodeError as exc:
        raise BuildtasksError(f"{path} is not valid JSON ({exc}); fix or remove it") from None
    if not isinstance(data, dict):
        raise BuildtasksError(f"{path} is not a JSON object; fix or remove it")
    return data


def write_daemon_json(config: dict[str, object], path: Path = DAEMON_JSON) -> None:
    """Write the engine's daemon.json atomically, as the engine's own docs format it."""
    write_atomic(path, json.dumps(config, indent=2) + "\n")
