"""Several images in one BuildKit solve, against the real engine: docker.build of every image
is one `docker buildx bake`, each image keeps its own record, and the exported bake file
rebuilds the same digests."""

from __future__ import annotations

import json
import os
import shlex
import subprocess
from pathlib import Path

import pytest
from support.lab import ROOT, git_project, invoke

pytestmark = pytest.mark.lab


def _record(artifacts: Path, key: str) -> dict:
    return json.loads((artifacts / key / "metadata.json").read_text())


def test_every_image_is_one_bake_and_each_keeps_its_record(lab, tmp_path):
    env = {"BUILDTASKS_ARTIFACTS_DIR": str(tmp_path / "artifacts")}
    result = invoke("docker.build", env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "==> one bake, 2 images at once: backend, frontend" in result.stderr
    assert result.stderr.count("+ docker buildx bake ") == 1
    assert "+ docker buildx build " not in result.stderr
    for key in ("backend", "frontend"):
        record = _record(tmp_path / "artifacts", key)
        digest = record["containerimage.digest"]
        assert f"{key}: {digest}" in result.stdout
        inspect = subprocess.run(["docker", "image", "inspect", digest], capture_output=True)
        assert inspect.returncode == 0, f"{key}'s record names {digest}, which the engine lacks"
        steps = dict(record["buildtasks"]["timings"])
        assert "buildx bake (all at once)" in steps
        assert record["buildtasks"]["tags"]
    # --jobs 1: one image per bake, one after the other, the same images.
    again = invoke("docker.build", "--jobs", "1", env=env)
    assert again.returncode == 0, again.stderr[-3000:]
    assert again.stderr.count("+ docker buildx bake ") == 2
    for key in ("backend", "frontend"):
        assert f"{key}: {_record(tmp_path / 'artifacts', key)['containerimage.digest']}" in (
            result.stdout
        ), "one commit, one digest: the bake of one image gives what the bake of both gave"


def test_the_exported_bake_file_rebuilds_the_same_digests(lab, tmp_path):
    env = {"BUILDTASKS_ARTIFACTS_DIR": str(tmp_path / "artifacts")}
    built = invoke("docker.build", env=env)
    assert built.returncode == 0, built.stderr[-3000:]
    exported = tmp_path / "docker-bake.json"
    printed = invoke("docker.bake", "--file", str(exported), env=env)
    assert printed.returncode == 0, printed.stderr[-3000:]
    run_line = printed.stderr.strip().splitlines()[-1]
    assert run_line.startswith(f"run it from {ROOT}: docker buildx bake --file {exported}")
    argv = shlex.split(run_line.split(": ", 1)[1])
    metadata = tmp_path / "metadata.json"
    argv[argv.index("metadata.json")] = str(metadata)
    # What a user does with the file: run bake from the checkout, no buildtasks involved.
    ran = subprocess.run(
        argv, cwd=ROOT, capture_output=True, text=True, check=False, env=os.environ
    )
    assert ran.returncode == 0, ran.stderr[-3000:]
    baked = json.loads(metadata.read_text())
    for key in ("backend", "frontend"):
        assert (
            baked[key]["containerimage.digest"]
            == _record(tmp_path / "artifacts", key)["containerimage.digest"]
        )


def test_a_failing_target_names_its_image_and_step_and_records_nothing(lab, tmp_path):
    project = git_project(
        tmp_path / "project",
        {
            "good/Dockerfile": "FROM python:3.11-slim\nRUN true\n",
            "bad/Dockerfile": 'FROM python:3.11-slim\nRUN sh -c "exit 7"\n',
            "pyproject.toml": "[tool.buildtasks.images.good]\n"
            'repository = "good"\ndockerfile = "good/Dockerfile"\n'
            "[tool.buildtasks.images.bad]\n"
            'repository = "bad"\ndockerfile = "bad/Dockerfile"\n',
        },
    )
    artifacts = tmp_path / "artifacts"
    result = invoke("docker.build", cwd=project, env={"BUILDTASKS_ARTIFACTS_DIR": str(artifacts)})
    assert result.returncode == 7, result.stderr[-3000:]  # a tool (buildx) failed
    last = result.stderr.strip().splitlines()[-1]
    assert last == (
        'error: bad: step "RUN sh -c "exit 7"" failed with exit code 7 (the build log above '
        "shows its output); nothing was recorded"
    )
    assert not list(artifacts.glob("*/metadata.json"))
