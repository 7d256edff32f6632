"""Measure build speed, start-up time and image size with the real engine.

`uv run nox -s benchmark` runs these and prints a Markdown table; `-- --write` also replaces
the measured table in docs/benchmarks.md. Figures are medians of repeated runs: a benchmark,
not a timed assertion, so a slow machine never fails a test.
"""

from __future__ import annotations

import json
import os
import shlex
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from buildtasks import timing
from buildtasks.build import BuildOptions, build_image
from buildtasks.command import Command
from buildtasks.config import Config, ImageSpec
from buildtasks.containers import seconds_to_healthy, unpacked_bytes
from buildtasks.runner import Runner

BEGIN = "<!-- benchmark:begin -->"
END = "<!-- benchmark:end -->"


@dataclass(frozen=True)
class Figure:
    name: str
    value: float
    unit: str
    bar: str = ""
    runs: int = 1

    def row(self) -> str:
        value = f"{self.value:.2f}" if self.unit in ("s", "x") else f"{self.value:.1f}"
        shown = f"{value}x" if self.unit == "x" else f"{value} {self.unit}"
        return f"| {self.name} | {shown} | {self.bar} | {self.runs} |"


def median_of(runs: int, measure: Callable[[], float]) -> float:
    return statistics.median(measure() for _ in range(runs))


def timed(action: Callable[[], object]) -> float:
    started = time.perf_counter()
    action()
    return time.perf_counter() - started


def invoke_list_seconds(root: Path, runs: int) -> float:
    """How long `uv run --locked invoke --list` takes from a shell (uv's start-up included)."""

    def once() -> float:
        return timed(
            lambda: subprocess.run(
                ["uv", "run", "--locked", "invoke", "--list"],
                cwd=root,
                capture_output=True,
                check=True,
            )
        )

    once()  # warm the file cache
    return median_of(runs, once)


def buildx_argv(stderr: str) -> list[str]:
    """The `docker buildx build` argv a task echoed (`+ docker buildx build ...`)."""
    line = next(line for line in stderr.splitlines() if line.startswith("+ docker buildx build "))
    return shlex.split(line[2:])


def measure_wrapper(
    root: Path, image: ImageSpec, *, runs: int, env: Mapping[str, str]
) -> list[Figure]:
    """A no-change `uv run invoke docker.build` against `docker buildx build` with the very
    argument list it ran, in alternation; and the task's own steps around buildx, read from
    the timing table it records (`env` names the artifacts directory and the platforms)."""
    task = ["uv", "run", "--locked", "invoke", "docker.build", "--image", image.key, "-t", "bench"]

    def run(argv: list[str]) -> subprocess.CompletedProcess[str]:
        return subprocess.run(argv, cwd=root, env=env, capture_output=True, text=True, check=True)

    raw = buildx_argv(run(task).stderr)  # also warms every cache
    task_times, raw_times, own = [], [], []
    record = Path(env["BUILDTASKS_ARTIFACTS_DIR"]) / image.key / "metadata.json"
    for _ in range(runs):
        task_times.append(timed(lambda: run(task)))
        steps = json.loads(record.read_text(encoding="utf-8"))["buildtasks"]["timings"]
        own.append(sum(seconds for name, seconds in steps if name != "buildx build"))
        raw_times.append(timed(lambda: run(raw)))
    task_s, raw_s = statistics.median(task_times), statistics.median(raw_times)
    return [
        Figure(f"{image.key}: no-change `uv run invoke docker.build`", task_s, "s", "", runs),
        Figure(f"{image.key}: the same `docker buildx build`, raw", raw_s, "s", "", runs),
        Figure(f"{image.key}: task ÷ raw buildx", task_s / raw_s, "x", "≤ 1.10x", runs),
        Figure(
            f"{image.key}: the task's own steps around buildx",
            statistics.median(own),
            "s",
            "≤ 0.15 s",
            runs,
        ),
    ]


def measure_release(
    root: Path, image: ImageSpec, *, runs: int, env: Mapping[str, str], args: Sequence[str] = ()
) -> list[Figure]:
    """The warm release chain of `image`, as `uv run invoke docker.release` runs it, per step.

    `env` names a scratch registry namespace, signing key, Trivy cache (holding a DB) and
    artifacts directory. The first run warms every cache; the figures are the medians of
    the steps each later run recorded (`buildtasks.release_timings` in its build record),
    steps run at once shown under the one that holds them.
    """
    task = ["uv", "run", "--locked", "invoke", "docker.release", "--image", image.key, *args]

    def run() -> None:
        subprocess.run(task, cwd=root, env=env, capture_output=True, text=True, check=True)

    run()
    record = Path(env["BUILDTASKS_ARTIFACTS_DIR"]) / image.key / "metadata.json"
    walls: list[float] = []
    steps: dict[str, list[float]] = {}
    for _ in range(runs):
        walls.append(timed(run))
        for name, seconds in json.loads(record.read_text(encoding="utf-8"))["buildtasks"][
            "release_timings"
        ]:
            steps.setdefault(name, []).append(seconds)
    figures = [
        Figure(
            f"{image.key}: warm `uv run invoke docker.release`",
            statistics.median(walls),
            "s",
            "≤ 25 s",
            runs,
        )
    ]
    for name, values in steps.items():
        shown = f"· {name.strip()}" if name.startswith(timing.INSIDE) else name
        figures.append(
            Figure(f"{image.key}: release step {shown}", statistics.median(values), "s", "", runs)
        )
    return figures


def release_setup(root: Path, scratch: Path, registry: str) -> tuple[dict[str, str], list[str]]:
    """What a benchmark release needs without touching the user's: (environment, arguments).

    A throwaway cosign key pair, the test suite's invented vulnerability DB in a Trivy cache
    of its own (no network here; the scan's speed does not depend on the advisories) with an
    ignore file for its findings, a registry namespace of its own, and the test-DB switch.
    """
    import importlib.util

    from buildtasks import tools

    key = scratch / "cosign.key"
    subprocess.run(
        [
            tools.locate("cosign").path,
            "generate-key-pair",
            "--output-key-prefix",
            str(key.with_suffix("")),
        ],
        env={**os.environ, "COSIGN_PASSWORD": ""},
        capture_output=True,
        check=True,
    )
    spec = importlib.util.spec_from_file_location(
        "bench_vulndb", root / "scripts/tests/support/vulndb.py"
    )
    assert spec and spec.loader
    vulndb = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = vulndb  # its dataclasses look their module up
    spec.loader.exec_module(vulndb)
    vulndb.write_db(scratch / "trivy", now=datetime.now(UTC))
    ignore = scratch / ".trivyignore"
    ignore.write_text("".join(f"{a.id}\n" for a in vulndb.DEFAULT_ADVISORIES), encoding="utf-8")
    env = {
        "BUILDTASKS_REGISTRY": f"{registry}/bench-release",
        "BUILDTASKS_COSIGN_KEY": str(key),
        "COSIGN_PASSWORD": "",
        "TRIVY_CACHE_DIR": str(scratch / "trivy"),
        "BUILDTASKS_ALLOW_TEST_DB": "1",
        "GITHUB_ACTIONS": "",
    }
    return env, ["--ignorefile", str(ignore)]


def measure_image(config: Config, image: ImageSpec, runner: Runner, runs: int) -> list[Figure]:
    """Cold, no-change and code-only rebuilds, start-up and size of one image."""
    now = datetime.now(UTC)
    name = f"{config.lab.registry}/bench/{image.repository}"

    def build(**kw: object) -> str:
        options = BuildOptions(name=name, tags=("bench",), **kw)  # type: ignore[arg-type]
        return build_image(config, image, options, runner, env=os.environ, now=now).digest

    figures = []
    cold = timed(lambda: build(no_cache=True))
    figures.append(Figure(f"{image.key}: cold build (--no-cache)", cold, "s"))
    build()
    no_change = median_of(runs, lambda: timed(build))
    figures.append(Figure(f"{image.key}: no-change rebuild", no_change, "s", "≤ 2 s", runs))
    source = _code_file(config, image)
    if source:
        original = source.read_text(encoding="utf-8")
        counter = iter(range(1_000_000))

        def code_change() -> float:
            source.write_text(f"{original}\n# benchmark edit {next(counter)}\n", encoding="utf-8")
            return timed(build)

        try:
            code_only = median_of(runs, code_change)
        finally:
            source.write_text(original, encoding="utf-8")
        figures.append(Figure(f"{image.key}: code-only rebuild", code_only, "s", "≤ 5 s", runs))
    digest = build()
    healthy = median_of(runs, lambda: seconds_to_healthy(digest))
    figures.append(Figure(f"{image.key}: docker run → healthy", healthy, "s", "≤ 3 s", runs))
    budget = f"≤ {image.size_budget_mb} MB" if image.size_budget_mb else ""
    figures.append(
        Figure(f"{image.key}: unpacked size", unpacked_bytes(digest) / 1e6, "MB", budget)
    )
    return figures


def measure_distribution(
    config: Config, image: ImageSpec, runner: Runner, second_engine: str
) -> list[Figure]:
    """Multi-platform builds on one engine and spread over two; a fresh engine's code-only
    build without and with the registry cache the other engine wrote. Every cache off unless
    the row says otherwise. `second_engine` is the lab's classic-store engine (DOCKER_HOST)."""
    from dataclasses import replace

    from buildtasks.builders import parse_builder
    from buildtasks.fanout import build_spread

    now = datetime.now(UTC)
    name = f"{config.lab.registry}/bench/{image.repository}"
    both = ("linux/amd64", "linux/arm64")
    other = runner.derive(env={"DOCKER_HOST": second_engine})
    spread = replace(config, builders={"linux/arm64": parse_builder(second_engine, "bench")})

    def build(cfg: Config, **kw: object) -> None:
        options = BuildOptions(name=name, tags=("bench",), push=True, **kw)  # type: ignore[arg-type]
        build_spread(cfg, image, options, runner, env=os.environ, now=now)

    figures = [
        Figure(
            f"{image.key}: amd64 + arm64 on one engine (arm64 under QEMU), cold",
            timed(lambda: build(config, platforms=both, no_cache=True)),
            "s",
        ),
        Figure(
            f"{image.key}: amd64 + arm64 spread over two engines at once, cold",
            timed(lambda: build(spread, platforms=both, no_cache=True)),
            "s",
        ),
    ]
    build(config, platforms=("linux/amd64",), cache="registry")
    source = _code_file(config, image)
    if source is None:
        return figures
    original = source.read_text(encoding="utf-8")
    prune = Command(("docker", "builder", "prune", "--all", "--force"))

    def fresh_engine_build(cache: str) -> float:
        other.run(prune, capture=True)
        source.write_text(f"{original}\n# benchmark edit {cache}\n", encoding="utf-8")
        options = BuildOptions(name=name, tags=("bench",), cache=cache)
        return timed(lambda: build_image(config, image, options, other, env=os.environ, now=now))

    try:
        cold = fresh_engine_build("none")
        cached = fresh_engine_build("registry")
    finally:
        source.write_text(original, encoding="utf-8")
    figures += [
        Figure(f"{image.key}: code change on a fresh engine, no cache", cold, "s"),
        Figure(
            f"{image.key}: code change on a fresh engine, registry cache of the other engine",
            cached,
            "s",
        ),
    ]
    return figures


def _code_file(config: Config, image: ImageSpec) -> Path | None:
    """A source file whose edit is a code-only change for `image`."""
    candidates = {
        "backend": "apps/backend/src/backend/version.py",
        "frontend": "apps/frontend/server.mjs",
    }
    path = config.root / candidates.get(image.key, "")
    return path if path.is_file() and candidates.get(image.key) else None


def table(figures: list[Figure], when: datetime, machine: str) -> str:
    lines = [
        f"Measured {when:%Y-%m-%d} on {machine}.",
        "",
        "| measurement | median | bar | runs |",
        "| --- | --- | --- | --- |",
        *(f.row() for f in figures),
    ]
    return "\n".join(lines)


def write_table(doc: Path, text: str) -> None:
    """Replace the text between the benchmark markers of `doc`."""
    content = doc.read_text(encoding="utf-8")
    start, end = content.index(BEGIN) + len(BEGIN), content.index(END)
    doc.write_text(f"{content[:start]}\n{text}\n{content[end:]}", encoding="utf-8")


# --------------------------------------------------------------------------- many images

#: A generated monorepo's images: one shared base and dependency stage, then a small stage
#: of each image's own. The dependency stage byte-compiles the standard library: a few
#: seconds of real work every image needs.
SCALE_DOCKERFILE = """\
FROM python:3.11-slim AS deps
RUN python -m compileall -q -j 0 /usr/local/lib/python3.11 && echo deps > /deps.txt

FROM deps AS app
ARG APP_ID=0
RUN python -c "import hashlib,sys; print(hashlib.sha256(sys.argv[1].encode()).hexdigest())" \
    "$APP_ID" > /app.txt
"""


def scale_project(directory: Path, count: int) -> Path:
    """A git checkout of `count` images sharing a base and a dependency stage."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "Dockerfile").write_text(SCALE_DOCKERFILE, encoding="utf-8")
    lines = []
    for index in range(1, count + 1):
        lines += [
            f"[tool.buildtasks.images.app{index:02d}]",
            f'repository = "scale/app{index:02d}"',
            'dockerfile = "Dockerfile"',
            'target = "app"',
            f'build-args = {{ APP_ID = "{index}" }}',
            "",
        ]
    (directory / "pyproject.toml").write_text("\n".join(lines), encoding="utf-8")
    for argv in (["init", "-q"], ["add", "-A"], ["commit", "-qm", "scale"]):
        subprocess.run(
            ["git", "-c", "user.email=bench@example.com", "-c", "user.name=bench", *argv],
            cwd=directory,
            check=True,
            capture_output=True,
        )
    return directory


def _invoke_in(root: Path, project: Path, env: Mapping[str, str], *args: str) -> tuple[float, int]:
    """Run `invoke ARGS` in `project` with the tooling of `root`: (seconds, peak RSS in MB)."""
    argv = [sys.executable, "-m", "invoke", "--search-root", str(root), *args]
    started = time.perf_counter()
    process = subprocess.Popen(
        argv, cwd=project, env={**os.environ, **env}, stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )  # fmt: skip
    assert process.stderr is not None
    error = process.stderr.read()
    _, status, usage = os.wait4(process.pid, 0)
    seconds = time.perf_counter() - started
    if os.waitstatus_to_exitcode(status) != 0:
        raise RuntimeError(f"invoke {' '.join(args)} failed: {error.decode()[-2000:]}")
    return seconds, usage.ru_maxrss // 1024


def measure_scale(
    root: Path,
    scratch: Path,
    *,
    env: Mapping[str, str],
    counts: Sequence[int] = (1, 5, 20),
) -> list[Figure]:
    """Many images: sequential (`--jobs 1`) against one bake, every cache off, for the
    project's two images and a generated monorepo of up to 20; planning per image; the
    task's peak memory. `env` sets the platforms (this machine's)."""
    env = {
        **env,
        "BUILDTASKS_ARTIFACTS_DIR": str(scratch / "artifacts"),
        "GITHUB_ACTIONS": "",
    }
    figures = []
    sequential, _ = _invoke_in(root, root, env, "docker.build", "--no-cache", "--jobs", "1")
    together, _ = _invoke_in(root, root, env, "docker.build", "--no-cache")
    figures += [
        Figure("both images, cold: one after the other (`--jobs 1`)", sequential, "s"),
        Figure("both images, cold: one bake", together, "s"),
        Figure("both images, cold: one bake ÷ one after the other", together / sequential,
               "x", "≤ 0.75x"),
    ]  # fmt: skip
    for count in counts:
        project = scale_project(scratch / f"scale-{count}", count)
        baked, memory = _invoke_in(root, project, env, "docker.build", "--no-cache")
        figures.append(Figure(f"{count} generated images, cold: one bake", baked, "s"))
        figures.append(Figure(f"{count} generated images: the task's peak memory", memory, "MB"))
        if count == max(counts):
            alone, _ = _invoke_in(root, project, env, "docker.build", "--no-cache", "--jobs", "1")
            figures += [
                Figure(f"{count} generated images, cold: one after the other", alone, "s"),
                Figure(f"{count} generated images: one bake ÷ one after the other",
                       baked / alone, "x", "≤ 0.5x"),
            ]  # fmt: skip
            dry, _ = _invoke_in(root, project, env, "--dry", "docker.build")
            one, _ = _invoke_in(root, project, env, "--dry", "docker.build", "--image", "app01")
            figures.append(
                Figure(f"planning, per image ({count} images, `--dry`)",
                       (dry - one) / (count - 1) * 1000, "ms", "≤ 10 ms")
            )  # fmt: skip
    return figures


def measure_stack(config: Config, runner: Runner, runs: int) -> list[Figure]:
    """`stack.smoke` `runs` times on the images just measured: its figures' medians."""
    from buildtasks import stacksmoke

    results = [stacksmoke.smoke(config, runner) for _ in range(runs)]

    def median(field: str) -> float:
        return statistics.median(getattr(r, field) for r in results)

    return [
        Figure(
            "stack: `uv run invoke stack.up` to all three healthy",
            median("healthy_seconds"),
            "s",
            "",
            runs,
        ),
        Figure(
            "stack: task round trip web → gateway → agents and back (median of 20)",
            median("round_trip_ms"),
            "ms",
            "",
            runs,
        ),
        Figure(
            "stack: agents stopped → gateway `/ready` 503", median("outage_seconds"), "s", "", runs
        ),
        Figure("stack: agents started → `/ready` 200", median("recovery_seconds"), "s", "", runs),
        Figure("stack: `uv run invoke stack.smoke`, whole", median("total_seconds"), "s", "", runs),
    ]
