"""How cosign signs or verifies: key or keyless, and whether the transparency log is used.

`resolve_mode` picks the mode from the CLI, the environment and `[tool.buildtasks.sign]`;
`github_identity_regexp` is the keyless identity trusted by default in GitHub Actions;
`tlog_decision` decides about Rekor for a reference; `tlog_note` and `version_notes` are the
`note:` lines announcing what that means. All pure: values in, values (or `ConfigError`) out.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from buildtasks.config import RELEASE_REFS, RELEASE_WORKFLOW, SignConfig
from buildtasks.errors import ConfigError
from buildtasks.paths import glob_regexp as ref_glob_regexp
from buildtasks.refs import is_local_registry, registry_of
from buildtasks.sign.version import CosignVersion

GITHUB_OIDC_ISSUER = "https://token.actions.githubusercontent.com"
#: cosign's name for the GitHub Actions token source (`--oidc-provider`).
GITHUB_OIDC_PROVIDER = "github-actions"
#: Key URI schemes cosign resolves itself; the URI is passed through unchanged.
KMS_SCHEMES = ("awskms", "gcpkms", "azurekms", "hashivault", "k8s", "gitlab")
ENV_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")

#: How to give cosign a key file's password without a prompt.
PASSWORD_HINT = "set COSIGN_PASSWORD to the key's password (empty for a key without one)"
#: Neither a key nor an OIDC token: both ways to sign.
NO_MODE = (
    "no signing key and no OIDC token: set a key with --key, [tool.buildtasks.sign] key or "
    "BUILDTASKS_COSIGN_KEY (a file, env://VAR or a KMS URI such as awskms://...), or sign "
    "keyless in GitHub Actions with `permissions: id-token: write` (--keyless)"
)


@dataclass(frozen=True)
class SignOptions:
    """What the user asked for; empty values fall back to the environment and configuration."""

    key: str = ""
    public_key: str = ""
    keyless: bool = False
    #: None: on, except for private registries (see `tlog_decision`).
    tlog: bool | None = None
    identity: str = ""
    identity_regexp: str = ""
    issuer: str = ""
    #: None: the installed cosign's default bundle format.
    new_bundle_format: bool | None = None


@dataclass(frozen=True)
class SigningMode:
    """How cosign signs or verifies: with a key, or keyless with an OIDC identity."""

    keyless: bool
    key: str = ""
    public_key: str = ""
    identity: str = ""
    identity_regexp: str = ""
    issuer: str = GITHUB_OIDC_ISSUER
    oidc_provider: str = ""

    @property
    def description(self) -> str:
        if not self.keyless:
            return f"key {self.key or self.public_key}"
        if self.identity or self.identity_regexp:
            return f"keyless identity {self.identity or self.identity_regexp}"
        return "keyless (GitHub Actions OIDC)" if self.oidc_provider else "keyless (OIDC)"


def key_kind(value: str, *, where: str) -> str:
    """Classify a key reference as "file", "env" or "kms"; reject unknown URI schemes."""
    scheme, sep, rest = value.partition("://")
    if not sep:
        return "file"
    if scheme == "env":
        if not ENV_NAME_RE.match(rest):
            raise ConfigError(
                f"{where} {value!r}: env:// needs a variable name, e.g. env://COSIGN_PRIVATE_KEY"
            )
        return "env"
    if scheme in KMS_SCHEMES:
        if not rest:
            raise ConfigError(f"{where} {value!r} names no key after {scheme}://")
        return "kms"
    if scheme == "https" and where.endswith("public key"):
        return "url"
    if scheme == "http" and where.endswith("public key"):
        raise ConfigError(
            f"{where} {value!r} is fetched over plain http, where anyone on the path can swap "
            "it: use an https:// URL, a file, env://VAR or a KMS URI"
        )
    match = difflib.get_close_matches(scheme, (*KMS_SCHEMES, "env"), n=1, cutoff=0.6)
    hint = f" — did you mean {match[0]}://?" if match else ""
    raise ConfigError(
        f"{where} {value!r} has an unknown scheme {scheme}://{hint} "
        f"(use a file path, env://VAR or one of {', '.join(s + '://' for s in KMS_SCHEMES)})"
    )


def public_key_for(key: str, public_key: str = "") -> str:
    """The key to verify with: the configured public key, or one derived from the signing key."""
    if public_key:
        key_kind(public_key, where="public key")
        return public_key
    if key:
        kind = key_kind(key, where="signing key")
        if kind == "kms":
            return key
        if kind == "file" and key.endswith(".key"):
            return key[: -len(".key")] + ".pub"
    raise ConfigError(
        "no public key to verify with: pass --public-key, or set [tool.buildtasks.sign] "
        "public-key or BUILDTASKS_COSIGN_PUBLIC_KEY (a file, env://VAR, or the KMS URI)"
    )


def github_identity_regexp(
    repository: str,
    workflow: str = RELEASE_WORKFLOW,
    refs: Sequence[str] = RELEASE_REFS,
) -> str:
    """Match the certificate identity of `workflow` of `owner/repo` run on one of `refs`.

    GitHub's certificates name the signer as `https://github.com/OWNER/REPO/WORKFLOW@REF`
    (the token's `job_workflow_ref`); anchored at both ends, so another repository, another
    workflow, a feature branch or a pull request's ref does not match. cosign compiles it with
    Go's RE2, so it uses no lookarounds or backreferences.
    """
    if not refs:
        raise ConfigError(
            "[tool.buildtasks.sign] release-refs is empty: list the refs releases are signed "
            'from, e.g. ["refs/heads/main", "refs/tags/v*"]'
        )
    alternatives = "|".join(ref_glob_regexp(ref) for ref in refs)
    return (
        rf"^https://github\.com/{re.escape(repository)}/{re.escape(workflow)}"
        rf"@(?:{alternatives})$"
    )


def resolve_mode(
    sign: SignConfig, options: SignOptions, env: Mapping[str, str], *, purpose: str
) -> SigningMode:
    """Pick key or keyless mode for `purpose` ("sign" or "verify"); CLI > env > pyproject.

    Key mode wins when a key is configured. Otherwise signing is keyless when GitHub Actions
    offers an OIDC token (`ACTIONS_ID_TOKEN_REQUEST_URL` in `env`) or `--keyless` was given;
    verification is keyless when an identity is known or GitHub Actions is detected.
    """
    if purpose not in ("sign", "verify"):
        raise ValueError(f"purpose must be 'sign' or 'verify', got {purpose!r}")
    if options.keyless and (options.key or options.public_key):
        raise ConfigError("--keyless and --key/--public-key exclude each other: pick one mode")
    key = options.key or env.get("BUILDTASKS_COSIGN_KEY", "") or sign.key
    public = options.public_key or env.get("BUILDTASKS_COSIGN_PUBLIC_KEY", "") or sign.public_key
    issuer = options.issuer or sign.certificate_oidc_issuer or GITHUB_OIDC_ISSUER
    in_actions = env.get("GITHUB_ACTIONS") == "true"
    has_token = bool(env.get("ACTIONS_ID_TOKEN_REQUEST_URL"))

    if purpose == "sign":
        if key and not options.keyless:
            key_kind(key, where="signing key")
            return SigningMode(keyless=False, key=key, public_key=public)
        if options.keyless or has_token:
            if in_actions and not has_token:
                raise ConfigError(
                    "keyless signing in GitHub Actions needs an OIDC token: grant the job "
                    "`permissions: id-token: write`"
                )
            if not has_token and not env.get("SIGSTORE_ID_TOKEN"):
                raise ConfigError(
                    "keyless signing needs an OIDC token and there is none here: run it in "
                    "GitHub Actions with `id-token: write`, set SIGSTORE_ID_TOKEN to a token "
                    "for sigstore, or sign with a key (--key)"
                )
            provider = GITHUB_OIDC_PROVIDER if has_token else ""
            return SigningMode(keyless=True, issuer=issuer, oidc_provider=provider)
        raise ConfigError(NO_MODE)

    if (key or public) and not options.keyless:
        return SigningMode(keyless=False, public_key=public_key_for(key, public))
    identity = options.identity or sign.certificate_identity
    regexp = options.identity_regexp
    if identity and regexp:
        raise ConfigError("--identity and --identity-regexp exclude each other: pick one")
    if not identity and not regexp and env.get("GITHUB_REPOSITORY"):
        regexp = github_identity_regexp(
            env["GITHUB_REPOSITORY"], sign.release_workflow, sign.release_refs
        )
    if options.keyless or identity or regexp or has_token:
        if not identity and not regexp:
            raise ConfigError(
                "keyless verification needs the signer's identity: pass --identity "
                "(e.g. https://github.com/OWNER/REPO/.github/workflows/release.yml@refs/heads/main) "
                "or --identity-regexp, or set [tool.buildtasks.sign] certificate-identity"
            )
        return SigningMode(keyless=True, identity=identity, identity_regexp=regexp, issuer=issuer)
    raise ConfigError(
        "nothing to verify with: pass --public-key (or --key), set [tool.buildtasks.sign] "
        "public-key / BUILDTASKS_COSIGN_PUBLIC_KEY, or verify a keyless signature with "
        "--identity and --issuer"
    )


def tlog_decision(
    ref: str, requested: bool | None, *, keyless: bool, lab_registry: str
) -> tuple[bool, str]:
    """Whether to use the transparency log for `ref`, and why not when it is skipped."""
    if keyless:
        if requested is False:
            raise ConfigError(
                "keyless signatures need the transparency log: drop --no-tlog, or sign with a key"
            )
        return True, ""
    if requested is not None:
        return requested, "" if requested else "--no-tlog was given"
    if is_local_registry(ref, lab_registry=lab_registry):
        return False, f"{registry_of(ref)} is a private (lab/loopback) registry"
    return True, ""


def tlog_note(action: str, ref: str, mode: SigningMode, reason: str) -> str:
    """The line that says a command skips the transparency log, and what that means."""
    head = f"note: {action} {ref} with {mode.description} skips the transparency log (Rekor) because {reason}"
    if action == "verifying":
        return f"{head}: --insecure-ignore-tlog checks the signature, not a public record of it"
    return f"{head}: nothing public records it, and verifiers must pass --insecure-ignore-tlog"


def version_notes(version: CosignVersion, *, tlog: bool, purpose: str) -> tuple[str, ...]:
    """Known trouble with this cosign version for what is about to run."""
    affected = version.exact and version.at_least(3) and not version.at_least(3, 0, 4)
    if purpose == "verify" and not tlog and affected:
        return (
            f"note: cosign {version} wants a TUF trusted root even to verify offline with a key "
            "(fixed in 3.0.4); upgrade cosign if verification fails fetching TUF metadata",
        )
    return ()
