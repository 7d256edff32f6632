"""Run `docker buildx build` and say why it failed: the step, its exit code, BuildKit's reason.

The build's output goes to the terminal as it runs (its progress display untouched); when
it fails, the failed build is read back from the builder's history (`docker buildx history`),
so the last line names the step (`step "RUN …" failed with exit code 3`) instead of
"the build log above says why".
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

from buildtasks import buildx
from buildtasks.builders import BuilderSpec
from buildtasks.command import Command
from buildtasks.config import Config, ImageSpec
from buildtasks.errors import BuildtasksError, CommandFailed, FilesystemError
from buildtasks.runner import Runner


def run_build(
    config: Config, image: ImageSpec, command: Command, runner: Runner, on: BuilderSpec
) -> None:
    """Run a `docker buildx build`; when it fails, say which step failed and how.

    The build's output went to the terminal as it ran; the reason is read back from the
    builder's history (`step "RUN …" failed with exit code N`, or BuildKit's error).
    """
    started = datetime.now(UTC) - timedelta(seconds=2)  # the daemon's clock may lag a little
    try:
        runner.run(command)
    except CommandFailed as exc:
        reason = _failure_reason(config, image, runner, on, started)
        if not reason:
            raise
        raise _explained(config, image, reason, exc) from None


def run_bake(
    config: Config,
    images: Sequence[ImageSpec],
    command: Command,
    runner: Runner,
    on: BuilderSpec,
) -> None:
    """Run a `docker buildx bake` of `images`; when it fails, name the target that failed
    and its step (the first one found in the builder's history, counting the others)."""
    started = datetime.now(UTC) - timedelta(seconds=2)
    try:
        runner.run(command)
    except CommandFailed as exc:
        failed = [
            (image, reason)
            for image in images
            if (reason := _failure_reason(config, image, runner, on, started, strict=True))
        ]
        if not failed:
            keys = ", ".join(image.key for image in images)
            raise BuildtasksError(
                f"docker buildx bake of {keys} failed with exit code {exc.returncode} "
                "(the build log above says why); nothing was recorded",
                exit_code=exc.exit_code,
            ) from None
        # Bake cancels the other targets when one fails (their errors then read "canceled"
        # or a broken export): a failed step is the cause and goes first.
        failed.sort(key=lambda item: (not item[1].startswith('step "'), "cancel" in item[1]))
        image, reason = failed[0]
        error = _explained(config, image, reason, exc)
        # The targets bake stopped because of this one are no failures of their own.
        others = sum(1 for _, r in failed[1:] if r.startswith('step "'))
        more = f" (and {others} more)" if others else ""
        raise type(error)(
            f"{error}{more}; nothing was recorded", exit_code=error.exit_code
        ) from None


def _explained(
    config: Config, image: ImageSpec, reason: str, exc: CommandFailed
) -> BuildtasksError:
    if "no space left on device" in reason.lower():
        return FilesystemError(
            f"{image.key}: {reason}: the disk is full (df -h): free space, e.g. "
            f"`docker builder prune` and the local build cache under {config.cache_dir}"
        )
    return BuildtasksError(
        f"{image.key}: {reason} (the build log above shows its output)",
        exit_code=exc.exit_code,
    )


def _failure_reason(
    config: Config,
    image: ImageSpec,
    runner: Runner,
    on: BuilderSpec,
    started: datetime,
    *,
    strict: bool = False,
) -> str:
    """Why the build of `image` that started at `started` failed, from the builder's history.

    `strict` (a bake of several images): only a failed build whose name is this image's.
    """
    try:
        listing = runner.output(buildx.failed_builds(on.buildx_name), timeout=30)
        hint = config.dockerfile_path(image).parent.relative_to(config.root).as_posix()
        ref = buildx.pick_failed_build(
            listing, since=started, name_hint=hint, names=(image.key,), strict=strict
        )
        if not ref:
            return ""
        detail = json.loads(runner.output(buildx.build_record(ref, on.buildx_name), timeout=30))
    except (CommandFailed, ValueError):
        return ""
    message = str(
        ((detail.get("Error") or {}) if isinstance(detail, dict) else {}).get("Message", "")
    )
    return buildx.failure_reason(message) if message else ""
