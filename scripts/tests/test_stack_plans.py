"""The stack's plans: which images compose runs, and the compose commands (pure)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from support.lab import ROOT

from buildtasks import lint, stack, stacksmoke
from buildtasks.config import load
from buildtasks.errors import ConfigError, ToolNotFound


def test_the_stack_runs_the_images_the_compose_file_names():
    text = (ROOT / "compose.yaml").read_text()
    assert stack.image_vars(text) == ("BUILDTASKS_IMAGE_BACKEND", "BUILDTASKS_IMAGE_FRONTEND")
    assert stack.key_of("BUILDTASKS_IMAGE_FRONTEND") == "frontend"
    # Each of them is a configured image: docker.build records exactly these keys.
    assert {stack.key_of(v) for v in stack.image_vars(text)} <= set(load(ROOT).images)


def test_a_build_is_recorded_by_digest_as_its_store_names_it():
    digest = "sha256:" + "a" * 64
    tags = ("127.0.0.1:5000/monorepo:main", "127.0.0.1:5000/monorepo:latest")
    assert stack.engine_ref(tags, digest, "containerd") == f"127.0.0.1:5000/monorepo@{digest}"
    # The classic store knows a loaded image by its id, which is that build's digest.
    assert stack.engine_ref(tags, digest, "classic") == digest


def test_the_env_file_round_trips_and_says_who_writes_it():
    values = {"BUILDTASKS_IMAGE_FRONTEND": "web@sha256:1", "BUILDTASKS_IMAGE_BACKEND": "b@sha256:2"}
    text = stack.render_env(values)
    assert text.startswith("# Written by `uv run invoke docker.build`")
    assert text.splitlines()[-2:] == [
        "BUILDTASKS_IMAGE_BACKEND=b@sha256:2",
        "BUILDTASKS_IMAGE_FRONTEND=web@sha256:1",
    ]
    assert stack.parse_env(text) == values


def test_images_no_build_recorded_are_named():
    wanted = ("BUILDTASKS_IMAGE_BACKEND", "BUILDTASKS_IMAGE_FRONTEND")
    assert stack.missing_images(wanted, {"BUILDTASKS_IMAGE_BACKEND": "x"}) == ("frontend",)
    assert stack.missing_images(wanted, dict.fromkeys(wanted, "x")) == ()


def test_compose_commands_name_the_project_files_and_env_file():
    config = load(ROOT)
    dev = stack.stack_for(config, dev=True, project="p", env={"WEB_PUBLISH": "127.0.0.1:"})
    command = stack.up(dev)
    assert command.argv[:2] == ("docker", "compose")
    assert command.argv[command.argv.index("-f") + 1] == "compose.yaml"
    assert "compose.dev.yaml" in command.argv
    assert command.argv[command.argv.index("--env-file") + 1] == str(stack.env_path(config))
    assert command.argv[command.argv.index("-p") + 1] == "p"
    assert command.argv[-6:] == (
        "up",
        "--detach",
        "--wait",
        "--wait-timeout",
        "120",
        "--remove-orphans",
    )
    assert command.env == {"WEB_PUBLISH": "127.0.0.1:"}
    assert stack.down(dev).argv[-5:] == ("down", "--volumes", "--remove-orphans", "--timeout", "10")
    assert stack.logs(dev, ("gateway",), follow=True, tail="5").argv[-6:] == (
        "logs",
        "--timestamps",
        "--follow",
        "--tail",
        "5",
        "gateway",
    )


def test_a_checkout_without_the_compose_file_is_told_so(tmp_path):
    (tmp_path / "pyproject.toml").write_text(
        '[tool.buildtasks.images.app]\nrepository = "app"\ndockerfile = "Dockerfile"\n'
    )
    with pytest.raises(ConfigError, match=r"no compose.yaml in .*: the stack tasks run that file"):
        stack.stack_for(load(tmp_path))


@pytest.mark.parametrize(
    ("text", "ok", "message"),
    [
        ("", False, "docker compose (v2) is not installed"),
        ("2.20.2", True, "docker compose 2.20.2 is older than 2.24"),
    ],
)
def test_compose_missing_or_too_old_names_the_install(text, ok, message):
    with pytest.raises(ToolNotFound, match=r"^" + message.replace("(", r"\(").replace(")", r"\)")):
        stack.require_compose(text, ok)
    stack.require_compose("2.40.3-3", True)


def test_lint_validates_the_stack_alone_and_with_the_dev_override():
    commands = lint.compose_commands(ROOT)
    assert [c.argv.count("-f") for c in commands] == [1, 2]
    assert all(c.argv[-2:] == ("config", "--quiet") for c in commands)
    assert all(c.argv[c.argv.index("--env-file") + 1] == os.devnull for c in commands)


def test_the_page_check_runs_the_pages_own_module_against_the_web_server():
    module = (ROOT / stacksmoke.STATUS_MODULE).read_text()
    script = stacksmoke.page_script(module, "http://web:8080").decode()
    assert script.startswith(module)
    assert "export async function loadStatus" in script
    assert json.dumps("http://web:8080") in script.splitlines()[-2]


def test_figures_read_as_the_benchmarks_record_them():
    lines = stacksmoke.Figures(6.2, 18.04, 0.4, 0.6, 14.0).lines()
    assert lines[0] == "all healthy after 6.2 s"
    assert "18.0 ms (median of 20)" in lines[1]
    assert lines[-1] == "smoke test 14.0 s, nothing left behind"


def test_git_and_the_build_context_ignore_the_local_env_file():
    assert ".env.local" in (ROOT / ".gitignore").read_text().split()
    assert "**/.env.*" in (ROOT / ".dockerignore").read_text().split()
    assert Path(ROOT / ".env.local.example").is_file()
