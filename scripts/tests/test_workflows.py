"""The GitHub workflows, held to the tasks, the configuration and the tool pins (no act, fast).

Every `run:` step must be one task or session invocation whose task and flags exist, so a
renamed task or flag fails here and not on GitHub; the `paths` filters must be the image's
configured paths; the tools the setup actions install must be the pinned releases. The
workflows themselves run under act in `nox -s workflows` (scripts/tests/workflows/).
"""

from __future__ import annotations

import shlex
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from support.lab import ROOT, invoke

from buildtasks import act, config, paths
from buildtasks.tasks import namespace
from buildtasks.tools import TOOLS

WORKFLOWS = ROOT / ".github" / "workflows"
REUSABLE = "./.github/workflows/docker-image.yml"


def load(path: Path) -> dict[str, Any]:
    doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    # YAML 1.1 reads the key `on` as the boolean True.
    if True in doc:
        doc["on"] = doc.pop(True)
    return doc


def all_workflows() -> dict[str, dict[str, Any]]:
    return {p.name: load(p) for p in sorted(WORKFLOWS.glob("*.yml"))}


def steps() -> list[tuple[str, str, dict[str, Any]]]:
    found = []
    for name, doc in all_workflows().items():
        for job_id, job in doc.get("jobs", {}).items():
            for step in job.get("steps", ()):
                found.append((name, job_id, step))
    return found


def image_workflows() -> dict[str, tuple[str, dict[str, Any]]]:
    """Image key → (file, workflow) for every workflow that calls the reusable one."""
    found = {}
    for name, doc in all_workflows().items():
        for job in doc.get("jobs", {}).values():
            if job.get("uses") == REUSABLE:
                found[job["with"]["image"]] = (name, doc)
    return found


# --------------------------------------------------------------------------- run steps


def task_flags(task_name: str) -> set[str]:
    """The long flags invoke accepts for `task_name` (`--no-X` for flags that default to on)."""
    task = namespace.task_with_config(task_name)[0]
    flags = set()
    for arg in task.get_arguments():
        for name in arg.names:
            flags.add(f"--{name}" if len(name) > 1 else f"-{name}")
        if arg.kind is bool and arg.default is True:
            flags.add(f"--no-{arg.names[0]}")
    return flags


SESSIONS = {"lint", "tests", "image_tests", "benchmark", "workflows"}


def check_run(line: str) -> None:
    """One invocation of a task or a session with existing flags; no logic of its own."""
    assert "\n" not in line.strip(), f"a run step is one command, not a script: {line!r}"
    for token in ("&&", "||", ";", "|", "`", "$(", " if ", "for "):
        assert token not in line, f"{token!r} is logic: move it into a task: {line!r}"
    argv = shlex.split(line)
    if argv[:1] == ["sudo"]:
        # The CI entry script a fresh machine runs: `.ci/run` installs what needs root.
        assert argv[-2:] == ["bash", ".ci/run"], line
        return
    assert argv[:3] == ["uv", "run", "--locked"], f"run through the locked environment: {line!r}"
    tool, rest = argv[3], argv[4:]
    if tool == "nox":
        assert rest[:1] == ["-s"] and rest[1] in SESSIONS, f"unknown nox session: {line!r}"
        return
    assert tool == "invoke", f"a task or a session, not {tool}: {line!r}"
    task_name, args = rest[0], rest[1:]
    assert task_name in namespace.task_names, f"no task {task_name}: {line!r}"
    known = task_flags(task_name)
    for arg in args:
        if arg.startswith("-"):
            assert arg.split("=", 1)[0] in known, f"{task_name} has no flag {arg}: {line!r}"
        # Tasks take positional arguments too (tools.install NAME).


@pytest.mark.parametrize(
    ("workflow", "job", "step"),
    [pytest.param(*s, id=f"{s[0]}:{s[1]}:{i}") for i, s in enumerate(steps()) if "run" in s[2]],
)
def test_every_run_step_is_one_task_or_session_that_exists(workflow, job, step):
    check_run(step["run"])


@pytest.mark.parametrize(
    "line",
    [
        "uv run --locked invoke docker.biuld --image x",
        "uv run --locked invoke docker.build --imag x",
        "uv run --locked invoke docker.build && echo done",
        "uv run --locked nox -s nope",
        "docker buildx build .",
        "uv run --locked invoke docker.build\nuv run --locked invoke docker.push",
    ],
    ids=["unknown-task", "unknown-flag", "logic", "unknown-session", "raw-tool", "script"],
)
def test_the_contract_check_refuses_what_it_should(line):
    with pytest.raises(AssertionError):
        check_run(line)


# --------------------------------------------------------------------------- shape


def test_every_workflow_grants_nothing_by_default_and_each_job_what_it_needs():
    for name, doc in all_workflows().items():
        assert doc.get("permissions") == {}, f"{name}: top-level permissions: {{}}"
        for job_id, job in doc["jobs"].items():
            assert "permissions" in job, f"{name}: job {job_id} declares no permissions"


def test_every_action_is_pinned_by_sha_and_has_a_local_stand_in():
    texts = [p.read_text(encoding="utf-8") for p in WORKFLOWS.glob("*.yml")]
    actions = act.remote_actions(texts)
    assert {repo for repo, _ in actions} >= {"astral-sh/setup-uv", "actions/checkout"}
    mapped = act.local_repositories(ROOT, actions)
    for value in mapped:
        folder = Path(value.split("=", 1)[1])
        assert (folder / "action.yml").is_file() or any(folder.glob("*/action.yml")), value


def test_every_image_has_its_workflow_and_every_workflow_a_configured_image():
    cfg = config.load(ROOT)
    assert set(image_workflows()) == set(cfg.images)


@pytest.mark.parametrize("image", sorted(config.load(ROOT).images))
def test_the_paths_filters_are_the_configured_paths(image):
    cfg = config.load(ROOT)
    name, doc = image_workflows()[image]
    expected = list(cfg.image_paths(cfg.image(image)))
    for event in ("push", "pull_request"):
        assert doc["on"][event]["paths"] == expected, f"{name} on.{event}.paths"
    assert f".github/workflows/{name}" in expected, "the workflow must list itself"
    assert REUSABLE.removeprefix("./") in expected, "and the reusable workflow"


@pytest.mark.parametrize("image", sorted(config.load(ROOT).images))
def test_the_events_and_inputs_are_the_ones_documented(image):
    _, doc = image_workflows()[image]
    on = doc["on"]
    assert on["push"]["branches"] == ["main", "develop"]
    assert on["push"]["tags"] == ["v*"]
    inputs = on["workflow_dispatch"]["inputs"]
    assert inputs["suffix"]["options"] == ["none", "dev", "staging", "prod"]
    assert inputs["no-cache"]["type"] == "boolean"


def test_the_signing_identity_is_the_reusable_workflow_on_every_ref_it_publishes_from():
    cfg = config.load(ROOT)
    assert cfg.sign.release_workflow == REUSABLE.removeprefix("./")
    on = load(WORKFLOWS / "backend-docker-build.yml")["on"]["push"]
    refs = [f"refs/heads/{b}" for b in on["branches"]] + [f"refs/tags/{t}" for t in on["tags"]]
    assert sorted(cfg.sign.release_refs) == sorted(refs)


# --------------------------------------------------------------------------- tool pins


def with_inputs(repo: str) -> list[dict[str, Any]]:
    return [
        step.get("with", {})
        for _, _, step in steps()
        if str(step.get("uses", "")).startswith(f"{repo}@")
    ]


def test_the_setup_actions_install_the_pinned_releases():
    uv_pin = (ROOT / ".ci" / "run").read_text(encoding="utf-8").split('"uv==', 1)[1].split('"')[0]
    assert {w["version"] for w in with_inputs("astral-sh/setup-uv")} == {uv_pin}
    assert {w["cosign-release"] for w in with_inputs("sigstore/cosign-installer")} == {
        TOOLS["cosign"].release
    }
    assert {w["version"] for w in with_inputs("imjasonh/setup-crane")} == {TOOLS["crane"].release}


# --------------------------------------------------------------------------- docker.affected


@pytest.fixture(scope="module")
def scratch_clone(tmp_path_factory) -> Path:
    clone = tmp_path_factory.mktemp("affected") / "repo"
    subprocess.run(("git", "clone", "-q", str(ROOT), str(clone)), check=True)
    # The configuration under test is the working tree's, committed or not.
    (clone / "pyproject.toml").write_text((ROOT / "pyproject.toml").read_text())
    commit(clone, "pyproject.toml")
    return clone


def commit(clone: Path, path: str) -> None:
    target = clone / path
    target.parent.mkdir(parents=True, exist_ok=True)
    with target.open("a", encoding="utf-8") as out:
        out.write("\n// changed\n" if path.endswith((".js", ".mjs")) else "\n")
    git = ("git", "-c", "user.name=t", "-c", "user.email=t@example.com")
    subprocess.run((*git, "add", path), cwd=clone, check=True)
    subprocess.run((*git, "commit", "-qm", f"change {path}"), cwd=clone, check=True)


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("apps/frontend/server.mjs", ["frontend"]),
        ("apps/backend/docker-entrypoint.sh", ["backend"]),
        ("uv.lock", ["backend", "frontend"]),
        (".github/workflows/frontend-docker-build.yml", ["frontend"]),
        ("docs/usage.md", []),
    ],
    ids=["frontend-only", "backend-only", "lock-file", "own-workflow", "docs"],
)
def test_affected_names_the_images_a_commit_touches(scratch_clone, path, expected):
    commit(scratch_clone, path)
    result = invoke("docker.affected", "--since", "HEAD~1", cwd=scratch_clone)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == expected


def test_affected_names_an_unknown_ref_in_one_line(scratch_clone):
    result = invoke("docker.affected", "--since", "no-such-branch", cwd=scratch_clone)
    assert result.returncode != 0
    assert result.stderr.count("\n") == 1
    assert "no-such-branch" in result.stderr


def test_the_filters_match_as_github_does():
    patterns = ("apps/backend/**", "!apps/backend/**/*.md", "uv.lock")
    assert paths.included("apps/backend/src/app.py", patterns)
    assert not paths.included("apps/backend/README.md", patterns)
    assert not paths.included("apps/frontend/x.js", patterns)
    assert paths.included("uv.lock", patterns)
    assert not paths.included("sub/uv.lock", patterns)
    assert paths.included("README.md", ("**/README.md",))
