import httpx
import pytest
from fastapi import FastAPI, Request, Response
from fastapi.testclient import TestClient

from backend.agents import create_app as create_agents_app
from backend.gateway import create_app
from backend.settings import Settings


def echo_upstream() -> FastAPI:
    """An upstream that reports exactly what it received."""
    app = FastAPI()

    @app.api_route("/{path:path}", methods=["GET", "POST", "PUT", "PATCH", "DELETE"])
    async def echo(path: str, request: Request) -> Response:
        response = Response(
            content=(await request.body()) or b"-",
            status_code=int(request.query_params.get("status", "200")),
            media_type="application/octet-stream",
        )
        response.headers["x-upstream-method"] = request.method
        response.headers["x-upstream-path"] = request.url.path
        response.headers["x-upstream-query"] = request.url.query
        for name in ("x-custom", "x-forwarded-for", "x-forwarded-proto", "x-hop", "host"):
            response.headers[f"x-seen-{name}"] = request.headers.get(name, "<none>")
        response.headers.append("set-cookie", "a=1")
        response.headers.append("set-cookie", "b=2")
        return response

    return app


@pytest.fixture
def upstream(serve):
    with serve(echo_upstream()) as base_url:
        yield base_url


@pytest.mark.parametrize("method", ["GET", "POST", "PUT", "PATCH", "DELETE"])
def test_forwards_method_path_query_body_and_headers(upstream, method):
    with TestClient(create_app(Settings(agents_url=upstream))) as client:
        response = client.request(
            method,
            "/api/agents/some/path?x=1&x=2&q=a%20b",
            content=b"request-body" if method != "GET" else None,
            headers={
                "x-custom": "kept",
                "x-forwarded-for": "10.0.0.1",
                "connection": "x-hop",
                "x-hop": "dropped",
            },
        )
    assert response.status_code == 200
    assert response.headers["x-upstream-method"] == method
    assert response.headers["x-upstream-path"] == "/some/path"
    assert response.headers["x-upstream-query"] == "x=1&x=2&q=a%20b"
    assert response.headers["x-seen-x-custom"] == "kept"
    assert response.headers["x-seen-x-forwarded-for"] == "10.0.0.1, testclient"
    assert response.headers["x-seen-x-forwarded-proto"] == "http"
    assert response.headers["x-seen-x-hop"] == "<none>"
    assert response.headers["x-seen-host"] == upstream.removeprefix("http://")
    assert response.headers.get_list("set-cookie") == ["a=1", "b=2"]
    expected = b"request-body" if method != "GET" else b"-"
    assert response.content == expected


def test_returns_upstream_error_status_and_body(upstream):
    with TestClient(create_app(Settings(agents_url=upstream))) as client:
        response = client.post("/api/agents/x?status=418", content=b"teapot")
    assert response.status_code == 418
    assert response.content == b"teapot"


def test_agents_url_with_path_prefix(upstream):
    with TestClient(create_app(Settings(agents_url=f"{upstream}/v1/"))) as client:
        response = client.get("/api/agents/tasks")
    assert response.headers["x-upstream-path"] == "/v1/tasks"


def test_rejects_dot_segments(upstream):
    with TestClient(create_app(Settings(agents_url=f"{upstream}/v1"))) as client:
        response = client.get("/api/agents/a/%2E%2E/%2E%2E/admin")
    assert response.status_code == 400


def test_round_trip_to_real_agents_service(serve, eventually):
    with (
        serve(create_agents_app(Settings())) as agents_url,
        TestClient(create_app(Settings(agents_url=agents_url))) as client,
    ):
        submitted = client.post(
            "/api/agents/tasks", json={"kind": "word_count", "payload": {"text": "one two three"}}
        )
        assert submitted.status_code == 202
        task_id = submitted.json()["id"]

        def finished() -> bool:
            return client.get(f"/api/agents/tasks/{task_id}").json()["status"] == "succeeded"

        eventually(finished)
        task = client.get(f"/api/agents/tasks/{task_id}").json()
        assert task["result"] == {"words": 3, "lines": 1, "characters": 13}
        assert client.get("/api/agents/tasks/nope").status_code == 404


def test_not_configured_is_404():
    with TestClient(create_app(Settings())) as client:
        response = client.get("/api/agents/tasks")
    assert response.status_code == 404
    assert "AGENTS_URL is not configured" in response.json()["detail"]


def test_unreachable_agents_is_502(closed_port):
    with TestClient(create_app(Settings(agents_url=f"http://127.0.0.1:{closed_port}"))) as client:
        response = client.get("/api/agents/tasks/1")
    assert response.status_code == 502
    assert response.json()["detail"] == "agents service unreachable"


def test_connect_error_is_502_with_mock_transport():
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    app = create_app(
        Settings(agents_url="http://agents:8001"), transport=httpx.MockTransport(refuse)
    )
    with TestClient(app) as client:
        response = client.post("/api/agents/tasks", json={"kind": "echo"})
    assert response.status_code == 502
    assert response.json() == {
        "detail": "agents service unreachable",
        "error": "connection refused",
    }


def test_upstream_timeout_is_504():
    def slow(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadTimeout("timed out", request=request)

    app = create_app(Settings(agents_url="http://agents:8001"), transport=httpx.MockTransport(slow))
    with TestClient(app) as client:
        response = client.get("/api/agents/tasks/1")
    assert response.status_code == 504
    assert response.json() == {"detail": "agents service timed out"}
