"""docker.sbom: the Trivy plans, and real CycloneDX and SPDX documents of the backend image."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from invoke import MockContext
from support.lab import ROOT

from buildtasks import sbom, trivy
from buildtasks.config import Config, ImageSpec
from buildtasks.errors import ConfigError
from buildtasks.runner import Runner
from buildtasks.tasks import docker_scan

DIGEST = "sha256:" + "cd" * 32
REF = f"127.0.0.1:5000/monorepo@{DIGEST}"
OUT = Path("/repo/.buildtasks/backend/sbom.cdx.json")


@pytest.mark.parametrize(
    ("fmt", "kwargs", "tail"),
    [
        pytest.param("cyclonedx", {}, ("--image-src", "remote", REF), id="cyclonedx-registry"),
        pytest.param("spdx-json", {}, ("--image-src", "remote", REF), id="spdx-registry"),
        pytest.param(
            "cyclonedx",
            {"cache_dir": "/c", "offline": True},
            (
                "--cache-dir",
                "/c",
                "--skip-java-db-update",
                "--offline-scan",
                "--image-src",
                "remote",
                REF,
            ),
            id="cyclonedx-offline-cache",
        ),
        pytest.param(
            "spdx-json", {"local": True}, ("--image-src", "docker", REF), id="spdx-engine"
        ),
    ],
)
def test_sbom_plan(fmt, kwargs, tail):
    # No scanners: an inventory needs no vulnerability DB, and TRIVY_SCANNERS cannot add one.
    assert trivy.sbom(REF, fmt, OUT, **kwargs).argv == (
        "trivy",
        "image",
        "--format",
        fmt,
        "--output",
        str(OUT),
        "--scanners",
        "",
        "--no-progress",
        *tail,
    )


def test_sbom_refuses_a_tag_and_an_unknown_format():
    with pytest.raises(ConfigError, match="by digest"):
        trivy.sbom("127.0.0.1:5000/monorepo:latest", "cyclonedx", OUT)
    with pytest.raises(ValueError, match="unknown SBOM format 'spdx'"):
        trivy.sbom(REF, "spdx", OUT)


def make_config(root: Path) -> Config:
    image = ImageSpec("backend", "monorepo", str(ROOT / "apps/backend/Dockerfile"))
    return Config(root=root, registry="127.0.0.1:5000", images={"backend": image})


def test_sbom_files_live_with_the_image_artifacts(tmp_path):
    config = make_config(tmp_path)
    image = config.image("backend")
    assert sbom.sbom_path(config, image, "cyclonedx") == (
        tmp_path / ".buildtasks/backend/sbom.cdx.json"
    )
    assert sbom.sbom_path(config, image, "spdx-json") == (
        tmp_path / ".buildtasks/backend/sbom.spdx.json"
    )


def test_package_counts_skip_the_image_itself():
    cdx = {
        "metadata": {"component": {"type": "container"}},
        "components": [
            {"type": "operating-system", "name": "debian"},
            {"type": "library", "name": "bash"},
            {"type": "library", "name": "starlette"},
        ],
    }
    spdx = {
        "packages": [
            {
                "name": "img",
                "externalRefs": [
                    {"referenceType": "purl", "referenceLocator": "pkg:oci/m@sha256:1"}
                ],
            },
            {"name": "debian"},
            {
                "name": "bash",
                "externalRefs": [
                    {"referenceType": "purl", "referenceLocator": "pkg:deb/debian/bash@5"}
                ],
            },
        ]
    }
    assert sbom.count_packages("cyclonedx", cdx) == 2
    assert sbom.count_packages("spdx-json", spdx) == 1


def test_dry_run_writes_nothing(tmp_path, capsys):
    config = make_config(tmp_path)
    result = sbom.write_sbom(config, config.image("backend"), REF, Runner(dry=True))
    assert result.packages == {}
    assert not (tmp_path / ".buildtasks").exists()
    assert capsys.readouterr().err.count("+ trivy image --format ") == 2


# =========================================================================== lab: real SBOMs

APP_PACKAGES = {"fastapi", "starlette", "uvicorn"}
DEBIAN_PACKAGES = {"bash", "coreutils", "tar"}


@pytest.fixture(scope="module")
def written(backend_image, tmp_path_factory):
    """Both SBOMs of the backend image, written offline from an empty Trivy cache (no DB)."""
    root = tmp_path_factory.mktemp("repo")
    config = make_config(root)
    result = sbom.write_sbom(
        config,
        config.image("backend"),
        backend_image.ref,
        Runner(),
        cache_dir=str(root / "empty-trivy-cache"),
        offline=True,
    )
    assert not (root / "empty-trivy-cache" / "db").exists()  # no vulnerability DB was needed
    return backend_image, result


def purls(doc_packages, key) -> dict[str, str]:
    return {name: purl for name, purl in ((p["name"], key(p)) for p in doc_packages) if purl}


@pytest.mark.lab
def test_cyclonedx_lists_the_app_and_debian_packages(written):
    image, result = written
    doc = json.loads(result.files["cyclonedx"].read_text())
    assert doc["bomFormat"] == "CycloneDX"
    assert doc["metadata"]["component"]["name"] == image.ref
    found = purls(doc["components"], lambda c: c.get("purl", ""))
    for name in APP_PACKAGES:
        assert found[name].startswith(f"pkg:pypi/{name}@")
    for name in DEBIAN_PACKAGES:
        assert found[name].startswith(f"pkg:deb/debian/{name}@")
    licences = {c["name"]: c.get("licenses") for c in doc["components"]}
    assert licences["starlette"]  # read from the package metadata, no licence scanner needed
    assert "vulnerabilities" not in doc or doc["vulnerabilities"] == []
    assert result.packages["cyclonedx"] >= len(APP_PACKAGES | DEBIAN_PACKAGES)


@pytest.mark.lab
def test_spdx_lists_the_app_and_debian_packages(written):
    image, result = written
    doc = json.loads(result.files["spdx-json"].read_text())
    assert doc["spdxVersion"] == "SPDX-2.3"
    assert doc["name"] == image.ref

    def purl(package):
        refs = [r["referenceLocator"] for r in package.get("externalRefs", ())]
        return next((r for r in refs if r.startswith("pkg:")), "")

    found = purls(doc["packages"], purl)
    for name in APP_PACKAGES:
        assert found[name].startswith(f"pkg:pypi/{name}@")
    for name in DEBIAN_PACKAGES:
        assert found[name].startswith(f"pkg:deb/debian/{name}@")
    assert result.packages["spdx-json"] == result.packages["cyclonedx"]


@pytest.mark.lab
def test_sbom_task_prints_both_files(backend_image, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(docker_scan, "load_config", lambda c: make_config(tmp_path))
    docker_scan.sbom(
        MockContext(), ref=backend_image.ref, cache_dir=str(tmp_path / "cache"), offline=True
    )
    lines = capsys.readouterr().out.splitlines()
    assert [line.split(" (")[0] for line in lines] == [
        "backend: .buildtasks/backend/sbom.cdx.json",
        "backend: .buildtasks/backend/sbom.spdx.json",
    ]
    for name in ("sbom.cdx.json", "sbom.spdx.json"):
        json.loads((tmp_path / ".buildtasks/backend" / name).read_text())
