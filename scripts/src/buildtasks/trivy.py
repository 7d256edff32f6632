"""Pure plans for Trivy, and what its output means: one home for every `trivy` argv.

`docker.scan`, `docker.sbom` and `lint.dockerfiles` all build their Trivy commands here, so the
flags that decide where an image is read from (the registry or the engine), the cache, the
offline switches and the misconfiguration checks are written once.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from buildtasks.command import Command
from buildtasks.config import SEVERITIES
from buildtasks.errors import clip
from buildtasks.refs import require_digest

#: Every severity, lowest first: what the JSON and the SARIF always hold.
ALL_SEVERITIES = SEVERITIES
#: What the image scan looks for.
SCANNERS = ("vuln", "secret", "misconfig")
#: SBOM formats: Trivy's `--format` value and the file written under `.buildtasks/<image>/`.
SBOM_FORMATS = {
    "cyclonedx": "sbom.cdx.json",
    "spdx-json": "sbom.spdx.json",
}

#: Trivy's words when it has no vulnerability DB and cannot get one.
_DB_FAILURE_RE = re.compile(
    r"failed to download vulnerability DB|cannot be specified on the first run|"
    r"first run cannot skip downloading DB",
    re.IGNORECASE,
)


def image_source(ref: str, *, local: bool, layout: bool = False) -> tuple[list[str], str, str]:
    """Where Trivy reads `ref` from: (flags, target, the hint shown when it is not there).

    The registry by default: the bytes that were pushed, and no engine needed in CI. With
    `local`, the engine's image store, where the engine's image id is accepted too. With
    `layout`, `ref` is an OCI layout directory holding one platform of an image.
    """
    if layout:
        return ["--input", ref], "", "the exported image layout is incomplete; rebuild with --load"
    target = str(require_digest(ref, allow_image_id=local))
    flags = ["--image-src", "docker" if local else "remote"]
    hint = (
        "is the image in the engine? build it with --load"
        if local
        else "is the image pushed? push it with `uv run invoke docker.push`, or read the "
        "engine's copy with --local"
    )
    return flags, target, hint


def default_cache_dir(env: Mapping[str, str]) -> str:
    """Trivy's cache when none is configured: `TRIVY_CACHE_DIR`, else `$XDG_CACHE_HOME/trivy`."""
    if env.get("TRIVY_CACHE_DIR"):
        return env["TRIVY_CACHE_DIR"]
    base = env.get("XDG_CACHE_HOME") or str(Path(env.get("HOME", "~")).expanduser() / ".cache")
    return str(Path(base) / "trivy")


def read_db_metadata(cache_dir: str) -> dict[str, Any] | None:
    """The `db/metadata.json` of a Trivy cache, or None when it holds no vulnerability DB."""
    path = Path(cache_dir).expanduser() / "db" / "metadata.json"
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return None
    return data if isinstance(data, dict) else None


#: The key our own test fixture DB sets in `metadata.json`; Trivy ignores it.
FIXTURE_KEY = "BuildtasksTestFixture"


def _parse_time(value: object) -> datetime | None:
    """An RFC 3339 time as Trivy writes it; None for anything else, or Go's zero time."""
    try:
        moment = datetime.fromisoformat(str(value or "").replace("Z", "+00:00"))
    except ValueError:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return None if moment.year < 1000 else moment.astimezone(UTC)


def db_problem(
    meta: Mapping[str, Any] | None,
    *,
    now: datetime,
    max_age: timedelta,
    allow_fixture: bool = False,
) -> str:
    """Why a vulnerability DB must not be trusted ('' when it may be): a fixture, too old.

    A DB older than `max_age` misses every advisory published since, so a clean scan
    against it proves little; `max_age` of zero turns the age check off.
    """
    if meta is None:
        return ""
    updated = _parse_time(meta.get("UpdatedAt"))
    stamp = updated.strftime("%Y-%m-%dT%H:%MZ") if updated else str(meta.get("UpdatedAt"))
    if meta.get(FIXTURE_KEY) and not allow_fixture:
        return f"is a test fixture, not real advisories (UpdatedAt {stamp})"
    if max_age and (updated is None or now - updated > max_age):
        days = max_age.total_seconds() / 86400
        return f"is older than {days:g} days (UpdatedAt {stamp})"
    return ""


def _common(cache_dir: str) -> list[str]:
    return ["--cache-dir", cache_dir] if cache_dir else []


def _offline_flags(offline: bool) -> list[str]:
    return ["--skip-java-db-update", "--skip-check-update", "--offline-scan"] if offline else []


def db_download(*, cache_dir: str = "", db_repository: str = "") -> Command:
    """Return the command that fetches (or freshens) the vulnerability DB, from one mirror.

    Without `db_repository`, Trivy's own list (or `TRIVY_DB_REPOSITORY`) is used.
    """
    argv = ["trivy", "image", "--download-db-only", "--no-progress", *_common(cache_dir)]
    if db_repository:
        argv += ["--db-repository", db_repository]
    return Command(tuple(argv))


def image_scan(
    ref: str,
    output: Path,
    *,
    cache_dir: str = "",
    offline: bool = False,
    ignorefile: str | None = None,
    vex: Sequence[str] = (),
    local: bool = False,
    layout: bool = False,
    cwd: str | None = None,
    inventory: bool = False,
) -> Command:
    """Return the one Trivy run of an image: every finding, every severity, JSON, exit code 0.

    The DB is expected in place already (`db_download`), hence `--skip-db-update`. `cwd`
    should be an empty directory, so no `trivy.yaml` or `.trivyignore` lying around the
    caller's working directory drops findings unseen. With `inventory` the report also lists
    every package (`--list-all-pkgs`), so the SBOMs can be converted from it (`sbom_from_report`)
    instead of reading the image again.
    """
    source, target, hint = image_source(ref, local=local, layout=layout)
    argv = [
        "trivy",
        "image",
        "--scanners",
        ",".join(SCANNERS),
        "--format",
        "json",
        "--output",
        str(output),
        "--severity",
        ",".join(ALL_SEVERITIES),
        "--exit-code",
        "0",
        "--skip-db-update",
        "--no-progress",
        *(["--list-all-pkgs"] if inventory else []),
        *_common(cache_dir),
        *_offline_flags(offline),
        *source,
    ]
    if ignorefile:
        argv += ["--ignorefile", ignorefile]
    for source in vex:
        argv += ["--vex", source]
    if offline and "repo" in vex:
        argv += ["--skip-vex-repo-update"]
    if target:
        argv.append(target)
    return Command(tuple(argv), hint=hint, cwd=cwd)


def config_scan(
    dockerfile: Path,
    output: Path | None = None,
    *,
    cache_dir: str = "",
    ignorefile: str | None = None,
    severity: Sequence[str] = ALL_SEVERITIES,
    exit_code: int = 0,
    quiet: bool = False,
    cwd: str | None = None,
) -> Command:
    """Return Trivy's misconfiguration checks of a Dockerfile (embedded checks, offline).

    With `output`, every finding goes to a JSON report and the run exits 0 (the scan gate
    decides); without, the table is printed and `exit_code` fails the run at `severity` (lint).
    """
    argv = ["trivy", "config", *(["--quiet"] if quiet else []), "--skip-check-update"]
    if output is not None:
        argv += ["--format", "json", "--output", str(output)]
    argv += ["--severity", ",".join(severity), "--exit-code", str(exit_code), *_common(cache_dir)]
    if ignorefile:
        argv += ["--ignorefile", ignorefile]
    argv.append(str(dockerfile))
    return Command(tuple(argv), cwd=cwd)


def sbom(
    ref: str,
    fmt: str,
    output: Path,
    *,
    cache_dir: str = "",
    offline: bool = False,
    local: bool = False,
    layout: bool = False,
    cwd: str | None = None,
) -> Command:
    """Return the Trivy run that writes the SBOM of `ref` (by digest) in `fmt` to `output`.

    The scanner list is empty (`--scanners ''`) so a `TRIVY_SCANNERS` meant for scans cannot
    turn the inventory into a scan that needs the vulnerability DB.
    """
    if fmt not in SBOM_FORMATS:
        raise ValueError(f"unknown SBOM format {fmt!r}; known: {', '.join(SBOM_FORMATS)}")
    source, target, hint = image_source(ref, local=local, layout=layout)
    argv = ["trivy", "image", "--format", fmt, "--output", str(output), "--scanners", ""]
    argv += ["--no-progress", *_common(cache_dir)]
    if offline:
        # Java archives are identified through the Java DB; offline, by their manifests only.
        argv += ["--skip-java-db-update", "--offline-scan"]
    argv += [*source, *([target] if target else [])]
    return Command(tuple(argv), hint=hint, cwd=cwd)


def sbom_from_report(report: Path, fmt: str, output: Path) -> Command:
    """Return the conversion of a `--list-all-pkgs` JSON report into the SBOM format `fmt`.

    The packages are the ones `sbom` lists for the same image; the image is not read again.
    """
    if fmt not in SBOM_FORMATS:
        raise ValueError(f"unknown SBOM format {fmt!r}; known: {', '.join(SBOM_FORMATS)}")
    return Command(("trivy", "convert", "--format", fmt, "--output", str(output), str(report)))


def to_sarif(report: Path, output: Path) -> Command:
    """Return the conversion of a JSON report into SARIF holding every finding it has."""
    return Command(
        (
            "trivy",
            "convert",
            "--format",
            "sarif",
            "--severity",
            ",".join(ALL_SEVERITIES),
            "--ignorefile",
            "",
            "--exit-code",
            "0",
            "--output",
            str(output),
            str(report),
        )
    )


def to_table(report: Path, severities: Sequence[str]) -> Command:
    """Return the conversion of a JSON report into the terminal table, at the gate's severities."""
    return Command(
        (
            "trivy",
            "convert",
            "--format",
            "table",
            "--table-mode",
            "detailed",
            "--severity",
            ",".join(severities),
            "--ignorefile",
            "",
            "--exit-code",
            "0",
            str(report),
        )
    )


#: Trivy's words when `--skip-db-update` meets a DB of a schema it no longer reads.
OLD_SCHEMA = "old DB schema"

#: Trivy's words when the image it was given is not where it looked.
_MISSING_RE = re.compile(r"MANIFEST_UNKNOWN|No such image|unable to find the specified image")


def image_missing(stderr: str) -> str:
    """What says the image is not there ('MANIFEST_UNKNOWN', 'No such image'; '' if not that)."""
    found = [m.group(0) for m in _MISSING_RE.finditer(stderr)]
    specific = [m for m in found if m != "unable to find the specified image"]
    return (specific or found or [""])[0]


def db_unavailable(stderr: str) -> bool:
    """Whether Trivy's error output says it has no vulnerability DB and cannot get one."""
    return bool(_DB_FAILURE_RE.search(stderr))


def trivy_reason(stderr: str) -> str:
    """The innermost cause of a Trivy failure, on one short line."""
    lines = [line.strip() for line in stderr.splitlines() if line.strip()]
    for line in lines:
        if line.startswith("* "):
            return clip(line[2:].split("; ")[0])
    for line in reversed(lines):
        if "FATAL" in line or "ERROR" in line:
            return clip(line.split("\t")[-1].rsplit(": ", 1)[-1])
    return clip(lines[-1]) if lines else "no output"
