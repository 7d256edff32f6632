"""Docker tags, labels and annotations computed the way docker/metadata-action does.

The `tags:` and `flavor:` lines of a metadata-action step can be pasted unchanged into
pyproject.toml: `parse_tag_rules` and `parse_flavor` read them, `compute` turns them plus a
`Context` (what the action reads from the GitHub event) into a `Metadata`. Everything here
is pure: no I/O and no environment reads; `options_from_env` reads the `DOCKER_METADATA_*`
knobs from a mapping the caller passes in.

Semantics follow metadata-action's source (src/tag.ts, src/flavor.ts, src/meta.ts):

* rules are sorted by `priority` (stable, highest first; defaults schedule 1000, semver
  and pep440 900, match 800, edge 700, ref 600, raw 200, sha 100); the first rule that
  yields a value is the version, the others follow in order without duplicates;
* the first rule that yields a value also decides `latest` when `flavor` says
  `latest=auto`: only `ref,event=tag`, `match` and non-prerelease `semver`/`pep440` do;
* prereleases only ever produce `{{version}}` (or `{{raw}}` when the pattern is exactly
  `{{raw}}`), so `v2.0.0-rc.1` never moves `2` or `2.0`;
* `prefix`/`suffix` on a rule replace the flavor's; `ref,event=pr` defaults its prefix to
  `pr-` and `sha` to `sha-`;
* Handlebars-style templates (`{{branch}}`, `{{date 'YYYYMMDD' tz='Asia/Tokyo'}}`, ...)
  work in `prefix`, `suffix`, `value`, `enable` and in extra labels and annotations;
* tags are sanitised (runs of invalid characters become `-`; leading `.`/`-` are dropped
  and tags are cut at 128 characters, Docker's limits), image names are lowercased and
  validated, and the OCI labels are sorted by key.

Because the lines live in pyproject.toml, nothing substitutes GitHub's `${{ ... }}` before
they are read, so this module does it (see `buildtasks.expressions`), exactly where GitHub
would: on the whole line, before it is split into attributes.
"""

from __future__ import annotations

import calendar
import difflib
import math
import re
import types
import zoneinfo
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, timedelta
from typing import Any

from buildtasks import expressions
from buildtasks.errors import ConfigError

DEFAULT_PRIORITIES: Mapping[str, int] = types.MappingProxyType(
    {
        "schedule": 1000,
        "semver": 900,
        "pep440": 900,
        "match": 800,
        "edge": 700,
        "ref": 600,
        "raw": 200,
        "sha": 100,
    }
)
TAG_TYPES = tuple(DEFAULT_PRIORITIES)
REF_EVENTS = ("branch", "tag", "pr")
SHA_FORMATS = ("short", "long")
LATEST_MODES = ("auto", "true", "false")
FLAVOR_KEYS = ("latest", "prefix", "suffix", "onlatest")
ANNOTATION_LEVELS = ("manifest", "index", "manifest-descriptor", "index-descriptor")
SHORT_SHA_LENGTH = 7
MAX_TAG_LENGTH = 128
_COMMON_ATTRIBUTES = ("enable", "priority", "prefix", "suffix")
_TYPE_ATTRIBUTES: Mapping[str, tuple[str, ...]] = types.MappingProxyType(
    {
        "schedule": ("pattern",),
        "semver": ("pattern", "value", "match"),
        "pep440": ("pattern", "value", "match"),
        "match": ("pattern", "group", "value"),
        "edge": ("branch",),
        "ref": ("event",),
        "raw": ("value",),
        "sha": ("format",),
    }
)

#: metadata-action's own `tags` default, used when no rule is given.
METADATA_ACTION_DEFAULT_TAGS = (
    "type=schedule",
    "type=ref,event=branch",
    "type=ref,event=tag",
    "type=ref,event=pr",
)

#: This project's tagging scheme, written as metadata-action `tags` lines.
#:
#: * push to `main`    -> `main-<sha7>`, `latest`
#: * push to `develop` -> `develop-<sha7>`, `develop`
#: * push of tag `v1.2.3` -> `1.2.3`, `1.2`, `1`, `v1.2.3` (no `0` for `v0.x`, and a
#:   prerelease `v1.3.0-rc.1` gives only `1.3.0-rc.1` and `v1.3.0-rc.1`)
#: * pull request N    -> `pr-N`
#: * workflow_dispatch -> `dev`, `staging` or `prod` when the `suffix` input is one of them
#:   (compared case-insensitively, as GitHub's `==` does), else `manual-<run_number>`
#: * anything else (other branches, schedules) -> no tags
#:
#: `latest` follows `main`, not releases: `DEFAULT_FLAVOR` turns metadata-action's
#: `latest=auto` off (auto would also add `latest` on every release tag, so `latest` would
#: flip between the last release and the last `main` build), and the explicit `raw` rule
#: adds it on `main` pushes only. The `<branch>-<sha7>` rule runs at priority 700 so the
#: immutable tag, not `latest`/`develop`, becomes the version and the OCI version label.
DEFAULT_TAG_RULES = (
    "type=raw,value=latest,"
    "enable=${{ github.event_name == 'push' && github.ref == 'refs/heads/main' }}",
    "type=ref,event=branch,"
    "enable=${{ github.event_name == 'push' && github.ref == 'refs/heads/develop' }}",
    "type=sha,prefix={{branch}}-,priority=700,"
    "enable=${{ github.event_name == 'push'"
    " && (github.ref == 'refs/heads/main' || github.ref == 'refs/heads/develop') }}",
    "type=semver,pattern={{version}},enable=${{ github.event_name == 'push' }}",
    "type=semver,pattern={{major}}.{{minor}},enable=${{ github.event_name == 'push' }}",
    "type=semver,pattern={{major}},"
    "enable=${{ github.event_name == 'push' && !startsWith(github.ref, 'refs/tags/v0.') }}",
    "type=ref,event=tag,enable=${{ github.event_name == 'push' }}",
    "type=ref,event=pr",
    "type=raw,value=dev,"
    "enable=${{ github.event_name == 'workflow_dispatch' && inputs.suffix == 'dev' }}",
    "type=raw,value=staging,"
    "enable=${{ github.event_name == 'workflow_dispatch' && inputs.suffix == 'staging' }}",
    "type=raw,value=prod,"
    "enable=${{ github.event_name == 'workflow_dispatch' && inputs.suffix == 'prod' }}",
    "type=raw,value=manual-${{ github.run_number }},"
    "enable=${{ github.event_name == 'workflow_dispatch'"
    " && !(inputs.suffix == 'dev' || inputs.suffix == 'staging' || inputs.suffix == 'prod') }}",
)
#: `latest` is never added implicitly; see `DEFAULT_TAG_RULES`.
DEFAULT_FLAVOR = ("latest=false",)

#: Stands in for a `${{ ... }}` while a line is checked before its values are known.
_PENDING = "\x00"


# ── values ───────────────────────────────────────────────────────────────────


@dataclass(frozen=True)
class Context:
    """What metadata-action reads from the GitHub context and the repository."""

    event_name: str
    ref: str
    sha: str
    default_branch: str = ""
    repository: str = ""
    server_url: str = "https://github.com"
    run_number: str = ""
    run_id: str = ""
    base_ref: str = ""
    head_ref: str = ""
    pr_head_sha: str = ""
    description: str = ""
    license: str = ""
    inputs: Mapping[str, str] = field(default_factory=dict)
    #: Used by `{{commit_date}}`; `None` falls back to `now`, as metadata-action does.
    commit_date: datetime | None = None


@dataclass(frozen=True)
class TagRule:
    """One parsed `tags` line: its type and attributes with metadata-action's defaults."""

    type: str
    attrs: Mapping[str, str]
    source: str
    #: True when the line holds `${{ ... }}`: it is read again once the values are known.
    deferred: bool = False

    @property
    def priority(self) -> float:
        """Return the rule's sort key (higher sorts first)."""
        return float(self.attrs["priority"])


@dataclass(frozen=True)
class Flavor:
    """The parsed `flavor` lines."""

    latest: str = "auto"
    prefix: str = ""
    prefix_latest: bool = False
    suffix: str = ""
    suffix_latest: bool = False
    source: tuple[str, ...] = ()
    deferred: bool = False


@dataclass(frozen=True)
class ImageSpec:
    """One `images` entry: a lowercased base name and whether it is enabled."""

    name: str
    enable: bool = True
    source: str = ""
    deferred: bool = False


@dataclass(frozen=True)
class Metadata:
    """The outputs metadata-action would set."""

    version: str
    #: Full references, images outer and tags inner: `a:1`, `a:latest`, `b:1`, `b:latest`.
    tags: tuple[str, ...]
    #: The same tags without the image name (metadata-action's `tag-names` output).
    tag_names: tuple[str, ...]
    #: Default OCI labels merged with the extra ones, sorted by key.
    labels: Mapping[str, str]
    #: `level:key=value` for every annotation level, levels outer.
    annotations: tuple[str, ...]
    images: tuple[str, ...] = ()
    #: What metadata-action would have logged as warnings (e.g. a tag that is not semver).
    warnings: tuple[str, ...] = ()


# ── reading lines ────────────────────────────────────────────────────────────


def _entries(lines: Sequence[str] | str) -> tuple[str, ...]:
    """Drop blank lines and `#` comment lines, as metadata-action's input reader does."""
    if isinstance(lines, str):
        lines = lines.splitlines()
    out: list[str] = []
    for line in lines:
        text = line.strip()
        if text and not text.startswith("#"):
            out.append(text)
    return tuple(out)


def _csv_fields(line: str, source: str) -> list[str]:
    """Split one line like csv-parse: `,` separates, `"..."` quotes a whole field."""
    fields: list[str] = []
    pos, end = 0, len(line)
    while True:
        if pos < end and line[pos] == '"':
            value, pos = _quoted_field(line, pos, source)
            if pos < end and line[pos] != ",":
                raise ConfigError(f"text after a closing quote in '{source}' — quote whole fields")
        else:
            comma = line.find(",", pos)
            stop = end if comma == -1 else comma
            value = line[pos:stop]
            if '"' in value:
                raise ConfigError(
                    f"stray '\"' in '{source}' — quote the whole field, like \"pattern=a,b\""
                )
            pos = stop
        fields.append(value)
        if pos >= end:
            return fields
        pos += 1
        if pos == end:
            fields.append("")
            return fields


def _quoted_field(line: str, pos: int, source: str) -> tuple[str, int]:
    chars: list[str] = []
    pos += 1
    while pos < len(line):
        if line[pos] == '"':
            if line.startswith('""', pos):
                chars.append('"')
                pos += 2
                continue
            return "".join(chars), pos + 1
        chars.append(line[pos])
        pos += 1
    raise ConfigError(f"unclosed '\"' in '{source}'")


def _split_attribute(text: str, source: str) -> tuple[str | None, str]:
    """Split `key=value` at the first `=`; a field without one is a bare value."""
    if text.strip() == "":
        raise ConfigError(f"empty field in '{source}' — remove the stray ','")
    index = text.find("=")
    if index <= 0:
        return None, text.strip()
    key = text[:index].strip().lower()
    if not key:
        raise ConfigError(f"attribute without a name in '{source}'")
    return key, text[index + 1 :].strip()


def _suggest(word: str, choices: Sequence[str], what: str) -> str:
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.5)
    if close:
        return f" — did you mean '{close[0]}'?"
    return f" — valid {what}: {', '.join(choices)}"


def _pending(value: str) -> bool:
    return _PENDING in value


def _probe(line: str) -> str:
    """Check the line's `${{ ... }}` and stand a placeholder in for each one."""
    expressions.check_text(line)
    return expressions.replace_spans(line, _PENDING)


# ── tag rules ────────────────────────────────────────────────────────────────


def parse_tag_rules(lines: Sequence[str] | str) -> tuple[TagRule, ...]:
    """Parse metadata-action `tags` lines; no lines means metadata-action's default rules."""
    entries = _entries(lines) or METADATA_ACTION_DEFAULT_TAGS
    return tuple(_parse_rule(entry) for entry in entries)


def _parse_rule(line: str) -> TagRule:
    if not expressions.has_expression(line):
        return _read_rule(line, line)
    rule = _read_rule(_probe(line), line)
    return replace(rule, deferred=True)


def _read_rule(line: str, source: str) -> TagRule:
    kind: str | None = None
    attrs: dict[str, str] = {}
    for text in _csv_fields(line, source):
        key, value = _split_attribute(text, source)
        if key is None:
            attrs["value"] = value
        elif key == "type":
            kind = _check_type(value, source)
        else:
            attrs[key] = value
    kind = kind or "raw"
    _check_attribute_names(kind, attrs, source)
    _apply_type_defaults(kind, attrs, source)
    attrs.setdefault("enable", "true")
    attrs.setdefault("priority", str(DEFAULT_PRIORITIES[kind]))
    _check_common_values(attrs, source)
    return TagRule(kind, types.MappingProxyType(attrs), source)


def _check_type(value: str, source: str) -> str:
    if _pending(value):
        raise ConfigError(f"'type' cannot come from an expression in '{source}'")
    if value not in TAG_TYPES:
        hint = _suggest(value, TAG_TYPES, "types")
        raise ConfigError(f"unknown tag type '{value}' in '{source}'{hint}")
    return value


def _check_attribute_names(kind: str, attrs: Mapping[str, str], source: str) -> None:
    allowed = _COMMON_ATTRIBUTES + _TYPE_ATTRIBUTES[kind]
    for key in attrs:
        if key in allowed:
            continue
        if key == "value":
            raise ConfigError(
                f"type={kind} takes no value, but '{source}' gives it '{attrs[key]}'"
                " (a word without '=' is read as value=)"
            )
        hint = _suggest(key, ("type", *allowed), f"attributes for type={kind}")
        raise ConfigError(f"unknown tag attribute '{key}' in '{source}'{hint}")


def _require(attrs: Mapping[str, str], key: str, kind: str, source: str) -> None:
    if key not in attrs:
        raise ConfigError(f"type={kind} needs a '{key}' attribute in '{source}'")


def _apply_type_defaults(kind: str, attrs: dict[str, str], source: str) -> None:
    if kind == "schedule":
        attrs.setdefault("pattern", "nightly")
    elif kind in ("semver", "pep440"):
        _require(attrs, "pattern", kind, source)
        attrs.setdefault("value", "")
        attrs.setdefault("match", "")
        _check_semver_match(attrs["match"], source)
    elif kind == "match":
        _require(attrs, "pattern", kind, source)
        attrs.setdefault("group", "0")
        attrs.setdefault("value", "")
        _check_group(attrs["group"], source)
        if not _pending(attrs["pattern"]):
            _compile_js_regex(attrs["pattern"], source)
    elif kind == "edge":
        attrs.setdefault("branch", "")
    elif kind == "ref":
        _require(attrs, "event", kind, source)
        _check_choice(attrs["event"], REF_EVENTS, "event", source)
        if attrs["event"] == "pr":
            attrs.setdefault("prefix", "pr-")
    elif kind == "raw":
        _require(attrs, "value", kind, source)
    elif kind == "sha":
        attrs.setdefault("prefix", "sha-")
        attrs.setdefault("format", "short")
        _check_choice(attrs["format"], SHA_FORMATS, "format", source)


def _check_choice(value: str, choices: Sequence[str], key: str, source: str) -> None:
    if _pending(value) or value in choices:
        return
    hint = _suggest(value, choices, f"{key} values")
    raise ConfigError(f"invalid {key} '{value}' in '{source}'{hint}")


def _check_group(value: str, source: str) -> None:
    if not _pending(value) and not re.fullmatch(r"[0-9]+", value.strip()):
        raise ConfigError(f"invalid match group '{value}' in '{source}' — use a group number")


def _check_semver_match(value: str, source: str) -> None:
    if not value or _pending(value):
        return
    compiled = _compile_js_regex(value, source, plain=True)
    if compiled.groups < 1:
        raise ConfigError(f"match '{value}' in '{source}' needs a capture group, like 'app-(.*)'")


def _check_common_values(attrs: Mapping[str, str], source: str) -> None:
    enable = attrs["enable"]
    if not _pending(enable) and "{{" not in enable and enable not in ("true", "false"):
        hint = _suggest(enable, ("true", "false"), "values")
        raise ConfigError(f"invalid enable '{enable}' in '{source}'{hint}")
    priority = attrs["priority"]
    if not _pending(priority) and not _is_number(priority):
        raise ConfigError(f"invalid priority '{priority}' in '{source}' — use a number")


def _is_number(text: str) -> bool:
    return (
        re.fullmatch(r"\s*[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?\s*", text)
        is not None
    )


# ── flavor ───────────────────────────────────────────────────────────────────


def parse_flavor(lines: Sequence[str] | str) -> Flavor:
    """Parse metadata-action `flavor` lines (`latest=`, `prefix=`, `suffix=`, `onlatest=`)."""
    entries = _entries(lines)
    if not any(expressions.has_expression(entry) for entry in entries):
        return _read_flavor(entries, entries)
    flavor = _read_flavor(tuple(_probe(entry) for entry in entries), entries)
    return replace(flavor, deferred=True)


def _read_flavor(entries: Sequence[str], sources: Sequence[str]) -> Flavor:
    values: dict[str, Any] = {"source": tuple(sources)}
    for line, source in zip(entries, sources, strict=True):
        target = ""
        for text in _csv_fields(line, source):
            key, value = _split_attribute(text, source)
            if key is None:
                raise ConfigError(f"flavor entry '{source}' needs key=value")
            target = _read_flavor_field(key, value, target, values, source)
    return Flavor(**values)


def _read_flavor_field(
    key: str, value: str, target: str, values: dict[str, Any], source: str
) -> str:
    if key == "latest":
        _check_choice(value, LATEST_MODES, "latest", source)
        values["latest"] = value
    elif key in ("prefix", "suffix"):
        values[key] = value
        return key
    elif key == "onlatest":
        _check_choice(value, ("true", "false"), "onlatest", source)
        if not target:
            raise ConfigError(f"onlatest must follow prefix= or suffix= in '{source}'")
        values[f"{target}_latest"] = value == "true"
    else:
        hint = _suggest(key, FLAVOR_KEYS, "flavor keys")
        raise ConfigError(f"unknown flavor key '{key}' in '{source}'{hint}")
    return target


# ── images ───────────────────────────────────────────────────────────────────

_DOMAIN_PART = r"(?:[a-z0-9]|[a-z0-9][a-z0-9-]*[a-z0-9])"
_PATH_PART = r"[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*"
_IMAGE_NAME = re.compile(
    rf"(?:(?:{_DOMAIN_PART}(?:\.{_DOMAIN_PART})*|\[[0-9a-f:]+\])(?::[0-9]+)?/)?"
    rf"{_PATH_PART}(?:/{_PATH_PART})*",
    re.ASCII,
)


def parse_images(lines: Sequence[str] | str) -> tuple[ImageSpec, ...]:
    """Parse metadata-action `images` lines (`name/app`, `name=...,enable=...`)."""
    entries = _entries(lines)
    if not any(expressions.has_expression(entry) for entry in entries):
        return _read_images(entries, entries)
    probes = tuple(_probe(entry) for entry in entries)
    return tuple(replace(image, deferred=True) for image in _read_images(probes, entries))


def _read_images(entries: Sequence[str], sources: Sequence[str]) -> tuple[ImageSpec, ...]:
    if len(entries) == 1:
        fields = _csv_fields(entries[0], sources[0])
        if all("=" not in text for text in fields):
            return tuple(_image(text.strip(), True, sources[0]) for text in fields)
    return tuple(_read_image(line, source) for line, source in zip(entries, sources, strict=True))


def _read_image(line: str, source: str) -> ImageSpec:
    name, enable = "", True
    for text in _csv_fields(line, source):
        key, value = _split_attribute(text, source)
        if key is None or key == "name":
            name = value
        elif key == "enable":
            _check_choice(value, ("true", "false"), "enable", source)
            enable = value != "false"
        else:
            hint = _suggest(key, ("name", "enable"), "image attributes")
            raise ConfigError(f"unknown image attribute '{key}' in '{source}'{hint}")
    return _image(name, enable, source)


def _image(name: str, enable: bool, source: str) -> ImageSpec:
    if not name:
        raise ConfigError(f"image entry '{source}' has no name")
    lowered = name.lower()
    if not _pending(lowered):
        check_image_name(lowered)
    return ImageSpec(lowered, enable, source)


def check_image_name(name: str) -> None:
    """Raise `ConfigError` unless `name` is a valid image reference without tag or digest."""
    last = name.rsplit("/", 1)[-1]
    if "@" in name or ":" in last:
        raise ConfigError(
            f"image '{name}' must not carry a tag or digest — tags come from the tag rules"
        )
    if len(name) > 255 or not _IMAGE_NAME.fullmatch(name):
        raise ConfigError(
            f"invalid image name '{name}' — use lowercase letters, digits and separators,"
            " like 'ghcr.io/owner/app'"
        )


# ── options ──────────────────────────────────────────────────────────────────


def options_from_env(env: Mapping[str, str]) -> dict[str, Any]:
    """Read metadata-action's `DOCKER_METADATA_*` settings from `env` as `compute` keywords."""
    return {
        "short_sha_length": _short_sha_length(env.get("DOCKER_METADATA_SHORT_SHA_LENGTH", "")),
        "pr_head_sha": "true" in env.get("DOCKER_METADATA_PR_HEAD_SHA", "").lower(),
        "annotation_levels": parse_annotation_levels(
            env.get("DOCKER_METADATA_ANNOTATIONS_LEVELS", "")
        ),
    }


def _short_sha_length(text: str) -> int:
    if not text.strip():
        return SHORT_SHA_LENGTH
    if not re.fullmatch(r"[0-9]+", text.strip()) or int(text) < 1:
        raise ConfigError(
            f"DOCKER_METADATA_SHORT_SHA_LENGTH={text!r} is not a positive whole number, like 12"
        )
    return int(text)


def parse_annotation_levels(text: str) -> tuple[str, ...]:
    """Split a `DOCKER_METADATA_ANNOTATIONS_LEVELS` value (default `manifest`)."""
    if not text.strip():
        return ("manifest",)
    levels = tuple(level.strip() for level in text.split(","))
    for level in levels:
        base = re.sub(r"\[[^\]]*\]$", "", level)
        if base not in ANNOTATION_LEVELS:
            hint = _suggest(base, ANNOTATION_LEVELS, "levels")
            raise ConfigError(f"unknown annotation level '{level}'{hint}")
    return levels


# ── templates ({{...}}) ──────────────────────────────────────────────────────

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
            hint = _suggest(node.name, names, "names here")
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


def _constant(name: str, value: Callable[[], str]) -> Helper:
    def helper(params: tuple[str, ...], hashes: Mapping[str, str]) -> str:
        if params or hashes:
            raise ConfigError(f"{{{{{name}}}}} takes no arguments")
        return value()

    return helper


def _date_helper(name: str, moment: datetime) -> Helper:
    def helper(params: tuple[str, ...], hashes: Mapping[str, str]) -> str:
        if len(params) != 1:
            raise ConfigError(
                f"{{{{{name}}}}} needs one quoted format, like {{{{{name} 'YYYYMMDD'}}}}"
            )
        for key in hashes:
            if key != "tz":
                raise ConfigError(f"unknown {{{{{name}}}}} attribute '{key}' — only tz= is known")
        return format_moment(moment.astimezone(_zone(hashes.get("tz", "UTC"))), params[0])

    return helper


def _zone(name: str) -> zoneinfo.ZoneInfo:
    try:
        return zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        raise ConfigError(
            f"unknown time zone '{name}' — use an IANA name like 'Europe/Paris'"
        ) from None


# ── moment.js date formats ──────────────────────────────────────────────────

_LOCALE_FORMATS = {
    "LTS": "h:mm:ss A",
    "LT": "h:mm A",
    "L": "MM/DD/YYYY",
    "LL": "MMMM D, YYYY",
    "LLL": "MMMM D, YYYY h:mm A",
    "LLLL": "dddd, MMMM D, YYYY h:mm A",
    "l": "M/D/YYYY",
    "ll": "MMM D, YYYY",
    "lll": "MMM D, YYYY h:mm A",
    "llll": "ddd, MMM D, YYYY h:mm A",
}
_LOCALE_TOKEN = re.compile(r"(\[[^\[]*\])|(\\)?(LTS|LT|LL?L?L?|l{1,4})")
_MOMENT_TOKEN = re.compile(
    r"(\[[^\[]*\])|(\\)?([Hh]mm(ss)?|Mo|MM?M?M?|Do|DDDo|DD?D?D?|ddd?d?|do?|w[o|w]?|W[o|W]?"
    r"|Qo?|N{1,5}|YYYYYY|YYYYY|YYYY|YY|y{2,4}|yo?|gg(ggg?)?|GG(GGG?)?|e|E|a|A|hh?|HH?|kk?"
    r"|mm?|ss?|S{1,9}|x|X|zz?|ZZ?|.)",
    re.DOTALL,
)
_MONTHS = tuple(calendar.month_name)[1:]
_WEEKDAYS = ("Sunday", "Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday")
_UNSUPPORTED_DATE_TOKENS = re.compile(r"N{1,5}|y{1,4}|yo|YYYYY|YYYYYY|gg|ggggg|GG|GGGGG")


def format_moment(moment: datetime, fmt: str) -> str:
    """Format `moment` with a moment.js format string (English locale)."""
    for _ in range(5):
        expanded = _LOCALE_TOKEN.sub(_expand_locale, fmt)
        if expanded == fmt:
            break
        fmt = expanded
    return "".join(_format_token(moment, match.group()) for match in _MOMENT_TOKEN.finditer(fmt))


def _expand_locale(match: re.Match[str]) -> str:
    if match.group(1) or match.group(2):
        return match.group()
    return _LOCALE_FORMATS[match.group(3)]


def _format_token(moment: datetime, token: str) -> str:
    if token.startswith("["):
        return token[1:-1] if token.endswith("]") else token
    if token.startswith("\\"):
        return token[1:]
    if _UNSUPPORTED_DATE_TOKENS.fullmatch(token):
        raise ConfigError(
            f"date token '{token}' is not supported — wrap literal text in [brackets]"
        )
    formatter = _DATE_TOKENS.get(token)
    if formatter is not None:
        return formatter(moment)
    if token[0] in "Hh" and token[1:] in ("mm", "mmss"):
        return "".join(
            _DATE_TOKENS[part](moment) for part in (token[0], "mm", "ss")[: len(token) - 1]
        )
    if re.fullmatch("S{1,9}", token):
        return _fraction(moment, len(token))
    return token


def _ordinal(number: int) -> str:
    if (number % 100) // 10 == 1:
        return f"{number}th"
    return f"{number}{ {1: 'st', 2: 'nd', 3: 'rd'}.get(number % 10, 'th') }"


def _fraction(moment: datetime, digits: int) -> str:
    millis = moment.microsecond // 1000
    if digits <= 3:
        return f"{millis:03d}"[:digits]
    return f"{millis:03d}".ljust(digits, "0")


def _offset(moment: datetime, sep: str) -> str:
    offset = moment.utcoffset() or timedelta(0)
    minutes = int(offset.total_seconds() // 60)
    sign = "-" if minutes < 0 else "+"
    hours, mins = divmod(abs(minutes), 60)
    return f"{sign}{hours:02d}{sep}{mins:02d}"


def _week(moment: datetime, dow: int, doy: int) -> tuple[int, int]:
    """Return moment's (week, week-year) for a locale's first weekday `dow` and `doy`."""
    year = moment.year
    week = (moment.timetuple().tm_yday - _first_week_offset(year, dow, doy) - 1) // 7 + 1
    if week < 1:
        return week + _weeks_in_year(year - 1, dow, doy), year - 1
    if week > _weeks_in_year(year, dow, doy):
        return week - _weeks_in_year(year, dow, doy), year + 1
    return week, year


def _first_week_offset(year: int, dow: int, doy: int) -> int:
    fwd = 7 + dow - doy
    weekday = (date(year, 1, fwd).isoweekday()) % 7
    return -((7 + weekday - dow) % 7) + fwd - 1


def _weeks_in_year(year: int, dow: int, doy: int) -> int:
    days = 366 if calendar.isleap(year) else 365
    return (days - _first_week_offset(year, dow, doy) + _first_week_offset(year + 1, dow, doy)) // 7


def _year(year: int) -> str:
    return f"{year:04d}" if year <= 9999 else f"+{year}"


def _hour12(moment: datetime) -> int:
    return moment.hour % 12 or 12


_DATE_TOKENS: Mapping[str, Callable[[datetime], str]] = {
    "M": lambda m: str(m.month),
    "Mo": lambda m: _ordinal(m.month),
    "MM": lambda m: f"{m.month:02d}",
    "MMM": lambda m: _MONTHS[m.month - 1][:3],
    "MMMM": lambda m: _MONTHS[m.month - 1],
    "Q": lambda m: str((m.month - 1) // 3 + 1),
    "Qo": lambda m: _ordinal((m.month - 1) // 3 + 1),
    "D": lambda m: str(m.day),
    "Do": lambda m: _ordinal(m.day),
    "DD": lambda m: f"{m.day:02d}",
    "DDD": lambda m: str(m.timetuple().tm_yday),
    "DDDo": lambda m: _ordinal(m.timetuple().tm_yday),
    "DDDD": lambda m: f"{m.timetuple().tm_yday:03d}",
    "d": lambda m: str(m.isoweekday() % 7),
    "do": lambda m: _ordinal(m.isoweekday() % 7),
    "dd": lambda m: _WEEKDAYS[m.isoweekday() % 7][:2],
    "ddd": lambda m: _WEEKDAYS[m.isoweekday() % 7][:3],
    "dddd": lambda m: _WEEKDAYS[m.isoweekday() % 7],
    "e": lambda m: str(m.isoweekday() % 7),
    "E": lambda m: str(m.isoweekday()),
    "w": lambda m: str(_week(m, 0, 6)[0]),
    "wo": lambda m: _ordinal(_week(m, 0, 6)[0]),
    "ww": lambda m: f"{_week(m, 0, 6)[0]:02d}",
    "W": lambda m: str(_week(m, 1, 4)[0]),
    "Wo": lambda m: _ordinal(_week(m, 1, 4)[0]),
    "WW": lambda m: f"{_week(m, 1, 4)[0]:02d}",
    "gggg": lambda m: f"{_week(m, 0, 6)[1]:04d}",
    "GGGG": lambda m: f"{_week(m, 1, 4)[1]:04d}",
    "Y": lambda m: _year(m.year),
    "YY": lambda m: f"{m.year % 100:02d}",
    "YYYY": lambda m: _year(m.year),
    "H": lambda m: str(m.hour),
    "HH": lambda m: f"{m.hour:02d}",
    "h": lambda m: str(_hour12(m)),
    "hh": lambda m: f"{_hour12(m):02d}",
    "k": lambda m: str(m.hour or 24),
    "kk": lambda m: f"{m.hour or 24:02d}",
    "m": lambda m: str(m.minute),
    "mm": lambda m: f"{m.minute:02d}",
    "s": lambda m: str(m.second),
    "ss": lambda m: f"{m.second:02d}",
    "a": lambda m: "pm" if m.hour > 11 else "am",
    "A": lambda m: "PM" if m.hour > 11 else "AM",
    "Z": lambda m: _offset(m, ":"),
    "ZZ": lambda m: _offset(m, ""),
    "X": lambda m: str(math.floor(m.timestamp())),
    "x": lambda m: str(math.floor(m.timestamp() * 1000)),
    "z": lambda m: m.tzname() or "",
    "zz": lambda m: m.tzname() or "",
}


# ── semver and PEP 440 ───────────────────────────────────────────────────────

_SEMVER_NUMBER = r"(?:0|[1-9][0-9]*)"
_SEMVER_PRE_ID = r"(?:0|[1-9][0-9]*|[0-9]*[a-zA-Z-][a-zA-Z0-9-]*)"
_SEMVER = re.compile(
    rf"v?({_SEMVER_NUMBER})\.({_SEMVER_NUMBER})\.({_SEMVER_NUMBER})"
    rf"(?:-({_SEMVER_PRE_ID}(?:\.{_SEMVER_PRE_ID})*))?"
    r"(?:\+([0-9a-zA-Z-]+(?:\.[0-9a-zA-Z-]+)*))?"
)
_MAX_SAFE_INTEGER = 2**53 - 1


@dataclass(frozen=True)
class SemVer:
    """A version as node-semver parses it (strict), with the fields templates can read."""

    raw: str
    major: int
    minor: int
    patch: int
    prerelease: tuple[str, ...]

    @property
    def version(self) -> str:
        """Return `major.minor.patch` plus `-prerelease`; build metadata is dropped."""
        core = f"{self.major}.{self.minor}.{self.patch}"
        return f"{core}-{'.'.join(self.prerelease)}" if self.prerelease else core


def parse_semver(text: str) -> SemVer | None:
    """Parse like node-semver's `valid()`: optional `v`, no leading zeros, else None."""
    if len(text) > 256:
        return None
    match = _SEMVER.fullmatch(text.strip())
    if match is None:
        return None
    numbers = [int(match.group(index)) for index in (1, 2, 3)]
    if any(number > _MAX_SAFE_INTEGER for number in numbers):
        return None
    prerelease = tuple(match.group(4).split(".")) if match.group(4) else ()
    return SemVer(text, numbers[0], numbers[1], numbers[2], prerelease)


_PEP440 = re.compile(
    r"v?(?:(?:(?P<epoch>[0-9]+)!)?(?P<release>[0-9]+(?:\.[0-9]+)*)"
    r"(?P<pre>[-_.]?(?P<pre_l>a|b|c|rc|alpha|beta|pre|preview)[-_.]?(?P<pre_n>[0-9]+)?)?"
    r"(?P<post>(?:-(?P<post_n1>[0-9]+))|(?:[-_.]?(?P<post_l>post|rev|r)[-_.]?(?P<post_n2>[0-9]+)?))?"
    r"(?P<dev>[-_.]?(?P<dev_l>dev)[-_.]?(?P<dev_n>[0-9]+)?)?)"
    r"(?:\+(?P<local>[a-z0-9]+(?:[-_.][a-z0-9]+)*))?",
    re.IGNORECASE,
)
_PEP440_LETTERS = {"alpha": "a", "beta": "b", "c": "rc", "pre": "rc", "preview": "rc"}


@dataclass(frozen=True)
class Pep440:
    """A PEP 440 version as @renovate/pep440 parses and normalises it."""

    raw: str
    epoch: int
    release: tuple[int, ...]
    pre: tuple[str, int] | None
    post: int | None
    dev: int | None
    local: tuple[str, ...] | None

    @property
    def version(self) -> str:
        """Return the normalised form (`1.2.3beta2` -> `1.2.3b2`, `1.0dev4` -> `1.0.dev4`)."""
        parts = [f"{self.epoch}!" if self.epoch else "", ".".join(map(str, self.release))]
        if self.pre:
            parts.append(f"{self.pre[0]}{self.pre[1]}")
        if self.post is not None:
            parts.append(f".post{self.post}")
        if self.dev is not None:
            parts.append(f".dev{self.dev}")
        if self.local:
            parts.append("+" + ",".join(self.local))
        return "".join(parts)

    @property
    def is_release(self) -> bool:
        """Tell whether this is a final release (pre-, post- and dev-releases are not)."""
        return self.pre is None and self.post is None and self.dev is None

    def segment(self, index: int) -> int:
        """Return release segment `index` (0 major, 1 minor, 2 patch), 0 when absent."""
        return self.release[index] if index < len(self.release) else 0


def parse_pep440(text: str) -> Pep440 | None:
    """Parse a PEP 440 version (leading `v` allowed), or None when it does not conform."""
    match = _PEP440.fullmatch(text)
    if match is None:
        return None
    pre = None
    if match["pre_l"]:
        letter = match["pre_l"].lower()
        pre = (_PEP440_LETTERS.get(letter, letter), int(match["pre_n"] or 0))
    post = None
    if match["post_l"] or match["post_n1"] or match["post_n2"]:
        post = int(match["post_n1"] or match["post_n2"] or 0)
    dev = int(match["dev_n"] or 0) if match["dev_l"] else None
    local = None
    if match["local"]:
        local = tuple(_js_number_text(part.lower()) for part in re.split(r"[._-]", match["local"]))
    release = tuple(int(part) for part in match["release"].split("."))
    return Pep440(text, int(match["epoch"] or 0), release, pre, post, dev, local)


def _js_number_text(part: str) -> str:
    """Render a local-version part as JavaScript's `Number(part)` would, when numeric."""
    if re.fullmatch(r"[0-9]+", part):
        return str(int(part))
    if re.fullmatch(r"0x[0-9a-f]+", part):
        return str(int(part, 16))
    if re.fullmatch(r"0o[0-7]+", part):
        return str(int(part, 8))
    if re.fullmatch(r"0b[01]+", part):
        return str(int(part, 2))
    return part


# ── JavaScript regular expressions (type=match) ─────────────────────────────

_JS_FLAGS = {"i": re.IGNORECASE, "m": re.MULTILINE, "s": re.DOTALL, "g": 0, "u": 0}


@dataclass(frozen=True)
class _JsRegex:
    compiled: re.Pattern[str]
    global_: bool

    @property
    def groups(self) -> int:
        return self.compiled.groups


def _compile_js_regex(pattern: str, source: str, *, plain: bool = False) -> _JsRegex:
    """Compile a pattern as metadata-action does: `/body/flags` or a plain RegExp string."""
    body, flags, global_ = pattern, 0, False
    literal = None if plain else re.fullmatch(r"/(.+)/(.*)", pattern, re.DOTALL)
    if literal:
        body = literal.group(1)
        for flag in literal.group(2):
            if flag not in _JS_FLAGS:
                raise ConfigError(f"unsupported regex flag '{flag}' in '{source}'")
            flags |= _JS_FLAGS[flag]
            global_ = global_ or flag == "g"
    body = re.sub(r"\(\?<(?![=!])", "(?P<", body)
    try:
        return _JsRegex(re.compile(body, flags), global_)
    except re.error as err:
        raise ConfigError(f"invalid pattern '{pattern}' in '{source}': {err}") from None


def _js_match(regex: _JsRegex, text: str) -> list[str | None] | None:
    """Return what JavaScript's `text.match(regex)` gives, as a list (None for no match)."""
    if regex.global_:
        found = [match.group(0) for match in regex.compiled.finditer(text)]
        return list(found) if found else None
    match = regex.compiled.search(text)
    if match is None:
        return None
    return [match.group(0), *match.groups()]


# ── sanitising ───────────────────────────────────────────────────────────────


def sanitize_tag(tag: str) -> str:
    """Make `tag` a valid Docker tag: invalid runs to `-`, no leading `.`/`-`, 128 chars."""
    tag = re.sub(r"[^a-zA-Z0-9._-]+", "-", tag)
    return tag.lstrip(".-")[:MAX_TAG_LENGTH]


_COLLATION = "\t\n\r _-,;:!?.'\"()[]{}@*/\\&#%`^+<=>|~$0123456789"


def _collation_key(text: str) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """Approximate JavaScript's `localeCompare` (ICU root collation) for ASCII keys."""
    primary: list[int] = []
    tertiary: list[int] = []
    for char in text:
        lower = char.lower()
        if lower in _COLLATION:
            primary.append(_COLLATION.index(lower))
        elif "a" <= lower <= "z":
            primary.append(len(_COLLATION) + ord(lower) - ord("a"))
        else:
            primary.append(1000 + ord(char))
        tertiary.append(1 if char != lower else 0)
    return tuple(primary), tuple(tertiary)


# ── computing ────────────────────────────────────────────────────────────────


@dataclass(frozen=True)
class _Candidate:
    value: str
    #: What `latest=auto` means for this rule's value.
    auto_latest: bool


@dataclass(frozen=True)
class _Scope:
    """Everything one `compute` call renders against."""

    context: Context
    flavor: Flavor
    now: datetime
    short_sha_length: int
    warnings: list[str]

    @property
    def ref(self) -> str:
        return self.context.ref

    def short_sha(self) -> str:
        sha = self.context.sha
        return sha if self.short_sha_length >= len(sha) else sha[: self.short_sha_length]

    def global_helpers(self) -> dict[str, Helper]:
        commit_date = _aware(self.context.commit_date or self.now)
        return {
            "branch": _constant("branch", lambda: _strip(self.ref, "refs/heads/")),
            "tag": _constant("tag", lambda: _strip(self.ref, "refs/tags/")),
            "sha": _constant("sha", self.short_sha),
            "base_ref": _constant("base_ref", self.base_ref),
            "is_default_branch": _constant("is_default_branch", self.is_default_branch),
            "is_not_default_branch": _constant(
                "is_not_default_branch",
                lambda: "true" if self.is_default_branch() == "false" else "false",
            ),
            "date": _date_helper("date", self.now),
            "commit_date": _date_helper("commit_date", commit_date),
        }

    def schedule_helpers(self) -> dict[str, Helper]:
        helpers = self.global_helpers()
        return {name: helpers[name] for name in ("date", "commit_date")}

    def base_ref(self) -> str:
        base = self.context.base_ref
        if not base or not self.ref.startswith(("refs/tags/", "refs/pull/")):
            return ""
        return base.removeprefix("refs/heads/") if self.ref.startswith("refs/tags/") else base

    def is_default_branch(self) -> str:
        branch = self.ref.removeprefix("refs/heads/")
        if not branch:
            return "false"
        if self.context.default_branch and self.context.default_branch == branch:
            return "true"
        events = ("create", "discussion", "issues", "schedule")
        return "true" if any(name in self.context.event_name for name in events) else "false"

    def render(self, text: str, where: str) -> str:
        return render_template(text, self.global_helpers(), where)

    def with_affixes(self, value: str, rule: TagRule) -> str:
        """Apply the rule's prefix/suffix, or else the flavor's (metadata-action setValue)."""
        where = f"'{rule.source}'"
        if "prefix" in rule.attrs:
            value = self.render(rule.attrs["prefix"], where) + value
        elif self.flavor.prefix:
            value = self.render(self.flavor.prefix, "flavor prefix") + value
        if "suffix" in rule.attrs:
            value += self.render(rule.attrs["suffix"], where)
        elif self.flavor.suffix:
            value += self.render(self.flavor.suffix, "flavor suffix")
        return value

    def latest(self, auto: bool) -> bool:
        if self.flavor.latest == "auto":
            return auto
        return self.flavor.latest == "true"


def _strip(ref: str, prefix: str) -> str:
    return ref[len(prefix) :] if ref.startswith(prefix) else ""


def _pull_number(ref: str) -> str:
    return ref.removeprefix("refs/pull/").removesuffix("/merge")


def _rule_schedule(scope: _Scope, rule: TagRule) -> _Candidate | None:
    if "schedule" not in scope.context.event_name:
        return None
    value = render_template(rule.attrs["pattern"], scope.schedule_helpers(), f"'{rule.source}'")
    return _Candidate(scope.with_affixes(value, rule), False)


def _version_input(scope: _Scope, rule: TagRule) -> str | None:
    """The text a semver/pep440 rule reads: `value=` or the pushed tag, after `match=`."""
    if not scope.ref.startswith("refs/tags/") and not rule.attrs["value"]:
        return None
    if rule.attrs["value"]:
        text = scope.render(rule.attrs["value"], f"'{rule.source}'")
    else:
        text = scope.ref.removeprefix("refs/tags/")
    if rule.attrs["match"]:
        regex = _compile_js_regex(rule.attrs["match"], rule.source, plain=True)
        found = _js_match(regex, text)
        if found is None:
            scope.warnings.append(f"{rule.attrs['match']} does not match {text}.")
        elif found[1] is None:
            raise ConfigError(f"match group 1 did not take part for '{text}' in '{rule.source}'")
        else:
            text = found[1]
    return text.replace("/", "-")


def _rule_semver(scope: _Scope, rule: TagRule) -> _Candidate | None:
    text = _version_input(scope, rule)
    if text is None:
        return None
    version = parse_semver(text)
    if version is None:
        scope.warnings.append(f"{text} is not a valid semver. More info: https://semver.org/")
        return None
    pattern = rule.attrs["pattern"]
    helpers: dict[str, Helper] = {
        "raw": _constant("raw", lambda: version.raw),
        "version": _constant("version", lambda: version.version),
        "major": _constant("major", lambda: str(version.major)),
        "minor": _constant("minor", lambda: str(version.minor)),
        "patch": _constant("patch", lambda: str(version.patch)),
    }
    if version.prerelease and not is_raw_statement(pattern):
        pattern = "{{version}}"
    value = render_template(pattern, helpers, f"'{rule.source}'")
    return _Candidate(scope.with_affixes(value, rule), not version.prerelease)


def _rule_pep440(scope: _Scope, rule: TagRule) -> _Candidate | None:
    text = _version_input(scope, rule)
    if text is None:
        return None
    version = parse_pep440(text)
    if version is None:
        scope.warnings.append(
            f"{text} does not conform to PEP 440. More info: https://www.python.org/dev/peps/pep-0440"
        )
        return None
    if not version.is_release:
        value = text if is_raw_statement(rule.attrs["pattern"]) else version.version
        return _Candidate(scope.with_affixes(value, rule), False)
    helpers: dict[str, Helper] = {
        "raw": _constant("raw", lambda: text),
        "version": _constant("version", lambda: version.version),
        "major": _constant("major", lambda: str(version.segment(0))),
        "minor": _constant("minor", lambda: str(version.segment(1))),
        "patch": _constant("patch", lambda: str(version.segment(2))),
    }
    value = render_template(rule.attrs["pattern"], helpers, f"'{rule.source}'")
    return _Candidate(scope.with_affixes(value, rule), True)


def _rule_match(scope: _Scope, rule: TagRule) -> _Candidate | None:
    if not scope.ref.startswith("refs/tags/") and not rule.attrs["value"]:
        return None
    if rule.attrs["value"]:
        text = scope.render(rule.attrs["value"], f"'{rule.source}'")
    else:
        text = scope.ref.removeprefix("refs/tags/")
    pattern = rule.attrs["pattern"]
    found = _js_match(_compile_js_regex(pattern, rule.source), text)
    if found is None:
        scope.warnings.append(f"{pattern} does not match {text}.")
        return None
    group = int(rule.attrs["group"])
    if group >= len(found) or found[group] is None:
        scope.warnings.append(f"Group {group} does not exist for {pattern} pattern.")
        return None
    return _Candidate(scope.with_affixes(str(found[group]), rule), True)


def _rule_ref(scope: _Scope, rule: TagRule) -> _Candidate | None:
    event = rule.attrs["event"]
    if event == "branch" and scope.ref.startswith("refs/heads/"):
        return _Candidate(scope.with_affixes(scope.ref.removeprefix("refs/heads/"), rule), False)
    if event == "tag" and scope.ref.startswith("refs/tags/"):
        return _Candidate(scope.with_affixes(scope.ref.removeprefix("refs/tags/"), rule), True)
    if event == "pr" and scope.ref.startswith("refs/pull/"):
        return _Candidate(scope.with_affixes(_pull_number(scope.ref), rule), False)
    return None


def _rule_edge(scope: _Scope, rule: TagRule) -> _Candidate | None:
    if not scope.ref.startswith("refs/heads/"):
        return None
    branch = rule.attrs["branch"] or scope.context.default_branch
    if branch != scope.ref.removeprefix("refs/heads/"):
        return None
    return _Candidate(scope.with_affixes("edge", rule), False)


def _rule_raw(scope: _Scope, rule: TagRule) -> _Candidate | None:
    value = scope.render(rule.attrs["value"], f"'{rule.source}'")
    return _Candidate(scope.with_affixes(value, rule), False)


def _rule_sha(scope: _Scope, rule: TagRule) -> _Candidate | None:
    if not scope.context.sha:
        return None
    value = scope.short_sha() if rule.attrs["format"] == "short" else scope.context.sha
    return _Candidate(scope.with_affixes(value, rule), False)


_PROCESSORS: Mapping[str, Callable[[_Scope, TagRule], _Candidate | None]] = {
    "schedule": _rule_schedule,
    "semver": _rule_semver,
    "pep440": _rule_pep440,
    "match": _rule_match,
    "edge": _rule_edge,
    "ref": _rule_ref,
    "raw": _rule_raw,
    "sha": _rule_sha,
}


@dataclass(frozen=True)
class _Version:
    main: str
    partial: tuple[str, ...]
    latest: bool


def _enabled(scope: _Scope, rule: TagRule) -> bool:
    value = scope.render(rule.attrs["enable"], f"'{rule.source}'")
    if value not in ("true", "false"):
        raise ConfigError(
            f"enable must render to 'true' or 'false', got '{value}' in '{rule.source}'"
        )
    return value == "true"


def _version(scope: _Scope, rules: Sequence[TagRule]) -> _Version:
    """Fold the rules, highest priority first, into the version and its extra tags."""
    main = ""
    partial: list[str] = []
    latest: bool | None = None
    for rule in sorted(rules, key=lambda rule: -rule.priority):
        if not _enabled(scope, rule):
            continue
        candidate = _PROCESSORS[rule.type](scope, rule)
        value = sanitize_tag(candidate.value) if candidate else ""
        if not value or candidate is None:
            continue
        if not main:
            main = value
        elif value != main and value not in partial:
            partial.append(value)
        if latest is None:
            latest = scope.latest(candidate.auto_latest)
    return _Version(main, tuple(partial), bool(latest))


def _tag_names(scope: _Scope, version: _Version) -> tuple[str, ...]:
    if not version.main:
        return ()
    names = [version.main, *version.partial]
    if version.latest:
        flavor = scope.flavor
        prefix = scope.render(flavor.prefix, "flavor prefix") if flavor.prefix_latest else ""
        suffix = scope.render(flavor.suffix, "flavor suffix") if flavor.suffix_latest else ""
        latest = sanitize_tag(f"{prefix}latest{suffix}")
        if latest not in names:
            names.append(latest)
    return tuple(names)


def _annotation_pairs(scope: _Scope, version: str, extra: Sequence[str]) -> dict[str, str]:
    """Default OCI annotations merged with `extra` (later wins), sorted like metadata-action."""
    context = scope.context
    url = f"{context.server_url.rstrip('/')}/{context.repository}" if context.repository else ""
    pairs = {
        "org.opencontainers.image.title": context.repository.rsplit("/", 1)[-1],
        "org.opencontainers.image.description": context.description,
        "org.opencontainers.image.url": url,
        "org.opencontainers.image.source": url,
        "org.opencontainers.image.version": version,
        "org.opencontainers.image.created": _iso(scope.now),
        "org.opencontainers.image.revision": context.sha,
        "org.opencontainers.image.licenses": context.license,
    }
    for line in extra:
        rendered = scope.render(line, f"label '{line}'")
        key, sep, value = rendered.partition("=")
        if not sep or not key:
            raise ConfigError(f"label/annotation '{line}' needs key=value")
        pairs[key] = value
    return dict(sorted(pairs.items(), key=lambda item: _collation_key(item[0])))


def _iso(moment: datetime) -> str:
    utc = moment.astimezone(UTC)
    return utc.strftime("%Y-%m-%dT%H:%M:%S.") + f"{utc.microsecond // 1000:03d}Z"


def expression_context(
    context: Context, env: Mapping[str, str] | None = None
) -> expressions.ExpressionContext:
    """Build the `${{ ... }}` contexts (`github`, `inputs`, `env`) for `context`."""
    ref = context.ref
    prefixes = ("refs/heads/", "refs/tags/", "refs/pull/")
    ref_name = next((ref.removeprefix(p) for p in prefixes if ref.startswith(p)), ref)
    ref_type = "branch" if ref.startswith("refs/heads/") else ""
    ref_type = "tag" if ref.startswith("refs/tags/") else ref_type
    inputs = dict(context.inputs)
    github = {
        "event_name": context.event_name,
        "ref": ref,
        "ref_name": ref_name,
        "ref_type": ref_type,
        "sha": context.sha,
        "run_number": context.run_number,
        "run_id": context.run_id,
        "repository": context.repository,
        "repository_owner": context.repository.split("/", 1)[0] if context.repository else "",
        "server_url": context.server_url,
        "base_ref": context.base_ref if "pull_request" in context.event_name else "",
        "head_ref": context.head_ref if "pull_request" in context.event_name else "",
        "event": {"inputs": inputs},
    }
    return expressions.ExpressionContext(github=github, inputs=inputs, env=dict(env or {}))


def _resolve_rules(
    rules: Sequence[TagRule], values: expressions.ExpressionContext
) -> list[TagRule]:
    out: list[TagRule] = []
    for rule in rules:
        if rule.deferred:
            rule = _read_rule(expressions.substitute(rule.source, values), rule.source)
        out.append(rule)
    return out


def _resolve_flavor(flavor: Flavor, values: expressions.ExpressionContext) -> Flavor:
    if not flavor.deferred:
        return flavor
    lines = tuple(expressions.substitute(line, values) for line in flavor.source)
    return _read_flavor(lines, flavor.source)


def _resolve_images(
    images: Sequence[str] | Sequence[ImageSpec], values: expressions.ExpressionContext
) -> list[str]:
    specs: Sequence[Any] = [images] if isinstance(images, str) else images
    if specs and isinstance(specs[0], str):
        specs = parse_images([str(line) for line in specs])
    if any(spec.deferred for spec in specs):
        sources = tuple(dict.fromkeys(spec.source for spec in specs))
        lines = tuple(expressions.substitute(source, values) for source in sources)
        specs = _read_images(lines, sources)
    return [spec.name for spec in specs if spec.enable]


def render(
    template: str, context: Context, *, now: datetime, short_sha_length: int = SHORT_SHA_LENGTH
) -> str:
    """Render a global template (`{{branch}}`, `{{date 'YYYYMMDD'}}`, ...) for `context`."""
    scope = _Scope(context, Flavor(), _aware(now), short_sha_length, [])
    return scope.render(template, "template")


def _aware(now: datetime) -> datetime:
    return now if now.tzinfo is not None else now.replace(tzinfo=UTC)


def compute(
    context: Context,
    images: Sequence[str] | Sequence[ImageSpec],
    tag_rules: Sequence[TagRule],
    flavor: Flavor,
    *,
    now: datetime,
    short_sha_length: int = SHORT_SHA_LENGTH,
    pr_head_sha: bool = False,
    extra_labels: Sequence[str] = (),
    extra_annotations: Sequence[str] = (),
    annotation_levels: Sequence[str] = ("manifest",),
    env: Mapping[str, str] | None = None,
) -> Metadata:
    """Compute metadata-action's outputs for one build.

    `images` are `images` lines (or parsed `ImageSpec`s); `tag_rules` and `flavor` come from
    `parse_tag_rules` and `parse_flavor`. `now` is the build time (`{{date}}`, the created
    label; naive means UTC). `pr_head_sha` is DOCKER_METADATA_PR_HEAD_SHA: on pull request
    events use the PR head commit instead of the merge commit. `env` feeds `${{ env.X }}`.
    """
    values = expression_context(context, env)
    if pr_head_sha and "pull_request" in context.event_name and context.pr_head_sha:
        context = replace(context, sha=context.pr_head_sha)
    warnings: list[str] = []
    scope = _Scope(
        context, _resolve_flavor(flavor, values), _aware(now), short_sha_length, warnings
    )
    version = _version(scope, _resolve_rules(tag_rules, values))
    names = _tag_names(scope, version)
    image_names = _resolve_images(images, values)
    if image_names:
        tags = tuple(f"{image}:{name}" for image in image_names for name in names)
    else:
        tags = names
    labels = _annotation_pairs(scope, version.main, _resolve_lines(extra_labels, values))
    annotation_pairs = _annotation_pairs(
        scope, version.main, _resolve_lines(extra_annotations, values)
    )
    annotations = tuple(
        f"{level}:{key}={value}"
        for level in annotation_levels
        for key, value in annotation_pairs.items()
    )
    return Metadata(
        version=version.main,
        tags=tags,
        tag_names=names,
        labels=types.MappingProxyType(labels),
        annotations=annotations,
        images=tuple(image_names),
        warnings=tuple(warnings),
    )


def _resolve_lines(lines: Sequence[str], values: expressions.ExpressionContext) -> list[str]:
    return [expressions.substitute(line, values) for line in _entries(lines)]
