"""Behaviour of the running backend image, as an operator would check it."""

from __future__ import annotations

import json

import pytest

from buildtasks.testing.images import (
    assert_fast_healthcheck,
    assert_no_proxy_ca_in_layers,
    assert_within_size_budget,
    docker,
)

pytestmark = pytest.mark.lab


def test_gateway_turns_healthy_and_serves_health(service):
    assert service.get("/health") == (200, {"status": "ok"})


def test_version_reports_build_metadata(service, image):
    status, body = service.get("/version")
    assert status == 200
    config_env = docker("image", "inspect", "--format", "{{json .Config.Env}}", image).stdout
    env = dict(item.split("=", 1) for item in json.loads(config_env))
    assert body["version"] == env["APP_VERSION"]
    assert body["revision"] == env["APP_REVISION"]


def test_ready_is_503_naming_a_dependency_that_is_down(run_container):
    container = run_container(env={"DATABASE_URL": "postgresql://app:s3cret@127.0.0.1:1/app"})
    container.wait_healthy()
    status, body = container.get("/ready")
    assert status == 503
    assert body["checks"]["database"]["ok"] is False
    assert "s3cret" not in json.dumps(body)


def test_ready_is_200_when_the_agents_dependency_is_up_and_requests_are_forwarded(
    run_container, network
):
    # Both start at once: the gateway looks the agents up when asked, not at start-up.
    agents = run_container("agents", network=network, alias="agents", port=8001)
    gateway = run_container(env={"AGENTS_URL": "http://agents:8001"}, network=network)
    agents.wait_healthy()
    gateway.wait_healthy()
    status, body = gateway.get("/ready")
    assert (status, body["status"]) == (200, "ready"), body
    assert gateway.get("/api/agents/health")[0] == 200


def test_agents_mode_starts_and_is_healthy(run_container):
    agents = run_container("agents", port=8001)
    agents.wait_healthy()
    assert agents.get("/health")[0] == 200


#: Development tools that must not be importable in the runtime image.
DEV_MODULES = ("pytest", "ruff", "invoke", "nox", "buildtasks")

#: One run of the image's own Python, as its default user, answering several questions at once
#: (a `docker run` costs most of a second): the user id and what is importable.
PROBE = (
    "import importlib.util, json, os; "
    f"print(json.dumps({{'uid': os.getuid(), 'importable': [m for m in {DEV_MODULES!r} "
    "if importlib.util.find_spec(m)], 'hello': 'hello from the image'}))"
)


@pytest.fixture(scope="module")
def probe(image) -> dict:
    """What the image's Python says about itself, run as a command given to the image."""
    return json.loads(docker("run", "--rm", image, "python", "-c", PROBE).stdout)


def test_runs_as_a_non_root_user(image, probe):
    user = docker("image", "inspect", "--format", "{{.Config.User}}", image).stdout.strip()
    assert user and not user.startswith(("0", "root"))
    assert probe["uid"] != 0


def test_other_commands_are_executed_as_given(probe):
    assert probe["hello"] == "hello from the image"


@pytest.mark.parametrize("module", DEV_MODULES)
def test_dev_dependencies_and_tooling_are_absent(probe, module):
    assert module not in probe["importable"], f"{module} is importable in the runtime image"


def test_no_build_context_leftovers(image):
    script = (
        "import pathlib,sys; bad=[str(p) for p in map(pathlib.Path, ['/src','/app/.git','/.git',"
        "'/run/secrets/ca','/app/uv.lock','/root/.cache/uv']) if p.exists()]; "
        "bad+=[str(p) for p in pathlib.Path('/app').rglob('.venv') if p != pathlib.Path('/app/.venv')]; "
        "print(bad); sys.exit(1 if bad else 0)"
    )
    result = docker("run", "--rm", "--user", "0", image, "python", "-c", script, check=False)
    assert result.returncode == 0, result.stdout


def test_no_proxy_ca_in_any_layer(image, tmp_path):
    assert_no_proxy_ca_in_layers(image, tmp_path)


def test_unpacked_size_within_budget(image):
    assert_within_size_budget(image)


def test_healthcheck_is_declared_with_a_fast_start_interval(image):
    assert_fast_healthcheck(image)
