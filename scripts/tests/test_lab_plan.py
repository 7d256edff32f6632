"""The lab's pure plans: packages, daemon.json, registry config, stand-in references."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from buildtasks.errors import ConfigError
from buildtasks.lab import plan
from buildtasks.refs import mirror_ref, parse_base_ref


def test_daemon_config_keeps_user_keys_and_adds_store_and_mirror():
    existing = {"log-driver": "journald", "registry-mirrors": ["https://mirror.example"]}
    merged = plan.daemon_config(existing, "http://127.0.0.1:5000")
    assert merged["log-driver"] == "journald"
    assert merged["features"] == {"containerd-snapshotter": True}
    assert merged["registry-mirrors"] == ["http://127.0.0.1:5000", "https://mirror.example"]


def test_daemon_config_is_idempotent():
    once = plan.daemon_config({}, "http://127.0.0.1:5000")
    assert plan.daemon_config(once, "http://127.0.0.1:5000") == once


@pytest.mark.parametrize(
    ("os_id", "missing", "expected"),
    [
        ("debian", ["dockerd"], ("docker.io/trixie", "containerd/trixie", "docker-cli/trixie")),
        ("debian", ["docker-buildx", "cosign"], ("docker-buildx/sid", "cosign/sid")),
        (
            "ubuntu",
            ["dockerd", "docker-buildx"],
            ("docker.io", "containerd", "docker-cli", "docker-buildx"),
        ),
        ("debian", ["qemu-user-static"], ("qemu-user-static",)),
    ],
)
def test_apt_packages_per_distribution(os_id, missing, expected):
    assert plan.apt_packages(missing, {"ID": os_id}) == expected


NODESOURCE = (
    "Types: deb\nURIs: https://apt.example.org/node_20.x\nSuites: nodistro\nComponents: main\n"
)
DEBIAN = (
    "Types: deb\n# a snapshot comment\nURIs: http://mirror.example.org/debian\n"
    "Suites: bookworm bookworm-updates\nComponents: main\n\n"
    "Types: deb\nURIs: http://mirror.example.org/debian-security\nSuites: bookworm-security\n"
)


@pytest.mark.parametrize(
    ("text", "suite", "expected"),
    [
        pytest.param(DEBIAN, "bookworm", "http://mirror.example.org/debian", id="deb822"),
        pytest.param(
            NODESOURCE + "\n" + DEBIAN,
            "bookworm",
            "http://mirror.example.org/debian",
            id="third-party-listed-first",
        ),
        pytest.param(
            NODESOURCE,
            "bookworm",
            "",
            id="no-debian-source-gives-none",
        ),
        pytest.param(
            "deb [arch=amd64] http://m.example/debian/ bookworm main\n",
            "bookworm",
            "http://m.example/debian",
            id="one-line",
        ),
        pytest.param(
            "deb http://security.debian.org/ bookworm-security main\n",
            "bookworm",
            "",
            id="security-only",
        ),
        pytest.param(DEBIAN, "", "http://mirror.example.org/debian", id="no-suite-given"),
        pytest.param(
            "Types: deb\nURIs: http://x/debian\nSuites: bookworm\nEnabled: no\n",
            "bookworm",
            "",
            id="disabled-stanza",
        ),
    ],
)
def test_debian_mirror_is_the_source_of_the_suite(text, suite, expected):
    assert plan.debian_mirror(text, suite) == expected


@pytest.mark.parametrize(
    ("ref", "registry", "repository", "tag", "in_lab"),
    [
        (
            "python:3.11-slim",
            "docker.io",
            "library/python",
            "3.11-slim",
            "127.0.0.1:5000/library/python:3.11-slim",
        ),
        (
            "ghcr.io/astral-sh/uv:0.13.9",
            "ghcr.io",
            "astral-sh/uv",
            "0.13.9",
            "127.0.0.1:5000/ghcr.io/astral-sh/uv:0.13.9",
        ),
        (
            "bitnami/redis",
            "docker.io",
            "bitnami/redis",
            "latest",
            "127.0.0.1:5000/bitnami/redis:latest",
        ),
        ("localhost:5000/x:1", "localhost:5000", "x", "1", "127.0.0.1:5000/localhost:5000/x:1"),
    ],
)
def test_base_refs_map_into_the_lab(ref, registry, repository, tag, in_lab):
    base = parse_base_ref(ref)
    assert (base.registry, base.repository, base.tag) == (registry, repository, tag)
    assert mirror_ref(base, "127.0.0.1:5000") == in_lab


@pytest.mark.parametrize(
    ("ref", "message"),
    [
        ("python:3.12-slim", "Debian bookworm ships Python 3.11"),
        ("ghcr.io/astral-sh/uv:latest", "pin the uv image"),
        ("redis:7", "no lab stand-in recipe"),
        ("python@sha256:abc", "digest reference"),
    ],
)
def test_unsupported_stand_ins_fail_clearly(ref, message):
    with pytest.raises(ConfigError, match=message):
        plan.stand_in_for(parse_base_ref(ref), "bookworm")


def test_python_stand_in_looks_like_the_official_image():
    stand_in = plan.stand_in_for(parse_base_ref("python:3.11-slim"), "bookworm")
    assert dict(stand_in.env)["LANG"] == "C.UTF-8"
    assert stand_in.cmd == ("python3",)


def test_registry_config_binds_the_address_and_storage():
    config = json.loads(plan.registry_config("127.0.0.1:5000", Path("/data")))
    assert config["http"]["addr"] == "127.0.0.1:5000"
    assert config["storage"]["filesystem"]["rootdirectory"] == "/data"


def test_debootstrap_is_minbase_with_the_requested_packages():
    command = plan.debootstrap("arm64", "bookworm", Path("/t"), "http://m/debian", ["python3"])
    assert command.argv == (
        "debootstrap",
        "--variant=minbase",
        "--arch=arm64",
        "--include=python3",
        "bookworm",
        "/t",
        "http://m/debian",
    )


@pytest.mark.parametrize(
    ("text", "version"), [("26.1.5+dfsg1", (26, 1)), ("20.10.24", (20, 10)), ("x", (0, 0))]
)
def test_engine_version(text, version):
    assert plan.engine_version(text) == version


@pytest.mark.parametrize(
    ("text", "enabled", "interpreter"),
    [
        (
            "enabled\ninterpreter /usr/bin/qemu-aarch64-static\nflags: F\n",
            True,
            "/usr/bin/qemu-aarch64-static",
        ),
        (
            "disabled\ninterpreter /usr/libexec/qemu-binfmt/aarch64-binfmt-P\n",
            False,
            "/usr/libexec/qemu-binfmt/aarch64-binfmt-P",
        ),
        ("", False, ""),
    ],
)
def test_binfmt_entries_are_parsed(text, enabled, interpreter):
    entry = plan.parse_binfmt_entry(text)
    assert (entry.enabled, entry.interpreter) == (enabled, interpreter)


def test_orphaned_bridges_are_the_down_docker_bridges_of_unknown_networks():
    links = [
        {"ifname": "docker0", "operstate": "DOWN"},
        {"ifname": "br-8cd0a3796258", "operstate": "DOWN"},
        {"ifname": "br-1a7fd532fc2c", "operstate": "DOWN"},
        {"ifname": "br-aaaaaaaaaaaa", "operstate": "UP"},
        {"ifname": "br-lan", "operstate": "DOWN"},
    ]
    ids = ["1a7fd532fc2cd58c6acd6f58d4ef9cd311d8142d7390199e0463228c5b5fa70e"]
    assert plan.orphaned_bridges(links, ids) == ("br-8cd0a3796258",)
