"""Bring the local lab up, report on it and take down what it started.

The lab is the project's embedded default, like SQLite for a database: a Docker engine with
the containerd image store, a registry on 127.0.0.1:5000 wired in as the docker.io mirror,
base-image stand-ins seeded into it when no upstream registry is reachable, and QEMU on request.
Everything is idempotent: a part that is already there is reported and left alone.
On a GitHub-hosted runner (`hosted_plan.github_hosted`) the lab is the runner's own engine, given the
containerd image store; `buildtasks.lab.hosted` does that, and nothing else here runs.

The lab writes what builds need to know into its state file (`buildtasks.labstate`); builds
read that file and never import this package.
"""

from __future__ import annotations

import contextlib
import json
import os
import pwd
import shutil
import signal
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from buildtasks import tools
from buildtasks.buildx import buildx_version
from buildtasks.command import Command
from buildtasks.config import Config
from buildtasks.errors import BuildtasksError, ToolNotFound
from buildtasks.files import write_atomic
from buildtasks.lab import plan
from buildtasks.lab.engines import SideEngine
from buildtasks.lab.files import DAEMON_JSON, read_daemon_json, write_daemon_json
from buildtasks.lab.hosted import HostedLab
from buildtasks.lab.hosted_plan import github_hosted
from buildtasks.lab.probes import (
    apt_sources_text,
    engine_running,
    foreign_platforms,
    is_root,
    pid_alive,
    process_cmdline,
    process_uid,
    read_text,
    spawn,
    stop_pid,
    upstream_reachable,
    wait_for,
)
from buildtasks.lab.standins import Seeder, seed_refs
from buildtasks.labstate import State, lab_home
from buildtasks.refs import parse_base_ref
from buildtasks.registry import registry_up
from buildtasks.runner import Runner

# ------------------------------------------------------------------ the lab


@dataclass
class Lab:
    """The lab for one configuration, run through one runner."""

    config: Config
    runner: Runner
    home: Path = field(default_factory=lab_home)
    #: The kind of host (`tools.host_family`): lab.up sets up Debian and Ubuntu only.
    family: str = field(default_factory=tools.host_family)
    #: Where a root lab keeps the registry's config and storage.
    registry_dir: Path = plan.SYSTEM_REGISTRY_DIR
    #: A GitHub-hosted runner (`hosted_plan.github_hosted`): its engine is configured, nothing
    #: is installed or started (`lab.hosted`).
    hosted: bool = field(default_factory=lambda: github_hosted(os.environ))

    @property
    def on_runner(self) -> HostedLab:
        """The lab's parts on a GitHub-hosted runner: its own engine, configured."""
        return HostedLab(self.config, self.runner, self.home, self.detect_ca)

    @property
    def registry(self) -> str:
        """The lab registry's address; refused unless it is a loopback one."""
        return plan.check_lab_registry(self.config.lab.registry)

    @property
    def classic(self) -> SideEngine:
        """The second engine, with the classic image store (`lab.up --classic-engine`)."""
        return SideEngine(self.runner, self.home, mirror=plan.lab_mirror(self.registry))

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
        plugin_dirs = (
            "/usr/libexec/docker/cli-plugins",
            "/usr/lib/docker/cli-plugins",
            "/usr/local/lib/docker/cli-plugins",
            str(Path.home() / ".docker/cli-plugins"),
        )
        for plugin in ("docker-buildx", "docker-compose"):
            if not any(Path(d, plugin).exists() for d in plugin_dirs):
                missing.append(plugin)
        if qemu and not Path("/usr/bin/qemu-aarch64-static").exists():
            missing += list(plan.QEMU_PACKAGES)
        return missing

    def refuse_host(self, names: Sequence[str]) -> None:
        """Say what to install on a host lab.up does not set up, and what works without it."""
        for line in plan.elsewhere_lines(self.family, names):
            self.runner.say(line)
        kind = {"macos": "macOS", "windows": "Windows", "linux": "a Linux without apt-get"}
        raise ToolNotFound(
            f"lab.up sets up Debian and Ubuntu hosts, not {kind.get(self.family, self.family)}: "
            "install the tools listed above instead (the lab is optional)"
        )

    def install(self, *, qemu: bool) -> None:
        self.refresh_pins()
        missing = self.missing_tools(qemu=qemu)
        if not missing:
            self.runner.say(
                "lab: packages   ok (engine, buildx, compose, registry, debootstrap, crane, oras, cosign, "
                "gitleaks)"
            )
            return
        if not shutil.which("apt-get"):
            self.refuse_host(missing)
        if not is_root():
            raise BuildtasksError(
                f"lab.up must install {', '.join(missing)}: rerun as root (sudo -E uv run invoke lab.up) or install them"
            )
        os_release = tools.parse_os_release(Path("/etc/os-release").read_text(encoding="utf-8"))
        self.runner.say(f"lab: installing {', '.join(missing)}")
        if os_release.get("ID") == "debian" and not self.runner.dry:
            mirror = plan.debian_mirror(apt_sources_text(), os_release.get("VERSION_CODENAME", ""))
            if not mirror:
                raise BuildtasksError(
                    "no Debian archive in the apt sources to add trixie and sid from; "
                    f"install {', '.join(missing)} yourself"
                )
            write_atomic(Path(plan.SOURCES_FILE), plan.EXTRA_SOURCES.format(mirror=mirror))
            write_atomic(Path(plan.PINS_FILE), plan.EXTRA_PINS)
        self.runner.run(
            Command(("apt-get", "update", "-q"), env={"DEBIAN_FRONTEND": "noninteractive"})
        )
        self.runner.run(plan.apt_install(plan.apt_packages(missing, os_release)))

    def refresh_pins(self) -> None:
        """Rewrite the lab's apt pins when an older lab.up wrote different ones."""
        pins = Path(plan.PINS_FILE)
        if not Path(plan.SOURCES_FILE).is_file() or read_text(pins) == plan.EXTRA_PINS:
            return
        if not is_root():
            self.runner.say(
                f"lab: apt pins   {pins} is outdated (the lab's packages get no updates): rerun lab.up as root"
            )
            return
        self.runner.say(
            f"lab: apt pins   rewriting {pins}: the lab's packages follow their suite, nothing else"
        )
        if not self.runner.dry:
            write_atomic(pins, plan.EXTRA_PINS)

    # -------------------------------------------------------------- registry

    def registry_user(self) -> tuple[str, int | str, int | str]:
        """The unprivileged user the registry runs as: (name, uid, gid); created if none exists."""
        for name in plan.REGISTRY_USERS:
            with contextlib.suppress(KeyError):
                entry = pwd.getpwnam(name)
                return name, entry.pw_uid, entry.pw_gid
        name = plan.REGISTRY_USERS[-1]
        self.runner.run(plan.useradd(name))
        if self.runner.dry:
            return name, name, name
        entry = pwd.getpwnam(name)
        return name, entry.pw_uid, entry.pw_gid

    def _registry_runs_as_root(self, pid: int) -> bool:
        """Whether `pid` is a registry an older lab.up started as root (replaced by lab.up)."""
        return is_root() and process_uid(pid) == 0 and "registry" in process_cmdline(pid)

    def _registry_owner(self, pid: int | None) -> str:
        """`lab.status`'s note on who started the registry and which user it runs as."""
        if not pid or not pid_alive(pid):
            return ""
        uid = process_uid(pid)
        if uid == 0:
            return " (started by lab, runs as root: rerun `sudo -E uv run invoke lab.up`)"
        try:
            user = pwd.getpwuid(uid).pw_name if uid is not None else "?"
        except KeyError:
            user = str(uid)
        return f" (started by lab, runs as {user})"

    def start_registry(self, state: State) -> None:
        pid = state.started.get("registry")
        privileged = is_root()
        paths = plan.registry_paths(self.home, privileged=privileged, system_dir=self.registry_dir)
        # Retention reads the registry's storage through its config (docs/retention.md).
        state.registry_config = str(paths.config) if pid or not registry_up(self.registry) else ""
        if registry_up(self.registry):
            if pid is None or not self._registry_runs_as_root(pid):
                owner = "lab" if pid else "already running"
                self.runner.say(f"lab: registry   ok  http://{self.registry} ({owner})")
                return
            self.runner.say(
                "lab: registry   runs as root (started by an older lab.up): restarting it unprivileged"
            )
            self._stop_pid("registry", pid)
            del state.started["registry"]
            if not self.runner.dry:
                wait_for(lambda: not registry_up(self.registry), "registry shutdown", 15)
        registry_bin = shutil.which("docker-registry") or shutil.which("registry")
        if not registry_bin:
            raise ToolNotFound(
                "docker-registry not found: run `uv run invoke lab.up` as root to install it"
            )
        user, uid, gid = self.registry_user() if privileged else ("", None, None)
        self._registry_files(paths, uid, gid)
        argv = plan.registry_command(registry_bin, paths.config, uid=uid, gid=gid)
        self.runner.say(f"+ {Command(argv).shell()} &" + (f"  # as {user}" if user else ""))
        if self.runner.dry:
            return
        log = self.home / "registry.log"
        state.started["registry"] = spawn(argv, log)
        wait_for(lambda: registry_up(self.registry), f"registry on {self.registry}", 15, log)
        self.runner.say(
            f"lab: registry   started http://{self.registry}"
            + (f" as {user}" if user else "")
            + f" (storage {paths.storage})"
        )

    def _registry_files(
        self, paths: plan.RegistryPaths, uid: int | str | None, gid: int | str | None
    ) -> None:
        """Write the registry's config and give it its storage (moved from an older lab's home)."""
        old = self.home / "registry"
        if old != paths.storage and old.is_dir() and not paths.storage.exists():
            self.runner.say(f"lab: registry   moving its data from {old} to {paths.storage}")
            if not self.runner.dry:
                paths.storage.parent.mkdir(mode=0o755, parents=True, exist_ok=True)
                shutil.move(old, paths.storage)
                (self.home / "registry.yml").unlink(missing_ok=True)
        text = plan.registry_config(self.registry, paths.storage)
        if not (isinstance(uid, int) and isinstance(gid, int)):  # unprivileged lab (or dry)
            if not self.runner.dry:
                paths.storage.mkdir(parents=True, exist_ok=True)
                write_atomic(paths.config, text)
            return
        if not self.runner.dry:
            paths.storage.mkdir(mode=0o700, parents=True, exist_ok=True)
            # Owned by root, readable by the registry's group: it cannot rewrite its own address.
            write_atomic(paths.config, text, mode=0o640, owner=(0, gid))
        self.runner.run(plan.chown_tree(paths.storage, uid, gid))
        if not self.runner.dry:
            paths.storage.chmod(0o700)

    # -------------------------------------------------------------- engine

    def configure_engine(self) -> str:
        """Merge the lab's daemon.json needs; return how the engine takes the change:
        "" (none), "reload" (the mirror only) or "restart"."""
        existing = read_daemon_json(DAEMON_JSON)
        mirror = plan.lab_mirror(self.registry)
        wanted = plan.daemon_config(existing, mirror)
        change = plan.engine_change(existing, wanted)
        if not change:
            return ""
        self.runner.say(
            f"lab: writing {DAEMON_JSON} (containerd image store, docker.io mirror {mirror})"
        )
        if not self.runner.dry:
            if not is_root():
                raise BuildtasksError(f"lab.up must write {DAEMON_JSON}: rerun as root")
            write_daemon_json(wanted, DAEMON_JSON)
        return change

    def engine_pid(self, state: State) -> int | None:
        """The running engine's pid: the lab's own, else the one in dockerd's pid file."""
        ours = state.started.get("dockerd")
        if ours and pid_alive(ours):
            return ours
        text = read_text(plan.DOCKER_PIDFILE).strip()
        pid = int(text) if text.isdigit() else None
        return pid if pid and "dockerd" in process_cmdline(pid) else None

    def engine_mirrors(self) -> list[str]:
        """The mirrors the running engine uses, as `docker info` reports them."""
        try:
            text = self.runner.output(
                Command(("docker", "info", "--format", "{{json .RegistryConfig.Mirrors}}")),
                timeout=20,
            )
            return list(json.loads(text or "null") or [])
        except (BuildtasksError, json.JSONDecodeError):
            return []

    def reload_engine(self, state: State, mirror: str, *, listed: bool) -> None:
        """SIGHUP the engine so it re-reads registry-mirrors, then wait for `docker info`
        to list `mirror` (or not, with `listed=False`). Containers keep running."""
        pid = self.engine_pid(state)
        if not pid:
            self.runner.say(
                "lab: engine     daemon.json changed: reload your engine to apply it "
                "(systemctl reload docker, or kill -HUP its pid)"
            )
            return
        self.runner.say(f"+ kill -HUP {pid}  # dockerd re-reads registry-mirrors")
        if self.runner.dry:
            return
        os.kill(pid, signal.SIGHUP)
        wait_for(
            lambda: plan.mirror_listed(self.engine_mirrors(), mirror) == listed,
            f"the engine {'adding' if listed else 'dropping'} mirror {mirror}",
            15,
        )
        self.runner.say(
            f"lab: engine     reloaded: mirror {mirror} {'in use' if listed else 'dropped'}"
        )

    def start_engine(self, state: State, *, change: str) -> None:
        version = engine_running(self.runner)
        ours = state.started.get("dockerd")
        if version and change == "restart" and ours and pid_alive(ours):
            self.runner.say("lab: engine     restarting to apply the new daemon.json")
            self._stop_pid("dockerd", ours)
            del state.started["dockerd"]
            wait_for(lambda: not engine_running(self.runner), "engine shutdown", 30)
            version = ""
        if version:
            note = "lab" if ours else "already running"
            if change == "restart" and not ours:
                self.runner.say(
                    "lab: engine     daemon.json changed: restart your engine to apply it"
                )
            elif change == "reload":
                self.reload_engine(state, plan.lab_mirror(self.registry), listed=True)
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

    def up(
        self,
        *,
        qemu: bool = False,
        platforms: Sequence[str] = ("linux/amd64",),
        classic_engine: bool = False,
    ) -> State:
        if self.family not in plan.LAB_FAMILIES and self.family != "linux":
            self.refuse_host(tools.REPORTED)
        if self.hosted:
            return self.on_runner.up(qemu=qemu, classic_engine=classic_engine)
        plan.check_lab_registry(self.config.lab.registry)  # before anything changes
        state = State.load(self.home)
        self.install(qemu=qemu)
        changed = self.configure_engine()
        self.start_registry(state)
        state.registry = self.registry
        self.start_engine(state, change=changed)
        self.prune_orphaned_bridges()
        if classic_engine or self.config.lab.classic_engine:
            if not is_root() and not self.runner.dry:
                raise BuildtasksError("the classic-store engine needs root: rerun lab.up as root")
            self.classic.up(state)
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
        stop_pid(pid, self.runner, part)

    def down(self, *, purge_apt: bool = False) -> None:
        """Take the lab's mirror out of the engine, stop what lab.up started, report the rest."""
        state = State.load(self.home)
        ours = state.started.get("dockerd")
        engine_stays = not (ours and pid_alive(ours))
        changed, daemon = self.unconfigure_engine(state)
        if changed and engine_stays and engine_running(self.runner):
            self.reload_engine(state, plan.lab_mirror(state.registry), listed=False)
        if not state.started:
            self.runner.say("lab: nothing to stop (lab.up started no process)")
        self.classic.down(state)
        for part in ("dockerd", "registry"):
            if pid := state.started.pop(part, None):
                self._stop_pid(part, pid)
                self.runner.say(f"lab: stopped {part} (pid {pid})")
        if purge_apt:
            self.purge_apt()
        if not self.runner.dry:
            state.save(self.home)
        left = self.leftovers(daemon, engine_stopped=not engine_stays, apt_purged=purge_apt)
        for line in plan.leftover_lines(left):
            self.runner.say(f"lab: left       {line}")

    def unconfigure_engine(self, state: State) -> tuple[bool, dict[str, object]]:
        """Remove the mirror this lab wired into daemon.json.

        Only a lab whose state records a registry (lab.up ran with this lab directory) does.
        Returns whether the file changes, and daemon.json as it is afterwards.
        """
        try:
            existing = read_daemon_json(DAEMON_JSON)
        except BuildtasksError as exc:  # still stop the daemons
            self.runner.say(f"lab: {exc}")
            return False, {}
        if not state.registry:
            return False, existing
        mirror = plan.lab_mirror(state.registry)
        wanted = plan.daemon_config_without(existing, mirror)
        if wanted == existing:
            return False, existing
        if not is_root() and not self.runner.dry:
            self.runner.say(
                f"lab: cannot take mirror {mirror} out of {DAEMON_JSON}: rerun lab.down as root"
            )
            return False, existing
        self.runner.say(f"lab: removing mirror {mirror} from {DAEMON_JSON}")
        if not self.runner.dry:
            write_daemon_json(wanted, DAEMON_JSON)
        return True, wanted

    def purge_apt(self) -> None:
        """Delete the apt sources and pins lab.up added."""
        present = [Path(p) for p in (plan.SOURCES_FILE, plan.PINS_FILE) if Path(p).exists()]
        if not present:
            self.runner.say("lab: apt        no lab sources or pins to remove")
            return
        if not is_root() and not self.runner.dry:
            raise BuildtasksError(
                f"lab.down --purge-apt must delete {', '.join(map(str, present))}: rerun as root"
            )
        for path in present:
            self.runner.say(f"+ rm {path}")
            if not self.runner.dry:
                path.unlink()
        self.runner.say(
            "lab: apt        removed the trixie/sid sources and pins: the lab's packages get no "
            "more updates from those suites (run `apt-get update` to drop their lists)"
        )

    def leftovers(
        self, daemon: dict[str, object], *, engine_stopped: bool, apt_purged: bool
    ) -> plan.Leftovers:
        """Gather what lab.down leaves on the machine (`daemon`: daemon.json after lab.down)."""
        packages: tuple[str, ...] = ()
        if shutil.which("dpkg-query"):
            probe = Runner(dry=False, echo=False, out=self.runner.out, which=self.runner.which)
            result = probe.run(
                plan.dpkg_query(plan.lab_package_names()), capture=True, check=False, quiet=True
            )
            packages = plan.installed_packages(result.stdout)
        features = daemon.get("features")
        mirrors = daemon.get("registry-mirrors")
        storage = [
            str(p)
            for p in (
                plan.registry_paths(
                    self.home, privileged=True, system_dir=self.registry_dir
                ).storage,
                self.home / "registry",
            )
            if p.is_dir()
        ]
        bases = self.home / "bases"
        qemu = tuple(
            arch
            for arch in ("arm64",)
            if plan.parse_binfmt_entry(
                read_text(Path("/proc/sys/fs/binfmt_misc") / f"qemu-{plan.qemu_name(arch)}")
            ).enabled
        )
        return plan.Leftovers(
            packages=packages,
            engine_running=not engine_stopped and bool(engine_running(self.runner)),
            containerd_store=isinstance(features, dict)
            and features.get("containerd-snapshotter") is True,
            other_mirrors=tuple(map(str, mirrors)) if isinstance(mirrors, list) else (),
            apt_files=()
            if apt_purged
            else tuple(p for p in (plan.SOURCES_FILE, plan.PINS_FILE) if Path(p).exists()),
            registry_storage=", ".join(storage),
            bases_cache=str(bases) if bases.is_dir() else "",
            qemu=qemu,
        )

    def status(self) -> list[tuple[str, bool, str]]:
        """Return (part, ok, detail) rows for every part of the lab."""
        if self.hosted:
            return self.on_runner.status()
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
            store = plan.image_store(json.dumps(data.get("DriverStatus")))
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
                + (self._registry_owner(state.started.get("registry")) if up else ""),
            )
        )
        for ref in seed_refs(self.config):
            platforms = state.seeded.get(ref)
            rows.append(
                (
                    f"base {ref}",
                    bool(platforms) or upstream_reachable(parse_base_ref(ref).registry),
                    f"stand-in for {', '.join(platforms)}" if platforms else "not seeded",
                )
            )
        if state.engines or self.config.lab.classic_engine:
            rows.append(self.classic.status())
        arm = self.binfmt_enabled("arm64")
        rows.append(("qemu arm64", arm, "enabled" if arm else "off (lab.up --qemu enables it)"))
        ca = state.ca_cert or self.detect_ca()
        rows.append(("proxy CA", True, ca or "none needed"))
        return rows
