"""The cosign command lines: pure argv builders returning `Command`, one per subcommand.

Every plan takes the image by digest (`name@sha256:...`), the `SigningMode` and the installed
`CosignVersion`, whose flags differ: offline signing needs `--use-signing-config=false` on
v3 as well as `--tlog-upload=false`, and `--new-bundle-format` exists only on 2.5+ (attest)
or 2.6+ (sign and verify).
"""

from __future__ import annotations

import difflib
import re
from pathlib import Path

from buildtasks.command import Command
from buildtasks.errors import ConfigError
from buildtasks.refs import require_digest
from buildtasks.sign.modes import NO_MODE, PASSWORD_HINT, SigningMode, key_kind
from buildtasks.sign.version import COSIGN, CosignVersion

#: Predicate types `cosign attest --type` knows by name (anything else must be a URI).
PREDICATE_TYPES = (
    "cyclonedx",
    "cyclonedxxml",
    "spdx",
    "spdxjson",
    "slsaprovenance",
    "slsaprovenance02",
    "slsaprovenance1",
    "link",
    "vuln",
    "custom",
)
#: The in-toto predicate type cosign writes for each of its `--type` names.
PREDICATE_URIS = {
    "cyclonedx": "https://cyclonedx.org/bom",
    "spdx": "https://spdx.dev/Document",
    "spdxjson": "https://spdx.dev/Document",
    "slsaprovenance": "https://slsa.dev/provenance/v0.2",
    "slsaprovenance02": "https://slsa.dev/provenance/v0.2",
    "slsaprovenance1": "https://slsa.dev/provenance/v1",
    "link": "https://in-toto.io/Link/v1",
    "vuln": "https://cosign.sigstore.dev/attestation/vuln/v1",
    "openvex": "https://openvex.dev/ns",
    "custom": "https://cosign.sigstore.dev/attestation/v1",
}
#: The attestations `docker.attest` makes by default, in order.
DEFAULT_ATTESTATIONS = ("cyclonedx", "vuln")


def _offline_flags(version: CosignVersion) -> tuple[str, ...]:
    if version.signing_config_by_default:
        return ("--use-signing-config=false", "--tlog-upload=false")
    return ("--tlog-upload=false",)


def _bundle_flags(
    version: CosignVersion, subcommand: str, new_bundle_format: bool | None
) -> tuple[str, ...]:
    if new_bundle_format is None:
        return ()
    if not version.supports_bundle_flag(subcommand):
        if not new_bundle_format:
            return ()
        needed = "2.5" if subcommand in ("attest", "verify-attestation") else "2.6"
        raise ConfigError(
            f"cosign {version} cannot {subcommand} with the Sigstore bundle format "
            f"(`cosign {subcommand} --new-bundle-format` needs cosign {needed} or later): "
            "upgrade cosign"
        )
    return (f"--new-bundle-format={'true' if new_bundle_format else 'false'}",)


def _signer_flags(mode: SigningMode, version: CosignVersion, *, tlog: bool) -> tuple[str, ...]:
    if mode.keyless:
        if not tlog:
            raise ConfigError("keyless signatures need the transparency log")
        return ("--oidc-provider", mode.oidc_provider) if mode.oidc_provider else ()
    if not mode.key:
        raise ConfigError(NO_MODE)
    flags: tuple[str, ...] = ("--key", mode.key)
    if not tlog:
        flags += _offline_flags(version)
    return flags


def _verifier_flags(mode: SigningMode, *, tlog: bool) -> tuple[str, ...]:
    if mode.keyless:
        flags: tuple[str, ...] = (
            ("--certificate-identity", mode.identity)
            if mode.identity
            else ("--certificate-identity-regexp", mode.identity_regexp)
        )
        flags += ("--certificate-oidc-issuer", mode.issuer)
    else:
        flags = ("--key", mode.public_key)
    if not tlog:
        flags += ("--insecure-ignore-tlog",)
    return flags


def _sign_hint(mode: SigningMode) -> str:
    if mode.keyless:
        return "keyless signing needs GitHub Actions with `permissions: id-token: write`"
    return PASSWORD_HINT if key_kind(mode.key, where="signing key") != "kms" else ""


def sign_command(
    ref: str,
    mode: SigningMode,
    version: CosignVersion,
    *,
    tlog: bool,
    recursive: bool = True,
    new_bundle_format: bool | None = None,
) -> Command:
    """`cosign sign` for `ref` (by digest); `recursive` also signs each manifest of an index."""
    require_digest(ref)
    argv = (COSIGN, "sign", "--yes", *_signer_flags(mode, version, tlog=tlog))
    if recursive:
        argv += ("--recursive",)
    argv += (*_bundle_flags(version, "sign", new_bundle_format), ref)
    return Command(argv, hint=_sign_hint(mode))


def verify_command(
    ref: str,
    mode: SigningMode,
    version: CosignVersion,
    *,
    tlog: bool,
    new_bundle_format: bool | None = None,
) -> Command:
    """`cosign verify` for `ref` (by digest): prints the verified payloads as JSON."""
    require_digest(ref)
    argv = (
        COSIGN,
        "verify",
        *_verifier_flags(mode, tlog=tlog),
        *_bundle_flags(version, "verify", new_bundle_format),
        ref,
    )
    return Command(argv)


def predicate_type(value: str) -> str:
    """Validate a `--type` value: one of cosign's names, or a predicate URI."""
    if value in PREDICATE_TYPES or re.match(r"^https?://\S+$", value):
        return value
    match = difflib.get_close_matches(value, PREDICATE_TYPES, n=1, cutoff=0.6)
    hint = f" — did you mean {match[0]!r}?" if match else ""
    raise ConfigError(
        f"unknown attestation type {value!r}{hint} (cosign knows {', '.join(PREDICATE_TYPES)}, "
        "or give a predicate type URI)"
    )


def attest_command(
    ref: str,
    predicate: str | Path,
    kind: str,
    mode: SigningMode,
    version: CosignVersion,
    *,
    tlog: bool,
    new_bundle_format: bool | None = None,
) -> Command:
    """`cosign attest --type KIND --predicate FILE` for `ref` (by digest)."""
    require_digest(ref)
    argv = (
        COSIGN,
        "attest",
        "--yes",
        *_signer_flags(mode, version, tlog=tlog),
        "--type",
        predicate_type(kind),
        "--predicate",
        str(predicate),
        *_bundle_flags(version, "attest", new_bundle_format),
        ref,
    )
    return Command(argv, hint=_sign_hint(mode))


def verify_attestation_command(
    ref: str,
    kind: str,
    mode: SigningMode,
    version: CosignVersion,
    *,
    tlog: bool,
    new_bundle_format: bool | None = None,
) -> Command:
    """`cosign verify-attestation --type KIND` for `ref`: prints one DSSE envelope per line."""
    require_digest(ref)
    argv = (
        COSIGN,
        "verify-attestation",
        *_verifier_flags(mode, tlog=tlog),
        "--type",
        predicate_type(kind),
        *_bundle_flags(version, "verify-attestation", new_bundle_format),
        ref,
    )
    return Command(argv)


def generate_key_pair_command(
    directory: str | Path, *, password: str = "", prefix: str = "cosign"
) -> Command:
    """`cosign generate-key-pair` in `directory`, non-interactive (`COSIGN_PASSWORD`)."""
    argv: tuple[str, ...] = (COSIGN, "generate-key-pair")
    if prefix != "cosign":
        argv += ("--output-key-prefix", prefix)
    return Command(argv, env={"COSIGN_PASSWORD": password}, cwd=str(directory))
