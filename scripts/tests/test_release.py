"""`invoke docker.release` end to end in the lab: the gate stops the chain before the push,
and a passing chain publishes, signs, attests and verifies the digest it tested."""

from __future__ import annotations

import json
import subprocess
import uuid
from datetime import UTC, datetime
from pathlib import Path

import pytest
from support.lab import STORES, artifacts, cosign_key_pair, engine_env, invoke, registry_tags
from support.vulndb import write_db, write_openvex


@pytest.fixture
def release_env(tmp_path, lab):
    """A throwaway namespace, a cosign key pair and the fixture vulnerability DB."""
    cosign_key_pair(tmp_path)
    write_db(tmp_path / "trivy", now=datetime.now(UTC))
    namespace = f"{lab}/itest-{uuid.uuid4().hex[:10]}"
    env = {
        "BUILDTASKS_REGISTRY": namespace,
        "BUILDTASKS_COSIGN_KEY": str(tmp_path / "cosign.key"),
        "COSIGN_PASSWORD": "",
        "TRIVY_CACHE_DIR": str(tmp_path / "trivy"),
        "GITHUB_ACTIONS": "",
    }
    return namespace, env, tmp_path


@pytest.mark.lab
def test_a_failing_scan_gate_stops_the_chain_before_any_tag_or_signature(release_env):
    namespace, env, _ = release_env
    result = invoke("docker.release", "--image", "backend", "--skip-tests", env=env)
    assert result.returncode == 1, result.stderr[-2000:]
    last = result.stderr.strip().splitlines()[-1]
    assert "scan gate failed for backend" in last and "CVE-2099-0001" in last
    # The gates read the untagged push: it is named, for cleanup; no tag points at it.
    assert "release stopped before tagging and signing; left untagged for cleanup: " in last
    left = last.split("left untagged for cleanup: ")[1].split()[0]
    assert left.startswith(f"{namespace}/monorepo@sha256:")
    assert subprocess.run(["crane", "manifest", left], capture_output=True).returncode == 0
    assert not registry_tags(f"{namespace}/monorepo"), (
        "the registry shows tags although the gate failed"
    )
    assert "==> backend: sign" not in result.stderr


@pytest.mark.lab
@pytest.mark.parametrize("store", STORES)
def test_a_passing_chain_signs_and_attests_exactly_the_digest_it_tested(release_env, store):
    namespace, env, tmp_path = release_env
    env = {**env, **engine_env(store)}
    ignore = tmp_path / ".trivyignore"
    ignore.write_text("CVE-2099-0001\nCVE-2099-0002\nCVE-2099-0004\n")
    result = invoke("docker.release", "--image", "backend", "--ignorefile", str(ignore), env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    digest = result.stdout.split("backend: ")[1].split()[0]
    # The classic store knows the image by its config digest; the registry serves a manifest
    # of that config. Either way the tags lead to exactly the image the tests ran.
    tested = digest
    if store == "classic":
        tested = result.stdout.split("tested image: ")[1].split()[0]
        assert tested != digest
    assert f"image tests on {tested[:19]}" in result.stderr
    for step in (
        "image tests passed",
        "scan gate passed",
        "signed",
        "attested",
        "verified signature and cyclonedx, vuln",
    ):
        assert step in result.stdout
    repo = f"{namespace}/monorepo"
    tags = subprocess.run(
        ["crane", "ls", repo], capture_output=True, text=True, check=True
    ).stdout.split()
    tags = [t for t in tags if not t.startswith("sha256-")]
    assert tags
    for tag in tags:
        served = subprocess.run(
            ["crane", "digest", f"{repo}:{tag}"], capture_output=True, text=True, check=True
        ).stdout.strip()
        assert served == digest, tag
    if store == "classic":
        manifest = subprocess.run(
            ["crane", "manifest", f"{repo}@{digest}"], capture_output=True, text=True, check=True
        ).stdout
        assert json.loads(manifest)["config"]["digest"] == tested
    verify = subprocess.run(
        [
            "cosign",
            "verify",
            "--key",
            str(tmp_path / "cosign.pub"),
            "--insecure-ignore-tlog",
            f"{repo}@{digest}",
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert verify.returncode == 0, verify.stderr
    payload = json.loads(verify.stdout)[0]
    assert payload["critical"]["image"]["docker-manifest-digest"] == digest
    assert "skips the transparency log" in result.stderr
    # The tests and the scan branch ran at once, each line under its prefix, and the table
    # counts them once: the total is the wall time of the steps, not their sum.
    assert "[backend tests] " in result.stderr and "[backend scan] " in result.stderr
    table = dict(
        (name.strip(), float(value.split()[0]))
        for name, value in (
            line.rsplit("  ", 1) for line in result.stdout.split("step times:")[1].splitlines()[1:]
        )
    )
    assert table["gates, at once"] >= max(table["image tests"], table["scan"])
    outside = ("build", "gates, at once", "sign", "attest", "verify", "tag")
    assert table["total"] == pytest.approx(sum(table[k] for k in outside), abs=0.02)
    # Trivy read the image once: the SBOMs were converted from the scan's package list, and
    # they list exactly the packages of an SBOM read from the registry's bytes afterwards.
    assert "SBOM, converted from the scan" in result.stderr
    converted = released_sbom()
    assert "vulnerabilities" not in converted  # an inventory; the findings are attested apart
    direct = invoke("docker.sbom", "--image", "backend", "--ref", f"{repo}@{digest}", env=env)
    assert direct.returncode == 0, direct.stderr[-2000:]
    assert components(released_sbom()) == components(converted)
    assert len(components(converted)) > 50


def released_sbom() -> dict:
    """The CycloneDX SBOM the last release or docker.sbom wrote for the backend."""
    return json.loads((Path(artifacts()) / "backend" / "sbom.cdx.json").read_text())


def components(sbom: dict) -> set[tuple[str, str]]:
    """(package URL or name, version) of every component an SBOM lists."""
    return {(c.get("purl") or c["name"], c.get("version", "")) for c in sbom["components"]}


@pytest.mark.lab
def test_no_push_runs_the_gates_and_publishes_nothing(release_env):
    namespace, env, tmp_path = release_env
    ignore = tmp_path / ".trivyignore"
    ignore.write_text("CVE-2099-0001\nCVE-2099-0002\nCVE-2099-0004\n")
    result = invoke(
        "docker.release",
        "--image",
        "backend",
        "--no-push",
        "--skip-tests",
        "--ignorefile",
        str(ignore),
        env=env,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert "nothing pushed or signed" in result.stderr
    assert (
        subprocess.run(
            ["crane", "ls", f"{namespace}/monorepo"], capture_output=True, check=False
        ).returncode
        != 0
    )


@pytest.mark.lab
@pytest.mark.parametrize(
    ("setup", "message"),
    [
        pytest.param("missing", "signing key file", id="no-key-file"),
        pytest.param("no-password", "COSIGN_PASSWORD", id="encrypted-key-no-password"),
        pytest.param("wrong-password", "cannot unlock the signing key", id="wrong-password"),
        pytest.param("keyless", "keyless signing needs an OIDC token", id="keyless-no-token"),
    ],
)
def test_a_release_that_could_not_sign_pushes_nothing(release_env, setup, message):
    """Every signing need is checked before the build: the registry stays untouched."""
    namespace, env, tmp_path = release_env
    env = dict(env)
    argv = ["docker.release", "--image", "backend", "--skip-tests"]
    if setup == "missing":
        env["BUILDTASKS_COSIGN_KEY"] = str(tmp_path / "absent.key")
    elif setup in ("no-password", "wrong-password"):
        env["BUILDTASKS_COSIGN_KEY"] = str(cosign_key_pair(tmp_path / "locked", "right"))
        if setup == "no-password":
            env.pop("COSIGN_PASSWORD")
        else:
            env["COSIGN_PASSWORD"] = "wrong"
    else:
        env.pop("BUILDTASKS_COSIGN_KEY")
        argv.append("--keyless")
    result = invoke(*argv, env=env)
    assert result.returncode != 0
    last = result.stderr.strip().splitlines()[-1]
    assert message in last, last
    assert "==> backend: build" not in result.stderr  # refused before the build
    assert not registry_tags(f"{namespace}/monorepo")


def _starlette_vex(path: Path) -> Path:
    """An OpenVEX document saying the backend is not affected by the DB's starlette advisory."""
    import tomllib

    lock = tomllib.loads((Path(__file__).parents[2] / "uv.lock").read_text())
    version = next(p["version"] for p in lock["package"] if p["name"] == "starlette")
    return write_openvex(path, "CVE-2099-0004", f"pkg:pypi/starlette@{version}")


@pytest.mark.lab
def test_the_release_takes_the_scan_options_and_tests_the_web_image_against_the_gateway(
    release_env,
):
    """The chain has the options of the tasks it chains (--vex, --cache-dir), and the web
    image's tests run against the gateway image the chain built just before."""
    _, env, tmp_path = release_env
    env = {k: v for k, v in env.items() if k != "TRIVY_CACHE_DIR"}  # --cache-dir instead
    ignore = tmp_path / ".trivyignore"
    ignore.write_text("CVE-2099-0001\nCVE-2099-0002\n")  # starlette's is left to the VEX
    vex = _starlette_vex(tmp_path / "backend.openvex.json")
    result = invoke(
        "docker.release",
        "--no-push",
        "--ignorefile",
        str(ignore),
        "--vex",
        str(vex),
        "--cache-dir",
        str(tmp_path / "trivy"),
        env=env,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "--vex " in result.stderr and f"--cache-dir {tmp_path / 'trivy'}" in result.stderr
    backend, frontend = result.stdout.split("frontend: ", 1)
    assert "image tests passed (16 passed)" in backend
    assert "image tests passed (16 passed)" in frontend  # none skipped: the gateway was there
    assert "BUILDTASKS_IMAGE_BACKEND=sha256:" in result.stderr


def test_the_release_refuses_a_name_for_several_images_before_building():
    result = invoke("docker.release", "--name", "ghcr.io/acme/x", "--no-push")
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1] == (
        "error: --name applies to one image: add --image"
    )
