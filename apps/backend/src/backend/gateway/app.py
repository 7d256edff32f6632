"""The API gateway application."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
from fastapi import FastAPI
from fastapi.responses import JSONResponse

from backend.gateway.proxy import router as proxy_router
from backend.gateway.readiness import ReadinessChecker, configured_dependencies
from backend.settings import Settings
from backend.urls import redact_url
from backend.version import version_info

SERVICE = "api-gateway"

logger = logging.getLogger(__name__)


def create_app(settings: Settings, *, transport: httpx.AsyncBaseTransport | None = None) -> FastAPI:
    """Build the gateway. ``transport`` replaces the outbound HTTP transport (for tests)."""
    dependencies = configured_dependencies(settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with httpx.AsyncClient(
            transport=transport,
            timeout=settings.proxy_timeout,
            follow_redirects=False,
            trust_env=False,
        ) as client:
            app.state.http = client
            app.state.readiness = ReadinessChecker(dependencies, client, settings.ready_timeout)
            logger.info(
                f"{SERVICE} starting",
                extra={
                    **version_info(settings),
                    "host": settings.host,
                    "port": settings.port,
                    "dependencies": {dep.name: redact_url(dep.url) for dep in dependencies},
                },
            )
            yield
            logger.info(f"{SERVICE} stopping")

    app = FastAPI(title=SERVICE, version=settings.version, lifespan=lifespan)
    app.state.settings = settings

    @app.get("/health")
    async def health() -> dict[str, str]:
        """Liveness: the process is serving requests."""
        return {"status": "ok"}

    @app.get("/ready")
    async def ready() -> JSONResponse:
        """Readiness: every configured dependency accepts connections."""
        is_ready, checks = await app.state.readiness.check()
        if is_ready:
            return JSONResponse({"status": "ready", "checks": checks})
        return JSONResponse({"status": "not ready", "checks": checks}, status_code=503)

    @app.get("/version")
    async def version() -> dict[str, str]:
        """Build metadata baked into the image."""
        return version_info(settings)

    app.include_router(proxy_router)
    return app
