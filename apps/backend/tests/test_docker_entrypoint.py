import os
import shutil
import subprocess
from pathlib import Path

import pytest

ENTRYPOINT = Path(__file__).resolve().parents[1] / "docker-entrypoint.sh"
BASH = shutil.which("bash") or "/bin/bash"

# Stands in for a console script: prints its name, arguments and PID.
FAKE_COMMAND = '#!/bin/sh\nprintf "%s|%s|%s\\n" "${0##*/}" "$*" "$$"\n'


@pytest.fixture
def fake_bin(tmp_path: Path) -> Path:
    for name in ("api-gateway", "agents", "python3"):
        path = tmp_path / name
        path.write_text(FAKE_COMMAND)
        path.chmod(0o755)
    return tmp_path


def run(*args: str, path: str | None = None, **env: str) -> subprocess.Popen:
    environment = {k: v for k, v in os.environ.items() if k != "PORT"}
    environment.update(env)
    if path is not None:
        environment["PATH"] = path
    return subprocess.Popen(
        [BASH, str(ENTRYPOINT), *args],
        env=environment,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def finish(proc: subprocess.Popen) -> tuple[int, str, str]:
    stdout, stderr = proc.communicate(timeout=10)
    return proc.returncode, stdout, stderr


def test_is_executable_with_bash_shebang():
    assert os.access(ENTRYPOINT, os.X_OK)
    assert ENTRYPOINT.read_text().startswith("#!/usr/bin/env bash\n")


@pytest.mark.parametrize("flag", ["--help", "-h", "help"])
def test_help(flag):
    code, stdout, _ = finish(run(flag))
    assert code == 0
    assert stdout.startswith("Usage: docker-entrypoint.sh")
    assert "api-gateway" in stdout
    assert "agents" in stdout


def test_runs_arbitrary_commands():
    code, stdout, stderr = finish(run("echo", "hi"))
    assert code == 0
    assert stdout == "hi\n"
    assert "docker-entrypoint: running command: echo" in stderr


def test_unknown_command_passes_through_with_its_exit_status():
    code, _, _ = finish(run("sh", "-c", "exit 7"))
    assert code == 7
    code, _, stderr = finish(run("no-such-command-here"))
    assert code == 127
    assert "no-such-command-here" in stderr


@pytest.mark.parametrize(
    ("args", "expected_argv", "port_line"),
    [
        ((), "api-gateway|", "starting api-gateway on port 8000"),
        (("api-gateway",), "api-gateway|", "starting api-gateway on port 8000"),
        (("api-gateway", "--x", "y"), "api-gateway|--x y", "starting api-gateway on port 8000"),
        (("--x",), "api-gateway|--x", "starting api-gateway on port 8000"),
        (("agents",), "agents|", "starting agents on port 8001"),
    ],
)
def test_selects_the_service_and_execs_it(fake_bin, args, expected_argv, port_line):
    proc = run(*args, path=f"{fake_bin}{os.pathsep}{os.environ['PATH']}")
    code, stdout, stderr = finish(proc)
    assert code == 0
    name_and_args, _, pid = stdout.strip().rpartition("|")
    assert name_and_args == expected_argv
    assert int(pid) == proc.pid, "the service must replace the shell (exec)"
    assert f"docker-entrypoint: {port_line}" in stderr


def test_reports_the_configured_port(fake_bin):
    proc = run("agents", path=f"{fake_bin}{os.pathsep}{os.environ['PATH']}", PORT="9100")
    _, _, stderr = finish(proc)
    assert "docker-entrypoint: starting agents on port 9100" in stderr


def test_falls_back_to_python_module_without_console_script(fake_bin):
    (fake_bin / "api-gateway").unlink()
    proc = run("api-gateway", "--x", path=str(fake_bin))
    code, stdout, _ = finish(proc)
    assert code == 0
    assert stdout.strip().rpartition("|")[0] == "python3|-m backend.gateway --x"
