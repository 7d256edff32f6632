"""Build the `metadata.Context` for a run: from GitHub Actions, or from a local git checkout.

`context_from_github` is pure: it reads the `GITHUB_*` variables and the event payload it
is given. `context_from_git` asks `git` through one small runner function (injectable for
tests) and reads a checkout the way a tag or branch push would look. `load_context` picks
one of the two and is the only function here that touches the environment's files.
"""

from __future__ import annotations

import json
import re
import subprocess
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from buildtasks.errors import ConfigError, ToolNotFound
from buildtasks.metadata import Context

GITHUB_SERVER = "https://github.com"


# ── GitHub Actions ──────────────────────────────────────────────────────────


def context_from_github(env: Mapping[str, str], event: Mapping[str, Any] | None) -> Context:
    """Build a `Context` from the `GITHUB_*` variables and the event payload, as the action does.

    Like metadata-action, a `pull_request_target` run uses the pull request's merge ref
    (`refs/pull/N/merge`) rather than the base branch it runs on.
    """
    event = event or {}
    event_name = env.get("GITHUB_EVENT_NAME", "")
    sha = env.get("GITHUB_SHA", "")
    pull_request = _mapping(event.get("pull_request"))
    repository = _mapping(event.get("repository"))
    return Context(
        event_name=event_name,
        ref=_github_ref(env, event, event_name),
        sha=sha,
        default_branch=_text(repository.get("default_branch")),
        repository=env.get("GITHUB_REPOSITORY", ""),
        server_url=env.get("GITHUB_SERVER_URL") or GITHUB_SERVER,
        run_number=env.get("GITHUB_RUN_NUMBER", ""),
        run_id=env.get("GITHUB_RUN_ID", ""),
        base_ref=env.get("GITHUB_BASE_REF") or _event_base_ref(event, pull_request),
        head_ref=env.get("GITHUB_HEAD_REF", ""),
        pr_head_sha=_text(_mapping(pull_request.get("head")).get("sha")),
        description=_text(repository.get("description")),
        license=_text(_mapping(repository.get("license")).get("spdx_id")),
        inputs={
            str(key): _input_text(value) for key, value in _mapping(event.get("inputs")).items()
        },
        commit_date=_event_commit_date(event, sha),
    )


def _mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _text(value: Any) -> str:
    return value if isinstance(value, str) else ""


def _input_text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return "" if value is None else str(value)


def _github_ref(env: Mapping[str, str], event: Mapping[str, Any], event_name: str) -> str:
    number = event.get("number")
    if "pull_request_target" in event_name and number is not None:
        return f"refs/pull/{number}/merge"
    return env.get("GITHUB_REF", "")


def _event_base_ref(event: Mapping[str, Any], pull_request: Mapping[str, Any]) -> str:
    base = _text(_mapping(pull_request.get("base")).get("ref"))
    return base or _text(event.get("base_ref"))


def _event_commit_date(event: Mapping[str, Any], sha: str) -> datetime | None:
    """Find the pushed commit's timestamp in the payload (commits[], then head_commit)."""
    commits = event.get("commits")
    candidates = list(commits) if isinstance(commits, list) else []
    candidates.append(event.get("head_commit"))
    for commit in candidates:
        commit = _mapping(commit)
        if sha and commit.get("id") == sha and commit.get("timestamp"):
            return _parse_timestamp(str(commit["timestamp"]))
    return None


def _parse_timestamp(text: str) -> datetime | None:
    try:
        return datetime.fromisoformat(text)
    except ValueError:
        return None


# ── local git ───────────────────────────────────────────────────────────────


@dataclass(frozen=True)
class GitResult:
    """What one `git` invocation returned."""

    returncode: int
    stdout: str
    stderr: str = ""


GitRunner = Callable[[Sequence[str], Path], GitResult]


def run_git(args: Sequence[str], cwd: Path) -> GitResult:
    """Run `git <args>` in `cwd` (argv list, no shell) and capture its output."""
    try:
        completed = subprocess.run(
            ["git", *args], cwd=cwd, capture_output=True, text=True, check=False
        )
    except FileNotFoundError:
        raise ToolNotFound("git is not installed — install git to read the local context") from None
    return GitResult(completed.returncode, completed.stdout.strip(), completed.stderr.strip())


def context_from_git(repo_dir: str | Path, run: GitRunner = run_git) -> Context:
    """Build a push-like `Context` from a local checkout.

    A tag pointing at HEAD wins over the branch (so a tagged checkout looks like a tag
    push); a detached HEAD without a tag has no ref; a repository without commits has no
    sha. The remote `origin` gives the repository and server, and the default branch is
    `origin/HEAD`, else `init.defaultBranch`, else `main`.
    """
    repo = Path(repo_dir)
    # Independent questions, asked at once: a build waits for one git process, not eight.
    questions = {
        "inside": ("rev-parse", "--is-inside-work-tree"),
        "head": ("rev-parse", "--verify", "--quiet", "HEAD^{commit}"),
        "remote": ("remote", "get-url", "origin"),
        "tags": ("tag", "--points-at", "HEAD", "--sort=-v:refname"),
        "branch": ("symbolic-ref", "--quiet", "HEAD"),
        "origin_head": ("symbolic-ref", "--quiet", "refs/remotes/origin/HEAD"),
        "default": ("config", "--get", "init.defaultBranch"),
        "date": ("show", "-s", "--format=%cI", "HEAD"),
    }
    with ThreadPoolExecutor(len(questions)) as pool:
        futures = {key: pool.submit(run, args, repo) for key, args in questions.items()}
        answers = {key: future.result() for key, future in futures.items()}
    inside = answers["inside"]
    if inside.returncode != 0 or inside.stdout != "true":
        raise ConfigError(
            f"{repo} is not inside a git work tree — run from the repository checkout"
            " (or `git init` it) so tags can be derived"
        )
    head = answers["head"]
    sha = head.stdout if head.returncode == 0 else ""
    server_url, repository = parse_remote_url(_output(answers["remote"]))
    tags = _output(answers["tags"]).splitlines() if sha else []
    remote_head = _output(answers["origin_head"])
    return Context(
        event_name="push",
        ref=f"refs/tags/{tags[0].strip()}" if tags else _output(answers["branch"]),
        sha=sha,
        default_branch=remote_head.removeprefix("refs/remotes/origin/")
        if remote_head.startswith("refs/remotes/origin/")
        else _output(answers["default"]) or "main",
        repository=repository,
        server_url=server_url,
        commit_date=_parse_timestamp(_output(answers["date"])) if sha else None,
    )


def _output(result: GitResult) -> str:
    return result.stdout if result.returncode == 0 else ""


_SCP_REMOTE = re.compile(r"(?:[^@/]+@)?(?P<host>[^:/]+):(?!/)(?P<path>.+)")
_URL_REMOTE = re.compile(
    r"(?P<scheme>[a-z][a-z0-9+.-]*)://(?:[^@/]*@)?(?P<host>[^/:]+)(?P<port>:[0-9]*)?/(?P<path>.+)",
    re.IGNORECASE,
)


def parse_remote_url(url: str) -> tuple[str, str]:
    """Split a git remote URL into (server URL, `owner/name`); credentials are dropped.

    `git@github.com:o/r.git`, `ssh://git@github.com/o/r`, `https://user:token@github.com/o/r.git`
    all give `("https://github.com", "o/r")`; an `http(s)://` remote keeps its scheme and
    port (an ssh port is dropped). Local paths and `file://` remotes give
    `(GITHUB_SERVER, "")`.
    """
    url = url.strip()
    match = _URL_REMOTE.fullmatch(url)
    if match and match["scheme"].lower() != "file":
        scheme = match["scheme"].lower()
        if scheme in ("http", "https"):
            server = f"{scheme}://{match['host']}{match['port'] or ''}"
        else:
            server = f"https://{match['host']}"
        return server, _repository_path(match["path"])
    match = None if "://" in url else _SCP_REMOTE.fullmatch(url)
    if match:
        return f"https://{match['host']}", _repository_path(match["path"])
    return GITHUB_SERVER, ""


def _repository_path(path: str) -> str:
    return path.strip("/").removesuffix(".git").strip("/")


# ── choosing ────────────────────────────────────────────────────────────────


def load_context(env: Mapping[str, str], cwd: str | Path) -> Context:
    """Read the GitHub context under GitHub Actions (`GITHUB_ACTIONS=true`), else git's."""
    if env.get("GITHUB_ACTIONS") == "true":
        return context_from_github(env, _read_event(env.get("GITHUB_EVENT_PATH", "")))
    return context_from_git(cwd)


def _read_event(path: str) -> Mapping[str, Any] | None:
    if not path:
        return None
    try:
        payload = json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as err:
        raise ConfigError(f"cannot read the GitHub event payload {path}: {err}") from None
    return payload if isinstance(payload, Mapping) else None
