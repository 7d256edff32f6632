"""The pure parts of the release chain's speed-ups: gates at once, one trivy read, the table."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from buildtasks import reports, timing, trivy
from buildtasks.ci import Summary, summary_markdown
from buildtasks.errors import BuildtasksError, CommandFailed, GateFailed, RegistryUnavailable
from buildtasks.parallel import first_failure, run_all


def test_run_all_runs_the_calls_at_once_and_keeps_their_order():
    both_started = threading.Barrier(2, timeout=5)

    def call(value: str) -> str:
        both_started.wait()  # only returns when the other call is running too
        return value

    results, errors = run_all([lambda: call("tests"), lambda: call("scan")])
    assert (results, errors) == (["tests", "scan"], [])


def test_run_all_waits_for_every_call_and_collects_each_failure():
    finished = []

    def slow_success() -> str:
        time.sleep(0.2)
        finished.append("slow")
        return "ok"

    def fail(message: str) -> str:
        raise GateFailed(message)

    results, errors = run_all([lambda: fail("image tests failed"), slow_success])
    assert results == ["ok"] and finished == ["slow"]
    assert [str(e) for e in errors] == ["image tests failed"]


def test_run_all_lets_a_bug_through():
    with pytest.raises(ZeroDivisionError):
        run_all([lambda: 1 / 0, lambda: "fine"])


def test_first_failure_keeps_the_first_kind_and_exit_code_and_counts_the_rest():
    errors: list[BuildtasksError] = [
        RegistryUnavailable("registry 127.0.0.1:5000 is unreachable"),
        GateFailed("scan gate failed"),
    ]
    combined = first_failure(errors, "; nothing was tagged")
    assert isinstance(combined, RegistryUnavailable) and combined.exit_code == 4
    assert str(combined) == (
        "registry 127.0.0.1:5000 is unreachable (and 1 more); nothing was tagged"
    )
    failed = first_failure([CommandFailed(("crane", "push"), 3, "denied")])
    assert type(failed) is BuildtasksError and failed.exit_code == 7  # a tool failed


def test_the_scan_lists_every_package_only_when_an_inventory_is_wanted():
    plain = trivy.image_scan("r@sha256:" + "a" * 64, Path("out.json"))
    listed = trivy.image_scan("r@sha256:" + "a" * 64, Path("out.json"), inventory=True)
    assert "--list-all-pkgs" not in plain.argv
    assert "--list-all-pkgs" in listed.argv


def test_sboms_are_converted_from_the_report_not_read_from_the_image():
    command = trivy.sbom_from_report(Path("raw.json"), "spdx-json", Path("sbom.spdx.json"))
    assert command.argv == (
        "trivy",
        "convert",
        "--format",
        "spdx-json",
        "--output",
        "sbom.spdx.json",
        "raw.json",
    )
    with pytest.raises(ValueError, match=r"unknown SBOM format"):
        trivy.sbom_from_report(Path("raw.json"), "table", Path("x"))


def test_the_report_users_read_and_attest_keeps_findings_not_packages():
    raw = {
        "ArtifactName": "x",
        "Results": [
            {
                "Target": "debian",
                "Vulnerabilities": [{"VulnerabilityID": "CVE-1"}],
                "Packages": [1],
            },
            {"Target": "venv", "Packages": [2, 3]},
        ],
    }
    stripped = reports.without_packages(raw)
    assert stripped["Results"] == [
        {"Target": "debian", "Vulnerabilities": [{"VulnerabilityID": "CVE-1"}]},
        {"Target": "venv"},
    ]
    assert raw["Results"][1]["Packages"] == [2, 3]  # the raw report is left as it was
    assert reports.without_packages({"ArtifactName": "x"}) == {"ArtifactName": "x"}


def test_a_converted_sbom_is_an_inventory_without_the_scan_findings():
    converted = {"bomFormat": "CycloneDX", "components": [1], "vulnerabilities": [{"id": "CVE"}]}
    assert reports.inventory_only(converted) == {"bomFormat": "CycloneDX", "components": [1]}


STEPS = [
    ("build", 3.0),
    ("gates, at once", 10.0),
    (f"{timing.INSIDE}image tests", 10.0),
    (f"{timing.INSIDE}scan", 4.0),
    ("sign", 1.0),
]


def test_steps_run_inside_another_are_shown_indented_and_counted_once():
    lines = timing.table("step times:", STEPS)
    assert lines[3].startswith("    image tests")
    assert lines[-1].split() == ["total", "14.00", "s"]
    assert timing.total(STEPS) == 14.0


def test_the_job_summary_counts_the_gates_once():
    summary = summary_markdown(
        Summary(
            image="backend",
            ref="r@sha256:" + "a" * 64,
            platforms=("linux/amd64",),
            tags=("r:latest",),
            findings={},
            gate=("CRITICAL",),
            signer="key",
            timings=STEPS,
            pushed=True,
        )
    )
    assert "| &emsp;image tests | 10.0 |" in summary
    assert "| **total** | **14.0** |" in summary
