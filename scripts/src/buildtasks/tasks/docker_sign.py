"""`invoke docker.sign`, `docker.verify`, `docker.attest`: cosign, always by digest.

Thin adapters over `buildtasks.sign`: they pick the images, find each one's digest (the last
build's, or `--ref`), and print what was signed or verified.
"""

from __future__ import annotations

import os
from pathlib import Path

from invoke import task
from invoke.context import Context

from buildtasks.config import Config, ImageSpec
from buildtasks.errors import ConfigError
from buildtasks.record import digest_targets, refuse_stand_ins
from buildtasks.runner import Runner
from buildtasks.sign import (
    DEFAULT_ATTESTATIONS,
    SignOptions,
    attest_image,
    detect_cosign_version,
    file_describes,
    require_gate,
    sign_image,
    signer_description,
    summarize,
    verify_image,
)
from buildtasks.tasks.adapter import errors_to_exit, load_config, runner_for

_COMMON_HELP = {
    "image": "Configured image (default: every image in [tool.buildtasks.images])",
    "ref": "Image by digest, name@sha256:... (default: the last build's digest of --image)",
    "key": "Private key: a file, env://VAR, or a KMS URI such as awskms://... (default: "
    "[tool.buildtasks.sign] key or BUILDTASKS_COSIGN_KEY)",
    "keyless": "Sign keyless with the GitHub Actions OIDC token (needs `id-token: write`)",
    "no-tlog": "Skip the transparency log (Rekor); automatic for the lab/loopback registry",
}
_PUBLISH_HELP = {
    "scan-report": "Scan report whose gate must have passed for the digest (default: "
    ".buildtasks/<image>/trivy.json, written by docker.scan)",
    "allow-stand-ins": "Sign even though the image was built on the lab's stand-in bases "
    "for a registry other than the lab's",
}


@task(
    help={**_COMMON_HELP, **_PUBLISH_HELP},
)
@errors_to_exit
def sign(
    c: Context,
    image: str = "",
    ref: str = "",
    key: str = "",
    keyless: bool = False,
    no_tlog: bool = False,
    scan_report: str = "",
    allow_stand_ins: bool = False,
) -> None:
    """Sign images by digest with cosign, including each platform manifest of an index."""
    config = load_config(c)
    runner = runner_for(c)
    options = SignOptions(key=key, keyless=keyless, tlog=False if no_tlog else None)
    pairs = digest_targets(config, image, ref)
    _check_publishable(config, pairs, scan_report, allow_stand_ins, runner)
    version = detect_cosign_version(runner)
    for spec, target in pairs:
        signed = sign_image(
            config, target, runner, env=os.environ, options=options, version=version
        )
        if not runner.dry:
            print(
                f"{spec.key}: signed {target} ({signed.mode.description}, cosign {signed.version})"
            )


@task(
    optional=["attestations"],
    help={
        **_COMMON_HELP,
        "key": "Private key whose public half verifies: NAME.key → NAME.pub, a KMS URI as is",
        "public-key": "Public key: a file, env://VAR, URL or KMS URI (default: "
        "[tool.buildtasks.sign] public-key or BUILDTASKS_COSIGN_PUBLIC_KEY)",
        "keyless": "Verify a keyless signature: check the certificate identity and issuer",
        "no-tlog": "Do not require a transparency-log entry (for signatures made with --no-tlog)",
        "identity": "Keyless: exact certificate identity, e.g. "
        "https://github.com/OWNER/REPO/.github/workflows/release.yml@refs/heads/main",
        "identity-regexp": "Keyless: certificate identity regexp (default in GitHub Actions: "
        "the release workflow of $GITHUB_REPOSITORY on [tool.buildtasks.sign] release-refs)",
        "issuer": "Keyless: OIDC issuer (default: https://token.actions.githubusercontent.com)",
        "attestations": "Also verify attestations: bare flag = cyclonedx,vuln; or a list, "
        "e.g. --attestations=cyclonedx",
    },
)
@errors_to_exit
def verify(
    c: Context,
    image: str = "",
    ref: str = "",
    key: str = "",
    public_key: str = "",
    keyless: bool = False,
    no_tlog: bool = False,
    identity: str = "",
    identity_regexp: str = "",
    issuer: str = "",
    attestations: str = "",
) -> None:
    """Verify the cosign signature (and optionally attestations) of images by digest."""
    config = load_config(c)
    runner = runner_for(c)
    options = SignOptions(
        key=key,
        public_key=public_key,
        keyless=keyless,
        tlog=False if no_tlog else None,
        identity=identity,
        identity_regexp=identity_regexp,
        issuer=issuer,
    )
    if attestations is True:
        kinds: tuple[str, ...] = DEFAULT_ATTESTATIONS
    else:
        kinds = tuple(k.strip() for k in str(attestations or "").split(",") if k.strip())
    pairs = digest_targets(config, image, ref)
    version = detect_cosign_version(runner)
    for spec, target in pairs:
        verified = verify_image(
            config,
            target,
            runner,
            env=os.environ,
            options=options,
            attestations=kinds,
            version=version,
        )
        if runner.dry:
            continue
        count = len(verified.signatures)
        what = "signature" if count == 1 else f"{count} signatures"
        print(f"{spec.key}: verified {what} on {target} ({signer_description(verified)})")
        for kind, statements in verified.attestations.items():
            for statement in statements:
                print(f"  {summarize(kind, statement)}")


@task(
    help={
        **_COMMON_HELP,
        **_PUBLISH_HELP,
        "sbom": "CycloneDX JSON SBOM to attest (--type cyclonedx); default: "
        ".buildtasks/<image>/sbom.cdx.json",
        "vuln-report": "trivy JSON report to attest (--type vuln); default: "
        ".buildtasks/<image>/trivy.json",
    },
)
@errors_to_exit
def attest(
    c: Context,
    image: str = "",
    ref: str = "",
    key: str = "",
    keyless: bool = False,
    no_tlog: bool = False,
    sbom: str = "",
    vuln_report: str = "",
    scan_report: str = "",
    allow_stand_ins: bool = False,
) -> None:
    """Attest the SBOM and the vulnerability report to images by digest with cosign."""
    config = load_config(c)
    runner = runner_for(c)
    options = SignOptions(key=key, keyless=keyless, tlog=False if no_tlog else None)
    pairs = digest_targets(config, image, ref)
    _check_publishable(config, pairs, scan_report, allow_stand_ins, runner)
    version = detect_cosign_version(runner)
    for spec, target in pairs:
        out = config.artifacts_path(spec)
        sboms = (
            [Path(sbom)]
            if sbom
            else [
                p
                for p in _defaults(out, "sbom.cdx.json", "sbom.*.cdx.json")
                if _artifact(p, "cyclonedx", target, runner)
            ]
        )
        report_path = (
            Path(vuln_report)
            if vuln_report
            else _artifact(out / "trivy.json", "vuln", target, runner)
        )
        if not sboms and report_path is None:
            raise ConfigError(
                f"nothing to attest for {spec.key}: no SBOM or trivy report of {target} in "
                f"{out}; make them with `trivy image --format cyclonedx|json --output FILE "
                f"{target}` or pass --sbom / --vuln-report"
            )
        attested = attest_image(
            config,
            target,
            runner,
            env=os.environ,
            sboms=sboms,
            vuln_report=report_path,
            options=options,
            version=version,
        )
        if runner.dry:
            continue
        for kind, path in attested.predicates:
            print(f"{spec.key}: attested {kind} ({path}) to {target}")


def _defaults(out: Path, *patterns: str) -> list[Path]:
    return sorted({p for pattern in patterns for p in out.glob(pattern)})


def _artifact(default: Path, kind: str, ref: str, runner: Runner) -> Path | None:
    """`default` when it exists and describes `ref`; a file about another image is an error."""
    if not default.is_file():
        runner.say(f"note: {default} not found; not attesting {kind}")
        return None
    if not file_describes(default, kind, ref):
        raise ConfigError(
            f"{default} does not describe {ref}: regenerate it with "
            f"`uv run invoke docker.{'sbom' if kind == 'cyclonedx' else 'scan'} --ref {ref}`"
        )
    return default


def _check_publishable(
    config: Config,
    pairs: list[tuple[ImageSpec, str]],
    scan_report: str,
    allow_stand_ins: bool,
    runner: Runner,
) -> None:
    """No signature without a passed gate on that digest, nor on an image built on stand-ins."""
    if runner.dry:
        return
    for spec, target in pairs:
        require_gate(target, Path(scan_report) if scan_report else _report(config, spec))
        refuse_stand_ins(config, spec, target, allow=allow_stand_ins, action="sign")


def _report(config: Config, spec: ImageSpec) -> Path:
    return config.artifacts_path(spec) / "trivy.json"
