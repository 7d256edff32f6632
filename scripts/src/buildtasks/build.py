"""Build one configured image: preflight, plan, run, record the digest.

Both `invoke docker.build` and the Nox sessions call `build_image`, so a laptop, CI and the
image tests all build through the same plan. The build never runs lab code: what the lab
provides (stand-in bases, the proxy CA) it reads from the lab's state file (`labstate`).
"""

from __future__ import annotations

import os
import re
import tarfile
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path

from buildtasks import buildx, caches, dockerfiles, labstate, locks, record, stack, timing
from buildtasks import push as push_mod
from buildtasks.builders import DEFAULT as DEFAULT_BUILDER
from buildtasks.builders import BuilderSpec
from buildtasks.command import Command
from buildtasks.config import Config, ImageSpec, key_values, parse_platforms
from buildtasks.engine import start_hint
from buildtasks.errors import (
    BuildtasksError,
    CommandFailed,
    ConfigError,
    EngineUnavailable,
)
from buildtasks.push import DRY_DIGEST, repositories
from buildtasks.refs import by_digest
from buildtasks.runner import Result, Runner
from buildtasks.solve import run_build
from buildtasks.tools import install_line

TAG_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")
BUILD_ARG_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*=")


@dataclass(frozen=True)
class BuildOptions:
    """What the user asked for on the command line (empty means "use the configuration")."""

    #: Image names to publish to, comma-separated ('' for the configured one).
    name: str = ""
    tags: tuple[str, ...] = ()
    build_args: tuple[str, ...] = ()
    #: Extra OCI labels and annotations, `KEY=VALUE` (after the configured ones: they win).
    labels: tuple[str, ...] = ()
    annotations: tuple[str, ...] = ()
    platforms: tuple[str, ...] = ()
    push: bool = False
    #: Push untagged, by digest, and record the digest for `docker.merge` (implies push).
    push_by_digest: bool = False
    load: bool | None = None
    #: The build cache (`caches.KINDS`); '' follows the configuration.
    cache: str = ""
    no_cache: bool = False
    verbose: bool = False
    provenance: str | None = None
    #: Push for a registry other than the lab's even though the bases are lab stand-ins.
    allow_stand_ins: bool = False
    #: Passed to buildx as they are: `--secret id=...,src=...`, `--ssh default`.
    secrets: tuple[str, ...] = ()
    ssh: tuple[str, ...] = ()
    #: Build every platform on this builder (`builder:NAME`, `context:NAME`, an endpoint, or
    #: a buildx builder's bare name) instead of `[tool.buildtasks.builders]`.
    builder: str = ""


@dataclass(frozen=True)
class BuildOutcome:
    """What a build produced: the digest every later step uses, and where it is recorded."""

    image: ImageSpec
    digest: str
    tags: tuple[str, ...]
    metadata_file: Path
    platforms: tuple[str, ...]
    pushed: bool
    loaded: bool
    #: The lab stand-ins this build used as bases.
    stand_ins: tuple[str, ...] = ()
    #: What the registry serves once pushed ('' when not pushed; differs from `digest` only
    #: on the classic image store, where `digest` is the engine's image id).
    registry_digest: str = ""
    #: Whether the tags were applied in the registry.
    tagged: bool = False
    #: (step, seconds) of this build, in order (`timing`).
    timings: tuple[tuple[str, float], ...] = ()

    @property
    def ref(self) -> str:
        """The image by digest, e.g. `127.0.0.1:5000/monorepo@sha256:...`."""
        return by_digest(self.tags[0], self.registry_digest or self.digest)


#: Build args that turn off a package manager's cache mount; set by --no-cache when declared.
NO_CACHE_ARGS = ("UV_NO_CACHE", "PNPM_NO_CACHE")


def no_cache_args(dockerfile_text: str) -> dict[str, str]:
    """The cache-disabling build args a Dockerfile declares, each set to "1"."""
    declared = set(re.findall(r"^\s*ARG\s+([A-Za-z_][A-Za-z0-9_]*)", dockerfile_text, re.MULTILINE))
    return {name: "1" for name in NO_CACHE_ARGS if name in declared}


def parse_build_args(values: Sequence[str]) -> dict[str, str]:
    """Turn `KEY=VALUE` strings into a dict; fail naming the malformed one."""
    result = {}
    for value in values:
        if not BUILD_ARG_RE.match(value):
            raise ConfigError(f"bad --build-arg {value!r}: expected KEY=VALUE")
        key, _, val = value.partition("=")
        result[key] = val
    return result


def explicit_tags(names: Sequence[str], tags: Sequence[str]) -> tuple[str, ...]:
    """Combine image names with `--tag` values (a value may also be a full `name:tag`)."""
    refs = []
    for tag in tags:
        if ":" in tag.rsplit("/", 1)[-1] or "/" in tag:
            refs.append(tag)
            continue
        if not TAG_RE.match(tag):
            raise ConfigError(
                f"bad tag {tag!r}: tags are up to 128 of [A-Za-z0-9_.-], not starting with '.' or '-'"
            )
        refs += [f"{name}:{tag}" for name in names]
    return tuple(refs)


def image_names(config: Config, image: ImageSpec, override: str) -> tuple[str, ...]:
    """Full repository names for `image`: `--name` (several, comma-separated: one build
    pushed to each, as build-push-action's list of tags), or `<registry>/<repository>`."""
    names = tuple(dict.fromkeys(n.strip() for n in override.split(",") if n.strip()))
    for name in names:
        if name != name.lower() or " " in name or ":" in name.rsplit("/", 1)[-1]:
            raise ConfigError(
                f"bad image name {name!r}: use a lowercase repository without a tag, "
                "e.g. ghcr.io/acme/app (tags go in --tag)"
            )
    return names or (f"{config.registry}/{image.repository}",)


def check_options(config: Config, images: Sequence[ImageSpec], options: BuildOptions) -> None:
    """Check everything that needs no engine, so bad input fails first, whatever the engine."""
    if options.name and len(images) > 1:
        raise ConfigError("--name applies to one image: add --image")
    if options.platforms:
        parse_platforms(list(options.platforms))
    parse_build_args(options.build_args)
    key_values(options.labels, "--label")
    key_values(options.annotations, "--annotation")
    for secret in options.secrets:
        ident = re.search(r"(?:^|,)id=([^,]+)", secret)
        if not ident or ident.group(1) == "ca":
            raise ConfigError(
                f"--secret {secret!r} needs id=NAME (and src=FILE or env=VAR), e.g. "
                "id=npmrc,src=$HOME/.npmrc; the id 'ca' is the proxy CA's"
            )
    for image in images:
        config.dockerfile_path(image)
        if options.tags:
            explicit_tags(image_names(config, image, options.name), options.tags)


def preflight(runner: Runner) -> None:
    """Fail with the fix when the engine is down or buildx is missing."""
    if not runner.dry:
        engine_facts(runner)


def current_builder(runner: Runner, name: str = "") -> buildx.Builder:
    """A builder's driver, platforms and capabilities: `name`, or the runner's engine's own
    (all capable in dry runs)."""
    if runner.dry:
        return buildx.Builder("", (), True)
    return engine_facts(runner, name)


BUILDX_MISSING = re.compile(r"not a docker command|unknown command", re.IGNORECASE)


def engine_facts(runner: Runner, name: str = "") -> buildx.Builder:
    """Whether the engine answers, buildx is there, and what the builder can do.

    `docker info` and `docker buildx inspect` run at the same time, once per runner (one task
    invocation): every later step of the task reads the answer from `runner.memo`.
    """
    key = ("builder", name)
    cached = runner.memo.get(key)
    if isinstance(cached, buildx.Builder):
        return cached
    runner.resolve("docker")
    started = time.monotonic()

    def probe(command: Command) -> Result | None:
        try:
            return runner.run(command, capture=True, check=False, quiet=True, timeout=30)
        except BuildtasksError:  # timed out
            return None

    with ThreadPoolExecutor(2) as pool:
        info_future = pool.submit(probe, buildx.driver_status_probe())
        inspect_future = pool.submit(probe, buildx.buildx_probe(name))
        info, inspect = info_future.result(), inspect_future.result()
    if info is None or not info.ok:
        raise EngineUnavailable(start_hint(builder=runner.env.get("DOCKER_HOST", "")))
    if inspect is None or not inspect.ok:
        text = inspect.stderr if inspect else ""
        if inspect is None or BUILDX_MISSING.search(text) or not name:
            raise EngineUnavailable(f"docker buildx is missing: {install_line('docker')}")
        last = text.strip().splitlines()[-1] if text.strip() else ""
        raise CommandFailed(inspect.command.argv, inspect.returncode, last)
    builder = buildx.parse_builder(inspect.stdout, info.stdout)
    runner.memo[key] = builder
    # The first build's timing table shows what the probes cost, wherever they ran first.
    runner.memo[("probe seconds", name)] = time.monotonic() - started
    return builder


def require_platforms(builder: buildx.Builder, platforms: Sequence[str]) -> None:
    """Fail naming the fix when the builder cannot build (or emulate) some of `platforms`."""
    missing = builder.lacks(platforms)
    if missing:
        raise EngineUnavailable(
            f"the builder cannot build {', '.join(missing)} (it offers "
            f"{', '.join(builder.platforms)}): register QEMU with "
            "`sudo -E uv run invoke lab.up --qemu`, or pick a builder for that platform"
        )


def require_stand_ins(
    state: labstate.State, bases: Sequence[str], platforms: Sequence[str]
) -> None:
    """Fail naming the fix when a lab stand-in among a Dockerfile's `bases` lacks a platform,
    or when it starts from another version of a base the lab stands in for (`node:22-slim`
    where the lab seeded `node:24-slim`): the mirror has no such image."""
    seeded_repos = {labstate.repository_of(ref): ref for ref in state.seeded}
    for base in labstate.bases_not_seeded(bases, state):
        other = seeded_repos.get(labstate.repository_of(base))
        if other:
            raise ConfigError(
                f"the lab has no stand-in for {base} (it seeded {other}): set that version in "
                "the image's build-args and run `uv run invoke lab.up`, or add "
                f'"{base}" to [tool.buildtasks.lab] seed'
            )
    lacking = labstate.stand_ins_lacking(bases, state, platforms)
    if lacking:
        wanted = sorted({*platforms, *(p for ref in lacking for p in state.seeded[ref])})
        bases = ", ".join(f"{ref} ({', '.join(missing)})" for ref, missing in lacking.items())
        raise ConfigError(
            f"the lab's stand-in bases lack platforms: {bases}; seed them with "
            f"`uv run invoke lab.up --qemu --platform {','.join(wanted)}`"
        )


def build_cache(
    config: Config,
    image: ImageSpec,
    builder: buildx.Builder,
    runner: Runner,
    *,
    kind: str,
    env: Mapping[str, str],
    platforms: Sequence[str],
    repository: str,
    per_platform: bool,
) -> caches.CacheSpec | None:
    """The cache of this build (`caches.choose`); a per-platform build keeps its own."""
    slug = record.platforms_slug(platforms)
    base = Path(os.path.expanduser(config.cache_dir)) / image.key
    if per_platform:
        base = base / slug
    spec, note = caches.choose(
        kind or config.cache_kind(image),
        driver=builder.driver,
        capable=builder.capable,
        env=env,
        local_dir=str(base),
        local_present=(base / "index.json").is_file(),
        repository=repository,
        slug=slug,
        read_only=caches.in_pull_request(env),
    )
    if note:
        runner.say(note)
    return spec


def load_layout(layout: Path, digest: str, tags: Sequence[str], runner: Runner) -> None:
    """Put the OCI layout a build exported into the engine, unless it already holds `digest`.

    A rebuild of an unchanged commit exports the digest the engine has: its tags are pointed
    at it again and nothing is loaded. Otherwise the layout is loaded as an archive. Blobs of
    older builds are pruned from the layout first, so it stays the size of one image.
    """
    caches.prune_cache(layout)
    if runner.run(
        buildx.image_inspect(digest, "{{.Id}}"), capture=True, check=False, quiet=True
    ).ok:
        for tag in tags:
            runner.run(Command(("docker", "image", "tag", digest, tag)), capture=True)
        return
    archive = layout.parent / "image.oci.tar"
    try:
        with tarfile.open(archive, "w") as tar:
            for entry in sorted(layout.iterdir()):
                tar.add(entry, arcname=entry.name)
        runner.run(buildx.image_load(str(archive)), capture=True)
    finally:
        archive.unlink(missing_ok=True)


def build_image(
    config: Config,
    image: ImageSpec,
    options: BuildOptions,
    runner: Runner,
    *,
    env: Mapping[str, str],
    now: datetime,
    lab_state: labstate.State | None = None,
    on: BuilderSpec = DEFAULT_BUILDER,
) -> BuildOutcome:
    """Build `image` as `options` ask, on builder `on`, and return the outcome with its digest.

    `runner` must already reach `on`'s engine (`Runner.derive(env=on.env)`).
    """
    planned = plan_build(
        config, image, options, runner, env=env, now=now, lab_state=lab_state, on=on
    )
    with ExitStack() as guards:
        hold(planned, runner, guards)
        with timing.step(planned.steps, "buildx build"):
            command = buildx.buildx_build(image, planned.request, root=config.root)
            run_build(config, image, command, runner, on)
        return finish_build(config, planned, runner)


@dataclass
class PlannedBuild:
    """One image's build, planned: the buildx request and what the steps after it need."""

    image: ImageSpec
    options: BuildOptions
    on: BuilderSpec
    request: buildx.BuildRequest
    builder: buildx.Builder
    #: The build record (buildx's metadata file).
    out: Path
    #: The OCI layout buildx exports to when the engine loads from one (None: it loads itself).
    layout: Path | None
    tags: tuple[str, ...]
    local_tags: tuple[str, ...]
    platforms: tuple[str, ...]
    repos: tuple[str, ...]
    push: bool
    load: bool
    stand_ins: tuple[str, ...]
    revision: str
    version: str
    labels: Mapping[str, str]
    steps: timing.Steps = field(default_factory=list)


def plan_build(
    config: Config,
    image: ImageSpec,
    options: BuildOptions,
    runner: Runner,
    *,
    env: Mapping[str, str],
    now: datetime,
    lab_state: labstate.State | None = None,
    on: BuilderSpec = DEFAULT_BUILDER,
) -> PlannedBuild:
    """Everything before `docker buildx build`: tags, labels, checks, cache and the request."""
    from buildtasks.tagging import image_metadata

    steps: timing.Steps = []
    dockerfile_text = config.dockerfile_path(image).read_text(encoding="utf-8")
    platforms = parse_platforms(list(options.platforms)) if options.platforms else image.platforms
    names = image_names(config, image, options.name)
    given_args = parse_build_args(options.build_args)
    with timing.step(steps, "tags and labels"):
        # `-b APP_VERSION=x` is the version the image says it is: its label and annotation
        # agree (an explicit --label still wins; the tags follow the rules).
        given = given_args.get("APP_VERSION")
        version = (f"org.opencontainers.image.version={given}",) if given is not None else ()
        meta = image_metadata(
            config,
            image,
            names,
            env=env,
            cwd=config.root,
            now=now,
            labels=(*version, *options.labels),
            annotations=(*version, *options.annotations),
        )
    tags = explicit_tags(names, options.tags) if options.tags else meta.tags
    if not tags:
        raise ConfigError(f"no tags for {image.key}: the tag rules produced none; pass --tag")
    if meta.note and not options.tags:
        runner.say(f"note: {meta.note}")
    for warning in meta.warnings:
        runner.say(f"warning: {warning}")
    push = options.push or options.push_by_digest
    no_cache = options.no_cache or config.no_cache
    state = lab_state if lab_state is not None else labstate.read(env)
    builder = current_builder(runner, on.buildx_name)
    probes = runner.memo.pop(("probe seconds", on.buildx_name), None)
    if isinstance(probes, float):
        steps.append(("engine probes", probes))
    # The docker driver always loads: its image is pushed from the engine's store. A builder
    # that pushes by itself loads only when asked (or when nothing is pushed).
    load = (not push if options.load is None else options.load) if builder.pushes_itself else True
    require_platforms(builder, platforms)
    bases = dockerfiles.base_images(dockerfile_text, {**image.build_args, **given_args})
    require_stand_ins(state, bases, platforms)
    stand_ins = labstate.stand_ins_used(bases, state)
    if stand_ins:
        runner.say(
            f"note: {image.key} is built on the lab's stand-in bases, not the real images: "
            f"{', '.join(stand_ins)}"
        )
        record.require_real_bases(
            image.key,
            "push",
            stand_ins,
            tags if push else (),
            lab_registry=config.lab.registry,
            allow=options.allow_stand_ins,
        )
    secrets = options.secrets
    ca = labstate.ca_cert(config.ca_cert, state)
    if ca:
        secrets = (f"id=ca,src={Path(ca).expanduser()}", *secrets)
    build_args = {
        "APP_VERSION": meta.version,
        "APP_REVISION": meta.revision,
        "APP_BUILD_DATE": meta.created,
    }
    if meta.source_date_epoch is not None:
        # BuildKit dates the image config and history by it; `rewrite-timestamp` clamps the
        # layers' file times to it: one commit, one image.
        build_args["SOURCE_DATE_EPOCH"] = str(meta.source_date_epoch)
    if no_cache:
        build_args.update(no_cache_args(dockerfile_text))
    build_args.update(given_args)
    cache = build_cache(
        config,
        image,
        builder,
        runner,
        kind=options.cache,
        env=env,
        platforms=platforms,
        repository=repositories(tags)[0],
        per_platform=options.push_by_digest,
    )
    provenance, note = buildx.provenance_for(options.provenance, builder.capable)
    if note:
        runner.say(note)
    out = (
        record.platform_metadata_path(config, image, platforms)
        if options.push_by_digest
        else record.metadata_path(config, image)
    )
    repos = repositories(tags)
    rewrite = builder.reproducible and meta.source_date_epoch is not None
    layout = out.parent / "oci" if load and rewrite and builder.loads_through_oci else None
    # A per-platform build names its image in the engine after its platform: builds of the
    # other platforms may load into the same engine at the same time (one machine standing in
    # for several runners), and one name for both would leave the first image unnamed, which
    # the containerd store then forgets. Its tags are made in the registry, at the merge.
    local_tags = (
        tuple(f"{t}-{record.platforms_slug(platforms)}" for t in tags)
        if options.push_by_digest
        else tags
    )
    request = buildx.BuildRequest(
        tags=local_tags,
        platforms=platforms,
        metadata_file=str(out),
        push_by_digest=repos if push and builder.pushes_itself else (),
        oci_dest=str(layout) if layout else "",
        builder=on.buildx_name,
        rewrite_timestamp=rewrite,
        load=load,
        progress="plain" if options.verbose else "auto",
        no_cache=no_cache,
        cache=cache,
        build_args=build_args,
        labels=meta.labels,
        annotations=meta.annotations,
        build_contexts=labstate.build_contexts(state),
        secrets=secrets,
        ssh=options.ssh,
        provenance=provenance,
    )
    return PlannedBuild(
        image=image,
        options=options,
        on=on,
        request=request,
        builder=builder,
        out=out,
        layout=layout,
        tags=tags,
        local_tags=local_tags,
        platforms=platforms,
        repos=repos,
        push=push,
        load=load,
        stand_ins=stand_ins,
        revision=meta.revision,
        version=meta.version,
        labels=dict(meta.labels),
        steps=steps,
    )


def hold(planned: PlannedBuild, runner: Runner, guards: ExitStack) -> None:
    """Take what the build must not share, for the rest of `guards`: one build of this image
    (and platforms) at a time in this checkout (its record and the names it loads), one build
    at a time on a local cache directory."""
    image, out, cache = planned.image, planned.out, planned.request.cache
    guards.enter_context(locks.held(out, f"another build of {image.key} here", runner))
    if not runner.dry:
        out.unlink(missing_ok=True)
    if cache and cache.local_dir:
        guards.enter_context(
            locks.held(Path(cache.local_dir), "another build using its cache", runner)
        )


def finish_build(config: Config, planned: PlannedBuild, runner: Runner) -> BuildOutcome:
    """Everything after `docker buildx build`: cache prune, load, record, push and tags."""
    image, out, steps = planned.image, planned.out, planned.steps
    cache, layout = planned.request.cache, planned.layout
    if runner.dry:
        digest = DRY_DIGEST
        if layout:
            runner.run(buildx.image_load(str(layout.parent / "image.oci.tar")))
    else:
        if cache and cache.local_dir:
            with timing.step(steps, "cache prune"):
                caches.prune_cache(Path(cache.local_dir))
        digest = record.read_metadata(out).digest
        if layout:
            with timing.step(steps, "load"):
                load_layout(layout, digest, planned.local_tags, runner)
        record.add_facts(
            out,
            tags=planned.tags,
            platforms=planned.platforms,
            pushed=False,
            stand_ins=planned.stand_ins,
            store=planned.builder.store,
            revision=planned.revision,
            version=planned.version,
            labels=dict(planned.labels),
        )
        if planned.load and not planned.options.push_by_digest:
            # What the stack (compose.yaml) runs: this build, by digest.
            ref = stack.engine_ref(planned.local_tags, digest, planned.builder.store)
            stack.record_image(config, image.key, ref, runner)
    outcome = BuildOutcome(
        image,
        digest,
        planned.tags,
        out,
        planned.platforms,
        planned.push,
        planned.load,
        planned.stand_ins,
        timings=tuple(steps),
    )
    if planned.push:
        outcome = publish_build(
            config,
            outcome,
            runner,
            tag=not planned.options.push_by_digest,
            pushed_by_builder=planned.builder.pushes_itself,
        )
    if not runner.dry:
        record.add_facts(out, timings=timing.as_record(outcome.timings))
    if planned.options.push_by_digest and not runner.dry:
        record.write_platform_digest(
            config,
            image,
            planned.platforms,
            {
                "digest": outcome.registry_digest,
                "repositories": list(planned.repos),
                "tags": list(planned.tags),
                "revision": planned.revision,
                "stand_ins": list(planned.stand_ins),
            },
        )
    return outcome


def publish_build(
    config: Config,
    outcome: BuildOutcome,
    runner: Runner,
    *,
    tag: bool,
    pushed_by_builder: bool = False,
) -> BuildOutcome:
    """Push a build untagged by digest (unless its builder did, or it is already pushed), then
    apply its tags.

    The record learns the registry digest as soon as it is pushed, and `tagged` only once
    every tag serves it: a failure in between leaves a record that says what is true.
    """
    steps: timing.Steps = list(outcome.timings)
    digest = outcome.registry_digest or outcome.digest
    if not pushed_by_builder and not outcome.registry_digest:
        with timing.step(steps, "push"):
            digest = push_mod.push_untagged(
                outcome.digest,
                repositories(outcome.tags),
                runner,
                workdir=config.artifacts_path(outcome.image)
                / f"export.{os.getpid()}.{record.platforms_slug(outcome.platforms)}",
                layout=outcome.metadata_file.parent / "oci",
            )
    if not runner.dry:
        record.add_facts(outcome.metadata_file, pushed=True, registry_digest=digest)
    outcome = replace(outcome, registry_digest=digest, pushed=True, timings=tuple(steps))
    if not tag:
        return outcome
    with timing.step(steps, "tag"):
        push_mod.apply_tags(digest, outcome.tags, runner)
    if not runner.dry:
        record.add_facts(outcome.metadata_file, tagged=True)
    return replace(outcome, tagged=True, timings=tuple(steps))


def recorded_outcome(config: Config, image: ImageSpec) -> BuildOutcome:
    """The last build of `image` as an outcome, from its record (for `docker.push`)."""
    recorded = record.read_recorded(config, image)
    return BuildOutcome(
        image,
        recorded.digest,
        recorded.tags,
        record.metadata_path(config, image),
        recorded.platforms,
        pushed=bool(recorded.registry_digest),
        loaded=True,
        stand_ins=recorded.stand_ins,
        registry_digest=recorded.registry_digest,
        tagged=recorded.tagged,
    )
