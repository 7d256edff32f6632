"""What a Trivy report found, and what the gate makes of it. Pure: reports in, findings out.

Every scanner's results (vulnerabilities, secrets, misconfigurations) become `Finding`s; the
gate keeps those at the chosen severities (fixed only, if asked); the counts and the one-line
failure name the worst of them. `scan` runs Trivy and calls these.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from buildtasks.trivy import ALL_SEVERITIES


@dataclass(frozen=True)
class Finding:
    """One finding of a Trivy report, whatever the scanner."""

    kind: str  # vulnerability, secret, misconfiguration, license
    id: str
    severity: str
    subject: str  # package, or the file a secret or misconfiguration is in
    target: str
    fixed: bool = True
    title: str = ""
    #: `linux/arm64` when the image is multi-platform ('' otherwise).
    platform: str = ""

    def describe(self) -> str:
        where = f" on {self.platform}" if self.platform else ""
        return f"{self.id} in {self.subject}{where}"


def _is_fixed(vuln: Mapping[str, Any]) -> bool:
    """Whether a fix is released, the way `trivy --ignore-unfixed` decides."""
    status = vuln.get("Status")
    if status:
        return status == "fixed"
    return bool(vuln.get("FixedVersion"))


def findings(report: Mapping[str, Any]) -> list[Finding]:
    """Every finding in a Trivy JSON report (vulnerabilities, secrets, failed checks, licenses)."""
    out: list[Finding] = []
    for result in report.get("Results") or ():
        target = str(result.get("Target", ""))
        plat = str(result.get("Platform", ""))
        for v in result.get("Vulnerabilities") or ():
            out.append(
                Finding(
                    "vulnerability",
                    str(v.get("VulnerabilityID", "")),
                    str(v.get("Severity", "UNKNOWN")),
                    str(v.get("PkgName", "")),
                    target,
                    fixed=_is_fixed(v),
                    title=str(v.get("Title", "")),
                    platform=plat,
                )
            )
        for s in result.get("Secrets") or ():
            out.append(
                Finding(
                    "secret",
                    str(s.get("RuleID", "")),
                    str(s.get("Severity", "UNKNOWN")),
                    target,
                    target,
                    title=str(s.get("Title", "")),
                    platform=plat,
                )
            )
        for m in result.get("Misconfigurations") or ():
            if m.get("Status", "FAIL") != "FAIL":
                continue
            out.append(
                Finding(
                    "misconfiguration",
                    str(m.get("ID") or m.get("AVDID", "")),
                    str(m.get("Severity", "UNKNOWN")),
                    target,
                    target,
                    title=str(m.get("Title", "")),
                    platform=plat,
                )
            )
        for lic in result.get("Licenses") or ():
            out.append(
                Finding(
                    "license",
                    str(lic.get("Name", "")),
                    str(lic.get("Severity", "UNKNOWN")),
                    str(lic.get("PkgName") or lic.get("FilePath") or target),
                    target,
                    platform=plat,
                )
            )
    return out


def gate(
    report: Mapping[str, Any], severities: Iterable[str], ignore_unfixed: bool
) -> list[Finding]:
    """Return the findings that fail the gate: at one of `severities` (and fixed, if asked)."""
    wanted = set(severities)
    return [
        f
        for f in findings(report)
        if f.severity in wanted
        and not (ignore_unfixed and f.kind == "vulnerability" and not f.fixed)
    ]


def severity_counts(items: Iterable[Finding]) -> dict[str, int]:
    """Severity → count, highest severity first (unknown severities last, by name)."""
    counts: dict[str, int] = {}
    for f in items:
        counts[f.severity] = counts.get(f.severity, 0) + 1
    order = [s for s in reversed(ALL_SEVERITIES) if s in counts]
    order += sorted(s for s in counts if s not in ALL_SEVERITIES)
    return {s: counts[s] for s in order}


def count_by_severity(items: Iterable[Finding]) -> str:
    """`1 CRITICAL, 2 HIGH`: counts, highest severity first."""
    return ", ".join(f"{n} {s}" for s, n in severity_counts(items).items())


def gate_message(
    what: str,
    blocking: Sequence[Finding],
    severities: Sequence[str],
    report: str,
    *,
    fixed_only: bool,
) -> str:
    """The one-line reason a gate failed, naming the worst findings and the report to read."""
    rank = {s: i for i, s in enumerate(reversed(ALL_SEVERITIES))}
    worst = sorted(blocking, key=lambda f: (rank.get(f.severity, len(rank)), f.id, f.subject))
    names = list(dict.fromkeys(f.describe() for f in worst))
    listed = ", ".join(names[:3]) + (f" and {len(names) - 3} more" if len(names) > 3 else "")
    qualifier = " (fixed only)" if fixed_only else ""
    return (
        f"scan gate failed for {what}: {count_by_severity(blocking)} ({listed}) "
        f"at severity {','.join(severities)}{qualifier}; see {report}"
    )
