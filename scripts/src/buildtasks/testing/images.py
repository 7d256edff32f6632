"""Fixtures and checks for tests of built images: real containers on the real engine.

A pytest plugin, shipped with the `testing` extra (`buildtasks[testing]`). Each app's
`tests/image/conftest.py` imports the fixtures it needs from here and sets its
service port with a session-scoped `container_port` fixture. `service` is one healthy
container shared by a module's read-only tests; containers are removed in the background
while the next test runs. The image under test comes from
`BUILDTASKS_IMAGE` (a digest or `name@sha256:...`), set by `uv run nox -s image_tests` and
`uv run invoke docker.build --test`; its size budget from `BUILDTASKS_SIZE_BUDGET_MB`.
"""

from __future__ import annotations

import functools
import gzip
import json
import os
import shlex
import subprocess
import tarfile
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from buildtasks import containers
from buildtasks.containers import unpacked_bytes
from buildtasks.engine import remote_host
from buildtasks.imagetests import BUDGET_ENV, IMAGE_ENV


def docker(
    *args: str, check: bool = True, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    """Run the docker CLI; with `check`, fail the test showing docker's error."""
    try:
        return containers.docker(*args, check=check, timeout=timeout)
    except RuntimeError as exc:
        raise AssertionError(str(exc)) from None


@dataclass
class Response:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> dict:
        return json.loads(self.body or b"{}")


@dataclass
class Container:
    """A running container whose service port is published where this process reaches it.

    On a local engine (a socket: the lab, Docker Desktop, Colima) that is 127.0.0.1; on a
    remote one (`DOCKER_HOST=tcp://host:2375`, `ssh://user@host`) the remote host.
    """

    name: str
    port: int
    address: str = "127.0.0.1"

    def url(self, path: str) -> str:
        return f"http://{self.address}:{self.port}{path}"

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

    def running(self) -> bool:
        out = docker("inspect", "--format", "{{.State.Running}}", self.name, check=False).stdout
        return out.strip() == "true"

    def wait_healthy(self, seconds: float = 90) -> float:
        """Wait for Docker to report the container healthy; return the seconds it took.

        90 s by default: on a loaded machine (a CI runner building another platform under
        QEMU) every probe of the start period can time out, and Docker then probes again
        only after the healthcheck's interval (30 s for these images), so 30 s is too short
        to tell a slow start from a broken one. How fast an image starts is the benchmark's
        to measure (`docker run → healthy`), not a test's to assert.
        """
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


@pytest.fixture(scope="session")
def image() -> str:
    ref = os.environ.get(IMAGE_ENV, "")
    if not ref:
        pytest.fail(
            "BUILDTASKS_IMAGE is not set: run these through `uv run nox -s image_tests` "
            "or `uv run invoke docker.build --test`"
        )
    return ref


@pytest.fixture
def network(removals) -> Iterator[str]:
    """A user-defined network, so containers reach each other by alias."""
    name = f"imgtest-{uuid.uuid4().hex[:8]}"
    docker("network", "create", name)
    yield name
    # Containers of run_container may still be attached (fixtures tear down in reverse
    # order): they go first, then the network, in the background.
    attached = docker(
        "network", "inspect", "--format", "{{range .Containers}}{{.Name}} {{end}}", name
    ).stdout.split()
    remove_later(removals, attached, network=name)


def engine_endpoint() -> str:
    """DOCKER_HOST, or the current docker context's endpoint."""
    if host := os.environ.get("DOCKER_HOST", ""):
        return host
    context = docker("context", "inspect", "--format", "{{.Endpoints.docker.Host}}", check=False)
    return context.stdout.strip()


@functools.cache
def published_address() -> tuple[str, str]:
    """(bind, connect): where containers publish their port and where the tests connect.

    A remote engine publishes on all its interfaces and is reached by its host name; a
    local one (or one reached over loopback) publishes on 127.0.0.1 only.
    """
    host = remote_host(engine_endpoint())
    if not host or host == "localhost" or host.startswith("127.") or host == "::1":
        return "127.0.0.1", "127.0.0.1"
    return "0.0.0.0", host


def start_container(
    image: str,
    port: int,
    *args: str,
    env: dict[str, str] | None = None,
    network: str = "",
    alias: str = "",
) -> Container:
    """`docker run -d` one container of `image`, its `port` published where the tests reach it."""
    name = f"imgtest-{uuid.uuid4().hex[:8]}"
    bind, connect = published_address()
    argv = ["run", "-d", "--name", name, "-p", f"{bind}::{port}"]
    for key, value in (env or {}).items():
        argv += ["-e", f"{key}={value}"]
    if network:
        argv += ["--network", network]
    if alias:
        argv += ["--network-alias", alias]
    try:
        docker(*argv, image, *args)
    except AssertionError:
        # A run that fails after creating the container (a port in use) leaves it behind.
        docker("rm", "-f", name, check=False)
        raise
    mapped = docker("port", name, f"{port}/tcp").stdout.strip().splitlines()[0]
    return Container(name, int(mapped.rsplit(":", 1)[1]), connect)


@pytest.fixture(scope="session")
def removals() -> Iterator[list[subprocess.Popen[bytes]]]:
    """Containers being removed in the background; the session waits for them at its end.

    A `docker rm -f` takes about half a second; the next test need not wait for it.
    """
    pending: list[subprocess.Popen[bytes]] = []
    yield pending
    for proc in pending:
        proc.wait(timeout=120)


def remove_later(
    pending: list[subprocess.Popen[bytes]], names: list[str], *, network: str = ""
) -> None:
    """Start removing the containers `names`, then `network`, without waiting (see `removals`)."""
    steps = []
    if names:
        steps.append(shlex.join(["docker", "rm", "-f", *names]))
    if network:
        # Another removal of the same containers may still be under way: retry for a while.
        remove = shlex.join(["docker", "network", "rm", network])
        steps.append(f"for _ in $(seq 40); do {remove} && break; sleep 0.25; done")
    if steps:
        pending.append(
            subprocess.Popen(
                ["sh", "-c", "; ".join(steps)],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
        )


@pytest.fixture
def run_container(image: str, container_port: int, removals) -> Iterator:
    """Start containers of the image under test (or of `image=`); all are removed afterwards."""
    started: list[str] = []

    def start(
        *args: str,
        env: dict[str, str] | None = None,
        network: str = "",
        alias: str = "",
        port: int = container_port,
        image: str = image,
    ) -> Container:
        container = start_container(image, port, *args, env=env, network=network, alias=alias)
        started.append(container.name)
        return container

    yield start
    remove_later(removals, started)


@pytest.fixture(scope="module")
def service(image: str, container_port: int, removals) -> Iterator[Container]:
    """One healthy container of the image under test, as it starts with no settings.

    Shared by a module's tests that only read from it (health, version, pages), so the
    service starts once instead of once per test. A test that changes the container's
    state (stops it, sets its environment) starts its own with `run_container`.
    """
    container = start_container(image, container_port)
    try:
        container.wait_healthy()
        yield container
    finally:
        remove_later(removals, [container.name])


# ----------------------------------------------------------------------------- checks


def size_budget_mb() -> int:
    """The configured budget of the image under test, 0 when none is configured."""
    return int(os.environ.get(BUDGET_ENV, "0"))


def local_ca_markers(directory: Path = Path("/usr/local/share/ca-certificates")) -> list[bytes]:
    """A body line of each CA added on this machine (a proxy's CA), to look for in layers."""
    found = []
    for path in directory.rglob("*.crt"):
        lines = [ln for ln in path.read_bytes().splitlines() if ln and not ln.startswith(b"-----")]
        if len(lines) > 2:
            found.append(lines[len(lines) // 2])
    return found


def layers_containing(image: str, markers: list[bytes], workdir: Path) -> list[str]:
    """The blobs of `docker save IMAGE` (layers decompressed) that contain any marker."""
    archive = workdir / "image.tar"
    with open(archive, "wb") as out:
        subprocess.run(["docker", "save", image], stdout=out, check=True, timeout=300)
    hits = []
    with tarfile.open(archive) as outer:
        for member in outer.getmembers():
            if not member.isfile() or member.size < 512:
                continue
            extracted = outer.extractfile(member)
            data = extracted.read() if extracted else b""
            if data[:2] == b"\x1f\x8b":
                data = gzip.decompress(data)
            if any(marker in data for marker in markers):
                hits.append(member.name)
    return hits


def assert_no_proxy_ca_in_layers(image: str, workdir: Path) -> None:
    """Fail when a CA added on this machine (a proxy's) reached any layer of `image`."""
    markers = local_ca_markers()
    if not markers:
        pytest.skip("this machine has no locally added CA to look for")
    assert layers_containing(image, markers, workdir) == [], "the proxy CA reached a layer"


def assert_within_size_budget(image: str) -> None:
    """Fail when `image` unpacks to more than its configured budget."""
    budget = size_budget_mb()
    if not budget:
        pytest.skip("no size budget configured for this image")
    megabytes = unpacked_bytes(image) / 1_000_000
    print(f"unpacked size: {megabytes:.1f} MB (budget {budget} MB)")
    assert megabytes <= budget, f"image is {megabytes:.1f} MB unpacked, budget {budget} MB"


def assert_fast_healthcheck(image: str) -> None:
    """Fail unless `image` declares a HEALTHCHECK probing every ≤ 2 s during start-up."""
    health = json.loads(
        docker("image", "inspect", "--format", "{{json .Config.Healthcheck}}", image).stdout
    )
    assert health and health["Test"][0] in ("CMD", "CMD-SHELL")
    assert health.get("StartInterval", 0) and health["StartInterval"] <= 2_000_000_000
