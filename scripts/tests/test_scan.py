"""docker.scan: the Trivy plans, the gate, and real scans of the backend image.

The plan and gate tests are pure. The `lab` tests scan the real backend image with the real
Trivy and the invented vulnerability DB from `support.vulndb` (bash CRITICAL with a fix,
coreutils HIGH without one, tar MEDIUM, starlette HIGH), so every gate decision below is one a
user would see.
"""

from __future__ import annotations

import io
import json
import subprocess
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import pytest
from invoke import Context, MockContext
from invoke.config import Config as InvokeConfig
from invoke.exceptions import Exit
from support import vulndb
from support.lab import ROOT, unique_repo

from buildtasks import reports, scan, trivy
from buildtasks.command import Command
from buildtasks.config import Config, ImageSpec, ScanConfig
from buildtasks.errors import CommandFailed, ConfigError, GateFailed
from buildtasks.runner import Result, Runner
from buildtasks.scan import Finding, ScanOptions
from buildtasks.tasks import docker_scan

DIGEST = "sha256:" + "ab" * 32
REF = f"127.0.0.1:5000/monorepo@{DIGEST}"
OUT = Path("/repo/.buildtasks/backend/trivy.json")
ALL = "UNKNOWN,LOW,MEDIUM,HIGH,CRITICAL"
SCAN_HEAD = (
    "trivy",
    "image",
    "--scanners",
    "vuln,secret,misconfig",
    "--format",
    "json",
    "--output",
    str(OUT),
    "--severity",
    ALL,
    "--exit-code",
    "0",
    "--skip-db-update",
    "--no-progress",
)

# --------------------------------------------------------------------------- plans


@pytest.mark.parametrize(
    ("kwargs", "middle"),
    [
        pytest.param({}, ("--image-src", "remote"), id="registry-by-default"),
        pytest.param(
            {"cache_dir": "/cache/trivy"},
            ("--cache-dir", "/cache/trivy", "--image-src", "remote"),
            id="configured-cache-dir",
        ),
        pytest.param(
            {"offline": True},
            (
                "--skip-java-db-update",
                "--skip-check-update",
                "--offline-scan",
                "--image-src",
                "remote",
            ),
            id="offline",
        ),
        pytest.param({"local": True}, ("--image-src", "docker"), id="engine-image-store"),
        pytest.param(
            {"ignorefile": "/repo/.trivyignore", "vex": ("/repo/vex.json", "oci")},
            (
                "--image-src",
                "remote",
                "--ignorefile",
                "/repo/.trivyignore",
                "--vex",
                "/repo/vex.json",
                "--vex",
                "oci",
            ),
            id="ignorefile-and-vex",
        ),
        pytest.param(
            {"offline": True, "vex": ("repo",)},
            (
                "--skip-java-db-update",
                "--skip-check-update",
                "--offline-scan",
                "--image-src",
                "remote",
                "--vex",
                "repo",
                "--skip-vex-repo-update",
            ),
            id="vex-repo-offline",
        ),
    ],
)
def test_image_scan_runs_once_for_every_severity(kwargs, middle):
    command = trivy.image_scan(REF, OUT, **kwargs)
    assert command.argv == (*SCAN_HEAD, *middle, REF)


def test_image_scan_hint_says_how_to_get_the_image_there():
    assert "docker.push" in trivy.image_scan(REF, OUT).hint
    assert "--load" in trivy.image_scan(DIGEST, OUT, local=True).hint


@pytest.mark.parametrize(
    "ref",
    [
        pytest.param("127.0.0.1:5000/monorepo:latest", id="tag"),
        pytest.param("127.0.0.1:5000/monorepo", id="bare-name"),
        pytest.param("127.0.0.1:5000/monorepo@sha256:abc", id="short-digest"),
        pytest.param("127.0.0.1:5000/monorepo:1.0@md5:" + "0" * 32, id="not-sha256"),
        pytest.param(DIGEST, id="image-id-from-the-registry"),
    ],
)
def test_scan_refuses_anything_but_a_digest(ref):
    with pytest.raises(ConfigError, match=r"by digest \(name@sha256:<64 hex>\), not "):
        trivy.image_scan(ref, OUT)


def test_an_engine_image_id_is_a_digest_locally():
    assert trivy.image_scan(DIGEST, OUT, local=True).argv[-1] == DIGEST


@pytest.mark.parametrize(
    ("kwargs", "argv"),
    [
        pytest.param(
            {}, ("trivy", "image", "--download-db-only", "--no-progress"), id="trivy-defaults"
        ),
        pytest.param(
            {"cache_dir": "/c", "db_repository": "mirror.example/trivy-db:2"},
            (
                "trivy",
                "image",
                "--download-db-only",
                "--no-progress",
                "--cache-dir",
                "/c",
                "--db-repository",
                "mirror.example/trivy-db:2",
            ),
            id="one-mirror",
        ),
    ],
)
def test_db_download(kwargs, argv):
    assert trivy.db_download(**kwargs).argv == argv


def test_sarif_conversion_names_every_severity_and_no_ignore_file():
    # Without them, TRIVY_SEVERITY or a ./.trivyignore would silently thin out the SARIF.
    assert trivy.to_sarif(OUT, OUT.with_suffix(".sarif")).argv == (
        "trivy",
        "convert",
        "--format",
        "sarif",
        "--severity",
        ALL,
        "--ignorefile",
        "",
        "--exit-code",
        "0",
        "--output",
        "/repo/.buildtasks/backend/trivy.sarif",
        str(OUT),
    )


def test_table_shows_the_gate_severities():
    assert trivy.to_table(OUT, ("CRITICAL", "HIGH")).argv == (
        "trivy",
        "convert",
        "--format",
        "table",
        "--table-mode",
        "detailed",
        "--severity",
        "CRITICAL,HIGH",
        "--ignorefile",
        "",
        "--exit-code",
        "0",
        str(OUT),
    )


@pytest.mark.parametrize(
    ("kwargs", "extra"),
    [
        pytest.param({}, (), id="defaults"),
        pytest.param(
            {"cache_dir": "/c", "ignorefile": "/repo/.trivyignore"},
            ("--cache-dir", "/c", "--ignorefile", "/repo/.trivyignore"),
            id="cache-and-ignorefile",
        ),
    ],
)
def test_config_scan_uses_the_embedded_checks(kwargs, extra):
    out = Path("/repo/.buildtasks/backend/trivy-config.json")
    command = trivy.config_scan(Path("/repo/apps/backend/Dockerfile"), out, **kwargs)
    assert command.argv == (
        "trivy",
        "config",
        "--skip-check-update",
        "--format",
        "json",
        "--output",
        str(out),
        "--severity",
        ALL,
        "--exit-code",
        "0",
        *extra,
        "/repo/apps/backend/Dockerfile",
    )


# --------------------------------------------------------------------------- settings


def make_config(root: Path, **scan_kw) -> Config:
    image = ImageSpec(
        key="backend",
        repository="monorepo",
        dockerfile=str(ROOT / "apps/backend/Dockerfile"),
    )
    return Config(
        root=root,
        registry="127.0.0.1:5000",
        images={"backend": image},
        scan=ScanConfig(**scan_kw),
    )


def test_command_line_wins_over_the_configuration(tmp_path):
    config = make_config(
        tmp_path, severity=("CRITICAL",), db_repositories=("a/db:2",), offline=True
    )
    assert scan.settings(config, ScanOptions()) == scan.Settings(
        severity=("CRITICAL",),
        ignore_unfixed=False,
        db_repositories=("a/db:2",),
        offline=True,
        cache_dir="",
    )
    cli = ScanOptions(
        severity=("low", "medium"),
        ignore_unfixed=True,
        db_repositories=("b/db:2",),
        offline=False,
        cache_dir="/c",
    )
    merged = scan.settings(config, cli)
    assert merged.severity == ("LOW", "MEDIUM")
    assert merged.ignore_unfixed and not merged.offline
    assert merged.db_repositories == ("b/db:2",)
    assert merged.cache_dir == "/c"


def test_a_misspelt_severity_is_named_with_the_fix(tmp_path):
    with pytest.raises(ConfigError, match=r"bad severity 'CRITICL' .* did you mean 'CRITICAL'"):
        scan.settings(make_config(tmp_path), ScanOptions(severity=("CRITICL",)))


def test_ignorefile_resolution(tmp_path):
    config = make_config(tmp_path)
    assert scan.resolve_ignorefile(config, ScanOptions()) is None  # Trivy's default applies
    (tmp_path / ".trivyignore").write_text("CVE-2099-0001\n")
    assert scan.resolve_ignorefile(config, ScanOptions()) == str(tmp_path / ".trivyignore")
    other = tmp_path / "accepted.txt"
    other.write_text("CVE-2099-0002\n")
    assert scan.resolve_ignorefile(config, ScanOptions(ignorefile=str(other))) == str(other)
    with pytest.raises(ConfigError, match=r"--ignorefile .*missing\.txt does not exist"):
        scan.resolve_ignorefile(config, ScanOptions(ignorefile=str(tmp_path / "missing.txt")))


def test_vex_sources_must_be_files_or_known_sources(tmp_path):
    doc = tmp_path / "vex.json"
    doc.write_text("{}")
    assert scan.resolve_vex(["repo", str(doc)]) == ("repo", str(doc))
    with pytest.raises(
        ConfigError, match=r"--vex nope\.json is neither a file nor one of repo, oci"
    ):
        scan.resolve_vex(["nope.json"])


# --------------------------------------------------------------------------- the gate

REPORT = {
    "ArtifactName": REF,
    "Results": [
        {
            "Target": "img (debian 12.15)",
            "Class": "os-pkgs",
            "Vulnerabilities": [
                {
                    "VulnerabilityID": "CVE-1",
                    "PkgName": "bash",
                    "Severity": "CRITICAL",
                    "Status": "fixed",
                    "FixedVersion": "5.3-1",
                },
                {
                    "VulnerabilityID": "CVE-2",
                    "PkgName": "coreutils",
                    "Severity": "HIGH",
                    "Status": "affected",
                },
                {
                    "VulnerabilityID": "CVE-3",
                    "PkgName": "tar",
                    "Severity": "MEDIUM",
                    "Status": "fixed",
                },
                {
                    "VulnerabilityID": "CVE-4",
                    "PkgName": "zlib",
                    "Severity": "LOW",
                    "Status": "will_not_fix",
                },
            ],
        },
        {"Target": "Python", "Class": "lang-pkgs", "Vulnerabilities": None},
        {
            "Target": "app/old.py",
            "Class": "lang-pkgs",
            # Reports without a Status: a fix is known when FixedVersion is set.
            "Vulnerabilities": [
                {
                    "VulnerabilityID": "CVE-5",
                    "PkgName": "h11",
                    "Severity": "HIGH",
                    "FixedVersion": "1",
                },
                {
                    "VulnerabilityID": "CVE-6",
                    "PkgName": "idna",
                    "Severity": "HIGH",
                    "FixedVersion": "",
                },
            ],
        },
        {
            "Target": "app/settings.py",
            "Class": "secret",
            "Secrets": [{"RuleID": "aws-access-key-id", "Severity": "CRITICAL", "Title": "AWS"}],
        },
        {
            "Target": "Dockerfile",
            "Class": "config",
            "Misconfigurations": [
                {"ID": "DS-0002", "Severity": "HIGH", "Status": "FAIL", "Title": "root user"},
                {"ID": "DS-0026", "Severity": "LOW", "Status": "PASS"},
            ],
        },
    ],
}


def ids(found):
    return sorted(f.id for f in found)


def test_findings_cover_every_scanner_and_skip_passed_checks():
    kinds = {(f.kind, f.id) for f in scan.findings(REPORT)}
    assert ("secret", "aws-access-key-id") in kinds
    assert ("misconfiguration", "DS-0002") in kinds
    assert ("misconfiguration", "DS-0026") not in kinds
    assert len(kinds) == 8


@pytest.mark.parametrize(
    ("severities", "ignore_unfixed", "expected"),
    [
        pytest.param(
            ("CRITICAL", "HIGH"),
            False,
            ["CVE-1", "CVE-2", "CVE-5", "CVE-6", "DS-0002", "aws-access-key-id"],
            id="critical-high",
        ),
        pytest.param(
            ("CRITICAL", "HIGH"),
            True,
            ["CVE-1", "CVE-5", "DS-0002", "aws-access-key-id"],
            id="critical-high-fixed-only",
        ),
        pytest.param(("CRITICAL",), False, ["CVE-1", "aws-access-key-id"], id="critical"),
        pytest.param(("MEDIUM",), False, ["CVE-3"], id="medium-only-is-not-a-threshold"),
        pytest.param(("LOW",), True, [], id="unfixed-low-passes"),
        pytest.param(("UNKNOWN",), False, [], id="nothing-unknown"),
    ],
)
def test_gate(severities, ignore_unfixed, expected):
    assert ids(scan.gate(REPORT, severities, ignore_unfixed)) == expected


def test_gate_on_a_clean_report_passes():
    assert scan.gate({"Results": []}, ("CRITICAL",), False) == []
    assert scan.gate({}, ("CRITICAL",), False) == []


def test_gate_message_is_one_line_naming_the_worst_first():
    blocking = scan.gate(REPORT, ("CRITICAL", "HIGH"), True)
    message = scan.gate_message(
        "backend",
        blocking,
        ("CRITICAL", "HIGH"),
        ".buildtasks/backend/trivy.sarif",
        fixed_only=True,
    )
    assert message == (
        "scan gate failed for backend: 2 CRITICAL, 2 HIGH (CVE-1 in bash, aws-access-key-id in "
        "app/settings.py, CVE-5 in h11 and 1 more) at severity CRITICAL,HIGH (fixed only); "
        "see .buildtasks/backend/trivy.sarif"
    )


def test_gate_message_for_the_bash_case():
    bash = Finding("vulnerability", "CVE-2099-0001", "CRITICAL", "bash", "img")
    assert scan.gate_message(
        "backend", [bash], ("CRITICAL", "HIGH"), ".buildtasks/backend/trivy.sarif", fixed_only=False
    ) == (
        "scan gate failed for backend: 1 CRITICAL (CVE-2099-0001 in bash) at severity "
        "CRITICAL,HIGH; see .buildtasks/backend/trivy.sarif"
    )


def test_with_category_names_each_run_and_leaves_the_input_alone():
    sarif = {"version": "2.1.0", "runs": [{"tool": {}}, {"automationDetails": {"id": "x/"}}]}
    out = reports.with_category(sarif, reports.image_category("backend"))
    assert [r["automationDetails"]["id"] for r in out["runs"]] == [
        "trivy/backend/",
        "trivy/backend/",
    ]
    assert "automationDetails" not in sarif["runs"][0]
    assert reports.dockerfile_category("backend") == "trivy-config/backend"


FATAL_DOWNLOAD = """\
2026-01-01T00:00:00Z\tINFO\t[vulndb] Downloading artifact...\trepo="127.0.0.1:1/x:2"
2026-01-01T00:00:00Z\tFATAL\tFatal error\trun error: init error: DB error: failed to download vulnerability DB: OCI artifact error: failed to download vulnerability DB: failed to download artifact from 127.0.0.1:1/x:2: OCI repository error: 1 error occurred:
\t* Get "https://127.0.0.1:1/v2/": dial tcp 127.0.0.1:1: connect: connection refused; Get "http://127.0.0.1:1/v2/": dial tcp 127.0.0.1:1: connect: connection refused


"""
FIRST_RUN = (
    "2026-01-01T00:00:00Z\tERROR\t[vulndb] The first run cannot skip downloading DB\n"
    "2026-01-01T00:00:00Z\tFATAL\tFatal error\trun error: init error: DB error: database error: "
    "--skip-db-update cannot be specified on the first run\n"
)


@pytest.mark.parametrize(
    ("stderr", "missing"),
    [
        pytest.param(FATAL_DOWNLOAD, True, id="download-failed"),
        pytest.param(FIRST_RUN, True, id="offline-first-run"),
        pytest.param("FATAL\tscan error: unable to find the specified image", False, id="no-image"),
    ],
)
def test_db_failures_are_recognised(stderr, missing):
    assert trivy.db_unavailable(stderr) is missing


def test_trivy_reason_is_the_innermost_cause():
    assert trivy.trivy_reason(FATAL_DOWNLOAD) == (
        'Get "https://127.0.0.1:1/v2/": dial tcp 127.0.0.1:1: connect: connection refused'
    )
    assert trivy.trivy_reason(FIRST_RUN) == "--skip-db-update cannot be specified on the first run"
    assert trivy.trivy_reason("") == "no output"


# --------------------------------------------------------------------------- DB mirrors


class FakeRunner(Runner):
    """Answers `trivy image --download-db-only` per mirror: ok for those in `good`."""

    def __init__(self, good=()):
        super().__init__(out=io.StringIO())
        self.good = set(good)
        self.commands: list[Command] = []

    def run(self, command, **_kw):
        self.commands.append(command)
        repo = command.argv[-1] if "--db-repository" in command.argv else ""
        if repo in self.good:
            return Result(command, 0)
        return Result(command, 1, "", FATAL_DOWNLOAD)


def settings_with(*repos, offline=False):
    return scan.Settings(("CRITICAL",), False, tuple(repos), offline, "")


def test_mirrors_are_tried_in_order_until_one_works():
    runner = FakeRunner(good={"b/db:2", "c/db:2"})
    assert scan.ensure_db(runner, settings_with("a/db:2", "b/db:2", "c/db:2")) == "b/db:2"
    assert [c.argv[-1] for c in runner.commands] == ["a/db:2", "b/db:2"]
    assert "mirror a/db:2 failed (Get " in runner.out.getvalue()


def test_no_mirror_working_is_one_line_naming_each_and_the_fixes():
    runner = FakeRunner()
    with pytest.raises(scan.VulnDBUnavailable) as err:
        scan.ensure_db(runner, settings_with("a/db:2", "b/db:2"))
    message = str(err.value)
    assert "\n" not in message
    assert message.startswith("no vulnerability DB (a/db:2: Get ")
    assert "; b/db:2: Get " in message
    assert "[tool.buildtasks.scan] db-repositories" in message
    assert "--db-repository" in message and "--offline" in message
    assert err.value.exit_code == 3


def test_without_mirrors_trivy_chooses_and_the_error_says_so():
    runner = FakeRunner()
    with pytest.raises(scan.VulnDBUnavailable, match="Trivy's default repositories"):
        scan.ensure_db(runner, settings_with())
    assert runner.commands[0].argv == ("trivy", "image", "--download-db-only", "--no-progress")
    with pytest.raises(scan.VulnDBUnavailable, match=r"\(my.mirror/db:2: Get "):
        scan.ensure_db(FakeRunner(), settings_with(), env={"TRIVY_DB_REPOSITORY": "my.mirror/db:2"})


@pytest.mark.parametrize(
    ("offline", "env"),
    [
        pytest.param(True, {}, id="offline"),
        pytest.param(False, {"TRIVY_SKIP_DB_UPDATE": "true"}, id="trivy-skip-db-update"),
    ],
)
def test_nothing_is_downloaded_when_told_not_to(offline, env):
    runner = FakeRunner()
    assert scan.ensure_db(runner, settings_with("a/db:2", offline=offline), env=env) == ""
    assert runner.commands == []


# --------------------------------------------------------------------------- the task


def dry_context() -> Context:
    return Context(InvokeConfig(overrides={"run": {"dry": True}}))


def test_task_dry_run_prints_the_plan_and_writes_nothing(tmp_path, monkeypatch, capsys):
    config = make_config(tmp_path)
    monkeypatch.setattr(docker_scan, "load_config", lambda c: config)
    docker_scan.scan(dry_context(), ref=REF, db_repository=["a/db:2"], cache_dir="/c")
    err = capsys.readouterr().err
    assert (
        "+ trivy image --download-db-only --no-progress --cache-dir /c --db-repository a/db:2"
        in err
    )
    assert "--ignorefile '' --exit-code 0 --output" in err  # the SARIF conversion
    assert "+ trivy config --skip-check-update" in err
    assert not (tmp_path / ".buildtasks").exists()


@pytest.mark.parametrize(
    ("kwargs", "code", "text"),
    [
        pytest.param({"ref": "127.0.0.1:5000/monorepo:latest"}, 2, "by digest", id="tag"),
        pytest.param({"image": "fronted", "ref": REF}, 2, "unknown image 'fronted'", id="typo"),
        pytest.param({"severity": "SEVERE", "ref": REF}, 2, "bad severity 'SEVERE'", id="severity"),
    ],
)
def test_task_user_mistakes_exit_with_one_line(tmp_path, monkeypatch, kwargs, code, text):
    monkeypatch.setattr(docker_scan, "load_config", lambda c: make_config(tmp_path))
    with pytest.raises(Exit) as err:
        docker_scan.scan(MockContext(), **kwargs)
    assert err.value.code == code
    assert text in str(err.value.message) and "\n" not in str(err.value.message)


@pytest.mark.parametrize("pushed", [True, False], ids=["pushed", "not-pushed"])
def test_task_without_ref_reads_the_last_build(tmp_path, monkeypatch, capsys, pushed):
    """The registry's bytes once pushed; before, the engine's image the build left there."""
    config = make_config(tmp_path)
    out = config.artifacts_path(config.image("backend"))
    out.mkdir(parents=True)
    facts: dict[str, object] = {"tags": ["127.0.0.1:5000/monorepo:main"]}
    if pushed:
        facts["registry_digest"] = DIGEST
    (out / "metadata.json").write_text(
        json.dumps({"containerimage.digest": DIGEST, "buildtasks": facts})
    )
    monkeypatch.setattr(docker_scan, "load_config", lambda c: config)
    docker_scan.sbom(dry_context())
    err = capsys.readouterr().err
    if pushed:
        assert f"--image-src remote {REF}\n" in err
    else:
        assert f"--image-src docker {DIGEST}\n" in err
        assert "note: the last build of backend is not pushed: reading the engine's image" in err


# =========================================================================== lab: real scans

BASH, COREUTILS, TAR, STARLETTE = (
    "CVE-2099-0001",
    "CVE-2099-0002",
    "CVE-2099-0003",
    "CVE-2099-0004",
)


@pytest.fixture(scope="module")
def db_cache(tmp_path_factory) -> Path:
    """A Trivy cache holding the invented DB; shared, so image layers are analysed once."""
    cache = tmp_path_factory.mktemp("trivy-cache")
    vulndb.write_db(cache, now=datetime.now(UTC))
    return cache


def offline(cache: Path, **kw) -> ScanOptions:
    return ScanOptions(cache_dir=str(cache), offline=True, **kw)


def report_ids(path: Path) -> set[str]:
    report = json.loads(path.read_text())
    return {f.id for f in scan.findings(report)}


def sarif_results(path: Path) -> dict[str, str]:
    doc = json.loads(path.read_text())
    return {r["ruleId"]: r["level"] for run in doc["runs"] for r in run["results"]}


@pytest.fixture(scope="module")
def failed_scan(backend_image, db_cache, tmp_path_factory):
    """The default gate (CRITICAL,HIGH) run once against the backend image."""
    config = make_config(tmp_path_factory.mktemp("repo"))
    image = config.image("backend")
    with pytest.raises(GateFailed) as err:
        scan.scan_image(config, image, backend_image.ref, Runner(), options=offline(db_cache))
    return err.value, config.artifacts_path(image)


@pytest.mark.lab
def test_gate_fails_on_the_critical_bash_finding(failed_scan):
    error, _ = failed_scan
    message = str(error)
    assert message.startswith(
        f"scan gate failed for backend: 1 CRITICAL, 2 HIGH ({BASH} in bash, "
        f"{COREUTILS} in coreutils, {STARLETTE} in starlette) at severity CRITICAL,HIGH; "
    )
    assert message.endswith("see .buildtasks/backend/trivy.sarif")
    assert "\n" not in message and error.exit_code == 1


@pytest.mark.lab
def test_json_and_sarif_hold_every_finding_whatever_the_gate(failed_scan):
    _, out = failed_scan
    assert report_ids(out / "trivy.json") == {BASH, COREUTILS, TAR, STARLETTE}
    levels = sarif_results(out / "trivy.sarif")
    # The MEDIUM tar finding is below the gate and still in the SARIF.
    assert levels == {BASH: "error", COREUTILS: "error", TAR: "warning", STARLETTE: "error"}


@pytest.mark.lab
def test_sarif_category_names_the_image(failed_scan):
    _, out = failed_scan
    doc = json.loads((out / "trivy.sarif").read_text())
    assert doc["version"] == "2.1.0"
    assert [run["automationDetails"]["id"] for run in doc["runs"]] == ["trivy/backend/"]


@pytest.mark.lab
def test_trivy_environment_is_honoured_but_cannot_thin_the_sarif(
    backend_image, db_cache, tmp_path, monkeypatch
):
    # TRIVY_CACHE_DIR is the user's to set and is used; TRIVY_SEVERITY would filter the
    # report and the SARIF conversion if the plans did not name every severity.
    monkeypatch.setenv("TRIVY_CACHE_DIR", str(db_cache))
    monkeypatch.setenv("TRIVY_SEVERITY", "CRITICAL")
    config = make_config(tmp_path)
    result = scan.scan_image(
        config,
        config.image("backend"),
        backend_image.ref,
        Runner(),
        options=ScanOptions(offline=True),
        check=False,
    )
    assert ids(result.blocking) == [BASH, COREUTILS, STARLETTE]  # the gate's CRITICAL,HIGH
    assert set(sarif_results(result.sarif_path)) == {BASH, COREUTILS, TAR, STARLETTE}


@pytest.mark.lab
def test_task_exits_non_zero_on_the_gate(backend_image, db_cache, tmp_path, monkeypatch):
    monkeypatch.setattr(docker_scan, "load_config", lambda c: make_config(tmp_path))
    with pytest.raises(Exit) as err:
        docker_scan.scan(
            MockContext(),
            ref=backend_image.ref,
            cache_dir=str(db_cache),
            offline=True,
            dockerfile=False,
        )
    assert err.value.code == 1
    assert str(err.value.message).startswith("error: scan gate failed for backend: 1 CRITICAL")


@pytest.mark.lab
def test_gate_passes_when_the_finding_is_in_the_ignorefile(backend_image, db_cache, tmp_path):
    config = make_config(tmp_path)
    (tmp_path / ".trivyignore").write_text(f"# accepted until the base image moves\n{BASH}\n")
    result = scan.scan_image(
        config,
        config.image("backend"),
        backend_image.ref,
        Runner(),
        options=offline(db_cache, severity=("CRITICAL",)),
    )
    assert result.passed
    # Ignored in Trivy, so gone from the JSON and the SARIF alike.
    assert BASH not in report_ids(result.json_path)
    assert BASH not in sarif_results(result.sarif_path)


@pytest.mark.lab
def test_gate_passes_when_the_severities_exclude_every_finding(backend_image, db_cache, tmp_path):
    config = make_config(tmp_path)
    out = io.StringIO()
    result = scan.scan_image(
        config,
        config.image("backend"),
        backend_image.ref,
        Runner(out=out),
        options=offline(db_cache, severity=("LOW",)),
    )
    assert result.passed and result.blocking == ()
    assert "scan gate passed for backend: none at severity LOW" in out.getvalue()
    assert set(sarif_results(result.sarif_path)) == {BASH, COREUTILS, TAR, STARLETTE}


@pytest.mark.lab
def test_ignore_unfixed_lets_only_the_unfixed_coreutils_pass(backend_image, db_cache, tmp_path):
    config = make_config(tmp_path)
    result = scan.scan_image(
        config,
        config.image("backend"),
        backend_image.ref,
        Runner(),
        options=offline(db_cache, severity=("HIGH",), ignore_unfixed=True),
        check=False,
    )
    assert ids(result.blocking) == [STARLETTE]
    assert "(fixed only)" in result.message
    # The unfixed finding stays in the reports: only the gate lets it pass.
    assert COREUTILS in sarif_results(result.sarif_path)


@pytest.mark.lab
def test_vex_not_affected_drops_the_finding(backend_image, db_cache, failed_scan, tmp_path):
    _, out = failed_scan
    report = json.loads((out / "trivy.json").read_text())
    purl = next(
        v["PkgIdentifier"]["PURL"]
        for r in report["Results"]
        for v in r.get("Vulnerabilities") or ()
        if v["VulnerabilityID"] == STARLETTE
    )
    vex = vulndb.write_openvex(tmp_path / "backend.openvex.json", STARLETTE, purl)
    config = make_config(tmp_path)
    result = scan.scan_image(
        config,
        config.image("backend"),
        backend_image.ref,
        Runner(),
        options=offline(db_cache, severity=("HIGH",), ignore_unfixed=True, vex=(str(vex),)),
    )
    assert result.passed
    assert STARLETTE not in report_ids(result.json_path)


@pytest.mark.lab
def test_local_scan_reads_the_engine_image_store(backend_image, db_cache, tmp_path):
    config = make_config(tmp_path)
    result = scan.scan_image(
        config,
        config.image("backend"),
        backend_image.local,
        Runner(),
        options=offline(db_cache, local=True, severity=("CRITICAL",)),
        check=False,
    )
    assert ids(result.blocking) == [BASH]


@pytest.mark.lab
def test_no_db_offline_is_one_clear_line(backend_image, tmp_path):
    config = make_config(tmp_path)
    with pytest.raises(scan.VulnDBUnavailable) as err:
        scan.scan_image(
            config,
            config.image("backend"),
            backend_image.ref,
            Runner(),
            options=offline(tmp_path / "empty-cache"),
        )
    message = str(err.value)
    assert message.startswith("no vulnerability DB: --offline needs one in Trivy's cache")
    assert "db-repositories" in message and "\n" not in message


@pytest.mark.lab
def test_no_db_from_a_dead_mirror_names_it(backend_image, tmp_path):
    config = make_config(tmp_path)
    with pytest.raises(scan.VulnDBUnavailable) as err:
        scan.scan_image(
            config,
            config.image("backend"),
            backend_image.ref,
            Runner(),
            options=ScanOptions(
                cache_dir=str(tmp_path / "empty-cache"), db_repositories=("127.0.0.1:1/x:2",)
            ),
        )
    message = str(err.value)
    assert message.startswith("no vulnerability DB (127.0.0.1:1/x:2: ")
    assert "connection refused" in message and "\n" not in message


@pytest.mark.lab
def test_db_mirrors_fall_back_in_order(lab, backend_image, tmp_path):
    built = vulndb.write_db(tmp_path / "build", now=datetime.now(UTC), downloaded=False)
    tarball = vulndb.write_db_tarball(built, tmp_path / "push" / vulndb.DB_TARBALL_NAME)
    mirror = unique_repo(lab, "trivy-db") + f":{vulndb.SCHEMA_VERSION}"
    push = vulndb.oras_push(mirror, tarball, plain_http=True)
    pushed = subprocess.run(push.argv, cwd=push.cwd, capture_output=True, text=True, check=False)
    assert pushed.returncode == 0, pushed.stderr

    config = make_config(tmp_path, db_repositories=("127.0.0.1:1/x:2", mirror))
    out = io.StringIO()
    result = scan.scan_image(
        config,
        config.image("backend"),
        backend_image.ref,
        Runner(out=out),
        options=ScanOptions(cache_dir=str(tmp_path / "cache"), severity=("LOW",)),
    )
    assert result.db_repository == mirror
    assert "mirror 127.0.0.1:1/x:2 failed (" in out.getvalue()
    assert report_ids(result.json_path) == {BASH, COREUTILS, TAR, STARLETTE}
    assert (tmp_path / "cache" / "db" / "trivy.db").is_file()


@pytest.mark.lab
def test_the_backend_dockerfile_passes_its_config_scan(db_cache, tmp_path):
    config = make_config(tmp_path)
    result = scan.scan_dockerfile(
        config, config.image("backend"), Runner(), options=offline(db_cache)
    )
    assert result.passed
    doc = json.loads(result.sarif_path.read_text())
    assert doc["runs"][0]["automationDetails"]["id"] == "trivy-config/backend/"


@pytest.mark.lab
def test_a_root_latest_dockerfile_fails_the_config_gate(db_cache, tmp_path):
    dockerfile = tmp_path / "Dockerfile"
    dockerfile.write_text("FROM debian:latest\nRUN apt-get update && apt-get install -y curl\n")
    config = make_config(tmp_path)
    config = replace(config, images={"bad": ImageSpec("bad", "bad", "Dockerfile")})
    with pytest.raises(GateFailed) as err:
        scan.scan_dockerfile(config, config.image("bad"), Runner(), options=offline(db_cache))
    message = str(err.value)
    assert message.startswith("scan gate failed for bad Dockerfile: 2 HIGH (DS-0002 in Dockerfile")
    assert message.endswith("see .buildtasks/bad/trivy-config.sarif")
    # The MEDIUM ':latest' and LOW HEALTHCHECK checks stay in the SARIF.
    assert {"DS-0001", "DS-0002", "DS-0026", "DS-0029"} <= set(
        sarif_results(tmp_path / ".buildtasks/bad/trivy-config.sarif")
    )


# --------------------------------------------------------------------------- trivy's own cause


class FailingTrivy(Runner):
    """Every trivy run fails with `stderr`."""

    def __init__(self, stderr: str):
        super().__init__(out=io.StringIO())
        self.stderr = stderr

    def run(self, command, **_kw):
        return Result(command, 1, "", self.stderr)


def _image_scan(local: bool = False) -> Command:
    return trivy.image_scan(REF, Path("out.json"), local=local)


def test_an_empty_db_names_what_the_user_set_not_a_flag_they_did_not_pass():
    runner = FailingTrivy(FIRST_RUN)
    with pytest.raises(scan.VulnDBUnavailable) as err:
        scan.run_trivy(runner, _image_scan(), skipped="TRIVY_SKIP_DB_UPDATE")
    assert "no vulnerability DB: TRIVY_SKIP_DB_UPDATE needs one" in str(err.value)
    assert "drop TRIVY_SKIP_DB_UPDATE" in str(err.value) and "--offline needs" not in str(err.value)
    env = {"TRIVY_SKIP_DB_UPDATE": "true"}
    assert scan.skipped_by(settings_with(), env) == "TRIVY_SKIP_DB_UPDATE"
    assert scan.skipped_by(settings_with(offline=True), env) == "--offline"


def test_an_old_db_schema_passes_trivys_reason_on():
    stderr = (
        "2026-12-02T02:00:00Z\tFATAL\tFatal error\tinit error: DB error: "
        "--skip-db-update cannot be specified with the old DB schema"
    )
    with pytest.raises(scan.VulnDBUnavailable) as err:
        scan.run_trivy(FailingTrivy(stderr), _image_scan())
    message = str(err.value)
    assert "old schema" in message and "cannot be specified with the old DB schema" in message
    assert "is the image pushed" not in message


def test_a_missing_image_is_not_found_naming_where_it_was_looked_for():
    stderr = (
        'FATAL\tunable to find the specified image "x" in ["docker"]: 1 error occurred:\n'
        "\t* docker error: unable to inspect the image (x): No such image: x\n"
    )
    with pytest.raises(scan.NotFound) as err:
        scan.run_trivy(FailingTrivy(stderr), _image_scan(local=True))
    assert err.value.exit_code == 5
    assert "is not in the engine's image store (No such image): is the image in the engine?" in (
        str(err.value)
    )


def test_any_other_failure_keeps_trivys_reason_without_blaming_the_push():
    stderr = "2026-12-02T02:00:00Z\tFATAL\tFatal error\trun error: cache may be in use by another process"
    with pytest.raises(CommandFailed) as err:
        scan.run_trivy(FailingTrivy(stderr), _image_scan())
    assert "cache may be in use by another process" in str(err.value)
    assert "is the image pushed" not in str(err.value)
