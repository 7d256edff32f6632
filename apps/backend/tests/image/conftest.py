"""Fixtures for tests of the built backend image (shared harness: buildtasks.testing.images)."""

from __future__ import annotations

import pytest

from buildtasks.testing.images import (  # noqa: F401 - fixtures
    image,
    network,
    removals,
    run_container,
    service,
)


@pytest.fixture(scope="session")
def container_port() -> int:
    """The api-gateway's port; agents containers pass port=8001."""
    return 8000
