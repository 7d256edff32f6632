"""Sign, attest and verify images by digest with cosign.

Two modes, picked by `resolve_mode` from what is configured:

* **key**: a private key from a file, `env://VAR` or a KMS URI (`awskms://`, `gcpkms://`,
  `azurekms://`, `hashivault://`, `k8s://`, `gitlab://`), passed to cosign unchanged. The
  public key for verification is configured separately, or derived: the same URI for a KMS
  key, `NAME.pub` next to `NAME.key` for a key file.
* **keyless**: in GitHub Actions with `permissions: id-token: write`, cosign gets a Fulcio
  certificate for the workflow's OIDC identity; verification then checks that identity
  (`--certificate-identity` or `--certificate-identity-regexp`) and its issuer.

Key-based signing can skip the transparency log (Rekor) for private or offline registries
(the lab's, or any loopback address: `refs.is_local_registry`); every command that does so
is announced with a `note:` line, and verification then passes `--insecure-ignore-tlog`.

cosign's flags moved between major versions, so plans take the installed version
(`CosignVersion`, read by `detect_cosign_version` from `cosign version --json`, or for a
distribution's "devel" build from the `--use-signing-config` flag in `cosign sign --help`):

* v3 reads Fulcio/Rekor URLs from a TUF-provided signing config by default. Offline signing
  needs `--use-signing-config=false --tlog-upload=false` (`--tlog-upload` is deprecated since
  3.0.3 but still the way to sign without a log). v2 has no signing config by default
  (`--use-signing-config` appeared in 2.6.0, off) and only needs `--tlog-upload=false`.
* v3 writes Sigstore bundles as OCI referrers (`--new-bundle-format` on by default) and its
  verify also reads the older `.sig`/`.att` tags; v2 writes and reads the older tags unless
  `--new-bundle-format` is given (attest and verify-attestation since 2.5.0, sign and verify
  since 2.6.0). `new_bundle_format=None` keeps the installed cosign's default.
* `cosign attest` has no `--recursive` (removed in 2.5.1): attestations describe the digest
  given, usually the multi-platform index.

The modules, from the bottom up:

* `version`: `CosignVersion` and its detection.
* `modes`: key or keyless (`resolve_mode`), the transparency-log decision and its notes.
* `plans`: the pure argv builders (`sign_command`, `verify_command`, `attest_command`, ...).
* `predicates`: parsing cosign's output; the digests files name; the `vuln` predicate.
* `service`: what runs through a `Runner` (`sign_image`, `verify_image`, `attest_image`, ...).

Images are named by digest (`refs.require_digest`); everything here is re-exported from this
package, so callers import from `buildtasks.sign`.
"""

from buildtasks.sign.modes import (
    ENV_NAME_RE,
    GITHUB_OIDC_ISSUER,
    GITHUB_OIDC_PROVIDER,
    KMS_SCHEMES,
    NO_MODE,
    PASSWORD_HINT,
    SigningMode,
    SignOptions,
    github_identity_regexp,
    key_kind,
    public_key_for,
    resolve_mode,
    tlog_decision,
    tlog_note,
    version_notes,
)
from buildtasks.sign.plans import (
    DEFAULT_ATTESTATIONS,
    PREDICATE_TYPES,
    PREDICATE_URIS,
    attest_command,
    generate_key_pair_command,
    predicate_type,
    sign_command,
    verify_attestation_command,
    verify_command,
)
from buildtasks.sign.predicates import (
    RFC3339_RE,
    TRIVY_DB_URI,
    TRIVY_URI,
    cosign_reason,
    db_version,
    invocation_from_env,
    load_report,
    parse_attestations,
    parse_signatures,
    report_digests,
    sbom_digests,
    signed_digests,
    statement_digests,
    summarize,
    vuln_predicate,
)
from buildtasks.sign.service import (
    Attested,
    ImageNotInRegistry,
    KeyPair,
    Signed,
    VerificationFailed,
    Verified,
    attest_image,
    file_describes,
    generate_key_pair,
    require_gate,
    require_signing_ready,
    sign_image,
    signer_description,
    trivy_db_meta,
    verify_image,
)
from buildtasks.sign.version import (
    ASSUMED_VERSION,
    COSIGN,
    SIGN_HELP_SOURCE,
    CosignVersion,
    detect_cosign_version,
    parse_cosign_version,
    sign_help_command,
    version_command,
    version_from_sign_help,
)

__all__ = [
    "ASSUMED_VERSION",
    "COSIGN",
    "DEFAULT_ATTESTATIONS",
    "ENV_NAME_RE",
    "GITHUB_OIDC_ISSUER",
    "GITHUB_OIDC_PROVIDER",
    "KMS_SCHEMES",
    "NO_MODE",
    "PASSWORD_HINT",
    "PREDICATE_TYPES",
    "PREDICATE_URIS",
    "RFC3339_RE",
    "SIGN_HELP_SOURCE",
    "TRIVY_DB_URI",
    "TRIVY_URI",
    "Attested",
    "CosignVersion",
    "ImageNotInRegistry",
    "KeyPair",
    "SignOptions",
    "Signed",
    "SigningMode",
    "VerificationFailed",
    "Verified",
    "attest_command",
    "attest_image",
    "cosign_reason",
    "db_version",
    "detect_cosign_version",
    "file_describes",
    "generate_key_pair",
    "generate_key_pair_command",
    "github_identity_regexp",
    "invocation_from_env",
    "key_kind",
    "load_report",
    "parse_attestations",
    "parse_cosign_version",
    "parse_signatures",
    "predicate_type",
    "public_key_for",
    "report_digests",
    "require_gate",
    "require_signing_ready",
    "resolve_mode",
    "sbom_digests",
    "sign_command",
    "sign_help_command",
    "sign_image",
    "signed_digests",
    "signer_description",
    "statement_digests",
    "summarize",
    "tlog_decision",
    "tlog_note",
    "trivy_db_meta",
    "verify_attestation_command",
    "verify_command",
    "verify_image",
    "version_command",
    "version_from_sign_help",
    "version_notes",
    "vuln_predicate",
]
