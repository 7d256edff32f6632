"""Digest-first distribution for real: two engines (containerd and classic store) each build
one platform at the same time and push it untagged; `docker.merge` makes one index of them,
which is scanned, signed and verified, and runs on both platforms."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from datetime import UTC, datetime
from pathlib import Path

import pytest
from support.lab import ROOT, cosign_key_pair, engine_env, invoke, registry_tags
from support.vulndb import write_db

PLATFORMS = {"containerd": "linux/amd64", "classic": "linux/arm64"}


def crane(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["crane", *args], capture_output=True, text=True, check=check)


def start_platform_build(name: str, store: str, artifacts: Path, env: dict[str, str]):
    """`docker.build --push-by-digest` of the backend for the platform `store` builds here."""
    return subprocess.Popen(
        [
            *invoke_argv(),
            "docker.build",
            "--image",
            "backend",
            "--name",
            name,
            "--platform",
            PLATFORMS[store],
            "--push-by-digest",
        ],
        env={**env, **engine_env(store), "BUILDTASKS_ARTIFACTS_DIR": str(artifacts)},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def invoke_argv() -> list[str]:
    return [sys.executable, "-m", "invoke", "--search-root", str(ROOT)]


@pytest.fixture(scope="module")
def two_platforms(lab, tmp_path_factory):
    """The backend built for amd64 on the containerd engine and arm64 on the classic one, at once."""
    tmp = tmp_path_factory.mktemp("distribution")
    name = f"{lab}/itest-{uuid.uuid4().hex[:10]}/monorepo"
    env = {**os.environ, "GITHUB_ACTIONS": ""}
    builds = {
        store: start_platform_build(name, store, tmp / "artifacts", env) for store in PLATFORMS
    }
    for store, process in builds.items():
        out, err = process.communicate(timeout=900)
        assert process.returncode == 0, f"{store}: {err[-3000:]}"
        assert f"pushed untagged: {name}@sha256:" in out
    return name, tmp


@pytest.mark.lab
def test_each_platform_is_pushed_untagged_and_recorded_for_the_merge(two_platforms):
    name, tmp = two_platforms
    assert registry_tags(name) == []
    digests = tmp / "artifacts" / "backend" / "digests"
    for store, platform in PLATFORMS.items():
        record = json.loads((digests / f"{platform.replace('/', '-')}.json").read_text())
        assert record["platforms"] == [platform]
        assert record["repositories"] == [name]
        # The registry serves that digest, untagged.
        served = crane("digest", f"{name}@{record['digest']}").stdout.strip()
        assert served == record["digest"], store


@pytest.mark.lab
def test_the_merged_index_is_scanned_signed_verified_and_runs_on_both_platforms(two_platforms):
    name, tmp = two_platforms
    artifacts = tmp / "artifacts"
    env = {"BUILDTASKS_ARTIFACTS_DIR": str(artifacts), "GITHUB_ACTIONS": ""}
    merge = invoke(
        "docker.merge", "--image", "backend", "--platform", "linux/amd64,linux/arm64", env=env
    )
    assert merge.returncode == 0, merge.stderr[-3000:]
    index_digest = merge.stdout.split("backend: ")[1].split()[0]
    tags = registry_tags(name)
    assert tags and all(crane("digest", f"{name}:{t}").stdout.strip() == index_digest for t in tags)
    index = json.loads(crane("manifest", f"{name}@{index_digest}").stdout)
    platforms = {
        f"{m['platform']['os']}/{m['platform']['architecture']}": m["digest"]
        for m in index["manifests"]
        if m["platform"]["architecture"] != "unknown"
    }
    assert sorted(platforms) == ["linux/amd64", "linux/arm64"]
    assert index["annotations"]["org.opencontainers.image.revision"]

    # The gates and the signature act on the index the record now names.
    cosign_key_pair(tmp)
    write_db(tmp / "trivy", now=datetime.now(UTC))
    (tmp / ".trivyignore").write_text("CVE-2099-0001\nCVE-2099-0002\nCVE-2099-0004\n")
    env |= {
        "TRIVY_CACHE_DIR": str(tmp / "trivy"),
        "BUILDTASKS_COSIGN_KEY": str(tmp / "cosign.key"),
        "COSIGN_PASSWORD": "",
    }
    scan = invoke(
        "docker.scan", "--image", "backend", "--ignorefile", str(tmp / ".trivyignore"), env=env
    )
    assert scan.returncode == 0, scan.stderr[-3000:]
    report = json.loads((artifacts / "backend" / "trivy.json").read_text())
    assert report["Buildtasks"]["Digest"] == index_digest
    assert report["Buildtasks"]["Platforms"] == platforms
    sign = invoke("docker.sign", "--image", "backend", env=env)
    assert sign.returncode == 0, sign.stderr[-3000:]
    verify = invoke(
        "docker.verify", "--image", "backend", "--public-key", str(tmp / "cosign.pub"), env=env
    )
    assert verify.returncode == 0, verify.stderr[-3000:]
    for platform, digest in [("index", index_digest), *platforms.items()]:
        checked = subprocess.run(
            [
                "cosign", "verify", "--key", str(tmp / "cosign.pub"),
                "--insecure-ignore-tlog", f"{name}@{digest}",
            ],
            capture_output=True,
            text=True,
            check=False,
        )  # fmt: skip
        assert checked.returncode == 0, f"{platform}: {checked.stderr}"

    run = subprocess.run(
        [
            "docker", "run", "--rm", "--pull", "always", "--platform", "linux/arm64",
            f"{name}:{tags[0]}", "python", "-c", "import platform; print(platform.machine())",
        ],
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip().splitlines()[-1] == "aarch64"


def _digest_file(directory: Path, platform: str, digest: str, repo: str, **extra) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    record = {
        "image": "backend",
        "platforms": [platform],
        "digest": digest,
        "repositories": [repo],
        **extra,
    }
    (directory / f"{platform.replace('/', '-')}-{uuid.uuid4().hex[:6]}.json").write_text(
        json.dumps(record)
    )


def _recorded(tmp: Path, platform: str) -> dict:
    path = tmp / "artifacts" / "backend" / "digests" / f"{platform.replace('/', '-')}.json"
    return json.loads(path.read_text())


@pytest.mark.lab
@pytest.mark.parametrize(
    ("case", "message"),
    [
        pytest.param("missing", "no digest for linux/arm64", id="platform-missing"),
        pytest.param("twice", "linux/amd64 is given twice", id="platform-twice"),
        pytest.param("unknown", "the registry has no", id="digest-not-in-registry"),
        pytest.param(
            "wrong-platform", "is linux/arm64, not linux/amd64", id="claims-wrong-platform"
        ),
        pytest.param("other-commit", "was built from commit", id="digest-of-another-commit"),
    ],
)
def test_a_bad_set_of_digests_is_one_clear_error_and_tags_nothing(
    two_platforms, tmp_path, case, message
):
    name, tmp = two_platforms
    amd, arm = _recorded(tmp, "linux/amd64"), _recorded(tmp, "linux/arm64")
    given = tmp_path / "digests"
    env = {"BUILDTASKS_ARTIFACTS_DIR": str(tmp_path / "artifacts"), "GITHUB_ACTIONS": ""}
    if case == "other-commit":
        # The checkout a merge job runs in is another commit than the one the digests are of.
        env |= {"GITHUB_ACTIONS": "true", "GITHUB_SHA": "f" * 40, "GITHUB_REF": "refs/heads/main",
                "GITHUB_EVENT_NAME": "push", "GITHUB_REPOSITORY": "acme/monorepo"}  # fmt: skip
    repo = name
    _digest_file(given, "linux/amd64", amd["digest"], repo)
    if case == "twice":
        _digest_file(given, "linux/amd64", amd["digest"], repo)
        _digest_file(given, "linux/arm64", arm["digest"], repo)
    elif case == "unknown":
        _digest_file(given, "linux/arm64", "sha256:" + "e" * 64, repo)
    elif case == "wrong-platform":
        given_amd = next(given.glob("*.json"))
        given_amd.unlink()
        _digest_file(given, "linux/amd64", arm["digest"], repo)
        _digest_file(given, "linux/arm64", arm["digest"], repo)
    elif case == "other-commit":
        _digest_file(given, "linux/arm64", arm["digest"], repo)
    before = set(registry_tags(name))
    result = invoke(
        "docker.merge", "--image", "backend", "--platform", "linux/amd64,linux/arm64",
        "--from", str(given), "--tag", f"bad-{case}", env=env,
    )  # fmt: skip
    assert result.returncode != 0
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("error: ") and message in last, result.stderr[-2000:]
    assert "Traceback" not in result.stderr
    assert set(registry_tags(name)) == before, "a failed merge tagged something"


@pytest.mark.lab
@pytest.mark.parametrize("image", ["backend", "frontend"])
def test_one_commit_gives_one_digest_even_with_every_cache_off(lab, tmp_path, image):
    """Built from the commit, not the clock: two builds with every cache off are one image,
    and pushing the second moves nothing."""
    name = f"{lab}/itest-{uuid.uuid4().hex[:10]}/{image}"
    env = {"BUILDTASKS_ARTIFACTS_DIR": str(tmp_path), "GITHUB_ACTIONS": ""}
    args = ("docker.build", "--image", image, "--name", name, "-t", "r", "--no-cache", "--push")
    first = invoke(*args, env=env)
    assert first.returncode == 0, first.stderr[-3000:]
    second = invoke(*args, env=env)
    assert second.returncode == 0, second.stderr[-3000:]
    digest = first.stdout.split(f"{image}: ")[1].split()[0]
    assert second.stdout.split(f"{image}: ")[1].split()[0] == digest
    assert "already in the registry, nothing to push" in second.stderr
    committed = subprocess.run(
        ["git", "log", "-1", "--format=%ct"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.strip()
    config = json.loads(crane("config", f"{name}@{digest}").stdout)
    created = datetime.fromisoformat(config["created"].replace("Z", "+00:00"))
    assert int(created.timestamp()) == int(committed)
    label = config["config"]["Labels"]["org.opencontainers.image.created"]
    assert int(datetime.fromisoformat(label.replace("Z", "+00:00")).timestamp()) == int(committed)


@pytest.mark.lab
def test_builders_fan_a_multi_platform_build_out_and_merge_it(two_platforms, tmp_path):
    """`[tool.buildtasks.builders]` (here BUILDTASKS_BUILDERS) sends arm64 to the classic-store
    engine: one command builds both platforms at once and tags one index."""
    name = f"{two_platforms[0].rsplit('/', 1)[0]}-fan/monorepo"
    host = engine_env("classic")["DOCKER_HOST"]
    env = {
        "BUILDTASKS_ARTIFACTS_DIR": str(tmp_path),
        "GITHUB_ACTIONS": "",
        "BUILDTASKS_BUILDERS": f"linux/arm64={host}",
    }
    result = invoke(
        "docker.build", "--image", "backend", "--name", name, "-t", "fan",
        "--platform", "linux/amd64,linux/arm64", "--push", env=env,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    assert f"2 builders at once: linux/amd64 on default; linux/arm64 on {host}" in result.stderr
    assert "[linux/arm64] + docker buildx build" in result.stderr
    assert "[linux/amd64] + docker buildx build" in result.stderr
    digest = result.stdout.split("backend: ")[1].split()[0]
    assert crane("digest", f"{name}:fan").stdout.strip() == digest
    index = json.loads(crane("manifest", f"{name}:fan").stdout)
    arches = sorted(
        m["platform"]["architecture"]
        for m in index["manifests"]
        if m["platform"]["architecture"] != "unknown"
    )
    assert arches == ["amd64", "arm64"]
    record = json.loads((tmp_path / "backend" / "metadata.json").read_text())
    assert record["buildtasks"]["registry_digest"] == digest


@pytest.mark.lab
def test_a_spread_build_without_push_is_refused_before_anything_runs(tmp_path):
    env = {
        "BUILDTASKS_ARTIFACTS_DIR": str(tmp_path),
        "BUILDTASKS_BUILDERS": "linux/arm64=unix:///nowhere.sock",
    }
    result = invoke(
        "docker.build", "--image", "backend", "--platform", "linux/amd64,linux/arm64", env=env
    )
    assert result.returncode == 2
    assert "add --push to merge them into one index by digest" in result.stderr
    assert "docker buildx build" not in result.stderr


@pytest.mark.lab
def test_an_unreachable_builder_names_itself_and_nothing_is_tagged(lab, tmp_path):
    name = f"{lab}/itest-{uuid.uuid4().hex[:10]}/monorepo"
    env = {
        "BUILDTASKS_ARTIFACTS_DIR": str(tmp_path),
        "GITHUB_ACTIONS": "",
        "BUILDTASKS_BUILDERS": "linux/arm64=unix:///nowhere/docker.sock",
    }
    result = invoke(
        "docker.build", "--image", "backend", "--name", name, "-t", "x",
        "--platform", "linux/amd64,linux/arm64", "--push", env=env,
    )  # fmt: skip
    assert result.returncode == 3, result.stderr[-2000:]
    last = result.stderr.strip().splitlines()[-1]
    assert "linux/arm64 on unix:///nowhere/docker.sock: the Docker engine is not running" in last
    assert last.endswith("nothing was tagged")
    assert registry_tags(name) == []


@pytest.mark.lab
def test_a_fresh_engine_builds_a_code_change_from_the_registry_cache_another_engine_wrote(
    lab, tmp_path
):
    """The containerd engine writes the registry cache; the classic-store engine, its own build
    cache emptied, builds a code-only change of the backend without rebuilding the
    dependency layer."""
    worktree = tmp_path / "checkout"
    subprocess.run(
        ["git", "worktree", "add", "--detach", str(worktree), "HEAD"],
        cwd=ROOT, check=True, capture_output=True,
    )  # fmt: skip
    try:
        name = f"{lab}/itest-{uuid.uuid4().hex[:10]}/monorepo"
        env = {"BUILDTASKS_ARTIFACTS_DIR": str(tmp_path / "a"), "GITHUB_ACTIONS": ""}
        args = ("docker.build", "--image", "backend", "--name", name, "--cache", "registry")
        first = invoke(*args, "-t", "one", cwd=worktree, env=env)
        assert first.returncode == 0, first.stderr[-3000:]
        assert crane("digest", f"{name}:buildcache-linux-amd64", check=False).returncode == 0
        version = worktree / "apps/backend/src/backend/version.py"
        version.write_text(version.read_text() + "\n# a code-only change\n")
        classic = engine_env("classic")
        subprocess.run(
            ["docker", "builder", "prune", "--all", "--force"],
            env={**os.environ, **classic}, check=True, capture_output=True,
        )  # fmt: skip
        second = invoke(*args, "-t", "two", "--verbose", cwd=worktree, env={**env, **classic})
        assert second.returncode == 0, second.stderr[-3000:]
        log = second.stderr
        assert "cannot export a registry cache" in log  # the classic store reads it only
        deps = _step(log, "uv sync --locked --no-dev --no-install-workspace")
        app = _step(log, "uv sync --directory /src")
        assert f"{deps} CACHED" in log, "the dependency layer was rebuilt"
        assert f"{app} CACHED" not in log, "the code change was not built"
    finally:
        subprocess.run(
            ["git", "worktree", "remove", "--force", str(worktree)], cwd=ROOT, capture_output=True
        )


def _step(log: str, command: str) -> str:
    """`#12`: the plain-progress step number of the RUN step containing `command`."""
    for line in log.splitlines():
        if line.startswith("#") and "RUN" in line and command in line:
            return line.split()[0]
    raise AssertionError(f"no build step runs {command!r}")


@pytest.mark.lab
def test_builders_lists_each_builder_its_platforms_store_and_cache(lab):
    host = engine_env("classic")["DOCKER_HOST"]
    listed = invoke("docker.builders", env={"BUILDTASKS_BUILDERS": f"linux/arm64={host}"})
    assert listed.returncode == 0, listed.stderr
    default, second = listed.stdout.splitlines()
    assert default.startswith("ok   default") and "containerd image store" in default
    assert "cache local" in default
    assert second.startswith(f"ok   {host}") and "linux/arm64;" in second
    assert "classic image store" in second and "cache none" in second

    down = invoke("docker.builders", env={"BUILDTASKS_BUILDERS": "linux/arm64=unix:///no.sock"})
    assert down.returncode == 3
    assert "FAIL unix:///no.sock" in down.stdout
    assert down.stderr.strip().splitlines()[-1] == "error: builder unreachable: unix:///no.sock"
