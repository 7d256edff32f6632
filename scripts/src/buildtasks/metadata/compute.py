"""`compute`: metadata-action's outputs (version, tags, labels, annotations) for one build.

The steps follow metadata-action's src/meta.ts. Deferred lines (those holding `${{ ... }}`)
are read again with the values `expression_context` gives. The enabled rules then run
highest priority first, each through its `_rule_<type>` function, and fold into the version
and its extra tags (`_version`); `latest` is added as the flavor says (`_tag_names`); the OCI
labels and annotations are the defaults merged with the extra lines, sorted by key.
`render` renders one global template (`{{branch}}`, `{{date ...}}`) outside a build.
"""

from __future__ import annotations

import re
import types
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

from buildtasks.errors import ConfigError
from buildtasks.metadata import expressions
from buildtasks.metadata.jsregex import compile_js_regex, js_match
from buildtasks.metadata.model import Context, Flavor, ImageSpec, Metadata, TagRule
from buildtasks.metadata.rules import (
    MAX_TAG_LENGTH,
    SHORT_SHA_LENGTH,
    input_lines,
    parse_images,
    read_flavor,
    read_images,
    read_rule,
)
from buildtasks.metadata.templates import (
    Helper,
    constant_helper,
    date_helper,
    is_raw_statement,
    render_template,
)
from buildtasks.metadata.versions import parse_pep440, parse_semver

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
    #: The created label/annotation: `now` unless the build is dated by its source.
    created: datetime | None = None

    @property
    def ref(self) -> str:
        return self.context.ref

    def short_sha(self) -> str:
        sha = self.context.sha
        return sha if self.short_sha_length >= len(sha) else sha[: self.short_sha_length]

    def global_helpers(self) -> dict[str, Helper]:
        commit_date = _aware(self.context.commit_date or self.now)
        return {
            "branch": constant_helper("branch", lambda: _strip(self.ref, "refs/heads/")),
            "tag": constant_helper("tag", lambda: _strip(self.ref, "refs/tags/")),
            "sha": constant_helper("sha", self.short_sha),
            "base_ref": constant_helper("base_ref", self.base_ref),
            "is_default_branch": constant_helper("is_default_branch", self.is_default_branch),
            "is_not_default_branch": constant_helper(
                "is_not_default_branch",
                lambda: "true" if self.is_default_branch() == "false" else "false",
            ),
            "date": date_helper("date", self.now),
            "commit_date": date_helper("commit_date", commit_date),
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
        regex = compile_js_regex(rule.attrs["match"], rule.source, plain=True)
        found = js_match(regex, text)
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
        "raw": constant_helper("raw", lambda: version.raw),
        "version": constant_helper("version", lambda: version.version),
        "major": constant_helper("major", lambda: str(version.major)),
        "minor": constant_helper("minor", lambda: str(version.minor)),
        "patch": constant_helper("patch", lambda: str(version.patch)),
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
        "raw": constant_helper("raw", lambda: text),
        "version": constant_helper("version", lambda: version.version),
        "major": constant_helper("major", lambda: str(version.segment(0))),
        "minor": constant_helper("minor", lambda: str(version.segment(1))),
        "patch": constant_helper("patch", lambda: str(version.segment(2))),
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
    found = js_match(compile_js_regex(pattern, rule.source), text)
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
        "org.opencontainers.image.created": _iso(scope.created or scope.now),
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
            rule = read_rule(expressions.substitute(rule.source, values), rule.source)
        out.append(rule)
    return out


def _resolve_flavor(flavor: Flavor, values: expressions.ExpressionContext) -> Flavor:
    if not flavor.deferred:
        return flavor
    lines = tuple(expressions.substitute(line, values) for line in flavor.source)
    return read_flavor(lines, flavor.source)


def _resolve_images(
    images: Sequence[str] | Sequence[ImageSpec], values: expressions.ExpressionContext
) -> list[str]:
    specs: Sequence[Any] = [images] if isinstance(images, str) else images
    if specs and isinstance(specs[0], str):
        specs = parse_images([str(line) for line in specs])
    if any(spec.deferred for spec in specs):
        sources = tuple(dict.fromkeys(spec.source for spec in specs))
        lines = tuple(expressions.substitute(source, values) for source in sources)
        specs = read_images(lines, sources)
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
    created: datetime | None = None,
) -> Metadata:
    """Compute metadata-action's outputs for one build.

    `images` are `images` lines (or parsed `ImageSpec`s); `tag_rules` and `flavor` come from
    `parse_tag_rules` and `parse_flavor`. `now` is the build time (`{{date}}`, the created
    label; naive means UTC). `created`, when given, dates the created label and annotation
    instead (a build dated by its source: SOURCE_DATE_EPOCH). `pr_head_sha` is
    DOCKER_METADATA_PR_HEAD_SHA: on pull request events use the PR head commit instead of the
    merge commit. `env` feeds `${{ env.X }}`.
    """
    values = expression_context(context, env)
    if pr_head_sha and "pull_request" in context.event_name and context.pr_head_sha:
        context = replace(context, sha=context.pr_head_sha)
    warnings: list[str] = []
    scope = _Scope(
        context,
        _resolve_flavor(flavor, values),
        _aware(now),
        short_sha_length,
        warnings,
        _aware(created) if created else None,
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
    return [expressions.substitute(line, values) for line in input_lines(lines)]
