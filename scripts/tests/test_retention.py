"""docker.cleanup and docker.usage against a real registry with a realistic history.

A registry of the test's own (the lab's registry binary and config, deletes enabled), so its
garbage collection runs while nothing else pushes and its storage is measured exactly. The
history comes from the real tasks and tools: multi-platform builds pushed by `docker.build`,
per-platform "failed gate" pushes by digest that nothing tags, signatures and attestations by
cosign, and a month-old part backdated in the registry's own records (its storage times).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
from support.lab import cosign_key_pair, invoke, registry_tags, scratch_registry

from buildtasks.runner import Runner
from buildtasks.sign.modes import SigningMode
from buildtasks.sign.plans import (
    attest_command,
    sign_command,
    verify_attestation_command,
    verify_command,
)
from buildtasks.sign.version import detect_cosign_version

MONTH = 30 * 86400
ENV = {"COSIGN_PASSWORD": "", "GITHUB_ACTIONS": ""}


def crane(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["crane", *args], capture_output=True, text=True, check=check)


def build(env: dict[str, str], image: str, *args: str) -> str:
    """Build and push with docker.build as a user does; the pushed digest."""
    result = invoke("docker.build", "--image", image, *args, env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    return re.search(rf"^{image}: (sha256:[0-9a-f]{{64}})", result.stdout, re.M).group(1)


def backdate(storage: Path, seconds: int) -> None:
    """Age everything the registry holds so far by `seconds` (its own record of push times)."""
    moment = time.time() - seconds
    for path in (storage / "docker/registry/v2/repositories").rglob("link"):
        os.utime(path, (moment, moment))


@dataclass
class History:
    env: dict[str, str]
    config: Path
    storage: Path
    backend: str
    frontend: str
    digests: dict[str, str]
    key: Path


@pytest.fixture(scope="module")
def history(tmp_path_factory, lab) -> History:
    root = tmp_path_factory.mktemp("retention")
    key = cosign_key_pair(root / "keys")
    predicate = root / "sbom.cdx.json"
    predicate.write_text(
        json.dumps(
            {
                "bomFormat": "CycloneDX",
                "specVersion": "1.6",
                "components": [
                    {"name": f"pkg{i}", "version": "1.0", "type": "library"} for i in range(20000)
                ],
            }
        )
    )
    runner = Runner(echo=False, env={"COSIGN_PASSWORD": ""})
    version = detect_cosign_version(runner)
    mode = SigningMode(keyless=False, key=str(key))

    def sign(ref: str) -> None:
        runner.run(sign_command(ref, mode, version, tlog=False), capture=True)
        runner.run(
            attest_command(ref, predicate, "cyclonedx", mode, version, tlog=False), capture=True
        )

    with scratch_registry(root) as (address, config):
        # The configured images, pushed to this registry: what CI does with BUILDTASKS_REGISTRY.
        env = {**ENV, "BUILDTASKS_REGISTRY": f"{address}/acme"}
        backend, frontend = f"{address}/acme/monorepo", f"{address}/acme/monorepo-web"
        both = "linux/amd64,linux/arm64"
        d = {}
        # A month ago: a release of each image, a pull request's tags, two failed gates.
        d["b1"] = build(env, "backend", "--platform", both, "-t", "main", "-t", "pr-7", "--push")
        sign(f"{backend}@{d['b1']}")
        # A later commit (a different image: the builds are reproducible) whose gate failed.
        d["b0"] = build(env, "backend", "--push-by-digest", "-b", "APP_VERSION=gate-0")
        d["f1"] = build(env, "frontend", "-t", "latest", "-t", "pr-9", "--push")
        sign(f"{frontend}@{d['f1']}")
        d["f0"] = build(env, "frontend", "--push-by-digest", "-b", "APP_VERSION=gate-0")
        backdate(root / "storage", MONTH)
        # Today: the next release of the backend, a young pull request, a failed gate.
        d["b2"] = build(
            env,
            "backend",
            "--platform",
            both,
            "-t",
            "main",
            "-t",
            "latest",
            "-t",
            "v1.2.3",
            "-t",
            "pr-8",
            "--push",
        )
        sign(f"{backend}@{d['b2']}")
        d["b3"] = build(env, "backend", "--push-by-digest", "-b", "APP_VERSION=gate-3")
        d["f2"] = build(env, "frontend", "-t", "pr-10", "--push")
        yield History(env, config, root / "storage", backend, frontend, d, key)


def cleanup(history: History, *args: str) -> subprocess.CompletedProcess[str]:
    """docker.cleanup of both configured images, reading the registry's storage."""
    return invoke(
        "docker.cleanup", "--registry-config", str(history.config), *args, env=history.env
    )


@pytest.mark.lab
def test_usage_and_dry_run_report_without_deleting(history):
    before = {n: sorted(registry_tags(n)) for n in (history.backend, history.frontend)}
    usage = invoke("docker.usage", "--registry-config", str(history.config), env=history.env)
    assert usage.returncode == 0, usage.stderr[-2000:]
    rows = {line.split()[0]: line.split() for line in usage.stdout.splitlines()[1:]}
    plan = cleanup(history, "--verbose").stdout
    assert rows[history.backend][3] == "2", plan  # two failed-gate pushes nothing points at
    assert rows[history.frontend][3] == "1"

    dry = cleanup(history)
    assert dry.returncode == 0, dry.stderr[-2000:]
    assert dry.stdout.count("dry run: add --apply to delete") == 2
    assert {n: sorted(registry_tags(n)) for n in before} == before
    backend_plan = dry.stdout.split(history.frontend + ":")[0]
    assert re.search(r"delete +pr-7 .*expires after 14", backend_plan)
    assert re.search(r"keep +pr-8 .*expires after 14", backend_plan)
    assert f"delete {history.digests['b0']}  untagged, 30.0 days old" in backend_plan, backend_plan
    assert f"keep   {history.digests['b3']}  untagged" in backend_plan


@pytest.mark.lab
def test_apply_deletes_orphans_and_old_pr_tags_and_keeps_every_kept_tag_whole(history):
    d = history.digests
    gc = cleanup(history, "--apply", "--gc")
    assert gc.returncode == 0, gc.stderr[-3000:]
    again = cleanup(history, "--apply")
    assert again.returncode == 0, again.stderr[-3000:]
    assert again.stdout.count(": nothing to delete") == 2  # a rerun finds the job done

    # The tags: old pull requests gone, the rest where they were.
    backend_tags = set(registry_tags(history.backend))
    frontend_tags = set(registry_tags(history.frontend))
    plain = lambda tags: {t for t in tags if not t.startswith("sha256-")}  # noqa: E731
    assert plain(backend_tags) == {"main", "latest", "v1.2.3", "pr-8"}
    assert plain(frontend_tags) == {"latest", "pr-10"}
    assert crane("digest", f"{history.frontend}:latest").stdout.strip() == d["f1"]
    # The month-old release and both old failed gates are gone, their signatures with them.
    for name, digest in (
        (history.backend, d["b1"]),
        (history.backend, d["b0"]),
        (history.frontend, d["f0"]),
    ):
        assert crane("manifest", f"{name}@{digest}", check=False).returncode != 0
        assert not any(t.startswith(digest.replace(":", "-")) for t in backend_tags | frontend_tags)
    # The young failed gate stays (untagged-days), and so does the kept release's every part.
    assert crane("manifest", f"{history.backend}@{d['b3']}").returncode == 0

    runner = Runner(echo=False)
    version = detect_cosign_version(runner)
    mode = SigningMode(keyless=False, public_key=str(history.key.with_suffix(".pub")))
    for name in (history.backend, history.frontend):
        for tag in plain(set(registry_tags(name))):
            index = json.loads(crane("manifest", f"{name}:{tag}").stdout)
            platforms = [
                f"{m['platform']['os']}/{m['platform']['architecture']}"
                for m in index.get("manifests", [])
                if m["platform"]["os"] != "unknown"
            ] or ["linux/amd64"]
            for platform in platforms:
                crane(
                    "pull",
                    "--platform",
                    platform,
                    "--format",
                    "oci",
                    f"{name}:{tag}",
                    str(history.storage.parent / "pulled"),
                )
    for ref in (f"{history.backend}@{d['b2']}", f"{history.frontend}@{d['f1']}"):
        runner.run(verify_command(ref, mode, version, tlog=False), capture=True)
        runner.run(
            verify_attestation_command(ref, "cyclonedx", mode, version, tlog=False), capture=True
        )

    # What the registry's garbage collection freed is what the plan said it would (±10 %).
    match = re.search(r"garbage collection freed .*\((\d+) bytes; the plan said (\d+)\)", gc.stdout)
    assert match, gc.stdout[-2000:]
    freed, planned = int(match.group(1)), int(match.group(2))
    assert planned > 1_000_000  # a month-old release with its signatures and attestations
    assert abs(freed - planned) <= planned / 10, (freed, planned)


@pytest.mark.lab
def test_registry_refusing_deletes_is_one_line_and_touches_nothing(history, tmp_path):
    with scratch_registry(tmp_path, delete=False) as (address, config):
        name = f"{address}/acme/monorepo"
        crane("copy", f"{history.backend}:pr-8", f"{name}:pr-1")
        backdate(tmp_path / "storage", MONTH)
        result = invoke(
            "docker.cleanup",
            "--image",
            "backend",
            "--name",
            name,
            "--registry-config",
            str(config),
            "--apply",
            env=history.env,
        )
        assert result.returncode == 4, result.stderr[-2000:]
        last = result.stderr.strip().splitlines()[-1]
        assert "refuses deletes" in last and "storage.delete.enabled" in last
        assert "pr-1" in registry_tags(name)


@pytest.mark.lab
def test_registry_down_names_the_fix():
    result = invoke(
        "docker.cleanup", "--image", "backend", "--name", "127.0.0.1:9/acme/app", env=ENV
    )
    assert result.returncode == 4
    assert "127.0.0.1:9 is unreachable" in result.stderr and "lab.up" in result.stderr
