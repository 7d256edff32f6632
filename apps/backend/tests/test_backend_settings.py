import pytest

from backend.settings import AGENTS_DEFAULT_PORT, Settings


def test_defaults_from_empty_env():
    settings = Settings.from_env({})
    assert settings == Settings()
    assert settings.host == "0.0.0.0"
    assert settings.port == 8000
    assert (settings.version, settings.revision, settings.build_date) == (
        "dev",
        "unknown",
        "unknown",
    )
    assert settings.database_url is settings.redis_url is settings.agents_url is None


def test_reads_every_variable():
    env = {
        "HOST": "127.0.0.1",
        "PORT": "9000",
        "LOG_LEVEL": "debug",
        "DATABASE_URL": "postgresql://u:p@db/app",
        "REDIS_URL": "redis://cache:6379/0",
        "AGENTS_URL": "http://agents:8001",
        "APP_VERSION": "1.2.3",
        "APP_REVISION": "abc123",
        "APP_BUILD_DATE": "2026-01-02T03:04:05Z",
        "READY_TIMEOUT": "0.5",
        "PROXY_TIMEOUT": "10",
    }
    assert Settings.from_env(env) == Settings(
        host="127.0.0.1",
        port=9000,
        log_level="DEBUG",
        database_url="postgresql://u:p@db/app",
        redis_url="redis://cache:6379/0",
        agents_url="http://agents:8001",
        version="1.2.3",
        revision="abc123",
        build_date="2026-01-02T03:04:05Z",
        ready_timeout=0.5,
        proxy_timeout=10.0,
    )


def test_empty_values_count_as_unset():
    settings = Settings.from_env({"PORT": "", "DATABASE_URL": "  ", "APP_VERSION": ""})
    assert settings.port == 8000
    assert settings.database_url is None
    assert settings.version == "dev"


def test_default_port_is_per_service():
    assert Settings.from_env({}, default_port=AGENTS_DEFAULT_PORT).port == 8001
    assert Settings.from_env({"PORT": "7000"}, default_port=AGENTS_DEFAULT_PORT).port == 7000


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"PORT": "http"}, "PORT must be an integer"),
        ({"PORT": "70000"}, "PORT must be between 1 and 65535"),
        ({"LOG_LEVEL": "chatty"}, "LOG_LEVEL"),
        ({"READY_TIMEOUT": "0"}, "READY_TIMEOUT must be greater than 0"),
        ({"PROXY_TIMEOUT": "soon"}, "PROXY_TIMEOUT must be a number"),
    ],
)
def test_rejects_malformed_values(env, message):
    with pytest.raises(ValueError, match=message):
        Settings.from_env(env)


def test_is_frozen():
    with pytest.raises(AttributeError):
        Settings().port = 1  # type: ignore[misc]


@pytest.mark.parametrize(
    ("raw", "expected"), [("", False), ("0", False), ("1", True), ("true", True)]
)
def test_reload_is_off_unless_asked_for(raw, expected):
    assert Settings.from_env({"RELOAD": raw}).reload is expected


def test_a_reload_that_is_not_a_flag_is_refused():
    with pytest.raises(ValueError, match="RELOAD must be 1 or 0, got 'yes'"):
        Settings.from_env({"RELOAD": "yes"})
