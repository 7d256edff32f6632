import asyncio
from typing import Any

import pytest
from fastapi.testclient import TestClient

from backend.agents import create_app
from backend.agents.jobs import HANDLERS
from backend.settings import Settings


async def block(payload: dict[str, Any]) -> None:
    await asyncio.Event().wait()


@pytest.fixture
def client():
    with TestClient(create_app(Settings())) as client:
        yield client


def wait_for_status(client: TestClient, task_id: str, eventually, status: str) -> dict:
    eventually(lambda: client.get(f"/tasks/{task_id}").json()["status"] == status)
    return client.get(f"/tasks/{task_id}").json()


def test_health_reports_running_worker(client):
    response = client.get("/health")
    assert response.status_code == 200
    assert response.json() == {"status": "ok", "worker": "running", "queued": 0}


def test_version(client):
    assert client.get("/version").json() == {
        "version": "dev",
        "revision": "unknown",
        "build_date": "unknown",
    }


def test_echo_task_runs_to_completion(client, eventually):
    response = client.post("/tasks", json={"kind": "echo", "payload": {"n": 1}})
    assert response.status_code == 202
    created = response.json()
    assert created["kind"] == "echo"
    assert created["status"] in {"queued", "running", "succeeded"}

    task = wait_for_status(client, created["id"], eventually, "succeeded")
    assert task["result"] == {"n": 1}
    assert task["error"] is None
    assert task["created_at"] <= task["started_at"] <= task["finished_at"]


def test_word_count_task(client, eventually):
    task_id = client.post(
        "/tasks", json={"kind": "word_count", "payload": {"text": "a b\nc"}}
    ).json()["id"]
    task = wait_for_status(client, task_id, eventually, "succeeded")
    assert task["result"] == {"words": 3, "lines": 2, "characters": 5}


def test_bad_payload_fails_the_task_not_the_loop(client, eventually):
    bad = client.post("/tasks", json={"kind": "sleep", "payload": {"seconds": "long"}}).json()
    task = wait_for_status(client, bad["id"], eventually, "failed")
    assert task["error"] == "payload.seconds must be a number"

    good = client.post("/tasks", json={"kind": "sleep", "payload": {"seconds": 0}}).json()
    assert wait_for_status(client, good["id"], eventually, "succeeded")["result"] == {"slept": 0.0}
    assert client.get("/health").status_code == 200


def test_unknown_kind_is_rejected(client):
    response = client.post("/tasks", json={"kind": "nope"})
    assert response.status_code == 422
    assert response.json()["detail"] == (
        "unknown task kind 'nope'; expected one of ['echo', 'sleep', 'word_count']"
    )


@pytest.mark.parametrize("body", [{}, {"kind": ""}, {"kind": "echo", "payload": [1]}])
def test_malformed_request_is_rejected(client, body):
    assert client.post("/tasks", json=body).status_code == 422


def test_unknown_task_is_404(client):
    response = client.get("/tasks/does-not-exist")
    assert response.status_code == 404


def test_full_queue_is_503_and_shutdown_cancels_work(eventually):
    app = create_app(Settings(), handlers={**HANDLERS, "block": block}, max_queued=1)
    with TestClient(app) as client:
        running = client.post("/tasks", json={"kind": "block"}).json()
        wait_for_status(client, running["id"], eventually, "running")
        queued = client.post("/tasks", json={"kind": "echo"})
        assert queued.status_code == 202

        rejected = client.post("/tasks", json={"kind": "echo"})
        assert rejected.status_code == 503
        assert rejected.headers["retry-after"] == "1"
        assert client.get("/health").json()["queued"] == 1

    runner = app.state.runner
    assert not runner.running
    assert runner.get(running["id"]).status == "cancelled"
    assert runner.get(queued.json()["id"]).status == "cancelled"
