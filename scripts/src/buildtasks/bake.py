"""Several images in one BuildKit solve: a bake definition from the planned builds.

`docker.build` of several images plans each one as it would build it alone
(`build.plan_build`: tags, labels, annotations, build arguments, contexts, secrets, cache,
outputs), writes the requests as one bake file (JSON), and runs `docker buildx bake` once:
BuildKit builds the targets at the same time and shares the stages they have in common.
Bake's metadata file is then split into each image's record, and each image is finished as
a single build is (prune, load, record, push), so everything said of one build stays true
of each target.

Bake refuses to read or write files outside its working directory unless allowed, so the
run passes exactly the entitlements the targets need (`--allow fs.read=…` for the proxy
CA's secret file and the local cache, `--allow fs.write=…` for the OCI layouts and the cache
export). `docker.bake --print` writes the same file for people who run bake themselves or
move to a hosted builder that reads bake files; paths inside the repository are relative to
it, so the file works from a checkout anywhere.
"""

from __future__ import annotations

import json
import os
import re
import time
from collections.abc import Callable, Mapping, Sequence
from contextlib import ExitStack
from datetime import datetime
from pathlib import Path
from typing import Any

from buildtasks.build import (
    BuildOptions,
    BuildOutcome,
    PlannedBuild,
    finish_build,
    hold,
    plan_build,
)
from buildtasks.builders import DEFAULT as DEFAULT_BUILDER
from buildtasks.builders import BuilderSpec
from buildtasks.buildx import BuildRequest
from buildtasks.command import Command
from buildtasks.config import Config, ImageSpec
from buildtasks.runner import Runner
from buildtasks.solve import run_bake

#: What bake accepts as a target name.
_TARGET_RE = re.compile(r"[^A-Za-z0-9_-]")


def target_name(key: str) -> str:
    """The bake target of image `key` (`backend`)."""
    return _TARGET_RE.sub("-", key)


def _relative(path: str | Path, root: Path) -> str:
    """`path` relative to `root` when inside it (the bake file travels with the checkout)."""
    try:
        relative = Path(path).resolve().relative_to(root.resolve())
    except ValueError:
        return str(path)
    return relative.as_posix() or "."


def _output(request: BuildRequest, root: Path) -> list[str]:
    """The target's outputs, as `buildx_build` passes them (`--output` values)."""
    rewrite = ",rewrite-timestamp=true" if request.rewrite_timestamp else ""
    outputs = []
    if request.push_by_digest:
        names = ",".join(request.push_by_digest)
        outputs.append(
            f'type=image,"name={names}",push-by-digest=true,name-canonical=true,push=true{rewrite}'
        )
    if request.oci_dest:
        outputs.append(f"type=oci,dest={_relative(request.oci_dest, root)},tar=false{rewrite}")
    elif request.load:
        outputs.append(f"type=docker{rewrite}")
    return outputs


def _local_path(spec: str, key: str) -> str:
    """The `src=`/`dest=` path of a cache or secret spec ('' when it has none)."""
    for part in spec.split(","):
        name, _, value = part.partition("=")
        if name.strip() == key:
            return value.strip()
    return ""


def target(image: ImageSpec, request: BuildRequest, *, root: Path) -> dict[str, Any]:
    """One image's bake target: the same build `buildx.buildx_build` runs for it alone."""
    body: dict[str, Any] = {
        "context": _relative(root / image.context, root),
        "dockerfile": _relative(root / image.dockerfile, root),
        "platforms": list(request.platforms),
        "tags": list(request.tags),
        "args": {**image.build_args, **request.build_args},
        "labels": dict(request.labels),
        "annotations": list(request.annotations),
        "output": _output(request, root),
    }
    if image.target:
        body["target"] = image.target
    if request.build_contexts:
        body["contexts"] = dict(sorted(request.build_contexts.items()))
    if request.secrets:
        body["secret"] = list(request.secrets)
    if request.ssh:
        body["ssh"] = list(request.ssh)
    if request.no_cache:
        body["no-cache"] = True
        body["pull"] = True
    elif request.cache and request.cache.sources:
        body["cache-from"] = list(request.cache.sources)
    if request.cache and request.cache.dest:
        body["cache-to"] = [request.cache.dest]
    if request.provenance is not None:
        body["attest"] = [
            "type=provenance,disabled=true"
            if request.provenance == "false"
            else f"type=provenance,{request.provenance}"
        ]
    return body


def definition(builds: Sequence[tuple[ImageSpec, BuildRequest]], *, root: Path) -> dict[str, Any]:
    """The bake file (JSON) of `builds`: one target per image, all in the `default` group."""
    targets = {
        target_name(image.key): target(image, request, root=root) for image, request in builds
    }
    return {"group": {"default": {"targets": list(targets)}}, "target": targets}


def entitlements(
    builds: Sequence[tuple[ImageSpec, BuildRequest]],
    *,
    root: Path,
    is_dir: Callable[[str], bool] = os.path.isdir,
) -> list[str]:
    """The `--allow` values bake needs for these targets: files read and written outside
    the working directory (`root`). A directory bake writes (a cache export, an OCI layout)
    is made inside its parent, so the write is allowed there (or in the nearest directory
    that exists: a first build's cache directory has none yet)."""
    reads: set[str] = set()
    writes: set[str] = set()
    ssh = any(request.ssh for _, request in builds)

    def outside(path: str) -> bool:
        return bool(path) and _relative(path, root) == str(path)

    def where_made(path: str) -> str:
        parent = Path(path).parent
        while not is_dir(str(parent)) and parent != parent.parent:
            parent = parent.parent
        return str(parent)

    for _, request in builds:
        for secret in request.secrets:
            if outside(source := _local_path(secret, "src")):
                reads.add(source)
        if request.cache:
            for source in request.cache.sources:
                if source.startswith("type=local") and outside(path := _local_path(source, "src")):
                    reads.add(path)
            dest = request.cache.dest
            if dest.startswith("type=local") and outside(path := _local_path(dest, "dest")):
                writes.add(where_made(path))
        if request.oci_dest and outside(request.oci_dest):
            writes.add(where_made(request.oci_dest))
    return [
        *(f"fs.read={p}" for p in sorted(reads)),
        *(f"fs.write={p}" for p in sorted(writes)),
        *(["ssh"] if ssh else []),
    ]


def bake_command(
    definition_file: Path,
    metadata_file: Path,
    *,
    root: Path,
    allow: Sequence[str],
    builder: str = "",
    progress: str = "auto",
) -> Command:
    """`docker buildx bake` of every target in `definition_file`, from `root`."""
    argv = ["docker", "buildx", "bake"]
    if builder:
        argv += ["--builder", builder]
    argv += ["--file", str(definition_file), "--metadata-file", str(metadata_file)]
    argv += ["--progress", progress]
    for value in allow:
        argv += ["--allow", value]
    return Command(tuple(argv), cwd=str(root), hint="the build log above says why")


def split_metadata(metadata: Mapping[str, Any], records: Mapping[str, Path]) -> None:
    """Write each target's part of bake's metadata file as that image's record.

    `records` maps target names to record paths; a target bake reported nothing for keeps
    no record (the build that failed).
    """
    for name, path in records.items():
        part = metadata.get(name)
        if isinstance(part, Mapping):
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(part, indent=2) + "\n", encoding="utf-8")


# --------------------------------------------------------------------------- service


def build_all(
    config: Config,
    images: Sequence[ImageSpec],
    options: BuildOptions,
    runner: Runner,
    *,
    env: Mapping[str, str],
    now: datetime,
    jobs: int = 0,
    on: BuilderSpec = DEFAULT_BUILDER,
) -> list[BuildOutcome]:
    """Build `images` in one bake on builder `on` (`jobs` > 0: at most that many targets per
    bake), then finish each one as a single build is: prune, load, record, push, tags."""
    plans = [
        plan_build(config, image, options, runner, env=env, now=now, on=on) for image in images
    ]
    size = jobs if jobs > 0 else len(plans)
    outcomes = []
    for start in range(0, len(plans), size):
        outcomes += _bake_group(config, plans[start : start + size], options, runner)
    return outcomes


def _bake_group(
    config: Config, plans: Sequence[PlannedBuild], options: BuildOptions, runner: Runner
) -> list[BuildOutcome]:
    builds = [(p.image, p.request) for p in plans]
    work = config.artifacts_path(plans[0].image).parent / ".bake"
    definition_file, metadata_file = work / "bake.json", work / "metadata.json"
    if not runner.dry:
        work.mkdir(parents=True, exist_ok=True)
        definition_file.write_text(
            json.dumps(definition(builds, root=config.root), indent=2) + "\n", encoding="utf-8"
        )
        metadata_file.unlink(missing_ok=True)
    command = bake_command(
        definition_file,
        metadata_file,
        root=config.root,
        allow=entitlements(builds, root=config.root),
        builder=plans[0].on.buildx_name,
        progress="plain" if options.verbose else "auto",
    )
    keys = ", ".join(p.image.key for p in plans)
    runner.say(f"==> one bake, {len(plans)} image{'s' * (len(plans) > 1)} at once: {keys}")
    with ExitStack() as guards:
        for plan in plans:
            hold(plan, runner, guards)
        started = time.monotonic()
        run_bake(config, [p.image for p in plans], command, runner, plans[0].on)
        seconds = time.monotonic() - started
        if not runner.dry:
            split_metadata(
                json.loads(metadata_file.read_text(encoding="utf-8")),
                {target_name(p.image.key): p.out for p in plans},
            )
        for plan in plans:
            plan.steps.append(("buildx bake (all at once)", seconds))
        return [finish_build(config, plan, runner) for plan in plans]
