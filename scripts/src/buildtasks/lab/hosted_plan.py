"""Pure plans for the lab on a GitHub-hosted runner: the detection, the daemon.json merge, the
commands that turn the containerd image store on, and the QEMU registration.

Nothing here touches the machine; `buildtasks.lab.hosted` probes and runs these plans.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path

from buildtasks.command import Command
from buildtasks.errors import ConfigError
from buildtasks.lab.plan import daemon_config


def github_hosted(env: Mapping[str, str]) -> bool:
    """Whether `env` is a job on a GitHub-hosted runner (its engine is configured, not installed).

    Both variables count: `act` (workflows run locally, `-self-hosted` or in a container) sets
    `GITHUB_ACTIONS=true` but no `RUNNER_ENVIRONMENT`, and a self-hosted runner sets
    `RUNNER_ENVIRONMENT=self-hosted`; both keep the normal lab.
    """
    return env.get("GITHUB_ACTIONS") == "true" and env.get("RUNNER_ENVIRONMENT") == "github-hosted"


def parse_daemon_json(text: str | None, path: Path) -> dict[str, object]:
    """daemon.json `text` as a dict ({} when absent or empty); `ConfigError` naming `path`."""
    if text is None or not text.strip():
        return {}
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{path} is not valid JSON ({exc}); fix or remove it") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path} is not a JSON object; fix or remove it")
    features = data.get("features")
    if features is not None and not isinstance(features, dict):
        raise ConfigError(f'{path}: "features" is not a JSON object; fix or remove it')
    return data


def containerd_store_json(text: str | None, path: Path) -> str | None:
    """daemon.json with `features.containerd-snapshotter` on, every other key kept.

    `text` is the file as it is (None when absent); the result is the new text, or None when
    the file already turns the store on (nothing to write).
    """
    existing = parse_daemon_json(text, path)
    wanted = daemon_config(existing, None)
    if wanted == existing:
        return None
    return json.dumps(wanted, indent=2) + "\n"


def daemon_json_kept(text: str | None, path: Path) -> tuple[str, ...]:
    """The settings of daemon.json `text` the merge keeps as they are (`features.<flag>` for
    the other feature flags), for lab.up to name them."""
    kept: list[str] = []
    for key, value in parse_daemon_json(text, path).items():
        if key == "features" and isinstance(value, dict):
            kept += [f"features.{flag}" for flag in value if flag != "containerd-snapshotter"]
        elif key != "features":
            kept.append(key)
    return tuple(kept)


def as_root(argv: tuple[str, ...], *, root: bool) -> tuple[str, ...]:
    """`argv` through `sudo -n` unless already root (`-n`: fail instead of asking a password)."""
    return argv if root else ("sudo", "-n", *argv)


def hosted_engine_commands(
    store: str, daemon_text: str | None, *, path: Path, root: bool
) -> tuple[Command, ...]:
    """What gives a GitHub-hosted runner's engine the containerd image store.

    `store` is what the engine reports ("containerd", "classic", or "" when none answers);
    `daemon_text` is `path` as it is (None when absent). Nothing when the engine already uses
    the containerd store. Otherwise the merged daemon.json (when it changes) is written beside
    `path` and renamed over it, so dockerd never reads half a file, and the systemd-managed
    engine is restarted: the image store is chosen at start, a reload does not change it.
    """
    if store == "containerd":
        return ()
    new_text = containerd_store_json(daemon_text, path)
    commands = []
    if new_text is not None:
        tmp = path.with_name(f".{path.name}.buildtasks-tmp")
        if daemon_text is None:
            commands.append(Command(as_root(("mkdir", "-p", str(path.parent)), root=root)))
        commands += [
            Command(
                as_root(("tee", str(tmp)), root=root),
                stdin=new_text.encode(),
                hint="" if root else "the runner user needs passwordless sudo",
            ),
            Command(as_root(("mv", "-f", str(tmp), str(path)), root=root)),
        ]
    commands.append(
        Command(
            as_root(("systemctl", "restart", "docker"), root=root),
            hint="see `sudo journalctl -u docker`",
        )
    )
    return tuple(commands)


#: What registers QEMU on a GitHub-hosted runner, as docker/setup-qemu-action does, but pinned
#: by digest (that action's default is `:latest`). A wrong pin fails the pull; it never runs
#: another image.
BINFMT_IMAGE = (
    "docker.io/tonistiigi/binfmt:qemu-v10.2.3"
    "@sha256:400a4873b838d1b89194d982c45e5fb3cda4593fbfd7e08a02e76b03b21166f0"
)


def binfmt_install(arches: Sequence[str], image: str = BINFMT_IMAGE) -> Command:
    """Return the privileged `tonistiigi/binfmt` run that registers QEMU for `arches`."""
    return Command(
        ("docker", "run", "--privileged", "--rm", image, "--install", ",".join(arches)),
        hint="is docker.io reachable? or use docker/setup-qemu-action before lab.up",
    )
