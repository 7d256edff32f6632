"""Fixtures for tests of the built web image: real containers on the real engine.

The image under test comes from `BUILDTASKS_IMAGE` (a digest or `name@sha256:...`), set by
`uv run nox -s image_tests` and `uv run invoke docker.build --test`. `BUILDTASKS_IMAGE_BACKEND`,
when set to a backend image, adds a test against a real API gateway.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

PORT = 8080


def docker(
    *args: str, check: bool = True, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["docker", *args], capture_output=True, text=True, check=check, timeout=timeout
    )


@pytest.fixture(scope="session")
def image() -> str:
    ref = os.environ.get("BUILDTASKS_IMAGE", "")
    if not ref:
        pytest.fail(
            "BUILDTASKS_IMAGE is not set: run these through `uv run nox -s image_tests` "
            "or `uv run invoke docker.build --test`"
        )
    return ref


@dataclass
class Response:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> dict:
        return json.loads(self.body or b"{}")


@dataclass
class Container:
    name: str
    port: int

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def request(self, path: str, method: str = "GET", timeout: float = 10) -> Response:
        req = urllib.request.Request(self.url(path), method=method)
        try:
            with urllib.request.urlopen(req, timeout=timeout) as response:
                headers = {k.lower(): v for k, v in response.headers.items()}
                return Response(response.status, headers, response.read())
        except urllib.error.HTTPError as exc:
            headers = {k.lower(): v for k, v in exc.headers.items()}
            return Response(exc.code, headers, exc.read())

    def get(self, path: str) -> tuple[int, dict]:
        response = self.request(path)
        return response.status, response.json()

    def health(self) -> str:
        out = docker("inspect", "--format", "{{json .State.Health}}", self.name).stdout
        return (json.loads(out) or {}).get("Status", "none")

    def wait_healthy(self, seconds: float = 30) -> float:
        """Wait for Docker to report the container healthy; return the seconds it took."""
        started = time.monotonic()
        while time.monotonic() - started < seconds:
            status = self.health()
            if status == "healthy":
                return time.monotonic() - started
            if status == "unhealthy" or not self.running():
                break
            time.sleep(0.1)
        logs = docker("logs", self.name, check=False).stderr[-2000:]
        raise AssertionError(f"{self.name} not healthy (state {self.health()}): {logs}")

    def running(self) -> bool:
        out = docker("inspect", "--format", "{{.State.Running}}", self.name, check=False).stdout
        return out.strip() == "true"


@pytest.fixture
def network() -> Iterator[str]:
    name = f"imgtest-{uuid.uuid4().hex[:8]}"
    docker("network", "create", name)
    yield name
    docker("network", "rm", name, check=False)


@pytest.fixture
def run_container(image: str) -> Iterator:
    """Start containers of the image under test (or of `image=`); all are removed afterwards."""
    started: list[str] = []

    def start(
        *args: str,
        env: dict[str, str] | None = None,
        network: str = "",
        alias: str = "",
        port: int = PORT,
        image: str = image,
    ) -> Container:
        name = f"imgtest-{uuid.uuid4().hex[:8]}"
        argv = ["run", "-d", "--name", name, "-p", f"127.0.0.1::{port}"]
        for key, value in (env or {}).items():
            argv += ["-e", f"{key}={value}"]
        if network:
            argv += ["--network", network]
        if alias:
            argv += ["--network-alias", alias]
        docker(*argv, image, *args)
        started.append(name)
        mapped = docker("port", name, f"{port}/tcp").stdout.strip().splitlines()[0]
        return Container(name, int(mapped.rsplit(":", 1)[1]))

    yield start
    for name in started:
        docker("rm", "-f", name, check=False)
