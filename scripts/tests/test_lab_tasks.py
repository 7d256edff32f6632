"""`invoke lab.*` for real: status of the running lab, an idempotent up, a down that stops
only what the lab started and takes its mirror out, a registry that runs unprivileged."""

from __future__ import annotations

import json
import os
import signal
import subprocess
from pathlib import Path

import pytest
from support.lab import invoke

from buildtasks.files import write_atomic
from buildtasks.lab import plan
from buildtasks.lab.files import DAEMON_JSON
from buildtasks.labstate import State, lab_home


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


# ------------------------------------------------------------------ atomic writes


def test_write_atomic_replaces_the_file_keeping_its_mode_and_leaves_no_temp(tmp_path):
    target = tmp_path / "daemon.json"
    target.write_text("{}\n")
    target.chmod(0o600)
    write_atomic(target, '{"debug": true}\n')
    assert target.read_text() == '{"debug": true}\n'
    assert target.stat().st_mode & 0o777 == 0o600
    assert [p.name for p in tmp_path.iterdir()] == ["daemon.json"]


def test_write_atomic_leaves_the_old_file_when_writing_fails(tmp_path):
    target = tmp_path / "daemon.json"
    target.write_text("old")
    with pytest.raises(TypeError):
        write_atomic(target, None)  # type: ignore[arg-type]
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["daemon.json"]


# ------------------------------------------------------------------ hardening, for real


@pytest.mark.lab
def test_the_lab_registry_runs_as_an_unprivileged_user(lab):
    pid = State.load(lab_home()).started.get("registry")
    assert pid, "lab.up did not start the registry (is another one on the port?)"
    status = Path(f"/proc/{pid}/status").read_text()
    fields = dict(line.split(":", 1) for line in status.splitlines())
    uid = plan.status_uid(status)
    assert uid not in (None, 0), f"the lab registry (pid {pid}) runs as root"
    assert int(fields["CapEff"].strip(), 16) == 0
    assert fields["NoNewPrivs"].strip() == "1"
    storage = plan.registry_paths(lab_home(), privileged=True).storage
    assert storage.stat().st_uid == uid
    config = storage.parent / "registry.yml"
    assert config.stat().st_uid == 0, "the registry must not be able to rewrite its own config"


@pytest.mark.parametrize("address", ["0.0.0.0:5000", "192.168.1.20:5000", ":5000"])
def test_up_refuses_a_non_loopback_registry_before_changing_anything(tmp_path, address):
    (tmp_path / "pyproject.toml").write_text(
        '[tool.buildtasks.images.app]\nrepository = "app"\ndockerfile = "Dockerfile"\n'
        f'[tool.buildtasks.lab]\nregistry = "{address}"\nseed = []\n'
    )
    home = tmp_path / "lab"
    before = DAEMON_JSON.read_text() if DAEMON_JSON.exists() else None
    result = invoke("lab.up", cwd=tmp_path, env={"BUILDTASKS_LAB_HOME": str(home)})
    assert result.returncode == 2, result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith(f"error: lab registry {address!r} is not a loopback")
    assert '[tool.buildtasks.lab] registry to "127.0.0.1:<port>"' in last
    assert "lab: " not in result.stderr, "lab.up did something before refusing"
    assert not home.exists()
    assert (DAEMON_JSON.read_text() if DAEMON_JSON.exists() else None) == before


def _engine_mirrors() -> list[str]:
    out = subprocess.run(
        ["docker", "info", "--format", "{{json .RegistryConfig.Mirrors}}"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return json.loads(out or "null") or []


@pytest.mark.lab
def test_down_takes_the_mirror_out_of_the_engine_and_up_puts_it_back(lab, tmp_path):
    """lab.down with a lab directory whose lab.up wired the mirror in but started no engine:
    the mirror leaves daemon.json and the running engine (a reload, no restart); lab.up puts
    it back the same way. The shared registry and engine keep running throughout."""
    mirror = plan.lab_mirror(lab)
    engine_pid = plan.DOCKER_PIDFILE.read_text().strip()
    before = json.loads(DAEMON_JSON.read_text())
    assert plan.mirror_listed(before.get("registry-mirrors", []), mirror)
    home = tmp_path / "lab"
    home.mkdir()
    (home / "state.json").write_text(json.dumps({"registry": lab, "started": {}, "seeded": {}}))
    try:
        result = invoke("lab.down", env={"BUILDTASKS_LAB_HOME": str(home)})
        assert result.returncode == 0, result.stderr
        after = json.loads(DAEMON_JSON.read_text())
        assert after == plan.daemon_config_without(before, mirror)
        assert after["features"]["containerd-snapshotter"] is True
        assert not plan.mirror_listed(_engine_mirrors(), mirror)
        assert f"kill -HUP {engine_pid}" in result.stderr
        for left in ("packages stay installed", "engine keeps running", "containerd-snapshotter"):
            assert left in result.stderr
    finally:
        restored = invoke("lab.up")
    assert restored.returncode == 0, restored.stderr
    assert "restarting" not in restored.stderr
    assert plan.mirror_listed(_engine_mirrors(), mirror)
    assert json.loads(DAEMON_JSON.read_text()) == before
    assert plan.DOCKER_PIDFILE.read_text().strip() == engine_pid, "the engine was restarted"


def test_down_purge_apt_dry_run_names_the_files_it_would_delete(tmp_path):
    result = invoke("--dry", "lab.down", "--purge-apt", env={"BUILDTASKS_LAB_HOME": str(tmp_path)})
    assert result.returncode == 0, result.stderr
    for path in (plan.SOURCES_FILE, plan.PINS_FILE):
        if os.path.exists(path):
            assert f"+ rm {path}" in result.stderr
            assert os.path.exists(path), "--dry deleted a file"


@pytest.mark.lab
def test_up_replaces_a_registry_an_older_lab_started_as_root(lab):
    """An old lab's root registry (on a port of its own, not the shared lab's) is stopped,
    its storage moved out of the lab directory with its data, and started again unprivileged."""
    import dataclasses
    import socket
    import tempfile
    import time

    from buildtasks import config as config_mod
    from buildtasks.lab.ops import Lab
    from buildtasks.registry import registry_up
    from buildtasks.runner import Runner

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        address = f"127.0.0.1:{probe.getsockname()[1]}"
    top = Path(tempfile.mkdtemp(prefix="buildtasks-lab-test-"))
    top.chmod(0o755)  # the registry user must reach the system directory inside it
    home, system = top / "home", top / "system"
    old_storage = home / "registry"
    (old_storage / "marker").mkdir(parents=True)
    (home / "registry.yml").write_text(plan.registry_config(address, old_storage))
    old = subprocess.Popen(
        ["docker-registry", "serve", str(home / "registry.yml")],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    state = State(started={"registry": old.pid}, registry=address)
    new_pid = None
    try:
        deadline = time.monotonic() + 10
        while not registry_up(address) and old.poll() is None and time.monotonic() < deadline:
            time.sleep(0.1)
        assert registry_up(address), "the stand-in for an old root registry did not start"
        config = config_mod.load(env={})
        config = dataclasses.replace(config, lab=dataclasses.replace(config.lab, registry=address))
        Lab(config, Runner(), home=home, registry_dir=system).start_registry(state)
        new_pid = state.started["registry"]
        assert old.wait(timeout=10) is not None
        assert new_pid != old.pid and registry_up(address)
        uid = plan.status_uid(Path(f"/proc/{new_pid}/status").read_text())
        assert uid not in (None, 0)
        assert (system / "registry" / "marker").is_dir(), "the old registry's data was lost"
        assert not old_storage.exists()
        assert (system / "registry").stat().st_uid == uid
    finally:
        for pid in (old.pid, new_pid):
            if pid and Path(f"/proc/{pid}").exists():
                os.kill(pid, signal.SIGTERM)
        if old.poll() is None:
            old.wait(timeout=10)
        subprocess.run(["rm", "-rf", str(top)], check=False)
