"""Scan an image by digest with Trivy, gate on severity, and write JSON and SARIF reports.

Trivy runs once per image, reporting every finding at every severity as JSON. Everything else
is derived from that one report, so the outputs can never disagree:

* the SARIF file (`trivy convert`), holding every finding, for GitHub code scanning;
* the table on the terminal (`trivy convert`), limited to the gate's severities;
* the gate decision, made here in Python by `gate()`.

A gate inside Trivy (`--severity ... --exit-code 1`) would also filter the reports it writes,
which is how a SARIF upload silently loses every finding below the gate's threshold.
`trivy convert` re-applies `--severity` (default: `TRIVY_SEVERITY`) and `--ignorefile`
(default: `./.trivyignore`) to the report it converts, so the conversion names both
explicitly: all severities, and no ignore file (the scan already applied it).

Accepted risks stay in Trivy: `.trivyignore` (`--ignorefile`) and VEX documents (`--vex`)
drop findings from the JSON itself, hence from the SARIF and the gate alike. `--ignore-unfixed`
is a gate option: unfixed findings stay in the reports and only stop failing the build.

The vulnerability DB is fetched in a step of its own (`trivy image --download-db-only`),
mirror after mirror, because Trivy moves to its next `--db-repository` only on a temporary
registry error: a mirror that is down, or that lacks the artifact, ends the download. The scan
itself then runs with `--skip-db-update`. `TRIVY_*` variables keep working: the plans pass
only the flags the design needs plus those the user asked for through the configuration or
the command line (a cache directory, mirrors, offline mode).
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from buildtasks import platforms, trivy
from buildtasks import reports as reports_
from buildtasks.command import Command
from buildtasks.config import Config, ImageSpec, parse_severity
from buildtasks.errors import (
    BuildtasksError,
    CommandFailed,
    ConfigError,
    GateFailed,
    NotFound,
)
from buildtasks.findings import (
    Finding,
    count_by_severity,
    findings,
    gate,
    gate_message,
)
from buildtasks.refs import require_digest
from buildtasks.runner import Runner

#: VEX sources that are not files (`trivy --vex repo` / `--vex oci`).
VEX_SOURCES = ("repo", "oci")
_TRUE = ("1", "true", "yes")


class VulnDBUnavailable(BuildtasksError):
    """Trivy has no vulnerability DB and none of the configured sources could provide one."""

    exit_code = 3


class UntrustedVulnDB(VulnDBUnavailable):
    """The vulnerability DB is a test fixture, or too old for a clean scan to mean anything."""


#: Where `scan_image(inventory=True)` keeps the raw reports, under the image's artifacts.
INVENTORY_DIR = ".inventory"

#: Lets the project's own tests scan with their invented fixture DB.
ALLOW_TEST_DB = "BUILDTASKS_ALLOW_TEST_DB"


# --------------------------------------------------------------------------- options


@dataclass(frozen=True)
class ScanOptions:
    """What the user asked for on the command line; empty means "use the configuration"."""

    severity: tuple[str, ...] = ()
    ignore_unfixed: bool | None = None
    ignorefile: str = ""
    vex: tuple[str, ...] = ()
    db_repositories: tuple[str, ...] = ()
    offline: bool | None = None
    #: Scan the engine's image store (`--image-src docker`) instead of the registry.
    local: bool = False
    #: Trivy's cache (DB and layer cache); empty leaves it to Trivy (`TRIVY_CACHE_DIR`, ~/.cache/trivy).
    cache_dir: str = ""
    #: Refuse a vulnerability DB older than this many days (None: the configuration's).
    max_db_age_days: float | None = None


@dataclass(frozen=True)
class Settings:
    """Options merged with `[tool.buildtasks.scan]`: what the plans are built from."""

    severity: tuple[str, ...]
    ignore_unfixed: bool
    db_repositories: tuple[str, ...]
    offline: bool
    cache_dir: str
    vex: tuple[str, ...] = ()
    local: bool = False
    max_db_age_days: float = 3.0


def settings(config: Config, options: ScanOptions) -> Settings:
    """Merge command-line options over the configuration (CLI > env > pyproject > defaults)."""
    severity = (
        parse_severity(list(options.severity), "--severity")
        if options.severity
        else config.scan.severity
    )
    if not severity:
        raise ConfigError("--severity is empty; use e.g. CRITICAL,HIGH")
    return Settings(
        severity=severity,
        ignore_unfixed=(
            config.scan.ignore_unfixed if options.ignore_unfixed is None else options.ignore_unfixed
        ),
        db_repositories=options.db_repositories or config.scan.db_repositories,
        offline=config.scan.offline if options.offline is None else options.offline,
        cache_dir=options.cache_dir or config.scan.cache_dir,
        # --vex replaces the configured sources; configured files are relative to the root.
        vex=options.vex
        or tuple(v if v in VEX_SOURCES else str(config.root / v) for v in config.scan.vex),
        local=options.local,
        max_db_age_days=(
            config.scan.max_db_age_days
            if options.max_db_age_days is None
            else options.max_db_age_days
        ),
    )


# --------------------------------------------------------------------------- plans


def no_db_message(
    tried: Sequence[tuple[str, str]], *, offline: bool, skipped_by: str = "--offline"
) -> str:
    """The one-line error when no vulnerability DB can be had, naming every way to get one.

    `skipped_by` is what kept the scan from downloading one: `--offline` (or the config's
    `offline`), or `TRIVY_SKIP_DB_UPDATE` in the environment.
    """
    fixes = (
        "set [tool.buildtasks.scan] db-repositories or pass --db-repository "
        "(TRIVY_DB_REPOSITORY works too) to name a reachable mirror, or run "
        "`trivy image --download-db-only` where the network allows and scan with --offline"
    )
    if offline:
        return (
            f"no vulnerability DB: {skipped_by} needs one in Trivy's cache (--cache-dir or "
            "TRIVY_CACHE_DIR); fetch it with `trivy image --download-db-only`, or drop "
            f"{skipped_by} and set [tool.buildtasks.scan] db-repositories / --db-repository"
        )
    attempts = "; ".join(f"{repo}: {reason}" for repo, reason in tried)
    return f"no vulnerability DB ({attempts}): {fixes}"


# --------------------------------------------------------------------------- service


@dataclass(frozen=True)
class ScanResult:
    """What one scan found, where its reports are, and what the gate made of it."""

    what: str
    ref: str
    json_path: Path
    sarif_path: Path
    findings: tuple[Finding, ...]
    blocking: tuple[Finding, ...]
    severity: tuple[str, ...]
    ignore_unfixed: bool = False
    db_repository: str = ""
    #: The SARIF path as shown to users (relative to the repository when inside it).
    sarif_name: str = ""
    #: Where accepted risks came from (ignore file, VEX): named in the gate line.
    ignored: tuple[str, ...] = ()
    #: With `scan_image(inventory=True)`: the reports the SBOMs are converted from.
    inventory: tuple[reports_.PackageReport, ...] = ()

    @property
    def passed(self) -> bool:
        return not self.blocking

    @property
    def message(self) -> str:
        """One line: why the gate failed, or that it passed and what the reports hold."""
        where = self.sarif_name or str(self.sarif_path)
        ignores = f"; ignores from {', '.join(self.ignored)}" if self.ignored else ""
        if self.blocking:
            return (
                gate_message(
                    self.what, self.blocking, self.severity, where, fixed_only=self.ignore_unfixed
                )
                + ignores
            )
        total = f"{count_by_severity(self.findings)} in all" if self.findings else "no findings"
        return (
            f"scan gate passed for {self.what}: none at severity {','.join(self.severity)} "
            f"({total}; see {where}{ignores})"
        )


def display_path(config: Config, path: Path) -> str:
    """`path` relative to the repository when inside it, else as given (for messages)."""
    try:
        return str(path.relative_to(config.root))
    except ValueError:
        return str(path)


def resolve_ignorefile(config: Config, options: ScanOptions) -> str | None:
    """The ignore file to pass: `--ignorefile` (must exist), else the configured one if present.

    When neither applies, no flag is passed, so Trivy's own default and `TRIVY_IGNOREFILE`
    still work.
    """
    if options.ignorefile:
        path = Path(options.ignorefile).expanduser().resolve()
        if not path.is_file():
            raise ConfigError(f"--ignorefile {options.ignorefile} does not exist")
        return str(path)
    configured = config.root / config.scan.ignorefile
    return str(configured) if config.scan.ignorefile and configured.is_file() else None


def resolve_vex(sources: Sequence[str]) -> tuple[str, ...]:
    """Check VEX sources: `repo`, `oci`, or files that exist (made absolute)."""
    out = []
    for source in sources:
        if source in VEX_SOURCES:
            out.append(source)
            continue
        path = Path(source).expanduser().resolve()
        if not path.is_file():
            raise ConfigError(
                f"--vex {source} is neither a file nor one of {', '.join(VEX_SOURCES)}"
            )
        out.append(str(path))
    return tuple(out)


def ensure_db(runner: Runner, opts: Settings, *, env: Mapping[str, str] | None = None) -> str:
    """Make sure Trivy has a vulnerability DB; return the mirror it came from ('' if cached).

    Mirrors are tried in order, each in a download of its own; the first that works wins.
    Offline (or with `TRIVY_SKIP_DB_UPDATE` set) nothing is fetched: the scan uses the cache.
    """
    env = env or {}
    if opts.offline or env.get("TRIVY_SKIP_DB_UPDATE", "").lower() in _TRUE:
        return ""
    tried: list[tuple[str, str]] = []
    for repo in opts.db_repositories or ("",):
        result = runner.run(
            trivy.db_download(cache_dir=opts.cache_dir, db_repository=repo),
            capture=True,
            check=False,
        )
        if result.ok:
            return repo
        reason = trivy.trivy_reason(result.stderr)
        label = repo or env.get("TRIVY_DB_REPOSITORY") or "Trivy's default repositories"
        tried.append((label, reason))
        if repo and repo != opts.db_repositories[-1]:
            runner.say(f"note: vulnerability DB mirror {repo} failed ({reason}); trying the next")
    raise VulnDBUnavailable(no_db_message(tried, offline=False))


def trusted_db(
    cache_dir: str,
    opts: Settings,
    runner: Runner,
    *,
    env: Mapping[str, str],
    now: datetime | None = None,
) -> dict[str, Any] | None:
    """The metadata of the DB in `cache_dir`; refuse a test fixture or a DB past its age.

    `BUILDTASKS_ALLOW_TEST_DB=1` lets the project's own tests scan with their fixture DB.
    """
    meta = trivy.read_db_metadata(cache_dir)
    allow_fixture = env.get(ALLOW_TEST_DB, "").lower() in _TRUE
    problem = trivy.db_problem(
        meta,
        now=now or datetime.now(UTC),
        max_age=timedelta(days=opts.max_db_age_days),
        allow_fixture=allow_fixture,
    )
    if problem:
        where = f"{cache_dir}/db"
        if "fixture" in problem:
            fix = f"delete {where} and scan again to fetch the real DB"
        else:
            fix = (
                "fetch a current one (drop --offline and TRIVY_SKIP_DB_UPDATE, or name a "
                "mirror with --db-repository), or raise [tool.buildtasks.scan] max-db-age-days"
            )
        raise UntrustedVulnDB(f"the vulnerability DB in {where} {problem}: {fix}")
    if meta and meta.get(trivy.FIXTURE_KEY):
        runner.say(f"note: scanning with a test fixture DB ({ALLOW_TEST_DB} is set)")
    return meta


def skipped_by(opts: Settings, env: Mapping[str, str]) -> str:
    """What keeps the scan from fetching a DB, as the user set it (for the error lines)."""
    if not opts.offline and env.get("TRIVY_SKIP_DB_UPDATE", "").lower() in _TRUE:
        return "TRIVY_SKIP_DB_UPDATE"
    return "--offline"


def run_trivy(runner: Runner, command: Command, *, skipped: str = "--offline") -> None:
    """Run a scan or SBOM step; turn a missing DB into `VulnDBUnavailable`, an image that is
    not there into `NotFound`, other failures into one line.

    The scan step never downloads the DB (`ensure_db` did, or was told not to), so a DB
    failure here means the cache holds none.
    """
    result = runner.run(command, capture=True, check=False)
    if result.ok:
        return
    reason = trivy.trivy_reason(result.stderr)
    if trivy.db_unavailable(result.stderr):
        raise VulnDBUnavailable(no_db_message([], offline=True, skipped_by=skipped))
    if trivy.OLD_SCHEMA in result.stderr:
        raise VulnDBUnavailable(
            f"the vulnerability DB in Trivy's cache has an old schema (trivy: {reason}): "
            f"drop {skipped} so a current one is fetched, or fetch one with "
            "`trivy image --download-db-only` where the network allows"
        )
    if missing := trivy.image_missing(result.stderr):
        where = "the engine's image store" if "docker" in command.argv else "the registry"
        raise NotFound(f"{command.argv[-1]} is not in {where} ({missing}): {command.hint}")
    # Trivy's own reason: the hint about where the image is read from is for missing images.
    raise CommandFailed(command.argv, result.returncode, reason)


def _read(path: Path) -> dict[str, Any]:
    data = json.loads(path.read_text(encoding="utf-8"))
    return data if isinstance(data, dict) else {}


def _write(path: Path, data: Mapping[str, Any]) -> None:
    path.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")


def _sarif(
    runner: Runner, reports: Sequence[tuple[str, Path]], sarif_path: Path, category: str
) -> None:
    """Convert each platform's report to SARIF under its own category; one file holds all runs."""
    docs = []
    for platform, path in reports:
        out = sarif_path if len(reports) == 1 else path.with_suffix(".sarif")
        runner.run(trivy.to_sarif(path, out), capture=True)
        if runner.dry:
            continue
        label = f"{category}/{platforms.platform_slug(platform)}" if platform else category
        docs.append(reports_.with_category(_read(out), label))
        if out != sarif_path:
            out.unlink()
    if not runner.dry:
        _write(sarif_path, reports_.merge_sarif(docs))


def ignore_sources(
    config: Config, ignorefile: str | None, vex: Sequence[str], env: Mapping[str, str]
) -> tuple[str, ...]:
    """Every source of accepted risks the scan applies, as the gate line names them."""
    out = []
    if ignorefile:
        out.append(display_path(config, Path(ignorefile)))
    elif env.get("TRIVY_IGNOREFILE"):
        out.append(f"TRIVY_IGNOREFILE={env['TRIVY_IGNOREFILE']}")
    if env.get("TRIVY_IGNORE_POLICY"):
        out.append(f"TRIVY_IGNORE_POLICY={env['TRIVY_IGNORE_POLICY']}")
    out += [f"VEX {display_path(config, Path(v)) if v not in VEX_SOURCES else v}" for v in vex]
    return tuple(out)


def _decide(
    config: Config,
    what: str,
    ref: str,
    json_path: Path,
    sarif_path: Path,
    opts: Settings,
    runner: Runner,
    *,
    db_repository: str = "",
    ignored: tuple[str, ...] = (),
) -> ScanResult:
    if runner.dry:
        return ScanResult(what, ref, json_path, sarif_path, (), (), opts.severity)
    report = _read(json_path)
    every = tuple(findings(report))
    blocking = tuple(gate(report, opts.severity, opts.ignore_unfixed))
    return ScanResult(
        what,
        ref,
        json_path,
        sarif_path,
        every,
        blocking,
        opts.severity,
        opts.ignore_unfixed,
        db_repository,
        sarif_name=display_path(config, sarif_path),
        ignored=ignored,
    )


def _clear(out_dir: Path, *names: str) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    for pattern in names:
        for stale in out_dir.glob(pattern):
            stale.unlink(missing_ok=True)


def scan_image(
    config: Config,
    image: ImageSpec,
    ref: str,
    runner: Runner,
    *,
    options: ScanOptions = ScanOptions(),
    env: Mapping[str, str] | None = None,
    check: bool = True,
    platforms_built: Sequence[str] = (),
    now: datetime | None = None,
    inventory: bool = False,
) -> ScanResult:
    """Scan every platform of `ref` (by digest); write trivy.json and trivy.sarif; gate on all.

    A multi-platform image is scanned once per platform (`trivy.<os>-<arch>.json`), and the
    gate reads the merge of those reports: a finding on any platform fails it. With
    `inventory`, Trivy also lists every package, and those raw reports (under
    `.buildtasks/<image>/.inventory/`) are returned for `sbom.write_sbom(reports=...)`: the
    image is read once for the scan and the SBOMs. The reports users read and attest keep
    the findings only. Raises
    `GateFailed` (one line naming the worst findings) unless `check` is false,
    `VulnDBUnavailable` when no vulnerability DB can be had, and `UntrustedVulnDB` when the
    DB is a test fixture or older than `max-db-age-days`.
    """
    env = os.environ if env is None else env
    opts = settings(config, options)
    parsed = require_digest(ref, allow_image_id=opts.local)
    ignorefile = resolve_ignorefile(config, options)
    vex = resolve_vex(opts.vex)
    ignored = ignore_sources(config, ignorefile, vex, env)
    cache = opts.cache_dir or trivy.default_cache_dir(env)
    opts = replace(opts, cache_dir=cache)
    out_dir = config.artifacts_path(image)
    json_path, sarif_path = out_dir / "trivy.json", out_dir / "trivy.sarif"
    if not runner.dry:
        _clear(out_dir, "trivy.json", "trivy.sarif", "trivy.*-*.json")
    mirror = ensure_db(runner, opts, env=env)
    db = None if runner.dry else trusted_db(cache, opts, runner, env=env, now=now)
    work = out_dir / ".scan"
    cwd = platforms.empty_dir(work / "cwd") if not runner.dry else None
    targets = platforms.targets_of(
        str(parsed), runner, local=opts.local, platforms=platforms_built, workdir=work / "image"
    )
    reports: list[tuple[str, Path]] = []
    raw: list[reports_.PackageReport] = []
    if inventory and not runner.dry:
        platforms.empty_dir(out_dir / INVENTORY_DIR)
    for target in targets:
        path = out_dir / f"trivy.{target.slug}.json" if len(targets) > 1 else json_path
        written = out_dir / INVENTORY_DIR / f"{target.slug or 'image'}.json" if inventory else path
        command = trivy.image_scan(
            target.ref,
            written,
            cache_dir=cache,
            offline=opts.offline,
            ignorefile=ignorefile,
            vex=vex,
            local=opts.local and not target.layout,
            layout=target.layout,
            cwd=cwd,
            inventory=inventory,
        )
        run_trivy(runner, command, skipped=skipped_by(opts, env))
        if inventory:
            raw.append(reports_.PackageReport(target.platform, target.digest, written))
            if not runner.dry:
                _write(path, reports_.without_packages(_read(written)))
        reports.append((target.platform if len(targets) > 1 else "", path))
    if not runner.dry:
        merged = reports_.merge_reports([(p, _read(f)) for p, f in reports], name=str(parsed))
        _write(
            json_path,
            reports_.stamp_report(
                merged,
                reference=str(parsed),
                digest=parsed.digest,
                platforms={t.platform: t.digest for t in targets if t.platform},
                db=db,
                ignore_sources=ignored,
            ),
        )
    _sarif(runner, reports, sarif_path, reports_.image_category(image.key))
    runner.run(trivy.to_table(json_path, opts.severity))
    result = _decide(
        config,
        image.key,
        ref,
        json_path,
        sarif_path,
        opts,
        runner,
        db_repository=mirror,
        ignored=ignored,
    )
    if not runner.dry:
        _write(
            json_path,
            reports_.stamp_gate(
                _read(json_path),
                passed=result.passed,
                severity=opts.severity,
                ignore_unfixed=opts.ignore_unfixed,
            ),
        )
        shutil.rmtree(work, ignore_errors=True)
    _report(result, runner, check=check)
    return replace(result, inventory=tuple(raw))


def scan_dockerfile(
    config: Config,
    image: ImageSpec,
    runner: Runner,
    *,
    options: ScanOptions = ScanOptions(),
    check: bool = True,
) -> ScanResult:
    """Check `image`'s Dockerfile with Trivy's embedded checks; gate at the same severities."""
    opts = settings(config, options)
    dockerfile = config.dockerfile_path(image)
    out_dir = config.artifacts_path(image)
    json_path = out_dir / "trivy-config.json"
    sarif_path = out_dir / "trivy-config.sarif"
    if not runner.dry:
        out_dir.mkdir(parents=True, exist_ok=True)
        for stale in (json_path, sarif_path):
            stale.unlink(missing_ok=True)
    work = out_dir / ".scan-config"
    command = trivy.config_scan(
        dockerfile,
        json_path,
        cache_dir=opts.cache_dir,
        ignorefile=resolve_ignorefile(config, options),
        cwd=None if runner.dry else platforms.empty_dir(work),
    )
    run_trivy(runner, command)
    _sarif(runner, [("", json_path)], sarif_path, reports_.dockerfile_category(image.key))
    if not runner.dry:
        shutil.rmtree(work, ignore_errors=True)
    runner.run(trivy.to_table(json_path, opts.severity))
    what = f"{image.key} Dockerfile"
    result = _decide(config, what, str(dockerfile), json_path, sarif_path, opts, runner)
    _report(result, runner, check=check)
    return result


def _report(result: ScanResult, runner: Runner, *, check: bool) -> None:
    """Raise `GateFailed` for a crossed gate when `check`; otherwise say how the gate went."""
    if runner.dry:
        return
    if check and not result.passed:
        raise GateFailed(result.message)
    runner.say(result.message)
