"""The release chain: build → image tests → push by digest → scan → SBOM → sign → attest →
verify → tags.

One digest flows through the whole chain. The image is pushed untagged, by digest, right after
its tests; the scan and the SBOM then read exactly those registry bytes (every platform), and
that digest is signed, attested and verified. Tags are applied last, in the registry, and only
once every gate of every selected image has passed: a failing gate leaves an untagged digest
(for retention to remove) and no tag, signature or attestation anywhere. With `--no-push`
(pull requests) the gates read the engine's image and nothing leaves the machine.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path

from buildtasks.build import (
    BuildOptions,
    BuildOutcome,
    build_image,
    explicit_tags,
    image_names,
    publish_build,
)
from buildtasks.config import Config, ImageSpec
from buildtasks.errors import CommandFailed, GateFailed
from buildtasks.imagetests import image_test_command
from buildtasks.record import require_real_bases
from buildtasks.refs import registry_of
from buildtasks.registry import require_ready
from buildtasks.runner import Runner
from buildtasks.sbom import write_sbom
from buildtasks.scan import ScanOptions, scan_dockerfile, scan_image
from buildtasks.sign import (
    SignOptions,
    attest_image,
    require_signing_ready,
    sign_image,
    verify_image,
)


@dataclass(frozen=True)
class ReleaseOptions:
    """What `docker.release` was asked to do."""

    build: BuildOptions = field(default_factory=BuildOptions)
    scan: ScanOptions = field(default_factory=ScanOptions)
    sign: SignOptions = field(default_factory=SignOptions)
    #: Stop after the gates (pull requests): nothing is pushed or signed.
    push: bool = True
    test: bool = True


@dataclass
class Stage:
    """What the gates of one image produced: the digest and the files to attest."""

    image: ImageSpec
    build: BuildOutcome
    scan_report: Path | None = None
    #: The CycloneDX SBOMs: one, or one per platform of a multi-platform image.
    sboms: tuple[Path, ...] = ()
    ref: str = ""
    steps: list[str] = field(default_factory=list)


def _say(runner: Runner, image: ImageSpec, message: str) -> None:
    runner.say(f"==> {image.key}: {message}")


def gates(
    config: Config,
    image: ImageSpec,
    runner: Runner,
    options: ReleaseOptions,
    *,
    env: Mapping[str, str],
    now: datetime,
    started: list[Stage] | None = None,
) -> Stage:
    """Build once, then run the image tests, the scans and the SBOM against that digest.

    The stage is appended to `started` as soon as it exists, so a failure later on can say
    what this image left behind.
    """
    _say(runner, image, "build")
    outcome = build_image(config, image, _load_only(options.build), runner, env=env, now=now)
    stage = Stage(image, outcome, steps=[f"built {outcome.digest}"])
    if started is not None:
        started.append(stage)
    if options.test and image.tests:
        _say(runner, image, f"image tests on {outcome.digest[:19]}")
        try:
            runner.run(image_test_command(image, outcome.digest, root=config.root))
        except CommandFailed:
            raise GateFailed(
                f"image tests failed for {image.key} ({outcome.digest[:19]})"
            ) from None
        stage.steps.append("image tests passed")
    target = outcome.digest
    if options.push:
        require_real_bases(
            image.key,
            "release",
            outcome.stand_ins,
            outcome.tags,
            lab_registry=config.lab.registry,
            allow=options.build.allow_stand_ins,
        )
        _say(runner, image, "push by digest, untagged")
        outcome = stage.build = publish_build(config, outcome, runner, tag=False)
        target = outcome.ref
        stage.steps.append(f"pushed untagged {target}")
    _say(runner, image, "scan")
    local = replace(options.scan, local=not options.push)
    scan_dockerfile(config, image, runner, options=local)
    result = scan_image(
        config,
        image,
        target,
        runner,
        options=local,
        env=env,
        platforms_built=outcome.platforms,
    )
    stage.scan_report = result.json_path
    stage.steps.append(f"scan gate passed at {','.join(result.severity)}")
    _say(runner, image, "SBOM")
    sboms = write_sbom(
        config,
        image,
        target,
        runner,
        local=local.local,
        cache_dir=local.cache_dir,
        offline=bool(local.offline),
        platforms_built=outcome.platforms,
    )
    stage.sboms = sboms.of_format("cyclonedx")
    stage.steps.append("SBOM written")
    return stage


def _target_refs(config: Config, image: ImageSpec, options: BuildOptions) -> tuple[str, ...]:
    """Where `image` will be pushed: its names, or the explicit tags on them."""
    names = image_names(config, image, options.name)
    return explicit_tags(names, options.tags) if options.tags else names


def _load_only(options: BuildOptions) -> BuildOptions:
    """The chain builds into the engine's store; pushing happens only after the gates."""
    return replace(options, push=False, load=True)


def publish(
    config: Config,
    stage: Stage,
    runner: Runner,
    options: ReleaseOptions,
    *,
    env: Mapping[str, str],
) -> Stage:
    """Sign, attest and verify the pushed digest, then point the tags at it."""
    image = stage.image
    stage.ref = stage.build.ref
    _say(runner, image, f"sign {stage.ref}")
    sign_image(config, stage.ref, runner, env=env, options=options.sign)
    _say(runner, image, "attest SBOM and vulnerability report")
    attest_image(
        config,
        stage.ref,
        runner,
        env=env,
        sboms=stage.sboms,
        vuln_report=stage.scan_report,
        options=options.sign,
    )
    kinds = [k for k, f in (("cyclonedx", stage.sboms), ("vuln", stage.scan_report)) if f]
    _say(runner, image, "verify")
    verify_image(config, stage.ref, runner, env=env, options=options.sign, attestations=kinds)
    stage.steps += ["signed", "attested", f"verified signature and {', '.join(kinds)}"]
    _say(runner, image, f"tag {len(stage.build.tags)} tag(s)")
    stage.build = publish_build(config, stage.build, runner, tag=True)
    stage.steps.append(f"tagged {', '.join(stage.build.tags)}")
    return stage


def release(
    config: Config,
    images: Sequence[ImageSpec],
    runner: Runner,
    options: ReleaseOptions,
    *,
    env: Mapping[str, str],
    now: datetime,
) -> list[Stage]:
    """Run the chain for `images`: all gates first, then publish each image."""
    if options.push and not runner.dry:
        # Everything publishing needs, before the first build: nothing is pushed when any
        # of it is missing (a registry login, a key that cannot be unlocked, no OIDC token).
        require_signing_ready(config, options.sign, runner, env=env)
        refs = [r for image in images for r in _target_refs(config, image, options.build)]
        require_ready((registry_of(r) for r in refs), env=env)
    stages: list[Stage] = []
    for image in images:
        try:
            gates(config, image, runner, options, env=env, now=now, started=stages)
        except GateFailed as exc:
            pushed = [s.build.ref for s in stages if s.build.pushed]
            left = (
                f"; left untagged for cleanup: {', '.join(pushed)}"
                if pushed
                else "; nothing was pushed"
            )
            raise GateFailed(f"{exc} — release stopped before tagging and signing{left}") from None
    if not options.push:
        runner.say("==> gates passed; --no-push: nothing pushed or signed")
        return stages
    return [publish(config, stage, runner, options, env=env) for stage in stages]
