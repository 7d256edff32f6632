"""Tests for building the metadata context from GitHub Actions or a local git checkout."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

import pytest

from buildtasks.errors import ConfigError, ToolNotFound
from buildtasks.gitcontext import (
    GitResult,
    context_from_git,
    context_from_github,
    load_context,
    parse_remote_url,
    run_git,
)
from buildtasks.metadata import compute, parse_flavor, parse_tag_rules
from buildtasks.tagging import DEFAULT_FLAVOR, DEFAULT_TAG_RULES

COMMIT_DATE = "2024-05-06T07:08:09+00:00"


@pytest.fixture(autouse=True)
def isolated_git(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Keep the user's git config out and make commits reproducible."""
    global_config = tmp_path / "gitconfig"
    global_config.write_text("")
    monkeypatch.setenv("GIT_CONFIG_GLOBAL", str(global_config))
    monkeypatch.setenv("GIT_CONFIG_NOSYSTEM", "1")
    monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(tmp_path))
    for role in ("AUTHOR", "COMMITTER"):
        monkeypatch.setenv(f"GIT_{role}_NAME", "Test")
        monkeypatch.setenv(f"GIT_{role}_EMAIL", "test@example.com")
        monkeypatch.setenv(f"GIT_{role}_DATE", COMMIT_DATE)


def git(repo: Path, *args: str) -> str:
    done = subprocess.run(["git", *args], cwd=repo, check=True, capture_output=True, text=True)
    return done.stdout.strip()


def new_repo(tmp_path: Path, *, commits: int = 1, branch: str = "main") -> Path:
    repo = tmp_path / "repo"
    repo.mkdir()
    git(repo, "init", "-q", "-b", branch)
    for index in range(commits):
        git(repo, "commit", "-q", "--allow-empty", "-m", f"commit {index}")
    return repo


# ── local git ───────────────────────────────────────────────────────────────


def test_branch_checkout(tmp_path: Path) -> None:
    repo = new_repo(tmp_path)
    ctx = context_from_git(repo)
    assert ctx.event_name == "push"
    assert ctx.ref == "refs/heads/main"
    assert ctx.sha == git(repo, "rev-parse", "HEAD")
    assert len(ctx.sha) == 40
    assert ctx.default_branch == "main"
    assert ctx.repository == ""
    assert ctx.commit_date == datetime(2024, 5, 6, 7, 8, 9, tzinfo=UTC)


def test_tag_at_head_wins_over_branch(tmp_path: Path) -> None:
    repo = new_repo(tmp_path)
    git(repo, "tag", "v1.2.0")
    git(repo, "tag", "-a", "v1.10.0", "-m", "release")
    ctx = context_from_git(repo)
    assert ctx.ref == "refs/tags/v1.10.0"


def test_tag_on_an_older_commit_is_ignored(tmp_path: Path) -> None:
    repo = new_repo(tmp_path, commits=1)
    git(repo, "tag", "v1.0.0")
    git(repo, "commit", "-q", "--allow-empty", "-m", "later")
    assert context_from_git(repo).ref == "refs/heads/main"


def test_detached_head(tmp_path: Path) -> None:
    repo = new_repo(tmp_path, commits=2)
    git(repo, "checkout", "-q", "--detach", "HEAD~1")
    ctx = context_from_git(repo)
    assert ctx.ref == ""
    assert ctx.sha == git(repo, "rev-parse", "HEAD")


def test_detached_head_on_a_tag(tmp_path: Path) -> None:
    repo = new_repo(tmp_path)
    git(repo, "tag", "v2.0.0")
    git(repo, "checkout", "-q", "v2.0.0")
    assert context_from_git(repo).ref == "refs/tags/v2.0.0"


def test_repository_without_commits(tmp_path: Path) -> None:
    repo = new_repo(tmp_path, commits=0, branch="trunk")
    ctx = context_from_git(repo)
    assert ctx.sha == ""
    assert ctx.ref == "refs/heads/trunk"
    assert ctx.commit_date is None


def test_remote_and_default_branch_from_origin(tmp_path: Path) -> None:
    repo = new_repo(tmp_path)
    git(repo, "remote", "add", "origin", "git@github.com:Acme/API.git")
    git(repo, "symbolic-ref", "refs/remotes/origin/HEAD", "refs/remotes/origin/develop")
    ctx = context_from_git(repo)
    assert (ctx.server_url, ctx.repository) == ("https://github.com", "Acme/API")
    assert ctx.default_branch == "develop"


def test_default_branch_from_init_config(tmp_path: Path) -> None:
    repo = new_repo(tmp_path)
    git(repo, "config", "init.defaultBranch", "trunk")
    assert context_from_git(repo).default_branch == "trunk"


def test_outside_a_repository(tmp_path: Path) -> None:
    plain = tmp_path / "plain"
    plain.mkdir()
    with pytest.raises(ConfigError, match="not inside a git work tree") as caught:
        context_from_git(plain)
    assert "run from the repository checkout" in str(caught.value)


def test_git_missing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", "")
    with pytest.raises(ToolNotFound, match="git is not installed"):
        run_git(["status"], tmp_path)


def test_runner_is_injectable() -> None:
    answers = {
        ("rev-parse", "--is-inside-work-tree"): GitResult(0, "true"),
        ("rev-parse", "--verify", "--quiet", "HEAD^{commit}"): GitResult(0, "a" * 40),
        ("remote", "get-url", "origin"): GitResult(0, "https://x:secret@gitea.example:3000/o/r"),
        ("tag", "--points-at", "HEAD", "--sort=-v:refname"): GitResult(0, ""),
        ("symbolic-ref", "--quiet", "HEAD"): GitResult(0, "refs/heads/feature/x"),
        ("show", "-s", "--format=%cI", "HEAD"): GitResult(0, COMMIT_DATE),
    }
    calls: list[tuple[str, ...]] = []

    def fake(args: Sequence[str], cwd: Path) -> GitResult:
        calls.append(tuple(args))
        return answers.get(tuple(args), GitResult(1, ""))

    ctx = context_from_git("/nowhere", run=fake)
    assert ctx.ref == "refs/heads/feature/x"
    assert (ctx.server_url, ctx.repository) == ("https://gitea.example:3000", "o/r")
    assert ctx.default_branch == "main"
    assert ("config", "--get", "init.defaultBranch") in calls


def test_default_scheme_from_a_tagged_checkout(tmp_path: Path) -> None:
    repo = new_repo(tmp_path)
    git(repo, "tag", "v1.0.0")
    result = compute(
        context_from_git(repo),
        ["ghcr.io/acme/api"],
        parse_tag_rules(DEFAULT_TAG_RULES),
        parse_flavor(DEFAULT_FLAVOR),
        now=datetime(2024, 5, 6, tzinfo=UTC),
    )
    assert result.tag_names == ("1.0.0", "1.0", "1", "v1.0.0")


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        pytest.param("git@github.com:o/r.git", ("https://github.com", "o/r"), id="scp"),
        pytest.param("ssh://git@github.com/o/r", ("https://github.com", "o/r"), id="ssh"),
        pytest.param(
            "ssh://git@host.example:2222/o/r.git", ("https://host.example", "o/r"), id="ssh-port"
        ),
        pytest.param("https://github.com/o/r.git", ("https://github.com", "o/r"), id="https"),
        pytest.param(
            "https://u:token@github.com/o/r", ("https://github.com", "o/r"), id="credentials"
        ),
        pytest.param("http://gitea.local:3000/o/r", ("http://gitea.local:3000", "o/r"), id="http"),
        pytest.param(
            "https://gitlab.com/g/sub/r.git", ("https://gitlab.com", "g/sub/r"), id="nested"
        ),
        pytest.param("/srv/git/r.git", ("https://github.com", ""), id="local-path"),
        pytest.param("file:///srv/git/r.git", ("https://github.com", ""), id="file-url"),
        pytest.param("", ("https://github.com", ""), id="none"),
    ],
)
def test_parse_remote_url(url: str, expected: tuple[str, str]) -> None:
    assert parse_remote_url(url) == expected


# ── GitHub Actions ──────────────────────────────────────────────────────────

GITHUB_ENV = {
    "GITHUB_ACTIONS": "true",
    "GITHUB_EVENT_NAME": "push",
    "GITHUB_REF": "refs/heads/main",
    "GITHUB_SHA": "860c1904a1ce19322e91ac35af1ab07466440c37",
    "GITHUB_REPOSITORY": "octocat/Hello-World",
    "GITHUB_SERVER_URL": "https://github.com",
    "GITHUB_RUN_NUMBER": "42",
    "GITHUB_RUN_ID": "9001",
}
REPOSITORY = {
    "default_branch": "main",
    "description": "This your first repo!",
    "license": {"spdx_id": "MIT"},
}


def test_github_push() -> None:
    event = {
        "repository": REPOSITORY,
        "head_commit": {"id": GITHUB_ENV["GITHUB_SHA"], "timestamp": "2020-01-10T01:02:03+01:00"},
    }
    ctx = context_from_github(GITHUB_ENV, event)
    assert (ctx.event_name, ctx.ref, ctx.sha) == (
        "push",
        "refs/heads/main",
        GITHUB_ENV["GITHUB_SHA"],
    )
    assert (ctx.repository, ctx.run_number, ctx.run_id) == ("octocat/Hello-World", "42", "9001")
    assert (ctx.default_branch, ctx.description, ctx.license) == (
        "main",
        "This your first repo!",
        "MIT",
    )
    assert ctx.commit_date == datetime(2020, 1, 10, 0, 2, 3, tzinfo=UTC)


def test_github_pull_request() -> None:
    env = {**GITHUB_ENV, "GITHUB_EVENT_NAME": "pull_request", "GITHUB_REF": "refs/pull/15/merge"}
    env |= {"GITHUB_BASE_REF": "main", "GITHUB_HEAD_REF": "feature"}
    event = {
        "number": 15,
        "pull_request": {"number": 15, "head": {"sha": "3370e22"}, "base": {"ref": "main"}},
        "repository": {**REPOSITORY, "license": None, "description": None},
    }
    ctx = context_from_github(env, event)
    assert (ctx.ref, ctx.base_ref, ctx.head_ref, ctx.pr_head_sha) == (
        "refs/pull/15/merge",
        "main",
        "feature",
        "3370e22",
    )
    assert (ctx.license, ctx.description) == ("", "")


def test_github_pull_request_target_uses_merge_ref() -> None:
    env = {
        **GITHUB_ENV,
        "GITHUB_EVENT_NAME": "pull_request_target",
        "GITHUB_REF": "refs/heads/main",
    }
    ctx = context_from_github(env, {"number": 7, "pull_request": {"base": {"ref": "main"}}})
    assert ctx.ref == "refs/pull/7/merge"
    assert ctx.base_ref == "main"


def test_github_workflow_dispatch_inputs() -> None:
    env = {**GITHUB_ENV, "GITHUB_EVENT_NAME": "workflow_dispatch"}
    ctx = context_from_github(env, {"inputs": {"suffix": "prod", "dry_run": False, "n": 3}})
    assert dict(ctx.inputs) == {"suffix": "prod", "dry_run": "false", "n": "3"}


def test_github_tag_push_base_ref_from_payload() -> None:
    env = {**GITHUB_ENV, "GITHUB_REF": "refs/tags/v1.0.0"}
    ctx = context_from_github(env, {"base_ref": "refs/heads/main"})
    assert ctx.base_ref == "refs/heads/main"


def test_github_without_event_or_server() -> None:
    env = {key: value for key, value in GITHUB_ENV.items() if key != "GITHUB_SERVER_URL"}
    ctx = context_from_github(env, None)
    assert ctx.server_url == "https://github.com"
    assert ctx.default_branch == ""
    assert ctx.commit_date is None


def test_load_context_on_github_actions(tmp_path: Path) -> None:
    event_file = tmp_path / "event.json"
    event_file.write_text(json.dumps({"repository": REPOSITORY}))
    ctx = load_context({**GITHUB_ENV, "GITHUB_EVENT_PATH": str(event_file)}, tmp_path)
    assert ctx.default_branch == "main"
    assert ctx.ref == "refs/heads/main"


def test_load_context_bad_event_file(tmp_path: Path) -> None:
    event_file = tmp_path / "event.json"
    event_file.write_text("{not json")
    with pytest.raises(ConfigError, match="cannot read the GitHub event payload"):
        load_context({**GITHUB_ENV, "GITHUB_EVENT_PATH": str(event_file)}, tmp_path)


def test_load_context_locally_reads_git(tmp_path: Path) -> None:
    repo = new_repo(tmp_path)
    ctx = load_context({"GITHUB_ACTIONS": "false"}, repo)
    assert ctx.ref == "refs/heads/main"
