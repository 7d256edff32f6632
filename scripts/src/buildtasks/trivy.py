"""Pure plans for Trivy, and what its output means: one home for every `trivy` argv.

`docker.scan`, `docker.sbom` and `lint.dockerfiles` all build their Trivy commands here, so the
flags that decide where an image is read from (the registry or the engine), the cache, the
offline switches and the misconfiguration checks are written once.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

from buildtasks.command import Command
from buildtasks.config import SEVERITIES
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


def image_source(ref: str, *, local: bool) -> tuple[list[str], str, str]:
    """Where Trivy reads `ref` from: (flags, target, the hint shown when it is not there).

    The registry by default: the bytes that were pushed, and no engine needed in CI. With
    `local`, the engine's image store, where the engine's image id is accepted too.
    """
    target = str(require_digest(ref, allow_image_id=local))
    flags = ["--image-src", "docker" if local else "remote"]
    hint = (
        "is the image in the engine? build it with --load"
        if local
        else "is the image pushed? push it with `uv run invoke docker.push`, or read the "
        "engine's copy with --local"
    )
    return flags, target, hint


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
) -> Command:
    """Return the one Trivy run of an image: every finding, every severity, JSON, exit code 0.

    The DB is expected in place already (`db_download`), hence `--skip-db-update`.
    """
    source, target, hint = image_source(ref, local=local)
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
    argv.append(target)
    return Command(tuple(argv), hint=hint)


def config_scan(
    dockerfile: Path,
    output: Path | None = None,
    *,
    cache_dir: str = "",
    ignorefile: str | None = None,
    severity: Sequence[str] = ALL_SEVERITIES,
    exit_code: int = 0,
    quiet: bool = False,
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
    return Command(tuple(argv))


def sbom(
    ref: str,
    fmt: str,
    output: Path,
    *,
    cache_dir: str = "",
    offline: bool = False,
    local: bool = False,
) -> Command:
    """Return the Trivy run that writes the SBOM of `ref` (by digest) in `fmt` to `output`.

    The scanner list is empty (`--scanners ''`) so a `TRIVY_SCANNERS` meant for scans cannot
    turn the inventory into a scan that needs the vulnerability DB.
    """
    if fmt not in SBOM_FORMATS:
        raise ValueError(f"unknown SBOM format {fmt!r}; known: {', '.join(SBOM_FORMATS)}")
    source, target, hint = image_source(ref, local=local)
    argv = ["trivy", "image", "--format", fmt, "--output", str(output), "--scanners", ""]
    argv += ["--no-progress", *_common(cache_dir)]
    if offline:
        # Java archives are identified through the Java DB; offline, by their manifests only.
        argv += ["--skip-java-db-update", "--offline-scan"]
    argv += [*source, target]
    return Command(tuple(argv), hint=hint)


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


def db_unavailable(stderr: str) -> bool:
    """Whether Trivy's error output says it has no vulnerability DB and cannot get one."""
    return bool(_DB_FAILURE_RE.search(stderr))


def trivy_reason(stderr: str) -> str:
    """The innermost cause of a Trivy failure, on one short line."""
    lines = [line.strip() for line in stderr.splitlines() if line.strip()]
    for line in lines:
        if line.startswith("* "):
            return _shorten(line[2:].split("; ")[0])
    for line in reversed(lines):
        if "FATAL" in line or "ERROR" in line:
            return _shorten(line.split("\t")[-1].rsplit(": ", 1)[-1])
    return _shorten(lines[-1]) if lines else "no output"


def _shorten(text: str, limit: int = 160) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."
