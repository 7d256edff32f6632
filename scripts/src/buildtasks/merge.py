"""Merge per-platform digests into one multi-platform index, by digest.

How large projects build arm64: one builder per platform, each pushes its platform untagged
by digest (`docker.build --platform linux/arm64 --push-by-digest`), and one step merges the
digests into an index. The per-platform builds record their digest under
`<artifacts>/<image>/digests/` (CI jobs pass that folder on as an artifact); `--digest
PLATFORM=sha256:...` adds one by hand.

Nothing is tagged until the index is known to be right:

1. the set is checked: every expected platform exactly once, one repository;
2. the registry is asked what each digest is: it must exist, be the platform it claims, and
   come from this commit (its `org.opencontainers.image.revision` label) and this image (its
   title label);
3. the index is created untagged, by digest (`imagetools create --dry-run` tells the digest
   the registry will compute), and read back: exactly the expected platforms, and every
   child digest that was given;
4. the image's build record then names the index, so scan, SBOM, sign, attest and verify act
   on it; the tags are applied last (`docker.push` later, or at once).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from buildtasks.command import Command
from buildtasks.config import Config, ImageSpec, parse_platforms
from buildtasks.errors import BuildtasksError, CommandFailed, ConfigError
from buildtasks.platforms import platform_manifests
from buildtasks.push import inspect_raw_command, manifest_digest, served_digest
from buildtasks.refs import DIGEST_RE, registry_error
from buildtasks.runner import Runner

if TYPE_CHECKING:
    from buildtasks.build import BuildOutcome

REVISION = "org.opencontainers.image.revision"
TITLE = "org.opencontainers.image.title"
_DIGEST_OPTION = re.compile(r"^(?P<platform>[a-z0-9]+/[a-z0-9_]+(?:/[a-z0-9]+)?)=(?P<digest>.+)$")


@dataclass(frozen=True)
class PlatformDigest:
    """One platform build, pushed untagged: what it claims and where the claim comes from."""

    platforms: tuple[str, ...]
    digest: str
    repository: str
    revision: str = ""
    #: The record file it was read from, or `--digest`.
    source: str = "--digest"
    stand_ins: tuple[str, ...] = ()


def read_digest_files(directory: Path, image_key: str) -> list[PlatformDigest]:
    """The per-platform digests recorded for `image_key` in `directory` (none when absent)."""
    found = []
    for path in sorted(directory.glob("*.json")) if directory.is_dir() else ():
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as exc:
            raise BuildtasksError(f"cannot read the platform digest {path}: {exc}") from None
        if not isinstance(data, Mapping) or data.get("image") != image_key:
            raise ConfigError(
                f"{path} records image {data.get('image') if isinstance(data, Mapping) else '?'!r}, "
                f"not {image_key!r}: remove it or merge that image"
            )
        repos = data.get("repositories") or []
        digest = str(data.get("digest", ""))
        if not DIGEST_RE.match(digest) or not repos:
            raise ConfigError(f"{path} names no digest and repository: rebuild that platform")
        found.append(
            PlatformDigest(
                platforms=tuple(data.get("platforms") or ()),
                digest=digest,
                repository=str(repos[0]),
                revision=str(data.get("revision", "")),
                source=str(path),
                stand_ins=tuple(data.get("stand_ins") or ()),
            )
        )
    return found


def parse_digest_option(value: str, repository: str) -> PlatformDigest:
    """`linux/arm64=sha256:...` (or `=repo@sha256:...`) → a PlatformDigest."""
    match = _DIGEST_OPTION.match(value.strip())
    if not match:
        raise ConfigError(
            f"bad --digest {value!r}: expected PLATFORM=sha256:<64 hex>, e.g. linux/arm64=sha256:..."
        )
    platform = parse_platforms(match["platform"])[0]
    digest = match["digest"]
    if "@" in digest:
        repository, _, digest = digest.rpartition("@")
    if not DIGEST_RE.match(digest):
        raise ConfigError(f"bad --digest {value!r}: {digest!r} is not sha256:<64 hex>")
    return PlatformDigest((platform,), digest, repository)


def check_set(expected: Sequence[str], given: Sequence[PlatformDigest]) -> None:
    """Fail with one line unless `given` covers each of `expected` exactly once, in one repo."""
    if not given:
        raise ConfigError(
            "no platform digests to merge: build each platform with "
            "`docker.build --platform PLATFORM --push-by-digest`, or pass --digest PLATFORM=sha256:..."
        )
    seen: dict[str, str] = {}
    for item in given:
        for platform in item.platforms:
            if platform in seen:
                raise ConfigError(
                    f"{platform} is given twice ({seen[platform]} and {item.source}): "
                    "keep one of them"
                )
            seen[platform] = item.source
    missing = [p for p in expected if p not in seen]
    if missing:
        first = missing[0]
        raise ConfigError(
            f"no digest for {', '.join(missing)}: build it with `uv run invoke docker.build "
            f"--platform {first} --push-by-digest`, or pass --digest {first}=sha256:..."
        )
    extra = [p for p in seen if p not in expected]
    if extra:
        raise ConfigError(
            f"{', '.join(extra)} is not one of the platforms to merge ({', '.join(expected)}): "
            "pass --platform with every platform, or remove its digest"
        )
    repos = sorted({item.repository for item in given})
    if len(repos) > 1:
        raise ConfigError(
            f"the digests are in different repositories ({', '.join(repos)}): "
            "an index lists manifests of one repository; push every platform to one name"
        )


def index_command(
    sources: Sequence[str], annotations: Sequence[str], *, tag: str = "", dry_run: bool = False
) -> Command:
    """`docker buildx imagetools create` of an index from `sources` (`repo@sha256:...`)."""
    argv = ["docker", "buildx", "imagetools", "create"]
    if dry_run:
        argv.append("--dry-run")
    for annotation in annotations:
        argv += ["--annotation", annotation]
    if tag:
        argv += ["--tag", tag]
    argv += list(sources)
    return Command(tuple(argv), hint="is the registry up and are you logged in?")


def index_annotations(annotations: Sequence[str]) -> tuple[str, ...]:
    """The build's `manifest:` annotations, at the index level (as metadata-action's `index:`)."""
    out = []
    for annotation in annotations:
        level, sep, rest = annotation.partition(":")
        if sep and level in ("manifest", "index") and "=" in rest:
            out.append(f"index:{rest}")
    return tuple(dict.fromkeys(out))


def image_configs(raw_inspect: str) -> dict[str, Mapping[str, Any]]:
    """platform → image config, from `imagetools inspect --format '{{json .Image}}'`."""
    data = json.loads(raw_inspect or "{}")
    if not isinstance(data, Mapping):
        return {}
    if "architecture" in data:
        platform = f"{data.get('os', '')}/{data['architecture']}"
        if data.get("variant"):
            platform += f"/{data['variant']}"
        return {platform: data}
    return {str(k): v for k, v in data.items() if isinstance(v, Mapping) and "unknown" not in k}


def check_configs(
    item: PlatformDigest,
    configs: Mapping[str, Mapping[str, Any]],
    *,
    revision: str,
    title: str,
) -> None:
    """Fail unless the registry's image is the platform, commit and image `item` claims."""
    ref = f"{item.repository}@{item.digest}"
    if sorted(configs) != sorted(item.platforms):
        raise ConfigError(
            f"{ref} is {', '.join(sorted(configs)) or 'no image'}, not "
            f"{', '.join(item.platforms)} as {item.source} says: rebuild that platform"
        )
    for platform, config in configs.items():
        labels = (config.get("config") or {}).get("Labels") or {}
        built_from = str(labels.get(REVISION, ""))
        if revision and built_from != revision:
            raise ConfigError(
                f"{ref} ({platform}) was built from commit {built_from[:12] or 'unknown'}, "
                f"not {revision[:12]} (this checkout): build every platform from one commit"
            )
        if title and labels.get(TITLE, title) != title:
            raise ConfigError(
                f"{ref} ({platform}) is image {labels.get(TITLE)!r}, not {title!r}: "
                "merge digests of one image"
            )


def inspect_configs(ref: str, runner: Runner) -> dict[str, Mapping[str, Any]]:
    """Ask the registry what `ref` is: its platforms and their configs."""
    command = Command(
        ("docker", "buildx", "imagetools", "inspect", "--format", "{{json .Image}}", ref)
    )
    try:
        return image_configs(runner.run(command, capture=True, quiet=True).stdout)
    except CommandFailed as exc:
        error = registry_error(ref, str(exc), action="read")
        if error:
            raise error from None
        raise BuildtasksError(
            f"the registry has no {ref}: push that platform again "
            "(`docker.build --platform ... --push-by-digest`)"
        ) from None


def child_digests(index: Mapping[str, Any]) -> set[str]:
    return {str(d.get("digest")) for d in index.get("manifests") or ()}


def check_index(
    index: Mapping[str, Any],
    expected: Sequence[str],
    given: Sequence[PlatformDigest],
    nested: Mapping[str, set[str]],
) -> None:
    """Fail unless the created index lists exactly `expected` and every given manifest.

    `nested` maps a given digest that is itself an index to its children (which the merge
    lists in its place).
    """
    platforms = sorted(p for p, _ in platform_manifests(index))
    if platforms != sorted(expected):
        raise BuildtasksError(
            f"the merged index lists {', '.join(platforms)}, not {', '.join(sorted(expected))}: "
            "nothing was tagged"
        )
    children = child_digests(index)
    for item in given:
        wanted = nested.get(item.digest) or {item.digest}
        if not wanted <= children:
            raise BuildtasksError(
                f"the merged index does not list {item.digest[:19]} ({', '.join(item.platforms)}): "
                "nothing was tagged"
            )


@dataclass(frozen=True)
class Merged:
    digest: str
    repository: str
    platforms: tuple[str, ...]
    sources: tuple[PlatformDigest, ...]


def merge(
    given: Sequence[PlatformDigest],
    expected: Sequence[str],
    runner: Runner,
    *,
    revision: str,
    title: str,
    annotations: Sequence[str] = (),
) -> Merged:
    """Check the digests, create the index untagged by digest, read it back; return it."""
    check_set(expected, given)
    repository = given[0].repository
    sources = [f"{item.repository}@{item.digest}" for item in given]
    nested: dict[str, set[str]] = {}
    if not runner.dry:
        for item, ref in zip(given, sources, strict=True):
            check_configs(item, inspect_configs(ref, runner), revision=revision, title=title)
            raw = runner.run(inspect_raw_command(ref), capture=True, quiet=True).stdout
            body = json.loads(raw)
            if "manifests" in body:
                nested[item.digest] = child_digests(body)
    index_annotations_ = index_annotations(annotations)
    planned = runner.run(
        index_command(sources, index_annotations_, dry_run=True), capture=True, quiet=True
    ).stdout
    if runner.dry:
        return Merged("sha256:" + "0" * 64, repository, tuple(expected), tuple(given))
    raw_index = planned[:-1] if planned.endswith("\n") else planned
    digest = manifest_digest(raw_index)
    check_index(json.loads(raw_index), expected, given, nested)
    runner.run(
        index_command(sources, index_annotations_, tag=f"{repository}@{digest}"), capture=True
    )
    if served_digest(f"{repository}@{digest}", runner) != digest:
        raise BuildtasksError(
            f"the registry does not serve the merged index {repository}@{digest}: "
            "nothing was tagged; run docker.merge again"
        )
    return Merged(digest, repository, tuple(expected), tuple(given))


@dataclass(frozen=True)
class MergeOptions:
    """What `docker.merge` was asked for (empty means "as configured / as recorded")."""

    platforms: tuple[str, ...] = ()
    digests: tuple[str, ...] = ()
    name: str = ""
    tags: tuple[str, ...] = ()
    from_dir: str = ""
    #: Create and record the index only; `docker.push` (or the release) tags it later.
    untagged: bool = False


def merge_image(
    config: Config,
    image: ImageSpec,
    runner: Runner,
    options: MergeOptions,
    *,
    env: Mapping[str, str],
    now: datetime,
    given: Sequence[PlatformDigest] | None = None,
) -> BuildOutcome:
    """Merge `image`'s platform digests, record the index as its build, tag it unless asked not to.

    `given` (a spread build's own digests) replaces the recorded ones.
    """
    from buildtasks import record
    from buildtasks.build import (
        BuildOutcome,
        explicit_tags,
        image_names,
        publish_build,
        recorded_outcome,
    )
    from buildtasks.tagging import image_metadata

    if given is None:
        directory = (
            Path(options.from_dir) if options.from_dir else record.digests_dir(config, image)
        )
        given = read_digest_files(directory, image.key)
    # The index goes where the platforms are; the tags too unless --name says otherwise.
    name = options.name or (given[0].repository if given else "")
    names = image_names(config, image, name)
    given = [*given, *(parse_digest_option(v, names[0]) for v in options.digests)]
    meta = image_metadata(config, image, names, env=env, cwd=config.root, now=now)
    tags = explicit_tags(names, options.tags) if options.tags else meta.tags
    if not tags:
        raise ConfigError(f"no tags for {image.key}: the tag rules produced none; pass --tag")
    expected = parse_platforms(list(options.platforms)) if options.platforms else image.platforms
    merged = merge(
        given,
        expected,
        runner,
        revision=meta.revision,
        title=meta.labels.get(TITLE, ""),
        annotations=meta.annotations,
    )
    path = record.metadata_path(config, image)
    stand_ins = tuple(sorted({s for item in given for s in item.stand_ins}))
    if runner.dry:
        return BuildOutcome(image, merged.digest, tags, path, tuple(expected), True, False)
    record.write_json(
        path,
        {
            "containerimage.digest": merged.digest,
            "image.name": ",".join(tags),
            "buildtasks": {
                "tags": list(tags),
                "platforms": list(expected),
                "pushed": True,
                "registry_digest": merged.digest,
                "tagged": False,
                "stand_ins": list(stand_ins),
                "revision": meta.revision,
                "version": meta.version,
                "labels": dict(meta.labels),
                "merged_from": {
                    ",".join(item.platforms): f"{item.repository}@{item.digest}" for item in given
                },
            },
        },
    )
    outcome = recorded_outcome(config, image)
    if options.untagged:
        return outcome
    return publish_build(config, outcome, runner, tag=True)
