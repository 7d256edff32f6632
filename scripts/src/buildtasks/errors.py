"""Named errors with one-line, actionable messages.

Every error the tooling raises for a user mistake or a missing prerequisite is a
`BuildtasksError`. Its message is one line that says what is wrong and names the fix;
the Invoke adapter turns it into `Exit(message, code)` and the Nox adapter into
`session.error(message)`, so users never see a traceback for their own mistakes.
"""

from __future__ import annotations

import errno


class BuildtasksError(Exception):
    """Base class: `str(err)` is the one-line message, `exit_code` the process exit code."""

    exit_code: int = 1

    def __init__(self, message: str, *, exit_code: int | None = None) -> None:
        super().__init__(message)
        if exit_code is not None:
            self.exit_code = exit_code


class ConfigError(BuildtasksError):
    """Bad `[tool.buildtasks]` configuration, environment value or CLI option."""

    exit_code = 2


class ToolNotFound(BuildtasksError):
    """A required executable (docker, trivy, cosign, ...) is not installed."""

    exit_code = 127


class EngineUnavailable(BuildtasksError):
    """The Docker engine or buildx is not usable (daemon down, plugin missing)."""

    exit_code = 3


class RegistryUnavailable(BuildtasksError):
    """The target registry cannot be reached or refuses us (down, no login)."""

    exit_code = 4


class NotFound(BuildtasksError):
    """What a step works on is not there: no build record yet, a digest the registry lacks."""

    exit_code = 5


class FilesystemError(BuildtasksError):
    """A file or directory a task writes cannot be written (permissions, read-only, full)."""

    exit_code = 6


#: errno → what to do, for the `OSError`s a task can meet writing its files.
_FS_FIXES = {
    errno.EACCES: "make it writable for this user (chmod, chown), or point "
    "BUILDTASKS_ARTIFACTS_DIR (or the setting naming this path) at a writable directory",
    errno.EPERM: "it is immutable or owned by someone else (lsattr; chattr -i), or point "
    "BUILDTASKS_ARTIFACTS_DIR (or the setting naming this path) at a writable directory",
    errno.EROFS: "it is on a read-only file system: mount it writable, or point "
    "BUILDTASKS_ARTIFACTS_DIR (or the setting naming this path) at a writable directory",
    errno.ENOSPC: "the disk is full (df -h): free space, e.g. `docker builder prune` and the "
    "local build cache under cache-dir (~/.cache/buildx)",
    errno.EDQUOT: "the disk quota is used up (quota -s): free space, e.g. `docker builder "
    "prune` and the local build cache under cache-dir (~/.cache/buildx)",
}


def filesystem_error(exc: OSError) -> FilesystemError | None:
    """One line for an `OSError` writing a file, naming the path and the fix (None: not one)."""
    fix = _FS_FIXES.get(exc.errno or 0)
    if fix is None:
        return None
    path = exc.filename or "a file the task writes"
    reason = exc.strerror or str(exc)
    return FilesystemError(f"cannot write {path}: {reason}: {fix}")


class GateFailed(BuildtasksError):
    """A quality gate (scan severity, size budget, tests, secrets) was crossed."""

    exit_code = 1


#: The exit code of a task whose external program failed (the program's own code is in the
#: message): apart from a crossed gate (1) and everything else the tasks check themselves.
TOOL_FAILED = 7
#: The exit code of a program that timed out (as `timeout(1)` exits).
TIMED_OUT = 124


class CommandFailed(BuildtasksError):
    """An external command exited non-zero: the task exits `TOOL_FAILED` (124 on a timeout)."""

    exit_code = TOOL_FAILED

    def __init__(self, argv: tuple[str, ...], returncode: int, hint: str = "") -> None:
        message = f"{command_name(argv)} failed with exit code {returncode}"
        if hint:
            message += f" ({hint})"
        super().__init__(message, exit_code=TIMED_OUT if returncode == TIMED_OUT else TOOL_FAILED)
        self.argv = argv
        self.returncode = returncode


def command_name(argv: tuple[str, ...]) -> str:
    """The tool and its subcommands, e.g. `docker buildx build` (the full line was echoed)."""
    import os

    words = [os.path.basename(argv[0])] if argv else ["command"]
    for word in argv[1:3]:
        if word.startswith("-") or "/" in word or "=" in word or "@" in word:
            break
        words.append(word)
    return " ".join(words)


def clip(text: str, limit: int = 160) -> str:
    """`text` on at most `limit` characters, cut between words (`MANIFEST_UNKNOWN` stays
    whole) and marked with `…`; a single word longer than half the limit is cut inside."""
    text = " ".join(text.split())
    if len(text) <= limit:
        return text
    cut = text[: limit - 1]
    space = cut.rfind(" ")
    if space > limit // 2:
        cut = cut[:space]
    return cut.rstrip(" ,;:") + "…"
