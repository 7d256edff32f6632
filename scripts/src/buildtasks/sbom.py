"""Describe an image, by digest, as CycloneDX and SPDX JSON documents written by Trivy.

An SBOM is an inventory: the packages of the operating system and of the application's
virtual environment, with their versions, licences and package URLs. It needs no
vulnerability DB, so it works offline; vulnerabilities are `docker.scan`'s job. The Trivy
command is planned in `buildtasks.trivy`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from buildtasks import trivy
from buildtasks.config import Config, ImageSpec
from buildtasks.errors import BuildtasksError
from buildtasks.refs import require_digest
from buildtasks.runner import Runner

#: SBOM formats: Trivy's `--format` value and the file written under `.buildtasks/<image>/`.
FORMATS = trivy.SBOM_FORMATS


def sbom_path(config: Config, image: ImageSpec, fmt: str) -> Path:
    """Where the SBOM of `image` in format `fmt` is written."""
    return config.artifacts_path(image) / FORMATS[fmt]


@dataclass(frozen=True)
class SbomResult:
    """The SBOM files written for one image, and how many packages each lists."""

    ref: str
    files: Mapping[str, Path]
    packages: Mapping[str, int]


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
) -> SbomResult:
    """Write `image`'s SBOMs (CycloneDX and SPDX JSON by default) for `ref`; return the files."""
    require_digest(ref, allow_image_id=local)
    files = {fmt: sbom_path(config, image, fmt) for fmt in formats}
    if not runner.dry:
        config.artifacts_path(image).mkdir(parents=True, exist_ok=True)
        for path in files.values():
            path.unlink(missing_ok=True)
    counts: dict[str, int] = {}
    for fmt, path in files.items():
        command = trivy.sbom(ref, fmt, path, cache_dir=cache_dir, offline=offline, local=local)
        runner.run(command, capture=True)
        if runner.dry:
            continue
        try:
            document = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as exc:
            raise BuildtasksError(f"trivy wrote no valid {fmt} SBOM at {path}: {exc}") from None
        counts[fmt] = count_packages(fmt, document)
    return SbomResult(ref, files, counts)
