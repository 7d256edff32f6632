"""Pure builders for `docker buildx` commands, and the reader of the build metadata file."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from buildtasks.command import Command
from buildtasks.config import ImageSpec
from buildtasks.errors import BuildtasksError

ENGINE_HINT = "is the engine running? start it with `uv run invoke lab.up`"


@dataclass(frozen=True)
class CacheSpec:
    """A `type=local` build cache: read from `src` (None until one exists), write to `dest`."""

    src: str | None
    dest: str


@dataclass(frozen=True)
class BuildRequest:
    """Everything one `docker buildx build` needs besides the image's own configuration."""

    tags: tuple[str, ...]
    platforms: tuple[str, ...]
    metadata_file: str
    push: bool = False
    load: bool = True
    progress: str = "auto"
    no_cache: bool = False
    cache: CacheSpec | None = None
    build_args: Mapping[str, str] = field(default_factory=dict)
    labels: Mapping[str, str] = field(default_factory=dict)
    annotations: tuple[str, ...] = ()
    build_contexts: Mapping[str, str] = field(default_factory=dict)
    secrets: tuple[str, ...] = ()
    provenance: str | None = None


def buildx_build(image: ImageSpec, request: BuildRequest, *, root: Path) -> Command:
    """Return the `docker buildx build` argv for `image` (paths resolved against `root`)."""
    argv: list[str] = ["docker", "buildx", "build"]
    argv += ["--file", str(root / image.dockerfile)]
    if image.target:
        argv += ["--target", image.target]
    argv += ["--platform", ",".join(request.platforms)]
    argv += ["--progress", request.progress]
    argv += ["--metadata-file", request.metadata_file]
    for tag in request.tags:
        argv += ["--tag", tag]
    for key, value in {**image.build_args, **request.build_args}.items():
        argv += ["--build-arg", f"{key}={value}"]
    for key, value in request.labels.items():
        argv += ["--label", f"{key}={value}"]
    for annotation in request.annotations:
        argv += ["--annotation", annotation]
    for name, source in sorted(request.build_contexts.items()):
        argv += ["--build-context", f"{name}={source}"]
    for secret in request.secrets:
        argv += ["--secret", secret]
    if request.no_cache:
        # Every cache off: no layer cache, no cache import, bases pulled afresh.
        argv += ["--no-cache", "--pull"]
    elif request.cache and request.cache.src:
        argv += ["--cache-from", f"type=local,src={request.cache.src}"]
    if request.cache:
        argv += ["--cache-to", f"type=local,dest={request.cache.dest},mode=max"]
    if request.provenance is not None:
        argv += [f"--provenance={request.provenance}"]
    if request.push:
        argv += ["--push"]
    if request.load:
        argv += ["--load"]
    argv.append(str(root / image.context))
    return Command(tuple(argv), hint="the build log above says why")


def engine_probe() -> Command:
    """Return the command that answers when the engine is up: its server version."""
    return Command(("docker", "version", "--format", "{{.Server.Version}}"), hint=ENGINE_HINT)


def buildx_probe() -> Command:
    """Return the command that lists the current builder (driver, platforms)."""
    return Command(("docker", "buildx", "inspect"), hint="install docker-buildx or run lab.up")


def image_inspect(ref: str, fmt: str) -> Command:
    """Return `docker image inspect` of one reference with a Go template."""
    return Command(("docker", "image", "inspect", "--format", fmt, ref))


def driver_supports_local_cache(inspect_output: str, info_driver_status: str) -> bool:
    """Tell from `buildx inspect` and `docker info` whether cache export to a directory works.

    The docker-container/kubernetes/remote drivers always can; the docker driver only with the
    containerd image store.
    """
    driver = ""
    for line in inspect_output.splitlines():
        if line.strip().lower().startswith("driver:"):
            driver = line.split(":", 1)[1].strip()
            break
    if driver and driver != "docker":
        return True
    return "io.containerd.snapshotter" in info_driver_status


@dataclass(frozen=True)
class BuildResult:
    """The facts a build's `--metadata-file` records."""

    digest: str
    image_names: tuple[str, ...]
    config_digest: str = ""


def read_metadata(path: Path) -> BuildResult:
    """Read the digest and names from a `--metadata-file`; fail naming the fix if absent."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise BuildtasksError(
            f"no build metadata at {path}: build the image first with `uv run invoke docker.build`"
        ) from None
    except json.JSONDecodeError as exc:
        raise BuildtasksError(f"build metadata {path} is not valid JSON ({exc}); rebuild") from None
    return parse_metadata(data, str(path))


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


def by_digest(name: str, digest: str) -> str:
    """Return `name@sha256:...` for a repository name that may carry a tag."""
    repo = name.split("@", 1)[0]
    last = repo.rsplit("/", 1)[-1]
    if ":" in last:
        repo = repo[: repo.rfind(":")]
    return f"{repo}@{digest}"


def platforms_needing_emulation(platforms: Sequence[str], host_arch: str) -> tuple[str, ...]:
    """Return the requested platforms whose architecture differs from the host's."""
    native = {"x86_64": "amd64", "aarch64": "arm64", "armv7l": "arm"}.get(host_arch, host_arch)
    return tuple(p for p in platforms if p.split("/")[1] != native)


PROVENANCE_UNSUPPORTED = (
    "note: this builder cannot attach provenance attestations (the docker driver needs the "
    "containerd image store; `uv run invoke lab.up` enables it): building without them"
)


def provenance_for(requested: str | None, supported: bool) -> tuple[str | None, str]:
    """Decide the `--provenance` value and the note to print.

    `requested` None leaves buildx's default (min provenance where supported). An explicit
    request on a builder that cannot attest is turned off, with a note, instead of failing.
    """
    if requested is None or requested == "false":
        return requested, ""
    if not supported:
        return "false", PROVENANCE_UNSUPPORTED
    return requested, ""
