"""`docker.build` and `docker.push` as tasks, fast: which commands run, in which order.

Invoke's `MockContext` with `--dry` set: the tasks plan and echo every command, and nothing
runs. The real-engine tests of the same tasks are in test_docker_tasks.py.
"""

from __future__ import annotations

import json
import re
import shlex
import subprocess
from pathlib import Path

import pytest
from invoke import MockContext
from invoke.config import Config as InvokeConfig
from invoke.exceptions import Exit
from support.lab import ROOT

from buildtasks import config as config_mod
from buildtasks.tasks import docker

DIGEST = "sha256:" + "ab" * 32


@pytest.fixture(autouse=True)
def no_lab(tmp_path, monkeypatch):
    """No lab state: the plans are those of a user with their own engine."""
    monkeypatch.setenv("BUILDTASKS_LAB_HOME", str(tmp_path / "no-lab"))


def dry() -> MockContext:
    return MockContext(config=InvokeConfig(overrides={"run": {"dry": True}}))


def commands(err: str) -> list[list[str]]:
    """The echoed commands, each as its argv (without the `VAR=value` prefixes)."""
    argvs = []
    for line in err.splitlines():
        if line.startswith("+ "):
            words = shlex.split(line[2:])
            while words and re.match(r"^[A-Z_][A-Z0-9_]*=", words[0]):
                words.pop(0)
            argvs.append(words)
    return argvs


def option(argv: list[str], name: str) -> list[str]:
    """Every value given to `name` in `argv`."""
    return [argv[i + 1] for i, word in enumerate(argv[:-1]) if word == name]


def test_build_runs_one_buildx_build_then_pushes_by_digest_and_tags_in_the_registry(capsys):
    c = dry()
    with c.cd(ROOT):
        docker.build(
            c,
            image="backend",
            name="127.0.0.1:5000/t/app",
            tag=["one", "two"],
            platform="linux/amd64,linux/arm64",
            build_arg=["EXTRA=1"],
            no_cache=True,
            push=True,
        )
    out, err = capsys.readouterr()
    build, save, push, tag = commands(err)
    assert build[:3] == ["docker", "buildx", "build"]
    assert option(build, "--tag") == ["127.0.0.1:5000/t/app:one", "127.0.0.1:5000/t/app:two"]
    assert option(build, "--platform") == ["linux/amd64,linux/arm64"]
    assert "EXTRA=1" in option(build, "--build-arg")
    assert "UV_NO_CACHE=1" in option(build, "--build-arg")
    assert {"--no-cache", "--pull"} <= set(build)
    # Loaded into the engine, file times clamped to the commit's date: one commit, one image.
    assert option(build, "--output") == ["type=docker,rewrite-timestamp=true"]
    epoch = subprocess.run(
        ["git", "log", "-1", "--format=%ct"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.strip()
    assert f"SOURCE_DATE_EPOCH={epoch}" in option(build, "--build-arg")
    # The docker driver cannot push by digest: the engine's image is exported and pushed
    # untagged, then the tags are made in the registry from that digest, never re-tagged locally.
    assert "--push" not in build
    assert build[-1] == str(ROOT)
    assert save[:3] == ["docker", "image", "save"]
    assert push[0:2] == ["crane", "push"] and push[3].startswith("127.0.0.1:5000/t/app@sha256:")
    assert tag[:5] == ["docker", "buildx", "imagetools", "create", "--prefer-index=false"]
    assert option(tag, "--tag") == option(build, "--tag")
    assert tag[-1] == push[3]
    assert out.startswith("backend: sha256:")


def test_build_without_image_bakes_every_image_at_once_then_tests_each_in_order(capsys):
    c = dry()
    with c.cd(ROOT):
        docker.build(c, tag=["t"], test=True)
    err = capsys.readouterr().err
    argvs = commands(err)
    order = list(config_mod.load(ROOT).images)
    assert f"==> one bake, {len(order)} images at once: {', '.join(order)}" in err
    assert argvs[0][:3] == ["docker", "buildx", "bake"]
    assert Path(option(argvs[0], "--file")[0]).parts[-2:] == (".bake", "bake.json")
    assert not any(a[:3] == ["docker", "buildx", "build"] for a in argvs)
    tests = [a[3] for a in argvs if "pytest" in a]
    assert tests == [str(ROOT / config_mod.load(ROOT).image(key).tests) for key in order]


def test_a_name_for_several_images_is_refused_before_anything_runs(capsys):
    c = dry()
    with c.cd(ROOT), pytest.raises(Exit) as exc:
        docker.build(c, name="ghcr.io/acme/app")
    assert exc.value.code == 2
    assert "--name applies to one image" in str(exc.value.message)
    assert commands(capsys.readouterr().err) == []


def _record(artifacts: Path, tags: list[str]) -> None:
    out = artifacts / "backend"
    out.mkdir(parents=True, exist_ok=True)
    (out / "metadata.json").write_text(
        json.dumps({"containerimage.digest": DIGEST, "buildtasks": {"tags": tags}})
    )


def test_push_sends_the_recorded_digest_untagged_then_tags_it_in_the_registry(
    tmp_path, monkeypatch, capsys
):
    monkeypatch.setenv("BUILDTASKS_ARTIFACTS_DIR", str(tmp_path))
    tags = ["127.0.0.1:5000/t/app:a", "127.0.0.1:5000/t/app:b"]
    _record(tmp_path, tags)
    c = dry()
    with c.cd(ROOT):
        docker.push(c, image="backend")
    out, err = capsys.readouterr()
    (save, push, tag) = commands(err)
    assert save[:3] == ["docker", "image", "save"] and save[-1] == DIGEST
    assert push[0:2] == ["crane", "push"] and push[3] == f"127.0.0.1:5000/t/app@{DIGEST}"
    assert tag == [
        "docker", "buildx", "imagetools", "create", "--prefer-index=false",
        "--tag", tags[0], "--tag", tags[1], f"127.0.0.1:5000/t/app@{DIGEST}",
    ]  # fmt: skip
    assert f"would push {tags[1]}" in out


def test_push_of_a_digest_already_in_the_registry_only_applies_the_tags(
    tmp_path, monkeypatch, capsys
):
    monkeypatch.setenv("BUILDTASKS_ARTIFACTS_DIR", str(tmp_path))
    tags = ["127.0.0.1:5000/t/app:a"]
    served = "sha256:" + "cd" * 32
    out_dir = tmp_path / "backend"
    out_dir.mkdir()
    (out_dir / "metadata.json").write_text(
        json.dumps(
            {
                "containerimage.digest": DIGEST,
                "buildtasks": {"tags": tags, "pushed": True, "registry_digest": served},
            }
        )
    )
    c = dry()
    with c.cd(ROOT):
        docker.push(c, image="backend")
    (tag,) = commands(capsys.readouterr().err)
    assert tag[-1] == f"127.0.0.1:5000/t/app@{served}"


def test_push_without_a_build_record_says_to_build_first(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("BUILDTASKS_ARTIFACTS_DIR", str(tmp_path))
    c = dry()
    with c.cd(ROOT), pytest.raises(Exit) as exc:
        docker.push(c, image="backend")
    assert "build the image first with `uv run invoke docker.build`" in str(exc.value.message)
    assert commands(capsys.readouterr().err) == []
