"""Run `docker buildx build` and say why it failed: the step, its exit code, BuildKit's reason.

The build's output goes to the terminal as it runs (its progress display untouched); when
it fails, the failed build is read back from the builder's history (`docker buildx history`),
so the last line names the step (`step "RUN …" failed with exit code 3`) instead of
"the build log above says why".
"""

from __future__ import annotations

import json
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
        if "no space left on device" in reason.lower():
            raise FilesystemError(
                f"{image.key}: {reason}: the disk is full (df -h): free space, e.g. "
                f"`docker builder prune` and the local build cache under {config.cache_dir}"
            ) from None
        raise BuildtasksError(
            f"{image.key}: {reason} (the build log above shows its output)",
            exit_code=exc.exit_code,
        ) from None


def _failure_reason(
    config: Config, image: ImageSpec, runner: Runner, on: BuilderSpec, started: datetime
) -> str:
    """Why the build of `image` that started at `started` failed, from the builder's history."""
    try:
        listing = runner.output(buildx.failed_builds(on.buildx_name), timeout=30)
        hint = config.dockerfile_path(image).parent.relative_to(config.root).as_posix()
        ref = buildx.pick_failed_build(listing, since=started, name_hint=hint)
        if not ref:
            return ""
        detail = json.loads(runner.output(buildx.build_record(ref, on.buildx_name), timeout=30))
    except (CommandFailed, ValueError):
        return ""
    message = str(
        ((detail.get("Error") or {}) if isinstance(detail, dict) else {}).get("Message", "")
    )
    return buildx.failure_reason(message) if message else ""
