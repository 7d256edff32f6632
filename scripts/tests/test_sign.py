"""cosign signing, attestation and verification.

Plan tests pin the exact argv per mode and cosign major version; the `lab` tests sign, attest
and verify a real image in the lab registry with the installed cosign, offline (no Rekor).
"""

from __future__ import annotations

import base64
import io
import json
import os
import subprocess
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import pytest
from support import vulndb
from support.lab import ROOT, unique_repo

from buildtasks import config as config_mod
from buildtasks.config import SignConfig
from buildtasks.errors import ConfigError, RegistryUnavailable
from buildtasks.runner import Result, Runner
from buildtasks.sign import (
    CosignVersion,
    ImageNotInRegistry,
    SigningMode,
    SignOptions,
    VerificationFailed,
    Verified,
    attest_command,
    attest_image,
    cosign_reason,
    db_version,
    detect_cosign_version,
    generate_key_pair,
    generate_key_pair_command,
    invocation_from_env,
    parse_attestations,
    parse_cosign_version,
    parse_signatures,
    public_key_for,
    resolve_mode,
    sign_command,
    sign_help_command,
    sign_image,
    signer_description,
    tlog_decision,
    verify_attestation_command,
    verify_command,
    verify_image,
    version_command,
    version_from_sign_help,
    version_notes,
    vuln_predicate,
)
from buildtasks.sign.predicates import is_signature

V3 = CosignVersion(3, 1, 1)
V26 = CosignVersion(2, 6, 2)
V24 = CosignVersion(2, 4, 1)
DIGEST = "sha256:" + "ab" * 32
REF = f"ghcr.io/acme/app@{DIGEST}"
LAB_REF = f"127.0.0.1:5000/monorepo@{DIGEST}"
ISSUER = "https://token.actions.githubusercontent.com"
IDENTITY = "https://github.com/acme/app/.github/workflows/release.yml@refs/heads/main"

KEY_FILE = SigningMode(keyless=False, key="cosign.key", public_key="cosign.pub")
KEY_ENV = SigningMode(keyless=False, key="env://COSIGN_PRIVATE_KEY")
KEYLESS_ACTIONS = SigningMode(keyless=True, oidc_provider="github-actions")
KEYLESS_ID = SigningMode(keyless=True, identity=IDENTITY, issuer=ISSUER)
KEYLESS_RE = SigningMode(keyless=True, identity_regexp="^https://github\\.com/acme/", issuer=ISSUER)
OFFLINE_V3 = ("--use-signing-config=false", "--tlog-upload=false")


def kms(uri: str) -> SigningMode:
    return SigningMode(keyless=False, key=uri, public_key=uri)


# --------------------------------------------------------------------------- sign plans


@pytest.mark.parametrize(
    ("mode", "version", "kw", "expected"),
    [
        pytest.param(
            KEY_FILE, V3, {"tlog": False},
            ("cosign", "sign", "--yes", "--key", "cosign.key", *OFFLINE_V3, "--recursive", REF),
            id="key-file-v3-offline",
        ),
        pytest.param(
            KEY_FILE, V26, {"tlog": False},
            ("cosign", "sign", "--yes", "--key", "cosign.key", "--tlog-upload=false", "--recursive", REF),
            id="key-file-v2-offline",
        ),
        pytest.param(
            KEY_FILE, V3, {"tlog": True},
            ("cosign", "sign", "--yes", "--key", "cosign.key", "--recursive", REF),
            id="key-file-v3-with-tlog",
        ),
        pytest.param(
            KEY_FILE, V3, {"tlog": False, "recursive": False},
            ("cosign", "sign", "--yes", "--key", "cosign.key", *OFFLINE_V3, REF),
            id="key-file-single-manifest",
        ),
        pytest.param(
            KEY_ENV, V3, {"tlog": False},
            ("cosign", "sign", "--yes", "--key", "env://COSIGN_PRIVATE_KEY", *OFFLINE_V3, "--recursive", REF),
            id="env-key-v3-offline",
        ),
        pytest.param(
            kms("awskms:///alias/release"), V3, {"tlog": True},
            ("cosign", "sign", "--yes", "--key", "awskms:///alias/release", "--recursive", REF),
            id="awskms-v3",
        ),
        pytest.param(
            kms("gcpkms://projects/p/locations/global/keyRings/r/cryptoKeys/k/versions/1"), V26, {"tlog": True},
            ("cosign", "sign", "--yes", "--key", "gcpkms://projects/p/locations/global/keyRings/r/cryptoKeys/k/versions/1", "--recursive", REF),
            id="gcpkms-v2",
        ),
        pytest.param(
            kms("hashivault://release"), V3, {"tlog": False},
            ("cosign", "sign", "--yes", "--key", "hashivault://release", *OFFLINE_V3, "--recursive", REF),
            id="hashivault-v3-offline",
        ),
        pytest.param(
            KEYLESS_ACTIONS, V3, {"tlog": True},
            ("cosign", "sign", "--yes", "--oidc-provider", "github-actions", "--recursive", REF),
            id="keyless-github-actions-v3",
        ),
        pytest.param(
            SigningMode(keyless=True), V24, {"tlog": True},
            ("cosign", "sign", "--yes", "--recursive", REF),
            id="keyless-interactive-v2",
        ),
        pytest.param(
            KEY_FILE, V26, {"tlog": True, "new_bundle_format": True},
            ("cosign", "sign", "--yes", "--key", "cosign.key", "--recursive", "--new-bundle-format=true", REF),
            id="v2.6-opts-into-bundles",
        ),
        pytest.param(
            KEY_FILE, V3, {"tlog": True, "new_bundle_format": False},
            ("cosign", "sign", "--yes", "--key", "cosign.key", "--recursive", "--new-bundle-format=false", REF),
            id="v3-opts-out-of-bundles",
        ),
        pytest.param(
            KEY_FILE, V24, {"tlog": True, "new_bundle_format": False},
            ("cosign", "sign", "--yes", "--key", "cosign.key", "--recursive", REF),
            id="v2.4-legacy-format-needs-no-flag",
        ),
    ],
)  # fmt: skip
def test_sign_command(mode, version, kw, expected):
    assert sign_command(REF, mode, version, **kw).argv == expected


def test_sign_command_hints_at_the_password_for_key_files_but_not_kms():
    assert "COSIGN_PASSWORD" in sign_command(REF, KEY_FILE, V3, tlog=False).hint
    assert sign_command(REF, kms("awskms:///alias/x"), V3, tlog=True).hint == ""


@pytest.mark.parametrize(
    "ref",
    [
        "ghcr.io/acme/app:1.2.3",
        "ghcr.io/acme/app",
        "ghcr.io/acme/app@sha256:abc",
        f"ghcr.io/acme/app:1.2.3@sha512:{'a' * 128}",
    ],
    ids=["tag", "bare-name", "short-digest", "sha512"],
)
def test_plans_refuse_anything_but_a_sha256_digest(ref):
    with pytest.raises(ConfigError, match=r"by digest .*crane digest"):
        sign_command(ref, KEY_FILE, V3, tlog=False)
    with pytest.raises(ConfigError):
        verify_command(ref, KEY_FILE, V3, tlog=False)


def test_keyless_cannot_skip_the_transparency_log():
    with pytest.raises(ConfigError, match="transparency log"):
        sign_command(REF, KEYLESS_ACTIONS, V3, tlog=False)


def test_bundle_format_on_an_old_cosign_names_the_upgrade():
    with pytest.raises(ConfigError, match=r"cosign 2\.4\.1 .*upgrade cosign"):
        sign_command(REF, KEY_FILE, V24, tlog=True, new_bundle_format=True)
    # attest got --new-bundle-format one release earlier (2.5.0) than sign (2.6.0)
    v25 = CosignVersion(2, 5, 0)
    attest = attest_command(
        REF, "sbom.json", "cyclonedx", KEY_FILE, v25, tlog=True, new_bundle_format=True
    )
    assert "--new-bundle-format=true" in attest.argv
    with pytest.raises(ConfigError):
        sign_command(REF, KEY_FILE, v25, tlog=True, new_bundle_format=True)


# --------------------------------------------------------------------------- verify plans


@pytest.mark.parametrize(
    ("mode", "version", "kw", "expected"),
    [
        pytest.param(
            KEY_FILE, V3, {"tlog": False},
            ("cosign", "verify", "--key", "cosign.pub", "--insecure-ignore-tlog", REF),
            id="key-file-offline",
        ),
        pytest.param(
            KEY_FILE, V24, {"tlog": True},
            ("cosign", "verify", "--key", "cosign.pub", REF),
            id="key-file-with-tlog-v2",
        ),
        pytest.param(
            SigningMode(keyless=False, public_key="env://COSIGN_PUBLIC_KEY"), V3, {"tlog": False},
            ("cosign", "verify", "--key", "env://COSIGN_PUBLIC_KEY", "--insecure-ignore-tlog", REF),
            id="env-public-key",
        ),
        pytest.param(
            kms("azurekms://vault.vault.azure.net/release"), V3, {"tlog": True},
            ("cosign", "verify", "--key", "azurekms://vault.vault.azure.net/release", REF),
            id="azurekms-same-uri",
        ),
        pytest.param(
            KEYLESS_ID, V3, {"tlog": True},
            ("cosign", "verify", "--certificate-identity", IDENTITY, "--certificate-oidc-issuer", ISSUER, REF),
            id="keyless-identity",
        ),
        pytest.param(
            KEYLESS_RE, V26, {"tlog": True},
            ("cosign", "verify", "--certificate-identity-regexp", "^https://github\\.com/acme/", "--certificate-oidc-issuer", ISSUER, REF),
            id="keyless-identity-regexp-v2",
        ),
        pytest.param(
            KEY_FILE, V26, {"tlog": True, "new_bundle_format": True},
            ("cosign", "verify", "--key", "cosign.pub", "--new-bundle-format=true", REF),
            id="v2.6-reads-bundles",
        ),
    ],
)  # fmt: skip
def test_verify_command(mode, version, kw, expected):
    assert verify_command(REF, mode, version, **kw).argv == expected


# --------------------------------------------------------------------------- attest plans


@pytest.mark.parametrize(
    ("kind", "mode", "version", "tlog", "expected"),
    [
        pytest.param(
            "cyclonedx", KEY_FILE, V3, False,
            ("cosign", "attest", "--yes", "--key", "cosign.key", *OFFLINE_V3, "--type", "cyclonedx", "--predicate", "sbom.cdx.json", REF),
            id="sbom-key-v3-offline",
        ),
        pytest.param(
            "cyclonedx", KEY_FILE, V26, False,
            ("cosign", "attest", "--yes", "--key", "cosign.key", "--tlog-upload=false", "--type", "cyclonedx", "--predicate", "sbom.cdx.json", REF),
            id="sbom-key-v2-offline",
        ),
        pytest.param(
            "vuln", KEYLESS_ACTIONS, V3, True,
            ("cosign", "attest", "--yes", "--oidc-provider", "github-actions", "--type", "vuln", "--predicate", "sbom.cdx.json", REF),
            id="vuln-keyless",
        ),
        pytest.param(
            "https://example.com/predicate/v1", kms("k8s://ns/cosign"), V3, True,
            ("cosign", "attest", "--yes", "--key", "k8s://ns/cosign", "--type", "https://example.com/predicate/v1", "--predicate", "sbom.cdx.json", REF),
            id="custom-uri-k8s-secret",
        ),
    ],
)  # fmt: skip
def test_attest_command(kind, mode, version, tlog, expected):
    assert attest_command(REF, "sbom.cdx.json", kind, mode, version, tlog=tlog).argv == expected


@pytest.mark.parametrize(
    ("kind", "mode", "tlog", "expected"),
    [
        pytest.param(
            "cyclonedx", KEY_FILE, False,
            ("cosign", "verify-attestation", "--key", "cosign.pub", "--insecure-ignore-tlog", "--type", "cyclonedx", REF),
            id="sbom-key-offline",
        ),
        pytest.param(
            "vuln", KEYLESS_ID, True,
            ("cosign", "verify-attestation", "--certificate-identity", IDENTITY, "--certificate-oidc-issuer", ISSUER, "--type", "vuln", REF),
            id="vuln-keyless",
        ),
    ],
)  # fmt: skip
def test_verify_attestation_command(kind, mode, tlog, expected):
    assert verify_attestation_command(REF, kind, mode, V3, tlog=tlog).argv == expected


def test_an_unknown_attestation_type_suggests_the_nearest():
    with pytest.raises(ConfigError, match="did you mean 'cyclonedx'"):
        attest_command(REF, "f.json", "cyclonedxjson", KEY_FILE, V3, tlog=False)


def test_generate_key_pair_runs_in_the_directory_without_a_prompt():
    command = generate_key_pair_command("/tmp/keys")
    assert command.argv == ("cosign", "generate-key-pair")
    assert command.cwd == "/tmp/keys"
    assert command.env == {"COSIGN_PASSWORD": ""}
    named = generate_key_pair_command("/tmp/keys", prefix="release", password="pw")
    assert named.argv == ("cosign", "generate-key-pair", "--output-key-prefix", "release")


# --------------------------------------------------------------------------- modes


def mode_for(purpose, *, env=None, sign=None, **options):
    return resolve_mode(sign or SignConfig(), SignOptions(**options), env or {}, purpose=purpose)


@pytest.mark.parametrize(
    ("sign", "env", "options", "expected_key"),
    [
        pytest.param(SignConfig(key="pyproject.key"), {}, {}, "pyproject.key", id="pyproject"),
        pytest.param(
            SignConfig(key="pyproject.key"), {"BUILDTASKS_COSIGN_KEY": "env.key"}, {}, "env.key",
            id="env-over-pyproject",
        ),
        pytest.param(
            SignConfig(key="pyproject.key"), {"BUILDTASKS_COSIGN_KEY": "env.key"}, {"key": "cli.key"},
            "cli.key", id="cli-over-env",
        ),
        pytest.param(
            SignConfig(), {"ACTIONS_ID_TOKEN_REQUEST_URL": "https://t"}, {"key": "awskms:///alias/x"},
            "awskms:///alias/x", id="a-key-wins-over-an-oidc-token",
        ),
    ],
)  # fmt: skip
def test_key_mode_precedence(sign, env, options, expected_key):
    mode = mode_for("sign", sign=sign, env=env, **options)
    assert not mode.keyless
    assert mode.key == expected_key


def test_keyless_is_picked_when_github_actions_offers_a_token():
    mode = mode_for(
        "sign", env={"ACTIONS_ID_TOKEN_REQUEST_URL": "https://t", "GITHUB_ACTIONS": "true"}
    )
    assert mode.keyless
    assert mode.oidc_provider == "github-actions"


def test_no_key_and_no_token_names_both_ways_out():
    with pytest.raises(ConfigError) as err:
        mode_for("sign")
    message = str(err.value)
    assert "BUILDTASKS_COSIGN_KEY" in message
    assert "id-token: write" in message


def test_keyless_in_actions_without_the_permission_says_which_permission():
    with pytest.raises(ConfigError, match="permissions: id-token: write"):
        mode_for("sign", env={"GITHUB_ACTIONS": "true"}, keyless=True)


def test_keyless_outside_actions_without_a_token_is_refused_naming_the_ways():
    with pytest.raises(ConfigError, match="there is none here") as err:
        mode_for("sign", env={}, keyless=True)
    assert "SIGSTORE_ID_TOKEN" in str(err.value) and "--key" in str(err.value)
    assert mode_for("sign", env={"SIGSTORE_ID_TOKEN": "eyJ..."}, keyless=True).keyless


def test_keyless_and_a_key_exclude_each_other():
    with pytest.raises(ConfigError, match="exclude each other"):
        mode_for("sign", keyless=True, key="cosign.key")


@pytest.mark.parametrize(
    ("key", "public_key", "expected"),
    [
        ("keys/cosign.key", "", "keys/cosign.pub"),
        ("gcpkms://projects/p/locations/l/keyRings/r/cryptoKeys/k", "", "gcpkms://projects/p/locations/l/keyRings/r/cryptoKeys/k"),
        ("env://COSIGN_PRIVATE_KEY", "env://COSIGN_PUBLIC_KEY", "env://COSIGN_PUBLIC_KEY"),
        ("", "https://example.com/cosign.pub", "https://example.com/cosign.pub"),
    ],
    ids=["file-sibling", "kms-same-uri", "explicit-env", "explicit-url"],
)  # fmt: skip
def test_public_key_for(key, public_key, expected):
    assert public_key_for(key, public_key) == expected


def test_an_env_private_key_needs_an_explicit_public_key():
    with pytest.raises(ConfigError, match="BUILDTASKS_COSIGN_PUBLIC_KEY"):
        mode_for("verify", key="env://COSIGN_PRIVATE_KEY")


def test_an_unknown_key_scheme_suggests_the_nearest():
    with pytest.raises(ConfigError, match="did you mean awskms://"):
        mode_for("sign", key="awskm:///alias/x")


def test_verify_keyless_takes_the_identity_from_pyproject_and_the_default_issuer():
    mode = mode_for("verify", sign=SignConfig(certificate_identity=IDENTITY))
    assert (mode.keyless, mode.identity, mode.issuer) == (True, IDENTITY, ISSUER)


def test_verify_keyless_in_actions_defaults_to_the_release_workflow_on_release_refs():
    env = {"GITHUB_REPOSITORY": "acme/app", "ACTIONS_ID_TOKEN_REQUEST_URL": "https://t"}
    mode = mode_for("verify", env=env)
    assert mode.identity_regexp == (
        r"^https://github\.com/acme/app/\.github/workflows/ci\.yml"
        r"@(?:refs/heads/main|refs/tags/v[^/]*)$"
    )
    assert mode.issuer == ISSUER


def test_verify_keyless_default_identity_follows_the_sign_config():
    sign = SignConfig(
        release_workflow=".github/workflows/release.yml", release_refs=("refs/heads/prod",)
    )
    env = {"GITHUB_REPOSITORY": "acme/app", "ACTIONS_ID_TOKEN_REQUEST_URL": "https://t"}
    mode = mode_for("verify", env=env, sign=sign)
    assert mode.identity_regexp == (
        r"^https://github\.com/acme/app/\.github/workflows/release\.yml@(?:refs/heads/prod)$"
    )


@pytest.mark.parametrize(
    ("sign", "options"),
    [
        pytest.param(SignConfig(certificate_identity=IDENTITY), {}, id="pyproject-identity"),
        pytest.param(SignConfig(), {"identity": IDENTITY}, id="cli-identity"),
        pytest.param(SignConfig(), {"identity_regexp": "^x$"}, id="cli-regexp"),
    ],
)
def test_an_explicit_identity_replaces_the_default_regexp(sign, options):
    env = {"GITHUB_REPOSITORY": "acme/app", "ACTIONS_ID_TOKEN_REQUEST_URL": "https://t"}
    mode = mode_for("verify", env=env, sign=sign, **options)
    assert (mode.identity, mode.identity_regexp) in ((IDENTITY, ""), ("", "^x$"))


def test_verify_keyless_without_an_identity_says_what_to_pass():
    with pytest.raises(ConfigError, match="--identity"):
        mode_for("verify", keyless=True)


def test_verify_with_nothing_configured_names_both_modes():
    with pytest.raises(ConfigError, match=r"--public-key.*--identity"):
        mode_for("verify")


@pytest.mark.parametrize(
    ("ref", "requested", "expected"),
    [
        (LAB_REF, None, False),
        (f"localhost:5000/app@{DIGEST}", None, False),
        (f"127.0.0.2:5001/app@{DIGEST}", None, False),
        (f"[::1]:5000/app@{DIGEST}", None, False),
        (f"registry.example:5000/app@{DIGEST}", None, False),
        (REF, None, True),
        (f"acme/app@{DIGEST}", None, True),
        (REF, False, False),
        (LAB_REF, True, True),
    ],
    ids=["lab", "localhost", "loopback", "ipv6-loopback", "configured-lab", "ghcr", "docker-hub", "no-tlog", "forced-tlog"],
)  # fmt: skip
def test_tlog_decision(ref, requested, expected):
    tlog, reason = tlog_decision(
        ref, requested, keyless=False, lab_registry="registry.example:5000"
    )
    assert tlog is expected
    assert bool(reason) is (not expected)


def test_keyless_refuses_no_tlog():
    with pytest.raises(ConfigError, match="drop --no-tlog"):
        tlog_decision(REF, False, keyless=True, lab_registry="127.0.0.1:5000")


# --------------------------------------------------------------------------- versions


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("GitVersion:    v2.4.1\nGitCommit:     abc\n", CosignVersion(2, 4, 1)),
        ("GitVersion:    v3.0.2\n", CosignVersion(3, 0, 2)),
        ("GitVersion:    2.6.1-dirty\n", CosignVersion(2, 6, 1)),
        ('{"gitVersion": "v3.1.1", "gitCommit": "x"}', CosignVersion(3, 1, 1)),
        ("GitVersion:    devel\nGitCommit:     unknown\n", None),
        ("", None),
    ],
    ids=["v2.4.1", "v3.0.2", "no-v-prefix", "json", "distribution-devel", "empty"],
)
def test_parse_cosign_version(text, expected):
    assert parse_cosign_version(text) == expected


HELP_HEAD = """Sign the supplied container image.

Usage:
  cosign sign --key <key path>|<kms uri> [--payload <path>] <image digest uri>

Flags:
    --key='':
\tpath to the private key file, KMS URI or Kubernetes Secret

    -r, --recursive=false:
\tif a multi-arch image is specified, additionally sign each discrete image
"""
SIGNING_CONFIG_FLAG = """
    --use-signing-config={default}:
\twhether to use a TUF-provided signing config for the service URLs
"""
COBRA_HELP = """Usage:
  cosign sign [flags]

Flags:
      --key string              path to the private key file, KMS URI or Kubernetes Secret
      --use-signing-config      whether to use a TUF-provided signing config (default true)
"""


def test_version_probes_are_cosign_version_json_then_sign_help():
    assert version_command().argv == ("cosign", "version", "--json")
    assert sign_help_command().argv == ("cosign", "sign", "--help")


@pytest.mark.parametrize(
    ("help_text", "expected"),
    [
        (HELP_HEAD + SIGNING_CONFIG_FLAG.format(default="true"), (3, 0, "3.x")),
        (HELP_HEAD + SIGNING_CONFIG_FLAG.format(default="false"), (2, 6, "2.6+")),
        (HELP_HEAD, (2, 0, "2.x")),
        (COBRA_HELP, (3, 0, "3.x")),
    ],
    ids=["v3-signing-config-on", "v2.6-signing-config-off", "older-v2-no-flag", "cobra-format"],
)
def test_version_from_sign_help(help_text, expected):
    version = version_from_sign_help(help_text)
    assert (version.major, version.minor, str(version)) == expected
    assert not version.exact
    assert version.source == "cosign sign --help"


def test_version_from_sign_help_ignores_what_is_not_the_help():
    assert version_from_sign_help("") is None
    assert version_from_sign_help("Error: unknown flag: --help") is None


class ProbeRunner(Runner):
    """Answers read-only probes from a table (argv → stdout); any other probe fails the test."""

    def __init__(self, answers: dict[tuple[str, ...], str]) -> None:
        super().__init__(echo=False, out=io.StringIO())
        self.answers = answers

    def output(self, command, *, quiet=True, timeout=None):
        return self.answers[command.argv]


def test_a_devel_cosign_is_told_apart_by_its_sign_help():
    devel = json.dumps({"gitVersion": "devel", "gitCommit": "unknown"})
    runner = ProbeRunner(
        {
            ("cosign", "version", "--json"): devel,
            ("cosign", "sign", "--help"): HELP_HEAD + SIGNING_CONFIG_FLAG.format(default="true"),
        }
    )
    version = detect_cosign_version(runner)
    assert (version.major, version.exact, version.source) == (3, False, "cosign sign --help")
    released = ProbeRunner({("cosign", "version", "--json"): '{"gitVersion": "v2.6.1"}'})
    assert detect_cosign_version(released) == CosignVersion(2, 6, 1)


def test_cosign_3_0_before_3_0_4_is_flagged_for_offline_key_verification():
    assert version_notes(CosignVersion(3, 0, 2), tlog=False, purpose="verify")
    assert not version_notes(CosignVersion(3, 0, 4), tlog=False, purpose="verify")
    assert not version_notes(CosignVersion(3, 0, 2), tlog=True, purpose="verify")
    assert not version_notes(CosignVersion(3, exact=False), tlog=False, purpose="verify")


@pytest.mark.parametrize(
    ("version", "signing_config", "sign_bundle_flag"),
    [
        (V3, True, True),
        (V26, False, True),
        (CosignVersion(2, 5, 0), False, False),
        (V24, False, False),
    ],
    ids=["v3.1.1", "v2.6.2", "v2.5.0", "v2.4.1"],
)
def test_version_features(version, signing_config, sign_bundle_flag):
    assert version.signing_config_by_default is signing_config
    assert version.supports_bundle_flag("sign") is sign_bundle_flag


# --------------------------------------------------------------------------- outputs


def envelope(statement: dict) -> str:
    payload = base64.b64encode(json.dumps(statement).encode()).decode()
    return json.dumps(
        {"payloadType": "application/vnd.in-toto+json", "payload": payload, "signatures": []}
    )


def test_parse_attestations_decodes_each_envelope():
    first = {
        "predicateType": "https://cyclonedx.org/bom",
        "subject": [{"digest": {"sha256": "ab" * 32}}],
    }
    second = {"predicateType": "https://cosign.sigstore.dev/attestation/vuln/v1", "subject": []}
    assert parse_attestations(f"{envelope(first)}\n{envelope(second)}\n") == (first, second)


def test_parse_signatures_reads_the_json_array():
    payload = {"critical": {"image": {"docker-manifest-digest": DIGEST}}, "optional": {}}
    assert parse_signatures(f"\n{json.dumps([payload, payload])}\n") == (payload, payload)


def test_cosign_reason_prefers_the_error_line_over_warnings():
    stderr = (
        "WARNING: Skipping tlog verification is an insecure practice\n"
        "Error: no signatures found\n"
        "error during command execution: no signatures found\n"
    )
    assert cosign_reason(stderr) == "no signatures found"


# --------------------------------------------------------------------------- vuln predicate

REPORT = {
    "SchemaVersion": 2,
    "Trivy": {"Version": "0.76.0"},
    "CreatedAt": "2026-01-02T03:04:05.123456789Z",
    "ArtifactName": LAB_REF,
    "ArtifactType": "container_image",
    "Metadata": {"RepoDigests": [LAB_REF]},
    "Results": [{"Target": "app", "Vulnerabilities": [{"VulnerabilityID": "CVE-2099-0001"}]}],
}
DB_META = {"Version": 2, "UpdatedAt": "2026-01-02T01:00:00Z", "NextUpdate": "2126-01-01T00:00:00Z"}


def test_vuln_predicate_follows_cosigns_vuln_schema():
    predicate = vuln_predicate(json.dumps(REPORT), scanner_version=None, db_meta=DB_META)
    assert set(predicate) == {"invocation", "scanner", "metadata"}
    assert set(predicate["invocation"]) == {"parameters", "uri", "event_id", "builder.id"}
    assert predicate["scanner"] == {
        "uri": "pkg:github/aquasecurity/trivy@0.76.0",
        "version": "0.76.0",
        "db": {"uri": "pkg:github/aquasecurity/trivy-db", "version": "v2-2026010201"},
        "result": REPORT,
    }
    assert predicate["metadata"] == {
        "scanStartedOn": "2026-01-02T03:04:05.123456789Z",
        "scanFinishedOn": "2026-01-02T03:04:05.123456789Z",
    }


def test_vuln_predicate_takes_explicit_versions_and_times():
    start = datetime(2026, 1, 2, 3, 0, tzinfo=UTC)
    end = datetime(2026, 1, 2, 3, 5, tzinfo=UTC)
    report = {k: v for k, v in REPORT.items() if k not in ("Trivy", "CreatedAt")}
    predicate = vuln_predicate(
        report, scanner_version="0.70.0", db_meta=None, started=start, finished=end
    )
    assert predicate["scanner"]["version"] == "0.70.0"
    assert predicate["scanner"]["db"] == {"uri": "", "version": ""}
    assert predicate["metadata"] == {
        "scanStartedOn": "2026-01-02T03:00:00Z",
        "scanFinishedOn": "2026-01-02T03:05:00Z",
    }


def test_vuln_predicate_without_any_scan_time_asks_for_one():
    report = {k: v for k, v in REPORT.items() if k != "CreatedAt"}
    with pytest.raises(ConfigError, match="start and end times"):
        vuln_predicate(report, scanner_version=None, db_meta=None)


def test_vuln_predicate_rejects_what_is_not_a_trivy_report():
    with pytest.raises(ConfigError, match="trivy"):
        vuln_predicate('{"bomFormat": "CycloneDX"}', scanner_version="1", db_meta=None)


def test_invocation_names_the_github_actions_run():
    env = {"GITHUB_ACTIONS": "true", "GITHUB_REPOSITORY": "acme/app", "GITHUB_RUN_ID": "42"}
    assert invocation_from_env(env, ("--format", "json")) == {
        "parameters": ["--format", "json"],
        "uri": "https://github.com/acme/app/actions/runs/42",
        "event_id": "42",
        "builder.id": "GitHub Actions",
    }


def test_db_version_is_schema_and_update_hour():
    assert db_version(DB_META) == "v2-2026010201"
    assert db_version(None) == ""


# --------------------------------------------------------------------------- services, no lab


def offline_config():
    return config_mod.load(ROOT, env={})


def test_sign_image_refuses_a_tag_before_running_anything():
    runner = Runner(echo=False, which=lambda tool: None)  # any command would be ToolNotFound
    with pytest.raises(ConfigError, match="by digest"):
        sign_image(offline_config(), "127.0.0.1:5000/monorepo:latest", runner, env={})
    with pytest.raises(ConfigError, match="by digest"):
        verify_image(offline_config(), "127.0.0.1:5000/monorepo:latest", runner, env={})


def test_signing_with_a_key_file_in_ci_without_a_password_says_so(tmp_path):
    key = tmp_path / "cosign.key"
    key.write_text("not really a key")
    runner = Runner(echo=False, which=lambda tool: None)
    with pytest.raises(ConfigError, match="COSIGN_PASSWORD"):
        sign_image(
            offline_config(),
            LAB_REF,
            runner,
            env={},
            options=SignOptions(key=str(key)),
            interactive=False,
        )


def test_a_missing_key_file_names_the_fix(tmp_path):
    runner = Runner(echo=False, which=lambda tool: None)
    with pytest.raises(ConfigError, match="generate-key-pair"):
        sign_image(
            offline_config(),
            LAB_REF,
            runner,
            env={"COSIGN_PASSWORD": ""},
            options=SignOptions(key=str(tmp_path / "missing.key")),
        )


def test_attesting_a_report_of_another_image_is_refused(tmp_path):
    report = tmp_path / "trivy.json"
    other = "127.0.0.1:5000/monorepo@sha256:" + "cd" * 32
    report.write_text(
        json.dumps({**REPORT, "ArtifactName": other, "Metadata": {"RepoDigests": [other]}})
    )
    runner = Runner(echo=False, which=lambda tool: None)
    with pytest.raises(ConfigError, match=r"describes sha256:cdcd.*not sha256:abab.*rescan"):
        attest_image(offline_config(), LAB_REF, runner, env={}, vuln_report=report)


class FailingRunner(Runner):
    """Every command fails with the given stderr, as cosign would."""

    def __init__(self, stderr: str) -> None:
        super().__init__(echo=False, out=io.StringIO())
        self.stderr = stderr

    def run(self, command, *, capture=False, check=True, quiet=False, timeout=None):
        return Result(command, 1, "", self.stderr)


@pytest.mark.parametrize(
    ("ref", "stderr", "error", "message"),
    [
        (
            REF,
            "Error: signing [ghcr.io/acme/app]: PUT https://ghcr.io/v2/acme/app/manifests/"
            "sha256-abab.sig: UNAUTHORIZED: authentication required",
            RegistryUnavailable,
            r"not allowed to sign images in ghcr\.io: log in with `docker login ghcr\.io`",
        ),
        (
            LAB_REF,
            "Error: Get http://127.0.0.1:5000/v2/: dial tcp 127.0.0.1:5000: connect: connection refused",
            RegistryUnavailable,
            r"registry 127\.0\.0\.1:5000 is unreachable: start it with `uv run invoke lab\.up`",
        ),
        (
            REF,
            "Error: GET https://ghcr.io/v2/acme/app/manifests/sha256:abab: MANIFEST_UNKNOWN",
            ImageNotInRegistry,
            r"is not in the registry: push it first",
        ),
    ],
    ids=["login", "unreachable", "not-pushed"],
)
def test_cosign_failures_name_the_registry_and_the_fix(tmp_path, ref, stderr, error, message):
    key = tmp_path / "cosign.key"
    key.write_text("not really a key")
    with pytest.raises(error, match=message):
        sign_image(
            offline_config(),
            ref,
            FailingRunner(stderr),
            env={"COSIGN_PASSWORD": ""},
            options=SignOptions(key=str(key)),
            version=V3,
        )


def test_a_refusal_about_the_signature_is_no_login_problem(tmp_path):
    public = tmp_path / "cosign.pub"
    public.write_text("not really a key")
    runner = FailingRunner("Error: no matching signatures: signature denied by the key\n")
    with pytest.raises(VerificationFailed, match=r"no valid signature on .*signature denied"):
        verify_image(
            offline_config(),
            REF,
            runner,
            env={},
            options=SignOptions(public_key=str(public)),
            version=V3,
        )


# --------------------------------------------------------------------------- lab: real cosign


def crane(*args: str) -> str:
    return subprocess.run(["crane", *args], capture_output=True, text=True, check=True).stdout


@pytest.fixture(scope="module")
def keys(tmp_path_factory):
    """Two cosign key pairs without a password: the signer's and a stranger's."""
    base = tmp_path_factory.mktemp("cosign-keys")
    runner = Runner(echo=False)
    return generate_key_pair(base / "signer", runner), generate_key_pair(base / "stranger", runner)


@pytest.fixture
def image(backend_image, lab) -> str:
    """A copy of the backend image in a repository of its own, by digest (unsigned)."""
    repo = unique_repo(lab, "monorepo")
    crane("copy", backend_image.ref, f"{repo}:src")
    return f"{repo}@{backend_image.digest}"


@pytest.fixture
def cosign_env(monkeypatch):
    monkeypatch.setenv("COSIGN_PASSWORD", "")
    return os.environ


@pytest.fixture
def lab_config(lab):
    config = config_mod.load(ROOT, env={})
    return replace(config, lab=replace(config.lab, registry=lab))


def recording_runner() -> tuple[Runner, io.StringIO]:
    out = io.StringIO()
    return Runner(out=out), out


def platform_manifests(ref: str) -> list[str]:
    index = json.loads(crane("manifest", ref))
    name = ref.split("@")[0]
    return [
        f"{name}@{m['digest']}"
        for m in index.get("manifests", [])
        if m.get("platform", {}).get("os") != "unknown"
    ]


@pytest.mark.lab
def test_installed_cosign_version_is_detected():
    version = detect_cosign_version(Runner(echo=False))
    assert version.major in (2, 3)
    assert version.source != "assumed"


@pytest.mark.lab
def test_sign_then_verify_by_digest_offline(image, keys, cosign_env, lab_config):
    signer, _ = keys
    runner, out = recording_runner()
    signed = sign_image(
        lab_config, image, runner, env=cosign_env, options=SignOptions(key=str(signer.private))
    )
    assert not signed.tlog
    verified = verify_image(
        lab_config,
        image,
        runner,
        env=cosign_env,
        options=SignOptions(public_key=str(signer.public)),
    )
    digest = image.split("@")[1]
    assert verified.signatures
    assert {s["critical"]["image"]["docker-manifest-digest"] for s in verified.signatures} == {
        digest
    }
    log = out.getvalue()
    assert "skips the transparency log" in log
    assert f"+ cosign sign --yes --key {signer.private}" in log


@pytest.mark.lab
def test_recursive_signing_covers_each_platform_manifest(image, keys, cosign_env, lab_config):
    signer, _ = keys
    runner, _ = recording_runner()
    sign_image(
        lab_config, image, runner, env=cosign_env, options=SignOptions(key=str(signer.private))
    )
    children = platform_manifests(image)
    assert children, "buildx pushes an index with at least one platform manifest"
    for child in children:
        verify_image(
            lab_config,
            child,
            runner,
            env=cosign_env,
            options=SignOptions(public_key=str(signer.public)),
        )


@pytest.mark.lab
def test_verify_with_a_wrong_key_fails_with_one_clear_line(image, keys, cosign_env, lab_config):
    signer, stranger = keys
    runner, _ = recording_runner()
    sign_image(
        lab_config, image, runner, env=cosign_env, options=SignOptions(key=str(signer.private))
    )
    with pytest.raises(VerificationFailed) as err:
        verify_image(
            lab_config,
            image,
            runner,
            env=cosign_env,
            options=SignOptions(public_key=str(stranger.public)),
        )
    message = str(err.value)
    assert "\n" not in message
    assert f"no valid signature on {image} for key {stranger.public}" in message
    assert err.value.exit_code == 1


@pytest.mark.lab
def test_verify_of_a_different_unsigned_digest_fails(image, keys, cosign_env, lab_config):
    signer, _ = keys
    runner, _ = recording_runner()
    sign_image(
        lab_config,
        image,
        runner,
        env=cosign_env,
        options=SignOptions(key=str(signer.private)),
        recursive=False,
    )
    child = platform_manifests(image)[0]  # not signed: --recursive was off
    with pytest.raises(VerificationFailed, match="no signatures found"):
        verify_image(
            lab_config,
            child,
            runner,
            env=cosign_env,
            options=SignOptions(public_key=str(signer.public)),
        )


@pytest.mark.lab
def test_env_keys_sign_and_verify(image, keys, cosign_env, lab_config, monkeypatch):
    signer, _ = keys
    monkeypatch.setenv("ITEST_COSIGN_KEY", signer.private.read_text())
    monkeypatch.setenv("ITEST_COSIGN_PUB", signer.public.read_text())
    runner, out = recording_runner()
    sign_image(
        lab_config, image, runner, env=os.environ, options=SignOptions(key="env://ITEST_COSIGN_KEY")
    )
    verify_image(
        lab_config,
        image,
        runner,
        env=os.environ,
        options=SignOptions(public_key="env://ITEST_COSIGN_PUB"),
    )
    assert "BEGIN" not in out.getvalue()  # the key itself is never echoed


@pytest.mark.lab
def test_attest_sbom_then_verify_lists_the_apps_packages(
    image, keys, cosign_env, lab_config, tmp_path
):
    signer, _ = keys
    sbom = tmp_path / "sbom.cdx.json"
    subprocess.run(
        ["trivy", "image", "--quiet", "--format", "cyclonedx", "--output", str(sbom), image],
        check=True,
        timeout=300,
    )
    runner, out = recording_runner()
    options = SignOptions(key=str(signer.private), public_key=str(signer.public))
    sign_image(lab_config, image, runner, env=cosign_env, options=options)
    attested = attest_image(lab_config, image, runner, env=cosign_env, sbom=sbom, options=options)
    assert attested.predicates == (("cyclonedx", sbom),)
    verified = verify_image(
        lab_config, image, runner, env=cosign_env, options=options, attestations=["cyclonedx"]
    )
    (statement,) = verified.attestations["cyclonedx"]
    assert statement["predicateType"] == "https://cyclonedx.org/bom"
    assert statement["subject"][0]["digest"]["sha256"] == image.split("@sha256:")[1]
    names = {c["name"] for c in statement["predicate"]["components"]}
    assert {"fastapi", "starlette", "uvicorn"} <= names
    assert "attesting" in out.getvalue() and "skips the transparency log" in out.getvalue()
    with pytest.raises(VerificationFailed, match="vuln attestation"):
        verify_image(
            lab_config, image, runner, env=cosign_env, options=options, attestations=["vuln"]
        )


@pytest.mark.lab
def test_attest_vuln_report_then_verify(image, keys, cosign_env, lab_config, tmp_path):
    signer, _ = keys
    cache = tmp_path / "trivy-cache"
    vulndb.write_db(cache, now=datetime.now(UTC))
    report = tmp_path / "trivy.json"
    subprocess.run(
        [
            "trivy", "image", "--quiet", "--cache-dir", str(cache), "--skip-db-update",
            "--scanners", "vuln", "--format", "json", "--output", str(report), image,
        ],
        check=True,
        timeout=300,
    )  # fmt: skip
    runner, _ = recording_runner()
    options = SignOptions(key=str(signer.private), public_key=str(signer.public))
    sign_image(lab_config, image, runner, env=cosign_env, options=options)
    attest_image(
        lab_config,
        image,
        runner,
        env=cosign_env,
        vuln_report=report,
        options=options,
        db_meta=json.loads((cache / "db" / "metadata.json").read_text()),
    )
    verified = verify_image(
        lab_config, image, runner, env=cosign_env, options=options, attestations=["vuln"]
    )
    (statement,) = verified.attestations["vuln"]
    assert statement["predicateType"] == "https://cosign.sigstore.dev/attestation/vuln/v1"
    scanner = statement["predicate"]["scanner"]
    assert scanner["version"] == json.loads(report.read_text())["Trivy"]["Version"]
    assert scanner["db"]["version"].startswith("v2-")
    ids = {
        v["VulnerabilityID"]
        for result in scanner["result"]["Results"]
        for v in result.get("Vulnerabilities") or []
    }
    assert "CVE-2099-0001" in ids


@pytest.mark.lab
def test_signing_an_image_the_registry_does_not_have_says_push_first(
    keys, cosign_env, lab_config, lab
):
    signer, _ = keys
    missing = f"{unique_repo(lab, 'monorepo')}@sha256:{'0' * 64}"
    runner, _ = recording_runner()
    with pytest.raises(ImageNotInRegistry, match="push it first"):
        sign_image(
            lab_config,
            missing,
            runner,
            env=cosign_env,
            options=SignOptions(key=str(signer.private)),
        )


# --------------------------------------------------------------------------- lab: the tasks


def run_task(*argv: str) -> tuple[int, str, str]:
    """Run the sign (and scan) tasks through Invoke's parser, in-process, as `invoke docker.<task>`."""
    from contextlib import redirect_stderr, redirect_stdout

    from invoke import Collection, Program

    from buildtasks.tasks import docker_scan, docker_sign

    namespace = Collection()
    docker = Collection.from_module(docker_sign)
    for one in (docker_scan.scan, docker_scan.sbom):
        docker.add_task(one)
    namespace.add_collection(docker, name="docker")
    stdout, stderr = io.StringIO(), io.StringIO()
    code = 0
    with redirect_stdout(stdout), redirect_stderr(stderr):
        try:
            Program(namespace=namespace, version="test").run(["invoke", *argv])
        except SystemExit as exc:
            code = int(exc.code or 0)
    return code, stdout.getvalue(), stderr.getvalue()


@pytest.mark.lab
def test_tasks_sign_attest_and_verify(image, keys, cosign_env, tmp_path, monkeypatch):
    signer, stranger = keys
    monkeypatch.chdir(ROOT)
    code, out, err = run_task(
        "docker.sign", "--image", "backend", "--ref", image, "--key", str(signer.private)
    )
    # No signature without a gate on this digest (another test's report may be lying there).
    assert code != 0 and (
        "no scan report" in err or f"no gate verdict on {image.split('@')[1]}" in err
    )
    clean_db = tmp_path / "clean-db"
    vulndb.write_db(clean_db, advisories=(), now=datetime.now(UTC))
    code, out, err = run_task(
        "docker.scan", "--image", "backend", "--ref", image, "--offline", "--cache-dir",
        str(clean_db), "--no-dockerfile",
    )  # fmt: skip
    assert code == 0, err
    code, out, err = run_task(
        "docker.sign", "--image", "backend", "--ref", image, "--key", str(signer.private)
    )
    assert code == 0, err
    assert f"backend: signed {image}" in out
    assert "skips the transparency log" in err

    sbom = tmp_path / "sbom.cdx.json"
    subprocess.run(
        ["trivy", "image", "--quiet", "--format", "cyclonedx", "--output", str(sbom), image],
        check=True,
    )
    code, out, err = run_task(
        "docker.attest",
        "--image",
        "backend",
        "--ref",
        image,
        "--key",
        str(signer.private),
        "--sbom",
        str(sbom),
    )
    assert code == 0, err
    assert f"backend: attested cyclonedx ({sbom})" in out

    code, out, err = run_task(
        "docker.verify",
        "--image",
        "backend",
        "--ref",
        image,
        "--public-key",
        str(signer.public),
        "--attestations=cyclonedx",
    )
    assert code == 0, err
    assert f"backend: verified signature on {image}" in out
    assert "cyclonedx: SBOM with" in out

    code, out, err = run_task(
        "docker.verify", "--image", "backend", "--ref", image, "--public-key", str(stranger.public)
    )
    assert code == 1
    assert err.strip().splitlines()[-1].startswith(f"error: no valid signature on {image}")

    code, out, err = run_task(
        "docker.sign",
        "--image",
        "backend",
        "--ref",
        image.split("@")[0] + ":src",
        "--key",
        str(signer.private),
    )
    assert code == 2
    assert "by digest" in err


# --------------------------------------------------------------------------- what verified


KEY_SIGNATURE = {
    "critical": {
        "identity": {"docker-reference": "127.0.0.1:5000/monorepo"},
        "image": {"docker-manifest-digest": DIGEST},
        "type": "cosign container image signature",
    },
    "optional": None,
}
KEY_ATTESTATION = {
    "critical": {
        "identity": {"docker-reference": f"127.0.0.1:5000/monorepo@{DIGEST}"},
        "image": {"docker-manifest-digest": DIGEST},
        "type": "https://cyclonedx.org/bom",
    },
    "optional": {},
}
NEW_BUNDLE_SIGNATURE = {
    **KEY_SIGNATURE,
    "critical": {**KEY_SIGNATURE["critical"], "type": "https://sigstore.dev/cosign/sign/v1"},
}
KEYLESS_SIGNATURE = {
    **KEY_SIGNATURE,
    "optional": {"Issuer": ISSUER, "Subject": IDENTITY, "Bundle": {"SignedEntryTimestamp": "x"}},
}
OTHER_WORKFLOW = {
    **KEY_SIGNATURE,
    "optional": {
        "Issuer": ISSUER,
        "Subject": "https://github.com/acme/app/.github/workflows/other.yml@refs/heads/dev",
    },
}


@pytest.mark.parametrize(
    ("mode", "payloads", "error"),
    [
        pytest.param(KEY_FILE, [KEY_SIGNATURE], "", id="key-signature"),
        pytest.param(KEY_FILE, [KEY_SIGNATURE, KEY_ATTESTATION], "", id="key-both"),
        pytest.param(KEY_FILE, [NEW_BUNDLE_SIGNATURE, KEY_ATTESTATION], "", id="new-bundle-both"),
        pytest.param(
            KEY_FILE,
            [KEY_ATTESTATION],
            "no signature on .* \\(it verified only attestations: https://cyclonedx.org/bom\\)",
            id="key-attestation-only",
        ),
        pytest.param(KEYLESS_ID, [KEYLESS_SIGNATURE], "", id="keyless-signature"),
        pytest.param(
            KEYLESS_ID,
            [{**KEY_ATTESTATION, "optional": {"Issuer": ISSUER, "Subject": IDENTITY}}],
            "it verified only attestations",
            id="keyless-attestation-only",
        ),
        pytest.param(
            KEYLESS_ID, [OTHER_WORKFLOW], "signed by .*other.yml", id="keyless-other-signer"
        ),
        pytest.param(
            KEYLESS_RE, [KEYLESS_SIGNATURE, OTHER_WORKFLOW], "", id="keyless-regexp-one-matches"
        ),
        pytest.param(
            KEY_FILE,
            [{**KEY_SIGNATURE, "critical": {**KEY_SIGNATURE["critical"], "image": {}}}],
            "do not name",
            id="signature-of-nothing",
        ),
    ],
)
def test_verify_passes_only_on_what_cosign_returned_as_a_signature(mode, payloads, error):
    from buildtasks.sign.service import check_signatures

    signatures = [p for p in payloads if is_signature(p)]
    if error:
        with pytest.raises(VerificationFailed, match=error):
            check_signatures(LAB_REF, DIGEST, mode, payloads, signatures)
    else:
        check_signatures(LAB_REF, DIGEST, mode, payloads, signatures)


def test_what_verify_prints_comes_from_the_payloads():
    verified = Verified(LAB_REF, KEYLESS_RE, True, (KEYLESS_SIGNATURE,))
    assert signer_description(verified) == f"keyless: {IDENTITY} (issuer {ISSUER})"
    assert signer_description(Verified(LAB_REF, KEY_FILE, False, (KEY_SIGNATURE,))) == (
        KEY_FILE.description
    )


@pytest.mark.lab
@pytest.mark.parametrize(
    ("sign", "attest", "ask", "passes"),
    [
        pytest.param(False, True, (), False, id="attested-only"),
        pytest.param(True, False, (), True, id="signed-only"),
        pytest.param(True, False, ("cyclonedx",), False, id="signed-asked-for-sbom"),
        pytest.param(True, True, ("cyclonedx",), True, id="both"),
    ],
)
def test_docker_verify_names_only_what_exists(
    image, keys, cosign_env, lab_config, tmp_path, sign, attest, ask, passes
):
    signer, _ = keys
    options = SignOptions(key=str(signer.private), public_key=str(signer.public))
    runner, _ = recording_runner()
    if sign:
        sign_image(lab_config, image, runner, env=cosign_env, options=options)
    if attest:
        sbom = tmp_path / "sbom.cdx.json"
        subprocess.run(
            ["trivy", "image", "--quiet", "--format", "cyclonedx", "--output", str(sbom), image],
            check=True,
            timeout=300,
        )
        attest_image(lab_config, image, runner, env=cosign_env, sbom=sbom, options=options)
    argv = ["docker.verify", "--image", "backend", "--ref", image]
    argv += ["--public-key", str(signer.public)]
    if ask:
        argv.append(f"--attestations={','.join(ask)}")
    code, out, err = run_task(*argv)
    if passes:
        assert code == 0, err
        assert f"backend: verified signature on {image}" in out
        assert ("cyclonedx: SBOM with" in out) == bool(ask)
    else:
        assert code == 1, out + err
        assert "verified signature" not in out
        last = err.strip().splitlines()[-1]
        assert last.startswith("error: no ") and len(last) < 400, last


def test_a_missing_digest_is_one_short_line_with_the_reference_once(tmp_path):
    """cosign 3 repeats the reference three times and adds the request; the line says it once,
    with the cause and the fix, and keeps cosign's whole output in a file it names."""
    key = tmp_path / "cosign.key"
    key.write_text("not really a key")
    url = f"http://127.0.0.1:5000/v2/monorepo/manifests/{LAB_REF.split('@')[1]}"
    error = (
        f"signing [{LAB_REF}]: signing digest: HEAD {url}: unexpected status code 404 Not "
        "Found (HEAD responses have no body, use GET for details)"
    )
    stderr = f"Pushing signature to: 127.0.0.1:5000/monorepo\nError: {error}\n"
    stderr += f"error during command execution: {error}\n"
    with pytest.raises(ImageNotInRegistry) as err:
        sign_image(
            offline_config(),
            LAB_REF,
            FailingRunner(stderr),
            env={"COSIGN_PASSWORD": ""},
            options=SignOptions(key=str(key)),
            version=V3,
        )
    message = str(err.value)
    assert err.value.exit_code == 5
    assert message.count(LAB_REF.split("@")[1]) == 1 and "\n" not in message
    assert "signing digest: unexpected status code 404 Not Found" in message
    assert "map[" not in message and "HEAD responses" not in message
    assert len(message) < 300, len(message)
    log = message.rsplit("cosign's output: ", 1)[1].split(")")[0]
    assert Path(log).read_text() == stderr
