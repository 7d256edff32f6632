"""Shared fixtures for the buildtasks tests."""

from __future__ import annotations

import os
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def lab_registry() -> str:
    return os.environ.get("BUILDTASKS_LAB_REGISTRY", "127.0.0.1:5000")


def registry_reachable(address: str) -> bool:
    try:
        with urllib.request.urlopen(f"http://{address}/v2/", timeout=2):
            return True
    except OSError:
        return False


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return ROOT


@pytest.fixture(scope="session")
def lab() -> str:
    """The lab registry address; fails (not skips) when the lab is down, since CI brings it up."""
    address = lab_registry()
    if not registry_reachable(address):
        pytest.fail(f"the lab registry {address} is down: run `uv run invoke lab.up` first")
    return address
