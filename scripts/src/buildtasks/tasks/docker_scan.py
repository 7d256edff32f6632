"""`invoke docker.scan` and `docker.sbom`: Trivy against the images built last, by digest."""

from __future__ import annotations

import os
from dataclasses import replace

from invoke import task
from invoke.context import Context

from buildtasks.config import Config, ImageSpec
from buildtasks.errors import GateFailed
from buildtasks.record import digest_targets, platforms_of, unpushed_digest
from buildtasks.runner import Runner
from buildtasks.sbom import write_sbom
from buildtasks.scan import ScanOptions, display_path, scan_dockerfile, scan_image
from buildtasks.tasks.adapter import errors_to_exit, load_config, runner_for

_IMAGE_HELP = "Configured image (default: every image in [tool.buildtasks.images])"
_REF_HELP = "Image by digest, name@sha256:... (default: the digest of the last docker.build)"
_LOCAL_HELP = "Read the image from the engine's image store instead of the registry"
_CACHE_HELP = "Trivy cache directory (default: Trivy's own, or TRIVY_CACHE_DIR)"
_OFFLINE_HELP = "Use only what is cached: no DB download, no network lookups"


def _targets(
    config: Config, runner: Runner, image: str, ref: str, local: bool
) -> list[tuple[ImageSpec, str, bool]]:
    """(image, digest reference, read the engine's store) for each image the task reads.

    Without `--ref` or `--local`, an image whose last build was not pushed is read from the
    engine (where the build put it), so `docker.build docker.scan docker.sbom docker.push`
    works as one chain; a pushed one is read from the registry, by digest.
    """
    targets = []
    for spec, target in digest_targets(config, image, ref, allow_image_id=local):
        if not ref and not local and (engine := unpushed_digest(config, spec)):
            runner.say(
                f"note: the last build of {spec.key} is not pushed: reading the engine's image "
                f"{engine} (push it first to read the registry's bytes)"
            )
            targets.append((spec, engine, True))
        else:
            targets.append((spec, target, local))
    return targets


@task(
    iterable=["vex", "db_repository"],
    help={
        "image": _IMAGE_HELP,
        "ref": _REF_HELP,
        "severity": "Severities that fail the gate, e.g. CRITICAL,HIGH (default: [tool.buildtasks.scan] severity)",
        "ignore-unfixed": "Let vulnerabilities without a released fix pass the gate (they stay in the reports)",
        "ignorefile": "Trivy ignore file of accepted findings (default: the configured .trivyignore, if present)",
        "vex": "VEX document (file, or 'repo' / 'oci') whose not-affected statements drop findings (repeatable)",
        "db-repository": "Vulnerability DB mirror, tried in the order given (repeatable; default: the configured ones, then Trivy's)",
        "offline": _OFFLINE_HELP,
        "local": _LOCAL_HELP,
        "cache-dir": _CACHE_HELP,
        "dockerfile": "Also check the image's Dockerfile for misconfigurations (--no-dockerfile skips it)",
    },
)
@errors_to_exit
def scan(
    c: Context,
    image: str = "",
    ref: str = "",
    severity: str = "",
    ignore_unfixed: bool = False,
    ignorefile: str = "",
    vex: list[str] | None = None,
    db_repository: list[str] | None = None,
    offline: bool = False,
    local: bool = False,
    cache_dir: str = "",
    dockerfile: bool = True,
) -> None:
    """Scan images with Trivy; fail on findings at the gate's severities; write JSON and SARIF."""
    config = load_config(c)
    runner = runner_for(c)
    options = ScanOptions(
        severity=tuple(s for s in severity.split(",") if s.strip()) if severity else (),
        # Unset flags fall back to [tool.buildtasks.scan].
        ignore_unfixed=ignore_unfixed or None,
        ignorefile=ignorefile,
        vex=tuple(vex or ()),
        db_repositories=tuple(db_repository or ()),
        offline=offline or None,
        local=local,
        cache_dir=cache_dir,
    )
    failures = []
    for spec, target, engine in _targets(config, runner, image, ref, local):
        result = scan_image(
            config,
            spec,
            target,
            runner,
            options=replace(options, local=engine),
            env=os.environ,
            check=False,
            platforms_built=platforms_of(config, spec, target),
        )
        if not result.passed:
            failures.append(result)
        if dockerfile:
            config_result = scan_dockerfile(config, spec, runner, options=options, check=False)
            if not config_result.passed:
                failures.append(config_result)
    if failures:
        raise GateFailed(" | ".join(result.message for result in failures))


@task(
    help={
        "image": _IMAGE_HELP,
        "ref": _REF_HELP,
        "local": _LOCAL_HELP,
        "cache-dir": _CACHE_HELP,
        "offline": _OFFLINE_HELP,
    },
)
@errors_to_exit
def sbom(
    c: Context,
    image: str = "",
    ref: str = "",
    local: bool = False,
    cache_dir: str = "",
    offline: bool = False,
) -> None:
    """Write CycloneDX and SPDX JSON SBOMs of images; print where they are."""
    config = load_config(c)
    runner = runner_for(c)
    offline = offline or config.scan.offline
    for spec, target, engine in _targets(config, runner, image, ref, local):
        result = write_sbom(
            config,
            spec,
            target,
            runner,
            cache_dir=cache_dir,
            offline=offline,
            local=engine,
            platforms_built=platforms_of(config, spec, target),
        )
        for fmt, path in result.files.items():
            count = result.packages.get(fmt)
            listed = f" ({count} packages)" if count is not None else ""
            print(f"{spec.key}: {display_path(config, path)}{listed}")
