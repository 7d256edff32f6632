"""Forward ``/api/agents/{path}`` to the agents service."""

from __future__ import annotations

import logging
from collections.abc import Mapping

import httpx
from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse

from backend.settings import Settings

logger = logging.getLogger(__name__)

router = APIRouter()

# RFC 9110 section 7.6.1: connection-specific headers are not forwarded.
HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "proxy-connection",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
    }
)
# httpx sets Host and Content-Length itself and returns bodies already decoded;
# the gateway's own server adds Date and Server.
_DROP_REQUEST = HOP_BY_HOP | {"host", "content-length"}
_DROP_RESPONSE = HOP_BY_HOP | {"content-length", "content-encoding", "date", "server"}

METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"]


def _connection_tokens(headers: Mapping[str, str]) -> set[str]:
    """Header names listed in ``Connection``, which are hop-by-hop as well."""
    value = headers.get("connection", "")
    return {token.strip().lower() for token in value.split(",") if token.strip()}


def _request_headers(request: Request) -> list[tuple[str, str]]:
    drop = _DROP_REQUEST | _connection_tokens(request.headers)
    headers = [(k, v) for k, v in request.headers.items() if k.lower() not in drop]
    client_host = request.client.host if request.client else None
    if client_host:
        prior = request.headers.get("x-forwarded-for")
        forwarded_for = f"{prior}, {client_host}" if prior else client_host
        headers = [(k, v) for k, v in headers if k.lower() != "x-forwarded-for"]
        headers.append(("x-forwarded-for", forwarded_for))
    if "x-forwarded-proto" not in request.headers:
        headers.append(("x-forwarded-proto", request.url.scheme))
    if "host" in request.headers and "x-forwarded-host" not in request.headers:
        headers.append(("x-forwarded-host", request.headers["host"]))
    return headers


@router.api_route("/api/agents/{path:path}", methods=METHODS, include_in_schema=False)
async def forward_to_agents(path: str, request: Request) -> Response:
    settings: Settings = request.app.state.settings
    if not settings.agents_url:
        return JSONResponse(
            {"detail": "AGENTS_URL is not configured; the agents service is not available"},
            status_code=404,
        )
    if any(segment in {".", ".."} for segment in path.split("/")):
        return JSONResponse({"detail": "path must not contain '.' or '..' segments"}, 400)

    url = f"{settings.agents_url.rstrip('/')}/{path}"
    if request.url.query:
        url = f"{url}?{request.url.query}"

    client: httpx.AsyncClient = request.app.state.http
    upstream_request = client.build_request(
        request.method, url, headers=_request_headers(request), content=await request.body()
    )
    try:
        upstream = await client.send(upstream_request)
    except httpx.TimeoutException:
        logger.warning("agents request timed out", extra={"method": request.method, "path": path})
        return JSONResponse({"detail": "agents service timed out"}, status_code=504)
    except httpx.RequestError as exc:
        error = str(exc) or type(exc).__name__
        logger.warning(
            "agents service unreachable",
            extra={"method": request.method, "path": path, "error": error},
        )
        return JSONResponse(
            {"detail": "agents service unreachable", "error": error}, status_code=502
        )

    response = Response(content=upstream.content, status_code=upstream.status_code)
    drop = _DROP_RESPONSE | _connection_tokens(upstream.headers)
    for key, value in upstream.headers.multi_items():
        if key.lower() not in drop:
            response.headers.append(key, value)
    if request.method == "HEAD" and "content-length" in upstream.headers:
        response.headers["content-length"] = upstream.headers["content-length"]
    return response
