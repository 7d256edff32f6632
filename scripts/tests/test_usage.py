"""Command-line mistakes: one line with the nearest option or task, exit 2."""

from __future__ import annotations

import pytest
from support.lab import invoke

from buildtasks.tasks.usage import explain

FLAGS = ["--image", "-i", "--name", "--tag", "-t", "--platform"]
TASKS = ["docker.build", "docker.scan", "docker.sbom"]


@pytest.mark.parametrize(
    ("message", "task", "expected"),
    [
        (
            "No idea what '--imag' is!",
            "docker.build",
            "unknown option '--imag' for docker.build — did you mean '--image'? "
            "(`uv run invoke docker.build --help` lists its options)",
        ),
        (
            "No idea what '--colour' is!",
            "docker.build",
            "unknown option '--colour' for docker.build "
            "(`uv run invoke docker.build --help` lists its options)",
        ),
        (
            "No idea what 'docker.scn' is!",
            "docker.build",
            "unknown task 'docker.scn' — did you mean 'docker.scan'? "
            "(`uv run invoke --list` lists the tasks)",
        ),
        (
            "Flag <Argument: image (i)> needed value and was not given one!",
            "docker.build",
            "option --image of docker.build needs a value, e.g. --image=VALUE",
        ),
        ("Some other parse problem", "docker.build", "Some other parse problem"),
    ],
)
def test_parse_errors_name_the_nearest_option_or_task(message, task, expected):
    assert explain(message, task, FLAGS, TASKS) == expected


@pytest.mark.parametrize(
    ("argv", "line"),
    [
        (
            ("docker.build", "--imag", "backend"),
            "error: unknown option '--imag' for docker.build — did you mean '--image'?",
        ),
        (("docker.buld",), "error: unknown task 'docker.buld' — did you mean 'docker.build'?"),
        (
            ("docker.release", "--skip-test"),
            "error: unknown option '--skip-test' for docker.release — did you mean '--skip-tests'?",
        ),
    ],
)
def test_a_misspelt_option_or_task_exits_2_with_the_suggestion(argv, line):
    result = invoke(*argv)
    assert result.returncode == 2
    assert result.stderr.strip().startswith(line), result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
