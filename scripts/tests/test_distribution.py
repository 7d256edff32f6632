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
from support.lab import ROOT, cosign_key_pair, engine_env, invoke
from support.vulndb import write_db

PLATFORMS = {"containerd": "linux/amd64", "classic": "linux/arm64"}


def crane(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["crane", *args], capture_output=True, text=True, check=check)


def tags_of(repo: str) -> list[str]:
    """The tags of `repo` ([] when the registry has none, or no such repository)."""
    listing = crane("ls", repo, check=False)
    return listing.stdout.split() if listing.returncode == 0 else []


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
    assert tags_of(name) == []
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
    tags = tags_of(name)
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
    before = set(tags_of(name))
    result = invoke(
        "docker.merge", "--image", "backend", "--platform", "linux/amd64,linux/arm64",
        "--from", str(given), "--tag", f"bad-{case}", env=env,
    )  # fmt: skip
    assert result.returncode != 0
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("error: ") and message in last, result.stderr[-2000:]
    assert "Traceback" not in result.stderr
    assert set(tags_of(name)) == before, "a failed merge tagged something"


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
