"""Pure plans for the local lab: packages, daemon config, registry config, base stand-ins.

Nothing here touches the machine; `buildtasks.lab.ops` and `lab.standins` apply these plans.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from buildtasks.command import Command
from buildtasks.errors import ConfigError
from buildtasks.refs import BaseRef

# ------------------------------------------------------------------ packages

#: Executable -> Debian package (with the suite it must come from on Debian bookworm).
DEBIAN_PACKAGES: Mapping[str, str] = {
    "dockerd": "docker.io/trixie",
    "containerd": "containerd/trixie",
    "docker": "docker-cli/trixie",
    "docker-buildx": "docker-buildx/sid",
    "docker-registry": "docker-registry",
    "debootstrap": "debootstrap",
    "crane": "crane/sid",
    "oras": "oras/sid",
    "cosign": "cosign/sid",
    "gitleaks": "gitleaks/sid",
}
QEMU_PACKAGES = ("qemu-user-static", "binfmt-support")

#: Extra suites, pinned low so nothing is upgraded from them unless named explicitly.
EXTRA_SOURCES = """\
Types: deb
URIs: {mirror}
Suites: trixie sid
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
"""
EXTRA_PINS = """\
Package: *
Pin: release n=trixie
Pin-Priority: 100

Package: *
Pin: release n=sid
Pin-Priority: 50
"""
SOURCES_FILE = "/etc/apt/sources.list.d/buildtasks-lab.sources"
PINS_FILE = "/etc/apt/preferences.d/buildtasks-lab"

#: The oldest engine whose docker driver builds multi-platform images and exports caches.
MIN_ENGINE = (25, 0)


def parse_os_release(text: str) -> dict[str, str]:
    """Parse /etc/os-release into a dict."""
    result = {}
    for line in text.splitlines():
        if "=" in line and not line.startswith("#"):
            key, value = line.split("=", 1)
            result[key.strip()] = value.strip().strip('"')
    return result


def apt_packages(missing: Sequence[str], os_release: Mapping[str, str]) -> tuple[str, ...]:
    """Return the apt package specs that provide the `missing` executables.

    On Debian the engine comes from trixie and the newer tools from sid (pinned low); other
    apt systems (Ubuntu) take their own archive's packages by plain name.
    """
    debian = os_release.get("ID") == "debian"
    specs = []
    for tool in missing:
        if tool in QEMU_PACKAGES:
            specs.append(tool)
            continue
        spec = DEBIAN_PACKAGES[tool]
        specs.append(spec if debian else spec.split("/")[0])
        if tool == "dockerd":  # the engine's own companions must match its suite
            specs += [DEBIAN_PACKAGES["containerd"], DEBIAN_PACKAGES["docker"]]
    names = [s if debian else s.split("/")[0] for s in specs]
    return tuple(dict.fromkeys(names))


def apt_install(packages: Sequence[str]) -> Command:
    """Return the non-interactive `apt-get install` for `packages` (no recommends)."""
    return Command(
        ("apt-get", "install", "-y", "-q", "--no-install-recommends", *packages),
        env={"DEBIAN_FRONTEND": "noninteractive"},
        hint="check the apt sources, or install the packages yourself",
    )


def debian_mirror(sources_text: str, suite: str = "") -> str:
    """Return the Debian archive URI this machine uses for `suite` (deb822 or one-line).

    "" when there is none (a non-Debian host): debootstrap then uses its own default.

    Only stanzas that serve the suite (or, without one, any non-security Debian suite) count:
    a third-party repository listed first must not become the Debian mirror.
    """
    candidates: list[tuple[str, list[str]]] = []
    for stanza in re.split(r"\n\s*\n", sources_text):
        fields = dict(
            (m.group(1).lower(), m.group(2).strip())
            for m in re.finditer(r"^([A-Za-z-]+):\s*(.*)$", stanza, re.MULTILINE)
        )
        if fields.get("enabled", "yes").lower() == "no":
            continue
        for uri in fields.get("uris", "").split():
            candidates.append((uri, fields.get("suites", "").split()))
    for match in re.finditer(r"^deb\s+(?:\[[^\]]*\]\s+)?(\S+)\s+(\S+)", sources_text, re.MULTILINE):
        candidates.append((match.group(1), [match.group(2)]))
    for uri, suites in candidates:
        if "security" in uri or "security" in " ".join(suites):
            continue
        if suite and suite not in suites:
            continue
        if not suite and "debian" not in uri:
            continue
        return uri.rstrip("/")
    return ""


def engine_version(text: str) -> tuple[int, int]:
    """Parse `26.1.5+dfsg1` into (26, 1); unknown forms give (0, 0)."""
    match = re.match(r"(\d+)\.(\d+)", text.strip())
    return (int(match.group(1)), int(match.group(2))) if match else (0, 0)


# ------------------------------------------------------------------ engine and registry


def daemon_config(existing: Mapping[str, object], mirror: str | None) -> dict[str, object]:
    """Merge the lab's needs into an existing daemon.json, keeping every other key.

    The containerd image store gives the docker driver multi-platform builds, `--load` of
    image indexes and cache export; the mirror makes docker.io references resolve locally.
    """
    config = dict(existing)
    features = dict(config.get("features", {}) or {})  # type: ignore[call-overload]
    features["containerd-snapshotter"] = True
    config["features"] = features
    if mirror:
        mirrors = list(config.get("registry-mirrors", []) or [])  # type: ignore[call-overload]
        if mirror not in mirrors:
            mirrors.insert(0, mirror)
        config["registry-mirrors"] = mirrors
    return config


def registry_config(address: str, storage: Path) -> str:
    """Return a minimal distribution-registry config: one address, filesystem storage."""
    return json.dumps(
        {
            "version": "0.1",
            "log": {"level": "warn"},
            "storage": {
                "filesystem": {"rootdirectory": str(storage)},
                "delete": {"enabled": True},
            },
            "http": {"addr": address, "headers": {"X-Content-Type-Options": ["nosniff"]}},
        },
        indent=2,
    )


# ------------------------------------------------------------------ base-image stand-ins


@dataclass(frozen=True)
class StandIn:
    """How to make a stand-in: a recipe name and its parameters."""

    recipe: str  # "debian-python" | "uv" | "debian-node"
    version: str
    env: tuple[tuple[str, str], ...]
    cmd: tuple[str, ...]
    entrypoint: tuple[str, ...] = ()


DEBIAN_PYTHON = {"bookworm": "3.11", "trixie": "3.13"}
PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def stand_in_for(base: BaseRef, suite: str) -> StandIn:
    """Return the recipe that makes a faithful-enough stand-in for `base`, or fail clearly."""
    repo, tag = base.repository, base.tag
    if base.is_docker_hub and repo == "library/python":
        want = re.match(r"^(\d+\.\d+)(?:\.\d+)?-slim(?:-(\w+))?$", tag)
        have = DEBIAN_PYTHON.get(suite)
        if not want or want.group(1) != have or want.group(2) not in (None, suite):
            raise ConfigError(
                f"no lab stand-in for python:{tag}: Debian {suite} ships Python {have}; "
                f"use python:{have}-slim or set [tool.buildtasks.lab] suite"
            )
        return StandIn(
            "debian-python",
            have,
            (("PATH", PATH), ("LANG", "C.UTF-8"), ("PYTHON_VERSION", have)),
            ("python3",),
        )
    if base.registry == "ghcr.io" and repo == "astral-sh/uv":
        if not re.match(r"^\d+\.\d+\.\d+$", tag):
            raise ConfigError(
                f"pin the uv image to a version (ghcr.io/astral-sh/uv:X.Y.Z), not {tag!r}"
            )
        return StandIn("uv", tag, (("PATH", PATH),), (), ("/uv",))
    if base.is_docker_hub and repo == "library/node":
        want = re.match(r"^(\d+)-slim$", tag)
        if not want:
            raise ConfigError(f"no lab stand-in for node:{tag}; use node:<major>-slim")
        return StandIn(
            "debian-node",
            want.group(1),
            (("PATH", PATH), ("LANG", "C.UTF-8"), ("NODE_MAJOR", want.group(1))),
            ("node",),
            ("docker-entrypoint.sh",),
        )
    raise ConfigError(
        f"no lab stand-in recipe for {base}; known: python:<ver>-slim, node:<major>-slim, "
        "ghcr.io/astral-sh/uv:<ver>"
    )


def debootstrap(
    arch: str, suite: str, target: Path, mirror: str, include: Sequence[str]
) -> Command:
    """Return the debootstrap of a minimal Debian root for `arch` (foreign arches need QEMU)."""
    argv = ["debootstrap", "--variant=minbase", f"--arch={arch}"]
    if include:
        argv.append(f"--include={','.join(include)}")
    argv += [suite, str(target)]
    if mirror:  # otherwise debootstrap's own default Debian mirror
        argv.append(mirror)
    return Command(
        tuple(argv), hint="is the Debian archive reachable? for arm64, run lab.up --qemu"
    )


def slim_rootfs_paths(root: Path) -> tuple[Path, ...]:
    """Return what a `-slim` image does not carry: caches, man pages, locales, docs.

    `/usr/share/doc/*/copyright` stays: scanners read licences from it.
    """
    return (
        root / "var/cache/apt/archives",
        root / "var/lib/apt/lists",
        root / "usr/share/man",
        root / "usr/share/info",
        root / "usr/share/locale",
        root / "var/log",
        root / "tmp",
    )


def tar_rootfs(root: Path, dest: Path) -> Command:
    """Return the tar of a root filesystem as one gzip layer with numeric owners."""
    return Command(
        ("tar", "--numeric-owner", "--xattrs", "-C", str(root), "-czf", str(dest), "."),
    )


def crane_append(layer: Path, ref: str) -> Command:
    """Return the crane call that pushes a one-layer image built from `layer`."""
    return Command(
        ("crane", "append", "--oci-empty-base", "-f", str(layer), "-t", ref),
        hint="is the lab registry up? run `uv run invoke lab.up`",
    )


def crane_mutate(ref: str, platform: str, stand_in: StandIn, labels: Mapping[str, str]) -> Command:
    """Return the crane call that sets platform, env, cmd and labels on a pushed image."""
    argv = ["crane", "mutate", ref, "--set-platform", platform, "-t", ref]
    for key, value in stand_in.env:
        argv += ["-e", f"{key}={value}"]
    for key, value in labels.items():
        argv += ["-l", f"{key}={value}"]
    if stand_in.cmd:
        argv += ["--cmd", ",".join(stand_in.cmd)]
    if stand_in.entrypoint:
        argv += ["--entrypoint", ",".join(stand_in.entrypoint)]
    return Command(tuple(argv))


def crane_index(ref: str, manifests: Sequence[str]) -> Command:
    """Return the crane call that makes the multi-platform index `ref` from per-arch images."""
    argv = ["crane", "index", "append", "-t", ref]
    for manifest in manifests:
        argv += ["-m", manifest]
    return Command(tuple(argv))


def arch_of(platform: str) -> str:
    """`linux/arm64` -> `arm64`."""
    return platform.split("/")[1]


# ------------------------------------------------------------------ QEMU


def binfmt_mount() -> Command:
    """Return the mount of binfmt_misc (needed before QEMU handlers can register)."""
    return Command(("mount", "-t", "binfmt_misc", "binfmt_misc", "/proc/sys/fs/binfmt_misc"))


def binfmt_enable(arch: str) -> Command:
    """Return the update-binfmts call that enables QEMU for `arch`."""
    qemu = {
        "arm64": "aarch64",
        "arm": "arm",
        "ppc64le": "ppc64le",
        "s390x": "s390x",
        "riscv64": "riscv64",
    }
    return Command(("update-binfmts", "--enable", f"qemu-{qemu.get(arch, arch)}"))


def qemu_name(arch: str) -> str:
    """Debian's binfmt entry name for a Docker architecture."""
    return {"arm64": "aarch64", "amd64": "x86_64", "386": "i386"}.get(arch, arch)


@dataclass(frozen=True)
class BinfmtEntry:
    enabled: bool
    interpreter: str


def parse_binfmt_entry(text: str) -> BinfmtEntry:
    """Parse a /proc/sys/fs/binfmt_misc entry ("enabled", "interpreter /usr/bin/...")."""
    lines = text.splitlines()
    interpreter = next((ln.split(None, 1)[1] for ln in lines if ln.startswith("interpreter ")), "")
    return BinfmtEntry(
        enabled=bool(lines) and lines[0].strip() == "enabled", interpreter=interpreter
    )


def orphaned_bridges(links: list[dict[str, object]], network_ids: list[str]) -> tuple[str, ...]:
    """Docker bridges (`br-<12 hex of a network id>`) whose network the engine no longer knows.

    They are left in the kernel when an engine's state is lost, and still claim their subnets,
    so new networks fail with "could not find an available, non-overlapping IPv4 address pool".
    Only bridges that are down (nothing attached) are returned.
    """
    known = {n[:12] for n in network_ids}
    found = []
    for link in links:
        name = str(link.get("ifname", ""))
        if not re.fullmatch(r"br-[0-9a-f]{12}", name):
            continue
        if name[3:] in known or str(link.get("operstate", "")).upper() == "UP":
            continue
        found.append(name)
    return tuple(found)
