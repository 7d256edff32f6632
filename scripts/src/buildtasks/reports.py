"""What a scan report and an SBOM say about the image they describe: merged and stamped.

Trivy writes one report per platform. The report a gate, an attestation and a reviewer read
(`trivy.json`) is their merge: every result keeps Trivy's shape and gains a `Platform`, and
its `Target` names the platform, so the table, the gate line and the vulnerability
attestation all say which platform a finding belongs to. The SARIF keeps one run per
platform, each under a code-scanning category of its own.

Each report and CycloneDX SBOM is then stamped with what buildtasks knows and Trivy cannot
say (a layout export names no digest; Trivy's `--image-src docker` names none before a
push): the digest that was read, the digest of each platform, the vulnerability DB that was
used and the gate's verdict. Signing and attesting check the stamp. Pure: mappings in,
mappings out.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

#: The top-level key of a trivy JSON report that buildtasks adds (Trivy ignores it).
STAMP = "Buildtasks"
#: CycloneDX `metadata.properties` names buildtasks adds.
SBOM_DIGEST = "buildtasks:digest"
SBOM_PLATFORM = "buildtasks:platform"
SBOM_MANIFEST = "buildtasks:manifest-digest"


def merge_reports(reports: Sequence[tuple[str, Mapping[str, Any]]], *, name: str) -> dict[str, Any]:
    """Merge one trivy report per platform into one, each result labelled with its platform.

    `reports` holds (platform, report) pairs; a single pair with platform '' is returned as
    is (copied). `name` becomes the merged report's `ArtifactName`.
    """
    if len(reports) == 1 and not reports[0][0]:
        return copy.deepcopy(dict(reports[0][1]))
    first = copy.deepcopy(dict(reports[0][1]))
    results: list[dict[str, Any]] = []
    for platform, report in reports:
        for result in report.get("Results") or ():
            item = copy.deepcopy(dict(result))
            if platform:
                item["Platform"] = platform
                item["Target"] = f"{item.get('Target', '')} ({platform})"
            results.append(item)
    first["ArtifactName"] = name
    first["Results"] = results
    return first


def without_packages(report: Mapping[str, Any]) -> dict[str, Any]:
    """`report` without the package lists of `--list-all-pkgs` (the SBOMs carry those).

    What remains is what a scan found: the report users read, gate on and attest.
    """
    out = dict(report)
    if isinstance(results := report.get("Results"), list):
        out["Results"] = [
            {k: v for k, v in result.items() if k != "Packages"}
            if isinstance(result, Mapping)
            else result
            for result in results
        ]
    return out


def stamp_report(
    report: Mapping[str, Any],
    *,
    reference: str,
    digest: str,
    platforms: Mapping[str, str],
    db: Mapping[str, Any] | None,
    ignore_sources: Sequence[str],
) -> dict[str, Any]:
    """`report` with the `Buildtasks` stamp: what was scanned, with which DB and ignores."""
    out = dict(report)
    out[STAMP] = {
        "Reference": reference,
        "Digest": digest,
        "Platforms": dict(platforms),
        "VulnerabilityDB": dict(db) if db else None,
        "IgnoreSources": list(ignore_sources),
    }
    return out


def stamp_gate(
    report: Mapping[str, Any], *, passed: bool, severity: Sequence[str], ignore_unfixed: bool
) -> dict[str, Any]:
    """`report` with the gate's verdict added to its stamp."""
    out = dict(report)
    stamp = dict(out.get(STAMP) or {})
    stamp["Gate"] = {
        "Passed": passed,
        "Severity": list(severity),
        "IgnoreUnfixed": ignore_unfixed,
    }
    out[STAMP] = stamp
    return out


def stamp(report: Mapping[str, Any]) -> Mapping[str, Any]:
    """The `Buildtasks` stamp of a report ({} when it has none)."""
    value = report.get(STAMP)
    return value if isinstance(value, Mapping) else {}


def gate_passed_for(report: Mapping[str, Any], digest: str) -> bool | None:
    """Whether the stamped gate passed for `digest`: None when the report has no verdict on it."""
    mark = stamp(report)
    gate = mark.get("Gate")
    if mark.get("Digest") != digest or not isinstance(gate, Mapping):
        return None
    return bool(gate.get("Passed"))


def merge_sarif(docs: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """One SARIF log holding every run of `docs` (each run keeps its own category)."""
    if not docs:
        return {"version": "2.1.0", "runs": []}
    out = copy.deepcopy(dict(docs[0]))
    out["runs"] = [copy.deepcopy(run) for doc in docs for run in doc.get("runs") or ()]
    return out


def stamp_sbom(
    sbom: Mapping[str, Any], *, digest: str, platform: str, manifest: str
) -> dict[str, Any]:
    """A CycloneDX SBOM with the image digest (and platform) it describes in its metadata."""
    out = copy.deepcopy(dict(sbom))
    metadata = dict(out.get("metadata") or {})
    props = [
        p
        for p in metadata.get("properties") or ()
        if isinstance(p, Mapping) and not str(p.get("name", "")).startswith("buildtasks:")
    ]
    props.append({"name": SBOM_DIGEST, "value": digest})
    if platform:
        props += [
            {"name": SBOM_PLATFORM, "value": platform},
            {"name": SBOM_MANIFEST, "value": manifest},
        ]
    metadata["properties"] = props
    out["metadata"] = metadata
    return out


def inventory_only(sbom: Mapping[str, Any]) -> dict[str, Any]:
    """A CycloneDX SBOM converted from a scan report, without the scan's vulnerabilities.

    An SBOM is an inventory; the findings are attested separately (`--type vuln`), from the
    report the gate read.
    """
    return {k: v for k, v in sbom.items() if k != "vulnerabilities"}


def sbom_stamp(sbom: Mapping[str, Any]) -> dict[str, str]:
    """The `buildtasks:*` properties of a CycloneDX SBOM."""
    props = (sbom.get("metadata") or {}).get("properties") or ()
    return {
        str(p["name"]): str(p.get("value", ""))
        for p in props
        if isinstance(p, Mapping) and str(p.get("name", "")).startswith("buildtasks:")
    }


@dataclass(frozen=True)
class PackageReport:
    """One platform's raw Trivy report listing every package: what an SBOM is converted from."""

    #: `linux/arm64`; empty for a single-platform image.
    platform: str
    #: The manifest digest of this platform (the image's own digest when single-platform).
    digest: str
    path: Path


def with_category(sarif: Mapping[str, Any], category: str) -> dict[str, Any]:
    """Return `sarif` with every run's `automationDetails.id` set to `<category>/`.

    GitHub code scanning reads the text up to the last `/` as the analysis category, so
    each image (and its Dockerfile) stays a category of its own and one upload never
    replaces another's alerts.
    """
    doc = copy.deepcopy(dict(sarif))
    for run in doc.get("runs") or ():
        run["automationDetails"] = {**run.get("automationDetails", {}), "id": f"{category}/"}
    return doc


def image_category(image_key: str) -> str:
    return f"trivy/{image_key}"


def dockerfile_category(image_key: str) -> str:
    return f"trivy-config/{image_key}"
