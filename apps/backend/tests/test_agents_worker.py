import asyncio
from typing import Any

import pytest

from backend.agents import jobs
from backend.agents.worker import QueueFull, TaskRunner, TaskStatus, UnknownTaskKind


async def wait_idle(runner: TaskRunner) -> None:
    await asyncio.wait_for(runner.join(), timeout=5)


def test_runs_tasks_in_order_and_survives_failures():
    seen: list[int] = []

    async def record(payload: dict[str, Any]) -> int:
        seen.append(payload["n"])
        return payload["n"] * 2

    async def explode(payload: dict[str, Any]) -> None:
        raise RuntimeError("boom")

    async def scenario() -> None:
        runner = TaskRunner({"record": record, "explode": explode})
        runner.start()
        first = runner.submit("record", {"n": 1})
        failing = runner.submit("explode", {})
        last = runner.submit("record", {"n": 2})
        await wait_idle(runner)

        assert seen == [1, 2]
        assert (first.status, first.result) == (TaskStatus.SUCCEEDED, 2)
        assert (failing.status, failing.error) == (TaskStatus.FAILED, "boom")
        assert (last.status, last.result) == (TaskStatus.SUCCEEDED, 4)
        assert runner.running
        await runner.stop()
        assert not runner.running

    asyncio.run(scenario())


def test_stop_cancels_running_and_queued_tasks():
    started = asyncio.Event()

    async def block(payload: dict[str, Any]) -> None:
        started.set()
        await asyncio.Event().wait()

    async def scenario() -> None:
        runner = TaskRunner({"block": block})
        runner.start()
        running = runner.submit("block", {})
        queued = runner.submit("block", {})
        await asyncio.wait_for(started.wait(), timeout=5)

        await asyncio.wait_for(runner.stop(), timeout=5)
        assert not runner.running
        assert running.status == TaskStatus.CANCELLED
        assert queued.status == TaskStatus.CANCELLED
        assert running.finished_at is not None

    asyncio.run(scenario())


def test_rejects_unknown_kinds_and_overflow():
    async def scenario() -> None:
        runner = TaskRunner(jobs.HANDLERS, max_queued=2)  # loop not started: nothing drains
        with pytest.raises(UnknownTaskKind):
            runner.submit("nope", {})
        runner.submit("echo", {})
        runner.submit("echo", {})
        with pytest.raises(QueueFull):
            runner.submit("echo", {})
        assert runner.queued == 2

    asyncio.run(scenario())


def test_keeps_a_bounded_history_of_finished_tasks():
    async def scenario() -> None:
        runner = TaskRunner(jobs.HANDLERS, max_retained=3)
        runner.start()
        tasks = []
        for n in range(5):
            tasks.append(runner.submit("echo", {"n": n}))
            await wait_idle(runner)
        assert [runner.get(t.id) for t in tasks[:2]] == [None, None]
        assert [runner.get(t.id).result for t in tasks[2:]] == [{"n": 2}, {"n": 3}, {"n": 4}]
        await runner.stop()

    asyncio.run(scenario())


def test_start_twice_is_an_error():
    async def scenario() -> None:
        runner = TaskRunner(jobs.HANDLERS)
        runner.start()
        with pytest.raises(RuntimeError):
            runner.start()
        await runner.stop()

    asyncio.run(scenario())


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        ({"seconds": True}, "must be a number"),
        ({"seconds": -1}, "between 0 and 60"),
        ({"seconds": 61}, "between 0 and 60"),
    ],
)
def test_sleep_validates_payload(payload, message):
    with pytest.raises(ValueError, match=message):
        asyncio.run(jobs.sleep(payload))


def test_word_count_requires_text():
    with pytest.raises(ValueError, match=r"payload\.text must be a string"):
        asyncio.run(jobs.word_count({}))
