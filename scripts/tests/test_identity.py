"""Keyless signing identity: which GitHub workflow runs verification trusts by default.

GitHub's Fulcio certificates name the signer `https://github.com/OWNER/REPO/WORKFLOW@REF`.
By default only the release workflow on the release refs (`main`, `v*` tags) is trusted; the
regexp is checked with Python's `re` the way cosign uses it (an unanchored search), and with
cosign itself on certificates made here, so Go's RE2 accepts and applies it the same way.
The last tests hold the workflow to the same refs: the job that can sign is the release job
of the release workflow, and its `if:` lets through exactly the refs the identity trusts.
"""

from __future__ import annotations

import base64
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from buildtasks import config as config_mod
from buildtasks.errors import ConfigError
from buildtasks.metadata.expressions import ExpressionContext, evaluate, truthy
from buildtasks.sign import SignOptions, resolve_mode
from buildtasks.sign.modes import GITHUB_OIDC_ISSUER, github_identity_regexp, ref_glob_regexp

REPO = "acme/app"
WORKFLOWS = "https://github.com/acme/app/.github/workflows"


def trusted(identity: str, regexp: str) -> bool:
    """What cosign does with --certificate-identity-regexp: an unanchored search."""
    return re.search(regexp, identity) is not None


# --------------------------------------------------------------------------- ref patterns


@pytest.mark.parametrize(
    ("pattern", "expected"),
    [
        ("refs/heads/main", "refs/heads/main"),
        ("refs/tags/v*", "refs/tags/v[^/]*"),
        ("refs/heads/release/**", "refs/heads/release/.*"),
        ("refs/heads/rel-?", r"refs/heads/rel\-[^/]"),
        ("refs/tags/v1.2+x", r"refs/tags/v1\.2\+x"),
    ],
    ids=["literal", "star-stops-at-slash", "double-star", "question-mark", "escaped"],
)
def test_ref_glob_regexp(pattern, expected):
    assert ref_glob_regexp(pattern) == expected


# --------------------------------------------------------------------------- default identity


@pytest.mark.parametrize(
    "identity",
    [
        f"{WORKFLOWS}/ci.yml@refs/heads/main",
        f"{WORKFLOWS}/ci.yml@refs/tags/v1.2.3",
        f"{WORKFLOWS}/ci.yml@refs/tags/v2.0.0-rc.1",
    ],
    ids=["main", "v-tag", "v-pre-release-tag"],
)
def test_the_release_workflow_on_a_release_ref_is_trusted(identity):
    assert trusted(identity, github_identity_regexp(REPO))


@pytest.mark.parametrize(
    "identity",
    [
        pytest.param(f"{WORKFLOWS}/ci.yml@refs/heads/feature/x", id="feature-branch"),
        pytest.param(f"{WORKFLOWS}/ci.yml@refs/heads/develop", id="develop"),
        pytest.param(f"{WORKFLOWS}/ci.yml@refs/heads/main-evil", id="branch-named-main-prefix"),
        pytest.param(f"{WORKFLOWS}/ci.yml@refs/heads/mainline", id="branch-mainline"),
        pytest.param(f"{WORKFLOWS}/ci.yml@refs/pull/7/merge", id="pull-request"),
        pytest.param(f"{WORKFLOWS}/ci.yml@refs/tags/release-1", id="tag-without-v"),
        pytest.param(f"{WORKFLOWS}/ci.yml@refs/tags/v1/evil", id="v-tag-with-a-slash"),
        pytest.param(f"{WORKFLOWS}/other.yml@refs/heads/main", id="another-workflow"),
        pytest.param(f"{WORKFLOWS}/ci.yml.evil.yml@refs/heads/main", id="workflow-name-prefix"),
        pytest.param(f"{WORKFLOWS}/ciXyml@refs/heads/main", id="unescaped-dot"),
        pytest.param(
            "https://github.com/acme/other/.github/workflows/ci.yml@refs/heads/main",
            id="another-repository",
        ),
        pytest.param(
            "https://github.com/acme/app-evil/.github/workflows/ci.yml@refs/heads/main",
            id="repository-name-prefix",
        ),
        pytest.param(
            "https://github.com/evil/acme/app/.github/workflows/ci.yml@refs/heads/main",
            id="repository-as-suffix",
        ),
        pytest.param(
            "https://github.com.evil.example/acme/app/.github/workflows/ci.yml@refs/heads/main",
            id="another-host",
        ),
        pytest.param(f"{WORKFLOWS}/ci.yml@refs/heads/main/evil", id="suffix-after-the-ref"),
        pytest.param(
            f"{WORKFLOWS}/ci.yml@refs/heads/feature@refs/heads/main", id="ref-ending-like-main"
        ),
        pytest.param(f"{WORKFLOWS}/ci.yml", id="no-ref"),
    ],
)
def test_anything_else_is_refused(identity):
    assert not trusted(identity, github_identity_regexp(REPO))


def test_the_repository_is_matched_literally():
    regexp = github_identity_regexp("my-org/my.app")
    assert trusted(
        "https://github.com/my-org/my.app/.github/workflows/ci.yml@refs/heads/main", regexp
    )
    assert not trusted(
        "https://github.com/my-org/myXapp/.github/workflows/ci.yml@refs/heads/main", regexp
    )


def test_the_workflow_and_refs_come_from_the_arguments():
    regexp = github_identity_regexp(
        REPO, ".github/workflows/release.yml", ("refs/heads/main", "refs/heads/release/**")
    )
    assert trusted(f"{WORKFLOWS}/release.yml@refs/heads/release/2025/q1", regexp)
    assert not trusted(f"{WORKFLOWS}/ci.yml@refs/heads/main", regexp)
    assert not trusted(f"{WORKFLOWS}/release.yml@refs/tags/v1", regexp)


def test_no_release_refs_is_refused_rather_than_trusting_everything():
    with pytest.raises(ConfigError, match="release-refs is empty"):
        github_identity_regexp(REPO, refs=())


def test_the_regexp_stays_in_re2s_syntax():
    regexp = github_identity_regexp("a/b", refs=("refs/heads/**", "refs/tags/v?*"))
    for construct in ("(?=", "(?!", "(?<", "\\1", "\\Z", "\\A"):
        assert construct not in regexp


# --------------------------------------------------------------------------- sign and verify agree


def github_env(ref: str, workflow: str = ".github/workflows/ci.yml") -> dict[str, str]:
    """The variables GitHub Actions sets in a job of `workflow` run on `ref`."""
    return {
        "GITHUB_ACTIONS": "true",
        "ACTIONS_ID_TOKEN_REQUEST_URL": "https://token.actions.example/",
        "GITHUB_REPOSITORY": REPO,
        "GITHUB_REF": ref,
        "GITHUB_WORKFLOW_REF": f"{REPO}/{workflow}@{ref}",
    }


def certificate_identity(env: dict[str, str]) -> str:
    """The SAN Fulcio puts in the job's certificate: GitHub's URL and the workflow ref."""
    return f"https://github.com/{env['GITHUB_WORKFLOW_REF']}"


@pytest.mark.parametrize("ref", ["refs/heads/main", "refs/tags/v1.2.3"])
def test_what_the_release_job_signs_as_is_what_verification_trusts(repo_root, ref):
    sign = config_mod.load(repo_root, env={}).sign
    env = github_env(ref, sign.release_workflow)
    signer = resolve_mode(sign, SignOptions(keyless=True), env, purpose="sign")
    verifier = resolve_mode(sign, SignOptions(), env, purpose="verify")
    assert signer.keyless and signer.oidc_provider == "github-actions"
    assert verifier.issuer == GITHUB_OIDC_ISSUER
    assert trusted(certificate_identity(env), verifier.identity_regexp)


@pytest.mark.parametrize("ref", ["refs/heads/feature/x", "refs/pull/7/merge"])
def test_a_signature_made_elsewhere_does_not_verify(repo_root, ref):
    sign = config_mod.load(repo_root, env={}).sign
    env = github_env(ref, sign.release_workflow)
    verifier = resolve_mode(sign, SignOptions(), env, purpose="verify")
    assert not trusted(certificate_identity(env), verifier.identity_regexp)


def workflow_jobs(text: str) -> dict[str, str]:
    """The text of each job of a workflow, by job id (two-space indented keys under jobs:)."""
    body = text.split("\njobs:\n", 1)[1]
    return dict(re.findall(r"^  ([\w-]+):\n((?:(?:    .*)?\n)*)", body, flags=re.M))


def job_condition(job: str) -> str:
    """A job's `if:`, written as `if: EXPR` or as a folded `if: >-` block."""
    match = re.search(r"^    if: >-\n((?:      .*\n)+)|^    if: (.*)\n", job, flags=re.M)
    assert match, "the job has no if:"
    return " ".join(line.strip() for line in (match[1] or match[2]).splitlines())


def test_only_the_release_workflow_can_get_a_signing_token(repo_root):
    """The release workflow's jobs ask for the token; its callers grant it to the call alone."""
    sign = config_mod.load(repo_root, env={}).sign
    for path in sorted((repo_root / ".github/workflows").glob("*.y*ml")):
        name = str(path.relative_to(repo_root))
        if name == sign.release_workflow:
            continue
        for job_id, job in workflow_jobs(path.read_text(encoding="utf-8")).items():
            if "id-token: write" in job:
                # A caller must grant what the called workflow's jobs need, and nothing else
                # may run in that job.
                assert re.search(
                    rf"^    uses: \./{re.escape(sign.release_workflow)}\b", job, re.M
                ), (
                    f"{name} job {job_id} can get a signing token but is not a call of "
                    f"{sign.release_workflow}"
                )
                assert "steps:" not in job, f"{name} job {job_id}"


@pytest.mark.parametrize(
    ("event", "ref", "runs"),
    [
        ("push", "refs/heads/main", True),
        ("push", "refs/tags/v1.2.3", True),
        ("workflow_dispatch", "refs/heads/main", True),
        ("push", "refs/heads/develop", True),
        ("push", "refs/heads/feature/x", False),
        ("workflow_dispatch", "refs/heads/feature/x", False),
        ("workflow_dispatch", "refs/tags/v1/x", False),
        ("workflow_dispatch", "refs/tags/nightly", False),
        ("pull_request", "refs/pull/7/merge", False),
    ],
    ids=str,
)
def test_jobs_that_publish_run_only_where_their_signatures_verify(repo_root, event, ref, runs):
    sign = config_mod.load(repo_root, env={}).sign
    text = (repo_root / sign.release_workflow).read_text(encoding="utf-8")
    publishing = {
        name: job
        for name, job in workflow_jobs(text).items()
        if "id-token: write" in job or "packages: write" in job
    }
    assert publishing, "no job of the release workflow publishes"
    regexp = github_identity_regexp(REPO, sign.release_workflow, sign.release_refs)
    assert trusted(f"https://github.com/{REPO}/{sign.release_workflow}@{ref}", regexp) is runs
    github = {"event_name": event, "ref": ref, "ref_name": ref.split("/", 2)[2]}
    for name, job in publishing.items():
        assert re.search(r"^    environment: release$", job, flags=re.M), name
        condition = truthy(evaluate(job_condition(job), ExpressionContext(github=github)))
        if "docker.cleanup" in job:
            # Retention deletes, it does not publish: it runs on some of those refs, never
            # on another (pushes to main and v* tags, after their merge).
            assert runs or not condition, name
            assert condition is (runs and event == "push" and ref != "refs/heads/develop"), name
        else:
            assert condition is runs, name


# --------------------------------------------------------------------------- cosign's RE2


def openssl(*args: str, cwd: Path) -> None:
    # The config names ${ENV::SAN} (the leaf's identity), which must be set to parse at all.
    env = {**os.environ, "SAN": "unused"}
    subprocess.run(("openssl", *args), cwd=cwd, env=env, check=True, capture_output=True)


@pytest.fixture(scope="module")
def fake_ca(tmp_path_factory) -> Path:
    """A CA of our own, standing in for Fulcio, and a signing key for the leaf certificates."""
    base = tmp_path_factory.mktemp("fake-fulcio")
    issuer = GITHUB_OIDC_ISSUER.encode().hex()
    (base / "openssl.cnf").write_text(
        "[req]\ndistinguished_name = dn\n[dn]\n"
        "[ca]\nbasicConstraints = critical,CA:true\nkeyUsage = critical,keyCertSign\n"
        "[leaf]\nbasicConstraints = critical,CA:false\nkeyUsage = critical,digitalSignature\n"
        "extendedKeyUsage = codeSigning\nsubjectAltName = critical,URI:${ENV::SAN}\n"
        # Fulcio's OIDC issuer extension (the v1 form: the raw string).
        f"1.3.6.1.4.1.57264.1.1 = DER:{issuer}\n"
    )
    openssl("ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", "ca.key", cwd=base)
    openssl("ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", "leaf.key", cwd=base)
    openssl("req", "-new", "-key", "leaf.key", "-subj", "/", "-out", "leaf.csr", cwd=base)
    openssl(
        "req", "-x509", "-new", "-key", "ca.key", "-subj", "/CN=fake fulcio", "-days", "1",
        "-config", "openssl.cnf", "-extensions", "ca", "-out", "ca.pem", cwd=base,
    )  # fmt: skip
    return base


def cosign_accepts(ca: Path, identity: str, regexp: str, tmp_path: Path) -> bool:
    """Sign a blob with a certificate for `identity`; ask cosign, offline, if `regexp` trusts it."""
    subprocess.run(
        (
            "openssl", "x509", "-req", "-in", ca / "leaf.csr", "-CA", ca / "ca.pem",
            "-CAkey", ca / "ca.key", "-CAcreateserial", "-days", "1",
            "-extfile", ca / "openssl.cnf", "-extensions", "leaf", "-out", tmp_path / "leaf.pem",
        ),
        env={**os.environ, "SAN": identity}, check=True, capture_output=True,
    )  # fmt: skip
    blob = tmp_path / "blob"
    blob.write_text("release\n")
    signature = subprocess.run(
        ("openssl", "dgst", "-sha256", "-sign", ca / "leaf.key", blob),
        check=True, capture_output=True,
    ).stdout  # fmt: skip
    (tmp_path / "blob.sig").write_bytes(base64.b64encode(signature))
    result = subprocess.run(
        (
            "cosign", "verify-blob", "--certificate", tmp_path / "leaf.pem",
            "--certificate-chain", ca / "ca.pem", "--signature", tmp_path / "blob.sig",
            "--certificate-identity-regexp", regexp,
            "--certificate-oidc-issuer", GITHUB_OIDC_ISSUER,
            "--insecure-ignore-tlog", "--insecure-ignore-sct", blob,
        ),
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    if result.returncode == 0:
        return True
    assert "none of the expected identities matched" in result.stderr, result.stderr
    return False


@pytest.mark.skipif(
    not shutil.which("cosign") or not shutil.which("openssl"), reason="needs cosign and openssl"
)
@pytest.mark.parametrize(
    ("identity", "accepted"),
    [
        pytest.param(f"{WORKFLOWS}/ci.yml@refs/heads/main", True, id="main"),
        pytest.param(f"{WORKFLOWS}/ci.yml@refs/tags/v1.2.3", True, id="v-tag"),
        pytest.param(f"{WORKFLOWS}/ci.yml@refs/heads/feature/x", False, id="feature-branch"),
        pytest.param(f"{WORKFLOWS}/ci.yml@refs/tags/v1/evil", False, id="v-tag-with-a-slash"),
        pytest.param(f"{WORKFLOWS}/other.yml@refs/heads/main", False, id="another-workflow"),
        pytest.param(
            "https://github.com/acme/app-evil/.github/workflows/ci.yml@refs/heads/main",
            False,
            id="repository-name-prefix",
        ),
        pytest.param(f"{WORKFLOWS}/ci.yml@refs/heads/main/evil", False, id="suffix"),
    ],
)  # fmt: skip
def test_cosign_applies_the_regexp_the_same_way(fake_ca, tmp_path, identity, accepted):
    regexp = github_identity_regexp("acme/app")
    assert trusted(identity, regexp) is accepted
    assert cosign_accepts(fake_ca, identity, regexp, tmp_path) is accepted
