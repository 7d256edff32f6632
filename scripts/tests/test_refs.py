"""References, registries and digests (refs.py), the login check, manifest digests."""

from __future__ import annotations

import hashlib

import pytest

from buildtasks import refs
from buildtasks.errors import ConfigError, RegistryUnavailable
from buildtasks.push import manifest_digest
from buildtasks.refs import (
    DigestRef,
    is_local_registry,
    registry_error,
    registry_of,
    require_digest,
)
from buildtasks.registry import login_missing


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
    error = registry_error("ghcr.io/acme/app:1", stderr, action="push to")
    assert isinstance(error, RegistryUnavailable)
    assert fragment in str(error)


def test_an_unrecognised_failure_is_left_to_the_generic_error():
    assert registry_error("ghcr.io/acme/app:1", "manifest invalid", action="push to") is None


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


@pytest.mark.parametrize(
    ("ref", "local"),
    [
        pytest.param("127.0.0.1:5000/monorepo@sha256:1", True, id="lab"),
        pytest.param("127.0.0.2:5000/x:1", True, id="other-loopback"),
        pytest.param("localhost:5000/x:1", True, id="localhost"),
        pytest.param("[::1]:5000/x:1", True, id="ipv6-loopback"),
        pytest.param("lab.internal:5000/x:1", True, id="configured-lab-name"),
        pytest.param("ghcr.io/acme/app:1", False, id="ghcr"),
        pytest.param("192.168.1.10:5000/x:1", False, id="lan-is-not-this-machine"),
        pytest.param("127.0.0.1:5000", True, id="bare-address"),
    ],
)
def test_local_registries_are_the_lab_and_loopback(ref, local):
    assert is_local_registry(ref, lab_registry="lab.internal:5000") is local


def test_a_down_loopback_registry_names_lab_up_and_a_remote_one_the_network():
    local = registry_error("127.0.0.1:5000/x:1", "connection refused", action="push to")
    remote = registry_error("ghcr.io/x:1", "connection refused", action="push to")
    assert "lab.up" in str(local)
    assert "check the address and network" in str(remote)


def test_require_digest_splits_and_refuses_tags():
    digest = "sha256:" + "a" * 64
    assert require_digest(f"r/app@{digest}") == DigestRef("r/app", digest)
    assert str(require_digest(digest, allow_image_id=True)) == digest
    for bad in ("r/app:1", digest, f"r/app@sha256:{'a' * 10}"):
        with pytest.raises(ConfigError, match="by digest"):
            require_digest(bad)


@pytest.mark.parametrize(
    ("ref", "text", "expected"),
    [
        pytest.param(
            "127.0.0.1:5000/x@sha256:" + "a" * 64,
            'Error: signing [127.0.0.1:5000/x]: getting key from Fulcio: Post "https://fulcio.'
            'sigstore.dev/api/v2/signingCert": dial tcp: lookup fulcio.sigstore.dev on '
            "10.0.0.53:53: no such host",
            "cannot reach fulcio.sigstore.dev to sign images in 127.0.0.1:5000: keyless signing "
            "needs Sigstore's services (Fulcio, Rekor) reachable from here: check the network "
            "and proxy, or sign with a key (--key)",
            id="keyless-on-a-laptop-is-not-the-lab-registry",
        ),
        pytest.param(
            "127.0.0.1:5000/x@sha256:" + "a" * 64,
            "Error: Get http://127.0.0.1:5000/v2/: dial tcp 127.0.0.1:5000: connect: "
            "connection refused",
            "registry 127.0.0.1:5000 is unreachable: start it with `uv run invoke lab.up`",
            id="the-lab-registry-down",
        ),
        pytest.param(
            "localhost:5000/x@sha256:" + "a" * 64,
            'Get "http://localhost:5000/v2/": dial tcp [::1]:5000: connect: connection refused',
            "registry localhost:5000 is unreachable: start it with `uv run invoke lab.up`",
            id="loopback-by-another-name",
        ),
        pytest.param(
            "ghcr.io/acme/x@sha256:" + "a" * 64,
            'Get "https://ghcr.io/v2/": dial tcp: lookup ghcr.io: no such host',
            "registry ghcr.io is unreachable: check the address and network",
            id="the-registry-itself",
        ),
    ],
)
def test_a_connection_error_is_blamed_on_the_host_that_failed(ref, text, expected):
    error = refs.registry_error(ref, text, action="sign images in")
    assert error is not None and str(error) == expected
