"""The runner: echo, dry runs, missing tools and failures as one-line errors."""

from __future__ import annotations

import io

import pytest

from buildtasks.command import Command, cmd
from buildtasks.errors import CommandFailed, ToolNotFound
from buildtasks.runner import Runner


def test_echo_is_shell_quoted_with_env_prefix():
    out = io.StringIO()
    Runner(out=out).run(Command(("true", "a b", "$(id)"), env={"X": "1 2"}))
    assert out.getvalue() == "+ X='1 2' true 'a b' '$(id)'\n"


def test_dry_run_prints_and_runs_nothing(tmp_path):
    out = io.StringIO()
    marker = tmp_path / "ran"
    result = Runner(dry=True, out=out).run(cmd("touch", str(marker)))
    assert result.ok and not marker.exists()
    assert out.getvalue().startswith("+ touch ")


def test_missing_tool_names_the_install_for_this_kind_of_host():
    from buildtasks.tools import install_line

    with pytest.raises(ToolNotFound) as err:
        Runner(which=lambda _: None).run(cmd("cosign", "version"))
    assert str(err.value) == f"cosign not found: {install_line('cosign')}"
    assert "lab.up" in install_line("cosign", "debian")
    assert install_line("cosign", "macos") == "`brew install cosign`"


def test_failure_is_one_line_with_exit_code_and_last_stderr_line():
    with pytest.raises(CommandFailed) as err:
        Runner(out=io.StringIO()).run(
            Command(("sh", "-c", "echo first >&2; echo 'the reason' >&2; exit 3"), hint="try X"),
            capture=True,
        )
    message = str(err.value)
    # The task exits 7, "a tool failed"; the tool's own code is in the line.
    assert err.value.exit_code == 7 and err.value.returncode == 3
    assert "exit code 3" in message and "the reason; try X" in message
    assert "\n" not in message


def test_output_captures_stdout_stripped():
    assert Runner(out=io.StringIO()).output(cmd("printf", " hi \n")) == "hi"


def test_argv_is_never_a_shell_string():
    with pytest.raises(TypeError):
        Command("docker build .")  # type: ignore[arg-type]


def test_a_derived_runner_prefixes_every_line_and_reaches_its_engine():
    out = io.StringIO()
    runner = Runner(out=out).derive(env={"DOCKER_HOST": "unix:///x.sock"}, prefix="[linux/arm64] ")
    script = 'echo "host=$DOCKER_HOST"; echo oops >&2'
    runner.run(cmd("sh", "-c", script))
    lines = out.getvalue().splitlines()
    assert lines[0].startswith("[linux/arm64] + sh -c")
    assert lines[1:] == ["[linux/arm64] host=unix:///x.sock", "[linux/arm64] oops"]
    assert runner.output(cmd("sh", "-c", "echo $DOCKER_HOST")) == "unix:///x.sock"


def test_a_prefixed_failure_is_still_one_line_with_the_last_output_line():
    runner = Runner(out=io.StringIO(), prefix="[a] ")
    with pytest.raises(CommandFailed) as exc:
        runner.run(cmd("sh", "-c", "echo building; echo 'no space left' >&2; exit 3"))
    assert exc.value.exit_code == 7
    assert "no space left" in str(exc.value) and "\n" not in str(exc.value)


@pytest.mark.parametrize(
    ("text", "limit", "expected"),
    [
        ("short", 160, "short"),
        (
            "GET https://ghcr.io/v2/acme/app/manifests/sha256:abab: MANIFEST_UNKNOWN: manifest unknown",
            80,
            "GET https://ghcr.io/v2/acme/app/manifests/sha256:abab: MANIFEST_UNKNOWN…",
        ),
        ("one  line\nafter\tanother", 160, "one line after another"),
        ("x" * 50, 20, "x" * 19 + "…"),
    ],
    ids=["fits", "cut-between-words", "one-line", "one-long-word"],
)
def test_long_messages_are_cut_between_words(text, limit, expected):
    from buildtasks.errors import clip

    assert clip(text, limit) == expected
    assert len(clip(text, limit)) <= limit
