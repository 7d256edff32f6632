"""The Handlebars templates of metadata-action: `{{branch}}`, `{{date 'YYYYMMDD' tz='UTC'}}`.

metadata-action renders prefixes, suffixes, values, `enable` and extra labels with
Handlebars. Only the subset its helpers need is read here: `{{name}}`, `{{{name}}}`,
`{{&name}}`, comments, and quoted positional and `key='value'` arguments; blocks and
partials are refused. `render_template` takes the helpers to call by name, so each rule
type chooses what its templates may use (`{{version}}` only in semver and pep440 patterns).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime

from buildtasks.errors import ConfigError
from buildtasks.metadata.dates import format_moment, zone
from buildtasks.metadata.rules import suggest

Helper = Callable[[tuple[str, ...], Mapping[str, str]], str]


@dataclass(frozen=True)
class _Mustache:
    name: str
    params: tuple[str, ...]
    hash: tuple[tuple[str, str], ...]
    escape: bool


_TEMPLATE_ID = r"[^\s!\"#%-,./;->@\[-\^`{-~]+"
_TEMPLATE_TOKEN = re.compile(
    rf"""\s*(?:
        (?P<string>'(?:\\.|[^'\\])*'|"(?:\\.|[^"\\])*")
      | (?P<key>{_TEMPLATE_ID})=
      | (?P<number>-?[0-9]+(?:\.[0-9]+)?(?=\s|$))
      | (?P<id>{_TEMPLATE_ID}(?:[./]{_TEMPLATE_ID})*)
    )""",
    re.VERBOSE,
)
_ESCAPES = str.maketrans(
    {
        "&": "&amp;",
        "<": "&lt;",
        ">": "&gt;",
        '"': "&quot;",
        "'": "&#x27;",
        "`": "&#x60;",
        "=": "&#x3D;",
    }
)


def _parse_template(template: str, where: str) -> tuple[str | _Mustache, ...]:
    """Parse the Handlebars subset metadata-action's templates use."""
    nodes: list[str | _Mustache] = []
    text: list[str] = []
    pos = 0
    while (start := template.find("{{", pos)) != -1:
        if start > 0 and template[start - 1] == "\\":
            text.append(template[pos : start - 1] + "{{")
            pos = start + 2
            continue
        text.append(template[pos:start])
        mustache, pos = _read_mustache(template, start, where)
        if mustache is not None:
            nodes.append("".join(text))
            text = []
            nodes.append(mustache)
    text.append(template[pos:])
    nodes.append("".join(text))
    return tuple(node for node in nodes if node != "")


def _read_mustache(template: str, start: int, where: str) -> tuple[_Mustache | None, int]:
    triple = template.startswith("{{{", start)
    if template.startswith("{{!--", start):
        close, opener = "--}}", 5
    else:
        close, opener = ("}}}", 3) if triple else ("}}", 2)
    end = template.find(close, start + opener)
    if end == -1:
        raise ConfigError(f"unclosed '{{{{' in {where}: '{template}'")
    body = template[start + opener : end]
    after = end + len(close)
    if template.startswith("{{!", start):
        return None, after
    escape = not triple
    if body.startswith("&"):
        body, escape = body[1:], False
    if not body.strip() or body[0] in "#/^>~" or body.endswith("~") or body.split()[0] == "else":
        raise ConfigError(
            f"unsupported template '{template[start:after]}' in {where} — only {{{{name}}}}"
            " and {{name 'arg' key='value'}} are supported"
        )
    return _read_mustache_body(body, template[start:after], escape, where), after


def _read_mustache_body(body: str, whole: str, escape: bool, where: str) -> _Mustache:
    tokens: list[tuple[str, str]] = []
    pos = 0
    while pos < len(body) and body[pos:].strip():
        match = _TEMPLATE_TOKEN.match(body, pos)
        if match is None or match.end() == pos:
            raise ConfigError(f"cannot read template '{whole}' in {where}")
        kind = match.lastgroup or ""
        tokens.append((kind, match.group(kind)))
        pos = match.end()
    if not tokens or tokens[0][0] != "id":
        raise ConfigError(f"template '{whole}' in {where} must start with a name")
    return _build_mustache(tokens, whole, escape, where)


def _build_mustache(
    tokens: list[tuple[str, str]], whole: str, escape: bool, where: str
) -> _Mustache:
    name = tokens[0][1]
    params: list[str] = []
    hashes: list[tuple[str, str]] = []
    rest = tokens[1:]
    while rest:
        kind, text = rest.pop(0)
        if kind == "key":
            if not rest or rest[0][0] not in ("string", "number"):
                raise ConfigError(f"template '{whole}' in {where}: quote the value of {text}=")
            hashes.append((text, _template_literal(*rest.pop(0))))
        elif kind in ("string", "number"):
            params.append(_template_literal(kind, text))
        else:
            raise ConfigError(
                f"unquoted argument '{text}' in template '{whole}' in {where} — write '{text}'"
            )
    return _Mustache(name, tuple(params), tuple(hashes), escape)


def _template_literal(kind: str, text: str) -> str:
    if kind == "number":
        return text
    return re.sub(r"\\(.)", r"\1", text[1:-1])


def render_template(template: str, helpers: Mapping[str, Helper], where: str) -> str:
    """Render `template`, calling `helpers[name](params, hash)` for each `{{name ...}}`."""
    out: list[str] = []
    for node in _parse_template(template, where):
        if isinstance(node, str):
            out.append(node)
            continue
        helper = helpers.get(node.name)
        if helper is None:
            names = sorted(helpers)
            hint = suggest(node.name, names, "names here")
            raise ConfigError(f"unknown template '{{{{{node.name}}}}}' in {where}{hint}")
        value = helper(node.params, dict(node.hash))
        out.append(value.translate(_ESCAPES) if node.escape else value)
    return "".join(out)


def is_raw_statement(pattern: str) -> bool:
    """Tell whether `pattern` is exactly one `{{raw}}` (metadata-action's isRawStatement)."""
    try:
        nodes = _parse_template(pattern, "pattern")
    except ConfigError:
        return False
    return len(nodes) == 1 and isinstance(nodes[0], _Mustache) and nodes[0].name == "raw"


def constant_helper(name: str, value: Callable[[], str]) -> Helper:
    """Return a helper `{{name}}` that takes no arguments and renders `value()`."""

    def helper(params: tuple[str, ...], hashes: Mapping[str, str]) -> str:
        if params or hashes:
            raise ConfigError(f"{{{{{name}}}}} takes no arguments")
        return value()

    return helper


def date_helper(name: str, moment: datetime) -> Helper:
    """Return a helper `{{name 'format' tz='Zone'}}` that formats `moment` (default UTC)."""

    def helper(params: tuple[str, ...], hashes: Mapping[str, str]) -> str:
        if len(params) != 1:
            raise ConfigError(
                f"{{{{{name}}}}} needs one quoted format, like {{{{{name} 'YYYYMMDD'}}}}"
            )
        for key in hashes:
            if key != "tz":
                raise ConfigError(f"unknown {{{{{name}}}}} attribute '{key}' — only tz= is known")
        return format_moment(moment.astimezone(zone(hashes.get("tz", "UTC"))), params[0])

    return helper
