"""`invoke docker.cleanup` and `docker.usage`: retention that never breaks what it keeps."""

from __future__ import annotations

import os
from datetime import UTC, datetime

from invoke import task
from invoke.context import Context

from buildtasks.tasks.adapter import errors_to_exit, load_config, runner_for

SHARED_HELP = {
    "image": "Configured image whose repository to read (default: every configured image)",
    "name": "Override the full image name, e.g. ghcr.io/acme/app",
    "backend": "How to reach the registry: auto (GHCR's REST API for ghcr.io, else the "
    "registry API), registry or ghcr",
    "registry-config": "A distribution registry's config file: its storage lists untagged "
    "manifests and their push times (default: the lab registry's, for the lab)",
}


@task(
    help={
        **SHARED_HELP,
        "apply": "Delete what the plan deletes (without it: print the plan, delete nothing)",
        "gc": "Then run the registry's garbage collection (needs its storage: the lab's or "
        "--registry-config) and report the bytes it freed",
        "verbose": "List every kept manifest and referrer tag, not only tags and untagged ones",
    }
)
@errors_to_exit
def cleanup(
    c: Context,
    image: str = "",
    name: str = "",
    apply: bool = False,
    gc: bool = False,
    backend: str = "auto",
    registry_config: str = "",
    verbose: bool = False,
) -> None:
    """Delete old tags and unreachable manifests by the retention policy; dry unless --apply."""
    from buildtasks.errors import ConfigError
    from buildtasks.retention import service
    from buildtasks.retention.plan import human, render

    config = load_config(c)
    runner = runner_for(c)
    if gc and not apply:
        raise ConfigError("--gc frees what --apply deleted: add --apply")
    now = datetime.now(UTC)
    storages = {}
    planned: dict[object, int] = {}
    for target in service.targets(config, image, name):
        chosen = service.backend_for(
            target, config, runner, kind=backend, registry_config=registry_config, env=os.environ
        )
        outcome = service.survey(chosen, target, now)
        for line in render(outcome.plan, outcome.inventory, verbose=verbose):
            print(line)
        if apply:
            service.apply(chosen, outcome, runner)
        print(service.summary(outcome, applied=apply and not runner.dry))
        if chosen.storage is not None:
            storages[chosen.storage.config] = chosen.storage
            planned[chosen.storage.config] = (
                planned.get(chosen.storage.config, 0) + outcome.plan.freed
            )
        elif gc:
            raise ConfigError(
                f"--gc needs the storage of {target.name}'s registry: give its config with "
                "--registry-config (GHCR and other hosted registries collect garbage themselves)"
            )
    if gc and not runner.dry:
        for key, storage in storages.items():
            before, after = service.collect_garbage(storage, runner)
            print(
                f"garbage collection freed {human(before - after)} ({before - after} bytes; "
                f"the plan said {planned[key]}): blobs {human(before)} → {human(after)}"
            )


@task(help=SHARED_HELP)
@errors_to_exit
def usage(
    c: Context,
    image: str = "",
    name: str = "",
    backend: str = "auto",
    registry_config: str = "",
) -> None:
    """Report each repository's tags, manifests and bytes, and what the policy would reclaim."""
    from buildtasks.retention import service

    config = load_config(c)
    runner = runner_for(c)
    now = datetime.now(UTC)
    rows = [("repository", "tags", "manifests", "untagged", "size", "reclaimable (manifests)")]
    for target in service.targets(config, image, name):
        chosen = service.backend_for(
            target, config, runner, kind=backend, registry_config=registry_config, env=os.environ
        )
        rows.append(service.usage_row(service.survey(chosen, target, now)))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        print(
            "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        )
