"""Command-line mistakes: a misspelt option or task gets the nearest one, exit 2.

Invoke reports `No idea what '--imag' is!` and exits 1, the code of a crossed gate. The
parser's error is replaced, once, when the namespace is loaded: an unknown option names the
task's nearest option, an unknown task the nearest task, as the configuration does for keys,
and every command-line mistake exits 2 (a bad option, as for `ConfigError`).
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable
from typing import Any

_UNKNOWN_RE = re.compile(r"^No idea what '(?P<token>.*)' is!$")
_NEEDS_VALUE_RE = re.compile(r"^Flag <Argument: (?P<name>[^ >(]+).*needed value")


def nearest(word: str, choices: Iterable[str]) -> str:
    """` — did you mean 'x'?` for the closest choice, or ''."""
    match = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f" — did you mean {match[0]!r}?" if match else ""


def explain(message: str, task: str, flags: Iterable[str], tasks: Iterable[str]) -> str:
    """Invoke's parse error as one line naming the nearest option or task and where to look.

    `task` is the task being parsed ('' before the first one), `flags` its options
    (`--image`, `-i`), `tasks` every task name.
    """
    if needs := _NEEDS_VALUE_RE.match(message):
        flag = "--" + needs.group("name").replace("_", "-")
        return f"option {flag}{f' of {task}' if task else ''} needs a value, e.g. {flag}=VALUE"
    match = _UNKNOWN_RE.match(message)
    if not match:
        return message
    token = match.group("token")
    if token.startswith("-") and task:
        long_flags = [f for f in flags if f.startswith("--")]
        return (
            f"unknown option {token!r} for {task}{nearest(token, long_flags)} "
            f"(`uv run invoke {task} --help` lists its options)"
        )
    if token.startswith("-"):
        return f"unknown option {token!r} (`uv run invoke --help` lists them)"
    return f"unknown task {token!r}{nearest(token, tasks)} (`uv run invoke --list` lists the tasks)"


def install() -> None:
    """Make Invoke's parse errors one `error:` line with a suggestion, exit code 2."""
    from invoke.exceptions import Exit
    from invoke.parser.parser import ParseMachine

    if getattr(ParseMachine.error, "buildtasks", False):
        return

    def error(self: Any, msg: str) -> None:
        context = self.context
        task = "" if context is None or context is self.initial else str(context.name or "")
        flags = list(context.flags) if context is not None else []
        line = explain(msg, task, flags, list(self.contexts))
        raise Exit(f"error: {line}", code=2)

    error.buildtasks = True  # type: ignore[attr-defined]
    ParseMachine.error = error  # type: ignore[method-assign]
