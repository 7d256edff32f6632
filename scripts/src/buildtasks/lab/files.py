"""The lab's writes to files outside its own directory (daemon.json, apt files, registry config).

Every such write goes through `buildtasks.files.write_atomic`: a reader (dockerd on SIGHUP, apt, a crash in the
middle) sees the old file or the new one, never half of one.
"""

from __future__ import annotations

import json
from pathlib import Path

from buildtasks.errors import BuildtasksError
from buildtasks.files import write_atomic

#: The engine configuration the lab merges its needs into.
DAEMON_JSON = Path("/etc/docker/daemon.json")


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
