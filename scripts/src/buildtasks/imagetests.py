"""Run an image's pytest suite against a built image, identified by digest."""

from __future__ import annotations

import sys
from pathlib import Path

from buildtasks.command import Command
from buildtasks.config import ImageSpec
from buildtasks.errors import ConfigError

#: Environment the image tests read: which image (by digest) and its configured budget.
IMAGE_ENV = "BUILDTASKS_IMAGE"
BUDGET_ENV = "BUILDTASKS_SIZE_BUDGET_MB"


def image_test_command(
    image: ImageSpec,
    ref: str,
    *,
    root: Path,
    python: str = sys.executable,
    extra: tuple[str, ...] = (),
) -> Command:
    """Return the pytest run of `image`'s tests against `ref` (a digest or `name@sha256:`)."""
    if not image.tests:
        raise ConfigError(
            f"image {image.key!r} has no tests: set [tool.buildtasks.images.{image.key}] tests"
        )
    path = root / image.tests
    if not path.exists():
        raise ConfigError(
            f"image tests {image.tests} not found: fix [tool.buildtasks.images.{image.key}] tests"
        )
    env = {IMAGE_ENV: ref}
    if image.size_budget_mb:
        env[BUDGET_ENV] = str(image.size_budget_mb)
    return Command(
        (python, "-m", "pytest", str(path), "-p", "no:cacheprovider", *extra),
        env=env,
        cwd=str(root),
        hint=f"the image tests of {image.key} failed",
    )
