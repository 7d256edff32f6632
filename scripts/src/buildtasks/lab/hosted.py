"""The lab on a GitHub-hosted runner: configure the engine that is there, install nothing.

A GitHub-hosted runner (`hosted_plan.github_hosted`) comes with Docker (a systemd-managed
dockerd), buildx, and access to docker.io and ghcr.io. So there `lab.up` installs no apt
packages and starts no registry, no stand-ins and no second engine; it makes sure the engine
uses the containerd image store (merging `features.containerd-snapshotter` into
/etc/docker/daemon.json and restarting the engine when it does not) and, with `--qemu` only,
registers QEMU through the pinned `tonistiigi/binfmt` image, as docker/setup-qemu-action does.

The decisions are pure (`hosted_plan.hosted_engine_commands`, `hosted_plan.binfmt_install`);
this module probes the machine, runs them through the runner and waits for the engine.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from buildtasks.buildx import buildx_version
from buildtasks.command import Command
from buildtasks.config import Config
from buildtasks.errors import BuildtasksError, EngineUnavailable
from buildtasks.lab import hosted_plan, plan
from buildtasks.lab.files import DAEMON_JSON
from buildtasks.lab.probes import (
    binfmt_registered,
    engine_running,
    engine_store,
    foreign_platforms,
    is_root,
    read_optional,
    wait_for,
)
from buildtasks.labstate import State
from buildtasks.runner import Runner

#: What `lab.up` and `lab.status` call this kind of host.
HOST = "GitHub-hosted runner"


@dataclass
class HostedLab:
    """`lab.up` and `lab.status` on a GitHub-hosted runner."""

    config: Config
    runner: Runner
    home: Path
    #: The proxy CA builds get (`Lab.detect_ca`).
    detect_ca: Callable[[], str]
    daemon_json: Path = DAEMON_JSON
    #: How long the restarted engine has to answer with the containerd image store.
    restart_timeout: float = 60

    def _say(self, part: str, message: str) -> None:
        self.runner.say(f"lab: {part:<10} {message}")

    # -------------------------------------------------------------- up

    def up(self, *, qemu: bool = False, classic_engine: bool = False) -> State:
        self._say(
            "runner",
            f"{HOST}: configuring its engine; no apt packages, registry, stand-ins "
            "or second engine",
        )
        self.ensure_engine()
        self._say("buildx", f"ok  {self.buildx()}")
        if classic_engine or self.config.lab.classic_engine:
            self._say("classic", f"skipped: no second engine on a {HOST}")
        if qemu:
            self.ensure_qemu(("linux/amd64", "linux/arm64"))
        state = State.load(self.home)
        state.ca_cert = self.detect_ca()
        if state.ca_cert:
            self._say("proxy CA", f"{state.ca_cert} (passed to builds as BuildKit secret 'ca')")
        self._say("base", "no stand-ins: the runner pulls from docker.io and ghcr.io")
        if not self.runner.dry:
            state.save(self.home)
        self.runner.say("lab: ready")
        return state

    def ensure_engine(self) -> None:
        """Give the engine the containerd image store unless it has it; wait until it does."""
        version = engine_running(self.runner)
        if version and plan.engine_version(version) < plan.MIN_ENGINE:
            raise EngineUnavailable(
                f"Docker {version} on this runner is older than "
                f"{'.'.join(map(str, plan.MIN_ENGINE))}: use a newer runner image"
            )
        store = engine_store(self.runner) if version else ""
        if store == "containerd":
            self._say("engine", f"ok  Docker {version} (containerd image store, {HOST})")
            return
        text = self.daemon_text()
        commands = hosted_plan.hosted_engine_commands(
            store, text, path=self.daemon_json, root=is_root()
        )
        self._say(
            "engine",
            (f"Docker {version} uses the classic image store" if version else "no engine answers")
            + ": turning on the containerd image store",
        )
        if hosted_plan.containerd_store_json(text, self.daemon_json) is not None:
            kept = hosted_plan.daemon_json_kept(text, self.daemon_json)
            self._say(
                "engine",
                f"writing {self.daemon_json} (features.containerd-snapshotter=true"
                + (f"; keeping {', '.join(kept)}" if kept else "")
                + ")",
            )
        running = self.running_containers() if version else 0
        if running:
            self._say(
                "engine",
                f"note: the restart stops {running} running container(s), service "
                "containers included",
            )
        for command in commands:
            self.runner.run(command, capture=True)
        if self.runner.dry:
            return
        self.wait_for_containerd_store()
        self._say(
            "engine",
            f"restarted Docker {engine_running(self.runner)} (containerd image store, {HOST})",
        )

    def daemon_text(self) -> str | None:
        """daemon.json as it is (None when absent), through sudo when only root may read it."""
        try:
            return read_optional(self.daemon_json)
        except PermissionError:
            return self.runner.output(
                Command(hosted_plan.as_root(("cat", str(self.daemon_json)), root=is_root()))
            )

    def running_containers(self) -> int:
        try:
            return len(self.runner.output(Command(("docker", "ps", "--quiet"))).split())
        except (BuildtasksError, OSError):
            return 0

    def wait_for_containerd_store(self) -> None:
        """Wait until the restarted engine answers with the containerd store; fail saying which
        of the two it is not doing."""
        try:
            wait_for(
                lambda: engine_store(self.runner) == "containerd",
                "the engine with the containerd image store",
                self.restart_timeout,
            )
        except EngineUnavailable:
            if engine_store(self.runner) == "classic":
                raise EngineUnavailable(
                    "the engine still uses the classic image store after `systemctl restart "
                    f"docker`: does dockerd read {self.daemon_json}? (`systemctl cat docker`: "
                    "a --config-file flag or a feature flag overrides it)"
                ) from None
            raise EngineUnavailable(
                f"the Docker engine did not answer within {self.restart_timeout:.0f}s of "
                "`systemctl restart docker`: see `sudo journalctl -u docker`"
            ) from None

    def buildx(self) -> str:
        try:
            return self.runner.output(buildx_version(), timeout=20)
        except (BuildtasksError, OSError):
            raise EngineUnavailable(
                "buildx is missing on this runner: add docker/setup-buildx-action before lab.up"
            ) from None

    def ensure_qemu(self, platforms: Sequence[str]) -> None:
        """Register QEMU for the foreign `platforms` with `tonistiigi/binfmt` (pinned).

        What docker/setup-qemu-action runs, from here, so that `lab.up --qemu` is the same
        step on a runner as on a laptop. Handlers already there (that action's) count.
        """
        foreign = foreign_platforms(platforms)
        todo = [plan.arch_of(p) for p in foreign if not binfmt_registered(plan.arch_of(p))]
        if not todo:
            if foreign:
                self._say("qemu", f"ok  ({', '.join(foreign)})")
            return
        self.runner.run(hosted_plan.binfmt_install(todo))
        if self.runner.dry:
            return
        missing = [arch for arch in todo if not binfmt_registered(arch)]
        if missing:
            raise EngineUnavailable(
                f"tonistiigi/binfmt registered no QEMU handler for {', '.join(missing)}: "
                "use docker/setup-qemu-action before lab.up"
            )
        self._say(
            "qemu", f"enabled for {', '.join(todo)} ({hosted_plan.BINFMT_IMAGE.split('@')[0]})"
        )

    # -------------------------------------------------------------- status

    def status(self) -> list[tuple[str, bool, str]]:
        """(part, ok, detail) rows: the runner, its engine and store, buildx, QEMU, the CA.

        No packages, registry, stand-ins or second engine rows: they are not part of the lab
        on a GitHub-hosted runner.
        """
        rows = [("runner", True, f"{HOST}: no lab registry, stand-ins or second engine")]
        version = engine_running(self.runner)
        store = engine_store(self.runner) if version else ""
        if not version:
            rows.append(("engine", False, "not running: run `uv run invoke lab.up`"))
        elif store != "containerd":
            rows.append(
                (
                    "engine",
                    False,
                    f"Docker {version}, {store or 'unknown'} image store: "
                    "run `uv run invoke lab.up`",
                )
            )
        else:
            rows.append(("engine", True, f"Docker {version}, containerd image store"))
        try:
            rows.append(("buildx", True, self.buildx()))
        except EngineUnavailable as exc:
            rows.append(("buildx", False, str(exc)))
        arm = binfmt_registered("arm64")
        rows.append(("qemu arm64", arm, "enabled" if arm else "off (lab.up --qemu enables it)"))
        rows.append(
            ("proxy CA", True, State.load(self.home).ca_cert or self.detect_ca() or "none needed")
        )
        return rows
