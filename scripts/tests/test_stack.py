"""The compose stack on the real engine: the images docker.build recorded, up, a request
through all three services, an outage, logs, down, and the errors a user meets first."""

from __future__ import annotations

import json
import subprocess
import urllib.request
import uuid
from pathlib import Path

import pytest
from support.lab import invoke

pytestmark = pytest.mark.lab

#: Ports the engine picks: a developer's own stack (8000, 8080) keeps its ports.
ANY_PORT = {"WEB_PUBLISH": "127.0.0.1:", "GATEWAY_PUBLISH": "127.0.0.1:"}


def project_objects(project: str) -> list[str]:
    label = f"label=com.docker.compose.project={project}"
    found = []
    for kind in (["ps", "-a"], ["network", "ls"], ["volume", "ls"]):
        out = subprocess.run(
            ["docker", *kind, "-q", "--filter", label], capture_output=True, text=True, check=True
        )
        found += out.stdout.split()
    return found


@pytest.fixture(scope="module")
def built(lab, tmp_path_factory) -> dict[str, str]:
    """Both images built once by docker.build, which records them for the stack: the
    environment every task of this module runs with (its own records, its own names)."""
    # This machine's platform (conftest), under names of its own: the user's images keep
    # theirs (a build that takes a name leaves the image it took it from unnamed).
    env = {
        "BUILDTASKS_ARTIFACTS_DIR": str(tmp_path_factory.mktemp("stack-artifacts")),
        "BUILDTASKS_REGISTRY": f"{lab}/itest-{uuid.uuid4().hex[:10]}",
    }
    result = invoke("docker.build", env=env)
    assert result.returncode == 0, result.stderr[-2000:]
    return env


def test_docker_build_records_each_loaded_image_by_digest(built):
    records = Path(built["BUILDTASKS_ARTIFACTS_DIR"])
    text = (records / "stack.env").read_text()
    values = dict(line.split("=", 1) for line in text.splitlines() if "=" in line)
    assert set(values) == {"BUILDTASKS_IMAGE_BACKEND", "BUILDTASKS_IMAGE_FRONTEND"}
    for key, ref in values.items():
        record = json.loads((records / key.split("_")[-1].lower() / "metadata.json").read_text())
        assert (
            ref.endswith("@" + record["containerimage.digest"])
            or ref == record["containerimage.config.digest"]
        )
        # Plain compose runs exactly this: the engine has it under that reference.
        subprocess.run(["docker", "image", "inspect", ref], capture_output=True, check=True)


def test_smoke_goes_through_all_three_services_and_leaves_nothing(built):
    result = invoke("stack.smoke", env=built)
    assert result.returncode == 0, result.stderr[-3000:]
    out = result.stdout
    assert "stack smoke: all healthy after" in out
    assert "task round trip web → gateway → agents" in out
    assert "smoke test" in out and "nothing left behind" in out
    # What it printed on the way: the outage as the page showed it, and the recovery.
    assert "the page says 'API gateway is up but not ready: agents unavailable'" in result.stderr
    assert "the page says 'API gateway is up and ready'" in result.stderr
    projects = subprocess.run(
        ["docker", "ps", "-a", "--format", '{{.Label "com.docker.compose.project"}}'],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    assert not [p for p in projects if p.startswith("monorepo-smoke-")]


def test_up_serves_the_page_and_the_gateway_then_down_removes_everything(built):
    project = f"itest-{uuid.uuid4().hex[:8]}"
    try:
        up = invoke("stack.up", "--project", project, env={**built, **ANY_PORT})
        assert up.returncode == 0, up.stderr[-3000:]
        assert "(healthy)" in up.stdout
        port = subprocess.run(
            ["docker", "compose", "-p", project, "port", "web", "8080"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        with urllib.request.urlopen(f"http://{port}/api/gateway/ready", timeout=5) as response:
            assert json.load(response)["checks"]["agents"]["ok"] is True
        logs = invoke(
            "stack.logs", "--project", project, "--service", "gateway", "--tail", "50", env=built
        )
        assert logs.returncode == 0
        assert "gateway" in logs.stdout and "/ready" in logs.stdout
    finally:
        down = invoke("stack.down", "--project", project, env=built)
    assert down.returncode == 0, down.stderr[-2000:]
    assert project_objects(project) == []


def test_up_without_a_build_names_the_build_to_run(lab, tmp_path):
    result = invoke("stack.up", env={"BUILDTASKS_ARTIFACTS_DIR": str(tmp_path)})
    assert result.returncode == 5
    line = result.stderr.strip().splitlines()[-1]
    assert line.startswith("error: no built image of backend, frontend for the stack")
    assert "uv run invoke docker.build" in line


def test_up_of_an_image_gone_from_the_engine_names_the_rebuild(lab, tmp_path):
    gone = "127.0.0.1:5000/monorepo@sha256:" + "0" * 64
    (tmp_path / "stack.env").write_text(
        f"BUILDTASKS_IMAGE_BACKEND={gone}\nBUILDTASKS_IMAGE_FRONTEND={gone}\n"
    )
    result = invoke("stack.up", env={"BUILDTASKS_ARTIFACTS_DIR": str(tmp_path)})
    assert result.returncode == 5
    line = result.stderr.strip().splitlines()[-1]
    assert f"the backend image {gone} recorded in" in line
    assert "is not in the engine" in line and "docker.build --image backend" in line
