"""Runtime configuration, read once from an environment mapping."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass

GATEWAY_DEFAULT_PORT = 8000
AGENTS_DEFAULT_PORT = 8001


def _get(env: Mapping[str, str], name: str) -> str | None:
    """Return the stripped value of ``name``, treating empty strings as unset."""
    value = env.get(name, "").strip()
    return value or None


def _port(env: Mapping[str, str], default: int) -> int:
    raw = _get(env, "PORT")
    if raw is None:
        return default
    try:
        port = int(raw)
    except ValueError:
        raise ValueError(f"PORT must be an integer, got {raw!r}") from None
    if not 1 <= port <= 65535:
        raise ValueError(f"PORT must be between 1 and 65535, got {port}")
    return port


def _positive_float(env: Mapping[str, str], name: str, default: float) -> float:
    raw = _get(env, name)
    if raw is None:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ValueError(f"{name} must be a number of seconds, got {raw!r}") from None
    if not value > 0:
        raise ValueError(f"{name} must be greater than 0, got {raw!r}")
    return value


def _log_level(env: Mapping[str, str]) -> str:
    level = (_get(env, "LOG_LEVEL") or "INFO").upper()
    if not isinstance(logging.getLevelName(level), int):
        raise ValueError(f"LOG_LEVEL must be a level name such as DEBUG or INFO, got {level!r}")
    return level


def _flag(env: Mapping[str, str], name: str) -> bool:
    raw = (_get(env, name) or "0").lower()
    if raw not in ("0", "1", "true", "false"):
        raise ValueError(f"{name} must be 1 or 0, got {raw!r}")
    return raw in ("1", "true")


@dataclass(frozen=True)
class Settings:
    """Configuration shared by the gateway and the agents worker.

    Build it with :meth:`from_env`; the application code never reads ``os.environ``.
    """

    host: str = "0.0.0.0"
    port: int = GATEWAY_DEFAULT_PORT
    log_level: str = "INFO"
    database_url: str | None = None
    redis_url: str | None = None
    agents_url: str | None = None
    version: str = "dev"
    revision: str = "unknown"
    build_date: str = "unknown"
    ready_timeout: float = 1.0
    proxy_timeout: float = 30.0
    #: Restart the service when its source changes (development: compose.dev.yaml).
    reload: bool = False

    @classmethod
    def from_env(
        cls, env: Mapping[str, str], *, default_port: int = GATEWAY_DEFAULT_PORT
    ) -> Settings:
        """Build settings from an environment mapping such as ``os.environ``.

        Raises ``ValueError`` with a readable message for malformed values.
        """
        return cls(
            host=_get(env, "HOST") or cls.host,
            port=_port(env, default_port),
            log_level=_log_level(env),
            database_url=_get(env, "DATABASE_URL"),
            redis_url=_get(env, "REDIS_URL"),
            agents_url=_get(env, "AGENTS_URL"),
            version=_get(env, "APP_VERSION") or cls.version,
            revision=_get(env, "APP_REVISION") or cls.revision,
            build_date=_get(env, "APP_BUILD_DATE") or cls.build_date,
            ready_timeout=_positive_float(env, "READY_TIMEOUT", cls.ready_timeout),
            proxy_timeout=_positive_float(env, "PROXY_TIMEOUT", cls.proxy_timeout),
            reload=_flag(env, "RELOAD"),
        )
