"""Every platform of an image, by digest: what the scan and the SBOM read, one run per platform.

Trivy resolves an image index to one platform only (and its `--platform` flag does not pick
another one reliably), so a CRITICAL finding in an arm64-only layer would pass a gate that
read the amd64 image, while the signature (`cosign sign --recursive`) vouches for both. This
module lists the platform manifests of an index and gives each one a target of its own:

* in the registry, `name@sha256:<platform manifest>`: the exact bytes that were pushed;
* in the engine's image store, an OCI layout exported with `docker save` whose index names
  that one platform manifest (engines before 28 cannot export one platform by themselves).

A single-platform image is one target, read as before.
"""

from __future__ import annotations

import json
import shutil
import tarfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from buildtasks.errors import BuildtasksError
from buildtasks.push import inspect_raw_command, save_command, single_entry_layout
from buildtasks.refs import by_digest, require_digest
from buildtasks.runner import Runner

INDEX_TYPES = (
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
)


@dataclass(frozen=True)
class Target:
    """One platform of an image as Trivy reads it."""

    #: `linux/arm64`; empty for a single-platform image.
    platform: str
    #: The manifest digest of this platform (the image's own digest when single-platform).
    digest: str
    #: What Trivy is given: a reference (`name@sha256:...`, or an image id), or a layout dir.
    ref: str
    #: True when `ref` is an OCI layout directory (`trivy image --input`).
    layout: bool = False

    @property
    def slug(self) -> str:
        """`linux-arm64`: the platform as a file-name part ('' when single-platform)."""
        return platform_slug(self.platform)


#: `os.uname().machine` spellings → the platform an engine on this machine builds natively.
NATIVE_ARCHES = {"x86_64": "amd64", "amd64": "amd64", "aarch64": "arm64", "arm64": "arm64"}


def native_platform(machine: str) -> str:
    """This machine's own platform (`linux/amd64` for an unknown machine name)."""
    return f"linux/{NATIVE_ARCHES.get(machine.lower(), 'amd64')}"


def platform_slug(platform: str) -> str:
    return platform.replace("/", "-")


def platform_of(descriptor: Mapping[str, Any]) -> str:
    """`os/arch[/variant]` of an index entry; '' for attestation manifests and the like."""
    annotations = descriptor.get("annotations") or {}
    if annotations.get("vnd.docker.reference.type"):
        return ""
    plat = descriptor.get("platform") or {}
    os_, arch = str(plat.get("os", "")), str(plat.get("architecture", ""))
    if not os_ or not arch or "unknown" in (os_, arch):
        return ""
    variant = str(plat.get("variant", ""))
    return f"{os_}/{arch}/{variant}" if variant else f"{os_}/{arch}"


def platform_manifests(index: Mapping[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """(platform, descriptor) of each image manifest of an index; [] for a plain manifest."""
    if index.get("mediaType") not in INDEX_TYPES and "manifests" not in index:
        return []
    out = []
    for descriptor in index.get("manifests") or ():
        platform = platform_of(descriptor)
        if platform:
            out.append((platform, dict(descriptor)))
    return out


def empty_dir(path: Path) -> str:
    """`path`, made empty: a scratch directory (an export, or Trivy's working directory)."""
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True)
    return str(path)


def remote_targets(ref: str, runner: Runner) -> list[Target]:
    """The targets of `ref` (name@sha256:...) in its registry: one per platform of an index."""
    digest = require_digest(ref).digest
    result = runner.run(inspect_raw_command(ref), capture=True, check=False, quiet=True)
    if not result.ok:
        # Let the scan itself report what is wrong (missing image, registry down, login).
        return [Target("", digest, ref)]
    try:
        index = json.loads(result.stdout)
    except json.JSONDecodeError:
        return [Target("", digest, ref)]
    entries = platform_manifests(index) if isinstance(index, Mapping) else []
    if len(entries) < 2:
        # A one-platform index is read by Trivy as that platform already.
        return [Target(entries[0][0] if entries else "", digest, ref)]
    return [Target(p, d["digest"], by_digest(ref, d["digest"])) for p, d in entries]


def _read_blob(layout: Path, digest: str) -> dict[str, Any]:
    data = json.loads((layout / "blobs" / "sha256" / digest.split(":", 1)[1]).read_bytes())
    return data if isinstance(data, dict) else {}


def _find_index(layout: Path, digest: str) -> dict[str, Any]:
    """The index (or manifest) with `digest` in an exported layout, following nested indexes."""
    top = json.loads((layout / "index.json").read_text(encoding="utf-8"))
    for entry in top.get("manifests") or ():
        if entry.get("digest") == digest:
            return _read_blob(layout, digest)
    entries = top.get("manifests") or ()
    if len(entries) == 1:
        return _read_blob(layout, entries[0]["digest"])
    raise BuildtasksError(f"docker save wrote no image {digest} to {layout}")


def layout_targets(layout: Path, digest: str) -> list[Target]:
    """One OCI layout per platform of the image `digest` exported (unpacked) at `layout`.

    Each `layout/<os>-<arch>/` holds an index naming that platform's manifest only, and
    links to the shared blobs, so nothing is copied.
    """
    index = _find_index(layout, digest)
    entries = platform_manifests(index)
    targets = []
    for platform, descriptor in entries:
        one = single_entry_layout(layout, descriptor, layout / platform_slug(platform))
        targets.append(Target(platform, str(descriptor["digest"]), str(one), layout=True))
    return targets


def local_targets(
    ref: str, platforms: Sequence[str], runner: Runner, workdir: Path
) -> list[Target]:
    """The targets of an image in the engine's store; an export per platform when several."""
    parsed = require_digest(ref, allow_image_id=True)
    digest = parsed.digest
    if len(platforms) < 2 or runner.dry:
        return [Target(platforms[0] if len(platforms) == 1 else "", digest, str(parsed))]
    empty_dir(workdir)
    tarball = workdir / "image.tar"
    runner.run(save_command(digest, tarball), capture=True)
    layout = workdir / "layout"
    layout.mkdir()
    with tarfile.open(tarball) as archive:
        archive.extractall(layout, filter="data")
    tarball.unlink()
    targets = layout_targets(layout, digest)
    if not targets:
        return [Target("", digest, str(parsed))]
    return targets


def targets_of(
    ref: str,
    runner: Runner,
    *,
    local: bool,
    platforms: Sequence[str] = (),
    workdir: Path,
) -> list[Target]:
    """Every platform of `ref` as a target: from the registry, or from the engine's store."""
    if local:
        return local_targets(ref, platforms, runner, workdir)
    if runner.dry:
        return [Target("", require_digest(ref).digest, ref)]
    return remote_targets(ref, runner)
