"""Readiness checks: actually connect to each configured dependency."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import httpx

from backend.settings import Settings
from backend.urls import REDACTED, parse_target

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Dependency:
    """A dependency to probe. ``health_path`` set means HTTP GET instead of a TCP connect."""

    name: str
    url: str
    health_path: str | None = None


def configured_dependencies(settings: Settings) -> list[Dependency]:
    """The dependencies named in ``settings``; unset ones are not checked."""
    deps = []
    if settings.database_url:
        deps.append(Dependency("database", settings.database_url))
    if settings.redis_url:
        deps.append(Dependency("redis", settings.redis_url))
    if settings.agents_url:
        deps.append(Dependency("agents", settings.agents_url, health_path="/health"))
    return deps


class DependencyError(Exception):
    """A dependency answered, but not in a healthy way."""


def _scrub(text: str, url: str) -> str:
    """Remove the URL's password from ``text``, in case an error message echoed it."""
    with contextlib.suppress(ValueError):
        password = urlsplit(url).password
        if password:
            text = text.replace(password, REDACTED)
    return text


def _describe(exc: BaseException) -> str:
    return str(exc) or type(exc).__name__


async def _tcp_connect(host: str, port: int) -> None:
    _, writer = await asyncio.open_connection(host, port)
    writer.close()
    with contextlib.suppress(OSError):
        await writer.wait_closed()


async def _http_health(client: httpx.AsyncClient, url: str, timeout: float) -> None:
    response = await client.get(url, timeout=timeout)
    if not response.is_success:
        raise DependencyError(f"health check returned HTTP {response.status_code}")


class ReadinessChecker:
    """Probes every dependency concurrently and logs when overall readiness changes."""

    def __init__(
        self, dependencies: list[Dependency], client: httpx.AsyncClient, timeout: float
    ) -> None:
        self.dependencies = dependencies
        self._client = client
        self._timeout = timeout
        self._last_ready: bool | None = None

    async def check(self) -> tuple[bool, dict[str, dict[str, Any]]]:
        """Return ``(ready, checks)`` where ``checks`` maps dependency name to its result."""
        results = await asyncio.gather(*(self._check_one(dep) for dep in self.dependencies))
        checks = {dep.name: result for dep, result in zip(self.dependencies, results, strict=True)}
        ready = all(result["ok"] for result in results)
        self._log_transition(ready, checks)
        return ready, checks

    async def _check_one(self, dep: Dependency) -> dict[str, Any]:
        try:
            target = parse_target(dep.url)
        except ValueError as exc:
            return {"ok": False, "target": None, "error": f"invalid URL: {exc}"}

        started = time.perf_counter()
        try:
            async with asyncio.timeout(self._timeout):
                if dep.health_path is None:
                    await _tcp_connect(target.host, target.port)
                else:
                    url = dep.url.rstrip("/") + dep.health_path
                    await _http_health(self._client, url, self._timeout)
        except (TimeoutError, httpx.TimeoutException):
            error = f"timed out after {self._timeout:g}s"
        except Exception as exc:
            error = _scrub(_describe(exc), dep.url)
        else:
            latency_ms = round((time.perf_counter() - started) * 1000, 1)
            return {"ok": True, "target": str(target), "latency_ms": latency_ms}
        return {"ok": False, "target": str(target), "error": error}

    def _log_transition(self, ready: bool, checks: dict[str, dict[str, Any]]) -> None:
        if ready == self._last_ready:
            return
        self._last_ready = ready
        if ready:
            logger.info("dependencies ready", extra={"checks": checks})
        else:
            failing = sorted(name for name, result in checks.items() if not result["ok"])
            logger.warning("dependencies not ready", extra={"failing": failing, "checks": checks})
