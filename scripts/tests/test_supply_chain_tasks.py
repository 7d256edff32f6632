"""The supply-chain tasks one by one from the command line, as a user chains them by hand:
build → push → scan → sbom → sign → attest → verify, all on the digest the build recorded."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from pathlib import Path

import pytest
from support.lab import artifacts, cosign_key_pair, invoke
from support.vulndb import write_db


@pytest.mark.lab
def test_each_task_works_on_the_digest_of_the_last_build(tmp_path, lab):
    for pair in ("good", "other"):
        cosign_key_pair(tmp_path / pair)
    write_db(tmp_path / "trivy", now=datetime.now(UTC))
    name = f"{lab}/itest-{uuid.uuid4().hex[:10]}/monorepo"
    env = {"COSIGN_PASSWORD": "", "TRIVY_CACHE_DIR": str(tmp_path / "trivy"), "GITHUB_ACTIONS": ""}
    key = str(tmp_path / "good/cosign.key")

    build = invoke("docker.build", "--image", "backend", "--name", name, "-t", "chain", env=env)
    assert build.returncode == 0, build.stderr[-2000:]
    digest = build.stdout.split("backend: ")[1].split()[0]
    assert invoke("docker.push", "--image", "backend", env=env).returncode == 0

    gate = invoke("docker.scan", "--image", "backend", env=env)
    assert gate.returncode == 1
    assert "scan gate failed for backend" in gate.stderr.strip().splitlines()[-1]
    sarif = json.loads((Path(artifacts()) / "backend/trivy.sarif").read_text())
    rule_ids = {r["id"] for run in sarif["runs"] for r in run["tool"]["driver"]["rules"]}
    assert {"CVE-2099-0001", "CVE-2099-0003"} <= rule_ids  # CRITICAL and MEDIUM alike
    ignore = tmp_path / ".trivyignore"
    ignore.write_text("CVE-2099-0001\nCVE-2099-0002\nCVE-2099-0004\n")
    scan = invoke("docker.scan", "--image", "backend", "--ignorefile", str(ignore), env=env)
    assert scan.returncode == 0, scan.stderr[-2000:]

    sbom = invoke("docker.sbom", "--image", "backend", env=env)
    assert sbom.returncode == 0, sbom.stderr[-2000:]

    sign = invoke("docker.sign", "--image", "backend", "--key", key, env=env)
    assert sign.returncode == 0, sign.stderr[-2000:]
    assert digest in sign.stdout + sign.stderr
    attest = invoke("docker.attest", "--image", "backend", "--key", key, env=env)
    assert attest.returncode == 0, attest.stderr[-2000:]

    verify = invoke("docker.verify", "--image", "backend", "--key", key, "--attestations", env=env)
    assert verify.returncode == 0, verify.stderr[-2000:]
    wrong = invoke(
        "docker.verify",
        "--image",
        "backend",
        "--public-key",
        str(tmp_path / "other/cosign.pub"),
        env=env,
    )
    assert wrong.returncode == 1
    assert "no valid signature" in wrong.stderr.strip().splitlines()[-1]
