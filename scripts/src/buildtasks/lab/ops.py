"""Bring the local lab up, report on it and take down what it started.

The lab is the project's embedded default, like SQLite for a database: a Docker engine with
the containerd image store, a registry on 127.0.0.1:5000 wired in as the docker.io mirror,
base-image stand-ins seeded into it when no upstream registry is reachable, and QEMU on request.
Everything is idempotent: a part that is already there is reported and left alone.

The lab writes what builds need to know into its state file (`buildtasks.labstate`); builds
read that file and never import this package.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from buildtasks.buildx import buildx_version
from buildtasks.command import Command
from buildtasks.config import Config
from buildtasks.errors import BuildtasksError, ToolNotFound
from buildtasks.lab import plan
from buildtasks.lab.probes import (
    apt_sources_text,
    engine_running,
    foreign_platforms,
    is_root,
    pid_alive,
    spawn,
    upstream_reachable,
    wait_for,
)
from buildtasks.lab.standins import Seeder
from buildtasks.labstate import State, lab_home
from buildtasks.refs import is_loopback, parse_base_ref
from buildtasks.registry import registry_up
from buildtasks.runner import Runner

DAEMON_JSON = Path("/etc/docker/daemon.json")


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

    @property
    def seeder(self) -> Seeder:
        return Seeder(self.config, self.runner, self.home, self.ensure_qemu)

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
            try:
                version = self.runner.output(Command(("dockerd", "--version")), timeout=20)
            except BuildtasksError:
                version = ""
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
            mirror = plan.debian_mirror(apt_sources_text(), os_release.get("VERSION_CODENAME", ""))
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
        mirror = f"http://{self.registry}" if is_loopback(self.registry) else None
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
        foreign = foreign_platforms(platforms)
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
        self.seeder.seed(state, platforms)
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
            buildx = self.runner.output(buildx_version(), timeout=20)
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
                    bool(platforms) or upstream_reachable(parse_base_ref(ref).registry),
                    f"stand-in for {', '.join(platforms)}" if platforms else "not seeded",
                )
            )
        arm = self.binfmt_enabled("arm64")
        rows.append(("qemu arm64", arm, "enabled" if arm else "off (lab.up --qemu enables it)"))
        ca = state.ca_cert or self.detect_ca()
        rows.append(("proxy CA", True, ca or "none needed"))
        return rows
