"""build.py's pure helpers: tags from --tag, build args, the cache pruner, local fallback tags."""

from __future__ import annotations

import hashlib
import json
import subprocess
from datetime import UTC, datetime
from pathlib import Path

import pytest

from buildtasks import buildx, labstate
from buildtasks import config as config_mod
from buildtasks.build import (
    explicit_tags,
    image_names,
    no_cache_args,
    parse_build_args,
    require_platforms,
    require_stand_ins,
)
from buildtasks.caches import prune_cache
from buildtasks.dockerfiles import base_images
from buildtasks.errors import ConfigError, EngineUnavailable
from buildtasks.tagging import image_metadata


@pytest.mark.parametrize(
    ("tags", "expected"),
    [
        pytest.param(("dev",), ("r/app:dev",), id="short-tag"),
        pytest.param(("ghcr.io/x/app:1",), ("ghcr.io/x/app:1",), id="full-ref-kept"),
        pytest.param(("a", "b"), ("r/app:a", "r/app:b"), id="several"),
    ],
)
def test_explicit_tags(tags, expected):
    assert explicit_tags(("r/app",), tags) == expected


@pytest.mark.parametrize("tag", ["bad tag", "-lead", ".lead", "x" * 129, "ü"])
def test_invalid_tags_are_rejected(tag):
    with pytest.raises(ConfigError, match="bad tag"):
        explicit_tags(("r/app",), (tag,))


def test_build_args_parse_and_reject_malformed():
    assert parse_build_args(("A=1", "B=x=y", "C=")) == {"A": "1", "B": "x=y", "C": ""}
    with pytest.raises(ConfigError, match="KEY=VALUE"):
        parse_build_args(("1A=2",))


def test_image_names_default_to_registry_and_repository(repo_root):
    cfg = config_mod.load(repo_root, env={"BUILDTASKS_REGISTRY": "ghcr.io/acme"})
    assert image_names(cfg, cfg.image("backend"), "") == ("ghcr.io/acme/monorepo",)
    with pytest.raises(ConfigError, match="lowercase"):
        image_names(cfg, cfg.image("backend"), "Ghcr.io/Acme/App")


def _blob(root: Path, doc: object) -> str:
    data = json.dumps(doc).encode() if not isinstance(doc, bytes) else doc
    digest = hashlib.sha256(data).hexdigest()
    (root / "blobs/sha256").mkdir(parents=True, exist_ok=True)
    (root / "blobs/sha256" / digest).write_bytes(data)
    return f"sha256:{digest}"


def test_prune_cache_keeps_what_the_index_references_and_drops_the_rest(tmp_path):
    layer = _blob(tmp_path, b"layer bytes")
    config = _blob(tmp_path, {"layers": []})
    manifest = _blob(tmp_path, {"config": {"digest": config}, "layers": [{"digest": layer}]})
    stale = _blob(tmp_path, b"an old layer")
    (tmp_path / "index.json").write_text(json.dumps({"manifests": [{"digest": manifest}]}))
    assert prune_cache(tmp_path) == 1
    left = {f"sha256:{p.name}" for p in (tmp_path / "blobs/sha256").iterdir()}
    assert left == {layer, config, manifest}
    assert stale not in left


def test_prune_cache_ignores_a_directory_without_index(tmp_path):
    assert prune_cache(tmp_path) == 0


def _git(repo: Path, *args: str) -> None:
    subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True)


@pytest.mark.parametrize(
    ("branch", "expected"),
    [
        pytest.param("main", {"latest", "main-{sha}"}, id="main-uses-the-default-rules"),
        pytest.param(
            "feat/login", {"feat-login", "feat-login-{sha}"}, id="feature-branch-falls-back"
        ),
    ],
)
def test_local_builds_always_get_tags(tmp_path, repo_root, branch, expected):
    repo = tmp_path / "repo"
    repo.mkdir()
    _git(repo, "init", "-q", "-b", branch)
    _git(
        repo,
        "-c",
        "user.name=t",
        "-c",
        "user.email=t@example.com",
        "commit",
        "-q",
        "--allow-empty",
        "-m",
        "x",
    )
    sha = subprocess.run(
        ["git", "-C", str(repo), "rev-parse", "--short=7", "HEAD"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    cfg = config_mod.load(repo_root, env={})
    meta = image_metadata(
        cfg, cfg.image("backend"), ("r/app",), env={}, cwd=repo, now=datetime.now(UTC)
    )
    assert {t.split(":", 1)[1] for t in meta.tags} == {e.format(sha=sha) for e in expected}
    assert bool(meta.note) == (branch != "main")


def test_github_events_that_should_not_publish_stay_untagged(tmp_path, repo_root):
    cfg = config_mod.load(repo_root, env={})
    env = {
        "GITHUB_ACTIONS": "true",
        "GITHUB_EVENT_NAME": "push",
        "GITHUB_REF": "refs/heads/feature",
        "GITHUB_SHA": "a" * 40,
        "GITHUB_REPOSITORY": "acme/app",
    }
    meta = image_metadata(
        cfg, cfg.image("backend"), ("r/app",), env=env, cwd=tmp_path, now=datetime.now(UTC)
    )
    assert meta.tags == ()


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param("FROM x\nARG UV_NO_CACHE=0\n", {"UV_NO_CACHE": "1"}, id="uv"),
        pytest.param("ARG PNPM_NO_CACHE=0\nFROM x\n", {"PNPM_NO_CACHE": "1"}, id="pnpm"),
        pytest.param("FROM x\n# ARG UV_NO_CACHE\n", {}, id="commented-out"),
    ],
)
def test_no_cache_sets_only_the_cache_args_a_dockerfile_declares(text, expected):
    assert no_cache_args(text) == expected


def test_the_repository_dockerfiles_declare_their_cache_switches(repo_root):
    for path, arg in (
        ("apps/backend/Dockerfile", "UV_NO_CACHE"),
        ("apps/frontend/Dockerfile", "PNPM_NO_CACHE"),
    ):
        assert arg in no_cache_args((repo_root / path).read_text())


def test_a_build_names_the_stand_ins_that_lack_a_platform_and_how_to_seed_them():
    dockerfile = (
        "ARG BASE_IMAGE=python:3.11-slim\nARG UV_IMAGE=ghcr.io/astral-sh/uv:0.13.9\n"
        "FROM ${UV_IMAGE} AS uv\nFROM ${BASE_IMAGE}\n"
    )
    state = labstate.State(
        seeded={
            "python:3.11-slim": ["linux/amd64"],
            "ghcr.io/astral-sh/uv:0.13.9": ["linux/amd64", "linux/arm64"],
            "node:20-slim": ["linux/amd64"],
        }
    )
    wanted = ("linux/amd64", "linux/arm64")
    assert labstate.stand_ins_lacking(base_images(dockerfile), state, wanted) == {
        "python:3.11-slim": ("linux/arm64",)
    }
    assert labstate.stand_ins_lacking(base_images(dockerfile), state, ("linux/amd64",)) == {}
    require_stand_ins(state, base_images(dockerfile), ("linux/amd64",))
    with pytest.raises(ConfigError) as err:
        require_stand_ins(state, base_images(dockerfile), wanted)
    assert "python:3.11-slim (linux/arm64)" in str(err.value)
    assert "lab.up --qemu --platform linux/amd64,linux/arm64" in str(err.value)


def test_another_version_of_a_stood_in_base_names_the_seed_it_needs():
    dockerfile = "ARG NODE_MAJOR=24\nFROM node:${NODE_MAJOR}-slim AS builder\nFROM builder\n"
    state = labstate.State(registry="127.0.0.1:5000", seeded={"node:24-slim": ["linux/amd64"]})
    require_stand_ins(state, base_images(dockerfile), ("linux/amd64",))
    assert labstate.stand_ins_used(base_images(dockerfile), state) == ("node:24-slim",)
    assert labstate.stand_ins_used(base_images(dockerfile, {"NODE_MAJOR": "20"}), state) == ()
    with pytest.raises(ConfigError) as err:
        require_stand_ins(state, base_images(dockerfile, {"NODE_MAJOR": "20"}), ("linux/amd64",))
    assert str(err.value).startswith(
        "the lab has no stand-in for node:20-slim (it seeded node:24-slim)"
    )
    assert "uv run invoke lab.up" in str(err.value)
    # Without a lab, any base is the engine's business.
    require_stand_ins(
        labstate.State(), base_images(dockerfile, {"NODE_MAJOR": "20"}), ("linux/amd64",)
    )


def test_a_platform_the_builder_cannot_build_names_qemu():
    builder = buildx.Builder("docker", ("linux/amd64", "linux/386"), True)
    require_platforms(builder, ("linux/amd64",))
    with pytest.raises(EngineUnavailable, match=r"cannot build linux/arm64 .*lab\.up --qemu"):
        require_platforms(builder, ("linux/amd64", "linux/arm64"))


def test_build_contexts_point_non_docker_hub_stand_ins_at_the_lab():
    state = labstate.State(
        seeded={
            "python:3.11-slim": ["linux/amd64"],
            "ghcr.io/astral-sh/uv:0.13.9": ["linux/amd64"],
        },
        registry="127.0.0.1:5000",
    )
    assert labstate.build_contexts(state) == {
        "ghcr.io/astral-sh/uv:0.13.9": "docker-image://127.0.0.1:5000/ghcr.io/astral-sh/uv:0.13.9"
    }
    assert labstate.build_contexts(labstate.State()) == {}
