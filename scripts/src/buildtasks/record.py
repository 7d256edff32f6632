"""The build record: what the last `docker.build` of an image produced, and where it is kept.

buildx writes its `--metadata-file` to `<artifacts-dir>/<image>/metadata.json`; the build adds
a `buildtasks` section with the tags and platforms it asked for. Every later step (push, scan,
SBOM, sign, attest, verify) reads the digest from here: this module is the one place that
knows the file's path and shape.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from buildtasks.config import Config, ImageSpec
from buildtasks.errors import BuildtasksError, ConfigError, NotFound
from buildtasks.files import write_atomic
from buildtasks.refs import by_digest, is_local_registry, registry_of, require_digest


def metadata_path(config: Config, image: ImageSpec) -> Path:
    """Where the build record of `image` is written."""
    return config.artifacts_path(image) / "metadata.json"


def platforms_slug(platforms: Sequence[str]) -> str:
    """`linux/amd64`, `linux/arm64` → `linux-amd64+linux-arm64`: platforms as a file name."""
    return "+".join(p.replace("/", "-") for p in platforms)


def platform_metadata_path(config: Config, image: ImageSpec, platforms: Sequence[str]) -> Path:
    """Where a per-platform build (`--push-by-digest`) writes its buildx metadata.

    Apart from the image's own record, so builds of other platforms can run at the same time
    in the same checkout.
    """
    return config.artifacts_path(image) / "platforms" / platforms_slug(platforms) / "metadata.json"


def digests_dir(config: Config, image: ImageSpec) -> Path:
    """The folder of per-platform digests `docker.merge` reads (CI jobs pass it around)."""
    return config.artifacts_path(image) / "digests"


def write_platform_digest(
    config: Config, image: ImageSpec, platforms: Sequence[str], facts: Mapping[str, object]
) -> Path:
    """Record a per-platform push for `docker.merge`: digest, repositories, commit."""
    path = digests_dir(config, image) / f"{platforms_slug(platforms)}.json"
    write_json(path, {"image": image.key, "platforms": list(platforms), **facts})
    return path


@dataclass(frozen=True)
class BuildResult:
    """The facts a build's `--metadata-file` records."""

    digest: str
    image_names: tuple[str, ...]
    config_digest: str = ""


def read_raw(path: Path) -> Mapping[str, object]:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise NotFound(
            f"no build metadata at {path}: build the image first with `uv run invoke docker.build`"
        ) from None
    except json.JSONDecodeError as exc:
        raise BuildtasksError(f"build metadata {path} is not valid JSON ({exc}); rebuild") from None


def read_metadata(path: Path) -> BuildResult:
    """Read the digest and names from a `--metadata-file`; fail naming the fix if absent."""
    return parse_metadata(read_raw(path), str(path))


def parse_metadata(data: Mapping[str, object], where: str = "metadata") -> BuildResult:
    """Extract the image digest from parsed buildx metadata."""
    digest = data.get("containerimage.digest")
    if not isinstance(digest, str) or not digest.startswith("sha256:"):
        raise BuildtasksError(
            f"{where} has no containerimage.digest; the build did not produce an image — "
            "rebuild with --load or --push"
        )
    names = data.get("image.name", "")
    config_digest = data.get("containerimage.config.digest", "")
    return BuildResult(
        digest=digest,
        image_names=tuple(n for n in str(names).split(",") if n),
        config_digest=str(config_digest),
    )


def add_facts(path: Path, **facts: object) -> None:
    """Add what the build asked for (tags, platforms, pushed) to its metadata file.

    Facts already recorded are kept unless given again (a push adds `registry_digest` to the
    facts the build wrote).
    """
    data = json.loads(path.read_text(encoding="utf-8"))
    known = data.get("buildtasks")
    merged = dict(known) if isinstance(known, Mapping) else {}
    merged.update({k: list(v) if isinstance(v, tuple) else v for k, v in facts.items()})
    data["buildtasks"] = merged
    write_json(path, data)


def write_json(path: Path, data: object) -> None:
    """Write `data` to `path` whole or not at all (a reader never sees half a record)."""
    write_atomic(path, json.dumps(data, indent=2) + "\n")


@dataclass(frozen=True)
class Recorded:
    """The build facts `docker.push` and the release chain read back."""

    digest: str
    tags: tuple[str, ...]
    platforms: tuple[str, ...]
    #: The lab stand-ins the build used as bases (`python:3.11-slim`, ...).
    stand_ins: tuple[str, ...] = ()
    #: The digest the registry serves once pushed ('' before). It equals `digest` except on
    #: the classic image store, where `digest` is the engine's image id (the config digest).
    registry_digest: str = ""
    #: Whether the tags were applied (False for an untagged push by digest).
    tagged: bool = False

    @property
    def published_digest(self) -> str:
        """What later steps act on: the registry's digest once pushed, the build's before."""
        return self.registry_digest or self.digest

    def is_digest(self, digest: str) -> bool:
        return digest in (self.digest, self.registry_digest)


def read_recorded(config: Config, image: ImageSpec) -> Recorded:
    """Read the digest and the tags of the last build of `image`."""
    path = metadata_path(config, image)
    data = read_raw(path)
    result = parse_metadata(data, str(path))
    facts = data.get("buildtasks")
    facts = facts if isinstance(facts, Mapping) else {}
    return Recorded(
        digest=result.digest,
        tags=tuple(facts.get("tags", result.image_names)),
        platforms=tuple(facts.get("platforms", ())),
        stand_ins=tuple(facts.get("stand_ins", ())),
        registry_digest=str(facts.get("registry_digest", "")),
        tagged=bool(facts.get("tagged", False)),
    )


def _recorded_for(config: Config, spec: ImageSpec, target: str) -> Recorded | None:
    """The last build of `spec` when `target` is its digest; None for any other image."""
    try:
        recorded = read_recorded(config, spec)
    except BuildtasksError:
        return None
    same = recorded.is_digest(require_digest(target, allow_image_id=True).digest)
    return recorded if same else None


def platforms_of(config: Config, spec: ImageSpec, target: str) -> tuple[str, ...]:
    """The platforms the last build of `spec` made, when `target` is that build's digest."""
    recorded = _recorded_for(config, spec, target)
    return recorded.platforms if recorded else ()


def stand_in_problem(stand_ins: Sequence[str], refs: Sequence[str], *, lab_registry: str) -> str:
    """Why publishing `refs` must not happen: stand-in bases bound for a real registry ('' if ok)."""
    if not stand_ins:
        return ""
    real = sorted(
        {registry_of(r) for r in refs if not is_local_registry(r, lab_registry=lab_registry)}
    )
    if not real:
        return ""
    return (
        f"built on the lab's stand-in bases ({', '.join(stand_ins)}), not the real images, "
        f"and bound for {', '.join(real)}"
    )


def require_real_bases(
    key: str,
    action: str,
    stand_ins: Sequence[str],
    refs: Sequence[str],
    *,
    lab_registry: str,
    allow: bool,
) -> None:
    """Refuse to `action` (push, sign, release) `refs` outside the lab when built on stand-ins."""
    problem = stand_in_problem(stand_ins, refs, lab_registry=lab_registry)
    if problem and not allow:
        raise ConfigError(
            f"refusing to {action} {key}: {problem}; build where the real bases are reachable "
            "(without the lab's mirror), or pass --allow-stand-ins if this is intended"
        )


def refuse_stand_ins(
    config: Config, spec: ImageSpec, target: str, *, allow: bool, action: str
) -> None:
    """`require_real_bases` for `target`, with the stand-ins its build record lists.

    An image built elsewhere (no record of that digest) is not judged here.
    """
    recorded = _recorded_for(config, spec, target)
    if recorded:
        require_real_bases(
            spec.key,
            action,
            recorded.stand_ins,
            [target],
            lab_registry=config.lab.registry,
            allow=allow,
        )


def unpushed_digest(config: Config, spec: ImageSpec) -> str:
    """The engine's digest of the last build of `spec` when it was not pushed ('' otherwise)."""
    recorded = read_recorded(config, spec)
    return "" if recorded.registry_digest else recorded.digest


def digest_targets(
    config: Config, image: str, ref: str, *, allow_image_id: bool = False
) -> list[tuple[ImageSpec, str]]:
    """The (image, `name@sha256:...`) pairs a step works on: `--ref`, or each last build.

    `--ref` names one image, so it needs `--image` when several are configured.
    """
    specs = config.select(image)
    if ref:
        target = str(require_digest(ref, allow_image_id=allow_image_id))
        if len(specs) > 1:
            keys = " or ".join(f"--image {s.key}" for s in specs)
            raise ConfigError(f"--ref names one image: add {keys}")
        return [(specs[0], target)]
    pairs = []
    for spec in specs:
        recorded = read_recorded(config, spec)
        if not recorded.tags:
            raise ConfigError(
                f"the last build of {spec.key} recorded no image name: pass --ref name@sha256:..."
            )
        pairs.append((spec, by_digest(recorded.tags[0], recorded.published_digest)))
    return pairs
