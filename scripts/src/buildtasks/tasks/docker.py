"""`invoke docker.*`: build, test, tag, push, scan, sign and release the images."""

from __future__ import annotations

import os
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

from invoke import task
from invoke.context import Context

from buildtasks.tasks.adapter import Task, errors_to_exit, load_config, many, runner_for


@task(
    klass=Task,
    iterable=["tag", "build_arg", "name", "label", "annotation", "secret", "ssh"],
    help={
        "secret": "Build secret for buildx, e.g. id=npmrc,src=$HOME/.npmrc (repeatable; "
        "RUN --mount=type=secret,id=npmrc reads it)",
        "ssh": "SSH agent socket or keys for buildx, e.g. default (repeatable; "
        "RUN --mount=type=ssh uses it)",
        "builder": "Build every platform on this builder: a buildx builder's name, "
        "context:NAME or an engine endpoint (default: [tool.buildtasks.builders])",
        "jobs": "Several images: at most this many in one bake, at the same time (default 0: "
        "all in one; 1: one after the other)",
        "changed-since": "Build only the images a change since this branch, tag or commit "
        "touches (as docker.affected)",
        "image": "Configured image to build (default: every image in [tool.buildtasks.images])",
        "name": "Override the full image name, e.g. ghcr.io/acme/app (repeatable: one build "
        "pushed to several registries)",
        "label": "Extra OCI label KEY=VALUE (repeatable; wins over the configured labels)",
        "annotation": "Extra OCI annotation KEY=VALUE (repeatable; wins over the configured ones)",
        "tag": "Tag to apply (repeatable); default: the configured metadata-action rules",
        "build-arg": "Build argument KEY=VALUE (repeatable)",
        "platform": "Target platforms, e.g. linux/amd64,linux/arm64 (the builder must run them; "
        "in the lab: `lab.up --qemu --platform ...`)",
        "push": "Push by digest, then apply the tags in the registry (verified)",
        "push-by-digest": "Push untagged, by digest, and record it for docker.merge "
        "(one platform per build, e.g. --platform linux/arm64)",
        "load": "Also load into the engine when a builder that pushes by itself pushes "
        "(the docker driver always loads)",
        "no-cache": "Disable every cache: layer cache, cache import, uv cache; pull bases afresh",
        "verbose": "Show the full build log (--progress=plain)",
        "test": "Run the image tests against the built image",
        "provenance": "Buildx provenance attestation, e.g. mode=max or false (default: buildx's)",
        "allow-stand-ins": "Publish to a registry other than the lab's even though the bases "
        "are the lab's stand-ins",
        "cache": "Build cache: auto, local, registry, gha or none (default: [tool.buildtasks] cache)",
    },
)
@errors_to_exit
def build(
    c: Context,
    image: str = "",
    name: list[str] | None = None,
    tag: list[str] | None = None,
    build_arg: list[str] | None = None,
    platform: str = "",
    push: bool = False,
    push_by_digest: bool = False,
    load: bool = False,
    no_cache: bool = False,
    verbose: bool = False,
    test: bool = False,
    provenance: str | None = None,
    allow_stand_ins: bool = False,
    cache: str = "",
    label: list[str] | None = None,
    annotation: list[str] | None = None,
    secret: list[str] | None = None,
    ssh: list[str] | None = None,
    builder: str = "",
    jobs: int = 0,
    changed_since: str = "",
) -> None:
    """Build images with docker buildx; print each image's digest."""
    from buildtasks import timing
    from buildtasks.build import BuildOptions, check_options, preflight
    from buildtasks.caches import check_kind
    from buildtasks.errors import CommandFailed, GateFailed
    from buildtasks.fanout import check_spread, groups_for
    from buildtasks.imagetests import image_test_command
    from buildtasks.push import repositories

    config = load_config(c)
    runner = runner_for(c)
    images = config.select(image)
    if changed_since:
        images = _changed(config, images, changed_since, runner)
        if not images:
            return
    options = BuildOptions(
        name=",".join(many(name)),
        tags=tuple(tag or ()),
        build_args=tuple(build_arg or ()),
        labels=tuple(label or ()),
        annotations=tuple(annotation or ()),
        platforms=tuple(p for p in platform.split(",") if p) if platform else (),
        push=push,
        push_by_digest=push_by_digest,
        load=True if load else None,
        no_cache=no_cache,
        verbose=verbose,
        provenance=provenance,
        allow_stand_ins=allow_stand_ins,
        cache=check_kind(cache, "--cache") if cache else "",
        secrets=tuple(secret or ()),
        ssh=tuple(ssh or ()),
        builder=builder,
    )
    check_options(config, images, options)
    for spec in images:
        check_spread(groups_for(config, spec, options), options, test=test)
    preflight(runner)
    now = datetime.now(UTC)
    outputs: dict[str, str] = {}
    built: dict[str, str] = {}
    for spec, outcome in _build_images(config, images, options, runner, now, jobs):
        if not runner.dry and os.environ.get("GITHUB_OUTPUT"):
            from buildtasks import ci
            from buildtasks.record import read_raw

            record = read_raw(outcome.metadata_file)
            outputs |= ci.build_outputs(spec.key, record, prefix=len(images) > 1)
        print(f"{spec.key}: {outcome.digest}")
        if outcome.registry_digest and outcome.registry_digest != outcome.digest:
            print(f"  registry digest: {outcome.registry_digest}")
        if outcome.pushed and not outcome.tagged:
            for repo in repositories(outcome.tags):
                print(f"  pushed untagged: {repo}@{outcome.registry_digest}")
        else:
            for ref in outcome.tags:
                print(f"  {ref}")
        for line in timing.table(f"{spec.key}: step times", outcome.timings):
            runner.say(line)
        built[spec.key] = outcome.digest
        if test:
            # As in the release: the tests see the images built so far (the web image's
            # gateway test runs against this build's backend), and failing tests are a gate.
            tests = image_test_command(spec, outcome.digest, root=config.root, others=built)
            try:
                runner.run(tests)
            except CommandFailed:
                raise GateFailed(f"image tests failed for {spec.key} ({outcome.digest})") from None
    if outputs and (path := os.environ.get("GITHUB_OUTPUT")):
        from buildtasks import ci
        from buildtasks.files import append_text

        append_text(path, ci.output_lines(outputs))
        runner.say(f"outputs written to $GITHUB_OUTPUT: {', '.join(outputs)}")


def _build_images(config, images, options, runner, now, jobs):
    """(image, outcome) for each image: one bake when several images build on one builder,
    otherwise each build as it is (a spread build, a single image)."""
    from buildtasks.bake import build_all
    from buildtasks.fanout import build_spread, groups_for

    groups = [groups_for(config, spec, options) for spec in images]
    builders = {spec for group in groups for spec, _ in group}
    if len(images) > 1 and all(len(g) == 1 for g in groups) and len(builders) == 1:
        (on,) = builders
        sub = runner.derive(env=on.env)
        outcomes = build_all(
            config, images, options, sub, env=os.environ, now=now, jobs=jobs, on=on
        )
        yield from zip(images, outcomes, strict=True)
        return
    for spec in images:
        yield spec, build_spread(config, spec, options, runner, env=os.environ, now=now)


def _changed(config, images, since, runner):
    """The images of `images` a change since `since` touches (saying which are skipped)."""
    from buildtasks.paths import affected_since

    selected = set(affected_since(config, since))
    kept = [spec for spec in images if spec.key in selected]
    skipped = [spec.key for spec in images if spec.key not in selected]
    if skipped:
        runner.say(f"note: unchanged since {since}, not built: {', '.join(skipped)}")
    if not kept:
        runner.say(f"nothing to build: no image is affected by the changes since {since}")
    return kept


@task(
    iterable=["tag", "build_arg"],
    help={
        "image": "Configured image (default: every image in [tool.buildtasks.images])",
        "file": "Write the bake file here instead of printing it",
        "platform": "Target platforms, e.g. linux/amd64,linux/arm64",
        "tag": "Tag to apply (repeatable); default: the configured metadata-action rules",
        "build-arg": "Build argument KEY=VALUE (repeatable)",
        "no-cache": "Every cache off, as docker.build --no-cache",
    },
)
@errors_to_exit
def bake(
    c: Context,
    image: str = "",
    file: str = "",
    platform: str = "",
    tag: list[str] | None = None,
    build_arg: list[str] | None = None,
    no_cache: bool = False,
) -> None:
    """Print the bake file (JSON) docker.build runs for several images, to run bake yourself."""
    import json as json_mod

    from buildtasks.bake import definition, entitlements
    from buildtasks.build import BuildOptions, check_options, plan_build, preflight

    config = load_config(c)
    runner = runner_for(c)
    images = config.select(image)
    options = BuildOptions(
        tags=tuple(tag or ()),
        build_args=tuple(build_arg or ()),
        platforms=tuple(p for p in platform.split(",") if p) if platform else (),
        no_cache=no_cache,
    )
    check_options(config, images, options)
    preflight(runner)
    now = datetime.now(UTC)
    quiet = replace(runner, echo=False)
    builds = [
        (spec, plan_build(config, spec, options, quiet, env=os.environ, now=now).request)
        for spec in images
    ]
    text = json_mod.dumps(definition(builds, root=config.root), indent=2) + "\n"
    allow = " ".join(f"--allow {a}" for a in entitlements(builds, root=config.root))
    if file:
        from buildtasks.files import write_atomic

        write_atomic(Path(file), text)
        target = file
    else:
        print(text, end="")
        target = "FILE"
    runner.say(
        f"run it from {config.root}: docker buildx bake --file {target} "
        f"--metadata-file metadata.json {allow}".rstrip()
    )


@task(
    iterable=["name", "rule", "flavor", "label", "annotation"],
    help={
        "image": "Configured image (default: every image; --json needs exactly one)",
        "label": "Extra OCI label KEY=VALUE (repeatable; metadata-action's `labels`)",
        "annotation": "Extra OCI annotation KEY=VALUE (repeatable; metadata-action's `annotations`)",
        "name": "Image name to tag (repeatable; metadata-action's `images`), e.g. ghcr.io/acme/app",
        "rule": "One metadata-action `tags` line, e.g. 'type=semver,pattern={{version}}' (repeatable)",
        "flavor": "One metadata-action `flavor` line, e.g. 'latest=false' (repeatable)",
        "json": "Print one JSON object: version, tags, labels, annotations, note, warnings",
    },
)
@errors_to_exit
def tags(
    c: Context,
    image: str = "",
    name: list[str] | None = None,
    rule: list[str] | None = None,
    flavor: list[str] | None = None,
    json: bool = False,
    label: list[str] | None = None,
    annotation: list[str] | None = None,
) -> None:
    """Print the version, tags and OCI labels the metadata rules give this checkout."""
    import json as json_mod

    from buildtasks.build import image_names
    from buildtasks.config import key_values
    from buildtasks.errors import ConfigError
    from buildtasks.tagging import image_metadata

    config = load_config(c)
    images = config.select(image)
    if json and len(images) > 1:
        keys = " or ".join(f"--image {i.key}" for i in images)
        raise ConfigError(f"--json describes one image: add {keys}")
    now = datetime.now(UTC)
    for spec in images:
        names = tuple(name or ()) or image_names(config, spec, "")
        meta = image_metadata(
            config,
            spec,
            names,
            env=os.environ,
            cwd=config.root,
            now=now,
            rules=tuple(rule or ()),
            flavor=tuple(flavor or ()),
            labels=key_values(tuple(label or ()), "--label"),
            annotations=key_values(tuple(annotation or ()), "--annotation"),
        )
        if json:
            payload = {
                "version": meta.version,
                "tags": list(meta.tags),
                "labels": dict(meta.labels),
                "annotations": list(meta.annotations),
                # What the plain output says too: why these tags (the local fallback), and
                # what the rules warned about.
                "note": meta.note,
                "warnings": list(meta.warnings),
            }
            print(json_mod.dumps(payload, indent=2))
            continue
        print(f"{spec.key}")
        print(f"  version: {meta.version}")
        if meta.note:
            print(f"  note: {meta.note}")
        for warning in meta.warnings:
            print(f"  warning: {warning}")
        print("  tags:")
        for ref in meta.tags:
            print(f"    {ref}")
        print("  labels:")
        for key, value in meta.labels.items():
            print(f"    {key}={value}")


@task(
    help={
        "image": "Configured image to push (default: every configured image; each must have been built)",
        "allow-stand-ins": "Push to a registry other than the lab's even though the bases "
        "are the lab's stand-ins",
    },
)
@errors_to_exit
def push(c: Context, image: str = "", allow_stand_ins: bool = False) -> None:
    """Push the last build by digest, apply its tags in the registry, verify each serves it."""
    from buildtasks.build import preflight, publish_build, recorded_outcome
    from buildtasks.record import require_real_bases
    from buildtasks.refs import registry_of
    from buildtasks.registry import require_ready

    config = load_config(c)
    runner = runner_for(c)
    preflight(runner)
    for spec in config.select(image):
        outcome = recorded_outcome(config, spec)
        require_real_bases(
            spec.key,
            "push",
            outcome.stand_ins,
            outcome.tags,
            lab_registry=config.lab.registry,
            allow=allow_stand_ins,
        )
        if not runner.dry:
            require_ready((registry_of(t) for t in outcome.tags), env=os.environ)
        outcome = publish_build(config, outcome, runner, tag=True)
        print(f"{spec.key}: {outcome.registry_digest}")
        for ref in outcome.tags:
            print(f"  {'would push' if runner.dry else 'pushed'} {ref}")


@task(
    iterable=["db_repository", "vex", "tag", "build_arg", "name", "label", "annotation"],
    auto_shortflags=False,
    help={
        "image": "Configured image to release (default: every image)",
        "name": "Image name to publish, e.g. ghcr.io/acme/monorepo (repeatable: one build, "
        "several registries; default: configured)",
        "label": "Extra OCI label KEY=VALUE (repeatable; wins over the configured labels)",
        "annotation": "Extra OCI annotation KEY=VALUE (repeatable; wins over the configured ones)",
        "tag": "Tag to apply (repeatable); default: the configured metadata-action rules",
        "build-arg": "Build argument KEY=VALUE (repeatable)",
        "vex": "VEX document (file, or 'repo' / 'oci') whose not-affected statements drop "
        "findings (repeatable; default: [tool.buildtasks.scan] vex)",
        "cache-dir": "Trivy cache directory (default: Trivy's own, or TRIVY_CACHE_DIR)",
        "cache": "Build cache: auto, local, registry, gha or none (default: [tool.buildtasks] cache)",
        "no-push": "Run the gates only (build, image tests, scan, SBOM); push and sign nothing",
        "skip-tests": "Skip the image tests (the scan gate still runs)",
        "severity": "Scan gate severities, e.g. CRITICAL,HIGH (default: [tool.buildtasks.scan])",
        "ignore-unfixed": "Let findings without a fixed version pass the scan gate",
        "ignorefile": "Trivy ignore file (default: [tool.buildtasks.scan] ignorefile)",
        "db-repository": "Trivy DB mirror to try, in order (repeatable)",
        "offline": "Scan with the cached trivy DB only",
        "key": "cosign private key: file, env://VAR or KMS URI (default: [tool.buildtasks.sign] key)",
        "keyless": "Sign keyless with the GitHub Actions OIDC token",
        "no-tlog": "Skip the transparency log (automatic for the lab registry)",
        "platform": "Target platforms, e.g. linux/amd64,linux/arm64",
        "verbose": "Show the full build log",
        "allow-stand-ins": "Publish to a registry other than the lab's even though the bases "
        "are the lab's stand-ins",
        "from": "Release the per-platform digests recorded in this folder (docker.build "
        "--push-by-digest on each builder) instead of building: merge, then the same gates",
        "no-cache": "Build without any cache (as docker.build --no-cache)",
    },
)
@errors_to_exit
def release(
    c: Context,
    image: str = "",
    no_push: bool = False,
    skip_tests: bool = False,
    severity: str = "",
    ignore_unfixed: bool = False,
    ignorefile: str = "",
    db_repository: list[str] | None = None,
    offline: bool = False,
    key: str = "",
    keyless: bool = False,
    no_tlog: bool = False,
    platform: str = "",
    verbose: bool = False,
    allow_stand_ins: bool = False,
    from_: str = "",
    no_cache: bool = False,
    name: list[str] | None = None,
    tag: list[str] | None = None,
    build_arg: list[str] | None = None,
    label: list[str] | None = None,
    annotation: list[str] | None = None,
    vex: list[str] | None = None,
    cache_dir: str = "",
    cache: str = "",
) -> None:
    """Build, test, push untagged, scan, SBOM, sign, attest, verify, then tag: one digest end to end."""
    from buildtasks import timing
    from buildtasks.build import BuildOptions, check_options, preflight
    from buildtasks.caches import check_kind
    from buildtasks.release import ReleaseOptions
    from buildtasks.release import release as run_release
    from buildtasks.scan import ScanOptions
    from buildtasks.sign import SignOptions

    config = load_config(c)
    runner = runner_for(c)
    options = ReleaseOptions(
        build=BuildOptions(
            name=",".join(many(name)),
            tags=tuple(tag or ()),
            build_args=tuple(build_arg or ()),
            labels=tuple(label or ()),
            annotations=tuple(annotation or ()),
            platforms=tuple(p for p in platform.split(",") if p),
            verbose=verbose,
            allow_stand_ins=allow_stand_ins,
            no_cache=no_cache,
            cache=check_kind(cache, "--cache") if cache else "",
        ),
        scan=ScanOptions(
            severity=tuple(s for s in severity.split(",") if s),
            ignore_unfixed=True if ignore_unfixed else None,
            ignorefile=ignorefile,
            vex=tuple(vex or ()),
            db_repositories=tuple(db_repository or ()),
            offline=True if offline else None,
            cache_dir=cache_dir,
        ),
        sign=SignOptions(key=key, keyless=keyless, tlog=False if no_tlog else None),
        push=not no_push,
        test=not skip_tests,
        from_dir=from_,
    )
    images = config.select(image)
    check_options(config, images, options.build)
    preflight(runner)
    stages = run_release(config, images, runner, options, env=os.environ, now=datetime.now(UTC))
    if (path := os.environ.get("GITHUB_STEP_SUMMARY")) and not runner.dry:
        from buildtasks.files import append_text
        from buildtasks.release import summary_of

        append_text(path, "".join(summary_of(s, options) for s in stages))
    for stage in stages:
        built = stage.build
        print(f"{stage.image.key}: {built.registry_digest or built.digest}")
        if built.registry_digest and built.registry_digest != built.digest:
            print(f"  tested image: {built.digest} (the engine's id; the same config)")
        for step in stage.steps:
            print(f"  {step}")
        for line in timing.table("  step times:", stage.timings):
            print(f"  {line}" if line.startswith("  ") else line)


@task(
    help={
        "since": "Compare with this branch, tag or commit, from where the current branch left it "
        "(REF...HEAD, as a pull request does); uncommitted and untracked files count too "
        "(default: main)",
        "why": "Also print, per image, the changed files that select it",
    },
)
@errors_to_exit
def affected(c: Context, since: str = "main", why: bool = False) -> None:
    """Print the images a change affects, one per line, by the [tool.buildtasks] paths rules."""
    from buildtasks.paths import affected_since

    config = load_config(c)
    for key, files in affected_since(config, since).items():
        print(key)
        if why:
            shown = files[:5]
            more = f" (and {len(files) - len(shown)} more)" if len(files) > len(shown) else ""
            print("  " + ", ".join(shown) + more)
