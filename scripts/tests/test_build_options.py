"""What docker.build passes through as build-push-action does: several names, labels and
annotations, secrets, SSH, a builder, and the outputs a workflow reads."""

from __future__ import annotations

import hashlib
import json
import subprocess
import uuid
from pathlib import Path

import pytest
from support.lab import git_project, invoke

from buildtasks import ci
from buildtasks.build import BuildOptions, check_options, image_names
from buildtasks.config import ImageSpec, parse
from buildtasks.errors import ConfigError

ROOT = Path("/repo")


def _config(**image):
    return parse(
        {"images": {"app": {"repository": "app", "dockerfile": "Dockerfile", **image}}}, ROOT, {}
    )


def test_several_names_are_one_build_pushed_to_each():
    config = _config()
    image = config.image("app")
    assert image_names(config, image, "ghcr.io/acme/app, docker.io/acme/app") == (
        "ghcr.io/acme/app",
        "docker.io/acme/app",
    )
    assert image_names(config, image, "") == ("127.0.0.1:5000/app",)
    with pytest.raises(ConfigError, match=r"bad image name 'ghcr\.io/acme/app:v1'.*--tag"):
        image_names(config, image, "ghcr.io/acme/app:v1")


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (BuildOptions(labels=("team",)), "--label item 'team' is not KEY=VALUE"),
        (BuildOptions(annotations=("=x",)), "--annotation item '=x' is not KEY=VALUE"),
        (BuildOptions(secrets=("src=/x",)), "--secret 'src=/x' needs id=NAME"),
        (BuildOptions(secrets=("id=ca,src=/x",)), "the id 'ca' is the proxy CA's"),
    ],
)
def test_bad_pass_through_options_are_refused_before_the_engine(options, message):
    config = _config()
    with pytest.raises(ConfigError, match=message):
        check_options(config, [ImageSpec("app", "app", "Dockerfile")], options)


def test_configured_labels_are_checked_and_kept_in_order():
    config = _config(labels=["org.example.team=web", "org.example.tier=1"])
    assert config.image("app").labels == ("org.example.team=web", "org.example.tier=1")
    with pytest.raises(ConfigError, match=r"images\.app\.annotations item 'x' is not KEY=VALUE"):
        _config(annotations=["x"])


def test_the_outputs_are_build_push_actions_and_metadata_actions():
    record = {
        "containerimage.digest": "sha256:" + "a" * 64,
        "containerimage.config.digest": "sha256:" + "c" * 64,
        "buildtasks": {
            "tags": ["r/app:1.2.3", "r/app:latest"],
            "version": "1.2.3",
            "labels": {"org.opencontainers.image.version": "1.2.3"},
            "registry_digest": "sha256:" + "b" * 64,
        },
    }
    out = ci.build_outputs("app", record, prefix=False)
    assert out["digest"] == "sha256:" + "b" * 64  # what the registry serves
    assert out["imageid"] == "sha256:" + "c" * 64
    assert out["tags"] == "r/app:1.2.3\nr/app:latest"
    assert out["version"] == "1.2.3"
    assert out["labels"] == "org.opencontainers.image.version=1.2.3"
    assert json.loads(out["metadata"]) == record
    assert set(ci.build_outputs("app", record, prefix=True)) == {f"app-{k}" for k in out}


@pytest.mark.lab
def test_one_build_with_several_names_labels_a_secret_and_outputs(lab, tmp_path):
    """The real build: a secret reaches RUN --mount=type=secret, the image carries the
    labels and annotations asked for, both names serve the one digest, and the outputs a
    workflow reads are in $GITHUB_OUTPUT."""
    # The Dockerfile holds the secret's hash, not the secret: the log shows the Dockerfile.
    digest = hashlib.sha256(b"s3cret-value").hexdigest()
    project = git_project(
        tmp_path / "project",
        {
            "pyproject.toml": "[tool.buildtasks.images.app]\n"
            'repository = "app"\n'
            'dockerfile = "app/Dockerfile"\n'
            'labels = ["org.example.team=web", "org.example.tier=1"]\n',
            "app/Dockerfile": "FROM python:3.11-slim\n"
            "RUN --mount=type=secret,id=token,required=true "
            f'test "$(sha256sum < /run/secrets/token | cut -d" " -f1)" = "{digest}" '
            "&& echo secret seen > /seen\n",
        },
    )
    token = tmp_path / "token"
    token.write_text("s3cret-value")
    outputs = tmp_path / "github_output"
    outputs.write_text("")
    space = f"{lab}/opts-{uuid.uuid4().hex[:8]}"
    result = invoke(
        "docker.build", "--name", f"{space}/one", "--name", f"{space}/two", "-t", "v1",
        "--label", "org.example.tier=2", "--annotation", "org.example.owner=platform",
        "--secret", f"id=token,src={token}", "--builder", "default", "--push",
        cwd=project, env={"GITHUB_OUTPUT": str(outputs)},
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    assert "s3cret-value" not in result.stdout + result.stderr
    digest = {}
    for repo in ("one", "two"):
        digest[repo] = subprocess.run(
            ["crane", "digest", f"{space}/{repo}:v1"], capture_output=True, text=True, check=True
        ).stdout.strip()
    assert digest["one"] == digest["two"]
    config = json.loads(
        subprocess.run(
            ["crane", "config", f"{space}/one:v1"], capture_output=True, text=True, check=True
        ).stdout
    )
    labels = config["config"]["Labels"]
    assert labels["org.example.team"] == "web"
    assert labels["org.example.tier"] == "2"  # the command line wins over the configuration
    manifest = json.loads(
        subprocess.run(
            ["crane", "manifest", f"{space}/one:v1"], capture_output=True, text=True, check=True
        ).stdout
    )
    assert manifest["annotations"]["org.example.owner"] == "platform"
    written = outputs.read_text()
    assert f"digest={digest['one']}\n" in written
    assert f"tags<<EOF_BUILDTASKS\n{space}/one:v1\n{space}/two:v1\nEOF_BUILDTASKS\n" in written
    assert "\nversion=" in "\n" + written and "metadata={" in written
