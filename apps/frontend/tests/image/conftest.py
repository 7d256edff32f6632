"""Fixtures for tests of the built web image (shared harness: buildtasks.testing.images).

`BUILDTASKS_IMAGE_BACKEND`, set by `nox -s image_tests` to the backend image it just built,
adds tests against a real API gateway container.
"""

from __future__ import annotations

import pytest

from buildtasks.testing.images import (  # noqa: F401 - fixtures
    image,
    network,
    removals,
    run_container,
    service,
)

PORT = 8080


@pytest.fixture(scope="session")
def container_port() -> int:
    return PORT
