"""`stack.smoke`: the three services together, in their real images, through one outage.

In a project of its own (so a developer's running stack is untouched), on ports the engine
picks: start everything and wait until healthy; send a task through the web server to the
gateway to the agents worker and read its result back; stop the agents and see the
gateway's `/ready` turn 503 and the status page (its own `loadStatus`, run in the web image's
Node.js) say the agents are unavailable; start the agents and see both recover; then remove
the project and check that no container, network or volume of it is left.
"""

from __future__ import annotations

import json
import os
import statistics
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from buildtasks import stack as stack_mod
from buildtasks.command import Command
from buildtasks.config import Config
from buildtasks.errors import BuildtasksError, GateFailed
from buildtasks.imagetests import image_env
from buildtasks.runner import Runner

WEB, GATEWAY, AGENTS = "web", "gateway", "agents"
WEB_PORT = 8080
#: The status page's own logic (served bundled; run here as the module it is built from).
STATUS_MODULE = "apps/frontend/src/status.js"
#: How many task round trips the figure is the median of.
ROUND_TRIPS = 20
#: How long a state change (an outage seen, a recovery) may take to show.
SETTLE_SECONDS = 60.0


@dataclass(frozen=True)
class Figures:
    """What `stack.smoke` measured, for docs/benchmarks.md."""

    healthy_seconds: float
    round_trip_ms: float
    outage_seconds: float
    recovery_seconds: float
    total_seconds: float

    def lines(self) -> tuple[str, ...]:
        return (
            f"all healthy after {self.healthy_seconds:.1f} s",
            f"task round trip web → gateway → agents: {self.round_trip_ms:.1f} ms "
            f"(median of {ROUND_TRIPS})",
            f"agents stopped → /ready 503 in {self.outage_seconds:.1f} s; started → 200 in "
            f"{self.recovery_seconds:.1f} s",
            f"smoke test {self.total_seconds:.1f} s, nothing left behind",
        )


def http(
    method: str, url: str, body: Mapping[str, object] | None = None, timeout: float = 5.0
) -> tuple[int, object]:
    """One HTTP exchange: (status, JSON body or None); status 0 when nothing answered."""
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, method=method)
    request.add_header("accept", "application/json")
    if data is not None:
        request.add_header("content-type", "application/json")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            status, raw = response.status, response.read()
    except urllib.error.HTTPError as exc:
        status, raw = exc.code, exc.read()
    except (OSError, TimeoutError):
        return 0, None
    try:
        return status, json.loads(raw)
    except ValueError:
        return status, None


def wait_for(what: str, check: Callable[[], bool], timeout: float = SETTLE_SECONDS) -> float:
    """Poll `check` until true; the seconds it took, or fail naming `what`."""
    started = time.monotonic()
    while True:
        if check():
            return time.monotonic() - started
        if time.monotonic() - started > timeout:
            raise GateFailed(f"stack smoke: {what} did not happen within {timeout:.0f} s")
        time.sleep(0.2)


def round_trip(web: str) -> float:
    """Submit a word count through web → gateway → agents and read the result; seconds."""
    started = time.monotonic()
    text = "the stack answers through three services"
    status, task = http(
        "POST",
        f"{web}/api/gateway/api/agents/tasks",
        {"kind": "word_count", "payload": {"text": text}},
    )
    if status != 202 or not isinstance(task, dict):
        raise GateFailed(
            f"stack smoke: submitting a task through the web server gave HTTP {status}"
        )
    url = f"{web}/api/gateway/api/agents/tasks/{task['id']}"
    while True:
        status, task = http("GET", url)
        state = task.get("status") if isinstance(task, dict) else None
        if state == "succeeded":
            break
        if state == "failed" or status != 200 or time.monotonic() - started > 10:
            raise GateFailed(
                f"stack smoke: the task through the web server ended {state or status}"
            )
        time.sleep(0.01)
    if task.get("result", {}).get("words") != len(text.split()):
        raise GateFailed(f"stack smoke: the agents worker answered {task.get('result')}")
    return time.monotonic() - started


def page_script(status_module: str, origin: str) -> bytes:
    """The status page's module, then a call of its `loadStatus` against `origin`."""
    return (
        status_module
        + "\nconst s = await loadStatus({ fetch: (url, options) => fetch("
        + json.dumps(origin)
        + " + url, options) })\nconsole.log(JSON.stringify(s))\n"
    ).encode()


def page_status(runner: Runner, config: Config, network: str, web_image: str) -> dict:
    """What the status page shows, computed by the page's own code in the web image."""
    module = (config.root / STATUS_MODULE).read_text(encoding="utf-8")
    command = Command(
        (
            "docker",
            "run",
            "--rm",
            "-i",
            "--network",
            network,
            "--entrypoint",
            "node",
            web_image,
            "--input-type=module",
        ),
        stdin=page_script(module, f"http://{WEB}:{WEB_PORT}"),
    )
    out = runner.run(command, capture=True, quiet=True).stdout.strip().splitlines()
    return json.loads(out[-1]) if out else {}


def smoke(config: Config, runner: Runner, *, project: str = "") -> Figures:
    """Run the smoke test; always removes the project, and fails if anything of it remains."""
    project = project or f"monorepo-smoke-{os.getpid()}"
    stack = stack_mod.stack_for(
        config,
        project=project,
        env={"WEB_PUBLISH": "127.0.0.1:", "GATEWAY_PUBLISH": "127.0.0.1:"},
    )
    images = stack_mod.recorded_images(config, stack, runner)
    web_image = images[image_env("frontend")]
    begun = time.monotonic()
    try:
        runner.run(stack_mod.up(stack))
        healthy = time.monotonic() - begun
        address = runner.run(stack_mod.port(stack, WEB, WEB_PORT), capture=True).stdout.strip()
        web = f"http://{address.splitlines()[-1]}"
        runner.say(f"stack: all healthy after {healthy:.1f} s; web at {web}")
        trips = [round_trip(web) for _ in range(ROUND_TRIPS)]
        runner.say(f"stack: {ROUND_TRIPS} tasks went web → gateway → agents and back")

        def ready_is(code: int) -> Callable[[], bool]:
            return lambda: http("GET", f"{web}/api/gateway/ready")[0] == code

        network = f"{project}_default"
        stopping = time.monotonic()
        runner.run(stack_mod.stop(stack, AGENTS))
        wait_for("the gateway's /ready turning 503 without the agents", ready_is(503))
        outage = time.monotonic() - stopping
        page = page_status(runner, config, network, web_image)
        if page.get("state") != "degraded" or "agents" not in str(page.get("headline")):
            raise GateFailed(f"stack smoke: with the agents stopped the page shows {page}")
        runner.say(f"stack: agents stopped: /ready 503, the page says {page['headline']!r}")
        starting = time.monotonic()
        runner.run(stack_mod.start(stack, AGENTS))
        wait_for("the gateway's /ready returning to 200", ready_is(200))
        recovery = time.monotonic() - starting
        page = page_status(runner, config, network, web_image)
        if page.get("state") != "up":
            raise GateFailed(f"stack smoke: with the agents back the page shows {page}")
        runner.say(f"stack: agents started: /ready 200, the page says {page['headline']!r}")
    except BuildtasksError:
        runner.run(stack_mod.logs(stack, tail="30"), check=False)  # what the services said
        raise
    finally:
        runner.run(stack_mod.down(stack), check=False)
    left = [
        line
        for command in stack_mod.leftovers(project)
        for line in runner.run(command, capture=True, quiet=True).stdout.split()
    ]
    if left:
        raise BuildtasksError(f"stack smoke: {project} left {len(left)} objects behind: {left}")
    return Figures(
        healthy,
        statistics.median(trips) * 1000,
        outage,
        recovery,
        time.monotonic() - begun,
    )
