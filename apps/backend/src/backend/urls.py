"""Helpers for dependency URLs: network targets and secret-free display forms."""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

DEFAULT_PORTS: dict[str, int] = {
    "postgresql": 5432,
    "postgres": 5432,
    "mysql": 3306,
    "mariadb": 3306,
    "redis": 6379,
    "rediss": 6379,
    "http": 80,
    "https": 443,
}

_SECRET_QUERY_KEY = re.compile(r"pass|secret|token|key", re.IGNORECASE)
REDACTED = "***"


@dataclass(frozen=True)
class Target:
    """A ``host:port`` pair to connect to."""

    host: str
    port: int

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"


def parse_target(url: str) -> Target:
    """Return the host and port that ``url`` points at.

    The port defaults by scheme (``postgresql+psycopg`` counts as ``postgresql``).
    Error messages never include the URL itself, since it may carry credentials.
    """
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        raise ValueError("URL is malformed or has an invalid port") from None
    if not parts.hostname:
        raise ValueError("URL has no host")
    if port is None:
        scheme = parts.scheme.lower().split("+", 1)[0]
        port = DEFAULT_PORTS.get(scheme)
        if port is None:
            raise ValueError(f"URL has no port and scheme {scheme!r} has no default port")
    return Target(parts.hostname, port)


def redact_url(url: str) -> str:
    """Return ``url`` with its password and secret-looking query values masked."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<malformed URL>"
    netloc = parts.netloc
    userinfo, at, hostport = netloc.rpartition("@")
    if at and ":" in userinfo:
        user = userinfo.split(":", 1)[0]
        netloc = f"{user}:{REDACTED}@{hostport}"
    query = parts.query
    if query:
        pairs = parse_qsl(query, keep_blank_values=True)
        query = urlencode(
            [(k, REDACTED if _SECRET_QUERY_KEY.search(k) else v) for k, v in pairs], safe="*"
        )
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))
