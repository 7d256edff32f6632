"""The lab's state file: written by `lab.up`, read by builds. The one bridge between the two.

A build never runs lab code. It reads this small file (when there is one) to learn what the
lab provides: which base images are stand-ins in the lab registry (and for which platforms),
and the proxy CA to pass as a BuildKit secret. A user with their own engine and registry has
no state file, and the build then uses nothing from the lab.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from buildtasks.errors import BuildtasksError
from buildtasks.refs import BaseRef, mirror_ref, parse_base_ref


def lab_home(env: Mapping[str, str] | None = None) -> Path:
    """Where the lab keeps its state, logs, registry storage and base tarballs."""
    env = os.environ if env is None else env
    if value := env.get("BUILDTASKS_LAB_HOME"):
        return Path(value)
    cache = env.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(cache) / "buildtasks" / "lab"


@dataclass
class State:
    """What lab.up did, so lab.down undoes only that and builds know the lab's facts."""

    started: dict[str, int] = field(default_factory=dict)  # part -> pid
    seeded: dict[str, list[str]] = field(default_factory=dict)  # base ref -> platforms
    ca_cert: str = ""
    registry: str = ""
    #: Engines lab.up started beside the main one: name -> DOCKER_HOST (`unix:///...`).
    engines: dict[str, str] = field(default_factory=dict)
    #: The config file of the registry lab.up runs (its storage is where retention looks).
    registry_config: str = ""

    @classmethod
    def load(cls, home: Path) -> State:
        path = home / "state.json"
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return cls()
        except (OSError, json.JSONDecodeError) as exc:
            raise BuildtasksError(
                f"cannot read the lab state {path} ({exc}): remove it and run `uv run invoke lab.up`"
            ) from None
        return cls(
            started=dict(data.get("started", {})),
            seeded={k: list(v) for k, v in data.get("seeded", {}).items()},
            ca_cert=data.get("ca_cert", ""),
            registry=data.get("registry", ""),
            engines=dict(data.get("engines", {})),
            registry_config=data.get("registry_config", ""),
        )

    def save(self, home: Path) -> None:
        home.mkdir(parents=True, exist_ok=True)
        tmp = home / "state.json.tmp"
        tmp.write_text(json.dumps(self.__dict__, indent=2, sort_keys=True), encoding="utf-8")
        tmp.replace(home / "state.json")


def read(env: Mapping[str, str] | None = None) -> State:
    """The lab's state for this user (empty when the lab was never brought up)."""
    return State.load(lab_home(env))


def build_contexts(state: State) -> dict[str, str]:
    """Named build contexts that point non-docker.io bases at their lab stand-ins.

    docker.io bases need none: the engine's registry mirror resolves them.
    """
    contexts = {}
    for ref in state.seeded:
        base = parse_base_ref(ref)
        if not base.is_docker_hub and state.registry:
            contexts[str(base)] = f"docker-image://{mirror_ref(base, state.registry)}"
    return contexts


def _same_base(ref: str) -> object:
    """`ref` in one spelling (`python:3.11-slim` is `docker.io/library/python:3.11-slim`)."""
    try:
        return parse_base_ref(ref)
    except BuildtasksError:
        return ref


def repository_of(ref: str) -> object:
    """The repository of a base, without its tag (`node:24-slim` → docker.io library/node)."""
    base = _same_base(ref)
    return (base.registry, base.repository) if isinstance(base, BaseRef) else ref


def stand_ins_used(bases: Sequence[str], state: State) -> tuple[str, ...]:
    """The seeded stand-ins among `bases` (a Dockerfile's, `dockerfiles.base_images`)."""
    wanted = {_same_base(b) for b in bases}
    return tuple(ref for ref in state.seeded if _same_base(ref) in wanted)


def stand_ins_lacking(
    bases: Sequence[str], state: State, platforms: Sequence[str]
) -> dict[str, tuple[str, ...]]:
    """The stand-ins among `bases` that lack some of `platforms` → the missing ones."""
    missing = {
        ref: tuple(p for p in platforms if p not in state.seeded[ref])
        for ref in stand_ins_used(bases, state)
    }
    return {ref: lacks for ref, lacks in missing.items() if lacks}


def bases_not_seeded(bases: Sequence[str], state: State) -> tuple[str, ...]:
    """The `bases` the lab has no stand-in for (none without a lab)."""
    if not state.registry:
        return ()
    seeded = {_same_base(ref) for ref in state.seeded}
    return tuple(b for b in bases if _same_base(b) not in seeded)


def ca_cert(configured: str, state: State) -> str:
    """The CA bundle builds get as the secret `ca`: the configured one (`"none"`: no CA), else
    the one lab.up detected ("" when there is none)."""
    return "" if configured == "none" else (configured or state.ca_cert)
