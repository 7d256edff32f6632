"""Docker engines beside the lab's: the classic (overlay2) image store, and others like it.

Docker Engine 29 and later use the containerd image store on fresh installs, while upgraded
hosts keep the classic store; the tasks must work on both, and the test suite proves it on
the classic engine `lab.up --classic-engine` starts. It also stands in for a second, remote
builder. The same parts start engines the lab does not own (`SideEngine` with its own layout):
the test suite's "no lab" engine, with the containerd store, no mirror and a TCP endpoint,
stands in for Docker Desktop or a remote Docker host.

It has everything of its own: socket, data root, exec root, pid file and bridge. Never
`--bridge=none`: a second dockerd started that way deletes the host's `docker0`, and every
container of the first engine then fails. Its bridge gets the NAT and forwarding rules the
engine would add itself with `--iptables=true`, which it cannot have here without fighting the
first engine over the same chains; `lab.down` removes them again.

The plan functions are pure; `ClassicEngine.up` / `.down` / `.status` run them.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from buildtasks.command import Command
from buildtasks.errors import BuildtasksError, ToolNotFound
from buildtasks.files import write_atomic
from buildtasks.lab.probes import pid_alive, spawn, stop_pid, wait_for
from buildtasks.labstate import State
from buildtasks.runner import Runner

NAME = "classic"


@dataclass(frozen=True)
class EngineLayout:
    """Where a side engine keeps what is its own."""

    data_root: Path = Path("/var/lib/buildtasks-lab/engines") / NAME
    run_dir: Path = Path("/run/buildtasks-lab") / NAME
    bridge: str = "br-bt-classic"
    name: str = NAME
    #: Also listen on TCP (`172.29.0.1:2375`), as a remote engine does: plain HTTP, so only
    #: ever on a host-local address.
    tcp: str = ""
    #: Every network of this engine lives in this range: its default bridge (`address`) and
    #: the /24s of the networks it creates, so one set of rules covers them all.
    pool: str = "172.29.0.0/16"
    #: The default bridge's address.
    address: str = "172.29.0.1/24"

    @property
    def socket(self) -> Path:
        return self.run_dir / "docker.sock"

    @property
    def host(self) -> str:
        """The `DOCKER_HOST` value that selects this engine (its socket)."""
        return f"unix://{self.socket}"

    @property
    def tcp_host(self) -> str:
        """The `DOCKER_HOST` of its TCP endpoint ('' when it has none)."""
        return f"tcp://{self.tcp}" if self.tcp else ""

    @property
    def pidfile(self) -> Path:
        return self.run_dir / "docker.pid"

    @property
    def exec_root(self) -> Path:
        return self.run_dir / "exec"

    @property
    def config_file(self) -> Path:
        return self.data_root.parent / f"{self.name}.json"


def daemon_config(
    mirror: str | None, layout: EngineLayout, *, containerd_store: bool = False
) -> dict[str, object]:
    """A side engine's daemon.json: the lab's mirror (if any), its image store, its range.

    `live-restore` is not about restoring anything here: a dockerd restarted with
    `default-address-pools` and without it deletes the host's `docker0` (moby's
    `configureNetworking` removes "the default bridge interface" by its default name while
    clearing its own stale bridge network), which breaks every container of the first
    engine. Measured on Docker 26.1. So `lab.down` stops this engine's containers itself.
    """
    return {
        **({"registry-mirrors": [mirror]} if mirror else {}),
        "features": {"containerd-snapshotter": containerd_store},
        "default-address-pools": [{"base": layout.pool, "size": 24}],
        "live-restore": True,
    }


def dockerd_argv(dockerd: str, layout: EngineLayout) -> tuple[str, ...]:
    return (
        dockerd,
        "--config-file",
        str(layout.config_file),
        "--data-root",
        str(layout.data_root),
        "--exec-root",
        str(layout.exec_root),
        "--pidfile",
        str(layout.pidfile),
        "--host",
        layout.host,
        "--bridge",
        layout.bridge,
        "--iptables=false",
        "--ip6tables=false",
        # Plain TCP, as on a remote host without TLS; saying so skips dockerd's 15 s warning.
        *(("--host", layout.tcp_host, "--tls=false") if layout.tcp else ()),
    )


def bridge_commands(layout: EngineLayout) -> tuple[Command, ...]:
    """Create the engine's bridge (it must exist before dockerd starts)."""
    return (
        Command(("ip", "link", "add", layout.bridge, "type", "bridge")),
        Command(("ip", "addr", "add", layout.address, "dev", layout.bridge)),
        Command(("ip", "link", "set", layout.bridge, "up")),
    )


def nat_rules(layout: EngineLayout) -> tuple[tuple[str, ...], ...]:
    """The iptables rules that let this engine's containers reach each other and the network.

    Each is (table, chain, match...): masquerade what leaves the engine's range, accept
    forwarding from it (between its containers too) and replies to it. The first engine's
    FORWARD policy is DROP, so without these a second engine's containers reach nothing.
    """
    pool = layout.pool
    return (
        ("nat", "POSTROUTING", "-s", pool, "!", "-d", pool, "-j", "MASQUERADE"),
        ("filter", "FORWARD", "-s", pool, "-j", "ACCEPT"),
        (
            "filter",
            "FORWARD",
            "-d",
            pool,
            "-m",
            "conntrack",
            "--ctstate",
            "RELATED,ESTABLISHED",
            "-j",
            "ACCEPT",
        ),
    )


def iptables(action: str, rule: Sequence[str]) -> Command:
    """`iptables -t TABLE -C|-I|-D CHAIN MATCH...` for one rule of `nat_rules`."""
    table, chain, *match = rule
    return Command(("iptables", "-t", table, action, chain, *match))


def context_name(layout: EngineLayout) -> str:
    """The docker context users select the engine with (`buildtasks-classic`)."""
    return f"buildtasks-{layout.name}"


def context_create(layout: EngineLayout) -> Command:
    name = context_name(layout)
    return Command(
        ("docker", "context", "create", name, "--docker", f"host={layout.host}"),
        hint=f"`docker context rm {name}` and rerun lab.up",
    )


@dataclass
class SideEngine:
    """Start, stop and report one engine beside the lab's (the classic one by default)."""

    runner: Runner
    home: Path
    layout: EngineLayout = EngineLayout()
    #: The lab's docker.io mirror; None for an engine that pulls from the registries itself.
    mirror: str | None = None
    containerd_store: bool = False

    @property
    def store(self) -> str:
        return "containerd" if self.containerd_store else "classic"

    def _say(self, message: str) -> None:
        self.runner.say(f"lab: {self.layout.name:<10} {message}")

    def running(self) -> str:
        """The engine's version when it answers on its socket ('' otherwise)."""
        if not self.layout.socket.exists():
            return ""
        probe = Command(
            ("docker", "--host", self.layout.host, "version", "--format", "{{.Server.Version}}")
        )
        result = Runner(dry=False, echo=False).run(probe, capture=True, check=False, quiet=True)
        return result.stdout.strip() if result.ok else ""

    def up(self, state: State) -> None:
        """Start the engine unless it runs; record its DOCKER_HOST in `state`."""
        name = self.layout.name
        version = self.running()
        if version:
            state.engines[name] = self.layout.host
            self._say(f"ok  Docker {version}, {self.store} image store ({self.layout.host})")
            return
        dockerd = shutil.which("dockerd")
        if not dockerd:
            raise ToolNotFound("dockerd not found: run `uv run invoke lab.up` as root")
        if not self.runner.dry:
            for tool in ("ip", "iptables"):
                self.runner.resolve(tool)
        if not self.runner.dry:
            self.layout.run_dir.mkdir(parents=True, exist_ok=True)
            self.layout.data_root.mkdir(parents=True, exist_ok=True)
            config = daemon_config(self.mirror, self.layout, containerd_store=self.containerd_store)
            write_atomic(self.layout.config_file, json.dumps(config, indent=2))
        if not Path("/sys/class/net", self.layout.bridge).exists():
            for command in bridge_commands(self.layout):
                self.runner.run(command)
        for rule in nat_rules(self.layout):
            exists = (
                not self.runner.dry
                and self.runner.run(iptables("-C", rule), capture=True, check=False, quiet=True).ok
            )
            if not exists:
                self.runner.run(iptables("-I", rule))
        argv = dockerd_argv(dockerd, self.layout)
        self.runner.say(f"+ {Command(argv).shell()} &")
        if self.runner.dry:
            return
        log = self.home / f"dockerd-{name}.log"
        docker0 = Path("/sys/class/net/docker0")
        had_docker0 = docker0.exists()
        state.started[f"dockerd-{name}"] = spawn(argv, log)
        wait_for(lambda: bool(self.running()), f"the {name} engine", 60, log)
        if had_docker0 and not docker0.exists():
            raise BuildtasksError(
                f"starting the {name} engine removed the host's docker0 bridge: restart "
                "the main engine to recreate it, and report this (see docs/lab.md)"
            )
        state.engines[name] = self.layout.host
        self.runner.run(context_create(self.layout), capture=True, check=False, quiet=True)
        self._say(
            f"started Docker {self.running()}, {self.store} image store: "
            f"DOCKER_HOST={self.layout.host} or `docker --context {context_name(self.layout)}`"
        )

    def down(self, state: State) -> None:
        """Stop the engine lab.up started, then remove its bridge, rules and context."""
        name = self.layout.name
        pid = state.started.pop(f"dockerd-{name}", None)
        state.engines.pop(name, None)
        if not pid:
            return
        if pid_alive(pid) and self.running():
            # live-restore keeps containers running past the daemon: stop them first.
            docker = ("docker", "--host", self.layout.host)
            ids = self.runner.output(Command((*docker, "ps", "--quiet"))).split()
            if ids:
                self.runner.run(Command((*docker, "stop", *ids)), capture=True, check=False)
        stop_pid(pid, self.runner, f"dockerd ({name} engine)")
        for rule in nat_rules(self.layout):
            self.runner.run(iptables("-D", rule), capture=True, check=False)
        self.runner.run(
            Command(("ip", "link", "delete", self.layout.bridge)), capture=True, check=False
        )
        self.runner.run(
            Command(("docker", "context", "rm", "--force", context_name(self.layout))),
            capture=True,
            check=False,
        )
        self._say(f"stopped (pid {pid}); its images stay in {self.layout.data_root}")

    def status(self) -> tuple[str, bool, str]:
        part = f"engine {self.layout.name}"
        version = self.running()
        if version:
            return (part, True, f"Docker {version}, {self.store} image store, {self.layout.host}")
        return (part, False, "not running: `uv run invoke lab.up --classic-engine`")
