import pytest

from backend.urls import Target, parse_target, redact_url


@pytest.mark.parametrize(
    ("url", "target"),
    [
        ("postgresql://u:p@db.internal:6543/app", Target("db.internal", 6543)),
        ("postgresql://u:p@db.internal/app", Target("db.internal", 5432)),
        ("postgres://db", Target("db", 5432)),
        ("postgresql+psycopg://u:p@db/app", Target("db", 5432)),
        ("mysql://root:pw@mysql/app", Target("mysql", 3306)),
        ("redis://:pw@cache/0", Target("cache", 6379)),
        ("rediss://cache", Target("cache", 6379)),
        ("http://agents:8001", Target("agents", 8001)),
        ("https://agents.example", Target("agents.example", 443)),
        ("http://[::1]:8001/", Target("::1", 8001)),
    ],
)
def test_parse_target(url, target):
    assert parse_target(url) == target


def test_target_str_brackets_ipv6():
    assert str(Target("db", 5432)) == "db:5432"
    assert str(Target("::1", 5432)) == "[::1]:5432"


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("postgresql:///app", "no host"),
        ("db:5432", "no host"),
        ("amqp://rabbit/vhost", "no default port"),
        ("postgresql://u:secret@db:notaport/app", "invalid port"),
    ],
)
def test_parse_target_errors_do_not_echo_the_url(url, message):
    with pytest.raises(ValueError, match=message) as excinfo:
        parse_target(url)
    assert "secret" not in str(excinfo.value)


@pytest.mark.parametrize(
    ("url", "redacted"),
    [
        ("postgresql://u:s3cret@db:5432/app", "postgresql://u:***@db:5432/app"),
        ("redis://:s3cret@cache:6379/0", "redis://:***@cache:6379/0"),
        ("http://agents:8001", "http://agents:8001"),
        ("postgresql://u@db/app", "postgresql://u@db/app"),
        (
            "postgresql://db/app?sslmode=require&password=s3cret",
            "postgresql://db/app?sslmode=require&password=***",
        ),
    ],
)
def test_redact_url(url, redacted):
    assert redact_url(url) == redacted
