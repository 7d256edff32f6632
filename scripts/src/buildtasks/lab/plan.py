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
from buildtasks.refs import BaseRef, is_loopback
from buildtasks.tools import install_line

# ------------------------------------------------------------------ packages

#: Executable -> Debian package (with the suite it must come from on Debian bookworm).
DEBIAN_PACKAGES: Mapping[str, str] = {
    "dockerd": "docker.io/trixie",
    "containerd": "containerd/trixie",
    "docker": "docker-cli/trixie",
    "docker-buildx": "docker-buildx/sid",
    "docker-compose": "docker-compose/sid",
    "docker-registry": "docker-registry",
    "debootstrap": "debootstrap",
    "crane": "crane/sid",
    "oras": "oras/sid",
    "cosign": "cosign/sid",
    "gitleaks": "gitleaks/sid",
}
QEMU_PACKAGES = ("qemu-user-static", "binfmt-support")
#: Where Ubuntu's archive names a package otherwise (its `docker-compose` is the old v1).
UBUNTU_NAMES: Mapping[str, str] = {"docker-compose": "docker-compose-v2"}

#: Extra suites. Their pins (`apt_pins`) keep everything else on the machine's own suite.
EXTRA_SOURCES = """\
Types: deb
URIs: {mirror}
Suites: trixie sid
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
"""
#: Below 100: never upgrades an installed package, installs one only when no other suite has it.
OTHER_PACKAGES_PRIORITY = 50
#: 990, the priority of a target release: the lab's own packages follow their suite, updates
#: included, even on a machine that sets APT::Default-Release. Below 1000: never a downgrade.
LAB_PACKAGES_PRIORITY = 990


def apt_pins(packages: Mapping[str, str] = DEBIAN_PACKAGES) -> str:
    """Return the apt preferences that tie each lab package to the suite it comes from.

    `packages` maps tools to `name/suite` specs. The named packages get `LAB_PACKAGES_PRIORITY`
    from their suite, so `apt-get upgrade` brings their security fixes; every other package
    stays below 100 in those suites, so nothing else (libc6, runc, ...) is ever pulled from them.
    """
    by_suite: dict[str, list[str]] = {}
    for spec in packages.values():
        name, _, suite = spec.partition("/")
        if suite:
            by_suite.setdefault(suite, [])
            if name not in by_suite[suite]:
                by_suite[suite].append(name)
    stanzas = [
        f"Package: {' '.join(names)}\nPin: release n={suite}\nPin-Priority: {LAB_PACKAGES_PRIORITY}\n"
        for suite, names in by_suite.items()
    ]
    stanzas += [
        f"Package: *\nPin: release n={suite}\nPin-Priority: {OTHER_PACKAGES_PRIORITY}\n"
        for suite in by_suite
    ]
    return "\n".join(stanzas)


EXTRA_PINS = apt_pins()
SOURCES_FILE = "/etc/apt/sources.list.d/buildtasks-lab.sources"
PINS_FILE = "/etc/apt/preferences.d/buildtasks-lab"

#: The oldest engine whose docker driver builds multi-platform images and exports caches.
MIN_ENGINE = (25, 0)

#: The host families lab.up sets up (it installs with apt and starts daemons itself).
LAB_FAMILIES = ("debian", "ubuntu")

#: What a user without the lab still has, and what only the lab gives.
WITHOUT_LAB = (
    "works without the lab, against your own engine and registry: docker.build, "
    "nox -s image_tests, docker.scan and docker.sbom (trivy fetches its DB), docker.push, "
    "docker.sign and docker.release to ghcr.io or docker.io",
    "needs the lab: the offline extras (the 127.0.0.1:5000 registry mirror, base-image "
    "stand-ins, the test vulnerability DB, the classic-store engine) and the lab-marked tests",
)


def elsewhere_lines(family: str, names: Sequence[str]) -> tuple[str, ...]:
    """What lab.up tells a host it does not set up: one install line per tool, then the rest."""
    width = max((len(n) for n in names), default=0)
    return (
        *(f"lab: {name.ljust(width)}  {install_line(name, family)}" for name in names),
        *(f"lab: {line}" for line in WITHOUT_LAB),
        "lab: then `uv run invoke tools.check` says what this machine has",
    )


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
    names = [s if debian else UBUNTU_NAMES.get(s.split("/")[0], s.split("/")[0]) for s in specs]
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


#: The daemon.json keys dockerd re-reads on SIGHUP; any other change needs a restart.
RELOADABLE_KEYS = frozenset({"registry-mirrors"})
#: Where dockerd records its pid unless started with --pidfile (systemd's unit keeps it too).
DOCKER_PIDFILE = Path("/var/run/docker.pid")


def check_lab_registry(address: str) -> str:
    """Return `address` if the lab may serve its registry there, else raise `ConfigError`.

    The lab registry has no authentication and the engine trusts it as its docker.io mirror:
    on any other interface, anyone who can reach the port could replace `python:3.11-slim`
    in every build on this machine. Only loopback (`localhost`, 127.0.0.0/8, `::1`) with a
    port is accepted.
    """
    if address.startswith("["):
        host, sep, port = address[1:].partition("]:")
    else:
        host, sep, port = address.partition(":") if address.count(":") == 1 else (address, "", "")
    if not (sep and host and is_loopback(host) and port.isdigit() and 0 < int(port) < 65536):
        raise ConfigError(
            f"lab registry {address!r} is not a loopback address with a port: the lab registry "
            "has no authentication and is the engine's docker.io mirror; set "
            '[tool.buildtasks.lab] registry to "127.0.0.1:<port>" (or "[::1]:<port>")'
        )
    return address


def lab_mirror(address: str) -> str:
    """The engine's mirror URL for the lab registry at `address`."""
    return f"http://{address}"


def _same_mirror(a: object, b: str) -> bool:
    return str(a).rstrip("/") == b.rstrip("/")


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
        if not any(_same_mirror(m, mirror) for m in mirrors):
            mirrors.insert(0, mirror)
        config["registry-mirrors"] = mirrors
    return config


def daemon_config_without(existing: Mapping[str, object], mirror: str) -> dict[str, object]:
    """Take the lab's `mirror` out of a daemon.json, keeping every other key and mirror.

    `features.containerd-snapshotter` stays: turning the containerd image store off would hide
    every image pulled or built since it was turned on (they live in containerd, not overlay2).
    The key stays, as `[]` when the lab's was the only mirror: on SIGHUP dockerd re-reads only
    the keys present in the file, so a removed key would leave the mirror in use.
    """
    config = dict(existing)
    mirrors = config.get("registry-mirrors")
    if isinstance(mirrors, list):
        config["registry-mirrors"] = [m for m in mirrors if not _same_mirror(m, mirror)]
    return config


def engine_change(before: Mapping[str, object], after: Mapping[str, object]) -> str:
    """How the engine takes a daemon.json change: "" (none), "reload" (SIGHUP) or "restart"."""
    keys = {k for k in set(before) | set(after) if before.get(k) != after.get(k)}
    if not keys:
        return ""
    return "reload" if keys <= RELOADABLE_KEYS else "restart"


def mirror_listed(mirrors: Sequence[object], mirror: str) -> bool:
    """Whether `docker info`'s mirrors (`http://127.0.0.1:5000/`) include `mirror`."""
    return any(_same_mirror(m, mirror) for m in mirrors)


def image_store(driver_status: str) -> str:
    """The engine's image store, "containerd" or "classic", from `docker info`'s DriverStatus.

    Any rendering works (`{{.DriverStatus}}`, `{{json .DriverStatus}}`, `{{json .}}`): the
    containerd store names its snapshotter there (`io.containerd.snapshotter.v1`).
    """
    return "containerd" if "io.containerd.snapshotter" in driver_status else "classic"


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


# ------------------------------------------------------------------ the registry's user

#: Debian's docker-registry package creates the first; the lab creates the second when neither
#: exists (a registry binary from elsewhere).
REGISTRY_USERS = ("docker-registry", "buildtasks-registry")
#: Where a root lab keeps the registry's config and storage: the unprivileged registry cannot
#: reach the lab directory under root's home (mode 0700).
SYSTEM_REGISTRY_DIR = Path("/var/lib/buildtasks-lab")


@dataclass(frozen=True)
class RegistryPaths:
    config: Path
    storage: Path


def registry_paths(
    home: Path, *, privileged: bool, system_dir: Path = SYSTEM_REGISTRY_DIR
) -> RegistryPaths:
    """Where the registry's config and storage go: `system_dir` when lab.up runs as root (the
    registry then runs as its own user), else the lab directory of the user running it."""
    directory = system_dir if privileged else home
    return RegistryPaths(directory / "registry.yml", directory / "registry")


def useradd(name: str) -> Command:
    """Return the creation of a locked system user (and group) with no home and no shell."""
    return Command(
        (
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
            name,
        ),
        hint="create an unprivileged user for the lab registry yourself",
    )


def chown_tree(path: Path, uid: int, gid: int) -> Command:
    """Return the recursive chown that gives the registry its storage."""
    return Command(("chown", "-R", "--no-dereference", f"{uid}:{gid}", str(path)))


def registry_command(
    registry_bin: str, config: Path, *, uid: int | None = None, gid: int | None = None
) -> tuple[str, ...]:
    """Return the registry's argv: through `setpriv` as `uid`:`gid` when given.

    setpriv execs the registry (same pid, so the state file's pid is the registry's), with no
    supplementary groups, no capabilities (bounding set emptied too), no_new_privs and a clean
    environment.
    """
    serve = (registry_bin, "serve", str(config))
    if uid is None or gid is None:
        return serve
    return (
        "setpriv",
        f"--reuid={uid}",
        f"--regid={gid}",
        "--clear-groups",
        "--no-new-privs",
        "--inh-caps=-all",
        "--bounding-set=-all",
        "--reset-env",
        *serve,
    )


def status_uid(text: str) -> int | None:
    """The real uid in a /proc/<pid>/status text (None when absent)."""
    match = re.search(r"^Uid:\s+(\d+)", text, re.MULTILINE)
    return int(match.group(1)) if match else None


# ------------------------------------------------------------------ what lab.down leaves


def lab_package_names() -> tuple[str, ...]:
    """The Debian packages lab.up may install (without their suites)."""
    names = [spec.split("/")[0] for spec in DEBIAN_PACKAGES.values()]
    return tuple(dict.fromkeys([*names, *QEMU_PACKAGES]))


def dpkg_query(names: Sequence[str]) -> Command:
    """Return the dpkg query for the status and version of `names`."""
    return Command(
        ("dpkg-query", "-W", "-f", "${db:Status-Abbrev} ${Package} ${Version}\n", *names)
    )


def installed_packages(text: str) -> tuple[str, ...]:
    """`name version` of each installed package in `dpkg_query` output."""
    found = []
    for line in text.splitlines():
        parts = line.split()
        if len(parts) == 3 and parts[0].startswith("ii"):
            found.append(f"{parts[1]} {parts[2]}")
    return tuple(found)


@dataclass(frozen=True)
class Leftovers:
    """What stays on the machine after lab.down (all facts, gathered by the caller)."""

    packages: tuple[str, ...] = ()
    engine_running: bool = False  # an engine lab.down did not stop
    containerd_store: bool = False  # daemon.json still turns the containerd image store on
    other_mirrors: tuple[str, ...] = ()
    apt_files: tuple[str, ...] = ()
    registry_storage: str = ""
    bases_cache: str = ""
    qemu: tuple[str, ...] = ()


def leftover_lines(left: Leftovers) -> tuple[str, ...]:
    """One line per thing lab.down leaves behind, with how to remove it."""
    lines = []
    if left.packages:
        lines.append(
            f"packages stay installed: {', '.join(left.packages)} (lab.down never removes packages)"
        )
    if left.engine_running:
        lines.append("the Docker engine keeps running: lab.up did not start it")
    if left.containerd_store:
        lines.append(
            "daemon.json keeps features.containerd-snapshotter=true: turning it off hides every "
            "image stored since; remove it yourself and restart the engine if you want overlay2"
        )
    if left.other_mirrors:
        lines.append(f"daemon.json keeps your other mirrors: {', '.join(left.other_mirrors)}")
    if left.apt_files:
        lines.append(
            f"apt sources and pins stay: {', '.join(left.apt_files)} (they keep the lab's "
            "packages updated; `lab.down --purge-apt` removes them)"
        )
    if left.registry_storage:
        lines.append(f"registry data stays in {left.registry_storage}")
    if left.bases_cache:
        lines.append(f"stand-in layers stay cached in {left.bases_cache}")
    if left.qemu:
        lines.append(f"QEMU binfmt handlers stay enabled: {', '.join(left.qemu)}")
    return tuple(lines)


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
