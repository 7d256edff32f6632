"""`invoke lint.*` with the real linters: clean on this repository, failing on bad input."""

from __future__ import annotations

import pytest
from support.lab import invoke


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
