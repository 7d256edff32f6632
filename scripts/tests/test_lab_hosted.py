"""`lab.up` and `lab.status` on a GitHub-hosted runner.

This machine is not a GitHub-hosted runner and must keep its engine: no test here restarts
docker or writes /etc/docker/daemon.json. The plans are tested as data; the operations run
against `FakeEngine`, a runner that answers the probes like a runner's engine and applies the
daemon.json writes to a file under tmp_path; the real `invoke` runs are `--dry` (or read-only)
and prove the wiring: the GitHub-hosted path when both variables say so, the lab path otherwise.
"""

from __future__ import annotations

import dataclasses
import io
import json
import os
import re
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from support.lab import ROOT, invoke

from buildtasks import config as config_mod
from buildtasks.command import Command
from buildtasks.errors import CommandFailed, ConfigError, EngineUnavailable
from buildtasks.lab import hosted, hosted_plan, plan
from buildtasks.lab.ops import Lab
from buildtasks.lab.probes import native_arch
from buildtasks.labstate import State
from buildtasks.runner import Result, Runner

DAEMON = Path("/etc/docker/daemon.json")
#: What the ubuntu-24.04 runner image puts in /etc/docker/daemon.json.
RUNNER_IMAGE_JSON = (
    '{\n  "exec-opts": ["native.cgroupdriver=cgroupfs"],\n  "cgroup-parent": "/actions_job"\n}\n'
)
CONTAINERD_ONLY = '{\n  "features": {\n    "containerd-snapshotter": true\n  }\n}\n'

# ------------------------------------------------------------------ detection


@pytest.mark.parametrize(
    ("env", "hosted_runner"),
    [
        pytest.param(
            {"GITHUB_ACTIONS": "true", "RUNNER_ENVIRONMENT": "github-hosted"},
            True,
            id="github-hosted",
        ),
        pytest.param({"GITHUB_ACTIONS": "true"}, False, id="act-self-hosted-no-runner-environment"),
        pytest.param(
            {"GITHUB_ACTIONS": "true", "RUNNER_ENVIRONMENT": ""},
            False,
            id="act-empty-runner-environment",
        ),
        pytest.param(
            {"GITHUB_ACTIONS": "true", "RUNNER_ENVIRONMENT": "self-hosted"},
            False,
            id="self-hosted-runner",
        ),
        pytest.param({"RUNNER_ENVIRONMENT": "github-hosted"}, False, id="not-in-actions"),
        pytest.param(
            {"GITHUB_ACTIONS": "false", "RUNNER_ENVIRONMENT": "github-hosted"},
            False,
            id="actions-false",
        ),
        pytest.param({}, False, id="local"),
    ],
)
def test_only_a_github_hosted_runner_takes_the_hosted_path(env, hosted_runner):
    assert hosted_plan.github_hosted(env) is hosted_runner


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        pytest.param(
            {"GITHUB_ACTIONS": "true", "RUNNER_ENVIRONMENT": "github-hosted"},
            True,
            id="github-hosted",
        ),
        pytest.param({"GITHUB_ACTIONS": "true"}, False, id="act"),
        pytest.param({}, False, id="local"),
    ],
)
def test_the_lab_reads_the_detection_from_its_environment(monkeypatch, env, expected):
    for name in ("GITHUB_ACTIONS", "RUNNER_ENVIRONMENT"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert Lab(config_mod.load(env={}), Runner()).hosted is expected


# ------------------------------------------------------------------ daemon.json merge


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param(None, {"features": {"containerd-snapshotter": True}}, id="absent-file"),
        pytest.param("", {"features": {"containerd-snapshotter": True}}, id="empty-file"),
        pytest.param(
            RUNNER_IMAGE_JSON,
            {
                "exec-opts": ["native.cgroupdriver=cgroupfs"],
                "cgroup-parent": "/actions_job",
                "features": {"containerd-snapshotter": True},
            },
            id="runner-image-keys-kept",
        ),
        pytest.param(
            '{"features": {"buildkit": true, "cdi": false}, "log-driver": "json-file"}',
            {
                "features": {"buildkit": True, "cdi": False, "containerd-snapshotter": True},
                "log-driver": "json-file",
            },
            id="other-feature-flags-kept",
        ),
        pytest.param(
            '{"features": {"containerd-snapshotter": false}}',
            {"features": {"containerd-snapshotter": True}},
            id="explicitly-off-turned-on",
        ),
        pytest.param(
            '{"features": null, "debug": true}',
            {"features": {"containerd-snapshotter": True}, "debug": True},
            id="null-features",
        ),
    ],
)
def test_the_merge_turns_the_containerd_store_on_and_keeps_every_other_key(text, expected):
    new = hosted_plan.containerd_store_json(text, DAEMON)
    assert new is not None and new.endswith("}\n")
    merged = json.loads(new)
    assert merged == expected
    assert list(merged) == list(expected), "the runner image's keys keep their order"


@pytest.mark.parametrize(
    "text",
    [
        pytest.param('{"features": {"containerd-snapshotter": true}}', id="only-the-store"),
        pytest.param(
            '{"exec-opts": ["native.cgroupdriver=cgroupfs"], '
            '"features": {"buildkit": true, "containerd-snapshotter": true}}',
            id="with-other-keys-and-flags",
        ),
        pytest.param(CONTAINERD_ONLY, id="as-lab-up-writes-it"),
    ],
)
def test_the_merge_changes_nothing_when_the_store_is_already_on(text):
    assert hosted_plan.containerd_store_json(text, DAEMON) is None


def test_the_merge_of_its_own_output_is_a_fixed_point():
    once = hosted_plan.containerd_store_json(RUNNER_IMAGE_JSON, DAEMON)
    assert hosted_plan.containerd_store_json(once, DAEMON) is None


@pytest.mark.parametrize(
    ("text", "message"),
    [
        pytest.param('{"exec-opts": [', "is not valid JSON", id="invalid-json"),
        pytest.param('{"a": 1,}', "is not valid JSON", id="trailing-comma"),
        pytest.param('["features"]', "is not a JSON object", id="array"),
        pytest.param(
            '{"features": ["containerd-snapshotter"]}',
            '"features" is not a JSON object',
            id="features-list",
        ),
    ],
)
def test_a_broken_daemon_json_is_a_config_error_naming_the_file(text, message):
    path = Path("/tmp/runner/daemon.json")
    with pytest.raises(ConfigError) as err:
        hosted_plan.containerd_store_json(text, path)
    assert str(err.value).startswith(str(path))
    assert message in str(err.value) and "fix or remove it" in str(err.value)
    assert "\n" not in str(err.value)
    assert err.value.exit_code == 2


@pytest.mark.parametrize(
    ("text", "kept"),
    [
        pytest.param(None, (), id="absent"),
        pytest.param(RUNNER_IMAGE_JSON, ("exec-opts", "cgroup-parent"), id="runner-image"),
        pytest.param(
            '{"features": {"buildkit": true, "containerd-snapshotter": false}, "debug": true}',
            ("features.buildkit", "debug"),
            id="feature-flags",
        ),
    ],
)
def test_lab_up_names_the_settings_it_keeps(text, kept):
    assert hosted_plan.daemon_json_kept(text, DAEMON) == kept


# ------------------------------------------------------------------ the commands


def test_nothing_runs_when_the_engine_already_has_the_containerd_store():
    assert hosted_plan.hosted_engine_commands("containerd", None, path=DAEMON, root=False) == ()
    assert hosted_plan.hosted_engine_commands("containerd", "{}", path=DAEMON, root=False) == (), (
        "the engine's answer decides, not the file"
    )


TMP = "/etc/docker/.daemon.json.buildtasks-tmp"


@pytest.mark.parametrize(
    ("store", "text", "root", "argvs"),
    [
        pytest.param(
            "classic",
            RUNNER_IMAGE_JSON,
            False,
            [
                ("sudo", "-n", "tee", TMP),
                ("sudo", "-n", "mv", "-f", TMP, str(DAEMON)),
                ("sudo", "-n", "systemctl", "restart", "docker"),
            ],
            id="classic-runner-user",
        ),
        pytest.param(
            "classic",
            None,
            False,
            [
                ("sudo", "-n", "mkdir", "-p", "/etc/docker"),
                ("sudo", "-n", "tee", TMP),
                ("sudo", "-n", "mv", "-f", TMP, str(DAEMON)),
                ("sudo", "-n", "systemctl", "restart", "docker"),
            ],
            id="classic-no-file",
        ),
        pytest.param(
            "classic",
            RUNNER_IMAGE_JSON,
            True,
            [("tee", TMP), ("mv", "-f", TMP, str(DAEMON)), ("systemctl", "restart", "docker")],
            id="classic-as-root-no-sudo",
        ),
        pytest.param(
            "classic",
            CONTAINERD_ONLY,
            False,
            [("sudo", "-n", "systemctl", "restart", "docker")],
            id="file-already-on-engine-not-restarted",
        ),
        pytest.param(
            "",
            RUNNER_IMAGE_JSON,
            False,
            [
                ("sudo", "-n", "tee", TMP),
                ("sudo", "-n", "mv", "-f", TMP, str(DAEMON)),
                ("sudo", "-n", "systemctl", "restart", "docker"),
            ],
            id="no-engine-answers",
        ),
    ],
)
def test_the_commands_write_beside_the_file_rename_it_over_and_restart(store, text, root, argvs):
    commands = hosted_plan.hosted_engine_commands(store, text, path=DAEMON, root=root)
    assert [c.argv for c in commands] == argvs
    tee = [c for c in commands if "tee" in c.argv]
    if tee:
        assert tee[0].stdin == hosted_plan.containerd_store_json(text, DAEMON).encode()
    assert all(c.stdin is None for c in commands if "tee" not in c.argv)


def test_a_broken_daemon_json_stops_the_plan_before_any_command():
    with pytest.raises(ConfigError, match=r"^/etc/docker/daemon\.json is not valid JSON"):
        hosted_plan.hosted_engine_commands("classic", "{", path=DAEMON, root=False)


def test_qemu_is_registered_by_the_binfmt_image_pinned_by_digest():
    command = hosted_plan.binfmt_install(["arm64"])
    assert command.argv == (
        "docker",
        "run",
        "--privileged",
        "--rm",
        hosted_plan.BINFMT_IMAGE,
        "--install",
        "arm64",
    )
    assert hosted_plan.binfmt_install(["arm64", "riscv64"]).argv[-1] == "arm64,riscv64"
    name, _, digest = hosted_plan.BINFMT_IMAGE.partition("@")
    assert name.startswith("docker.io/tonistiigi/binfmt:qemu-v")
    assert len(digest) == len("sha256:") + 64 and digest.startswith("sha256:")


@pytest.mark.parametrize(
    ("driver_status", "store"),
    [
        pytest.param('[["driver-type","io.containerd.snapshotter.v1"]]', "containerd", id="json"),
        pytest.param(
            "[[driver-type io.containerd.snapshotter.v1]]", "containerd", id="go-template"
        ),
        pytest.param(
            '[["Backing Filesystem","extfs"],["Supports d_type","true"]]', "classic", id="overlay2"
        ),
        pytest.param("null", "classic", id="vfs-no-status"),
    ],
)
def test_the_image_store_is_read_from_the_driver_status(driver_status, store):
    assert plan.image_store(driver_status) == store


# ------------------------------------------------------------------ the operations


@dataclass
class FakeEngine(Runner):
    """A runner in front of a pretend GitHub runner engine.

    It answers the probes (`docker version`, `docker info`, `docker buildx version`,
    `docker ps`), records each command it is asked to run, applies `mkdir`/`tee`/`mv` to the
    files they name (under tmp_path) and makes `systemctl restart docker` switch the engine to
    `after_restart` ("" for an engine that does not come back).
    """

    store: str = "classic"
    version: str = "28.0.4"
    after_restart: str = "containerd"
    containers: int = 0
    registered: set[str] = field(default_factory=set)
    ran: list[tuple[str, ...]] = field(default_factory=list)

    def run(self, command: Command, *, capture=False, check=True, quiet=False, timeout=None):
        self.say(f"+ {command.shell()}")
        if self.dry:
            return Result(command, 0)
        argv = command.argv[2:] if command.argv[:2] == ("sudo", "-n") else command.argv
        self.ran.append(command.argv)
        if argv[0] == "mkdir":
            Path(argv[-1]).mkdir(parents=True, exist_ok=True)
        elif argv[0] == "tee":
            Path(argv[1]).write_bytes(command.stdin or b"")
        elif argv[0] == "mv":
            os.replace(argv[-2], argv[-1])
        elif argv == ("systemctl", "restart", "docker"):
            self.store = self.after_restart
            self.version = self.version if self.after_restart else ""
        elif argv[:2] == ("docker", "run"):
            self.registered.update(argv[-1].split(","))
        else:
            raise AssertionError(f"unexpected command {command.argv}")
        return Result(command, 0)

    def output(self, command: Command, *, quiet=True, timeout=None) -> str:
        argv = command.argv
        if argv[:2] in (("docker", "version"), ("docker", "info")) and not self.version:
            raise CommandFailed(argv, 1, "Cannot connect to the Docker daemon")
        if argv[:2] == ("docker", "version"):
            return self.version
        if argv[:2] == ("docker", "info"):
            if self.store == "containerd":
                return '[["driver-type","io.containerd.snapshotter.v1"]]'
            return '[["Backing Filesystem","extfs"],["Supports d_type","true"]]'
        if argv[:3] == ("docker", "buildx", "version"):
            return "github.com/docker/buildx v0.23.0 28c90ea"
        if argv[:2] == ("docker", "ps"):
            return "\n".join(f"{n:012x}" for n in range(self.containers))
        raise AssertionError(f"unexpected probe {argv}")

    @property
    def printed(self) -> str:
        return self.out.getvalue()  # type: ignore[attr-defined]


def fake(**kwargs) -> FakeEngine:
    return FakeEngine(echo=True, out=io.StringIO(), **kwargs)


@pytest.fixture
def runner_host(tmp_path, monkeypatch):
    """A GitHub-hosted runner's files under tmp_path: daemon.json, the lab directory; not root;
    QEMU handlers as the fake engine registers them."""
    daemon = tmp_path / "etc/docker/daemon.json"
    monkeypatch.setattr(hosted, "is_root", lambda: False)
    return daemon, tmp_path / "lab"


def hosted_lab(engine: FakeEngine, daemon: Path, home: Path, monkeypatch, **config) -> Lab:
    monkeypatch.setattr(hosted, "binfmt_registered", lambda arch: arch in engine.registered)
    loaded = config_mod.load(env={})
    loaded = dataclasses.replace(loaded, lab=dataclasses.replace(loaded.lab, **config))
    lab = Lab(loaded, engine, home=home, family="ubuntu", hosted=True)
    monkeypatch.setattr(
        Lab,
        "on_runner",
        property(
            lambda self: hosted.HostedLab(
                self.config,
                self.runner,
                self.home,
                self.detect_ca,
                daemon_json=daemon,
                restart_timeout=0.5,
            )
        ),
    )
    return lab


def test_up_on_a_classic_store_runner_merges_daemon_json_and_restarts(runner_host, monkeypatch):
    daemon, home = runner_host
    daemon.parent.mkdir(parents=True)
    daemon.write_text(RUNNER_IMAGE_JSON)
    engine = fake()
    state = hosted_lab(engine, daemon, home, monkeypatch, classic_engine=True).up()
    tmp = str(daemon.with_name(".daemon.json.buildtasks-tmp"))
    assert engine.ran == [
        ("sudo", "-n", "tee", tmp),
        ("sudo", "-n", "mv", "-f", tmp, str(daemon)),
        ("sudo", "-n", "systemctl", "restart", "docker"),
    ]
    assert json.loads(daemon.read_text()) == {
        "exec-opts": ["native.cgroupdriver=cgroupfs"],
        "cgroup-parent": "/actions_job",
        "features": {"containerd-snapshotter": True},
    }
    assert not Path(tmp).exists()
    out = engine.printed
    for line in (
        "lab: runner     GitHub-hosted runner: configuring its engine",
        "lab: engine     Docker 28.0.4 uses the classic image store: turning on the containerd",
        f"lab: engine     writing {daemon} (features.containerd-snapshotter=true; "
        "keeping exec-opts, cgroup-parent)",
        "lab: engine     restarted Docker 28.0.4 (containerd image store, GitHub-hosted runner)",
        "lab: buildx     ok  github.com/docker/buildx v0.23.0",
        "lab: classic    skipped: no second engine on a GitHub-hosted runner",
        "lab: ready",
    ):
        assert line in out, out
    for never in (
        "apt-get",
        "installing",
        "lab: packages",
        "lab: registry",
        "lab: base       ok",
        "dockerd",
        "lab: qemu",
        "debootstrap",
    ):
        assert never not in out, f"{never!r} on a GitHub-hosted runner:\n{out}"
    assert state.registry == "" and state.seeded == {} and state.started == {}
    assert State.load(home).started == {}


def test_a_second_up_changes_nothing_and_says_the_engine_is_ok(runner_host, monkeypatch):
    daemon, home = runner_host
    daemon.parent.mkdir(parents=True)
    daemon.write_text(RUNNER_IMAGE_JSON)
    first = fake()
    hosted_lab(first, daemon, home, monkeypatch).up()
    written = daemon.read_text()
    again = fake(store="containerd")
    hosted_lab(again, daemon, home, monkeypatch).up()
    assert again.ran == []
    assert daemon.read_text() == written
    assert (
        "lab: engine     ok  Docker 28.0.4 (containerd image store, GitHub-hosted runner)"
        in again.printed
    )
    assert "writing" not in again.printed and "restart" not in again.printed


def test_up_creates_daemon_json_when_the_runner_has_none(runner_host, monkeypatch):
    daemon, home = runner_host
    engine = fake()
    hosted_lab(engine, daemon, home, monkeypatch).up()
    assert engine.ran[0] == ("sudo", "-n", "mkdir", "-p", str(daemon.parent))
    assert daemon.read_text() == CONTAINERD_ONLY
    assert f"writing {daemon} (features.containerd-snapshotter=true)" in engine.printed


def test_up_restarts_an_engine_whose_file_is_right_but_store_is_not(runner_host, monkeypatch):
    daemon, home = runner_host
    daemon.parent.mkdir(parents=True)
    daemon.write_text(CONTAINERD_ONLY)
    engine = fake()
    hosted_lab(engine, daemon, home, monkeypatch).up()
    assert engine.ran == [("sudo", "-n", "systemctl", "restart", "docker")]
    assert "writing" not in engine.printed
    assert daemon.read_text() == CONTAINERD_ONLY


def test_up_warns_that_the_restart_stops_running_containers(runner_host, monkeypatch):
    daemon, home = runner_host
    engine = fake(containers=2)
    hosted_lab(engine, daemon, home, monkeypatch).up()
    assert "the restart stops 2 running container(s), service containers included" in engine.printed


def test_dry_up_prints_the_commands_and_changes_nothing(runner_host, monkeypatch):
    daemon, home = runner_host
    daemon.parent.mkdir(parents=True)
    daemon.write_text(RUNNER_IMAGE_JSON)
    engine = FakeEngine(dry=True, echo=True, out=io.StringIO())
    hosted_lab(engine, daemon, home, monkeypatch).up(qemu=True)
    assert engine.ran == [] and engine.store == "classic"
    assert daemon.read_text() == RUNNER_IMAGE_JSON
    assert not home.exists(), "a dry run saved the lab state"
    out = engine.printed
    assert f"+ sudo -n mv -f {daemon.with_name('.daemon.json.buildtasks-tmp')} {daemon}" in out
    assert "+ sudo -n systemctl restart docker" in out
    assert f"+ docker run --privileged --rm {hosted_plan.BINFMT_IMAGE} --install" in out
    assert "restarted" not in out


@pytest.mark.parametrize(
    ("after_restart", "message"),
    [
        pytest.param(
            "classic",
            "the engine still uses the classic image store after `systemctl restart docker`: "
            "does dockerd read",
            id="still-classic",
        ),
        pytest.param(
            "",
            "the Docker engine did not answer within 0s of `systemctl restart docker`: "
            "see `sudo journalctl -u docker`",
            id="engine-gone",
        ),
    ],
)
def test_up_fails_clearly_when_the_restarted_engine_lacks_the_store(
    runner_host, monkeypatch, after_restart, message
):
    daemon, home = runner_host
    engine = fake(after_restart=after_restart)
    with pytest.raises(EngineUnavailable) as err:
        hosted_lab(engine, daemon, home, monkeypatch).up()
    assert str(err.value).startswith(message)
    assert "\n" not in str(err.value)


def test_up_refuses_a_broken_daemon_json_before_any_command(runner_host, monkeypatch):
    daemon, home = runner_host
    daemon.parent.mkdir(parents=True)
    daemon.write_text('{"exec-opts": [')
    engine = fake()
    with pytest.raises(ConfigError, match=f"^{re.escape(str(daemon))} is not valid JSON"):
        hosted_lab(engine, daemon, home, monkeypatch).up()
    assert engine.ran == []


def test_qemu_only_with_the_flag_and_only_what_is_missing(runner_host, monkeypatch):
    daemon, home = runner_host
    foreign = "arm64" if native_arch() == "amd64" else "amd64"
    engine = fake(store="containerd")
    hosted_lab(engine, daemon, home, monkeypatch).up()
    assert engine.ran == [] and "qemu" not in engine.printed
    hosted_lab(engine, daemon, home, monkeypatch).up(qemu=True)
    assert engine.ran == [hosted_plan.binfmt_install([foreign]).argv]
    assert f"lab: qemu       enabled for {foreign}" in engine.printed
    again = fake(store="containerd", registered={foreign})
    hosted_lab(again, daemon, home, monkeypatch).up(qemu=True)
    assert again.ran == []
    assert f"lab: qemu       ok  (linux/{foreign})" in again.printed


@pytest.mark.parametrize(
    ("store", "engine_ok", "detail"),
    [
        pytest.param("containerd", True, "Docker 28.0.4, containerd image store", id="containerd"),
        pytest.param(
            "classic",
            False,
            "Docker 28.0.4, classic image store: run `uv run invoke lab.up`",
            id="classic",
        ),
    ],
)
def test_status_reports_engine_store_and_buildx_without_registry_or_stand_ins(
    runner_host, monkeypatch, store, engine_ok, detail
):
    daemon, home = runner_host
    lab = hosted_lab(fake(store=store), daemon, home, monkeypatch, classic_engine=True)
    rows = {part: (ok, text) for part, ok, text in lab.status()}
    assert rows["engine"] == (engine_ok, detail)
    assert rows["buildx"] == (True, "github.com/docker/buildx v0.23.0 28c90ea")
    assert rows["runner"][0] is True
    assert not {"packages", "registry", "engine classic"} & set(rows)
    assert not any(part.startswith("base ") for part in rows)


# ------------------------------------------------------------------ the real tasks

GITHUB_HOSTED = {"GITHUB_ACTIONS": "true", "RUNNER_ENVIRONMENT": "github-hosted"}


def invoke_as_act(*args: str):
    """`invoke ARGS` in the environment `act -self-hosted` gives a step: GITHUB_ACTIONS=true
    and no RUNNER_ENVIRONMENT at all (unset, not empty)."""
    env = {k: v for k, v in os.environ.items() if k != "RUNNER_ENVIRONMENT"}
    return subprocess.run(
        [sys.executable, "-m", "invoke", "--search-root", str(ROOT), *args],
        cwd=ROOT,
        env={**env, "GITHUB_ACTIONS": "true"},
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )


def rows_of(stdout: str) -> dict[str, str]:
    """`lab.status` output as part -> "ok"/"FAIL" (parts are the words before the detail)."""
    rows = {}
    for line in stdout.splitlines():
        status, _, rest = line.partition(" ")
        part = rest.strip().split("  ")[0]
        rows[part] = status
    return rows


def test_lab_up_help_names_every_option_and_the_hosted_behaviour():
    result = invoke("--help", "lab.up", env={"RUNNER_ENVIRONMENT": ""})
    assert result.returncode == 0, result.stderr
    for option in ("--qemu", "--platform", "--classic-engine"):
        assert option in result.stdout
    assert "GitHub-hosted runner" in result.stdout


@pytest.mark.lab
def test_under_act_lab_up_takes_the_lab_path_unchanged(lab):
    """GITHUB_ACTIONS=true without RUNNER_ENVIRONMENT (act): the lab's own lines (dry)."""
    result = invoke_as_act("--dry", "lab.up")
    assert result.returncode == 0, result.stderr
    assert "lab: packages   ok" in result.stderr
    assert "lab: registry   ok" in result.stderr
    assert "GitHub-hosted" not in result.stderr


@pytest.mark.lab
def test_under_act_lab_status_reports_the_lab(lab):
    result = invoke_as_act("lab.status")
    assert result.returncode == 0, result.stdout + result.stderr
    rows = rows_of(result.stdout)
    for part in ("packages", "engine", "buildx", "registry", "base python:3.11-slim"):
        assert rows.get(part) == "ok", result.stdout
    assert "runner" not in rows


@pytest.mark.lab
def test_the_hosted_path_through_invoke_leaves_a_containerd_engine_alone(tmp_path):
    """The real task with the GitHub-hosted variables, on this machine (not a runner): dry, so
    nothing could be written or restarted; this engine already has the containerd store, so
    the idempotent branch answers, and nothing of the lab (apt, registry, stand-ins) runs."""
    env = {**GITHUB_HOSTED, "BUILDTASKS_LAB_HOME": str(tmp_path / "lab")}
    before = DAEMON.read_text() if DAEMON.exists() else None
    result = invoke("--dry", "lab.up", "--classic-engine", env=env)
    assert result.returncode == 0, result.stderr
    err = result.stderr
    assert (
        "engine     ok  Docker" in err and "(containerd image store, GitHub-hosted runner)" in err
    )
    assert "lab: classic    skipped" in err and "lab: ready" in err
    for never in ("apt-get", "registry   ", "base       ok", "sudo", "systemctl"):
        assert never not in err, err
    assert (DAEMON.read_text() if DAEMON.exists() else None) == before

    status = invoke("lab.status", env=env)
    assert status.returncode == 0, status.stdout + status.stderr
    rows = rows_of(status.stdout)
    assert rows["runner"] == rows["engine"] == rows["buildx"] == "ok", status.stdout
    assert "containerd image store" in status.stdout
    assert not {"packages", "registry", "engine classic"} & set(rows), status.stdout
    assert not any(part.startswith("base ") for part in rows), status.stdout
