"""`invoke docker.*`: build, test, tag, push, scan, sign and release the images."""

from __future__ import annotations

import os
from datetime import UTC, datetime

from invoke import task
from invoke.context import Context

from buildtasks.build import BuildOptions, build_image, preflight
from buildtasks.imagetests import image_test_command
from buildtasks.tasks.adapter import errors_to_exit, load_config, runner_for


@task(
    iterable=["tag", "build_arg"],
    help={
        "image": "Configured image to build (default: every image in [tool.buildtasks.images])",
        "name": "Override the full image name, e.g. ghcr.io/acme/app",
        "tag": "Tag to apply (repeatable); default: the configured metadata-action rules",
        "build-arg": "Build argument KEY=VALUE (repeatable)",
        "platform": "Target platforms, e.g. linux/amd64,linux/arm64 (QEMU is set up if needed)",
        "push": "Push the tags to the registry after building",
        "load": "Load the result into the engine's image store (default unless --push)",
        "no-cache": "Disable every cache: layer cache, cache import, uv cache; pull bases afresh",
        "verbose": "Show the full build log (--progress=plain)",
        "test": "Run the image tests against the built image",
        "provenance": "Buildx provenance attestation, e.g. mode=max or false (default: buildx's)",
    },
)
@errors_to_exit
def build(
    c: Context,
    image: str = "",
    name: str = "",
    tag: list[str] | None = None,
    build_arg: list[str] | None = None,
    platform: str = "",
    push: bool = False,
    load: bool | None = None,
    no_cache: bool = False,
    verbose: bool = False,
    test: bool = False,
    provenance: str | None = None,
) -> None:
    """Build images with docker buildx; print each image's digest."""
    config = load_config(c)
    runner = runner_for(c)
    images = config.select(image)
    options = BuildOptions(
        name=name,
        tags=tuple(tag or ()),
        build_args=tuple(build_arg or ()),
        platforms=tuple(p for p in platform.split(",") if p) if platform else (),
        push=push,
        load=load,
        no_cache=no_cache,
        verbose=verbose,
        provenance=provenance,
    )
    if name and len(images) > 1:
        from buildtasks.errors import ConfigError

        raise ConfigError("--name applies to one image: add --image")
    preflight(runner)
    now = datetime.now(UTC)
    for spec in images:
        outcome = build_image(config, spec, options, runner, env=os.environ, now=now)
        print(f"{spec.key}: {outcome.digest}")
        for ref in outcome.tags:
            print(f"  {ref}")
        if test:
            runner.run(image_test_command(spec, outcome.digest, root=config.root))
        if outcome.pushed:
            from buildtasks.push import verify_pushed

            verify_pushed(outcome.digest, outcome.tags, runner)


@task(
    iterable=["name", "rule", "flavor"],
    help={
        "image": "Configured image (default: every image; --json needs exactly one)",
        "name": "Image name to tag (repeatable; metadata-action's `images`), e.g. ghcr.io/acme/app",
        "rule": "One metadata-action `tags` line, e.g. 'type=semver,pattern={{version}}' (repeatable)",
        "flavor": "One metadata-action `flavor` line, e.g. 'latest=false' (repeatable)",
        "json": "Print one JSON object: version, tags, labels, annotations",
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
) -> None:
    """Print the version, tags and OCI labels the metadata rules give this checkout."""
    import json as json_mod

    from buildtasks.build import image_names
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
        )
        if json:
            payload = {
                "version": meta.version,
                "tags": list(meta.tags),
                "labels": dict(meta.labels),
                "annotations": list(meta.annotations),
            }
            print(json_mod.dumps(payload, indent=2))
            continue
        print(f"{spec.key}")
        print(f"  version: {meta.version}")
        if meta.note:
            print(f"  note: {meta.note}")
        print("  tags:")
        for ref in meta.tags:
            print(f"    {ref}")
        print("  labels:")
        for key, value in meta.labels.items():
            print(f"    {key}={value}")


@task(
    help={
        "image": "Configured image to push (default: every image that was built)",
    },
)
@errors_to_exit
def push(c: Context, image: str = "") -> None:
    """Push the last build's tags by digest and verify the registry serves that digest."""
    from buildtasks.build import read_recorded
    from buildtasks.lab.ops import require_registry
    from buildtasks.push import push_by_digest, registry_of

    config = load_config(c)
    runner = runner_for(c)
    preflight(runner)
    for spec in config.select(image):
        recorded = read_recorded(config, spec)
        for registry in dict.fromkeys(registry_of(t) for t in recorded.tags):
            if not runner.dry:
                require_registry(registry)
        report = push_by_digest(recorded.digest, recorded.tags, runner)
        print(f"{spec.key}: {report.digest}")
        for ref in report.pushed:
            print(f"  pushed {ref}")
