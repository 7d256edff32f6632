"""Run one workflow for one event with act, against the lab (the I/O side of `buildtasks.act`)."""

from __future__ import annotations

import json
import shlex
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path

from buildtasks import act as plan
from buildtasks.config import Config
from buildtasks.errors import BuildtasksError, ConfigError
from buildtasks.runner import Runner
from buildtasks.sign import generate_key_pair_command


@dataclass(frozen=True)
class ActResult:
    """How one workflow run for one event went."""

    workflow: str
    event: str
    ok: bool
    seconds: float
    log: Path


def lab_key_pair(workdir: Path, runner: Runner) -> tuple[Path, Path]:
    """The key pair that stands in for keyless signing in local runs (made once, no password)."""
    key, pub = workdir / "cosign.key", workdir / "cosign.pub"
    if not key.is_file() or not pub.is_file():
        workdir.mkdir(parents=True, exist_ok=True)
        key.unlink(missing_ok=True)
        pub.unlink(missing_ok=True)
        runner.run(generate_key_pair_command(workdir), quiet=True)
    return key, pub


def head_sha(root: Path) -> str:
    out = subprocess.run(
        ("git", "rev-parse", "HEAD"), cwd=root, capture_output=True, text=True, check=False
    )
    if out.returncode != 0:
        raise ConfigError(f"{root} is not a git checkout with a commit: act needs one")
    return out.stdout.strip()


def run_workflow(
    config: Config,
    workflow: Path,
    ev: plan.Event,
    *,
    registry: str,
    workdir: Path,
    env: Mapping[str, str],
    dry: bool = False,
    log: Path | None = None,
    quiet: bool = False,
) -> ActResult:
    """Run `workflow` for `ev` with act; its output goes to `log`, and to stdout unless `quiet`.

    The registry and the scan's DB come from the caller's configuration and environment
    (`BUILDTASKS_SCAN_DB_REPOSITORIES`, `BUILDTASKS_ALLOW_TEST_DB` are handed to the jobs).
    """
    runner = Runner()
    workdir.mkdir(parents=True, exist_ok=True)
    for sub in ("standin", "docker", "events", "logs"):
        (workdir / sub).mkdir(exist_ok=True)
    if dry:  # print what would run; make no key
        key, pub = workdir / "cosign.key", workdir / "cosign.pub"
    else:
        key, pub = lab_key_pair(workdir, runner)
    sha = head_sha(config.root)
    ev = plan.event(ev.label, sha, run_number=ev.run_number)
    payload = workdir / "events" / f"{ev.label.replace(':', '-').replace('+', '-')}.json"
    payload.write_text(json.dumps(ev.payload, indent=2) + "\n", encoding="utf-8")
    texts = [p.read_text(encoding="utf-8") for p in workflow.parent.glob("*.yml")]
    repos = plan.local_repositories(config.root, plan.remote_actions(texts))
    lab = plan.LabRun(
        registry=registry,
        private_key=key,
        public_key=pub,
        workdir=workdir,
        db_repository=",".join(config.scan.db_repositories),
        allow_test_db=env.get("BUILDTASKS_ALLOW_TEST_DB") == "1",
    )
    command = plan.act_command(
        workflow, ev, payload, lab, repos, key_text="" if dry else key.read_text(encoding="utf-8")
    )
    act = runner.resolve("act")
    command = replace(command, argv=(act, *command.argv[1:]))
    shown = shlex.join(command.argv)
    if not quiet:
        print(f"+ {shown}", flush=True)
    log = log or workdir / "logs" / f"{workflow.stem}-{payload.stem}.log"
    if dry:
        return ActResult(workflow.name, ev.label, True, 0.0, log)
    started = time.monotonic()
    with log.open("w", encoding="utf-8") as sink:
        proc = subprocess.Popen(
            command.argv,
            cwd=config.root,
            env=plan.job_environment(env, command),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            errors="replace",
        )
        assert proc.stdout is not None
        for line in proc.stdout:
            sink.write(line)
            if not quiet:
                sys.stdout.write(line)
        code = proc.wait()
    return ActResult(workflow.name, ev.label, code == 0, time.monotonic() - started, log)


def require_ok(result: ActResult) -> None:
    """Fail in one line naming the workflow, the event and act's log."""
    if not result.ok:
        raise BuildtasksError(
            f"{result.workflow} failed for {result.event}: the failing step is in {result.log}"
        )
