"""What a Dockerfile builds from: its base images, with build arguments applied.

Pure: the lab seeds stand-ins for these bases, and a build names the stand-ins it used. Only
the global `ARG`s (those before the first `FROM`) and the `FROM` lines matter here, exactly as
BuildKit reads them: `ARG` defaults may use earlier `ARG`s, `FROM` may use `$VAR`, `${VAR}`,
`${VAR:-default}` and `${VAR:+alternative}`, and a `FROM` naming an earlier stage (or
`scratch`) is no base image.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Mapping

_NAME = re.compile(r"[A-Za-z_]\w*")
_DIRECTIVE = re.compile(r"^#\s*\w+\s*=")
_ESCAPE = re.compile(r"^#\s*escape\s*=\s*(\S)\s*$", re.IGNORECASE)


def instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of each instruction, continuations joined, comments dropped."""
    escape = "\\"
    lines = text.splitlines()
    for line in lines:  # parser directives (`# key=value`) come first, before anything else
        if not _DIRECTIVE.match(line.strip()):
            break
        directive = _ESCAPE.match(line.strip())
        if directive:
            escape = directive.group(1)
    result: list[tuple[str, str]] = []
    pending = ""
    for line in lines:
        stripped = line.strip()
        if stripped.startswith("#"):
            continue  # comments may sit inside a continued instruction
        if stripped.endswith(escape):
            pending += stripped[:-1] + " "
            continue
        whole = (pending + stripped).strip()
        pending = ""
        if whole:
            word, _, rest = whole.partition(" ")
            result.append((word.upper(), rest.strip()))
    if pending.strip():
        word, _, rest = pending.strip().partition(" ")
        result.append((word.upper(), rest.strip()))
    return result


def expand(value: str, variables: Mapping[str, str]) -> str:
    """`value` with `$VAR`, `${VAR}`, `${VAR:-default}` and `${VAR:+alt}` replaced (nested too)."""
    out: list[str] = []
    i = 0
    while i < len(value):
        match = _NAME.match(value, i + 1) if value[i] == "$" else None
        if match:  # $VAR
            out.append(variables.get(match.group(0), ""))
            i = match.end()
            continue
        braced = _NAME.match(value, i + 2) if value.startswith("${", i) else None
        if not braced:
            out.append(value[i])
            i += 1
            continue
        close = _closing(value, braced.end())
        have = variables.get(braced.group(0), "")
        rest = value[braced.end() : close]
        if rest.startswith(":-"):
            out.append(have or expand(rest[2:], variables))
        elif rest.startswith(":+"):
            out.append(expand(rest[2:], variables) if have else "")
        else:
            out.append(have)
        i = close + 1
    return "".join(out)


def _closing(value: str, start: int) -> int:
    """The index of the `}` that closes the `${` whose name ends at `start`."""
    depth = 1
    for i in range(start, len(value)):
        if value.startswith("${", i):
            depth += 1
        elif value[i] == "}":
            depth -= 1
            if depth == 0:
                return i
    return len(value)


def _unquote(value: str) -> str:
    try:
        parts = shlex.split(value)
    except ValueError:
        return value
    return parts[0] if len(parts) == 1 else value


def global_args(text: str, build_args: Mapping[str, str] | None = None) -> dict[str, str]:
    """The global `ARG`s' values: the given build arguments, else the defaults (expanded)."""
    given = dict(build_args or {})
    values: dict[str, str] = {}
    for word, rest in instructions(text):
        if word == "FROM":
            break
        if word != "ARG":
            continue
        for item in shlex.split(rest) if rest else ():
            name, eq, default = item.partition("=")
            if name in given:
                values[name] = given[name]
            elif eq:
                values[name] = expand(_unquote(default), values)
    return values


def base_images(text: str, build_args: Mapping[str, str] | None = None) -> tuple[str, ...]:
    """The images the Dockerfile's stages start from, in order, each once.

    A stage that starts from an earlier stage, or from `scratch`, adds nothing.
    """
    variables = global_args(text, build_args)
    stages: set[str] = set()
    bases: list[str] = []
    for word, rest in instructions(text):
        if word != "FROM":
            continue
        words = [w for w in rest.split() if not w.startswith("--")]
        if not words:
            continue
        image = expand(words[0], variables)
        if image.lower() not in stages and image != "scratch" and image not in bases:
            bases.append(image)
        if len(words) >= 3 and words[1].upper() == "AS":
            stages.add(words[2].lower())
    return tuple(bases)
