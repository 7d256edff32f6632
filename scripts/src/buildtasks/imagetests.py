"""Run an image's pytest suite against a built image, identified by digest."""

from __future__ import annotations

import re
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from buildtasks.command import Command
from buildtasks.config import ImageSpec
from buildtasks.errors import ConfigError

#: Environment the image tests read: which image (by digest) and its configured budget.
IMAGE_ENV = "BUILDTASKS_IMAGE"
BUDGET_ENV = "BUILDTASKS_SIZE_BUDGET_MB"

#: pytest's closing counts: `15 passed, 1 skipped in 20.1s`.
_COUNTS_RE = re.compile(r"\b(\d+ (?:passed|failed|skipped|errors?|xfailed|xpassed)(?:, )?)+")


def image_env(key: str) -> str:
    """The variable naming image `key`'s digest for other images' tests (BUILDTASKS_IMAGE_BACKEND)."""
    return f"{IMAGE_ENV}_{key.upper()}"


def pytest_counts(last_line: str) -> str:
    """`15 passed, 1 skipped` from pytest's last line ('' when it is not there)."""
    match = _COUNTS_RE.search(last_line)
    return match.group(0).rstrip(", ") if match else ""


@dataclass(frozen=True)
class ImageTests:
    """The pytest arguments and environment that test `image` against one built image."""

    image: ImageSpec
    args: tuple[str, ...]
    env: Mapping[str, str]


def image_tests(image: ImageSpec, ref: str, *, root: Path) -> ImageTests:
    """Plan the test run of `image`'s suite against `ref` (a digest or `name@sha256:`)."""
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
    return ImageTests(image, (str(path), "-p", "no:cacheprovider"), env)


def image_test_command(
    image: ImageSpec,
    ref: str,
    *,
    root: Path,
    python: str = sys.executable,
    extra: tuple[str, ...] = (),
    others: Mapping[str, str] | None = None,
) -> Command:
    """Return the pytest run of `image`'s tests against `ref` (a digest or `name@sha256:`).

    `others` maps the keys of images built before this one to their digests: their tests
    read them (`BUILDTASKS_IMAGE_BACKEND`, so the web image is tested against a real gateway).
    """
    plan = image_tests(image, ref, root=root)
    return Command(
        (python, "-m", "pytest", *plan.args, *extra),
        env={**{image_env(k): v for k, v in (others or {}).items()}, **plan.env},
        cwd=str(root),
        hint=f"the image tests of {image.key} failed",
    )
