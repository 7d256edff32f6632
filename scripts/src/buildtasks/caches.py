"""Which build cache a build reads and writes: local, registry, gha or none (pure), and
keeping a local cache directory to the size of what its index references (`prune_cache`).

* `local`: `~/.cache/buildx/<image>` on this machine (the default where the builder can
  export a cache); fast, but it stays on this machine.
* `registry`: `<repo>:buildcache-<platforms>` next to the image, `mode=max`, OCI media types:
  a cache every machine that can pull the image can read (a CI runner, a second builder, a
  colleague's laptop). One ref per platform set, so per-platform builders never overwrite
  each other's cache.
* `gha`: the GitHub Actions cache service, inside Actions, with a builder that can export it.
* `none`: no import, no export.

`auto` picks `gha` inside GitHub Actions when the builder can use it, else `local`. A pull
request's build reads a registry cache without writing it. A builder
that cannot export the chosen cache (the classic image store's docker driver) still reads a
registry cache; for the rest the build says so in one line and goes on without.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from buildtasks.errors import ConfigError

KINDS = ("auto", "local", "registry", "gha", "none")


def check_kind(value: str, where: str) -> str:
    """`value` if it names a cache kind; a ConfigError naming the choices otherwise."""
    if value not in KINDS:
        raise ConfigError(f"{where} must be one of {', '.join(KINDS)}, got {value!r}")
    return value


@dataclass(frozen=True)
class CacheSpec:
    """The cache flags of one build."""

    kind: str
    #: `--cache-from` values (none until a local cache exists).
    sources: tuple[str, ...] = ()
    #: The `--cache-to` value; '' when the builder cannot export it.
    dest: str = ""
    #: The local cache directory (pruned after the build); '' for other kinds.
    local_dir: str = ""


def registry_ref(repository: str, slug: str) -> str:
    """The registry cache ref of one platform set: `<repo>:buildcache-linux-amd64`."""
    return f"{repository}:buildcache-{slug}"


def in_pull_request(env: Mapping[str, str]) -> bool:
    """Whether this build runs for a pull request (GitHub's `pull_request*` events)."""
    return env.get("GITHUB_EVENT_NAME", "").startswith("pull_request")


def in_github_actions(env: Mapping[str, str]) -> bool:
    """Whether the GitHub Actions cache service is reachable from this build."""
    return env.get("GITHUB_ACTIONS") == "true" and bool(
        env.get("ACTIONS_RESULTS_URL") or env.get("ACTIONS_CACHE_URL")
    )


NO_EXPORT = (
    "note: this builder cannot export a {kind} cache (the classic image store's docker driver); "
    "building without {what}"
)


def choose(
    kind: str,
    *,
    driver: str,
    capable: bool,
    env: Mapping[str, str],
    local_dir: str,
    local_present: bool,
    repository: str,
    slug: str,
    read_only: bool = False,
) -> tuple[CacheSpec | None, str]:
    """The cache for one build, and the note to print (''): see the module docstring."""
    container = bool(driver) and driver != "docker"
    if kind == "auto":
        kind = "gha" if container and in_github_actions(env) else "local"
    if kind == "none":
        return None, ""
    if kind == "gha":
        if not in_github_actions(env):
            raise ConfigError(
                "the gha cache works inside GitHub Actions only (ACTIONS_RESULTS_URL unset): "
                "use --cache local or registry here"
            )
        if not container:
            return None, NO_EXPORT.format(kind="gha", what="one").replace(
                "the classic image store's docker driver", "the docker driver"
            ) + ": use docker/setup-buildx-action's docker-container builder"
        scope = f"{repository.rsplit('/', 1)[-1]}-{slug}"
        return CacheSpec(
            "gha", (f"type=gha,scope={scope}",), f"type=gha,scope={scope},mode=max"
        ), ""
    if kind == "registry":
        ref = registry_ref(repository, slug)
        source = f"type=registry,ref={ref}"
        if not capable:
            # Importing works on any builder; exporting needs cache export support.
            return CacheSpec("registry", (source,)), NO_EXPORT.format(
                kind="registry", what="writing it (reading it still)"
            )
        if read_only:
            # A pull request leaves the registry as it found it: a fork's token cannot write,
            # and unreviewed layers stay out of the cache every later build reads.
            return CacheSpec("registry", (source,)), (
                f"note: a pull request reads the registry cache {ref} without writing it"
            )
        dest = f"type=registry,ref={ref},mode=max,image-manifest=true,oci-mediatypes=true"
        return CacheSpec("registry", (source,), dest), ""
    # local
    if not capable:
        return None, (
            "note: this builder cannot export a local cache (enable the containerd image store, "
            "or use --cache registry to read one)"
        )
    sources = (f"type=local,src={local_dir}",) if local_present else ()
    return CacheSpec("local", sources, f"type=local,dest={local_dir},mode=max", local_dir), ""


def prune_cache(directory: Path) -> int:
    """Delete blobs no cache manifest references any more; return how many were removed.

    BuildKit's `type=local` export adds blobs but never removes superseded ones, so a cache
    exported in place grows with every changed layer. Exporting in place and pruning keeps
    the export fast (unchanged blobs are not rewritten) and the directory bounded.
    """
    index = directory / "index.json"
    blobs = directory / "blobs" / "sha256"
    if not index.is_file() or not blobs.is_dir():
        return 0
    keep: set[str] = set()
    pending = [d["digest"] for d in json.loads(index.read_text()).get("manifests", [])]
    while pending:
        digest = pending.pop()
        if digest in keep:
            continue
        keep.add(digest)
        blob = blobs / digest.removeprefix("sha256:")
        if not blob.is_file() or blob.stat().st_size > 4_000_000:
            continue
        try:
            doc = json.loads(blob.read_bytes())
        except (UnicodeDecodeError, json.JSONDecodeError):
            continue
        if isinstance(doc, dict):
            refs = [*doc.get("manifests", []), *doc.get("layers", [])]
            if isinstance(doc.get("config"), dict):
                refs.append(doc["config"])
            pending += [r["digest"] for r in refs if isinstance(r, dict) and "digest" in r]
    removed = 0
    for blob in blobs.iterdir():
        if f"sha256:{blob.name}" not in keep:
            blob.unlink()
            removed += 1
    return removed
