"""`invoke docker.merge`: per-platform digests → one multi-platform index, by digest."""

from __future__ import annotations

import os
from datetime import UTC, datetime

from invoke import task
from invoke.context import Context

from buildtasks.tasks.adapter import errors_to_exit, load_config, runner_for


@task(
    iterable=["digest", "tag"],
    help={
        "image": "Configured image to merge (default: every configured image)",
        "platform": "Platforms the index must list, e.g. linux/amd64,linux/arm64 "
        "(default: the image's configured platforms)",
        "digest": "A platform digest, PLATFORM=sha256:... (repeatable), besides those recorded "
        "by `docker.build --push-by-digest`",
        "from": "Folder of recorded platform digests (default: <artifacts-dir>/<image>/digests)",
        "name": "Override the full image name, e.g. ghcr.io/acme/app",
        "tag": "Tag to apply (repeatable); default: the configured metadata-action rules",
        "untagged": "Create and record the index only; tag it later with docker.push",
    },
)
@errors_to_exit
def merge(
    c: Context,
    image: str = "",
    platform: str = "",
    digest: list[str] | None = None,
    from_: str = "",
    name: str = "",
    tag: list[str] | None = None,
    untagged: bool = False,
) -> None:
    """Merge per-platform digests into one index; check it, record it, then tag it."""
    from buildtasks.build import preflight
    from buildtasks.errors import ConfigError
    from buildtasks.merge import MergeOptions, merge_image
    from buildtasks.refs import registry_of
    from buildtasks.registry import require_ready

    config = load_config(c)
    runner = runner_for(c)
    images = config.select(image)
    if (digest or name) and len(images) > 1:
        keys = " or ".join(f"--image {i.key}" for i in images)
        raise ConfigError(f"--digest and --name apply to one image: add {keys}")
    options = MergeOptions(
        platforms=tuple(p for p in platform.split(",") if p),
        digests=tuple(digest or ()),
        name=name,
        tags=tuple(tag or ()),
        from_dir=from_,
        untagged=untagged,
    )
    preflight(runner)
    now = datetime.now(UTC)
    for spec in images:
        if not runner.dry:
            require_ready([registry_of(f"{config.registry}/{spec.repository}")], env=os.environ)
        outcome = merge_image(config, spec, runner, options, env=os.environ, now=now)
        print(f"{spec.key}: {outcome.registry_digest} ({', '.join(outcome.platforms)})")
        if outcome.tagged:
            for ref in outcome.tags:
                print(f"  {ref}")
        else:
            print(f"  untagged: tag it with `uv run invoke docker.push --image {spec.key}`")


@task
@errors_to_exit
def builders(c: Context) -> None:
    """List the builders of [tool.buildtasks.builders]: platforms, driver, reachable, cache."""
    from buildtasks.errors import EngineUnavailable
    from buildtasks.fanout import describe_builders

    rows = describe_builders(load_config(c), runner_for(c), env=os.environ)
    width = max(len(name) for name, _, _ in rows)
    for name, ok, detail in rows:
        print(f"{'ok  ' if ok else 'FAIL'} {name.ljust(width)}  {detail}")
    down = [name for name, ok, _ in rows if not ok]
    if down:
        raise EngineUnavailable(f"builder unreachable: {', '.join(down)}")
