"""`invoke secrets.*`: find committed secrets with gitleaks, and baseline the false positives."""

from __future__ import annotations

from pathlib import Path

from invoke import task
from invoke.context import Context

from buildtasks.secrets import scan_secrets, write_baseline
from buildtasks.tasks.adapter import errors_to_exit, load_config, runner_for


def _root(c: Context, path: str) -> Path:
    return Path(path).absolute() if path else load_config(c).root


@task(
    help={
        "path": "Repository to scan (default: the project root)",
        "no-history": "Scan only the files on disk, not the git history",
        "log-opts": "git log options choosing the commits to scan, e.g. 'origin/main..HEAD'",
        "report": "Report to write, .sarif or .json (default: .buildtasks/gitleaks.sarif)",
    }
)
@errors_to_exit
def scan(
    c: Context, path: str = "", no_history: bool = False, log_opts: str = "", report: str = ""
) -> None:
    """Scan the repository and its whole git history for secrets; fail on any finding."""
    scan_secrets(
        _root(c, path),
        runner_for(c),
        history=not no_history,
        log_opts=log_opts,
        report=Path(report).absolute() if report else None,
    )


@task(help={"path": "Repository to baseline (default: the project root)"})
@errors_to_exit
def baseline(c: Context, path: str = "") -> None:
    """Record the current findings in .gitleaks-baseline.json so scans stop reporting them."""
    write_baseline(_root(c, path), runner_for(c))
