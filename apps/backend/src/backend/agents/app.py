"""The agents worker application: a task API in front of the task loop."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, HTTPException
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from backend.agents.jobs import HANDLERS, Handler
from backend.agents.worker import QueueFull, TaskRunner, UnknownTaskKind
from backend.settings import Settings
from backend.version import version_info

SERVICE = "agents"

logger = logging.getLogger(__name__)


class TaskRequest(BaseModel):
    kind: str = Field(min_length=1, max_length=64, examples=["word_count"])
    payload: dict[str, Any] = Field(default_factory=dict, examples=[{"text": "hello world"}])


def create_app(
    settings: Settings,
    *,
    handlers: Mapping[str, Handler] = HANDLERS,
    max_queued: int = 1000,
) -> FastAPI:
    """Build the agents app; the task loop runs for as long as the app's lifespan."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        runner = TaskRunner(handlers, max_queued=max_queued)
        app.state.runner = runner
        logger.info(
            f"{SERVICE} starting",
            extra={**version_info(settings), "host": settings.host, "port": settings.port},
        )
        runner.start()
        try:
            yield
        finally:
            logger.info(f"{SERVICE} stopping")
            await runner.stop()

    app = FastAPI(title=SERVICE, version=settings.version, lifespan=lifespan)

    def runner_of() -> TaskRunner:
        return app.state.runner

    @app.get("/health")
    async def health() -> JSONResponse:
        """Liveness: the process serves and its task loop is alive."""
        runner = runner_of()
        if runner.running:
            return JSONResponse({"status": "ok", "worker": "running", "queued": runner.queued})
        return JSONResponse({"status": "unhealthy", "worker": "stopped"}, status_code=503)

    @app.get("/version")
    async def version() -> dict[str, str]:
        return version_info(settings)

    @app.post("/tasks", status_code=202)
    async def submit_task(body: TaskRequest) -> dict[str, Any]:
        """Queue a task; poll ``GET /tasks/{id}`` for its result."""
        runner = runner_of()
        try:
            task = runner.submit(body.kind, body.payload)
        except UnknownTaskKind:
            raise HTTPException(
                422, f"unknown task kind {body.kind!r}; expected one of {runner.kinds}"
            ) from None
        except QueueFull:
            raise HTTPException(503, "task queue is full", headers={"Retry-After": "1"}) from None
        return task.to_dict()

    @app.get("/tasks/{task_id}")
    async def get_task(task_id: str) -> dict[str, Any]:
        task = runner_of().get(task_id)
        if task is None:
            raise HTTPException(404, f"task {task_id!r} not found")
        return task.to_dict()

    return app
