"""Each gate covers everything the signature vouches for: attacks that used to pass, now failing.

Pure checks first (reports, platforms, DB trust, masking, stand-ins), then the same attacks
against the real engine, registry, trivy and cosign: a token planted in an arm64-only layer,
a test or stale vulnerability DB, a `ghcr.io/...` build on the lab's stand-ins, a signature
asked for without a scan gate, an SBOM that names no digest.
"""

from __future__ import annotations

import json
import os
import random
import string
import subprocess
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from support.lab import ROOT, cosign_key_pair, invoke, unique_repo
from support.vulndb import write_db

from buildtasks import platforms, reports, scan, trivy
from buildtasks.command import Command
from buildtasks.config import Config, ImageSpec, ScanConfig
from buildtasks.errors import ConfigError, GateFailed
from buildtasks.record import stand_in_problem
from buildtasks.runner import Runner
from buildtasks.sbom import write_sbom
from buildtasks.scan import ScanOptions, UntrustedVulnDB
from buildtasks.sign import require_gate
from buildtasks.sign.modes import key_kind

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
DIGEST = "sha256:" + "a" * 64
ARM = "sha256:" + "b" * 64
AMD = "sha256:" + "c" * 64


# --------------------------------------------------------------------------- pure


def test_index_platforms_skip_attestation_manifests():
    index = {
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [
            {"digest": AMD, "platform": {"os": "linux", "architecture": "amd64"}},
            {"digest": ARM, "platform": {"os": "linux", "architecture": "arm", "variant": "v7"}},
            {
                "digest": DIGEST,
                "platform": {"os": "unknown", "architecture": "unknown"},
                "annotations": {"vnd.docker.reference.type": "attestation-manifest"},
            },
        ],
    }
    found = [(p, d["digest"]) for p, d in platforms.platform_manifests(index)]
    assert found == [("linux/amd64", AMD), ("linux/arm/v7", ARM)]
    assert platforms.platform_manifests({"mediaType": "x", "layers": []}) == []
    assert platforms.platform_slug("linux/arm/v7") == "linux-arm-v7"


def _report(target: str, secret: str = "") -> dict:
    result: dict = {"Target": target, "Class": "secret"}
    if secret:
        result["Secrets"] = [{"RuleID": secret, "Severity": "CRITICAL", "Title": "token"}]
    return {"SchemaVersion": 2, "ArtifactName": "x", "Results": [result]}


def test_merged_report_says_which_platform_each_finding_is_on():
    merged = reports.merge_reports(
        [("linux/amd64", _report("/app")), ("linux/arm64", _report("/srv/t", "github-pat"))],
        name=f"r@{DIGEST}",
    )
    assert merged["ArtifactName"] == f"r@{DIGEST}"
    assert [r["Platform"] for r in merged["Results"]] == ["linux/amd64", "linux/arm64"]
    blocking = scan.gate(merged, ("CRITICAL",), False)
    assert [f.describe() for f in blocking] == ["github-pat in /srv/t (linux/arm64) on linux/arm64"]
    single = reports.merge_reports([("", _report("/app"))], name="ignored")
    assert single["ArtifactName"] == "x" and "Platform" not in single["Results"][0]


def test_the_gate_verdict_is_bound_to_one_digest():
    stamped = reports.stamp_report(
        _report("/app"),
        reference=f"r@{DIGEST}",
        digest=DIGEST,
        platforms={"linux/arm64": ARM},
        db={"UpdatedAt": "2026-12-01T00:00:00Z"},
        ignore_sources=(".trivyignore",),
    )
    assert reports.gate_passed_for(stamped, DIGEST) is None  # no verdict yet
    passed = reports.stamp_gate(stamped, passed=True, severity=("CRITICAL",), ignore_unfixed=False)
    assert reports.gate_passed_for(passed, DIGEST) is True
    assert reports.gate_passed_for(passed, ARM) is None  # another image: no verdict
    failed = reports.stamp_gate(stamped, passed=False, severity=("CRITICAL",), ignore_unfixed=False)
    assert reports.gate_passed_for(failed, DIGEST) is False


def test_sarif_keeps_one_category_per_platform():
    runs = [
        reports.with_category(
            {"version": "2.1.0", "runs": [{"tool": {}}]}, "trivy/backend/linux-amd64"
        ),
        reports.with_category(
            {"version": "2.1.0", "runs": [{"tool": {}}]}, "trivy/backend/linux-arm64"
        ),
    ]
    merged = reports.merge_sarif(runs)
    ids = [run["automationDetails"]["id"] for run in merged["runs"]]
    assert ids == ["trivy/backend/linux-amd64/", "trivy/backend/linux-arm64/"]


def test_sbom_stamp_names_the_index_and_the_platform_manifest():
    sbom = {"bomFormat": "CycloneDX", "metadata": {"properties": [{"name": "x", "value": "1"}]}}
    stamped = reports.stamp_sbom(sbom, digest=DIGEST, platform="linux/arm64", manifest=ARM)
    assert reports.sbom_stamp(stamped) == {
        "buildtasks:digest": DIGEST,
        "buildtasks:platform": "linux/arm64",
        "buildtasks:manifest-digest": ARM,
    }
    again = reports.stamp_sbom(stamped, digest=AMD, platform="", manifest=AMD)
    assert reports.sbom_stamp(again) == {"buildtasks:digest": AMD}


@pytest.mark.parametrize(
    ("meta", "allow", "problem"),
    [
        pytest.param({"UpdatedAt": "2026-12-01T06:00:00Z"}, False, "", id="fresh"),
        pytest.param(
            {"UpdatedAt": "2026-11-20T06:00:00Z"},
            False,
            "is older than 3 days (UpdatedAt 2026-11-20T06:00Z)",
            id="stale",
        ),
        pytest.param(
            {"UpdatedAt": "2026-12-01T06:00:00Z", trivy.FIXTURE_KEY: "test"},
            False,
            "is a test fixture, not real advisories (UpdatedAt 2026-12-01T06:00Z)",
            id="fixture",
        ),
        pytest.param(
            {"UpdatedAt": "2026-12-01T06:00:00Z", trivy.FIXTURE_KEY: "test"}, True, "", id="allowed"
        ),
        pytest.param({"UpdatedAt": "garbage"}, False, "is older than 3 days", id="no-date"),
        pytest.param(None, False, "", id="no-db"),
    ],
)
def test_db_trust(meta, allow, problem):
    found = trivy.db_problem(meta, now=NOW, max_age=timedelta(days=3), allow_fixture=allow)
    assert found.startswith(problem) if problem else found == ""
    assert (
        trivy.db_problem({"UpdatedAt": "2000-01-01T00:00:00Z"}, now=NOW, max_age=timedelta(0)) == ""
    )  # 0 turns the age check off


def test_echoed_commands_mask_secret_values():
    command = Command(
        ("docker", "buildx", "build", "--build-arg", "NPM_TOKEN=s3cret", "--build-arg", "A=b"),
        env={"COSIGN_PASSWORD": "hunter2", "TRIVY_CACHE_DIR": "/c"},
    )
    shown = command.shell().replace("'", "")
    assert "s3cret" not in shown and "hunter2" not in shown
    assert "NPM_TOKEN=***" in shown and "COSIGN_PASSWORD=***" in shown
    assert "A=b" in shown and "TRIVY_CACHE_DIR=/c" in shown
    assert command.argv[4] == "NPM_TOKEN=s3cret"  # what runs is untouched


def test_a_public_key_over_plain_http_is_refused():
    assert key_kind("https://example.com/cosign.pub", where="public key") == "url"
    with pytest.raises(ConfigError, match="plain http"):
        key_kind("http://example.com/cosign.pub", where="public key")


def test_stand_ins_may_go_to_the_lab_only():
    used = ("python:3.11-slim",)
    assert (
        stand_in_problem(used, ["127.0.0.1:5000/x/monorepo:1"], lab_registry="127.0.0.1:5000") == ""
    )
    assert stand_in_problem((), ["ghcr.io/acme/monorepo:1"], lab_registry="127.0.0.1:5000") == ""
    problem = stand_in_problem(
        used, ["127.0.0.1:5000/m:1", "ghcr.io/acme/monorepo:1"], lab_registry="127.0.0.1:5000"
    )
    assert "python:3.11-slim" in problem and "ghcr.io" in problem


def test_signing_needs_a_passed_gate_on_that_digest(tmp_path):
    ref = f"127.0.0.1:5000/m@{DIGEST}"
    path = tmp_path / "trivy.json"
    with pytest.raises(ConfigError, match="no scan report"):
        require_gate(ref, path)
    stamped = reports.stamp_report(
        _report("/a"), reference=ref, digest=DIGEST, platforms={}, db=None, ignore_sources=()
    )
    path.write_text(json.dumps(stamped))
    with pytest.raises(ConfigError, match="no gate verdict"):
        require_gate(ref, path)
    path.write_text(
        json.dumps(
            reports.stamp_gate(stamped, passed=False, severity=("HIGH",), ignore_unfixed=False)
        )
    )
    with pytest.raises(GateFailed, match="scan gate failed"):
        require_gate(ref, path)
    path.write_text(
        json.dumps(
            reports.stamp_gate(stamped, passed=True, severity=("HIGH",), ignore_unfixed=False)
        )
    )
    require_gate(ref, path)
    with pytest.raises(ConfigError, match="no gate verdict"):
        require_gate(f"127.0.0.1:5000/m@{ARM}", path)


# --------------------------------------------------------------------------- lab


def _config(root: Path, **scan_kw) -> Config:
    image = ImageSpec(
        key="backend", repository="monorepo", dockerfile=str(ROOT / "apps/backend/Dockerfile")
    )
    return Config(
        root=root, registry="127.0.0.1:5000", images={"backend": image}, scan=ScanConfig(**scan_kw)
    )


def _token() -> str:
    rng = random.Random(14)
    return "ghp_" + "".join(rng.choice(string.ascii_letters + string.digits) for _ in range(36))


@pytest.fixture(scope="module")
def planted(lab, tmp_path_factory):
    """A two-platform image whose arm64 image alone carries a GitHub token, pushed and loaded."""
    context = tmp_path_factory.mktemp("planted")
    (context / "token.txt").write_text(f"token={_token()}\n")
    (context / "Dockerfile").write_text(
        "FROM python:3.11-slim\n"
        "ARG TARGETARCH\n"
        "RUN --mount=type=bind,source=token.txt,target=/tmp/token.txt "
        'if [ "$TARGETARCH" = arm64 ]; then cp /tmp/token.txt /srv/settings.txt; fi\n'
    )
    name = unique_repo(lab, "planted")
    meta = context / "metadata.json"
    build = subprocess.run(
        ["docker", "buildx", "build", "--platform", "linux/amd64,linux/arm64", "--provenance=false",
         "--tag", f"{name}:1", "--push", "--metadata-file", str(meta), str(context)],
        capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip
    assert build.returncode == 0, build.stderr[-2000:]
    digest = json.loads(meta.read_text())["containerimage.digest"]
    load = subprocess.run(
        ["docker", "buildx", "build", "--platform", "linux/amd64,linux/arm64", "--provenance=false",
         "--tag", f"{name}:1", "--load", str(context)],
        capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip
    assert load.returncode == 0, load.stderr[-2000:]
    return f"{name}@{digest}"


@pytest.fixture(scope="module")
def fixture_db(tmp_path_factory) -> Path:
    cache = tmp_path_factory.mktemp("trivy-db")
    write_db(cache, now=datetime.now(UTC))
    return cache


@pytest.mark.lab
@pytest.mark.parametrize("local", [False, True], ids=["registry", "engine"])
def test_a_token_in_the_arm64_image_alone_fails_the_gate(planted, fixture_db, tmp_path, local):
    config = _config(tmp_path)
    image = config.image("backend")
    ref = planted if not local else planted.split("@")[1]
    with pytest.raises(GateFailed) as err:
        scan.scan_image(
            config,
            image,
            ref,
            Runner(),
            options=ScanOptions(
                cache_dir=str(fixture_db), offline=True, severity=("CRITICAL",), local=local
            ),
            platforms_built=("linux/amd64", "linux/arm64"),
        )
    line = str(err.value)
    assert "github-pat in /srv/settings.txt (linux/arm64) on linux/arm64" in line
    out = config.artifacts_path(image)
    merged = json.loads((out / "trivy.json").read_text())
    tokens = [f for f in scan.findings(merged) if f.id == "github-pat"]
    assert [f.platform for f in tokens] == ["linux/arm64"]  # the amd64 image has none
    assert set(merged["Buildtasks"]["Platforms"]) == {"linux/amd64", "linux/arm64"}
    assert merged["Buildtasks"]["Digest"] == ref.split("@")[-1]
    assert merged["Buildtasks"]["Gate"]["Passed"] is False
    sarif = json.loads((out / "trivy.sarif").read_text())
    assert {run["automationDetails"]["id"] for run in sarif["runs"]} == {
        "trivy/backend/linux-amd64/",
        "trivy/backend/linux-arm64/",
    }
    assert (out / "trivy.linux-arm64.json").is_file()


@pytest.mark.lab
def test_every_platform_gets_an_sbom_that_names_the_index(planted, tmp_path):
    config = _config(tmp_path)
    result = write_sbom(config, config.image("backend"), planted, Runner(), formats=("cyclonedx",))
    files = result.of_format("cyclonedx")
    assert sorted(p.name for p in files) == [
        "sbom.linux-amd64.cdx.json",
        "sbom.linux-arm64.cdx.json",
    ]
    stamps = [reports.sbom_stamp(json.loads(p.read_text())) for p in files]
    assert {s["buildtasks:digest"] for s in stamps} == {planted.split("@")[1]}
    assert {s["buildtasks:platform"] for s in stamps} == {"linux/amd64", "linux/arm64"}


@pytest.mark.lab
def test_a_stale_or_fixture_db_is_refused_naming_its_date(backend_image, tmp_path, monkeypatch):
    config = _config(tmp_path)
    old = tmp_path / "old"
    write_db(old, now=datetime.now(UTC) - timedelta(days=10))
    with pytest.raises(UntrustedVulnDB, match=r"older than 3 days \(UpdatedAt 20"):
        scan.scan_image(
            config, config.image("backend"), backend_image.ref, Runner(),
            options=ScanOptions(cache_dir=str(old), offline=True),
        )  # fmt: skip
    fresh = tmp_path / "fresh"
    write_db(fresh, now=datetime.now(UTC))
    monkeypatch.delenv("BUILDTASKS_ALLOW_TEST_DB")
    with pytest.raises(UntrustedVulnDB, match="is a test fixture"):
        scan.scan_image(
            config, config.image("backend"), backend_image.ref, Runner(),
            options=ScanOptions(cache_dir=str(fresh), offline=True),
        )  # fmt: skip
    assert not (config.artifacts_path(config.image("backend")) / "trivy.json").exists()


@pytest.mark.lab
def test_a_stray_trivy_yaml_and_trivyignore_drop_nothing(
    backend_image, fixture_db, tmp_path, monkeypatch
):
    cwd = tmp_path / "somewhere"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    (cwd / "trivy.yaml").write_text("severity: [LOW]\n")
    (cwd / ".trivyignore").write_text("CVE-2099-0001\n")
    config = _config(tmp_path / "repo")
    with pytest.raises(GateFailed) as err:
        scan.scan_image(
            config, config.image("backend"), backend_image.ref, Runner(),
            options=ScanOptions(cache_dir=str(fixture_db), offline=True, severity=("CRITICAL",)),
        )  # fmt: skip
    assert "CVE-2099-0001" in str(err.value) and "ignores from" not in str(err.value)


def test_the_gate_line_names_where_accepted_risks_come_from(tmp_path):
    config = _config(tmp_path)
    ignore = tmp_path / ".trivyignore"
    sources = scan.ignore_sources(config, str(ignore), ("repo",), {"TRIVY_IGNORE_POLICY": "p.rego"})
    assert sources == (".trivyignore", "TRIVY_IGNORE_POLICY=p.rego", "VEX repo")
    assert scan.ignore_sources(config, None, (), {"TRIVY_IGNOREFILE": "/x"}) == (
        "TRIVY_IGNOREFILE=/x",
    )


@pytest.mark.lab
def test_a_ghcr_build_on_stand_ins_is_refused_before_anything_is_pushed(lab):
    result = invoke(
        "docker.build", "--image", "backend", "--name", "ghcr.io/acme/monorepo", "--push"
    )
    last = result.stderr.strip().splitlines()[-1]
    assert result.returncode != 0
    assert last.startswith("error: refusing to push backend: built on the lab's stand-in bases")
    assert "python:3.11-slim" in last and "--allow-stand-ins" in last
    assert "docker buildx build" not in result.stdout + result.stderr  # nothing ran


@pytest.mark.lab
def test_sign_and_attest_refuse_without_a_gate_and_files_naming_no_digest(lab, tmp_path):
    name = f"{lab}/itest-{uuid.uuid4().hex[:10]}/monorepo"
    env = {"COSIGN_PASSWORD": "", "GITHUB_ACTIONS": "", "TRIVY_CACHE_DIR": str(tmp_path / "t")}
    # Reports of its own: a build of this commit has the digest another test may have scanned.
    env["BUILDTASKS_ARTIFACTS_DIR"] = str(tmp_path / "artifacts")
    cosign_key_pair(tmp_path)
    key = str(tmp_path / "cosign.key")
    assert (
        invoke(
            "docker.build", "--image", "backend", "--name", name, "-t", "g", "--push", env=env
        ).returncode
        == 0
    )
    sign = invoke("docker.sign", "--image", "backend", "--key", key, env=env)
    assert sign.returncode != 0
    assert "no scan report" in sign.stderr.strip().splitlines()[-1]
    assert "docker.scan" in sign.stderr.strip().splitlines()[-1]

    sbom = tmp_path / "anonymous.cdx.json"
    sbom.write_text(json.dumps({"bomFormat": "CycloneDX", "specVersion": "1.6", "metadata": {}}))
    write_db(tmp_path / "t", now=datetime.now(UTC))
    ignore = tmp_path / ".trivyignore"
    ignore.write_text("CVE-2099-0001\nCVE-2099-0002\nCVE-2099-0004\n")
    assert (
        invoke("docker.scan", "--image", "backend", "--ignorefile", str(ignore), env=env).returncode
        == 0
    )
    attest = invoke(
        "docker.attest", "--image", "backend", "--key", key, "--sbom", str(sbom), env=env
    )
    assert attest.returncode != 0
    assert "names no image digest" in attest.stderr.strip().splitlines()[-1]
    # The report of another digest is no report for this one.
    report = tmp_path / "artifacts" / "backend/trivy.json"
    good = tmp_path / "good.json"
    good.write_text(report.read_text())
    data = json.loads(report.read_text())
    data["Buildtasks"]["Digest"] = DIGEST
    data["Metadata"]["RepoDigests"] = []
    data["ArtifactName"] = f"{name}@{DIGEST}"
    report.write_text(json.dumps(data))
    attest = invoke("docker.attest", "--image", "backend", "--key", key, env=env)
    assert attest.returncode != 0
    assert "no gate verdict" in attest.stderr.strip().splitlines()[-1]
    attest = invoke(
        "docker.attest", "--image", "backend", "--key", key, "--scan-report", str(good), env=env
    )
    assert attest.returncode != 0
    assert "does not describe" in attest.stderr.strip().splitlines()[-1]


@pytest.mark.lab
def test_the_vuln_attestation_records_the_db_the_scan_used(backend_image, tmp_path, monkeypatch):
    from buildtasks.sign import SignOptions, attest_image, generate_key_pair

    monkeypatch.setenv("COSIGN_PASSWORD", "")
    monkeypatch.setenv("TRIVY_CACHE_DIR", str(tmp_path / "elsewhere"))  # not the scan's cache

    config = _config(tmp_path)
    image = config.image("backend")
    used = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(days=2)
    write_db(tmp_path / "scan-cache", now=used)
    result = scan.scan_image(
        config, image, backend_image.ref, Runner(), check=False,
        options=ScanOptions(cache_dir=str(tmp_path / "scan-cache"), offline=True),
    )  # fmt: skip
    pair = generate_key_pair(tmp_path / "keys", Runner(echo=False), password="")
    attested = attest_image(
        config,
        backend_image.ref,
        Runner(),
        env=dict(os.environ),
        vuln_report=result.json_path,
        options=SignOptions(key=str(pair.private)),
    )
    (predicate_file,) = [path for kind, path in attested.predicates if kind == "vuln"]
    db = json.loads(predicate_file.read_text())["scanner"]["db"]
    assert db["version"] == f"v2-{used:%Y%m%d%H}"
