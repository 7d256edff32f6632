"""The lab's pure plans: packages, daemon.json, registry config, stand-in references."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from buildtasks.errors import ConfigError
from buildtasks.lab import engines, plan
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
        # Compose v2: sid's on Debian; Ubuntu's `docker-compose` is the old Python v1.
        ("debian", ["docker-compose"], ("docker-compose/sid",)),
        ("ubuntu", ["docker-compose"], ("docker-compose-v2",)),
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


# ------------------------------------------------------------------ apt pins


def test_apt_pins_tie_each_lab_package_to_its_suite_and_nothing_else():
    assert plan.EXTRA_PINS == (
        "Package: docker.io containerd docker-cli\n"
        "Pin: release n=trixie\n"
        "Pin-Priority: 990\n"
        "\n"
        "Package: docker-buildx docker-compose crane oras cosign gitleaks\n"
        "Pin: release n=sid\n"
        "Pin-Priority: 990\n"
        "\n"
        "Package: *\n"
        "Pin: release n=trixie\n"
        "Pin-Priority: 50\n"
        "\n"
        "Package: *\n"
        "Pin: release n=sid\n"
        "Pin-Priority: 50\n"
    )


def _pins(text: str) -> list[tuple[list[str], str, int]]:
    stanzas = []
    for stanza in text.strip().split("\n\n"):
        fields = dict(line.split(": ", 1) for line in stanza.splitlines())
        stanzas.append((fields["Package"].split(), fields["Pin"], int(fields["Pin-Priority"])))
    return stanzas


def test_apt_pins_priorities_follow_apt_preferences_semantics():
    # apt_preferences(5): < 100 never upgrades an installed package (so an installed sid tool
    # would never get a fix); 990..999 wins over the default 500 and over a target release's 990
    # by version, without ever downgrading (that needs >= 1000).
    for packages, pin, priority in _pins(plan.EXTRA_PINS):
        if packages == ["*"]:
            assert 0 < priority < 100, pin
        else:
            assert 990 <= priority < 1000, pin


@pytest.mark.parametrize("package", ["libc6", "runc", "tini", "systemd", "openssl"])
def test_apt_pins_never_raise_system_packages_from_the_extra_suites(package):
    for packages, _, priority in _pins(plan.EXTRA_PINS):
        assert package not in packages
        assert packages != ["*"] or priority < 100


def test_apt_pins_follow_the_package_table():
    pins = plan.apt_pins({"a": "foo/sid", "b": "bar", "c": "baz/trixie", "d": "foo/sid"})
    assert _pins(pins) == [
        (["foo"], "release n=sid", 990),
        (["baz"], "release n=trixie", 990),
        (["*"], "release n=sid", 50),
        (["*"], "release n=trixie", 50),
    ]


# ------------------------------------------------------------------ registry address


@pytest.mark.parametrize(
    "address", ["127.0.0.1:5000", "127.10.0.3:5001", "localhost:5000", "[::1]:5000"]
)
def test_loopback_registry_addresses_are_accepted(address):
    assert plan.check_lab_registry(address) == address


@pytest.mark.parametrize(
    "address",
    [
        pytest.param("0.0.0.0:5000", id="all-interfaces"),
        pytest.param(":5000", id="no-host-means-all-interfaces"),
        pytest.param("[::]:5000", id="ipv6-any"),
        pytest.param("10.0.0.5:5000", id="private-lan"),
        pytest.param("192.168.1.2:5000", id="another-lan"),
        pytest.param("registry.example.com:5000", id="a-name"),
        pytest.param("127.0.0.1", id="no-port"),
        pytest.param("::1", id="bare-ipv6-no-port"),
        pytest.param("127.0.0.1:0", id="port-zero"),
        pytest.param("127.0.0.1:70000", id="port-out-of-range"),
    ],
)
def test_non_loopback_registry_addresses_are_refused_naming_the_fix(address):
    with pytest.raises(ConfigError) as caught:
        plan.check_lab_registry(address)
    message = str(caught.value)
    assert "\n" not in message
    assert repr(address) in message
    assert '[tool.buildtasks.lab] registry to "127.0.0.1:<port>"' in message
    assert caught.value.exit_code == 2


# ------------------------------------------------------------------ daemon.json


def test_daemon_config_does_not_add_the_mirror_twice_with_a_trailing_slash():
    merged = plan.daemon_config(
        {"registry-mirrors": ["http://127.0.0.1:5000/"]}, "http://127.0.0.1:5000"
    )
    assert merged["registry-mirrors"] == ["http://127.0.0.1:5000/"]


def test_daemon_config_without_keeps_user_keys_features_and_other_mirrors():
    existing = {
        "log-driver": "journald",
        "features": {"containerd-snapshotter": True, "buildkit": True},
        "registry-mirrors": ["http://127.0.0.1:5000", "https://mirror.example"],
    }
    assert plan.daemon_config_without(existing, "http://127.0.0.1:5000") == {
        "log-driver": "journald",
        "features": {"containerd-snapshotter": True, "buildkit": True},
        "registry-mirrors": ["https://mirror.example"],
    }


@pytest.mark.parametrize(
    ("existing", "expected"),
    [
        pytest.param(
            {
                "features": {"containerd-snapshotter": True},
                "registry-mirrors": ["http://127.0.0.1:5000/"],
            },
            {"features": {"containerd-snapshotter": True}, "registry-mirrors": []},
            id="last-mirror-leaves-an-empty-list-that-a-reload-reads",
        ),
        pytest.param({"debug": True}, {"debug": True}, id="no-mirrors-unchanged"),
        pytest.param({}, {}, id="empty"),
        pytest.param(
            {"registry-mirrors": ["http://127.0.0.1:5001"]},
            {"registry-mirrors": ["http://127.0.0.1:5001"]},
            id="another-port-is-not-ours",
        ),
    ],
)
def test_daemon_config_without_the_lab_mirror(existing, expected):
    assert plan.daemon_config_without(existing, "http://127.0.0.1:5000") == expected


def test_down_then_up_restores_the_same_daemon_config():
    up = plan.daemon_config({"log-level": "warn"}, "http://127.0.0.1:5000")
    down = plan.daemon_config_without(up, "http://127.0.0.1:5000")
    assert plan.daemon_config(down, "http://127.0.0.1:5000") == up


@pytest.mark.parametrize(
    ("before", "after", "change"),
    [
        pytest.param({"a": 1}, {"a": 1}, "", id="same"),
        pytest.param({}, {"registry-mirrors": ["m"]}, "reload", id="mirror-added"),
        pytest.param({"registry-mirrors": ["m"]}, {}, "reload", id="mirror-removed"),
        pytest.param(
            {},
            {"features": {"containerd-snapshotter": True}, "registry-mirrors": ["m"]},
            "restart",
            id="image-store-needs-a-restart",
        ),
    ],
)
def test_engine_change_reloads_for_mirrors_only(before, after, change):
    assert plan.engine_change(before, after) == change


@pytest.mark.parametrize(
    ("mirrors", "listed"),
    [(["http://127.0.0.1:5000/"], True), (["https://mirror.example/"], False), ([], False)],
)
def test_mirror_listed_in_docker_info(mirrors, listed):
    assert plan.mirror_listed(mirrors, "http://127.0.0.1:5000") is listed


# ------------------------------------------------------------------ the registry's user


def test_registry_runs_through_setpriv_without_privileges():
    argv = plan.registry_command(
        "/usr/bin/docker-registry", Path("/r/registry.yml"), uid=102, gid=105
    )
    assert argv == (
        "setpriv",
        "--reuid=102",
        "--regid=105",
        "--clear-groups",
        "--no-new-privs",
        "--inh-caps=-all",
        "--bounding-set=-all",
        "--reset-env",
        "/usr/bin/docker-registry",
        "serve",
        "/r/registry.yml",
    )


def test_registry_runs_as_is_without_a_user():
    argv = plan.registry_command("/usr/bin/docker-registry", Path("/h/registry.yml"))
    assert argv == ("/usr/bin/docker-registry", "serve", "/h/registry.yml")


@pytest.mark.parametrize(
    ("privileged", "config", "storage"),
    [
        (True, "/var/lib/buildtasks-lab/registry.yml", "/var/lib/buildtasks-lab/registry"),
        (False, "/home/u/.cache/lab/registry.yml", "/home/u/.cache/lab/registry"),
    ],
)
def test_registry_paths_leave_roots_home_when_privileged(privileged, config, storage):
    paths = plan.registry_paths(Path("/home/u/.cache/lab"), privileged=privileged)
    assert (str(paths.config), str(paths.storage)) == (config, storage)


def test_registry_user_prefers_debians_and_creates_a_locked_system_user():
    assert plan.REGISTRY_USERS == ("docker-registry", "buildtasks-registry")
    assert plan.useradd("buildtasks-registry").argv == (
        "useradd",
        "--system",
        "--user-group",
        "--no-create-home",
        "--home-dir",
        "/nonexistent",
        "--shell",
        "/usr/sbin/nologin",
        "--comment",
        "buildtasks lab registry",
        "buildtasks-registry",
    )


def test_chown_tree_does_not_follow_links():
    assert plan.chown_tree(Path("/s"), 102, 105).argv == (
        "chown",
        "-R",
        "--no-dereference",
        "102:105",
        "/s",
    )


@pytest.mark.parametrize(
    ("text", "uid"),
    [("Name:\tregistry\nUid:\t102\t102\t102\t102\nGid:\t105\n", 102), ("", None)],
)
def test_status_uid_is_the_real_uid(text, uid):
    assert plan.status_uid(text) == uid


# ------------------------------------------------------------------ what lab.down leaves


def test_installed_packages_are_the_ii_lines():
    text = (
        "ii  docker.io 26.1.5+dfsg1-9+deb13u1+b1\n"
        "un  oras \n"
        "rc  cosign 3.1.1-2\n"
        "ii  crane 0.20.7+ds1-5\n"
    )
    assert plan.installed_packages(text) == (
        "docker.io 26.1.5+dfsg1-9+deb13u1+b1",
        "crane 0.20.7+ds1-5",
    )


def test_lab_package_names_cover_every_package_lab_up_installs():
    names = plan.lab_package_names()
    assert {"docker.io", "containerd", "docker-cli", "docker-buildx", "docker-registry"} <= set(
        names
    )
    assert set(plan.QEMU_PACKAGES) <= set(names)


def test_leftover_lines_name_each_part_and_how_to_remove_it():
    lines = plan.leftover_lines(
        plan.Leftovers(
            packages=("docker.io 26.1.5",),
            engine_running=True,
            containerd_store=True,
            other_mirrors=("https://mirror.example",),
            apt_files=(plan.SOURCES_FILE, plan.PINS_FILE),
            registry_storage="/var/lib/buildtasks-lab/registry",
            bases_cache="/root/.cache/buildtasks/lab/bases",
            qemu=("arm64",),
        )
    )
    text = "\n".join(lines)
    assert len(lines) == 8
    assert "docker.io 26.1.5" in text and "never removes packages" in text
    assert "engine keeps running" in text
    assert "containerd-snapshotter" in text and "hides every image" in text
    assert "--purge-apt" in text and plan.PINS_FILE in text
    assert "/var/lib/buildtasks-lab/registry" in text and "bases" in text and "arm64" in text


def test_leftover_lines_are_empty_when_nothing_stays():
    assert plan.leftover_lines(plan.Leftovers()) == ()


# ------------------------------------------------------------------ the classic-store engine


def test_the_second_engine_has_its_own_socket_root_bridge_and_never_bridge_none():
    layout = engines.EngineLayout(
        data_root=Path("/d"), run_dir=Path("/r"), bridge="br-x", pool="10.9.0.0/16"
    )
    argv = engines.dockerd_argv("/usr/sbin/dockerd", layout)
    assert argv[argv.index("--host") + 1] == "unix:///r/docker.sock"
    assert argv[argv.index("--data-root") + 1] == "/d"
    assert argv[argv.index("--exec-root") + 1] == "/r/exec"
    assert argv[argv.index("--bridge") + 1] == "br-x"
    assert "none" not in argv
    assert "--iptables=false" in argv


def test_the_second_engine_keeps_the_classic_store_and_cannot_delete_docker0():
    config = engines.daemon_config("http://127.0.0.1:5000", engines.EngineLayout())
    assert config["features"] == {"containerd-snapshotter": False}
    assert config["registry-mirrors"] == ["http://127.0.0.1:5000"]
    # With address pools and without live-restore, a restarted dockerd deletes docker0.
    assert config["default-address-pools"] and config["live-restore"] is True


def test_its_rules_cover_its_whole_range_and_are_added_and_removed_symmetrically():
    layout = engines.EngineLayout(pool="10.9.0.0/16")
    rules = engines.nat_rules(layout)
    assert all("10.9.0.0/16" in rule for rule in rules)
    for rule in rules:
        added, removed = engines.iptables("-I", rule), engines.iptables("-D", rule)
        assert added.argv[:3] == ("iptables", "-t", rule[0])
        assert added.argv[4:] == removed.argv[4:]
