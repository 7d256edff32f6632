"""Docker tags, labels and annotations computed the way docker/metadata-action does.

The `tags:` and `flavor:` lines of a metadata-action step can be pasted unchanged into
pyproject.toml: `parse_tag_rules` and `parse_flavor` read them, `compute` turns them plus a
`Context` (what the action reads from the GitHub event) into a `Metadata`. Everything here
is pure: no I/O and no environment reads; `options_from_env` reads the `DOCKER_METADATA_*`
knobs from a mapping the caller passes in. Which rules a build uses (this project's
defaults, local fallbacks) is policy and lives in `buildtasks.tagging`, not here.

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
they are read, so the engine does it (see `expressions`), exactly where GitHub would: on
the whole line, before it is split into attributes.

Modules, each depending only on those above it:

* `expressions` — the `${{ ... }}` evaluator (GitHub's semantics, no `eval`);
* `model` — the values: `Context`, `TagRule`, `Flavor`, `ImageSpec`, `Metadata`;
* `jsregex` — JavaScript regular expressions (`type=match`, `match=`) on Python's `re`;
* `versions` — semver (node-semver) and PEP 440 (@renovate/pep440) parsing;
* `dates` — moment.js date formats and time zones for `{{date}}`;
* `rules` — reading `tags`, `flavor`, `images` and the `DOCKER_METADATA_*` settings, with
  validation and suggestions; metadata-action's own default rules;
* `templates` — the Handlebars subset (`render_template`) and its helpers;
* `compute` — `compute`: rules to version, tags, labels and annotations; `render`.
"""

from __future__ import annotations

from buildtasks.metadata.compute import compute, expression_context, render, sanitize_tag
from buildtasks.metadata.dates import format_moment
from buildtasks.metadata.model import Context, Flavor, ImageSpec, Metadata, TagRule
from buildtasks.metadata.rules import (
    ANNOTATION_LEVELS,
    DEFAULT_PRIORITIES,
    FLAVOR_KEYS,
    LATEST_MODES,
    MAX_TAG_LENGTH,
    METADATA_ACTION_DEFAULT_TAGS,
    REF_EVENTS,
    SHA_FORMATS,
    SHORT_SHA_LENGTH,
    TAG_TYPES,
    check_image_name,
    options_from_env,
    parse_annotation_levels,
    parse_flavor,
    parse_images,
    parse_tag_rules,
)
from buildtasks.metadata.templates import Helper, is_raw_statement, render_template
from buildtasks.metadata.versions import Pep440, SemVer, parse_pep440, parse_semver

__all__ = [
    "ANNOTATION_LEVELS",
    "DEFAULT_PRIORITIES",
    "FLAVOR_KEYS",
    "LATEST_MODES",
    "MAX_TAG_LENGTH",
    "METADATA_ACTION_DEFAULT_TAGS",
    "REF_EVENTS",
    "SHA_FORMATS",
    "SHORT_SHA_LENGTH",
    "TAG_TYPES",
    "Context",
    "Flavor",
    "Helper",
    "ImageSpec",
    "Metadata",
    "Pep440",
    "SemVer",
    "TagRule",
    "check_image_name",
    "compute",
    "expression_context",
    "format_moment",
    "is_raw_statement",
    "options_from_env",
    "parse_annotation_levels",
    "parse_flavor",
    "parse_images",
    "parse_pep440",
    "parse_semver",
    "parse_tag_rules",
    "render",
    "render_template",
    "sanitize_tag",
]
