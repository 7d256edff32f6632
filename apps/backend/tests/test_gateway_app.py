import logging

from fastapi.testclient import TestClient

from backend.gateway import create_app
from backend.settings import Settings


def test_health():
    with TestClient(create_app(Settings())) as client:
        response = client.get("/health")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


def test_version_defaults():
    with TestClient(create_app(Settings.from_env({}))) as client:
        response = client.get("/version")
    assert response.json() == {"version": "dev", "revision": "unknown", "build_date": "unknown"}


def test_version_from_env():
    env = {"APP_VERSION": "1.4.0", "APP_REVISION": "0a1b2c3", "APP_BUILD_DATE": "2026-05-01"}
    with TestClient(create_app(Settings.from_env(env))) as client:
        response = client.get("/version")
    assert response.status_code == 200
    assert response.json() == {
        "version": "1.4.0",
        "revision": "0a1b2c3",
        "build_date": "2026-05-01",
    }


def test_startup_log_names_dependencies_without_secrets(caplog):
    settings = Settings.from_env(
        {
            "PORT": "8123",
            "APP_VERSION": "2.0.0",
            "DATABASE_URL": "postgresql://app:hunter2@db:5432/app",
            "REDIS_URL": "redis://:hunter2@cache:6379/0",
        }
    )
    with caplog.at_level(logging.INFO), TestClient(create_app(settings)):
        pass
    [record] = [r for r in caplog.records if r.getMessage() == "api-gateway starting"]
    assert record.version == "2.0.0"
    assert record.port == 8123
    assert record.dependencies == {
        "database": "postgresql://app:***@db:5432/app",
        "redis": "redis://:***@cache:6379/0",
    }
    assert "hunter2" not in caplog.text
    assert all("hunter2" not in str(vars(r)) for r in caplog.records)
