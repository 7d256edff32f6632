"""The image workflows, run for real with act against the lab, one event after another.

For each event the backend and the frontend workflows run at once, exactly as committed: act
maps GitHub's runner labels to this machine and the actions that need GitHub to the stand-ins
of `.ci/act/`; the registry (a fresh namespace of the lab's) and key-based signing come in
through repository variables and secrets. Then the lab registry is read with crane and
cosign directly, not through the tasks under test.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import pytest
from support import vulndb
from support.lab import ROOT

from buildtasks import act, config
from buildtasks.actrun import ActResult, head_sha, lab_key_pair, run_workflow
from buildtasks.runner import Runner

pytestmark = pytest.mark.lab

IMAGES = {"backend": "monorepo", "frontend": "monorepo-web"}
#: (event, run number) in two lanes that run side by side, each event after the one before it;
#: the images of one event build at once too (four workflow runs at a time at most).
LANES = (
    (("pr:42", 11), ("push:main", 12), ("push:develop", 13)),
    (("tag:v1.0.0", 14), ("dispatch:staging", 15), ("dispatch:none+no-cache", 16)),
)
EVENTS = tuple(event for lane in LANES for event in lane)
#: Findings below the gate's CRITICAL,HIGH: the scan reports them and passes.
ADVISORIES = (
    vulndb.Advisory(
        id="CVE-2099-0201", ecosystem="debian 12", package="tar", severity="MEDIUM",
        fixed_version="1.36+dfsg-1", title="tar: invented medium flaw for the workflow runs",
    ),
    vulndb.Advisory(
        id="CVE-2099-0202", ecosystem="debian 12", package="coreutils", severity="LOW",
        fixed_version=None, title="coreutils: invented low flaw for the workflow runs",
    ),
)  # fmt: skip


@dataclass
class Runs:
    namespace: str
    workdir: Path
    sha: str
    public_key: Path
    results: dict[tuple[str, str], ActResult] = field(default_factory=dict)
    #: The lab's repositories in the pull request's namespace after its runs.
    after_pull_request: list[str] = field(default_factory=list)

    @property
    def pr_namespace(self) -> str:
        return f"{self.namespace}-pr"

    def repo(self, image: str) -> str:
        return f"{self.namespace}/{IMAGES[image]}"

    def log(self, event: str, image: str) -> str:
        return self.results[(event, image)].log.read_text(encoding="utf-8", errors="replace")


def catalog(lab: str, namespace: str) -> list[str]:
    out = subprocess.run(
        ("crane", "catalog", lab, "--insecure"), capture_output=True, text=True, check=True
    ).stdout
    return sorted(r for r in out.split() if r.startswith(namespace.split("/", 1)[1] + "/"))


def crane(*args: str) -> str:
    return subprocess.run(
        ("crane", *args, "--insecure"), capture_output=True, text=True, check=True
    ).stdout


@pytest.fixture(scope="module")
def runs(lab, tmp_path_factory) -> Runs:
    workdir = tmp_path_factory.mktemp("act")
    namespace = f"{lab}/act-{uuid.uuid4().hex[:8]}"
    # The scan's DB: invented advisories in the lab registry, as a mirror would serve them.
    db_dir = vulndb.write_db(workdir / "trivy", ADVISORIES, now=datetime.now(UTC))
    tarball = vulndb.write_db_tarball(db_dir, workdir / "trivy-db" / "db.tar.gz")
    db = vulndb.db_repository(f"{namespace}-db", "trivy-db")
    Runner(echo=False).run(vulndb.oras_push(db, tarball, plain_http=True), quiet=True)
    env = {
        **os.environ,
        "BUILDTASKS_SCAN_DB_REPOSITORIES": db,
        "BUILDTASKS_ALLOW_TEST_DB": "1",
    }
    cfg = config.load(ROOT, env=env)
    _, public = lab_key_pair(workdir, Runner(echo=False))
    runs = Runs(namespace, workdir, head_sha(ROOT), public)

    def one(event: str, number: int, image: str) -> ActResult:
        return run_workflow(
            cfg,
            act.workflow_path(ROOT, image),
            act.event(event, "", run_number=number),
            registry=runs.pr_namespace if event.startswith("pr:") else namespace,
            workdir=workdir,
            env=env,
            log=workdir / f"{image}-{number}.log",
            quiet=True,
        )

    def lane(events) -> None:
        for event, number in events:
            with ThreadPoolExecutor(len(IMAGES)) as pool:
                futures = {image: pool.submit(one, event, number, image) for image in IMAGES}
                for image, future in futures.items():
                    runs.results[(event, image)] = result = future.result()
                    print(
                        f"{image} {event}: {'ok' if result.ok else 'FAILED'} {result.seconds:.0f}s"
                    )

    with ThreadPoolExecutor(len(LANES)) as pool:
        for done in [pool.submit(lane, events) for events in LANES]:
            done.result()
    # The pull request had a namespace of its own: whatever the other lane pushed meanwhile,
    # anything in it came from the pull request.
    runs.after_pull_request = catalog(lab, runs.pr_namespace)
    return runs


def tail(runs: Runs, event: str, image: str, lines: int = 60) -> str:
    return "\n".join(runs.log(event, image).splitlines()[-lines:])


@pytest.mark.parametrize("image", IMAGES)
@pytest.mark.parametrize("event", [e for e, _ in EVENTS])
def test_the_workflow_passes(runs, event, image):
    assert runs.results[(event, image)].ok, tail(runs, event, image)


def test_a_pull_request_tests_and_scans_but_pushes_nothing(runs):
    assert runs.after_pull_request == []
    for image in IMAGES:
        log = runs.log("pr:42", image)
        assert "image tests passed" in log
        assert "scan gate passed at CRITICAL,HIGH" in log
        assert "--no-push: nothing pushed or signed" in log
        assert not re.search(r"\[[^]]*(build|merge)[^]]*\] 🏁  Job succeeded", log)
    sarif = runs.workdir / "standin" / "sarif"
    assert sorted(p.name for p in sarif.glob("*.sarif")) == [
        "trivy_backend.sarif",
        "trivy_frontend.sarif",
    ]


def cleanup_succeeded(log: str) -> bool:
    return bool(re.search(r"\[[^]]*cleanup[^]]*\] 🏁  Job succeeded", log))


@pytest.mark.parametrize("image", IMAGES)
def test_pushes_to_main_and_release_tags_clean_up_after_the_merge(runs, image):
    # What it kept is checked by the tests below: every tag, platform and signature is read
    # after the last event, cleanups included.
    for event, tag in (("push:main", "latest"), ("tag:v1.0.0", "v1.0.0")):
        log = runs.log(event, image)
        assert cleanup_succeeded(log), tail(runs, event, image)
        assert re.search(rf"{re.escape(runs.repo(image))}: \d+ tags, \d+ manifests", log)
        assert re.search(rf"keep +{re.escape(tag)} .*matches keep pattern", log)
    for event in ("pr:42", "push:develop", "dispatch:staging"):
        assert not cleanup_succeeded(runs.log(event, image)), event


def expected_tags(sha7: str) -> set[str]:
    return {
        "latest", f"main-{sha7}",
        "develop", f"develop-{sha7}",
        "v1.0.0", "1.0.0", "1.0", "1",
        "staging",
        "manual-16",
    }  # fmt: skip


@pytest.mark.parametrize("image", IMAGES)
def test_each_event_tags_one_index_of_both_platforms(runs, image):
    repo = runs.repo(image)
    tags = set(crane("ls", repo).split())
    published = {t for t in tags if not t.startswith(("sha256-", "buildcache-"))}
    assert published == expected_tags(runs.sha[:7])
    for tag in sorted(published):
        index = json.loads(crane("manifest", f"{repo}:{tag}"))
        assert index["mediaType"] == "application/vnd.oci.image.index.v1+json", tag
        platforms = sorted(
            f"{m['platform']['os']}/{m['platform']['architecture']}"
            for m in index["manifests"]
            if m.get("platform", {}).get("os") != "unknown"
        )
        assert platforms == ["linux/amd64", "linux/arm64"], tag
    caches = {t for t in tags if t.startswith("buildcache-")}
    assert caches == {"buildcache-linux-amd64", "buildcache-linux-arm64"}


@pytest.mark.parametrize("image", IMAGES)
def test_every_published_index_is_signed_and_attested(runs, image):
    repo = runs.repo(image)
    digests = {
        crane("digest", f"{repo}:{tag}").strip() for tag in ("latest", "develop", "1", "staging")
    }
    assert len(digests) == 4, "each event built its own index (its labels differ)"
    key = ("--key", str(runs.public_key), "--insecure-ignore-tlog")
    for digest in sorted(digests):
        ref = f"{repo}@{digest}"
        subprocess.run(("cosign", "verify", *key, ref), capture_output=True, check=True)
        for kind in ("cyclonedx", "vuln"):
            subprocess.run(
                ("cosign", "verify-attestation", *key, "--type", kind, ref),
                capture_output=True,
                check=True,
            )


def cached_steps(log: str) -> set[tuple[str, str]]:
    """The work BuildKit took from a cache: `CACHED [stage n/m] RUN|COPY|ADD ...`.

    Base images (`FROM`), named contexts and `WORKDIR` show as CACHED even with `--no-cache`
    once they exist (a known BuildKit behaviour, docker/compose#8285): they run no step.
    """
    steps = set(re.findall(r"CACHED \[([^\]]+)\] (\w+)", log))
    return {(stage, op) for stage, op in steps if op in ("RUN", "COPY", "ADD")}


@pytest.mark.parametrize("image", IMAGES)
def test_the_no_cache_dispatch_rebuilds_every_step(runs, image):
    log = runs.log("dispatch:none+no-cache", image)
    builds = [line for line in log.splitlines() if "+ docker buildx build " in line]
    assert len(builds) == 3, "the test job's build and one per platform"
    assert all(" --no-cache " in line for line in builds)
    assert any(op == "RUN" for _, op in cached_steps(runs.log("dispatch:staging", image))), (
        "control: the run before it took its RUN steps from the cache"
    )
    assert cached_steps(log) == set()


@pytest.mark.parametrize("image", IMAGES)
def test_the_merge_writes_a_job_summary(runs, image):
    lines = runs.log("push:main", image).splitlines()
    start = next(i for i, line in enumerate(lines) if "merge" in line and "Summary - ###" in line)
    summary = "\n".join(lines[start : start + 30])
    assert "| platforms | linux/amd64, linux/arm64 |" in summary
    assert f"{runs.repo(image)}:latest" in summary
    assert "| vulnerabilities | MEDIUM" in summary
    assert f"| signed by | key {runs.public_key} |" in summary
    assert "| **total** |" in summary
