"""Pure builders for `docker buildx` commands and the engine probes, and what their output means."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from buildtasks.caches import CacheSpec
from buildtasks.command import Command
from buildtasks.config import ImageSpec
from buildtasks.errors import clip

ENGINE_HINT = "is the engine running? start it with `uv run invoke lab.up`"


@dataclass(frozen=True)
class BuildRequest:
    """Everything one `docker buildx build` needs besides the image's own configuration."""

    tags: tuple[str, ...]
    platforms: tuple[str, ...]
    metadata_file: str
    #: Repositories a builder that pushes by itself (`docker-container`, `remote`) pushes the
    #: image to, untagged, by digest. Empty with the `docker` driver: its image is exported
    #: from the engine and pushed by `push.push_untagged` instead.
    push_by_digest: tuple[str, ...] = ()
    #: Export an OCI layout (a directory) here instead of loading (the containerd store's
    #: moby exporter cannot rewrite timestamps); the build then loads it if the engine lacks it.
    oci_dest: str = ""
    #: Clamp every file time in the new layers to SOURCE_DATE_EPOCH (reproducible layers).
    rewrite_timestamp: bool = False
    load: bool = True
    progress: str = "auto"
    no_cache: bool = False
    cache: CacheSpec | None = None
    build_args: Mapping[str, str] = field(default_factory=dict)
    labels: Mapping[str, str] = field(default_factory=dict)
    annotations: tuple[str, ...] = ()
    build_contexts: Mapping[str, str] = field(default_factory=dict)
    secrets: tuple[str, ...] = ()
    #: SSH agent sockets or keys the build may use (`--ssh default`, `--ssh id=path`).
    ssh: tuple[str, ...] = ()
    provenance: str | None = None
    #: A buildx builder by name (`--builder`); '' for the engine's own.
    builder: str = ""


def buildx_build(image: ImageSpec, request: BuildRequest, *, root: Path) -> Command:
    """Return the `docker buildx build` argv for `image` (paths resolved against `root`)."""
    argv: list[str] = ["docker", "buildx", "build"]
    if request.builder:
        argv += ["--builder", request.builder]
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
    for ssh in request.ssh:
        argv += ["--ssh", ssh]
    if request.no_cache:
        # Every cache off: no layer cache, no cache import, bases pulled afresh.
        argv += ["--no-cache", "--pull"]
    elif request.cache:
        for source in request.cache.sources:
            argv += ["--cache-from", source]
    if request.cache and request.cache.dest:
        argv += ["--cache-to", request.cache.dest]
    if request.provenance is not None:
        argv += [f"--provenance={request.provenance}"]
    rewrite = ",rewrite-timestamp=true" if request.rewrite_timestamp else ""
    if request.push_by_digest:
        names = ",".join(request.push_by_digest)
        argv += [
            "--output",
            f'type=image,"name={names}",push-by-digest=true,name-canonical=true,push=true{rewrite}',
        ]
    if request.oci_dest:
        argv += ["--output", f"type=oci,dest={request.oci_dest},tar=false{rewrite}"]
    elif request.load:
        argv += ["--output", f"type=docker{rewrite}"] if rewrite else ["--load"]
    argv.append(str(root / image.context))
    return Command(tuple(argv), hint="the build log above says why")


def engine_probe() -> Command:
    """Return the command that answers when the engine is up: its server version."""
    return Command(("docker", "version", "--format", "{{.Server.Version}}"), hint=ENGINE_HINT)


def buildx_version() -> Command:
    """Return the command that answers when the buildx plugin is installed."""
    return Command(("docker", "buildx", "version"), hint="install docker-buildx or run lab.up")


def buildx_probe(builder: str = "") -> Command:
    """Return the command that lists a builder (the current one by default): driver, platforms."""
    argv = ("docker", "buildx", "inspect", *((builder,) if builder else ()))
    return Command(argv, hint="install docker-buildx or run lab.up")


def driver_status_probe() -> Command:
    """Return the command that shows the engine's storage driver status (image store kind)."""
    return Command(("docker", "info", "--format", "{{json .DriverStatus}}"), hint=ENGINE_HINT)


def image_load(archive: str) -> Command:
    """Load an image archive (OCI or `docker save`) into the engine's image store."""
    return Command(("docker", "image", "load", "--input", archive), hint=ENGINE_HINT)


def image_inspect(ref: str, fmt: str) -> Command:
    """Return `docker image inspect` of one reference with a Go template."""
    return Command(("docker", "image", "inspect", "--format", fmt, ref))


@dataclass(frozen=True)
class Builder:
    """What the current buildx builder can do, from `buildx inspect` and `docker info`."""

    driver: str
    platforms: tuple[str, ...]
    #: Exports caches and attaches attestations: a container/remote driver, or the docker
    #: driver with the containerd image store.
    capable: bool
    #: The engine's image store behind a `docker` driver: "containerd" or "classic"
    #: ("" for drivers that keep their own store).
    store: str = ""

    @property
    def reproducible(self) -> bool:
        """Whether its exports can clamp file times to SOURCE_DATE_EPOCH (`rewrite-timestamp`).

        Not the classic image store: its docker driver has no OCI exporter, and its moby
        exporter accepts the option but keeps the build's file times (measured, Docker 26.1).
        """
        return self.store != "classic"

    @property
    def loads_through_oci(self) -> bool:
        """The containerd store's moby exporter refuses rewrite-timestamp ("conflicts with
        unpack"): such builds export an OCI archive and load it."""
        return self.store == "containerd"

    @property
    def pushes_itself(self) -> bool:
        """Whether buildx can push by digest itself (not the `docker` driver: measured refusal)."""
        return bool(self.driver) and self.driver != "docker"

    def lacks(self, requested: Sequence[str]) -> tuple[str, ...]:
        """The requested platforms this builder cannot build (none when it lists none)."""
        if not self.platforms:
            return ()
        return tuple(p for p in requested if p not in self.platforms)


def parse_builder(inspect_output: str, info_driver_status: str) -> Builder:
    """Read the driver, the platforms and the capabilities of the current builder."""
    driver = ""
    platforms: list[str] = []
    for line in inspect_output.splitlines():
        key, _, value = line.partition(":")
        key = key.strip().lower()
        if key == "driver" and not driver:
            driver = value.strip()
        elif key == "platforms":
            platforms += [p.strip().rstrip("*") for p in value.split(",") if p.strip()]
    containerd = "io.containerd.snapshotter" in info_driver_status
    capable = bool(driver and driver != "docker") or containerd
    store = ("containerd" if containerd else "classic") if driver == "docker" else ""
    return Builder(driver, tuple(dict.fromkeys(platforms)), capable, store)


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


# ------------------------------------------------------------------ why a build failed

#: BuildKit's words for a RUN step that exited non-zero.
_RUN_FAILED_RE = re.compile(
    r'process "(?:/bin/sh -c |/bin/bash -c )?(?P<cmd>.*)" did not complete successfully: '
    r"exit code: (?P<code>\d+)",
    re.DOTALL,
)


def failed_builds(builder: str = "") -> Command:
    """The builder's failed builds, one JSON object per line (`docker buildx history ls`)."""
    argv = ["docker", "buildx", "history", "ls", "--filter", "status=error", "--format", "json"]
    return Command((*argv, *(["--builder", builder] if builder else [])))


def build_record(ref: str, builder: str = "") -> Command:
    """One build's record as JSON (`docker buildx history inspect`), its error included."""
    argv = ["docker", "buildx", "history", "inspect", ref.rsplit("/", 1)[-1], "--format", "json"]
    return Command((*argv, *(["--builder", builder] if builder else [])))


def pick_failed_build(
    listing: str,
    *,
    since: datetime,
    name_hint: str,
    names: Sequence[str] = (),
    strict: bool = False,
) -> str:
    """The ref of the failed build this task started: the newest one created since `since`,
    preferring those whose name holds `name_hint` (the Dockerfile's directory) or is one of
    `names` (a bake target); with `strict`, only those. '' if none."""
    candidates = []
    for line in listing.splitlines():
        try:
            entry = json.loads(line)
            created = datetime.fromisoformat(str(entry["created_at"]).replace("Z", "+00:00"))
        except (ValueError, KeyError, TypeError):
            continue
        name = str(entry.get("name", ""))
        ours = name_hint in name or name in names
        if created >= since and (ours or not strict):
            candidates.append((ours, created, entry["ref"]))
    return str(max(candidates)[2]) if candidates else ""


def failure_reason(message: str) -> str:
    """A build's error on one line: `step "RUN …" failed with exit code N` for a RUN step."""
    if match := _RUN_FAILED_RE.search(message):
        command = " ".join(match.group("cmd").replace('\\"', '"').split())
        return f'step "RUN {clip(command, 100)}" failed with exit code {match.group("code")}'
    return clip(message)
