"""JavaScript regular expressions (`type=match` and `match=`) run with Python's `re`.

metadata-action builds a `RegExp` from the pattern and calls `text.match(regex)`; this
module compiles the same pattern (`/body/flags` or a plain string) and returns what that
call would.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from buildtasks.errors import ConfigError

#: The JavaScript flags a `/body/flags` pattern may carry, as `re` flags.
JS_FLAGS = {"i": re.IGNORECASE, "m": re.MULTILINE, "s": re.DOTALL, "g": 0, "u": 0}


@dataclass(frozen=True)
class JsRegex:
    """A compiled pattern and whether it had JavaScript's `g` flag."""

    compiled: re.Pattern[str]
    global_: bool

    @property
    def groups(self) -> int:
        return self.compiled.groups


def compile_js_regex(pattern: str, source: str, *, plain: bool = False) -> JsRegex:
    """Compile a pattern as metadata-action does: `/body/flags` or a plain RegExp string."""
    body, flags, global_ = pattern, 0, False
    literal = None if plain else re.fullmatch(r"/(.+)/(.*)", pattern, re.DOTALL)
    if literal:
        body = literal.group(1)
        for flag in literal.group(2):
            if flag not in JS_FLAGS:
                raise ConfigError(f"unsupported regex flag '{flag}' in '{source}'")
            flags |= JS_FLAGS[flag]
            global_ = global_ or flag == "g"
    body = re.sub(r"\(\?<(?![=!])", "(?P<", body)
    try:
        return JsRegex(re.compile(body, flags), global_)
    except re.error as err:
        raise ConfigError(f"invalid pattern '{pattern}' in '{source}': {err}") from None


def js_match(regex: JsRegex, text: str) -> list[str | None] | None:
    """Return what JavaScript's `text.match(regex)` gives, as a list (None for no match)."""
    if regex.global_:
        found = [match.group(0) for match in regex.compiled.finditer(text)]
        return list(found) if found else None
    match = regex.compiled.search(text)
    if match is None:
        return None
    return [match.group(0), *match.groups()]
