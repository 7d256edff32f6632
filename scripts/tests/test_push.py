"""Push helpers: failure classification, the login check, manifest digests."""

from __future__ import annotations

import hashlib

import pytest

from buildtasks.errors import RegistryUnavailable
from buildtasks.push import classify_push_failure, login_missing, manifest_digest, registry_of


@pytest.mark.parametrize(
    ("ref", "registry"),
    [
        ("127.0.0.1:5000/monorepo:1", "127.0.0.1:5000"),
        ("ghcr.io/acme/app:1", "ghcr.io"),
        ("acme/app:1", "docker.io"),
        ("localhost/app:1", "localhost"),
    ],
)
def test_registry_of(ref, registry):
    assert registry_of(ref) == registry


@pytest.mark.parametrize(
    ("stderr", "fragment"),
    [
        pytest.param(
            "unauthorized: unauthenticated: User cannot be authenticated",
            "docker login ghcr.io",
            id="ghcr-unauthorized",
        ),
        pytest.param(
            "denied: installation not allowed to Create organization package",
            "docker login ghcr.io",
            id="ghcr-denied",
        ),
        pytest.param(
            "failed to authorize: failed to fetch anonymous token: 404",
            "docker login ghcr.io",
            id="buildkit-authorize",
        ),
        pytest.param("dial tcp: lookup ghcr.io: no such host", "unreachable", id="dns"),
        pytest.param("connect: connection refused", "unreachable", id="refused"),
    ],
)
def test_push_failures_name_the_fix(stderr, fragment):
    error = classify_push_failure("ghcr.io/acme/app:1", stderr)
    assert isinstance(error, RegistryUnavailable)
    assert fragment in str(error)


def test_an_unrecognised_failure_is_left_to_the_generic_error():
    assert classify_push_failure("ghcr.io/acme/app:1", "manifest invalid") is None


@pytest.mark.parametrize(
    ("status", "config", "missing"),
    [
        pytest.param(401, {}, True, id="no-credentials"),
        pytest.param(401, {"auths": {"ghcr.io": {}}}, False, id="logged-in"),
        pytest.param(401, {"auths": {"https://ghcr.io": {}}}, False, id="logged-in-with-scheme"),
        pytest.param(401, {"credHelpers": {"ghcr.io": "gcloud"}}, False, id="credential-helper"),
        pytest.param(401, {"credsStore": "desktop"}, False, id="credential-store-may-know"),
        pytest.param(200, {}, False, id="open-registry"),
    ],
)
def test_login_missing(status, config, missing):
    assert login_missing("ghcr.io", status, config) is missing


def test_manifest_digest_is_the_sha256_of_the_bytes():
    raw = '{"schemaVersion":2}'
    assert manifest_digest(raw) == "sha256:" + hashlib.sha256(raw.encode()).hexdigest()
