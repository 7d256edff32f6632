"""Secret scanning with gitleaks: plans, report parsing, and the scan and baseline services.

The default scan covers the whole git history (`gitleaks git`), so a secret that was committed
and later deleted is still found; `history=False` scans the files on disk (`gitleaks dir`)
and `log_opts` limits the history to a range such as `origin/main..HEAD`.

Findings listed in the baseline file are not reported. `write_baseline` records every current
finding of both the history and the working tree there, so the file silences both scan modes.
Reports are always redacted: the baseline is committed and must not carry the secrets itself.

gitleaks exits with the code given by `--exit-code` when it finds leaks, but its own fatal
errors (bad config, unwritable report, not a git repository, bad `--log-opts`) exit 1 and a
broken rule regex panics with 2. So the leak code is set to a value gitleaks never uses for
itself, `LEAKS_EXIT_CODE`, and anything else non-zero is a crash, not a finding.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from pathlib import Path

from buildtasks.command import Command
from buildtasks.errors import CommandFailed, ConfigError, GateFailed
from buildtasks.runner import Runner

#: The project's gitleaks configuration (extends the default rules).
CONFIG_FILE = ".gitleaks.toml"
#: Known findings that are not reported; written by `uv run invoke secrets.baseline`.
BASELINE_FILE = ".gitleaks-baseline.json"
#: Where the scan writes its report unless told otherwise.
REPORT_FILE = ".buildtasks/gitleaks.sarif"
#: gitleaks' exit code when it finds leaks; its own failures exit 1 (fatal) or 2 (panic).
LEAKS_EXIT_CODE = 99
#: Report formats by file suffix.
REPORT_FORMATS = {".sarif": "sarif", ".json": "json"}

_BASELINE_HINT = f"add false positives to {BASELINE_FILE} with `uv run invoke secrets.baseline`"
_CRASH_HINT = "check .gitleaks.toml, --log-opts and that the path is a git repository"
_LOG_PREFIX = re.compile(r"^\S+\s+(?:TRC|DBG|INF|WRN|ERR|FTL)\s+")


# --------------------------------------------------------------------------- plans


def report_format(report: str) -> str:
    """Return gitleaks' `--report-format` for a report path, chosen by its suffix."""
    suffix = Path(report).suffix.lower()
    try:
        return REPORT_FORMATS[suffix]
    except KeyError:
        raise ConfigError(
            f"cannot tell the report format of {report!r}: "
            f"name it with one of {', '.join(REPORT_FORMATS)}"
        ) from None


def gitleaks_command(
    source: str = ".",
    *,
    history: bool = True,
    log_opts: str = "",
    config: str | None = CONFIG_FILE,
    baseline: str | None = None,
    report: str = REPORT_FILE,
    cwd: str | None = None,
) -> Command:
    """The gitleaks scan of `source`: its git history, or with `history=False` its files.

    Paths are passed as given; the service makes them relative to `cwd` (the repository) so
    that findings name repository paths and the baseline stays valid on every checkout.
    """
    if log_opts and not history:
        raise ConfigError("--log-opts selects commits, so it needs the history scan: drop one")
    argv = ["gitleaks", "git" if history else "dir", "--no-banner", "--no-color", "--redact"]
    argv += ["--exit-code", str(LEAKS_EXIT_CODE)]
    if config:
        argv += ["--config", config]
    if baseline:
        argv += ["--baseline-path", baseline]
    argv += ["--report-format", report_format(report), "--report-path", report]
    if log_opts:
        # One argument, so options such as `--all` reach git instead of gitleaks' parser.
        argv.append(f"--log-opts={log_opts}")
    argv.append(source)
    return Command(tuple(argv), cwd=cwd, hint=_CRASH_HINT)


def baseline_commands(
    *, config: str | None = CONFIG_FILE, reports: tuple[str, str], cwd: str | None = None
) -> tuple[Command, Command]:
    """The two scans a baseline is made of: the full history and the working tree (JSON)."""
    history_report, tree_report = reports
    return (
        gitleaks_command(config=config, report=history_report, cwd=cwd),
        gitleaks_command(history=False, config=config, report=tree_report, cwd=cwd),
    )


# --------------------------------------------------------------------------- reports


def count_findings(text: str, fmt: str) -> int:
    """Number of findings in a gitleaks report (`fmt` is "sarif" or "json")."""
    data = json.loads(text)
    if fmt == "sarif":
        return sum(len(run.get("results") or ()) for run in data.get("runs", ()))
    return len(data)


def finding_lines(text: str, fmt: str) -> list[str]:
    """One line per finding of a gitleaks report: rule, file and line, and the commit if any.

    The report is redacted, so the lines name where a secret is, never the secret.
    """
    data = json.loads(text)
    if fmt == "sarif":
        findings = []
        for run in data.get("runs", ()):
            for result in run.get("results") or ():
                location = (result.get("locations") or [{}])[0].get("physicalLocation", {})
                findings.append(
                    (
                        result.get("ruleId", "?"),
                        location.get("artifactLocation", {}).get("uri", "?"),
                        location.get("region", {}).get("startLine", "?"),
                        (result.get("partialFingerprints") or {}).get("commitSha", ""),
                    )
                )
    else:
        findings = [
            (
                item.get("RuleID", "?"),
                item.get("File", "?"),
                item.get("StartLine", "?"),
                item.get("Commit", ""),
            )
            for item in data
        ]
    return [
        f"{rule} in {path}:{line}" + (f" (commit {commit[:12]})" if commit else "")
        for rule, path, line, commit in findings
    ]


def check_baseline(text: str, name: str = BASELINE_FILE) -> list[dict[str, object]]:
    """Return the findings of a baseline file, or fail: gitleaks itself only logs and ignores it."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(
            f"{name} is not JSON ({exc}): regenerate it with `uv run invoke secrets.baseline`"
        ) from None
    if not isinstance(data, list) or not all(
        isinstance(item, dict) and "RuleID" in item for item in data
    ):
        raise ConfigError(
            f"{name} is not a gitleaks JSON report: "
            "regenerate it with `uv run invoke secrets.baseline`"
        )
    return data


def merge_findings(reports: Sequence[str]) -> list[dict[str, object]]:
    """Concatenate JSON reports into one baseline, dropping exact repeats."""
    merged: list[dict[str, object]] = []
    seen: set[str] = set()
    for text in reports:
        for item in json.loads(text):
            key = json.dumps(item, sort_keys=True)
            if key not in seen:
                seen.add(key)
                merged.append(item)
    return merged


def error_line(stderr: str) -> str:
    """The line of gitleaks' log that says why it failed: fatal or panic first, then errors."""
    lines = [line.strip() for line in stderr.splitlines() if line.strip()]
    for line in lines:
        if " FTL " in line or line.startswith("panic:"):
            return _LOG_PREFIX.sub("", line)
    for line in lines:
        if " ERR " in line:
            return _LOG_PREFIX.sub("", line)
    return _LOG_PREFIX.sub("", lines[-1]) if lines else ""


# --------------------------------------------------------------------------- services


def _shown(path: Path, root: Path) -> str:
    """`path` relative to `root` when it lies inside it, absolute otherwise."""
    try:
        return str(path.relative_to(root))
    except ValueError:
        return str(path)


def _existing(path: Path | None, default: Path) -> Path | None:
    if path is not None:
        if not path.is_file():
            raise ConfigError(f"{path} does not exist")
        return path
    return default if default.is_file() else None


def _run(runner: Runner, command: Command) -> int:
    """Run gitleaks, relay its log, and return 0 or `LEAKS_EXIT_CODE`; anything else raises."""
    result = runner.run(command, capture=True, check=False)
    for line in (result.stdout + result.stderr).splitlines():
        if line.strip():
            runner.say(f"  {_LOG_PREFIX.sub('', line.rstrip())}")
    if result.returncode in (0, LEAKS_EXIT_CODE):
        return result.returncode
    reason = error_line(result.stderr)
    raise CommandFailed(
        command.argv, result.returncode, f"{reason}; {_CRASH_HINT}" if reason else _CRASH_HINT
    )


def scan_secrets(
    root: Path,
    runner: Runner,
    *,
    history: bool = True,
    log_opts: str = "",
    report: Path | None = None,
    config: Path | None = None,
    baseline: Path | None = None,
) -> Path:
    """Scan the repository at `root` for secrets; return the report, or raise `GateFailed`.

    `config` and `baseline` default to `.gitleaks.toml` and `.gitleaks-baseline.json` in
    `root`, each used only when it exists; `report` defaults to `.buildtasks/gitleaks.sarif`.
    """
    root = root.resolve()
    report = (report or root / REPORT_FILE).absolute()
    config = _existing(config, root / CONFIG_FILE)
    baseline = _existing(baseline, root / BASELINE_FILE)
    if baseline is not None:
        check_baseline(baseline.read_text(encoding="utf-8"), _shown(baseline, root))
    command = gitleaks_command(
        history=history,
        log_opts=log_opts,
        config=_shown(config, root) if config else None,
        baseline=_shown(baseline, root) if baseline else None,
        report=_shown(report, root),
        cwd=str(root),
    )
    if not runner.dry:
        report.parent.mkdir(parents=True, exist_ok=True)
        report.unlink(missing_ok=True)
    if _run(runner, command) == 0:
        if not runner.dry:
            scope = "the history" if history else "the working tree"
            extra = f" beyond {_shown(baseline, root)}" if baseline else ""
            runner.say(f"gitleaks: no secrets found in {scope}{extra}")
        return report
    text = report.read_text(encoding="utf-8")
    lines = finding_lines(text, report_format(report.name))
    for line in lines:
        runner.say(f"  leak: {line}")
    found = count_findings(text, report_format(report.name))
    where = (
        f" ({lines[0]}{f' and {len(lines) - 1} more' if len(lines) > 1 else ''})" if lines else ""
    )
    raise GateFailed(
        f"gitleaks found {found} secret(s){where}: see {_shown(report, root)}; {_BASELINE_HINT}"
    )


def write_baseline(
    root: Path,
    runner: Runner,
    *,
    baseline: Path | None = None,
    config: Path | None = None,
) -> int:
    """Record every current finding (history and working tree) in the baseline; return how many.

    The findings are redacted, so the file can be committed. Review it first: every entry
    is a secret the scan will stop reporting.
    """
    root = root.resolve()
    baseline = (baseline or root / BASELINE_FILE).absolute()
    config = _existing(config, root / CONFIG_FILE)
    scratch = (root / ".buildtasks/gitleaks-history.json", root / ".buildtasks/gitleaks-tree.json")
    commands = baseline_commands(
        config=_shown(config, root) if config else None,
        reports=(_shown(scratch[0], root), _shown(scratch[1], root)),
        cwd=str(root),
    )
    if not runner.dry:
        scratch[0].parent.mkdir(parents=True, exist_ok=True)
        for path in scratch:
            path.unlink(missing_ok=True)
    for command in commands:
        _run(runner, command)
    if runner.dry:
        return 0
    try:
        findings = merge_findings([path.read_text(encoding="utf-8") for path in scratch])
    finally:
        for path in scratch:
            path.unlink(missing_ok=True)
    baseline.write_text(json.dumps(findings, indent=1) + "\n", encoding="utf-8")
    runner.say(f"wrote {len(findings)} finding(s) to {_shown(baseline, root)}")
    return len(findings)
