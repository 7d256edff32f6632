"""Pure plans behind the workflows: config keys, the matrix, the summary, act's invocation."""

from __future__ import annotations

from pathlib import Path

import pytest

from buildtasks import act, caches, ci
from buildtasks.command import Command
from buildtasks.config import parse
from buildtasks.errors import ConfigError
from buildtasks.release import ReleaseOptions, release
from buildtasks.runner import Runner

ROOT = Path("/repo")
IMAGE = {"repository": "app", "dockerfile": "Dockerfile"}


def cfg(env=None, **top):
    table = {"images": {"app": {**IMAGE, **top.pop("image", {})}}, **top}
    return parse(table, ROOT, env or {})


# --------------------------------------------------------------------------- config


def test_paths_are_the_shared_ones_then_the_image_s_own():
    config = cfg(paths=["uv.lock", "scripts/**"], image={"paths": ["apps/app/**"]})
    assert config.image_paths(config.image("app")) == ("uv.lock", "scripts/**", "apps/app/**")


@pytest.mark.parametrize("bad", ["/apps/**", "./apps/**", "!", ""])
def test_a_path_pattern_must_be_relative_to_the_root(bad):
    with pytest.raises(ConfigError, match=r"tool\.buildtasks\.paths pattern"):
        cfg(paths=[bad])


def test_runners_default_to_native_github_runners_and_can_be_overridden():
    config = cfg()
    assert config.runner_for("linux/arm64") == "ubuntu-24.04-arm"
    config = cfg(runners={"linux/arm64": "self-hosted-arm"})
    assert config.runner_for("linux/arm64") == "self-hosted-arm"
    assert config.runner_for("linux/amd64") == "ubuntu-24.04"
    with pytest.raises(ConfigError, match=r"no runner for linux/s390x.*tool\.buildtasks\.runners"):
        config.runner_for("linux/s390x")


def test_an_unknown_runner_platform_is_refused():
    with pytest.raises(ConfigError):
        cfg(runners={"linux/amd46": "x"})


@pytest.mark.parametrize(
    ("value", "expected"),
    [("true", True), ("1", True), ("false", False), ("", False)],
)
def test_no_cache_from_the_environment(value, expected):
    assert cfg({"BUILDTASKS_NO_CACHE": value}).no_cache is expected


def test_a_bad_no_cache_value_names_the_variable():
    with pytest.raises(ConfigError, match="BUILDTASKS_NO_CACHE must be true or false"):
        cfg({"BUILDTASKS_NO_CACHE": "sometimes"})


def test_the_cache_kind_from_the_environment_is_checked():
    assert cfg({"BUILDTASKS_CACHE": "registry"}).cache == "registry"
    with pytest.raises(ConfigError, match="BUILDTASKS_CACHE"):
        cfg({"BUILDTASKS_CACHE": "s3"})


def test_a_registry_from_github_s_owner_name_is_lowercased():
    assert cfg({"BUILDTASKS_REGISTRY": "ghcr.io/Acme-Corp/"}).registry == "ghcr.io/acme-corp"


# --------------------------------------------------------------------------- caches


def test_a_pull_request_reads_the_registry_cache_without_writing_it():
    assert caches.in_pull_request({"GITHUB_EVENT_NAME": "pull_request_target"})
    assert not caches.in_pull_request({"GITHUB_EVENT_NAME": "push"})
    spec, note = caches.choose(
        "registry", driver="docker", capable=True, env={}, local_dir="/c",
        local_present=False, repository="r/app", slug="linux-amd64", read_only=True,
    )  # fmt: skip
    assert spec.sources == ("type=registry,ref=r/app:buildcache-linux-amd64",)
    assert spec.dest == ""
    assert "pull request reads" in note
    spec, _ = caches.choose(
        "registry", driver="docker", capable=True, env={}, local_dir="/c",
        local_present=False, repository="r/app", slug="linux-amd64",
    )  # fmt: skip
    assert spec.dest.startswith("type=registry,ref=r/app:buildcache-linux-amd64,mode=max")


# --------------------------------------------------------------------------- matrix, summary


def test_the_matrix_has_one_job_per_platform_on_its_runner():
    config = cfg(image={"platforms": ["linux/amd64", "linux/arm64"]})
    assert ci.matrix(config, config.image("app")) == [
        {"platform": "linux/amd64", "runner": "ubuntu-24.04", "slug": "linux-amd64"},
        {"platform": "linux/arm64", "runner": "ubuntu-24.04-arm", "slug": "linux-arm64"},
    ]
    line = ci.output_lines({"matrix": ci.compact(ci.matrix(config, config.image("app")))})
    assert line.count("\n") == 1 and line.startswith('matrix=[{"platform":"linux/amd64"')
    # A multi-line value takes GitHub's heredoc form, its delimiter no line of the value.
    assert ci.output_lines({"x": "a\nb"}) == "x<<EOF_BUILDTASKS\na\nb\nEOF_BUILDTASKS\n"
    tricky = ci.output_lines({"x": "a\nEOF_BUILDTASKS"})
    assert tricky == "x<<EOF_BUILDTASKS_\na\nEOF_BUILDTASKS\nEOF_BUILDTASKS_\n"


def test_the_summary_names_digest_tags_platforms_findings_signer_and_times():
    text = ci.summary_markdown(
        ci.Summary(
            image="backend",
            ref="r/app@sha256:" + "a" * 64,
            platforms=("linux/amd64", "linux/arm64"),
            tags=("r/app:latest", "r/app:main-abc1234"),
            findings={"MEDIUM": 2, "LOW": 1},
            gate=("CRITICAL", "HIGH"),
            signer="keyless: https://github.com/acme/app/.github/workflows/docker-image.yml@refs/heads/main",
            timings=[("merge", 1.25), ("scan", 10.0)],
        )
    )
    assert "| digest | `r/app@sha256:" in text
    assert "| platforms | linux/amd64, linux/arm64 |" in text
    assert "`r/app:latest`, `r/app:main-abc1234`" in text
    assert "| vulnerabilities | MEDIUM 2, LOW 1 (gate: CRITICAL,HIGH) |" in text
    assert "docker-image.yml@refs/heads/main" in text
    assert "| merge | 1.2 |" in text and "| **total** | **11.2** |" in text


def test_a_gates_only_summary_says_nothing_was_pushed():
    text = ci.summary_markdown(
        ci.Summary(
            "web",
            "sha256:" + "b" * 64,
            ("linux/amd64",),
            ("r/web:pr-1",),
            {},
            ("CRITICAL",),
            "",
            [],
            pushed=False,
        )
    )
    assert "| tags | nothing pushed |" in text
    assert "| vulnerabilities | none (gate: CRITICAL) |" in text


def test_releasing_recorded_digests_without_pushing_is_refused_before_anything_runs():
    config = cfg()
    with pytest.raises(ConfigError, match=r"--from .* --no-push"):
        release(
            config, config.select(""), Runner(dry=True),
            ReleaseOptions(push=False, from_dir="/digests"), env={}, now=None,
        )  # fmt: skip


# --------------------------------------------------------------------------- act


SHA = "c" * 40


@pytest.mark.parametrize(
    ("spec", "name", "ref"),
    [
        ("push:main", "push", "refs/heads/main"),
        ("push:develop", "push", "refs/heads/develop"),
        ("tag:v1.0.0", "push", "refs/tags/v1.0.0"),
        ("dispatch:staging", "workflow_dispatch", "refs/heads/main"),
        ("pr:42", "pull_request", None),
    ],
)
def test_events_are_shaped_as_github_sends_them(spec, name, ref):
    ev = act.event(spec, SHA)
    assert ev.name == name
    assert ev.payload.get("ref") == ref
    if name == "push":
        assert ev.payload["after"] == SHA
    if name == "pull_request":
        assert ev.payload["number"] == 42 and ev.payload["pull_request"]["head"]["sha"] == SHA


def test_a_dispatch_carries_its_inputs_as_strings():
    assert act.event("dispatch:+no-cache", SHA).payload["inputs"] == {
        "suffix": "none",
        "no-cache": "true",
    }
    assert act.event("dispatch:prod", SHA).payload["inputs"]["no-cache"] == "false"


@pytest.mark.parametrize(
    "spec", ["push", "push:", "pr:x", "dispatch:qa", "dispatch:dev+fast", "release:v1"]
)
def test_a_bad_event_is_one_clear_error(spec):
    with pytest.raises(ConfigError, match="event"):
        act.event(spec, SHA)


def test_actions_must_be_pinned_and_have_a_stand_in():
    pinned = "  - uses: astral-sh/setup-uv@" + "d" * 40 + " # v10\n"
    assert act.remote_actions([pinned, "    uses: ./.github/workflows/x.yml\n"]) == {
        ("astral-sh/setup-uv", "d" * 40)
    }
    with pytest.raises(ConfigError, match="not pinned"):
        act.remote_actions(["  - uses: actions/setup-node@v4\n"])
    with pytest.raises(ConfigError, match="no local stand-in for acme/deploy"):
        act.local_repositories(ROOT, {("acme/deploy", "e" * 40)})
    assert act.local_repositories(ROOT, {("actions/checkout", "f" * 40)}) == ()


def test_the_act_command_maps_runners_stand_ins_and_the_lab_without_secrets_in_argv():
    lab = act.LabRun(
        registry="127.0.0.1:5000/act",
        private_key=Path("/w/cosign.key"),
        public_key=Path("/w/cosign.pub"),
        workdir=Path("/w"),
        db_repository="127.0.0.1:5000/db/trivy-db:2",
        allow_test_db=True,
    )
    command = act.act_command(
        Path("/repo/.github/workflows/backend-docker-build.yml"),
        act.event("push:main", SHA, run_number=7),
        Path("/w/events/push-main.json"),
        lab,
        ("astral-sh/setup-uv@" + "d" * 40 + "=/repo/.ci/act/setup-uv",),
        key_text="the-private-key-text",
    )
    argv = command.argv
    assert argv[:2] == ("act", "push")
    pairs = {(argv[i], argv[i + 1]) for i in range(len(argv) - 1)}
    assert ("--platform", "ubuntu-24.04=-self-hosted") in pairs
    assert ("--platform", "ubuntu-24.04-arm=-self-hosted") in pairs
    assert ("--var", "IMAGE_REGISTRY=127.0.0.1:5000/act") in pairs
    assert ("--var", "REGISTRY_HOST=127.0.0.1:5000") in pairs
    assert ("--var", "COSIGN_KEY=env://COSIGN_PRIVATE_KEY") in pairs
    assert ("--env", "GITHUB_RUN_NUMBER=7") in pairs
    assert ("--env", "BUILDTASKS_SCAN_DB_REPOSITORIES=127.0.0.1:5000/db/trivy-db:2") in pairs
    assert ("--secret", "COSIGN_PRIVATE_KEY") in pairs
    assert "--action-offline-mode" in argv
    assert not any("the-private-key-text" in a for a in argv)
    assert command.env["COSIGN_PRIVATE_KEY"] == "the-private-key-text"


def test_the_jobs_do_not_inherit_the_caller_s_session():
    env = act.job_environment(
        {
            "PATH": "/bin",
            "VIRTUAL_ENV": "/repo/.venv",
            "BUILDTASKS_ARTIFACTS_DIR": "/tmp/x",
            "BUILDTASKS_LAB_HOME": "/lab",
            "GITHUB_OUTPUT": "/tmp/out",
        },
        Command(("act",), env={"GITHUB_TOKEN": "t"}),
    )
    assert env == {"PATH": "/bin", "BUILDTASKS_LAB_HOME": "/lab", "GITHUB_TOKEN": "t"}


def test_a_workflow_is_found_by_file_or_image_key(tmp_path):
    folder = tmp_path / ".github" / "workflows"
    folder.mkdir(parents=True)
    (folder / "backend-docker-build.yml").write_text("name: x\n")
    expected = folder / "backend-docker-build.yml"
    assert act.workflow_path(tmp_path, "backend") == expected
    assert act.workflow_path(tmp_path, "backend-docker-build.yml") == expected
    with pytest.raises(ConfigError, match=r"there are: backend-docker-build\.yml"):
        act.workflow_path(tmp_path, "web")


def test_the_step_table_aligns_names_and_ends_with_the_total():
    from buildtasks import timing

    lines = timing.table("backend: step times", [("engine probes", 0.123), ("buildx build", 1.5)])
    assert lines == [
        "backend: step times",
        "  engine probes     0.12 s",
        "  buildx build      1.50 s",
        "  total             1.62 s",
    ]
    assert timing.table("x", []) == []
    assert timing.as_record([("push", 0.12345)]) == [["push", 0.123]]


def test_a_step_is_timed_even_when_it_fails():
    from buildtasks import timing

    steps: list[tuple[str, float]] = []
    with pytest.raises(RuntimeError), timing.step(steps, "scan"):
        raise RuntimeError("gate")
    assert [name for name, _ in steps] == ["scan"]


def test_the_benchmark_replays_the_buildx_argv_the_task_echoed():
    from buildtasks.benchmark import Figure, buildx_argv

    stderr = (
        "note: built on stand-ins\n"
        "+ docker buildx build --label 'org.opencontainers.image.title=my app' -t r/a:b .\n"
        "+ crane push x y\n"
    )
    assert buildx_argv(stderr) == [
        "docker", "buildx", "build", "--label", "org.opencontainers.image.title=my app",
        "-t", "r/a:b", ".",
    ]  # fmt: skip
    assert Figure("task ÷ raw", 1.234, "x", "≤ 1.10x", 5).row() == (
        "| task ÷ raw | 1.23x | ≤ 1.10x | 5 |"
    )
