"""`invoke lab.*` for real: status of the running lab, an idempotent up, a down that stops
only what the lab started."""

from __future__ import annotations

import json
import os
import signal
import subprocess

import pytest
from support.lab import invoke


@pytest.mark.lab
def test_status_reports_every_part_and_succeeds_when_the_lab_is_up(lab):
    result = invoke("lab.status")
    assert result.returncode == 0, result.stdout + result.stderr
    for part in ("packages", "engine", "buildx", "registry", "base python:3.11-slim", "proxy CA"):
        assert part in result.stdout
    assert "containerd image store" in result.stdout


@pytest.mark.lab
def test_up_is_idempotent_when_everything_is_there(lab):
    result = invoke("lab.up")
    assert result.returncode == 0, result.stderr
    assert "lab: ready" in result.stderr
    assert "installing" not in result.stderr
    assert "registry   ok" in result.stderr and "engine     ok" in result.stderr


def test_status_fails_naming_the_fix_when_the_registry_is_down(tmp_path):
    (tmp_path / "pyproject.toml").write_text(
        '[tool.buildtasks.images.app]\nrepository = "app"\ndockerfile = "Dockerfile"\n'
        '[tool.buildtasks.lab]\nregistry = "127.0.0.1:1"\nseed = []\n'
    )
    result = invoke("lab.status", cwd=tmp_path, env={"BUILDTASKS_LAB_HOME": str(tmp_path / "lab")})
    assert result.returncode == 1
    assert "FAIL registry" in result.stdout
    assert result.stderr.strip().endswith("the lab is not ready: run `uv run invoke lab.up`")


def test_down_stops_what_up_started_and_nothing_else(tmp_path):
    home = tmp_path / "lab"
    home.mkdir()
    ours = subprocess.Popen(["sleep", "300"], start_new_session=True)
    not_ours = subprocess.Popen(["sleep", "300"], start_new_session=True)
    try:
        (home / "state.json").write_text(
            json.dumps({"started": {"registry": ours.pid}, "seeded": {}})
        )
        result = invoke("lab.down", env={"BUILDTASKS_LAB_HOME": str(home)})
        assert result.returncode == 0, result.stderr
        assert ours.wait(timeout=10) is not None
        assert not_ours.poll() is None, "lab.down stopped a process it did not start"
        assert json.loads((home / "state.json").read_text())["started"] == {}
        assert f"stopped registry (pid {ours.pid})" in result.stderr
    finally:
        for proc in (ours, not_ours):
            if proc.poll() is None:
                os.kill(proc.pid, signal.SIGKILL)
                proc.wait()


def test_down_with_nothing_started_says_so(tmp_path):
    result = invoke("lab.down", env={"BUILDTASKS_LAB_HOME": str(tmp_path)})
    assert result.returncode == 0
    assert "nothing to stop" in result.stderr


@pytest.mark.lab
def test_up_removes_a_bridge_left_by_a_lost_engine_state(lab):
    name = "br-0badc0ffee00"
    subprocess.run(["ip", "link", "add", name, "type", "bridge"], check=True)
    try:
        result = invoke("lab.up")
        assert result.returncode == 0, result.stderr
        assert "orphaned bridge" in result.stderr
        gone = subprocess.run(["ip", "link", "show", name], capture_output=True, check=False)
        assert gone.returncode != 0
    finally:
        subprocess.run(["ip", "link", "delete", name], capture_output=True, check=False)
