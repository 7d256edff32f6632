"""Distribute by digest: push an image untagged, then apply its tags in the registry.

The digest the build recorded is the one thing every step works on, and the registry is where
tags are made:

1. **Push untagged, by digest.** The image is exported from the engine with `docker save` and
   pushed with `crane push <export> <repo>@<digest>`. No tag exists yet, so nothing a user
   pulls can see it. The export tells the two image stores apart:

   * containerd store: the export's index names the very manifest (or index) the build
     recorded, so that digest is pushed as is;
   * classic (overlay2) store: the engine only knows the config digest (its image id); crane
     computes the manifest it pushes (`crane digest --tarball`), and the push is checked to
     serve a manifest whose config is the image that was built and tested.

   A builder that pushes by itself (`docker-container`, `remote`) does this step in the build
   (`push-by-digest=true`).
2. **Tag in the registry.** `docker buildx imagetools create --prefer-index=false --tag ...
   <repo>@<digest>` copies that exact manifest to every tag in one operation: never a re-tag of
   an engine image followed by a push, which could publish whatever the tag meanwhile names.
3. **Prove it.** Each tag is read back and its manifest digest compared; a failure says which
   tags serve the digest and which do not.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import tarfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from buildtasks.buildx import image_inspect
from buildtasks.command import Command
from buildtasks.errors import BuildtasksError, CommandFailed, NotFound, RegistryUnavailable
from buildtasks.refs import by_digest, registry_error, repository
from buildtasks.runner import Runner

#: The digest dry runs print where a real run would compute one.
DRY_DIGEST = "sha256:" + "0" * 64


def save_command(image_id: str, dest: Path) -> Command:
    """Return the `docker save` of an image (every platform the engine holds) to a tar."""
    return Command(
        ("docker", "image", "save", "--output", str(dest), image_id),
        hint="is the image in the engine? build it with `uv run invoke docker.build`",
    )


def crane_push_command(source: Path, ref: str) -> Command:
    """Push an OCI layout directory or a `docker save` tarball to `ref` (`repo@sha256:...`)."""
    return Command(
        ("crane", "push", str(source), ref), hint="is the registry up and are you logged in?"
    )


def crane_digest_command(tarball: Path) -> Command:
    """The manifest digest crane will push for a `docker save` tarball (classic store)."""
    return Command(("crane", "digest", "--tarball", str(tarball)))


def tag_command(source: str, tags: Sequence[str]) -> Command:
    """Copy the manifest `source` (`repo@sha256:...`) to every one of `tags`, digest unchanged.

    `--prefer-index=false` makes a single manifest a carbon copy instead of wrapping it in a
    new index; an index is always copied as is.
    """
    argv = ["docker", "buildx", "imagetools", "create", "--prefer-index=false"]
    for tag in tags:
        argv += ["--tag", tag]
    argv.append(source)
    return Command(tuple(argv), hint="is the registry up and are you logged in?")


def inspect_raw_command(ref: str) -> Command:
    """Read the manifest (or index) bytes a registry serves for `ref`."""
    return Command(("docker", "buildx", "imagetools", "inspect", "--raw", ref))


def manifest_digest(raw: str) -> str:
    """The digest of manifest bytes as a registry computes it."""
    return "sha256:" + hashlib.sha256(raw.encode()).hexdigest()


def repositories(refs: Sequence[str]) -> tuple[str, ...]:
    """The distinct repositories `refs` name, in order (`reg/app:1`, `reg/app:2` → `reg/app`)."""
    return tuple(dict.fromkeys(repository(ref) for ref in refs))


@dataclass(frozen=True)
class Export:
    """An image exported from the engine, ready for `crane push`."""

    path: Path
    #: The manifest digest the registry will serve for it.
    digest: str
    #: True for the containerd store (an OCI layout naming the built digest).
    same_digest: bool


def export_index_digest(tarball: Path) -> str:
    """The digest the single entry of a `docker save` tarball's `index.json` names ('' if none)."""
    with tarfile.open(tarball) as archive:
        try:
            member = archive.extractfile("index.json")
        except KeyError:
            return ""
        if member is None:
            return ""
        entries = json.loads(member.read()).get("manifests") or []
    return str(entries[0].get("digest", "")) if len(entries) == 1 else ""


def single_entry_layout(layout: Path, descriptor: Mapping[str, Any], dest: Path) -> Path:
    """An OCI layout at `dest` whose index names `descriptor` only, linking `layout`'s blobs
    (nothing is copied). `crane push` and `trivy --input` want one image per layout."""
    dest.mkdir(parents=True, exist_ok=True)
    (dest / "oci-layout").write_text('{"imageLayoutVersion":"1.0.0"}', encoding="utf-8")
    index = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json"}
    (dest / "index.json").write_text(
        json.dumps({**index, "manifests": [dict(descriptor)]}), encoding="utf-8"
    )
    blobs = dest / "blobs"
    if not blobs.is_symlink() and not blobs.exists():
        blobs.symlink_to(layout.resolve() / "blobs")
    return dest


def layout_naming(layout: Path, digest: str, workdir: Path) -> Path | None:
    """A one-entry OCI layout in `workdir` naming `digest`, sharing `layout`'s blobs; None when
    `layout` (the build's export) does not hold `digest`.

    buildx writes one index entry per tag; `crane push` wants exactly one.
    """
    try:
        entries = json.loads((layout / "index.json").read_text(encoding="utf-8"))["manifests"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    matching = [e for e in entries if isinstance(e, dict) and e.get("digest") == digest]
    if not matching:
        return None
    entry = {k: v for k, v in matching[0].items() if k != "annotations"}
    return single_entry_layout(layout, entry, workdir / "layout")


def export_image(
    image_id: str, workdir: Path, runner: Runner, *, layout: Path | None = None
) -> Export:
    """Export `image_id` into `workdir` as what `crane push` should send: the build's own OCI
    layout when it holds that digest, else the engine's copy (`docker save`)."""
    if workdir.exists():
        shutil.rmtree(workdir)
    if not runner.dry:
        workdir.mkdir(parents=True)
        if layout is not None and (one := layout_naming(layout, image_id, workdir)):
            return Export(one, image_id, True)
    tarball = workdir / "image.tar"
    runner.run(save_command(image_id, tarball), capture=True)
    if runner.dry:
        return Export(workdir / "layout", image_id, True)
    if export_index_digest(tarball) == image_id:
        layout = workdir / "layout"
        with tarfile.open(tarball) as archive:
            archive.extractall(layout, filter="data")
        tarball.unlink()
        return Export(layout, image_id, True)
    digest = runner.run(crane_digest_command(tarball), capture=True).stdout.strip()
    if not digest.startswith("sha256:"):
        raise BuildtasksError(f"crane digest --tarball printed {digest!r}, not a digest")
    return Export(tarball, digest, False)


def served_manifest(ref: str, runner: Runner) -> str:
    """The manifest bytes the registry serves for `ref` ('' when it serves nothing)."""
    result = runner.run(inspect_raw_command(ref), capture=True, check=False, quiet=True)
    return result.stdout if result.ok else ""


def served_digest(ref: str, runner: Runner) -> str:
    """The digest the registry serves for `ref` ('' when it serves nothing)."""
    raw = served_manifest(ref, runner)
    return manifest_digest(raw) if raw else ""


def _push_error(ref: str, exc: CommandFailed) -> BuildtasksError:
    return registry_error(ref, str(exc), action="push to") or exc


def require_in_engine(image_id: str, runner: Runner) -> None:
    """Fail naming the fix when the engine's image store has no image `image_id`."""
    if runner.dry:
        return
    try:
        runner.output(image_inspect(image_id, "{{.Id}}"))
    except CommandFailed:
        raise NotFound(
            f"image {image_id[:19]} is not in the engine's image store (removed, or replaced "
            "by another build of the same names since this record was written): rebuild it "
            "with `uv run invoke docker.build`"
        ) from None


def push_untagged(
    image_id: str,
    repos: Sequence[str],
    runner: Runner,
    *,
    workdir: Path,
    layout: Path | None = None,
) -> str:
    """Push the engine's image `image_id` to each of `repos` by digest, untagged.

    Returns the digest the registry serves (the build's digest on the containerd store; the
    manifest crane made, whose config is `image_id`, on the classic store).
    """
    if not repos:
        raise BuildtasksError("nothing to push: the build recorded no image name; pass --name")
    require_in_engine(image_id, runner)
    if not runner.dry and all(
        served_digest(f"{repo}@{image_id}", runner) == image_id for repo in repos
    ):
        # A reproducible rebuild of a pushed commit: the registry has these very bytes.
        runner.say(f"already in the registry, nothing to push: {', '.join(repos)} @{image_id[:19]}")
        return image_id
    try:
        exported = export_image(image_id, workdir, runner, layout=layout)
        for repo in repos:
            ref = f"{repo}@{exported.digest}"
            try:
                runner.run(crane_push_command(exported.path, ref), capture=True)
            except CommandFailed as exc:
                raise _push_error(ref, exc) from None
    finally:
        if not runner.dry:
            shutil.rmtree(workdir, ignore_errors=True)
    if runner.dry:
        return image_id
    for repo in repos:
        ref = f"{repo}@{exported.digest}"
        raw = served_manifest(ref, runner)
        if not raw or manifest_digest(raw) != exported.digest:
            raise BuildtasksError(f"the registry does not serve {ref} after pushing it")
        config = json.loads(raw).get("config") or {}
        if not exported.same_digest and config.get("digest") != image_id:
            raise BuildtasksError(
                f"{ref} is not the built image {image_id[:19]} (its config differs): "
                "rebuild and push again"
            )
    return exported.digest


def apply_tags(digest: str, tags: Sequence[str], runner: Runner) -> None:
    """Point every one of `tags` at `digest`, already in the registry, and prove it.

    Raises `RegistryUnavailable` (down, not logged in) or `BuildtasksError`, naming the tags
    that serve the digest and those that do not when only some made it.
    """
    if not tags:
        raise BuildtasksError(
            "nothing to push: the build recorded no tags; pass --tag to docker.build"
        )
    source = by_digest(tags[0], digest)
    try:
        runner.run(tag_command(source, tags), capture=True)
    except CommandFailed as exc:
        error = _push_error(tags[0], exc)
        made = [t for t in tags if served_digest(t, runner) == digest]
        if made:
            rest = ", ".join(t for t in tags if t not in made)
            cls = RegistryUnavailable if isinstance(error, RegistryUnavailable) else BuildtasksError
            error = cls(
                f"{error} (tagged: {', '.join(made)}; not tagged: {rest})",
                exit_code=error.exit_code,
            )
        raise error from None
    verify_pushed(digest, tags, runner)


def verify_pushed(digest: str, tags: Sequence[str], runner: Runner) -> None:
    """Fail unless the registry serves exactly `digest` for every one of `tags`."""
    if runner.dry:
        return
    for ref in tags:
        raw = runner.run(inspect_raw_command(ref), capture=True, quiet=True).stdout
        served = manifest_digest(raw)
        if served != digest:
            raise BuildtasksError(
                f"registry serves {served[:19]} for {ref}, not the built {digest[:19]}: "
                "another push raced this one; rerun docker.push"
            )
