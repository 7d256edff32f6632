import asyncio
import logging
import socket
import time

import httpx
from fastapi.testclient import TestClient

from backend.agents import create_app as create_agents_app
from backend.gateway import create_app
from backend.gateway.readiness import Dependency, ReadinessChecker
from backend.settings import Settings

PASSWORD = "s3cr3t-pa55"


def ready(settings: Settings, **kwargs) -> httpx.Response:
    with TestClient(create_app(settings, **kwargs)) as client:
        return client.get("/ready")


def test_ready_without_dependencies():
    response = ready(Settings())
    assert response.status_code == 200
    assert response.json() == {"status": "ready", "checks": {}}


def test_ready_when_database_accepts_connections(listener):
    response = ready(Settings(database_url=f"postgresql://app:{PASSWORD}@127.0.0.1:{listener}/app"))
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "ready"
    assert body["checks"]["database"]["ok"] is True
    assert body["checks"]["database"]["target"] == f"127.0.0.1:{listener}"
    assert PASSWORD not in response.text


def test_not_ready_names_the_dependency_that_is_down(listener, closed_port, caplog):
    settings = Settings(
        database_url=f"postgresql://app:{PASSWORD}@127.0.0.1:{closed_port}/app",
        redis_url=f"redis://:{PASSWORD}@127.0.0.1:{listener}/0",
    )
    with caplog.at_level(logging.INFO):
        response = ready(settings)
    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "not ready"
    database = body["checks"]["database"]
    assert database["ok"] is False
    assert database["target"] == f"127.0.0.1:{closed_port}"
    assert database["error"]
    assert body["checks"]["redis"]["ok"] is True
    assert PASSWORD not in response.text
    assert PASSWORD not in caplog.text
    assert any(getattr(r, "failing", None) == ["database"] for r in caplog.records)


def test_ready_checks_agents_health_over_http(serve):
    with serve(create_agents_app(Settings())) as agents_url:
        response = ready(Settings(agents_url=agents_url))
    assert response.status_code == 200
    assert response.json()["checks"]["agents"]["ok"] is True


def test_agents_answering_with_an_error_is_not_ready():
    transport = httpx.MockTransport(lambda request: httpx.Response(500))
    response = ready(Settings(agents_url="http://agents.test:8001"), transport=transport)
    assert response.status_code == 503
    agents = response.json()["checks"]["agents"]
    assert agents == {
        "ok": False,
        "target": "agents.test:8001",
        "error": "health check returned HTTP 500",
    }


def test_silent_dependency_times_out(listener):
    # The listener accepts TCP connections but never answers HTTP.
    settings = Settings(agents_url=f"http://127.0.0.1:{listener}", ready_timeout=0.2)
    started = time.monotonic()
    response = ready(settings)
    assert time.monotonic() - started < 2
    assert response.status_code == 503
    assert response.json()["checks"]["agents"]["error"] == "timed out after 0.2s"


def test_unparseable_url_is_reported_not_raised():
    response = ready(Settings(database_url=f"postgresql://app:{PASSWORD}@:notaport/app"))
    assert response.status_code == 503
    database = response.json()["checks"]["database"]
    assert database["ok"] is False
    assert database["error"].startswith("invalid URL")
    assert PASSWORD not in response.text


def test_checks_run_concurrently():
    async def slow_health(request: httpx.Request) -> httpx.Response:
        await asyncio.sleep(0.3)
        return httpx.Response(200)

    async def run() -> tuple[bool, float]:
        async with httpx.AsyncClient(transport=httpx.MockTransport(slow_health)) as client:
            deps = [Dependency(f"svc{i}", f"http://svc{i}:80", "/health") for i in range(5)]
            checker = ReadinessChecker(deps, client, timeout=1.0)
            started = time.monotonic()
            is_ready, _ = await checker.check()
            return is_ready, time.monotonic() - started

    is_ready, elapsed = asyncio.run(run())
    assert is_ready
    assert elapsed < 1.0  # five sequential checks would take at least 1.5 s


def test_readiness_recovers_when_dependency_comes_up():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
        settings = Settings(redis_url=f"redis://127.0.0.1:{port}")
        with TestClient(create_app(settings)) as client:
            assert client.get("/ready").status_code == 503
            sock.listen(1)
            assert client.get("/ready").status_code == 200
