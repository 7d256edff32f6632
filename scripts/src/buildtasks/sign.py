"""Sign, attest and verify images by digest with cosign.

Two modes, picked by `resolve_mode` from what is configured:

* **key**: a private key from a file, `env://VAR` or a KMS URI (`awskms://`, `gcpkms://`,
  `azurekms://`, `hashivault://`, `k8s://`, `gitlab://`), passed to cosign unchanged. The
  public key for verification is configured separately, or derived: the same URI for a KMS
  key, `NAME.pub` next to `NAME.key` for a key file.
* **keyless**: in GitHub Actions with `permissions: id-token: write`, cosign gets a Fulcio
  certificate for the workflow's OIDC identity; verification then checks that identity
  (`--certificate-identity` or `--certificate-identity-regexp`) and its issuer.

Key-based signing can skip the transparency log (Rekor) for private or offline registries;
every command that does so is announced with a `note:` line, and verification then passes
`--insecure-ignore-tlog`.

cosign's flags moved between major versions, so plans take the installed version
(`CosignVersion`, read by `detect_cosign_version`):

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

The plan functions here are pure (argv tuples in, nothing read from the environment); the
service functions at the end run them through a `Runner`.
"""

from __future__ import annotations

import base64
import binascii
import difflib
import ipaddress
import json
import re
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from buildtasks.command import Command
from buildtasks.config import Config, SignConfig
from buildtasks.errors import (
    BuildtasksError,
    ConfigError,
    GateFailed,
    RegistryUnavailable,
    ToolNotFound,
)
from buildtasks.runner import Runner

COSIGN = "cosign"
GITHUB_OIDC_ISSUER = "https://token.actions.githubusercontent.com"
#: cosign's name for the GitHub Actions token source (`--oidc-provider`).
GITHUB_OIDC_PROVIDER = "github-actions"
#: Key URI schemes cosign resolves itself; the URI is passed through unchanged.
KMS_SCHEMES = ("awskms", "gcpkms", "azurekms", "hashivault", "k8s", "gitlab")
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
#: The in-toto predicate type URIs of the named types this module attests.
PREDICATE_URIS = {
    "cyclonedx": "https://cyclonedx.org/bom",
    "vuln": "https://cosign.sigstore.dev/attestation/vuln/v1",
}
#: The attestations `docker.attest` makes by default, in order.
DEFAULT_ATTESTATIONS = ("cyclonedx", "vuln")
TRIVY_URI = "pkg:github/aquasecurity/trivy"
TRIVY_DB_URI = "pkg:github/aquasecurity/trivy-db"

DIGEST_REF_RE = re.compile(r"^(?P<name>[^@\s]+)@(?P<digest>sha256:[0-9a-f]{64})$")
ENV_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
DOWN_RE = re.compile(r"connection refused|no such host|i/o timeout|dial tcp", re.I)
MISSING_RE = re.compile(r"MANIFEST_UNKNOWN|manifest unknown|NAME_UNKNOWN", re.I)
AUTH_RE = re.compile(r"unauthorized|authentication required|denied|forbidden", re.I)


class VerificationFailed(GateFailed):
    """cosign found no valid signature or attestation for the image and key/identity given."""


class ImageNotInRegistry(BuildtasksError):
    """The digest to sign or verify is not in the registry (built with --load, never pushed)."""


# --------------------------------------------------------------------------- references


def require_digest(ref: str) -> tuple[str, str]:
    """Split `name@sha256:<hex>` into (name, digest); a tag or short digest is a `ConfigError`."""
    match = DIGEST_REF_RE.match(ref.strip())
    if not match:
        raise ConfigError(
            f"cosign signs and verifies images by digest (name@sha256:<64 hex>), got {ref!r}: "
            "omit --ref to use the last build's digest, or resolve a tag with `crane digest REF`"
        )
    return match["name"], match["digest"]


def registry_host(ref: str) -> str:
    """The registry part of a reference (`docker.io` when it names none)."""
    first, _, rest = ref.partition("/")
    if rest and ("." in first or ":" in first or first == "localhost"):
        return first
    return "docker.io"


def is_private_registry(ref: str, *, lab_registry: str) -> bool:
    """True for the lab registry and loopback registries, where no public log makes sense."""
    host = registry_host(ref)
    if host == lab_registry:
        return True
    # "[::1]:5000" → "::1"; "127.0.0.1:5000" → "127.0.0.1"; "localhost" → "localhost"
    name = host[1 : host.find("]")] if host.startswith("[") else host.rsplit(":", 1)[0]
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


# --------------------------------------------------------------------------- cosign version


@dataclass(frozen=True, order=True)
class CosignVersion:
    """The installed cosign's version; `exact=False` when only the major version is known."""

    major: int
    minor: int = 0
    patch: int = 0
    exact: bool = field(default=True, compare=False)
    source: str = field(default="", compare=False)

    def __str__(self) -> str:
        return f"{self.major}.{self.minor}.{self.patch}" if self.exact else f"{self.major}.x"

    def at_least(self, major: int, minor: int = 0, patch: int = 0) -> bool:
        return (self.major, self.minor, self.patch) >= (major, minor, patch)

    @property
    def signing_config_by_default(self) -> bool:
        """v3 fetches Fulcio/Rekor URLs from a TUF signing config unless told not to."""
        return self.major >= 3

    def supports_bundle_flag(self, subcommand: str) -> bool:
        """Whether `cosign <subcommand>` accepts `--new-bundle-format`."""
        if subcommand in ("attest", "verify-attestation"):
            return self.at_least(2, 5)
        return self.at_least(2, 6)


#: What to assume when the version cannot be read (a distribution's "devel" build).
ASSUMED_VERSION = CosignVersion(3, exact=False, source="assumed")

_GIT_VERSION_RE = re.compile(
    r"""(?:GitVersion:|"gitVersion"\s*:)\s*"?v?(\d+)\.(\d+)\.(\d+)""", re.IGNORECASE
)
_BUILDINFO_PATH_RE = re.compile(rb"path\tgithub\.com/sigstore/cosign(?:/v(\d+))?/cmd/cosign\n")
_BUILDINFO_MOD_RE = re.compile(
    rb"mod\tgithub\.com/sigstore/cosign(?:/v\d+)?\tv(\d+)\.(\d+)\.(\d+)[^\t\n]*\t"
)


def parse_cosign_version(text: str) -> CosignVersion | None:
    """Read `GitVersion` from `cosign version` (text or `--json`); None for "devel" builds."""
    match = _GIT_VERSION_RE.search(text)
    if not match:
        return None
    major, minor, patch = (int(g) for g in match.groups())
    return CosignVersion(major, minor, patch, source="cosign version")


def cosign_version_from_binary(blob: bytes) -> CosignVersion | None:
    """Read the version from the Go build info embedded in a cosign executable.

    Distribution builds report `GitVersion: devel`, but the main module path still carries the
    major version (`github.com/sigstore/cosign/v3/cmd/cosign`), and `go install` builds also
    record the module version.
    """
    mod = _BUILDINFO_MOD_RE.search(blob)
    if mod:
        major, minor, patch = (int(g) for g in mod.groups())
        return CosignVersion(major, minor, patch, source="go build info")
    path = _BUILDINFO_PATH_RE.search(blob)
    if path:
        major = int(path.group(1) or 1)
        return CosignVersion(major, exact=False, source="go module path")
    return None


def version_command() -> Command:
    return Command((COSIGN, "version"))


# --------------------------------------------------------------------------- modes


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
    if scheme in ("http", "https") and where.endswith("public key"):
        return "url"
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


def github_identity_regexp(repository: str) -> str:
    """Match the certificate identity of any workflow of `owner/repo` (GitHub's OIDC `sub`)."""
    return rf"^https://github\.com/{re.escape(repository)}/\.github/workflows/"


_NO_MODE = (
    "no signing key and no OIDC token: set a key with --key, [tool.buildtasks.sign] key or "
    "BUILDTASKS_COSIGN_KEY (a file, env://VAR or a KMS URI such as awskms://...), or sign "
    "keyless in GitHub Actions with `permissions: id-token: write` (--keyless)"
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
            provider = GITHUB_OIDC_PROVIDER if has_token else ""
            return SigningMode(keyless=True, issuer=issuer, oidc_provider=provider)
        raise ConfigError(_NO_MODE)

    if (key or public) and not options.keyless:
        return SigningMode(keyless=False, public_key=public_key_for(key, public))
    identity = options.identity or sign.certificate_identity
    regexp = options.identity_regexp
    if identity and regexp:
        raise ConfigError("--identity and --identity-regexp exclude each other: pick one")
    if not identity and not regexp and env.get("GITHUB_REPOSITORY"):
        regexp = github_identity_regexp(env["GITHUB_REPOSITORY"])
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
    if is_private_registry(ref, lab_registry=lab_registry):
        return False, f"{registry_host(ref)} is a private (lab/loopback) registry"
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


# --------------------------------------------------------------------------- plans


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
        raise ConfigError(_NO_MODE)
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


_PASSWORD_HINT = "set COSIGN_PASSWORD to the key's password (empty for a key without one)"


def _sign_hint(mode: SigningMode) -> str:
    if mode.keyless:
        return "keyless signing needs GitHub Actions with `permissions: id-token: write`"
    return _PASSWORD_HINT if key_kind(mode.key, where="signing key") != "kms" else ""


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


# --------------------------------------------------------------------------- outputs


def parse_signatures(stdout: str) -> tuple[dict[str, Any], ...]:
    """The payloads `cosign verify` printed (a JSON array, or one JSON document per line)."""
    payloads: list[dict[str, Any]] = []
    for line in stdout.splitlines():
        line = line.strip()
        if not line.startswith(("[", "{")):
            continue
        doc = json.loads(line)
        payloads += doc if isinstance(doc, list) else [doc]
    return tuple(payloads)


def parse_attestations(stdout: str) -> tuple[dict[str, Any], ...]:
    """Decode the in-toto statements from the DSSE envelopes `cosign verify-attestation` printed."""
    statements = []
    for line in stdout.splitlines():
        line = line.strip()
        if not line.startswith("{"):
            continue
        envelope = json.loads(line)
        try:
            statements.append(json.loads(base64.b64decode(envelope["payload"])))
        except (KeyError, binascii.Error, ValueError) as exc:
            raise BuildtasksError(
                f"cosign printed an attestation that is not DSSE JSON: {exc}"
            ) from None
    return tuple(statements)


def signed_digests(payloads: Sequence[Mapping[str, Any]]) -> set[str]:
    """The manifest digests the verified signature payloads claim."""
    digests = set()
    for payload in payloads:
        image = payload.get("critical", {}).get("image", {})
        if isinstance(image, Mapping) and image.get("docker-manifest-digest"):
            digests.add(str(image["docker-manifest-digest"]))
    return digests


def statement_digests(statement: Mapping[str, Any]) -> set[str]:
    """The `sha256:` digests an in-toto statement's subjects name."""
    return {
        f"sha256:{s['digest']['sha256']}"
        for s in statement.get("subject", [])
        if isinstance(s, Mapping)
        and isinstance(s.get("digest"), Mapping)
        and "sha256" in s["digest"]
    }


def cosign_reason(stderr: str) -> str:
    """cosign's own explanation of a failure, on one line."""
    lines = [line.strip() for line in stderr.splitlines() if line.strip()]
    for line in lines:
        if line.startswith("Error: "):
            return line[len("Error: ") :]
    meaningful = [line for line in lines if not line.startswith(("WARNING", "Flag --"))]
    return (meaningful or lines or ["no output"])[-1]


def summarize(kind: str, statement: Mapping[str, Any]) -> str:
    """One line saying what a verified attestation contains."""
    predicate = statement.get("predicate", {})
    if kind == "cyclonedx":
        components = predicate.get("components", [])
        return f"{kind}: SBOM with {len(components)} components"
    if kind == "vuln":
        scanner = predicate.get("scanner", {})
        result = scanner.get("result", {}) or {}
        count = sum(len(r.get("Vulnerabilities") or []) for r in result.get("Results", []) or [])
        return f"{kind}: {count} vulnerabilities found by trivy {scanner.get('version', '?')}"
    return f"{kind}: {statement.get('predicateType', '?')}"


# --------------------------------------------------------------------------- vuln predicate


def _load_report(report: str | bytes | Mapping[str, Any]) -> Mapping[str, Any]:
    if isinstance(report, Mapping):
        data: Any = report
    else:
        try:
            data = json.loads(report)
        except json.JSONDecodeError as exc:
            raise ConfigError(
                f"the trivy report is not JSON ({exc}): run trivy with --format json"
            ) from None
    if not isinstance(data, Mapping) or "SchemaVersion" not in data or "ArtifactName" not in data:
        raise ConfigError(
            "not a trivy JSON report: run `trivy image --format json --output FILE REF`"
        )
    return data


RFC3339_RE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)$")


def _rfc3339(value: str | datetime) -> str:
    """An RFC 3339 timestamp, as Go's time.Time (and so cosign) parses it."""
    if isinstance(value, datetime):
        if value.tzinfo is None:
            raise ValueError("timestamps must be timezone-aware")
        return value.astimezone(UTC).isoformat().replace("+00:00", "Z")
    if not RFC3339_RE.match(value):
        raise ConfigError(f"scan time {value!r} is not an RFC 3339 timestamp")
    return value


def db_version(db_meta: Mapping[str, Any] | None) -> str:
    """trivy-db's version as `v<schema>-<YYYYMMDDHH of UpdatedAt>`, e.g. `v2-2026010203`."""
    if not db_meta:
        return ""
    schema = db_meta.get("Version", "")
    updated = str(db_meta.get("UpdatedAt", ""))
    try:
        moment = datetime.fromisoformat(updated.replace("Z", "+00:00")[:19])
        stamp = moment.strftime("%Y%m%d%H")
    except ValueError:
        stamp = updated
    return f"v{schema}-{stamp}" if stamp else f"v{schema}"


def report_digests(report: Mapping[str, Any]) -> set[str]:
    """The image digests a trivy JSON report says it scanned."""
    names = [str(report.get("ArtifactName", ""))]
    metadata = report.get("Metadata", {}) or {}
    names += [str(d) for d in metadata.get("RepoDigests", []) or []]
    return {n.rsplit("@", 1)[1] for n in names if "@sha256:" in n}


def sbom_digests(sbom: Mapping[str, Any]) -> set[str]:
    """The image digests a CycloneDX SBOM made by trivy says it describes."""
    component = (sbom.get("metadata", {}) or {}).get("component", {}) or {}
    names = [str(component.get("name", ""))]
    names += [
        str(p.get("value", ""))
        for p in component.get("properties", []) or []
        if p.get("name") == "aquasecurity:trivy:RepoDigest"
    ]
    return {n.rsplit("@", 1)[1] for n in names if "@sha256:" in n}


def invocation_from_env(env: Mapping[str, str], parameters: Sequence[str] = ()) -> dict[str, Any]:
    """The predicate's `invocation`: the GitHub Actions run when there is one."""
    run_id = env.get("GITHUB_RUN_ID", "")
    uri = ""
    if run_id and env.get("GITHUB_REPOSITORY"):
        server = env.get("GITHUB_SERVER_URL", "https://github.com")
        uri = f"{server}/{env['GITHUB_REPOSITORY']}/actions/runs/{run_id}"
    return {
        "parameters": list(parameters),
        "uri": uri,
        "event_id": run_id,
        "builder.id": "GitHub Actions" if env.get("GITHUB_ACTIONS") == "true" else "",
    }


def vuln_predicate(
    trivy_report_json: str | bytes | Mapping[str, Any],
    *,
    scanner_version: str | None,
    db_meta: Mapping[str, Any] | None,
    invocation: Mapping[str, Any] | None = None,
    started: str | datetime | None = None,
    finished: str | datetime | None = None,
    db_uri: str = TRIVY_DB_URI,
) -> dict[str, Any]:
    """Wrap a trivy JSON report in cosign's `vuln` predicate (CosignVulnPredicate).

    The shape is cosign's Go struct: `invocation` {parameters, uri, event_id, builder.id},
    `scanner` {uri, version, db {uri, version}, result}, `metadata` {scanStartedOn,
    scanFinishedOn} — both timestamps RFC 3339, which cosign parses. `scanner_version` None
    takes the version the report records (`Trivy.Version`); the scan times default to the
    report's `CreatedAt`. `db_meta` is trivy's `VulnerabilityDB` metadata (`trivy version
    --format json`) or None when unknown.
    """
    report = _load_report(trivy_report_json)
    version = scanner_version or str((report.get("Trivy") or {}).get("Version", ""))
    if not version:
        raise ConfigError("the trivy report does not say which trivy made it: pass scanner_version")
    created = report.get("CreatedAt")
    start = started if started is not None else created
    end = finished if finished is not None else (created if started is None else start)
    if not start or not end:
        raise ConfigError(
            "the trivy report has no CreatedAt (trivy < 0.48): pass the scan's start and end times"
        )
    return {
        "invocation": dict(invocation) if invocation is not None else invocation_from_env({}),
        "scanner": {
            "uri": f"{TRIVY_URI}@{version}",
            "version": version,
            "db": {"uri": db_uri if db_meta else "", "version": db_version(db_meta)},
            "result": dict(report),
        },
        "metadata": {"scanStartedOn": _rfc3339(start), "scanFinishedOn": _rfc3339(end)},
    }


# --------------------------------------------------------------------------- services


def detect_cosign_version(runner: Runner) -> CosignVersion:
    """Ask the installed cosign its version; fall back to its Go build info, then to v3."""
    try:
        text = runner.output(version_command(), timeout=30)
    except ToolNotFound:
        if runner.dry:
            return ASSUMED_VERSION
        raise
    except BuildtasksError:
        text = ""
    version = parse_cosign_version(text)
    if version:
        return version
    try:
        version = cosign_version_from_binary(Path(runner.resolve(COSIGN)).read_bytes())
    except (OSError, ToolNotFound):
        version = None
    if version:
        return version
    runner.say("note: could not tell which cosign is installed; using cosign v3 flags")
    return ASSUMED_VERSION


@dataclass(frozen=True)
class Signed:
    """What `sign_image` did: which digest, how, and whether the log recorded it."""

    ref: str
    mode: SigningMode
    tlog: bool
    version: CosignVersion
    recursive: bool


@dataclass(frozen=True)
class Verified:
    """What `verify_image` checked: the signature payloads and the attestations by type."""

    ref: str
    mode: SigningMode
    tlog: bool
    signatures: tuple[dict[str, Any], ...]
    attestations: Mapping[str, tuple[dict[str, Any], ...]] = field(default_factory=dict)


@dataclass(frozen=True)
class Attested:
    """What `attest_image` signed: the predicate file of each attestation type."""

    ref: str
    mode: SigningMode
    tlog: bool
    #: Attestation type → the predicate file that was signed.
    predicates: Mapping[str, Path]


def _check_key_material(
    mode: SigningMode, env: Mapping[str, str], *, interactive: bool, signing: bool
) -> None:
    ref = mode.key if signing else mode.public_key
    what = "signing key" if signing else "public key"
    kind = key_kind(ref, where=what)
    if kind == "env" and ref[len("env://") :] not in env:
        raise ConfigError(f"{what} {ref}: the variable {ref[len('env://') :]} is not set")
    if kind == "file" and not Path(ref).expanduser().is_file():
        fix = "generate one with `cosign generate-key-pair`" if signing else "pass --public-key"
        raise ConfigError(f"{what} file {ref} not found: {fix}")
    if signing and kind in ("file", "env") and "COSIGN_PASSWORD" not in env and not interactive:
        raise ConfigError(f"cosign needs the password of {ref}: {_PASSWORD_HINT}")


def _failure(ref: str, command: Command, stderr: str, *, action: str) -> BuildtasksError:
    reason = cosign_reason(stderr)
    host = registry_host(ref)
    if DOWN_RE.search(stderr):
        fix = (
            "start it with `uv run invoke lab.up`"
            if host.startswith(("127.", "localhost"))
            else "check the address and network"
        )
        return RegistryUnavailable(f"registry {host} is unreachable: {fix}")
    if AUTH_RE.search(stderr) and "signature" not in reason:
        return RegistryUnavailable(
            f"not allowed to {action} {ref}: log in with `docker login {host}` ({reason})"
        )
    if MISSING_RE.search(stderr):
        return ImageNotInRegistry(
            f"{ref} is not in the registry: push it first (`uv run invoke docker.push`) ({reason})"
        )
    return BuildtasksError(
        f"cosign could not {action} {ref}: {reason}" + (f"; {command.hint}" if command.hint else "")
    )


def _run(runner: Runner, command: Command, ref: str, *, action: str) -> str:
    result = runner.run(command, capture=True, check=False)
    if not result.ok:
        raise _failure(ref, command, result.stderr, action=action)
    return result.stdout


def _prepare(
    config: Config,
    ref: str,
    runner: Runner,
    *,
    env: Mapping[str, str],
    options: SignOptions,
    purpose: str,
    action: str,
    version: CosignVersion | None,
    interactive: bool | None,
) -> tuple[SigningMode, bool, CosignVersion]:
    require_digest(ref)
    mode = resolve_mode(config.sign, options, env, purpose=purpose)
    tlog, reason = tlog_decision(
        ref, options.tlog, keyless=mode.keyless, lab_registry=config.lab.registry
    )
    if not mode.keyless:
        tty = sys.stdin.isatty() if interactive is None else interactive
        _check_key_material(mode, env, interactive=tty, signing=purpose == "sign")
    version = version or detect_cosign_version(runner)
    if not tlog:
        runner.say(tlog_note(action, ref, mode, reason))
    for note in version_notes(version, tlog=tlog, purpose=purpose):
        runner.say(note)
    return mode, tlog, version


def sign_image(
    config: Config,
    ref: str,
    runner: Runner,
    *,
    env: Mapping[str, str],
    options: SignOptions | None = None,
    recursive: bool = True,
    version: CosignVersion | None = None,
    interactive: bool | None = None,
) -> Signed:
    """Sign `ref` (name@sha256:...) and, with `recursive`, every manifest of its index."""
    options = options or SignOptions()
    mode, tlog, version = _prepare(
        config,
        ref,
        runner,
        env=env,
        options=options,
        purpose="sign",
        action="signing",
        version=version,
        interactive=interactive,
    )
    command = sign_command(
        ref,
        mode,
        version,
        tlog=tlog,
        recursive=recursive,
        new_bundle_format=options.new_bundle_format,
    )
    _run(runner, command, ref, action="sign")
    return Signed(ref, mode, tlog, version, recursive)


def verify_image(
    config: Config,
    ref: str,
    runner: Runner,
    *,
    env: Mapping[str, str],
    options: SignOptions | None = None,
    attestations: Sequence[str] = (),
    version: CosignVersion | None = None,
) -> Verified:
    """Verify the signature on `ref` and, when asked, its attestations of the given types.

    Raises `VerificationFailed` (one line, cosign's reason) when a signature or attestation is
    missing or does not match the key/identity; returns the verified payloads otherwise.
    """
    options = options or SignOptions()
    kinds = tuple(predicate_type(k) for k in dict.fromkeys(attestations))
    mode, tlog, version = _prepare(
        config,
        ref,
        runner,
        env=env,
        options=options,
        purpose="verify",
        action="verifying",
        version=version,
        interactive=True,
    )
    _, digest = require_digest(ref)
    who = mode.description

    def check(command: Command, what: str) -> str:
        result = runner.run(command, capture=True, check=False)
        if result.ok or runner.dry:
            return result.stdout
        error = _failure(ref, command, result.stderr, action="verify")
        if isinstance(error, (RegistryUnavailable, ImageNotInRegistry)):
            raise error
        raise VerificationFailed(
            f"no valid {what} on {ref} for {who}: {cosign_reason(result.stderr)}"
        )

    out = check(
        verify_command(ref, mode, version, tlog=tlog, new_bundle_format=options.new_bundle_format),
        "signature",
    )
    signatures = parse_signatures(out)
    if not runner.dry and digest not in signed_digests(signatures):
        raise VerificationFailed(f"the signatures cosign accepted do not name {digest} ({ref})")
    found: dict[str, tuple[dict[str, Any], ...]] = {}
    for kind in kinds:
        out = check(
            verify_attestation_command(
                ref, kind, mode, version, tlog=tlog, new_bundle_format=options.new_bundle_format
            ),
            f"{kind} attestation",
        )
        statements = parse_attestations(out)
        if not runner.dry and not any(digest in statement_digests(s) for s in statements):
            raise VerificationFailed(f"no {kind} attestation on {ref} names {digest}")
        found[kind] = statements
    return Verified(ref, mode, tlog, signatures, found)


def _read_json(path: Path, what: str, fix: str) -> Mapping[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"no {what} at {path}: {fix}") from None
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{what} {path} is not JSON ({exc}): {fix}") from None
    if not isinstance(data, Mapping):
        raise ConfigError(f"{what} {path} is not a JSON object: {fix}")
    return data


def _same_image(ref: str, digests: set[str], what: str, path: Path, fix: str) -> None:
    _, digest = require_digest(ref)
    if digests and digest not in digests:
        raise ConfigError(
            f"{what} {path} describes {', '.join(sorted(digests))}, not {digest}: {fix}"
        )


def file_describes(path: Path, kind: str, ref: str) -> bool:
    """Whether an SBOM (`cyclonedx`) or trivy report (`vuln`) names `ref`'s digest, or none."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return False
    if not isinstance(data, Mapping):
        return False
    digests = sbom_digests(data) if kind == "cyclonedx" else report_digests(data)
    return not digests or require_digest(ref)[1] in digests


def trivy_db_meta(runner: Runner) -> Mapping[str, Any] | None:
    """trivy's `VulnerabilityDB` metadata (`trivy version --format json`), or None."""
    try:
        text = runner.output(Command(("trivy", "version", "--format", "json")), timeout=60)
        meta = json.loads(text).get("VulnerabilityDB")
    except (BuildtasksError, json.JSONDecodeError, AttributeError):
        return None
    return meta if isinstance(meta, Mapping) else None


def attest_image(
    config: Config,
    ref: str,
    runner: Runner,
    *,
    env: Mapping[str, str],
    sbom: Path | None = None,
    vuln_report: Path | None = None,
    options: SignOptions | None = None,
    version: CosignVersion | None = None,
    db_meta: Mapping[str, Any] | None = None,
    now: datetime | None = None,
    interactive: bool | None = None,
) -> Attested:
    """Attest a CycloneDX SBOM (`--type cyclonedx`) and/or a trivy report (`--type vuln`).

    Each file must describe `ref`'s digest when it names one. The vuln predicate is written
    next to the report as `<report>.vuln-predicate.json`, then signed.
    """
    options = options or SignOptions()
    if sbom is None and vuln_report is None:
        raise ConfigError(
            "nothing to attest: pass an SBOM (--sbom) and/or a trivy report (--vuln-report)"
        )
    predicates: dict[str, Path] = {}
    if sbom is not None:
        fix = f"regenerate it with `trivy image --format cyclonedx --output {sbom} {ref}`"
        data = _read_json(sbom, "CycloneDX SBOM", fix)
        if data.get("bomFormat") != "CycloneDX":
            raise ConfigError(f"{sbom} is not a CycloneDX JSON SBOM: {fix}")
        _same_image(ref, sbom_digests(data), "SBOM", sbom, fix)
        predicates["cyclonedx"] = sbom
    if vuln_report is not None:
        fix = f"rescan with `trivy image --format json --output {vuln_report} {ref}`"
        report = _load_report(_read_json(vuln_report, "trivy report", fix))
        _same_image(ref, report_digests(report), "trivy report", vuln_report, fix)
        meta = db_meta if db_meta is not None else trivy_db_meta(runner)
        stamp = now or datetime.now(UTC)
        predicate = vuln_predicate(
            report,
            scanner_version=None,
            db_meta=meta,
            invocation=invocation_from_env(env, ("--format", "json")),
            started=None if report.get("CreatedAt") else stamp,
        )
        out = vuln_report.with_name(vuln_report.stem + ".vuln-predicate.json")
        if not runner.dry:
            out.write_text(json.dumps(predicate, indent=2) + "\n", encoding="utf-8")
        predicates["vuln"] = out
    mode, tlog, version = _prepare(
        config,
        ref,
        runner,
        env=env,
        options=options,
        purpose="sign",
        action="attesting",
        version=version,
        interactive=interactive,
    )
    for kind, path in predicates.items():
        command = attest_command(
            ref, path, kind, mode, version, tlog=tlog, new_bundle_format=options.new_bundle_format
        )
        _run(runner, command, ref, action=f"attest ({kind})")
    return Attested(ref, mode, tlog, predicates)


@dataclass(frozen=True)
class KeyPair:
    """The files `generate_key_pair` wrote."""

    private: Path
    public: Path


def generate_key_pair(
    directory: Path, runner: Runner, *, password: str = "", prefix: str = "cosign"
) -> KeyPair:
    """Create `<prefix>.key`/`.pub` in `directory` (for the lab and tests; never overwrites)."""
    directory.mkdir(parents=True, exist_ok=True)
    pair = KeyPair(directory / f"{prefix}.key", directory / f"{prefix}.pub")
    for path in (pair.private, pair.public):
        if path.exists():
            raise ConfigError(f"{path} already exists: remove it or pick another directory")
    runner.run(
        generate_key_pair_command(directory, password=password, prefix=prefix), quiet=bool(password)
    )
    return pair
