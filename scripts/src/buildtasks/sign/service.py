"""Sign, attest and verify through a `Runner`: the steps that run cosign (and trivy).

Each step resolves the mode and the transparency-log decision, checks the key material
before anything runs, announces what skips the log, runs the plans and turns cosign's errors
into one line naming the fix: a registry that refuses the login or does not answer
(`refs.registry_error`), an image that was never pushed (`ImageNotInRegistry`), or a
signature or attestation that does not verify (`VerificationFailed`).
"""

from __future__ import annotations

import json
import os
import re
import sys
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from buildtasks.command import Command
from buildtasks.config import Config
from buildtasks.errors import (
    BuildtasksError,
    ConfigError,
    GateFailed,
    NotFound,
    RegistryUnavailable,
)
from buildtasks.refs import AUTH_ERRORS, MISSING_ERRORS, registry_error, require_digest
from buildtasks.reports import gate_passed_for, stamp
from buildtasks.runner import Runner
from buildtasks.sign.modes import (
    PASSWORD_HINT,
    SigningMode,
    SignOptions,
    key_kind,
    resolve_mode,
    tlog_decision,
    tlog_note,
    version_notes,
)
from buildtasks.sign.plans import (
    attest_command,
    generate_key_pair_command,
    predicate_type,
    sign_command,
    verify_attestation_command,
    verify_command,
)
from buildtasks.sign.predicates import (
    cosign_cause,
    cosign_reason,
    invocation_from_env,
    is_signature,
    load_report,
    parse_attestations,
    parse_signatures,
    payload_type,
    report_digests,
    sbom_digests,
    signed_digests,
    signer_of,
    statement_digests,
    statement_matches,
    vuln_predicate,
)
from buildtasks.sign.version import CosignVersion, detect_cosign_version


class VerificationFailed(GateFailed):
    """cosign found no valid signature or attestation for the image and key/identity given."""


class ImageNotInRegistry(NotFound):
    """The digest to sign or verify is not in the registry (built with --load, never pushed)."""


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
    #: (attestation type, the predicate file that was signed), in the order they were signed.
    predicates: tuple[tuple[str, Path], ...]


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
        raise ConfigError(f"cosign needs the password of {ref}: {PASSWORD_HINT}")


def public_key_command(key: str) -> Command:
    """`cosign public-key --key K`: derives the public key, so it unlocks the private one."""
    return Command(("cosign", "public-key", "--key", key))


def require_signing_ready(
    config: Config,
    options: SignOptions,
    runner: Runner,
    *,
    env: Mapping[str, str],
    interactive: bool | None = None,
) -> SigningMode:
    """Check, before anything is pushed, that signing will work: mode, key, password, token.

    Key mode: the key exists, a password is at hand (or a terminal to type it), and cosign can
    unlock it (`cosign public-key`, offline for files and `env://`; a KMS key is asked for its
    public half, which checks access). Keyless: an OIDC token source exists (resolve_mode).
    """
    mode = resolve_mode(config.sign, options, env, purpose="sign")
    if mode.keyless:
        return mode
    tty = sys.stdin.isatty() if interactive is None else interactive
    _check_key_material(mode, env, interactive=tty, signing=True)
    if runner.dry or (
        tty and "COSIGN_PASSWORD" not in env and key_kind(mode.key, where="signing key") != "kms"
    ):
        return mode  # cosign will prompt for the password at signing time
    result = runner.run(public_key_command(mode.key), capture=True, check=False, quiet=True)
    if not result.ok:
        raise ConfigError(
            f"cannot unlock the signing key {mode.key} ({cosign_reason(result.stderr)}): "
            f"check COSIGN_PASSWORD and the key; nothing was built or pushed"
        )
    return mode


def _failure(ref: str, command: Command, stderr: str, *, action: str) -> BuildtasksError:
    """One line for a failed cosign run: the reference once, the cause, the fix, and where
    cosign's whole output was kept."""
    reason = f"{cosign_cause(cosign_reason(stderr), ref)}; cosign's output: {_keep_output(stderr)}"
    text = stderr
    if "signature" in reason:
        # cosign's verdict on a signature may use a registry's words for a refused login
        # ("... denied"): that is no login problem, so only an unreachable registry counts.
        text = AUTH_ERRORS.sub("", stderr)
    verb = action.split()[0]
    error = registry_error(ref, text, action=f"{verb} images in")
    if error is not None:
        return RegistryUnavailable(f"{error} (cosign: {reason})")
    if MISSING_ERRORS.search(stderr):
        return ImageNotInRegistry(
            f"{ref} is not in the registry: push it first (`uv run invoke docker.push`) ({reason})"
        )
    return BuildtasksError(
        f"cosign could not {action} {ref}: {reason}" + (f"; {command.hint}" if command.hint else "")
    )


def _keep_output(stderr: str) -> str:
    """Write cosign's whole error output to a file of its own; return its path."""
    handle, path = tempfile.mkstemp(prefix="buildtasks-cosign-", suffix=".log")
    with os.fdopen(handle, "w", encoding="utf-8") as out:
        out.write(stderr)
    return path


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
    digest = require_digest(ref).digest
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
    payloads = parse_signatures(out)
    signatures = tuple(p for p in payloads if is_signature(p))
    if not runner.dry:
        check_signatures(ref, digest, mode, payloads, signatures)
    found: dict[str, tuple[dict[str, Any], ...]] = {}
    for kind in kinds:
        out = check(
            verify_attestation_command(
                ref, kind, mode, version, tlog=tlog, new_bundle_format=options.new_bundle_format
            ),
            f"{kind} attestation",
        )
        statements = tuple(s for s in parse_attestations(out) if statement_matches(kind, s))
        if not runner.dry and not any(digest in statement_digests(s) for s in statements):
            raise VerificationFailed(f"no {kind} attestation on {ref} names {digest}")
        found[kind] = tuple(s for s in statements if digest in statement_digests(s))
    return Verified(ref, mode, tlog, signatures, found)


def check_signatures(
    ref: str,
    digest: str,
    mode: SigningMode,
    payloads: Sequence[Mapping[str, Any]],
    signatures: Sequence[Mapping[str, Any]],
) -> None:
    """Pass only on what cosign returned as a signature of `digest`, by the expected signer.

    cosign 3's `verify` also accepts attestation bundles; an image that was only attested
    has no signature, whatever cosign's exit code says.
    """
    who = mode.description
    if not signatures:
        others = sorted({payload_type(p) or "unknown" for p in payloads})
        seen = f" (it verified only attestations: {', '.join(others)})" if others else ""
        raise VerificationFailed(
            f"no signature on {ref} for {who}{seen}: sign it with `uv run invoke docker.sign`"
        )
    if digest not in signed_digests(signatures):
        raise VerificationFailed(f"the signatures cosign accepted do not name {digest} ({ref})")
    if mode.keyless and not any(_signed_by(mode, p) for p in signatures):
        signers = ", ".join(sorted({" / ".join(signer_of(p)) for p in signatures}))
        raise VerificationFailed(f"no signature on {ref} by {who}; signed by {signers}")


def _signed_by(mode: SigningMode, payload: Mapping[str, Any]) -> bool:
    """Whether a keyless payload's certificate names the identity and issuer asked for."""
    subject, issuer = signer_of(payload)
    if mode.issuer and issuer != mode.issuer:
        return False
    if mode.identity:
        return subject == mode.identity
    if mode.identity_regexp:
        return re.search(mode.identity_regexp, subject) is not None
    return bool(subject)


def signer_description(verified: Verified) -> str:
    """Who signed, as cosign's verified payloads say: the key, or the certificate's subject."""
    if not verified.mode.keyless:
        return verified.mode.description
    signers = sorted({signer_of(p) for p in verified.signatures if signer_of(p)[0]})
    if not signers:
        return verified.mode.description
    return "; ".join(f"keyless: {subject} (issuer {issuer})" for subject, issuer in signers)


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
    digest = require_digest(ref).digest
    if not digests:
        raise ConfigError(f"{what} {path} names no image digest, so it may describe any: {fix}")
    if digest not in digests:
        raise ConfigError(
            f"{what} {path} describes {', '.join(sorted(digests))}, not {digest}: {fix}"
        )


def file_describes(path: Path, kind: str, ref: str) -> bool:
    """Whether an SBOM (`cyclonedx`) or trivy report (`vuln`) names `ref`'s digest."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return False
    if not isinstance(data, Mapping):
        return False
    digests = sbom_digests(data) if kind == "cyclonedx" else report_digests(data)
    return require_digest(ref).digest in digests


def require_gate(ref: str, report_path: Path) -> None:
    """Refuse to sign or attest `ref` unless a scan report names its digest and passed its gate.

    The report is the one `docker.scan` (or the release chain) writes; signing vouches for
    the image, so it needs a gate, even when the tasks run one by one.
    """
    digest = require_digest(ref).digest
    fix = f"scan it first: `uv run invoke docker.scan --ref {ref}`"
    try:
        report = json.loads(report_path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"no scan report at {report_path} for {ref}: {fix}") from None
    except (OSError, json.JSONDecodeError) as exc:
        raise ConfigError(f"scan report {report_path} is unreadable ({exc}): {fix}") from None
    verdict = gate_passed_for(report, digest) if isinstance(report, Mapping) else None
    if verdict is None:
        raise ConfigError(f"the scan report {report_path} has no gate verdict on {digest}: {fix}")
    if not verdict:
        raise GateFailed(
            f"the scan gate failed for {digest} ({report_path}): fix the findings or accept "
            "them in .trivyignore / VEX, scan again, then sign"
        )


def _scan_db(report: Mapping[str, Any], runner: Runner) -> Mapping[str, Any] | None:
    """The DB the scan used, as it stamped it in the report; else what trivy has now."""
    used = stamp(report).get("VulnerabilityDB")
    if isinstance(used, Mapping):
        return used
    return trivy_db_meta(runner)


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
    sboms: Sequence[Path] = (),
    now: datetime | None = None,
    interactive: bool | None = None,
) -> Attested:
    """Attest CycloneDX SBOMs (`--type cyclonedx`) and/or a trivy report (`--type vuln`).

    Each file must name `ref`'s digest (a file that names none could describe any image).
    A multi-platform image has one SBOM per platform (`sboms`), each attested to the index.
    The vuln predicate is written next to the report as `<report>.vuln-predicate.json`, then
    signed.
    """
    options = options or SignOptions()
    every_sbom = ([sbom] if sbom is not None else []) + list(sboms)
    if not every_sbom and vuln_report is None:
        raise ConfigError(
            "nothing to attest: pass an SBOM (--sbom) and/or a trivy report (--vuln-report)"
        )
    predicates: list[tuple[str, Path]] = []
    for one in every_sbom:
        fix = f"regenerate it with `uv run invoke docker.sbom --ref {ref}`"
        data = _read_json(one, "CycloneDX SBOM", fix)
        if data.get("bomFormat") != "CycloneDX":
            raise ConfigError(f"{one} is not a CycloneDX JSON SBOM: {fix}")
        _same_image(ref, sbom_digests(data), "SBOM", one, fix)
        predicates.append(("cyclonedx", one))
    if vuln_report is not None:
        fix = f"rescan with `uv run invoke docker.scan --ref {ref}`"
        report = load_report(_read_json(vuln_report, "trivy report", fix))
        _same_image(ref, report_digests(report), "trivy report", vuln_report, fix)
        meta = db_meta if db_meta is not None else _scan_db(report, runner)
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
        predicates.append(("vuln", out))
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
    for kind, path in predicates:
        command = attest_command(
            ref, path, kind, mode, version, tlog=tlog, new_bundle_format=options.new_bundle_format
        )
        _run(runner, command, ref, action=f"attest ({kind})")
    return Attested(ref, mode, tlog, tuple(predicates))


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
