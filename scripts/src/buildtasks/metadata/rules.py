"""Reading metadata-action's inputs: `tags` rules, `flavor`, `images` and its env settings.

Each input is read the way the action reads it: blank and `#` lines dropped, every line
split like csv-parse, `key=value` attributes checked against the rule type, with the
action's defaults filled in. Mistakes are `ConfigError`s that name the line and suggest the
closest valid word. A line holding `${{ ... }}` is checked with a placeholder standing in
for each expression and marked `deferred`; `compute` reads it again (`read_rule`,
`read_flavor`, `read_images`) once the expression values are known.
"""

from __future__ import annotations

import difflib
import re
import types
from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any

from buildtasks.errors import ConfigError
from buildtasks.metadata import expressions
from buildtasks.metadata.jsregex import compile_js_regex
from buildtasks.metadata.model import Flavor, ImageSpec, TagRule

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

#: Stands in for a `${{ ... }}` while a line is checked before its values are known.
_PENDING = "\x00"


# ── reading lines ────────────────────────────────────────────────────────────


def input_lines(lines: Sequence[str] | str) -> tuple[str, ...]:
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


def suggest(word: str, choices: Sequence[str], what: str) -> str:
    """Return an error-message tail: the closest of `choices` to `word`, else all of them."""
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
    entries = input_lines(lines) or METADATA_ACTION_DEFAULT_TAGS
    return tuple(_parse_rule(entry) for entry in entries)


def _parse_rule(line: str) -> TagRule:
    if not expressions.has_expression(line):
        return read_rule(line, line)
    rule = read_rule(_probe(line), line)
    return replace(rule, deferred=True)


def read_rule(line: str, source: str) -> TagRule:
    """Read one `tags` line free of `${{ }}`; `source`, the line as written, names it in errors."""
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
        hint = suggest(value, TAG_TYPES, "types")
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
        hint = suggest(key, ("type", *allowed), f"attributes for type={kind}")
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
            compile_js_regex(attrs["pattern"], source)
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
    hint = suggest(value, choices, f"{key} values")
    raise ConfigError(f"invalid {key} '{value}' in '{source}'{hint}")


def _check_group(value: str, source: str) -> None:
    if not _pending(value) and not re.fullmatch(r"[0-9]+", value.strip()):
        raise ConfigError(f"invalid match group '{value}' in '{source}' — use a group number")


def _check_semver_match(value: str, source: str) -> None:
    if not value or _pending(value):
        return
    compiled = compile_js_regex(value, source, plain=True)
    if compiled.groups < 1:
        raise ConfigError(f"match '{value}' in '{source}' needs a capture group, like 'app-(.*)'")


def _check_common_values(attrs: Mapping[str, str], source: str) -> None:
    enable = attrs["enable"]
    if not _pending(enable) and "{{" not in enable and enable not in ("true", "false"):
        hint = suggest(enable, ("true", "false"), "values")
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
    entries = input_lines(lines)
    if not any(expressions.has_expression(entry) for entry in entries):
        return read_flavor(entries, entries)
    flavor = read_flavor(tuple(_probe(entry) for entry in entries), entries)
    return replace(flavor, deferred=True)


def read_flavor(entries: Sequence[str], sources: Sequence[str]) -> Flavor:
    """Read `flavor` lines free of `${{ }}`; `sources`, the lines as written, go in errors."""
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
        hint = suggest(key, FLAVOR_KEYS, "flavor keys")
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
    entries = input_lines(lines)
    if not any(expressions.has_expression(entry) for entry in entries):
        return read_images(entries, entries)
    probes = tuple(_probe(entry) for entry in entries)
    return tuple(replace(image, deferred=True) for image in read_images(probes, entries))


def read_images(entries: Sequence[str], sources: Sequence[str]) -> tuple[ImageSpec, ...]:
    """Read `images` lines free of `${{ }}`; `sources`, the lines as written, go in errors."""
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
            hint = suggest(key, ("name", "enable"), "image attributes")
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
            hint = suggest(base, ANNOTATION_LEVELS, "levels")
            raise ConfigError(f"unknown annotation level '{level}'{hint}")
    return levels
