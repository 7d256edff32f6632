"""Describe an image, by digest, as CycloneDX and SPDX JSON documents written by Trivy.

An SBOM is an inventory: the packages of the operating system and of the application's
virtual environment, with their versions, licences and package URLs. It needs no
vulnerability DB, so it works offline; vulnerabilities are `docker.scan`'s job. The Trivy
command is planned in `buildtasks.trivy`.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from buildtasks import platforms, reports, trivy
from buildtasks.config import Config, ImageSpec
from buildtasks.errors import BuildtasksError
from buildtasks.refs import require_digest
from buildtasks.runner import Runner
from buildtasks.scan import run_trivy

#: SBOM formats: Trivy's `--format` value and the file written under `.buildtasks/<image>/`.
FORMATS = trivy.SBOM_FORMATS


def sbom_path(config: Config, image: ImageSpec, fmt: str, platform: str = "") -> Path:
    """Where the SBOM of `image` in format `fmt` is written (one per platform when several)."""
    name = FORMATS[fmt]
    if platform:
        stem, _, ext = name.partition(".")
        name = f"{stem}.{platforms.platform_slug(platform)}.{ext}"
    return config.artifacts_path(image) / name


@dataclass(frozen=True)
class SbomResult:
    """The SBOM files written for one image, and how many packages each lists.

    Keys are the format (`cyclonedx`), or `format platform` (`cyclonedx linux/arm64`) for a
    multi-platform image.
    """

    ref: str
    files: Mapping[str, Path]
    packages: Mapping[str, int]

    def of_format(self, fmt: str) -> tuple[Path, ...]:
        """Every file written in `fmt` (one per platform)."""
        return tuple(p for k, p in self.files.items() if k.split(" ")[0] == fmt)


def count_packages(fmt: str, document: Mapping[str, object]) -> int:
    """How many packages an SBOM lists (components / packages other than the image itself)."""
    if fmt == "cyclonedx":
        components = document.get("components") or []
        return sum(1 for c in components if isinstance(c, dict) and c.get("type") == "library")
    packages = document.get("packages") or []
    return sum(
        1
        for p in packages
        if isinstance(p, dict)
        and any(
            ref.get("referenceType") == "purl"
            and not str(ref.get("referenceLocator", "")).startswith("pkg:oci/")
            for ref in p.get("externalRefs") or []
            if isinstance(ref, dict)
        )
    )


def write_sbom(
    config: Config,
    image: ImageSpec,
    ref: str,
    runner: Runner,
    *,
    formats: tuple[str, ...] = tuple(FORMATS),
    cache_dir: str = "",
    offline: bool = False,
    local: bool = False,
    platforms_built: Sequence[str] = (),
    inventory: Sequence[reports.PackageReport] = (),
) -> SbomResult:
    """Write `image`'s SBOMs (CycloneDX and SPDX JSON by default) for every platform of `ref`.

    Each CycloneDX SBOM is stamped with the digest of `ref` (and its platform's manifest
    digest), so an attestation can check it describes the image it is attached to. With
    `inventory` (the raw reports of `scan_image(inventory=True)` on the same `ref`) the
    SBOMs are converted from those reports (`trivy convert`) and the image is not read again.
    """
    parsed = require_digest(ref, allow_image_id=local)
    out_dir = config.artifacts_path(image)
    work = out_dir / ".sbom"
    if not runner.dry:
        out_dir.mkdir(parents=True, exist_ok=True)
        for stale in out_dir.glob("sbom.*json"):
            stale.unlink()
    sources: list[tuple[str, str, Path | platforms.Target]]
    if inventory:
        sources = [(r.platform, r.digest, r.path) for r in inventory]
        cwd = None
    else:
        targets = platforms.targets_of(
            str(parsed), runner, local=local, platforms=platforms_built, workdir=work / "image"
        )
        sources = [(t.platform, t.digest, t) for t in targets]
        cwd = None if runner.dry else platforms.empty_dir(work / "cwd")
    multi = len(sources) > 1
    files: dict[str, Path] = {}
    counts: dict[str, int] = {}
    for platform, digest, source in sources:
        for fmt in formats:
            key = f"{fmt} {platform}" if multi else fmt
            path = sbom_path(config, image, fmt, platform if multi else "")
            files[key] = path
            if isinstance(source, Path):
                command = trivy.sbom_from_report(source, fmt, path)
            else:
                command = trivy.sbom(
                    source.ref,
                    fmt,
                    path,
                    cache_dir=cache_dir,
                    offline=offline,
                    local=local and not source.layout,
                    layout=source.layout,
                    cwd=cwd,
                )
            run_trivy(runner, command)
            if runner.dry:
                continue
            try:
                document = json.loads(path.read_text(encoding="utf-8"))
            except (OSError, json.JSONDecodeError) as exc:
                raise BuildtasksError(f"trivy wrote no valid {fmt} SBOM at {path}: {exc}") from None
            counts[key] = count_packages(fmt, document)
            if fmt == "cyclonedx":
                stamped = reports.stamp_sbom(
                    reports.inventory_only(document),
                    digest=parsed.digest,
                    platform=platform if multi else "",
                    manifest=digest,
                )
                path.write_text(json.dumps(stamped, indent=2) + "\n", encoding="utf-8")
    if not runner.dry:
        shutil.rmtree(work, ignore_errors=True)
        for report in inventory:
            shutil.rmtree(report.path.parent, ignore_errors=True)
    return SbomResult(str(parsed), files, counts)
