"""What cosign prints and what it signs: verified payloads, in-toto statements, predicates.

Parses the output of `cosign verify` and `cosign verify-attestation`, finds the digests that
signatures, statements, SBOMs and trivy reports name, and builds cosign's `vuln` predicate
from a trivy JSON report. Pure: text and mappings in, values out.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from buildtasks.errors import BuildtasksError, ConfigError, clip
from buildtasks.reports import SBOM_DIGEST, sbom_stamp, stamp
from buildtasks.sign.plans import PREDICATE_URIS

TRIVY_URI = "pkg:github/aquasecurity/trivy"
TRIVY_DB_URI = "pkg:github/aquasecurity/trivy-db"


def parse_signatures(stdout: str) -> tuple[dict[str, Any], ...]:
    """The payloads `cosign verify` printed (a JSON array, or one JSON document per line)."""
    payloads: list[dict[str, Any]] = []
    for line in stdout.splitlines():
        line = line.strip()
        if not line.startswith(("[", "{")):
            continue
        doc = json.loads(line)
        payloads += doc if isinstance(doc, list) else [doc]
    return tuple(payloads)


def parse_attestations(stdout: str) -> tuple[dict[str, Any], ...]:
    """Decode the in-toto statements from the DSSE envelopes `cosign verify-attestation` printed."""
    statements = []
    for line in stdout.splitlines():
        line = line.strip()
        if not line.startswith("{"):
            continue
        envelope = json.loads(line)
        try:
            statements.append(json.loads(base64.b64decode(envelope["payload"])))
        except (KeyError, binascii.Error, ValueError) as exc:
            raise BuildtasksError(
                f"cosign printed an attestation that is not DSSE JSON: {exc}"
            ) from None
    return tuple(statements)


#: `critical.type` of a cosign signature: simple signing (cosign 2, and cosign 3's old bundle
#: format), or the predicate type of cosign 3's new-bundle signature statement. `cosign verify`
#: of cosign 3 also returns the attestations it verified, whose `critical.type` is their own
#: predicate type (`https://cyclonedx.org/bom`, ...): those are no signature of the image.
SIGNATURE_TYPES = ("cosign container image signature", "https://sigstore.dev/cosign/sign/v1")


def payload_type(payload: Mapping[str, Any]) -> str:
    critical = payload.get("critical")
    return str(critical.get("type", "")) if isinstance(critical, Mapping) else ""


def is_signature(payload: Mapping[str, Any]) -> bool:
    """Whether a payload `cosign verify` returned is a signature of the image (not an attestation)."""
    return payload_type(payload).lower() in SIGNATURE_TYPES


def signer_of(payload: Mapping[str, Any]) -> tuple[str, str]:
    """(certificate subject, OIDC issuer) of a keyless signature payload; ('', '') for a key."""
    optional = payload.get("optional")
    if not isinstance(optional, Mapping):
        return "", ""
    return str(optional.get("Subject", "") or ""), str(optional.get("Issuer", "") or "")


def statement_matches(kind: str, statement: Mapping[str, Any]) -> bool:
    """Whether an in-toto statement has the predicate type an attestation of `kind` has."""
    expected = PREDICATE_URIS.get(kind, kind if kind.startswith(("http://", "https://")) else "")
    return not expected or statement.get("predicateType") == expected


def signed_digests(payloads: Sequence[Mapping[str, Any]]) -> set[str]:
    """The manifest digests that the verified *signature* payloads claim (attestations excluded)."""
    digests = set()
    for payload in payloads:
        if not is_signature(payload):
            continue
        image = payload.get("critical", {}).get("image", {})
        if isinstance(image, Mapping) and image.get("docker-manifest-digest"):
            digests.add(str(image["docker-manifest-digest"]))
    return digests


def statement_digests(statement: Mapping[str, Any]) -> set[str]:
    """The `sha256:` digests an in-toto statement's subjects name."""
    return {
        f"sha256:{s['digest']['sha256']}"
        for s in statement.get("subject", [])
        if isinstance(s, Mapping)
        and isinstance(s.get("digest"), Mapping)
        and "sha256" in s["digest"]
    }


def cosign_reason(stderr: str) -> str:
    """cosign's own explanation of a failure, on one line."""
    lines = [line.strip() for line in stderr.splitlines() if line.strip()]
    for line in lines:
        if line.startswith("Error: "):
            return line[len("Error: ") :]
    meaningful = [line for line in lines if not line.startswith(("WARNING", "Flag --"))]
    return (meaningful or lines or ["no output"])[-1]


#: Pieces of a cosign error that repeat what the line already says or dump Go values.
_NOISE_RE = re.compile(r"\s*\((?:HEAD responses have no body[^)]*)\)|;?\s*map\[[^\]]*\]")
_REQUEST_RE = re.compile(r"^(?:HEAD|GET|PUT|POST|PATCH|DELETE) https?://")


def cosign_cause(reason: str, ref: str) -> str:
    """cosign's reason without the reference, the request URLs and Go map dumps: the cause.

    `signing [r@sha256:…]: signing digest: HEAD http://…/manifests/sha256:…: unexpected status
    code 404 Not Found (HEAD responses have no body, …)` becomes `signing digest: unexpected
    status code 404 Not Found`; the message around it names the reference once.
    """
    digest = ref.rsplit("@", 1)[-1]
    parts = [
        part.strip()
        for part in _NOISE_RE.sub("", reason).split(": ")
        if part.strip() and digest not in part and ref not in part and not _REQUEST_RE.match(part)
    ]
    return clip(": ".join(parts[-3:]) or reason, 140)


def summarize(kind: str, statement: Mapping[str, Any]) -> str:
    """One line saying what a verified attestation contains."""
    predicate = statement.get("predicate", {})
    if kind == "cyclonedx":
        components = predicate.get("components", [])
        return f"{kind}: SBOM with {len(components)} components"
    if kind == "vuln":
        scanner = predicate.get("scanner", {})
        result = scanner.get("result", {}) or {}
        count = sum(len(r.get("Vulnerabilities") or []) for r in result.get("Results", []) or [])
        return f"{kind}: {count} vulnerabilities found by trivy {scanner.get('version', '?')}"
    return f"{kind}: {statement.get('predicateType', '?')}"


def load_report(report: str | bytes | Mapping[str, Any]) -> Mapping[str, Any]:
    """A trivy JSON report as a mapping (parsed if given as text); anything else: ConfigError."""
    if isinstance(report, Mapping):
        data: Any = report
    else:
        try:
            data = json.loads(report)
        except json.JSONDecodeError as exc:
            raise ConfigError(
                f"the trivy report is not JSON ({exc}): run trivy with --format json"
            ) from None
    if not isinstance(data, Mapping) or "SchemaVersion" not in data or "ArtifactName" not in data:
        raise ConfigError(
            "not a trivy JSON report: run `trivy image --format json --output FILE REF`"
        )
    return data


RFC3339_RE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)$")


def _rfc3339(value: str | datetime) -> str:
    """An RFC 3339 timestamp, as Go's time.Time (and so cosign) parses it."""
    if isinstance(value, datetime):
        if value.tzinfo is None:
            raise ValueError("timestamps must be timezone-aware")
        return value.astimezone(UTC).isoformat().replace("+00:00", "Z")
    if not RFC3339_RE.match(value):
        raise ConfigError(f"scan time {value!r} is not an RFC 3339 timestamp")
    return value


def db_version(db_meta: Mapping[str, Any] | None) -> str:
    """trivy-db's version as `v<schema>-<YYYYMMDDHH of UpdatedAt>`, e.g. `v2-2026010203`."""
    if not db_meta:
        return ""
    schema = db_meta.get("Version", "")
    updated = str(db_meta.get("UpdatedAt", ""))
    try:
        moment = datetime.fromisoformat(updated.replace("Z", "+00:00")[:19])
        stamp = moment.strftime("%Y%m%d%H")
    except ValueError:
        stamp = updated
    return f"v{schema}-{stamp}" if stamp else f"v{schema}"


def report_digests(report: Mapping[str, Any]) -> set[str]:
    """The image digests a trivy JSON report says it scanned."""
    names = [str(report.get("ArtifactName", ""))]
    metadata = report.get("Metadata", {}) or {}
    names += [str(d) for d in metadata.get("RepoDigests", []) or []]
    found = {n.rsplit("@", 1)[1] for n in names if "@sha256:" in n}
    digest = str(stamp(report).get("Digest", ""))
    return found | {digest} if digest.startswith("sha256:") else found


def sbom_digests(sbom: Mapping[str, Any]) -> set[str]:
    """The image digests a CycloneDX SBOM made by trivy says it describes."""
    component = (sbom.get("metadata", {}) or {}).get("component", {}) or {}
    names = [str(component.get("name", ""))]
    names += [
        str(p.get("value", ""))
        for p in component.get("properties", []) or []
        if p.get("name") == "aquasecurity:trivy:RepoDigest"
    ]
    found = {n.rsplit("@", 1)[1] for n in names if "@sha256:" in n}
    digest = sbom_stamp(sbom).get(SBOM_DIGEST, "")
    return found | {digest} if digest.startswith("sha256:") else found


def invocation_from_env(env: Mapping[str, str], parameters: Sequence[str] = ()) -> dict[str, Any]:
    """The predicate's `invocation`: the GitHub Actions run when there is one."""
    run_id = env.get("GITHUB_RUN_ID", "")
    uri = ""
    if run_id and env.get("GITHUB_REPOSITORY"):
        server = env.get("GITHUB_SERVER_URL", "https://github.com")
        uri = f"{server}/{env['GITHUB_REPOSITORY']}/actions/runs/{run_id}"
    return {
        "parameters": list(parameters),
        "uri": uri,
        "event_id": run_id,
        "builder.id": "GitHub Actions" if env.get("GITHUB_ACTIONS") == "true" else "",
    }


def vuln_predicate(
    trivy_report_json: str | bytes | Mapping[str, Any],
    *,
    scanner_version: str | None,
    db_meta: Mapping[str, Any] | None,
    invocation: Mapping[str, Any] | None = None,
    started: str | datetime | None = None,
    finished: str | datetime | None = None,
    db_uri: str = TRIVY_DB_URI,
) -> dict[str, Any]:
    """Wrap a trivy JSON report in cosign's `vuln` predicate (CosignVulnPredicate).

    The shape is cosign's Go struct: `invocation` {parameters, uri, event_id, builder.id},
    `scanner` {uri, version, db {uri, version}, result}, `metadata` {scanStartedOn,
    scanFinishedOn} — both timestamps RFC 3339, which cosign parses. `scanner_version` None
    takes the version the report records (`Trivy.Version`); the scan times default to the
    report's `CreatedAt`. `db_meta` is trivy's `VulnerabilityDB` metadata (`trivy version
    --format json`) or None when unknown.
    """
    report = load_report(trivy_report_json)
    version = scanner_version or str((report.get("Trivy") or {}).get("Version", ""))
    if not version:
        raise ConfigError("the trivy report does not say which trivy made it: pass scanner_version")
    created = report.get("CreatedAt")
    start = started if started is not None else created
    end = finished if finished is not None else (created if started is None else start)
    if not start or not end:
        raise ConfigError(
            "the trivy report has no CreatedAt (trivy < 0.48): pass the scan's start and end times"
        )
    return {
        "invocation": dict(invocation) if invocation is not None else invocation_from_env({}),
        "scanner": {
            "uri": f"{TRIVY_URI}@{version}",
            "version": version,
            "db": {"uri": db_uri if db_meta else "", "version": db_version(db_meta)},
            "result": dict(report),
        },
        "metadata": {"scanStartedOn": _rfc3339(start), "scanFinishedOn": _rfc3339(end)},
    }
