"""Start the real services as processes, the way the container does, and stop them with SIGTERM."""

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

ENTRYPOINT = Path(__file__).resolve().parents[1] / "docker-entrypoint.sh"
BASH = shutil.which("bash") or "/bin/bash"


def service_env(port: int, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.endswith("_URL")}
    # The venv's console scripts (api-gateway, agents) must be on PATH, as in the image.
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env.update({"HOST": "127.0.0.1", "PORT": str(port)})
    env.update(extra)
    return env


@contextmanager
def running(args: list[str], env: dict[str, str]) -> Iterator[subprocess.Popen]:
    proc = subprocess.Popen(
        args, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()


def wait_healthy(base_url: str, proc: subprocess.Popen, timeout: float = 15) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"service exited early: {proc.communicate()[1]}")
        try:
            if httpx.get(f"{base_url}/health", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.05)
    pytest.fail("service did not become healthy")


def stop(proc: subprocess.Popen) -> tuple[int, str]:
    proc.send_signal(signal.SIGTERM)
    _, stderr = proc.communicate(timeout=15)
    return proc.returncode, stderr


def json_lines(stderr: str) -> list[dict]:
    return [json.loads(line) for line in stderr.splitlines() if line.startswith("{")]


# uvicorn shuts down gracefully, then re-raises the signal it caught (exit status 143).
STOPPED_BY_SIGTERM = -signal.SIGTERM


def test_gateway_via_entrypoint_logs_and_stops_on_sigterm(free_port):
    env = service_env(
        free_port,
        APP_VERSION="9.9.9",
        DATABASE_URL="postgresql://app:topsecret@127.0.0.1:1/app",
    )
    with running([BASH, str(ENTRYPOINT)], env) as proc:
        base_url = f"http://127.0.0.1:{free_port}"
        wait_healthy(base_url, proc)
        assert httpx.get(f"{base_url}/version").json()["version"] == "9.9.9"
        ready = httpx.get(f"{base_url}/ready")
        assert ready.status_code == 503
        assert "topsecret" not in ready.text
        code, stderr = stop(proc)  # the entrypoint exec'd, so this PID is the service

    assert code == STOPPED_BY_SIGTERM
    assert f"docker-entrypoint: starting api-gateway on port {free_port}" in stderr
    assert "topsecret" not in stderr
    [startup] = [e for e in json_lines(stderr) if e["msg"] == "api-gateway starting"]
    assert startup["service"] == "api-gateway"
    assert startup["version"] == "9.9.9"
    assert startup["port"] == free_port
    assert startup["dependencies"] == {"database": "postgresql://app:***@127.0.0.1:1/app"}
    assert any(e["msg"] == "api-gateway stopping" for e in json_lines(stderr))


def test_agents_loop_stops_on_sigterm(free_port):
    with running([sys.executable, "-m", "backend.agents"], service_env(free_port)) as proc:
        base_url = f"http://127.0.0.1:{free_port}"
        wait_healthy(base_url, proc)
        response = httpx.post(
            f"{base_url}/tasks", json={"kind": "sleep", "payload": {"seconds": 30}}
        )
        assert response.status_code == 202
        started = time.monotonic()
        code, stderr = stop(proc)

    assert code == STOPPED_BY_SIGTERM
    assert time.monotonic() - started < 10
    messages = [e["msg"] for e in json_lines(stderr)]
    assert "task loop started" in messages
    assert "task loop stopped" in messages


def test_invalid_configuration_exits_with_a_clear_message(free_port):
    env = service_env(free_port, PORT="not-a-port")
    proc = subprocess.run(
        [sys.executable, "-m", "backend.gateway"],
        env=env,
        capture_output=True,
        text=True,
        timeout=15,
    )
    assert proc.returncode == 1
    assert "api-gateway: invalid configuration: PORT must be an integer" in proc.stderr


@pytest.mark.parametrize("command", ["api-gateway", "agents"])
def test_console_script_help_lists_environment(command, free_port):
    proc = subprocess.run(
        [BASH, str(ENTRYPOINT), command, "--help"],
        env=service_env(free_port),
        capture_output=True,
        text=True,
        timeout=15,
    )
    assert proc.returncode == 0
    assert f"usage: {command}" in proc.stdout
    assert "PORT" in proc.stdout
    assert ("AGENTS_URL" in proc.stdout) is (command == "api-gateway")


def test_reload_restarts_the_service_when_its_source_changes(free_port, tmp_path):
    """RELOAD=1 (compose.dev.yaml): an edit to the mounted source is served without a restart."""
    import backend

    source = tmp_path / "src"
    shutil.copytree(Path(backend.__file__).parent, source / "backend")
    env = service_env(free_port, RELOAD="1", PYTHONPATH=str(source))
    base = f"http://127.0.0.1:{free_port}"
    with running([sys.executable, "-m", "backend.gateway"], env) as proc:
        wait_healthy(base, proc)
        assert httpx.get(f"{base}/health").json() == {"status": "ok"}
        app = source / "backend/gateway/app.py"
        app.write_text(app.read_text().replace('{"status": "ok"}', '{"status": "edited"}'))
        deadline = time.monotonic() + 20
        status = ""
        while time.monotonic() < deadline and status != "edited":
            time.sleep(0.2)
            with contextlib.suppress(httpx.TransportError, ValueError):
                status = httpx.get(f"{base}/health", timeout=1).json()["status"]
        assert status == "edited"
        stop(proc)
