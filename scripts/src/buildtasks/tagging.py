"""Compute an image's tags, labels and annotations from the configured metadata-action rules."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from buildtasks import gitcontext, metadata
from buildtasks.config import Config, ImageSpec


@dataclass(frozen=True)
class ImageMetadata:
    """Tags (full refs), OCI labels and annotations for one image build."""

    version: str
    revision: str
    created: str
    tags: tuple[str, ...]
    labels: Mapping[str, str] = field(default_factory=dict)
    annotations: tuple[str, ...] = ()
    #: Set when the configured rules gave no tag and a local fallback was used.
    note: str = ""
    #: What metadata-action would log as warnings (a tag that is not semver, ...).
    warnings: tuple[str, ...] = ()


#: Tags for a local build whose configured rules tag nothing (a feature branch, a detached
#: HEAD): the branch and branch-sha, else `dev`. Never used inside GitHub Actions, where an
#: event that should not publish must stay untagged.
LOCAL_FALLBACK_RULES = ("type=ref,event=branch", "type=sha,prefix={{branch}}-")
LAST_RESORT_RULES = ("type=raw,value=dev",)


def rules_for(
    image: ImageSpec, rules: Sequence[str] = (), flavor: Sequence[str] = ()
) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """The tag rules and flavor lines in force: CLI lines, else the image's, else the defaults."""
    tag_lines = tuple(rules) or image.tags or tuple(metadata.DEFAULT_TAG_RULES)
    flavor_lines = tuple(flavor) or image.flavor or tuple(metadata.DEFAULT_FLAVOR)
    return tag_lines, flavor_lines


def image_metadata(
    config: Config,
    image: ImageSpec,
    names: Sequence[str],
    *,
    env: Mapping[str, str],
    cwd: Path,
    now: datetime,
    rules: Sequence[str] = (),
    flavor: Sequence[str] = (),
    context: metadata.Context | None = None,
) -> ImageMetadata:
    """Compute the metadata of `image` for the current GitHub or local-git context."""
    ctx = context or gitcontext.load_context(env, cwd)
    if image.description and not ctx.description:
        from dataclasses import replace

        ctx = replace(ctx, description=image.description)
    tag_lines, flavor_lines = rules_for(image, rules, flavor)
    parsed_flavor = metadata.parse_flavor(flavor_lines)
    options = metadata.options_from_env(env)

    def run(lines: Sequence[str]) -> metadata.Metadata:
        parsed = metadata.parse_tag_rules(lines)
        return metadata.compute(
            ctx, list(names), parsed, parsed_flavor, now=now, env=env, **options
        )

    result = run(tag_lines)
    note = ""
    if not result.tags and env.get("GITHUB_ACTIONS") != "true" and not rules:
        for fallback in (LOCAL_FALLBACK_RULES, LAST_RESORT_RULES):
            result = run(fallback)
            if result.tags:
                note = f"no configured rule tags this checkout; using local tags {', '.join(result.tag_names)}"
                break
    labels = dict(result.labels)
    annotations = tuple(result.annotations)
    if image.title:
        key = "org.opencontainers.image.title"
        labels[key] = image.title
        annotations = tuple(
            f"{a.split(':', 1)[0]}:{key}={image.title}"
            if a.split(":", 1)[-1].startswith(f"{key}=")
            else a
            for a in annotations
        )
    return ImageMetadata(
        version=result.version,
        revision=ctx.sha or "unknown",
        created=labels.get("org.opencontainers.image.created", now.isoformat()),
        tags=tuple(result.tags),
        labels=labels,
        annotations=annotations,
        note=note,
        warnings=tuple(result.warnings),
    )
