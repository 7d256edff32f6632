"""In-memory task queue and the loop that works through it."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from backend.agents.jobs import Handler

logger = logging.getLogger(__name__)


class TaskStatus(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"


FINISHED = frozenset({TaskStatus.SUCCEEDED, TaskStatus.FAILED, TaskStatus.CANCELLED})


def _now() -> datetime:
    return datetime.now(UTC)


@dataclass
class Task:
    kind: str
    payload: dict[str, Any]
    id: str = field(default_factory=lambda: uuid.uuid4().hex)
    status: TaskStatus = TaskStatus.QUEUED
    result: Any = None
    error: str | None = None
    created_at: datetime = field(default_factory=_now)
    started_at: datetime | None = None
    finished_at: datetime | None = None

    def to_dict(self) -> dict[str, Any]:
        def iso(moment: datetime | None) -> str | None:
            return moment.isoformat() if moment else None

        return {
            "id": self.id,
            "kind": self.kind,
            "status": self.status.value,
            "payload": self.payload,
            "result": self.result,
            "error": self.error,
            "created_at": iso(self.created_at),
            "started_at": iso(self.started_at),
            "finished_at": iso(self.finished_at),
        }


class UnknownTaskKind(ValueError):
    pass


class QueueFull(Exception):
    pass


class TaskRunner:
    """Accepts tasks into a bounded queue and runs them one at a time in a background loop.

    Finished tasks are kept for lookup, up to ``max_retained`` (oldest dropped first).
    Must be created and used inside a running event loop.
    """

    def __init__(
        self,
        handlers: Mapping[str, Handler],
        *,
        max_queued: int = 1000,
        max_retained: int = 1000,
    ) -> None:
        self._handlers = dict(handlers)
        self._queue: asyncio.Queue[Task] = asyncio.Queue(maxsize=max_queued)
        self._tasks: OrderedDict[str, Task] = OrderedDict()
        self._max_retained = max_retained
        self._loop_task: asyncio.Task[None] | None = None

    @property
    def kinds(self) -> list[str]:
        return sorted(self._handlers)

    @property
    def running(self) -> bool:
        return self._loop_task is not None and not self._loop_task.done()

    @property
    def queued(self) -> int:
        return self._queue.qsize()

    def submit(self, kind: str, payload: dict[str, Any]) -> Task:
        if kind not in self._handlers:
            raise UnknownTaskKind(kind)
        task = Task(kind=kind, payload=payload)
        try:
            self._queue.put_nowait(task)
        except asyncio.QueueFull:
            raise QueueFull from None
        self._tasks[task.id] = task
        self._prune()
        logger.info("task queued", extra={"task_id": task.id, "kind": kind})
        return task

    def get(self, task_id: str) -> Task | None:
        return self._tasks.get(task_id)

    async def join(self) -> None:
        """Wait until every task queued so far has finished."""
        await self._queue.join()

    def start(self) -> None:
        if self.running:
            raise RuntimeError("task runner is already running")
        self._loop_task = asyncio.create_task(self._run(), name="agents-task-loop")

    async def stop(self) -> None:
        """Stop the loop; a task still running is cancelled, queued ones are dropped."""
        if self._loop_task is None:
            return
        self._loop_task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._loop_task
        dropped = 0
        while not self._queue.empty():
            task = self._queue.get_nowait()
            self._finish(task, TaskStatus.CANCELLED, error="service shut down before it ran")
            dropped += 1
        logger.info("task loop stopped", extra={"dropped": dropped})

    async def _run(self) -> None:
        logger.info("task loop started", extra={"kinds": self.kinds})
        while True:
            task = await self._queue.get()
            try:
                await self._execute(task)
            finally:
                self._queue.task_done()

    async def _execute(self, task: Task) -> None:
        task.status = TaskStatus.RUNNING
        task.started_at = _now()
        try:
            result = await self._handlers[task.kind](task.payload)
        except asyncio.CancelledError:
            self._finish(task, TaskStatus.CANCELLED, error="service shut down while it ran")
            raise
        except Exception as exc:
            self._finish(task, TaskStatus.FAILED, error=str(exc) or type(exc).__name__)
            logger.warning(
                "task failed",
                extra={"task_id": task.id, "kind": task.kind, "error": task.error},
                exc_info=not isinstance(exc, ValueError),
            )
        else:
            task.result = result
            self._finish(task, TaskStatus.SUCCEEDED)
            logger.info("task succeeded", extra={"task_id": task.id, "kind": task.kind})

    def _finish(self, task: Task, status: TaskStatus, error: str | None = None) -> None:
        task.status = status
        task.error = error
        task.finished_at = _now()

    def _prune(self) -> None:
        excess = len(self._tasks) - self._max_retained
        if excess <= 0:
            return
        for task_id in [t.id for t in self._tasks.values() if t.status in FINISHED][:excess]:
            del self._tasks[task_id]
