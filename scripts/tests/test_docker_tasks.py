"""`invoke docker.*` run for real: the engine, buildx and the lab registry, as a user runs them."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from support.lab import artifacts, invoke, registry_reachable, registry_tags, unique_repo


def crane(*args: str) -> str:
    return subprocess.run(["crane", *args], capture_output=True, text=True, check=True).stdout


def build_backend(name: str, tag: str, *extra: str, **kwargs):
    """`invoke docker.build` of the backend under a test repository and one tag."""
    return invoke("docker.build", "--image", "backend", "--name", name, "-t", tag, *extra, **kwargs)


@pytest.mark.lab
def test_build_prints_the_digest_records_it_and_loads_the_image(lab):
    name = unique_repo(lab, "monorepo")
    result = build_backend(name, "one", "-t", "two")
    assert result.returncode == 0, result.stderr
    digest = result.stdout.split("backend: ")[1].split()[0]
    assert digest.startswith("sha256:")
    metadata = json.loads((Path(artifacts()) / "backend/metadata.json").read_text())
    assert metadata["containerimage.digest"] == digest
    assert metadata["buildtasks"]["tags"] == [f"{name}:one", f"{name}:two"]
    inspect = subprocess.run(
        ["docker", "image", "inspect", "--format", "{{.Id}}", f"{name}:two"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert inspect.stdout.strip() == digest
    assert "+ docker buildx build" in result.stderr  # every command is echoed
    # It ends with its step times, and records them.
    steps = dict(metadata["buildtasks"]["timings"])
    assert {"tags and labels", "engine probes", "buildx build"} <= set(steps)
    assert all(isinstance(seconds, float) and seconds >= 0 for seconds in steps.values())
    table = result.stderr[result.stderr.index("backend: step times") :].splitlines()
    assert re.match(
        r"^  buildx build +\d+\.\d\d s$", next(line for line in table if "buildx" in line)
    )
    assert re.match(r"^  total +\d+\.\d\d s$", table[len(steps) + 1])


@pytest.mark.lab
def test_push_leaves_exactly_the_tags_on_one_digest_with_the_computed_labels(lab):
    name = unique_repo(lab, "monorepo")
    env = {"GITHUB_ACTIONS": "", "BUILDTASKS_REGISTRY": name.rsplit("/", 1)[0]}
    tags = invoke("docker.tags", "--image", "backend", "--json", "--name", name, env=env)
    assert tags.returncode == 0, tags.stderr
    computed = json.loads(tags.stdout)
    build = invoke("docker.build", "--image", "backend", "--name", name, env=env)
    assert build.returncode == 0, build.stderr
    digest = build.stdout.split("backend: ")[1].split()[0]
    push = invoke("docker.push", "--image", "backend", env=env)
    assert push.returncode == 0, push.stderr
    expected = {ref.rsplit(":", 1)[1] for ref in computed["tags"]}
    assert set(registry_tags(name)) == expected
    for tag in expected:
        assert crane("digest", f"{name}:{tag}").strip() == digest
    config = json.loads(crane("config", f"{name}@{digest}", "--platform", "linux/amd64"))
    labels = config["config"]["Labels"]
    for key, value in computed["labels"].items():
        if key != "org.opencontainers.image.created":
            assert labels[key] == value, key
    assert labels["org.opencontainers.image.version"] == computed["version"]


def _event(tmp_path: Path, payload: dict) -> str:
    path = tmp_path / "event.json"
    path.write_text(json.dumps(payload))
    return str(path)


SHA = "0123456789abcdef0123456789abcdef01234567"


@pytest.mark.parametrize(
    ("event", "ref", "payload", "expected"),
    [
        pytest.param("push", "refs/heads/main", {}, {"latest", "main-0123456"}, id="push-main"),
        pytest.param(
            "push", "refs/heads/develop", {}, {"develop", "develop-0123456"}, id="push-develop"
        ),
        pytest.param(
            "push", "refs/tags/v1.0.0", {}, {"v1.0.0", "1.0.0", "1.0", "1"}, id="tag-v1.0.0"
        ),
        pytest.param(
            "pull_request",
            "refs/pull/42/merge",
            {"pull_request": {"number": 42, "head": {"sha": SHA}}},
            {"pr-42"},
            id="pull-request",
        ),
        pytest.param(
            "workflow_dispatch",
            "refs/heads/main",
            {"inputs": {"suffix": "staging"}},
            {"staging"},
            id="dispatch-staging",
        ),
        pytest.param(
            "workflow_dispatch",
            "refs/heads/main",
            {"inputs": {}},
            {"manual-77"},
            id="dispatch-manual",
        ),
    ],
)
@pytest.mark.lab
def test_the_default_scheme_end_to_end_in_the_lab(lab, tmp_path, event, ref, payload, expected):
    name = unique_repo(lab, "monorepo")
    payload = {"repository": {"default_branch": "main"}, **payload}
    env = {
        "GITHUB_ACTIONS": "true",
        "GITHUB_EVENT_NAME": event,
        "GITHUB_REF": ref,
        "GITHUB_SHA": SHA,
        "GITHUB_REPOSITORY": "acme/monorepo",
        "GITHUB_SERVER_URL": "https://github.com",
        "GITHUB_RUN_NUMBER": "77",
        "GITHUB_RUN_ID": "9001",
        "GITHUB_EVENT_PATH": _event(tmp_path, payload),
    }
    build = invoke("docker.build", "--image", "backend", "--name", name, env=env)
    assert build.returncode == 0, build.stderr
    push = invoke("docker.push", "--image", "backend", env=env)
    assert push.returncode == 0, push.stderr
    assert set(registry_tags(name)) == expected


def _start_registry(tmp_path, port: int, **extra):
    config = tmp_path / f"registry-{port}.yml"
    config.write_text(
        json.dumps(
            {
                "version": "0.1",
                "storage": {"filesystem": {"rootdirectory": str(tmp_path / f"data-{port}")}},
                "http": {"addr": f"127.0.0.1:{port}"},
                **extra,
            }
        )
    )
    binary = shutil.which("docker-registry") or "registry"
    proc = subprocess.Popen(
        [binary, "serve", str(config)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    address = f"127.0.0.1:{port}"
    deadline = time.monotonic() + 10
    while not registry_reachable(address) and proc.poll() is None:
        if time.monotonic() > deadline:
            break
        time.sleep(0.1)
    return address, proc


@pytest.fixture
def spare_registry(tmp_path):
    """A second real registry on its own port, which the test may stop."""
    address, proc = _start_registry(tmp_path, 5000 + 100 + os.getpid() % 800)
    yield address, proc
    proc.kill()
    proc.wait()


@pytest.fixture
def auth_registry(tmp_path):
    """A real registry that demands authentication, for which Docker holds no credentials."""
    port = 5000 + 900 + os.getpid() % 90
    realm = f"http://127.0.0.1:{port}/auth"
    address, proc = _start_registry(
        tmp_path, port, auth={"silly": {"realm": realm, "service": "lab"}}
    )
    yield address
    proc.kill()
    proc.wait()


@pytest.mark.lab
def test_push_without_a_login_fails_in_one_line_before_pushing(auth_registry, tmp_path):
    name = f"{auth_registry}/auth/monorepo"
    build = build_backend(name, "x")
    assert build.returncode == 0, build.stderr
    push = invoke(
        "docker.push", "--image", "backend", env={"DOCKER_CONFIG": str(tmp_path / "no-login")}
    )
    assert push.returncode == 4, push.stderr
    assert push.stderr.strip().splitlines()[-1] == (
        f"error: not logged in to {auth_registry}: log in with `docker login {auth_registry}` "
        "(in GitHub Actions: docker/login-action with packages: write)"
    )
    assert "+ docker image push" not in push.stderr


@pytest.mark.lab
def test_push_to_a_stopped_registry_fails_in_one_line_and_reports_no_success(spare_registry):
    address, proc = spare_registry
    name = f"{address}/down/monorepo"
    build = build_backend(
        name,
        "x",
    )
    assert build.returncode == 0, build.stderr
    proc.kill()
    proc.wait()
    push = invoke("docker.push", "--image", "backend")
    assert push.returncode == 4
    last = push.stderr.strip().splitlines()[-1]
    assert last == f"error: registry {address} is down: start it with `uv run invoke lab.up`"
    assert "pushed" not in push.stdout


@pytest.mark.lab
def test_push_after_the_registry_dies_midway_names_what_was_not_pushed(spare_registry, lab):
    # The lab registry is up; the second tag points at the stopped one.
    address, proc = spare_registry
    good = unique_repo(lab, "monorepo")
    build = invoke(
        "docker.build",
        "--image",
        "backend",
        "--name",
        good,
        "-t",
        "a",
        "-t",
        f"{address}/x/monorepo:b",
    )
    assert build.returncode == 0, build.stderr
    proc.kill()
    proc.wait()
    push = invoke("docker.push", "--image", "backend")
    assert push.returncode == 4, push.stderr
    assert "is down" in push.stderr
    assert "pushed" not in push.stdout
    # The reachable registry got nothing either: the preflight stops before any push.
    assert subprocess.run(["crane", "ls", good], capture_output=True, check=False).returncode != 0


@pytest.mark.parametrize(
    ("args", "env", "code", "message"),
    [
        pytest.param(
            ("--image", "backnd"),
            {},
            2,
            "unknown image 'backnd' — did you mean 'backend'?",
            id="unknown-image",
        ),
        pytest.param(
            ("--image", "backend", "--platform", "linux/amd46"),
            {},
            2,
            "did you mean 'linux/amd64'?",
            id="bad-platform",
        ),
        pytest.param(
            ("--image", "backend", "-t", "bad tag!"), {}, 2, "bad tag 'bad tag!'", id="bad-tag"
        ),
        pytest.param(
            ("--image", "backend", "--build-arg", "NOEQUALS"),
            {},
            2,
            "expected KEY=VALUE",
            id="bad-build-arg",
        ),
        pytest.param(
            ("--image", "backend"),
            {"DOCKER_HOST": "unix:///nonexistent/docker.sock"},
            3,
            "the Docker engine is not running at DOCKER_HOST=unix:///nonexistent/docker.sock: "
            "start it, or unset DOCKER_HOST",
            id="engine-down",
        ),
        pytest.param(
            ("--image", "backend"),
            {"BUILDTASKS_REGISTY": "x"},
            2,
            "did you mean 'BUILDTASKS_REGISTRY'",
            id="env-typo",
        ),
    ],
)
def test_bad_input_gives_one_line_and_a_nonzero_exit(args, env, code, message):
    result = invoke("docker.build", *args, env=env)
    assert result.returncode == code, result.stderr
    lines = result.stderr.strip().splitlines()
    assert message in lines[-1]
    assert "Traceback" not in result.stderr


def test_a_missing_docker_cli_names_the_fix(tmp_path):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    result = invoke("docker.build", "--image", "backend", env={"PATH": str(bin_dir)})
    assert result.returncode == 127
    # This is a Debian host: the lab installs the engine.
    assert result.stderr.strip() == (
        "error: docker not found: `sudo -E uv run invoke lab.up` installs it "
        "(engine, CLI and buildx)"
    )


def test_a_missing_dockerfile_names_the_key_to_fix(tmp_path):
    (tmp_path / "pyproject.toml").write_text(
        '[tool.buildtasks.images.app]\nrepository = "app"\ndockerfile = "nope/Dockerfile"\n'
    )
    result = invoke("docker.build", cwd=tmp_path)
    assert result.returncode == 2
    assert (
        "Dockerfile nope/Dockerfile not found: fix [tool.buildtasks.images.app] dockerfile"
        in result.stderr
    )


@pytest.mark.lab
def test_dry_run_prints_the_plan_and_builds_nothing(lab):
    name = unique_repo(lab, "monorepo")
    result = invoke("--dry", "docker.build", "--image", "backend", "--name", name, "-t", "dry")
    assert result.returncode == 0, result.stderr
    assert "+ docker buildx build" in result.stderr and f"{name}:dry" in result.stderr
    check = subprocess.run(
        ["docker", "image", "inspect", f"{name}:dry"], capture_output=True, check=False
    )
    assert check.returncode != 0


@pytest.mark.lab
def test_no_cache_rebuilds_everything_and_still_works_offline(lab):
    name = unique_repo(lab, "monorepo")
    result = build_backend(
        name,
        "fresh",
        "--no-cache",
        "--verbose",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    steps = re.findall(r"^#(\d+) \[[\w-]+ \d+/\d+\] (?:RUN|COPY)", result.stderr, re.MULTILINE)
    assert steps, "no RUN/COPY steps in the build log"
    cached = [n for n in steps if re.search(rf"^#{n} CACHED$", result.stderr, re.MULTILINE)]
    assert not cached, f"steps served from cache despite --no-cache: {cached}"
    assert "--no-cache --pull" in result.stderr


@pytest.mark.lab
def test_build_with_test_runs_the_image_tests_on_the_result(lab):
    name = unique_repo(lab, "monorepo")
    result = build_backend(name, "tested", "--test")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    assert " passed" in result.stdout


def test_tags_json_is_one_object_with_the_documented_keys():
    result = invoke(
        "docker.tags",
        "--image",
        "backend",
        "--json",
        "--rule",
        "type=raw,value=abc",
        env={"GITHUB_ACTIONS": ""},
    )
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert set(data) == {"version", "tags", "labels", "annotations", "note", "warnings"}
    assert data["note"] == "" and data["warnings"] == []
    assert data["tags"] == ["127.0.0.1:5000/monorepo:abc"]
    assert data["version"] == "abc"
    assert data["labels"]["org.opencontainers.image.version"] == "abc"


@pytest.mark.lab
def test_multi_platform_build_pushes_one_index_whose_arm64_image_runs(lab):
    # What a user does: make arm64 buildable (QEMU, stand-in bases), then build both.
    seeded = invoke("lab.up", "--qemu", "--platform", "linux/amd64,linux/arm64", timeout=1800)
    assert seeded.returncode == 0, seeded.stderr[-3000:]
    name = unique_repo(lab, "monorepo")
    result = build_backend(
        name,
        "multi",
        "--platform",
        "linux/amd64,linux/arm64",
        "--push",
        timeout=1800,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    digest = result.stdout.split("backend: ")[1].split()[0]
    index = json.loads(crane("manifest", f"{name}:multi"))
    platforms = {
        f"{m['platform']['os']}/{m['platform']['architecture']}"
        for m in index["manifests"]
        if m.get("platform", {}).get("os") != "unknown"
    }
    assert platforms == {"linux/amd64", "linux/arm64"}
    assert crane("digest", f"{name}:multi").strip() == digest
    run = subprocess.run(
        [
            "docker",
            "run",
            "--rm",
            "--platform",
            "linux/arm64",
            f"{name}@{digest}",
            "python",
            "-c",
            "import platform; print(platform.machine())",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    assert run.stdout.strip() == "aarch64"


@pytest.mark.lab
def test_provenance_max_is_attached_to_the_pushed_index(lab):
    name = unique_repo(lab, "monorepo")
    result = build_backend(
        name,
        "prov",
        "--provenance",
        "mode=max",
        "--push",
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert "cannot attach provenance" not in result.stderr
    index = json.loads(crane("manifest", f"{name}:prov"))
    attestations = [
        m
        for m in index["manifests"]
        if m.get("annotations", {}).get("vnd.docker.reference.type") == "attestation-manifest"
    ]
    assert attestations, "no attestation manifest in the index"
    manifest = json.loads(crane("manifest", f"{name}@{attestations[0]['digest']}"))
    predicates = {
        layer.get("annotations", {}).get("in-toto.io/predicate-type")
        for layer in manifest["layers"]
    }
    assert "https://slsa.dev/provenance/v0.2" in predicates


@pytest.mark.lab
def test_a_missing_buildx_plugin_names_the_fix(tmp_path):
    # The real docker CLI and engine, with only the buildx plugin made unavailable.
    real = shutil.which("docker")
    shim = tmp_path / "bin" / "docker"
    shim.parent.mkdir()
    shim.write_text(
        "#!/bin/sh\n"
        'if [ "$1" = buildx ]; then echo "docker: \'buildx\' is not a docker command." >&2; exit 1; fi\n'
        f'exec {real} "$@"\n'
    )
    shim.chmod(0o755)
    result = invoke(
        "docker.build", "--image", "backend", env={"PATH": f"{shim.parent}:{os.environ['PATH']}"}
    )
    assert result.returncode == 3
    assert result.stderr.strip().splitlines()[-1] == (
        "error: docker buildx is missing: `sudo -E uv run invoke lab.up` installs it "
        "(engine, CLI and buildx)"
    )


def test_the_suite_ignores_the_users_buildtasks_settings(repo_root):
    # docs/usage.md has users export BUILDTASKS_REGISTRY for ghcr.io; the suite still passes.
    env = {
        **os.environ,
        "BUILDTASKS_REGISTRY": "ghcr.io/acme",
        "BUILDTASKS_COSIGN_KEY": "/nonexistent/cosign.key",
        "BUILDTASKS_PLATFORMS": "linux/s390x",
    }
    result = subprocess.run(
        [
            sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
            "scripts/tests/test_docker_tasks.py::test_tags_json_is_one_object_with_the_documented_keys",
        ],
        cwd=repo_root, env=env, capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-2000:]


def test_a_closed_pipe_ends_quietly(repo_root):
    # `invoke docker.tags | head -1`: the reader is gone before the task writes.
    process = subprocess.Popen(
        [sys.executable, "-m", "invoke", "docker.tags", "--image", "backend"],
        cwd=repo_root,
        env={**os.environ, "GITHUB_ACTIONS": ""},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert process.stdout is not None
    process.stdout.close()
    _, stderr = process.communicate(timeout=120)
    assert b"Traceback" not in stderr and b"BrokenPipeError" not in stderr, stderr[-2000:]
    assert process.returncode == 141  # as `git log | head -1`: 128 + SIGPIPE
