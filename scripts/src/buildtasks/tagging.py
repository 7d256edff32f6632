"""Compute an image's tags, labels and annotations from the configured metadata-action rules."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from buildtasks import gitcontext, metadata
from buildtasks.config import Config, ImageSpec
from buildtasks.errors import ConfigError


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
    #: The build's date in seconds (SOURCE_DATE_EPOCH): the commit's, so one commit gives
    #: one image; None when neither the environment nor git gives one.
    source_date_epoch: int | None = None


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

#: Tags for a local build whose configured rules tag nothing (a feature branch, a detached
#: HEAD): the branch and branch-sha, else `dev`. Never used inside GitHub Actions, where an
#: event that should not publish must stay untagged.
LOCAL_FALLBACK_RULES = ("type=ref,event=branch", "type=sha,prefix={{branch}}-")
LAST_RESORT_RULES = ("type=raw,value=dev",)


def rules_for(
    image: ImageSpec, rules: Sequence[str] = (), flavor: Sequence[str] = ()
) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """The tag rules and flavor lines in force: CLI lines, else the image's, else the defaults."""
    tag_lines = tuple(rules) or image.tags or DEFAULT_TAG_RULES
    flavor_lines = tuple(flavor) or image.flavor or DEFAULT_FLAVOR
    return tag_lines, flavor_lines


def source_date(env: Mapping[str, str], context: metadata.Context) -> datetime | None:
    """What a build is dated by: `SOURCE_DATE_EPOCH` if set, else the commit's date.

    The reproducible-builds convention: the image's created time, its history and its file
    times come from the source, not the clock, so a rebuild of one commit is the same image.
    """
    value = env.get("SOURCE_DATE_EPOCH", "").strip()
    if value:
        if not value.isdigit():
            raise ConfigError(f"SOURCE_DATE_EPOCH must be seconds since 1970, got {value!r}")
        return datetime.fromtimestamp(int(value), UTC)
    return context.commit_date


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
    labels: Sequence[str] = (),
    annotations: Sequence[str] = (),
) -> ImageMetadata:
    """Compute the metadata of `image` for the current GitHub or local-git context.

    Labels and annotations: metadata-action's defaults, then the image's `title`, then its
    configured `labels`/`annotations`, then `labels`/`annotations` given here (the command
    line); a later `KEY=VALUE` wins.
    """
    ctx = context or gitcontext.load_context(env, cwd)
    if image.description and not ctx.description:
        from dataclasses import replace

        ctx = replace(ctx, description=image.description)
    tag_lines, flavor_lines = rules_for(image, rules, flavor)
    parsed_flavor = metadata.parse_flavor(flavor_lines)
    options = metadata.options_from_env(env)
    dated = source_date(env, ctx)

    title = (f"org.opencontainers.image.title={image.title}",) if image.title else ()
    extra_labels = (*title, *image.labels, *labels)
    extra_annotations = (*title, *image.annotations, *annotations)

    def run(lines: Sequence[str]) -> metadata.Metadata:
        parsed = metadata.parse_tag_rules(lines)
        return metadata.compute(
            ctx,
            list(names),
            parsed,
            parsed_flavor,
            now=now,
            env=env,
            created=dated,
            extra_labels=extra_labels,
            extra_annotations=extra_annotations,
            **options,
        )

    result = run(tag_lines)
    note = ""
    if not result.tags and env.get("GITHUB_ACTIONS") != "true" and not rules:
        for fallback in (LOCAL_FALLBACK_RULES, LAST_RESORT_RULES):
            result = run(fallback)
            if result.tags:
                note = f"no configured rule tags this checkout; using local tags {', '.join(result.tag_names)}"
                break
    computed_labels = dict(result.labels)
    return ImageMetadata(
        version=result.version,
        revision=ctx.sha or "unknown",
        created=computed_labels.get("org.opencontainers.image.created", now.isoformat()),
        tags=tuple(result.tags),
        labels=computed_labels,
        annotations=tuple(result.annotations),
        note=note,
        warnings=tuple(result.warnings),
        source_date_epoch=int(dated.timestamp()) if dated else None,
    )
