"""`invoke docker.sign`, `docker.verify`, `docker.attest`: cosign, always by digest.

Thin adapters over `buildtasks.sign`: they pick the images, find each one's digest (the last
build's, or `--ref`), and print what was signed or verified.
"""

from __future__ import annotations

import os
from pathlib import Path

from invoke import task
from invoke.context import Context

from buildtasks.errors import ConfigError
from buildtasks.record import digest_targets
from buildtasks.runner import Runner
from buildtasks.sign import (
    DEFAULT_ATTESTATIONS,
    SignOptions,
    attest_image,
    detect_cosign_version,
    file_describes,
    sign_image,
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


@task(
    help=dict(_COMMON_HELP),
)
@errors_to_exit
def sign(
    c: Context,
    image: str = "",
    ref: str = "",
    key: str = "",
    keyless: bool = False,
    no_tlog: bool = False,
) -> None:
    """Sign images by digest with cosign, including each platform manifest of an index."""
    config = load_config(c)
    runner = runner_for(c)
    options = SignOptions(key=key, keyless=keyless, tlog=False if no_tlog else None)
    pairs = digest_targets(config, image, ref)
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
        "any workflow of $GITHUB_REPOSITORY)",
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
        print(f"{spec.key}: verified signature on {target} ({verified.mode.description})")
        for kind, statements in verified.attestations.items():
            for statement in statements:
                print(f"  {summarize(kind, statement)}")


@task(
    help={
        **_COMMON_HELP,
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
) -> None:
    """Attest the SBOM and the vulnerability report to images by digest with cosign."""
    config = load_config(c)
    runner = runner_for(c)
    options = SignOptions(key=key, keyless=keyless, tlog=False if no_tlog else None)
    pairs = digest_targets(config, image, ref)
    version = detect_cosign_version(runner)
    for spec, target in pairs:
        out = config.artifacts_path(spec)
        sbom_path = _artifact(sbom, out / "sbom.cdx.json", "cyclonedx", target, runner)
        report_path = _artifact(vuln_report, out / "trivy.json", "vuln", target, runner)
        if sbom_path is None and report_path is None:
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
            sbom=sbom_path,
            vuln_report=report_path,
            options=options,
            version=version,
        )
        if runner.dry:
            continue
        for kind, path in attested.predicates.items():
            print(f"{spec.key}: attested {kind} ({path}) to {target}")


def _artifact(given: str, default: Path, kind: str, ref: str, runner: Runner) -> Path | None:
    """The file the user named; else the default when it exists and describes `ref`."""
    if given:
        return Path(given)
    if not default.is_file():
        runner.say(f"note: {default} not found; not attesting {kind}")
        return None
    if not file_describes(default, kind, ref):
        runner.say(f"note: {default} describes another image than {ref}; not attesting {kind}")
        return None
    return default
