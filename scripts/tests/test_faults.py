"""Faults a user meets: unwritable directories, images that are not where they are looked
for, missing records, a task's own OSError. Each ends in one `error:` line naming the path or
the reference and the fix, with its documented exit code."""

from __future__ import annotations

import errno
import json
import shutil
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from invoke.exceptions import Exit
from support.lab import ROOT, git_project, invoke

from buildtasks.errors import FilesystemError, filesystem_error
from buildtasks.tasks.adapter import errors_to_exit


@pytest.fixture
def immutable_dir(tmp_path):
    """A directory nothing may be created in, root included (`chattr +i`)."""
    if not shutil.which("chattr"):
        pytest.skip("chattr is not installed")
    path = tmp_path / "locked"
    path.mkdir()
    if subprocess.run(["chattr", "+i", str(path)], capture_output=True).returncode != 0:
        pytest.skip("this file system has no immutable attribute")
    yield path
    subprocess.run(["chattr", "-i", str(path)], check=True)


@pytest.mark.parametrize(
    ("code", "words"),
    [
        (errno.EACCES, "chmod"),
        (errno.EPERM, "chattr -i"),
        (errno.EROFS, "read-only file system"),
        (errno.ENOSPC, "docker builder prune"),
        (errno.EDQUOT, "quota"),
    ],
)
def test_a_write_that_the_file_system_refuses_is_one_line_naming_the_path(code, words):
    error = filesystem_error(OSError(code, "refused", "/repo/.buildtasks/backend"))
    assert isinstance(error, FilesystemError) and error.exit_code == 6
    assert str(error).startswith("cannot write /repo/.buildtasks/backend: refused: ")
    assert words in str(error)


def test_other_os_errors_are_not_dressed_up_as_file_system_faults():
    assert filesystem_error(OSError(errno.ENOENT, "missing", "/x")) is None
    assert filesystem_error(OSError("no errno")) is None


def test_a_task_that_meets_an_unwritable_path_exits_6_with_one_line(immutable_dir):
    target = immutable_dir / "metadata.json"

    @errors_to_exit
    def task() -> None:
        target.write_text("{}")

    with pytest.raises(Exit) as exit_:
        task()
    assert exit_.value.code == 6
    message = str(exit_.value.message)
    assert message.startswith(f"error: cannot write {target}: ") and "\n" not in message


@pytest.mark.lab
def test_an_immutable_artifacts_directory_is_named_with_the_fix(lab, immutable_dir):
    result = invoke(
        "docker.build", "--image", "frontend", env={"BUILDTASKS_ARTIFACTS_DIR": str(immutable_dir)}
    )
    assert result.returncode == 6, result.stderr[-2000:]
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith(f"error: cannot write {immutable_dir}"), last
    assert "chattr -i" in last and "BUILDTASKS_ARTIFACTS_DIR" in last
    assert "Traceback" not in result.stderr


@pytest.mark.lab
def test_without_a_build_record_the_step_says_to_build_first(lab, tmp_path):
    result = invoke(
        "docker.push", "--image", "frontend", env={"BUILDTASKS_ARTIFACTS_DIR": str(tmp_path)}
    )
    assert result.returncode == 5, result.stderr[-2000:]
    last = result.stderr.strip().splitlines()[-1]
    assert "no build metadata at" in last and "uv run invoke docker.build" in last


@pytest.mark.lab
def test_the_documented_chain_scans_before_it_pushes(lab, tmp_path):
    """`docker.build docker.scan docker.sbom`: the unpushed build is read from the engine."""
    env = {
        "BUILDTASKS_ARTIFACTS_DIR": str(tmp_path / "artifacts"),
        "BUILDTASKS_REGISTRY": f"{lab}/faults-{uuid.uuid4().hex[:8]}",
        "TRIVY_CACHE_DIR": str(tmp_path / "trivy"),
    }
    from datetime import UTC, datetime

    from support.vulndb import write_db

    write_db(tmp_path / "trivy", now=datetime.now(UTC))
    result = invoke("docker.build", "docker.sbom", "--image", "frontend", env=env)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "the last build of frontend is not pushed: reading the engine's image" in result.stderr
    assert "sbom.cdx.json" in result.stdout
    # A digest the registry does not hold is "not found", exit 5, not a failed tool.
    missing = f"{env['BUILDTASKS_REGISTRY']}/web@sha256:{'1' * 64}"
    result = invoke("docker.scan", "--image", "frontend", "--ref", missing, env=env)
    assert result.returncode == 5, result.stderr[-2000:]
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith(f"error: {missing} is not in the registry (MANIFEST_UNKNOWN): "), last
    assert "docker.push" in last and "--local" in last


@pytest.mark.lab
def test_two_builds_of_one_image_take_turns_and_the_record_names_a_real_image(lab, tmp_path):
    """Two `docker.build` of one image in one checkout, at once, three rounds: both succeed,
    one waits for the other, and the record always names an image the engine holds."""
    import json
    import os

    env = {**os.environ, "BUILDTASKS_ARTIFACTS_DIR": str(tmp_path / "artifacts")}
    waited = 0
    for round_ in range(3):
        argv = ["uv", "run", "--locked", "invoke", "docker.build", "--image", "frontend"]
        argv += ["-b", f"APP_VERSION=race-{uuid.uuid4().hex[:6]}-{round_}"]
        procs = [
            subprocess.Popen(
                argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
            )
            for _ in range(2)
        ]
        outputs = [proc.communicate(timeout=600) for proc in procs]
        for proc, (_, err) in zip(procs, outputs, strict=True):
            assert proc.returncode == 0, err[-2000:]
            assert "Traceback" not in err
        waited += sum("note: waiting for another build of frontend here" in e for _, e in outputs)
        record = json.loads((tmp_path / "artifacts/frontend/metadata.json").read_text())
        digest = record["containerimage.digest"]
        assert digest in "".join(out for out, _ in outputs)
        inspect = subprocess.run(["docker", "image", "inspect", digest], capture_output=True)
        assert inspect.returncode == 0, f"the record names {digest}, which the engine lacks"
    assert waited >= 2  # one build waited for the other (in nearly every round)


def test_a_failed_run_step_is_named_with_its_exit_code():
    from buildtasks.buildx import failure_reason

    message = 'process "/bin/sh -c pip install \\"x\\" && make" did not complete successfully: exit code: 3'
    assert failure_reason(message) == 'step "RUN pip install "x" && make" failed with exit code 3'
    long = (
        'process "/bin/sh -c ' + "echo word " * 40 + '" did not complete successfully: exit code: 2'
    )
    reason = failure_reason(long)
    assert reason.endswith('…" failed with exit code 2') and len(reason) < 160
    other = "failed to resolve source metadata for python:9: not found"
    assert failure_reason(other) == other


def test_the_failed_build_is_this_tasks_own():
    from datetime import UTC, datetime

    from buildtasks.buildx import pick_failed_build

    listing = "\n".join(
        [
            '{"created_at":"2026-12-02T02:36:44Z","name":"other/apps/web (runtime)","ref":"d/d/a"}',
            '{"created_at":"2026-12-02T02:36:40Z","name":"main/apps/backend (runtime)","ref":"d/d/b"}',
            '{"created_at":"2026-12-02T01:00:00Z","name":"main/apps/backend (runtime)","ref":"d/d/c"}',
            "not json",
        ]
    )
    since = datetime(2026, 12, 2, 2, 30, tzinfo=UTC)
    assert pick_failed_build(listing, since=since, name_hint="apps/backend") == "d/d/b"
    assert pick_failed_build(listing, since=since, name_hint="apps/none") == "d/d/a"
    late = datetime(2026, 12, 2, 3, 0, tzinfo=UTC)
    assert pick_failed_build(listing, since=late, name_hint="apps/backend") == ""


@pytest.mark.lab
def test_failing_image_tests_are_a_gate_apart_from_a_failing_tool(lab, tmp_path):
    """Exit 1 is a crossed gate (here the image's tests), 7 a program that failed (below)."""
    git_project(
        tmp_path,
        {
            "pyproject.toml": '[tool.buildtasks.images.app]\nrepository = "gateapp"\n'
            'dockerfile = "app/Dockerfile"\ntests = "app/tests"\n',
            "app/Dockerfile": "FROM python:3.11-slim\n",
            "app/tests/test_image.py": "def test_it_fails():\n    assert False\n",
        },
    )
    result = invoke("docker.build", "--test", cwd=tmp_path)
    assert result.returncode == 1, result.stderr[-2000:]
    assert "1 failed" in result.stdout
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("error: image tests failed for app (sha256:"), last


@pytest.mark.lab
def test_a_failing_run_step_ends_in_one_line_naming_the_step(lab, tmp_path):
    git_project(
        tmp_path,
        {
            "pyproject.toml": '[tool.buildtasks.images.app]\nrepository = "failapp"\n'
            'dockerfile = "app/Dockerfile"\n',
            "app/Dockerfile": 'FROM python:3.11-slim\nRUN echo "preparing" && sh -c "exit 3"\n',
        },
    )
    result = invoke("docker.build", cwd=tmp_path)
    assert result.returncode == 7, result.stderr[-2000:]  # a tool (buildx) failed
    last = result.stderr.strip().splitlines()[-1]
    assert last == (
        'error: app: step "RUN echo "preparing" && sh -c "exit 3"" failed with exit code 3 '
        "(the build log above shows its output)"
    )


def _serve(config: Path, log: Path) -> subprocess.Popen[bytes]:
    """The lab's registry binary on `config` again (same address, same storage)."""
    import time

    from buildtasks.registry import registry_up

    address = json_address(config)
    binary = shutil.which("docker-registry") or shutil.which("registry")
    assert binary
    process = subprocess.Popen(
        [binary, "serve", str(config)], stdout=log.open("ab"), stderr=subprocess.STDOUT
    )
    deadline = time.monotonic() + 15
    while not registry_up(address):
        assert process.poll() is None and time.monotonic() < deadline
        time.sleep(0.1)
    return process


def json_address(config: Path) -> str:
    import json

    return json.loads(config.read_text())["http"]["addr"]


@pytest.mark.lab
@pytest.mark.parametrize("fault", ["registry-stops", "ctrl-c"])
def test_a_push_cut_short_leaves_no_tag_and_a_rerun_finishes_it(lab, tmp_path, fault):
    """The registry goes away, or the user presses Ctrl-C, while the image is being pushed:
    no tag points anywhere, the record does not claim a push, and the same command run again
    pushes and tags."""
    import json
    import os
    import signal
    import time

    from support.lab import registry_tags, scratch_registry

    env = {**os.environ, "BUILDTASKS_ARTIFACTS_DIR": str(tmp_path / "artifacts")}
    (tmp_path / "registry").mkdir()
    with scratch_registry(tmp_path / "registry") as (address, config):
        repo = f"{address}/faults/web"
        build = invoke("docker.build", "--image", "frontend", "--name", repo, "-t", "cut", env=env)
        assert build.returncode == 0, build.stderr[-2000:]
        push = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "invoke",
                "--search-root",
                str(ROOT),
                "docker.push",
                "--image",
                "frontend",
            ],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )
        assert push.stderr is not None
        seen = []
        for line in push.stderr:
            seen.append(line)
            if line.startswith("+ crane push "):
                break
        time.sleep(0.05)  # the upload is under way
        if fault == "ctrl-c":
            os.killpg(push.pid, signal.SIGINT)
    # registry-stops: the registry has stopped here, whatever the push was doing.
    rest = push.stderr.read()
    push.wait(timeout=120)
    output = "".join(seen) + rest
    assert push.returncode != 0, output[-2000:]
    assert "Traceback" not in output
    if fault == "ctrl-c":
        assert push.returncode == 130
    else:
        last = output.strip().splitlines()[-1]
        assert last.startswith("error: ") and len(last) < 300, last
        assert push.returncode == 4, output[-2000:]
    facts = json.loads((tmp_path / "artifacts/frontend/metadata.json").read_text())["buildtasks"]
    assert not facts.get("tagged") and not facts.get("registry_digest")
    server = _serve(config, tmp_path / "registry/registry.log")
    try:
        assert not registry_tags(repo), "a tag points at what was cut short"
        again = invoke("docker.push", "--image", "frontend", env=env)
        assert again.returncode == 0, again.stderr[-2000:]
        assert registry_tags(repo) == ["cut"]
        served = subprocess.run(
            ["crane", "digest", f"{repo}:cut"], capture_output=True, text=True, check=True
        ).stdout.strip()
        facts = json.loads((tmp_path / "artifacts/frontend/metadata.json").read_text())[
            "buildtasks"
        ]
        assert facts["tagged"] and facts["registry_digest"] == served
    finally:
        server.terminate()
        server.wait(timeout=15)


def test_a_full_disk_during_a_build_names_the_disk_and_the_cache_to_prune(tmp_path):
    """BuildKit's `no space left on device` (read back from the builder's history) becomes
    one line naming the fix and the cache directory, exit 6."""
    import io
    from datetime import UTC, datetime

    from buildtasks.builders import DEFAULT
    from buildtasks.command import Command
    from buildtasks.config import parse
    from buildtasks.errors import CommandFailed, FilesystemError
    from buildtasks.runner import Runner
    from buildtasks.solve import run_build

    now = datetime.now(UTC).isoformat().replace("+00:00", "Z")

    class FullDisk(Runner):
        def run(self, command, **_kw):
            raise CommandFailed(command.argv, 1, "the build log above says why")

        def output(self, command, **_kw):
            if "ls" in command.argv:
                return f'{{"created_at":"{now}","name":"x/app (runtime)","ref":"d/d/r1"}}'
            message = "failed to copy files: write /var/lib/buildkit/x: no space left on device"
            return json.dumps({"Error": {"Message": message}})

    (tmp_path / "app").mkdir()
    (tmp_path / "app/Dockerfile").write_text("FROM scratch\n")
    config = parse(
        {"images": {"app": {"repository": "app", "dockerfile": "app/Dockerfile"}}},
        tmp_path,
        {},
    )
    runner = FullDisk(out=io.StringIO())
    command = Command(("docker", "buildx", "build", "."))
    with pytest.raises(FilesystemError) as err:
        run_build(config, config.image("app"), command, runner, DEFAULT)
    message = str(err.value)
    assert err.value.exit_code == 6 and "\n" not in message and len(message) < 300
    assert "no space left on device: the disk is full (df -h)" in message
    assert f"the local build cache under {config.cache_dir}" in message
