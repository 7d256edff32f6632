"""Secret scanning: the gitleaks plans, report parsing, and real scans of scratch repositories.

The fake secret is built at run time, so no literal that looks like a token sits in this
repository; it matches gitleaks' default `github-pat` rule. The last tests scan this project
itself, history and working tree, which must be clean.
"""

from __future__ import annotations

import io
import json
import os
import random
import re
import shutil
import string
import subprocess
import tomllib
from pathlib import Path

import pytest
from invoke import MockContext
from invoke.exceptions import Exit

from buildtasks.errors import CommandFailed, ConfigError, GateFailed
from buildtasks.runner import Runner
from buildtasks.secrets import (
    LEAKS_EXIT_CODE,
    baseline_commands,
    check_baseline,
    count_findings,
    error_line,
    finding_lines,
    gitleaks_command,
    merge_findings,
    report_format,
    scan_secrets,
    write_baseline,
)
from buildtasks.tasks import secrets as secrets_tasks

COMMON = ("--no-banner", "--no-color", "--redact", "--exit-code", str(LEAKS_EXIT_CODE))
REPORT = ("--report-format", "sarif", "--report-path", ".buildtasks/gitleaks.sarif")

# --------------------------------------------------------------------------- plans


@pytest.mark.parametrize(
    ("kwargs", "expected"),
    [
        pytest.param(
            {},
            ("gitleaks", "git", *COMMON, "--config", ".gitleaks.toml", *REPORT, "."),
            id="history-by-default",
        ),
        pytest.param(
            {"history": False},
            ("gitleaks", "dir", *COMMON, "--config", ".gitleaks.toml", *REPORT, "."),
            id="working-tree",
        ),
        pytest.param(
            {"baseline": ".gitleaks-baseline.json"},
            (
                "gitleaks",
                "git",
                *COMMON,
                "--config",
                ".gitleaks.toml",
                "--baseline-path",
                ".gitleaks-baseline.json",
                *REPORT,
                ".",
            ),
            id="baseline",
        ),
        pytest.param(
            {"log_opts": "--all origin/main..HEAD", "config": None},
            ("gitleaks", "git", *COMMON, *REPORT, "--log-opts=--all origin/main..HEAD", "."),
            id="log-opts-as-one-argument-no-config",
        ),
        pytest.param(
            {"report": "out/leaks.json", "config": None, "source": "sub dir"},
            (
                "gitleaks",
                "git",
                *COMMON,
                "--report-format",
                "json",
                "--report-path",
                "out/leaks.json",
                "sub dir",
            ),
            id="json-report-and-source",
        ),
    ],
)
def test_gitleaks_command(kwargs, expected):
    assert gitleaks_command(**kwargs).argv == expected


def test_gitleaks_command_runs_in_the_repository():
    assert gitleaks_command(cwd="/repo").cwd == "/repo"


def test_log_opts_need_the_history_scan():
    with pytest.raises(ConfigError, match="--log-opts"):
        gitleaks_command(history=False, log_opts="HEAD~3..HEAD")


@pytest.mark.parametrize(
    ("report", "fmt"),
    [("a/gitleaks.sarif", "sarif"), ("leaks.JSON", "json")],
    ids=["sarif", "json-any-case"],
)
def test_report_format_from_suffix(report, fmt):
    assert report_format(report) == fmt


def test_unknown_report_suffix_is_a_config_error():
    with pytest.raises(ConfigError, match=r"'leaks\.csv'.*\.sarif, \.json"):
        report_format("leaks.csv")


def test_baseline_is_history_plus_working_tree_without_a_baseline():
    history, tree = baseline_commands(reports=("h.json", "t.json"), cwd="/repo")
    assert history.argv == (
        "gitleaks",
        "git",
        *COMMON,
        "--config",
        ".gitleaks.toml",
        "--report-format",
        "json",
        "--report-path",
        "h.json",
        ".",
    )
    assert tree.argv[:2] == ("gitleaks", "dir") and tree.argv[-2:] == ("t.json", ".")
    assert "--baseline-path" not in history.argv + tree.argv


# --------------------------------------------------------------------------- reports


@pytest.mark.parametrize(
    ("text", "fmt", "count"),
    [
        ('{"runs": [{"results": [{}, {}]}, {"results": [{}]}]}', "sarif", 3),
        ('{"runs": [{"tool": {}}]}', "sarif", 0),
        ('[{"RuleID": "a"}]', "json", 1),
        ("[]", "json", 0),
    ],
    ids=["sarif-two-runs", "sarif-empty", "json-one", "json-empty"],
)
def test_count_findings(text, fmt, count):
    assert count_findings(text, fmt) == count


@pytest.mark.parametrize(
    "text",
    ["{}", "[1]", '[{"File": "x"}]', "not json"],
    ids=["object", "numbers", "no-rule-id", "not-json"],
)
def test_bad_baseline_is_a_config_error(text):
    with pytest.raises(ConfigError, match=r"\.gitleaks-baseline\.json .*secrets\.baseline"):
        check_baseline(text)


SARIF_RESULT = {
    "ruleId": "github-pat",
    "locations": [
        {"physicalLocation": {"artifactLocation": {"uri": "a/b.txt"}, "region": {"startLine": 3}}}
    ],
    "partialFingerprints": {"commitSha": "42244ecb2f009e4c331ffaae64e731010e0dd7e1"},
}


@pytest.mark.parametrize(
    ("report", "fmt", "lines"),
    [
        (
            {"runs": [{"results": [SARIF_RESULT]}]},
            "sarif",
            ["github-pat in a/b.txt:3 (commit 42244ecb2f00)"],
        ),
        (
            [{"RuleID": "generic-api-key", "File": "notes.txt", "StartLine": 1, "Commit": ""}],
            "json",
            ["generic-api-key in notes.txt:1"],
        ),
        ({"runs": [{"results": None}]}, "sarif", []),
    ],
    ids=["sarif-history", "json-working-tree", "sarif-empty"],
)
def test_finding_lines_name_rule_file_line_and_commit(report, fmt, lines):
    assert finding_lines(json.dumps(report), fmt) == lines


def test_merge_findings_drops_exact_repeats_and_keeps_order():
    a, b = {"RuleID": "a", "Commit": "1"}, {"RuleID": "b", "Commit": ""}
    assert merge_findings([json.dumps([a, b]), json.dumps([b])]) == [a, b]


@pytest.mark.parametrize(
    ("stderr", "line"),
    [
        (
            "4:13AM INF loading\n4:13AM FTL unable to load gitleaks config, err: bad\n",
            "unable to load gitleaks config, err: bad",
        ),
        (
            "4:13AM ERR [git] fatal: bad revision 'x'\n4:13AM ERR failed to scan\n"
            "4:13AM WRN partial scan completed\n",
            "[git] fatal: bad revision 'x'",
        ),
        (
            "panic: regexp: Compile(`([`)\n\ngoroutine 1 [running]:\n",
            "panic: regexp: Compile(`([`)",
        ),
        ("", ""),
    ],
    ids=["fatal", "first-error", "panic", "silent"],
)
def test_error_line(stderr, line):
    assert error_line(stderr) == line


# --------------------------------------------------------------------------- real scans


def fake_token() -> str:
    """A GitHub personal access token look-alike, made here so it never sits in a file."""
    rng = random.Random(8)
    return "ghp_" + "".join(rng.choice(string.ascii_letters + string.digits) for _ in range(36))


GIT_ENV = {
    **os.environ,
    "GIT_CONFIG_GLOBAL": os.devnull,
    "GIT_CONFIG_NOSYSTEM": "1",
    "GIT_AUTHOR_NAME": "Test",
    "GIT_AUTHOR_EMAIL": "test@example.com",
    "GIT_COMMITTER_NAME": "Test",
    "GIT_COMMITTER_EMAIL": "test@example.com",
}


def git(repo: Path, *args: str) -> None:
    subprocess.run(("git", *args), cwd=repo, env=GIT_ENV, check=True, capture_output=True)


def commit_all(repo: Path, message: str) -> None:
    git(repo, "add", "--all")
    git(repo, "commit", "--quiet", "--message", message)


@pytest.fixture
def leaky_repo(tmp_path: Path) -> Path:
    """A repository whose history holds a secret that a later commit deleted."""
    repo = tmp_path / "repo"
    repo.mkdir()
    git(repo, "init", "--quiet")
    (repo / "README").write_text("a service\n")
    commit_all(repo, "start")
    (repo / "settings.py").write_text(f'GITHUB_TOKEN = "{fake_token()}"\n')
    commit_all(repo, "configure the client")
    (repo / "settings.py").write_text('GITHUB_TOKEN = os.environ["GITHUB_TOKEN"]\n')
    commit_all(repo, "read the token from the environment")
    return repo


@pytest.fixture
def runner() -> Runner:
    return Runner(out=io.StringIO())


def test_history_scan_finds_a_deleted_secret_and_writes_sarif(leaky_repo, runner):
    with pytest.raises(GateFailed) as err:
        scan_secrets(leaky_repo, runner)
    sarif = (leaky_repo / ".buildtasks/gitleaks.sarif").read_text()
    (result,) = json.loads(sarif)["runs"][0]["results"]
    commit = result["partialFingerprints"]["commitSha"][:12]
    # The line says where (rule, file, line, commit), never what: the report is redacted.
    assert str(err.value) == (
        f"gitleaks found 1 secret(s) (github-pat in settings.py:1 (commit {commit})): see "
        ".buildtasks/gitleaks.sarif; add false positives to .gitleaks-baseline.json with "
        "`uv run invoke secrets.baseline`"
    )
    assert fake_token() not in str(err.value)
    assert result["ruleId"] == "github-pat"
    assert result["locations"][0]["physicalLocation"]["artifactLocation"]["uri"] == "settings.py"
    assert fake_token() not in sarif, "the report must be redacted"


def test_findings_are_listed_before_the_error(leaky_repo, runner):
    with pytest.raises(GateFailed):
        scan_secrets(leaky_repo, runner)
    assert re.search(
        r"^  leak: github-pat in settings\.py:1 \(commit [0-9a-f]{12}\)$",
        runner.out.getvalue(),
        re.M,
    )


def test_working_tree_scan_passes_once_the_secret_is_deleted(leaky_repo, runner):
    scan_secrets(leaky_repo, runner, history=False)
    assert "no secrets found in the working tree" in runner.out.getvalue()


def test_working_tree_scan_finds_an_uncommitted_secret(leaky_repo, runner, tmp_path):
    (leaky_repo / "notes.txt").write_text(f"token: {fake_token()}\n")
    report = tmp_path / "tree.json"
    with pytest.raises(
        GateFailed, match=rf"found 1 secret\(s\) \(github-pat in notes\.txt:1\): see {report}"
    ):
        scan_secrets(leaky_repo, runner, history=False, report=report)
    assert [f["File"] for f in json.loads(report.read_text())] == ["notes.txt"]


def test_log_opts_limit_the_history(leaky_repo, runner):
    scan_secrets(leaky_repo, runner, log_opts="HEAD~1..HEAD")
    with pytest.raises(GateFailed):
        scan_secrets(leaky_repo, runner, log_opts="HEAD~2..HEAD")


def test_baseline_silences_known_findings_but_not_new_ones(leaky_repo, runner):
    assert write_baseline(leaky_repo, runner) == 1
    baseline = (leaky_repo / ".gitleaks-baseline.json").read_text()
    assert fake_token() not in baseline, "the baseline is committed, so it must be redacted"
    assert not list((leaky_repo / ".buildtasks").glob("gitleaks-*.json"))

    commit_all(leaky_repo, "baseline the old token")
    scan_secrets(leaky_repo, runner)
    assert "no secrets found in the history beyond .gitleaks-baseline.json" in (
        runner.out.getvalue()
    )

    (leaky_repo / "deploy.sh").write_text(f"export GH_TOKEN={fake_token()}\n")
    commit_all(leaky_repo, "deploy with the token again")
    with pytest.raises(GateFailed, match=r"found 1 secret\(s\)"):
        scan_secrets(leaky_repo, runner)


def test_baseline_covers_the_working_tree_too(leaky_repo, runner):
    (leaky_repo / "notes.txt").write_text(f"token: {fake_token()}\n")
    assert write_baseline(leaky_repo, runner) == 2
    scan_secrets(leaky_repo, runner, history=False)
    scan_secrets(leaky_repo, runner)


def test_malformed_baseline_is_refused_instead_of_ignored(leaky_repo, runner):
    (leaky_repo / ".gitleaks-baseline.json").write_text("{}")
    with pytest.raises(ConfigError, match="not a gitleaks JSON report"):
        scan_secrets(leaky_repo, runner)


def test_bad_config_is_a_crash_not_a_finding(leaky_repo, runner):
    (leaky_repo / ".gitleaks.toml").write_text("[extend\n")
    with pytest.raises(CommandFailed) as err:
        scan_secrets(leaky_repo, runner)
    assert err.value.returncode == 1
    assert "unable to load gitleaks config" in str(err.value)


def test_not_a_repository_is_a_crash(tmp_path, runner):
    with pytest.raises(CommandFailed, match="not a git repository"):
        scan_secrets(tmp_path, runner, report=tmp_path / "out.sarif")


def test_dry_run_prints_the_command_and_writes_nothing(leaky_repo):
    out = io.StringIO()
    scan_secrets(leaky_repo, Runner(dry=True, out=out))
    assert out.getvalue() == (
        f"+ gitleaks git {' '.join(COMMON)} --report-format sarif "
        "--report-path .buildtasks/gitleaks.sarif .\n"
    )
    assert not (leaky_repo / ".buildtasks").exists()


def test_scan_task_exits_with_the_one_line_error(leaky_repo):
    with pytest.raises(Exit) as err:
        secrets_tasks.scan(MockContext(), path=str(leaky_repo))
    assert err.value.code == 1
    assert str(err.value.message).startswith("error: gitleaks found 1 secret(s)")


def test_scan_task_no_history_passes(leaky_repo):
    secrets_tasks.scan(MockContext(), path=str(leaky_repo), no_history=True)


# --------------------------------------------------------------------------- this project's config


@pytest.fixture
def locked_repo(tmp_path: Path, repo_root: Path) -> Path:
    """A repository with this project's .gitleaks.toml and uv.lock (package hashes only)."""
    repo = tmp_path / "repo"
    repo.mkdir()
    git(repo, "init", "--quiet")
    shutil.copy(repo_root / ".gitleaks.toml", repo / ".gitleaks.toml")
    shutil.copy(repo_root / "uv.lock", repo / "uv.lock")
    commit_all(repo, "lock the dependencies")
    return repo


def test_a_lock_file_of_package_hashes_passes_with_the_project_config(locked_repo, runner):
    scan_secrets(locked_repo, runner)
    scan_secrets(locked_repo, runner, history=False)
    assert "no secrets found in the working tree" in runner.out.getvalue()


@pytest.mark.parametrize(
    ("path", "line"),
    [
        ("apps/x/.buildtasks/token.txt", "{token}\n"),
        ("apps/y/uv.lock", 'source = {{ registry = "https://{token}@pypi.example.com/simple" }}\n'),
        ("uv.lock", 'source = {{ registry = "https://{token}@pypi.example.com/simple" }}\n'),
        (".buildtasks/token.txt", "{token}\n"),
    ],
    ids=["nested-buildtasks", "nested-lock-file", "root-lock-file", "root-buildtasks"],
)
def test_a_secret_is_found_under_any_path_with_the_project_config(locked_repo, runner, path, line):
    file = locked_repo / path
    file.parent.mkdir(parents=True, exist_ok=True)
    with file.open("a", encoding="utf-8") as out:
        out.write(line.format(token=fake_token()))
    git(locked_repo, "add", "--force", path)
    git(locked_repo, "commit", "--quiet", "--message", "add a token")
    for history in (True, False):
        with pytest.raises(GateFailed, match=r"gitleaks found 1 secret\(s\)"):
            scan_secrets(locked_repo, runner, history=history)
    assert f"leak: github-pat in {path}:" in runner.out.getvalue()


def test_the_project_allowlists_only_paths_anchored_at_the_root(repo_root):
    config = tomllib.loads((repo_root / ".gitleaks.toml").read_text(encoding="utf-8"))
    tables = [config.get("allowlist", {}), *config.get("allowlists", [])]
    tables += [table for rule in config.get("rules", []) for table in rule.get("allowlists", [])]
    for path in (path for table in tables for path in table.get("paths", [])):
        # `^a|b` and `(?:^|/)a` also match below the root: one anchored entry per path.
        assert path.startswith("^") and "|" not in path, path


@pytest.mark.parametrize("history", [True, False], ids=["history", "working-tree"])
def test_this_project_has_no_secrets(repo_root, tmp_path, history):
    scan_secrets(
        repo_root, Runner(out=io.StringIO()), history=history, report=tmp_path / "report.sarif"
    )
