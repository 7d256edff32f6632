"""The release chain: build → (image tests ∥ Dockerfile check → push by digest → scan → SBOM)
→ sign → attest → verify → tags.

With `from_dir` (CI's merge job) the build is replaced by the merge of the per-platform digests
that the build jobs pushed: the index is created untagged and the same gates run on it, the
image tests included (they pull the index by digest and run this machine's platform).

One digest flows through the whole chain. The image tests run while the image is pushed
untagged, by digest, and scanned: the scan reads exactly those registry bytes (every
platform) once, and the SBOMs are converted from that scan's package list, so they describe
the same bytes. Each of the two branches prints its lines under a prefix
(`[backend tests]`, `[backend scan]`) and keeps its own step times; the chain waits for both
and fails naming the step that failed (the first, counting the others). Then that digest is
signed, attested and verified. Tags are applied last, in the registry, and only
once every gate of every selected image has passed: a failing gate leaves an untagged digest
(for retention to remove) and no tag, signature or attestation anywhere. With `--no-push`
(pull requests) the gates read the engine's image and nothing leaves the machine.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import datetime
from functools import partial
from pathlib import Path

from buildtasks import record, timing
from buildtasks.build import (
    BuildOptions,
    BuildOutcome,
    build_image,
    explicit_tags,
    image_names,
    publish_build,
)
from buildtasks.config import Config, ImageSpec
from buildtasks.errors import BuildtasksError, CommandFailed, ConfigError, GateFailed
from buildtasks.findings import severity_counts
from buildtasks.imagetests import image_test_command, pytest_counts
from buildtasks.merge import MergeOptions, merge_image
from buildtasks.parallel import first_failure, run_all
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
    signer_description,
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
    #: Release the per-platform digests recorded in this folder instead of building.
    from_dir: str = ""


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
    #: (step, seconds) in the order the steps ran.
    timings: list[tuple[str, float]] = field(default_factory=list)
    #: Vulnerability findings of the scan by severity.
    findings: dict[str, int] = field(default_factory=dict)
    gate: tuple[str, ...] = ()
    #: Who signed, as the verification found it.
    signer: str = ""
    #: The images the chain built before this one, key → digest, for this image's tests.
    others: dict[str, str] = field(default_factory=dict)


def _say(runner: Runner, image: ImageSpec, message: str) -> None:
    runner.say(f"==> {image.key}: {message}")


@contextmanager
def _step(
    record_in: Stage | Branch, image: ImageSpec, runner: Runner, name: str, message: str = ""
) -> Iterator[None]:
    """Announce one step of an image's chain and record how long it took (even when it fails)."""
    _say(runner, image, message or name)
    with timing.step(record_in.timings, name):
        yield


def gates(
    config: Config,
    image: ImageSpec,
    runner: Runner,
    options: ReleaseOptions,
    *,
    env: Mapping[str, str],
    now: datetime,
    started: list[Stage] | None = None,
    built: BuildOutcome | None = None,
) -> Stage:
    """Build once, then run the image tests, the scans and the SBOM against that digest.

    `built` is the image's build when the chain built every image at once (one bake). The
    stage is appended to `started` as soon as it exists, so a failure later on can say
    what this image left behind.
    """
    stage = Stage(image, _placeholder(image))
    if started:
        # What the chain built before: the web image's tests run against a real gateway.
        stage.others = {
            s.image.key: s.build.ref if options.from_dir else s.build.digest
            for s in started
            if s.build.digest
        }
    if options.from_dir:
        with _step(stage, stage.image, runner, "merge", "merge the platform digests, untagged"):
            outcome = merge_image(
                config,
                image,
                runner,
                MergeOptions(from_dir=options.from_dir, untagged=True),
                env=env,
                now=now,
            )
        stage.steps.append(f"merged {', '.join(outcome.platforms)} into {outcome.ref}")
    elif built is not None:
        outcome = built
        bake_time = sum(t for n, t in built.timings if n.startswith("buildx bake"))
        stage.timings.append(("build (one bake, every image)", bake_time))
        stage.steps.append(f"built {outcome.digest} (one bake with the other images)")
    else:
        with _step(stage, stage.image, runner, "build"):
            outcome = build_image(
                config, image, _load_only(options.build), runner, env=env, now=now
            )
        stage.steps.append(f"built {outcome.digest}")
    stage.build = outcome
    if started is not None:
        started.append(stage)
    if options.push and not options.from_dir:
        require_real_bases(
            image.key,
            "release",
            outcome.stand_ins,
            outcome.tags,
            lab_registry=config.lab.registry,
            allow=options.build.allow_stand_ins,
        )
    # The image tests and the scan branch (Dockerfile, push, scan, SBOM) need nothing of
    # each other: they run at once, each with its log lines prefixed and its own timings.
    branches = []
    if options.test and image.tests:
        branches.append(("tests", _test_branch))
    branches.append(("scan", _scan_branch))
    parallel = len(branches) > 1
    started_at = time.monotonic()
    done: list[Branch] = []
    calls = []
    for name, branch in branches:
        sub = runner.derive(prefix=f"[{image.key} {name}] ") if parallel else runner
        part = Branch(name)
        done.append(part)
        calls.append(partial(_run_branch, branch, part, config, stage, sub, options, env))
    _, errors = run_all(calls)
    if parallel:
        stage.timings.append(("gates, at once", time.monotonic() - started_at))
    for part in sorted(done, key=lambda b: BRANCH_ORDER.index(b.name)):
        inside = timing.INSIDE if parallel else ""
        stage.timings += [(f"{inside}{name}", seconds) for name, seconds in part.timings]
        stage.steps += part.steps
    if errors:
        raise first_failure(errors)
    return stage


#: The order the branches' steps and timings are reported in, whichever ends first.
BRANCH_ORDER = ("tests", "scan")


@dataclass
class Branch:
    """What one branch of the gates did: its steps and timings, merged into the stage after."""

    name: str
    steps: list[str] = field(default_factory=list)
    timings: list[tuple[str, float]] = field(default_factory=list)


def _run_branch(
    branch: Callable[..., None],
    part: Branch,
    config: Config,
    stage: Stage,
    runner: Runner,
    options: ReleaseOptions,
    env: Mapping[str, str],
) -> None:
    try:
        branch(part, config, stage, runner, options, env)
    except BuildtasksError as exc:
        if runner.prefix:
            runner.say(f"failed: {exc}")
        raise


def _test_branch(
    part: Branch,
    config: Config,
    stage: Stage,
    runner: Runner,
    options: ReleaseOptions,
    env: Mapping[str, str],
) -> None:
    """Run the image tests on the built image (the engine's) or the merged index (by digest)."""
    image, outcome = stage.image, stage.build
    # The merged index is in the registry only; a build is in the engine's store.
    target = outcome.ref if options.from_dir else outcome.digest
    command = image_test_command(image, target, root=config.root, others=stage.others)
    with _step(part, image, runner, "image tests", f"image tests on {target}"):
        try:
            result = runner.run(command)
        except CommandFailed:
            raise GateFailed(f"image tests failed for {image.key} ({target})") from None
    counts = pytest_counts(result.stderr)
    part.steps.append(f"image tests passed ({counts})" if counts else "image tests passed")


def _scan_branch(
    part: Branch,
    config: Config,
    stage: Stage,
    runner: Runner,
    options: ReleaseOptions,
    env: Mapping[str, str],
) -> None:
    """Check the Dockerfile, push by digest, then scan once and convert the SBOMs from the scan."""
    image, outcome = stage.image, stage.build
    local = replace(options.scan, local=not options.push)
    with _step(part, image, runner, "scan Dockerfile"):
        scan_dockerfile(config, image, runner, options=local)
    target = outcome.ref if options.from_dir else outcome.digest
    if options.push and not options.from_dir:
        with _step(part, image, runner, "push", "push by digest, untagged"):
            outcome = stage.build = publish_build(config, outcome, runner, tag=False)
        target = outcome.ref
        part.steps.append(f"pushed untagged {target}")
    with _step(part, image, runner, "scan"):
        result = scan_image(
            config,
            image,
            target,
            runner,
            options=local,
            env=env,
            platforms_built=outcome.platforms,
            inventory=True,
        )
    stage.scan_report = result.json_path
    stage.gate = tuple(result.severity)
    stage.findings = severity_counts(f for f in result.findings if f.kind == "vulnerability")
    part.steps.append(f"scan gate passed at {','.join(result.severity)}")
    with _step(part, image, runner, "SBOM", "SBOM, converted from the scan"):
        sboms = write_sbom(
            config,
            image,
            target,
            runner,
            local=local.local,
            inventory=result.inventory,
        )
    stage.sboms = sboms.of_format("cyclonedx")
    part.steps.append("SBOM written")


def _placeholder(image: ImageSpec) -> BuildOutcome:
    """What a stage holds until its build or merge finishes (a failure there leaves nothing)."""
    return BuildOutcome(image, "", (), Path(), (), False, False)


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
    stage.ref = stage.build.ref
    with _step(stage, stage.image, runner, "sign", f"sign {stage.ref}"):
        sign_image(config, stage.ref, runner, env=env, options=options.sign)
    with _step(stage, stage.image, runner, "attest", "attest SBOM and vulnerability report"):
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
    with _step(stage, stage.image, runner, "verify"):
        verified = verify_image(
            config, stage.ref, runner, env=env, options=options.sign, attestations=kinds
        )
    stage.signer = signer_description(verified)
    stage.steps += ["signed", "attested", f"verified signature and {', '.join(kinds)}"]
    with _step(stage, stage.image, runner, "tag", f"tag {len(stage.build.tags)} tag(s)"):
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
    if options.from_dir and not options.push:
        raise ConfigError(
            "--from releases digests that are already pushed; --no-push has nothing to do "
            "with them: drop one of the two"
        )
    if options.push and not runner.dry:
        # Everything publishing needs, before the first build: nothing is pushed when any
        # of it is missing (a registry login, a key that cannot be unlocked, no OIDC token).
        require_signing_ready(config, options.sign, runner, env=env)
        refs = [r for image in images for r in _target_refs(config, image, options.build)]
        require_ready((registry_of(r) for r in refs), env=env)
    stages: list[Stage] = []
    prebuilt: dict[str, BuildOutcome] = {}
    if len(images) > 1 and not options.from_dir:
        # Every image in one BuildKit solve, then each image's gates as before.
        from buildtasks.bake import build_all

        outcomes = build_all(config, images, _load_only(options.build), runner, env=env, now=now)
        prebuilt = {outcome.image.key: outcome for outcome in outcomes}
    for image in images:
        try:
            gates(
                config,
                image,
                runner,
                options,
                env=env,
                now=now,
                started=stages,
                built=prebuilt.get(image.key),
            )
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
    else:
        stages = [publish(config, stage, runner, options, env=env) for stage in stages]
    for stage in stages:
        if not runner.dry and stage.build.metadata_file.is_file():
            record.add_facts(
                stage.build.metadata_file, release_timings=timing.as_record(stage.timings)
            )
    return stages


def summary_of(stage: Stage, options: ReleaseOptions) -> str:
    """The `$GITHUB_STEP_SUMMARY` section of one image's release (or gates, with --no-push)."""
    from buildtasks.ci import Summary, summary_markdown

    built = stage.build
    return summary_markdown(
        Summary(
            image=stage.image.key,
            ref=built.ref if built.tags else built.digest,
            platforms=built.platforms,
            tags=built.tags,
            findings=stage.findings,
            gate=stage.gate,
            signer=stage.signer,
            timings=stage.timings,
            pushed=options.push,
        )
    )
