"""The compose stack: which images it runs, and the compose commands of the `stack.*` tasks.

`compose.yaml` names its images through variables (`${BUILDTASKS_IMAGE_BACKEND:-...}`), the
same ones the image tests read. `docker.build` records each image it loads into the engine
in `<artifacts-dir>/stack.env`, by digest, so the stack runs exactly what was built and
tested; plain compose reads the same file with `--env-file`. The commands here are data
(`Command`), built by pure functions; `stack_run` and `smoke` run them.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from buildtasks import imagetests, locks
from buildtasks.buildx import image_inspect
from buildtasks.command import Command
from buildtasks.config import Config
from buildtasks.errors import ConfigError, NotFound, ToolNotFound
from buildtasks.files import write_atomic
from buildtasks.refs import by_digest
from buildtasks.runner import Runner
from buildtasks.tools import host_family, parse_version

COMPOSE_FILE = "compose.yaml"
DEV_FILE = "compose.dev.yaml"
ENV_FILE = "stack.env"
#: `env_file: required: false` (the dev override's .env.local) needs Compose 2.24.
MIN_COMPOSE = (2, 24, 0)
COMPOSE_INSTALL = {
    "debian": "`sudo -E uv run invoke lab.up` installs it (Debian sid's docker-compose)",
    "ubuntu": "`sudo apt-get install docker-compose-v2`",
    "macos": "Docker Desktop, or `brew install docker-compose`",
    "linux": "your distribution's Compose v2 package (the `docker compose` plugin)",
    "windows": "Docker Desktop",
}
#: What `up --wait` waits for at most: every healthcheck's start period is 20 s.
WAIT_SECONDS = 120

_IMAGE_VAR = re.compile(r"\$\{(" + imagetests.IMAGE_ENV + r"_[A-Z0-9_]+)(?::?-[^}]*)?\}")


# ------------------------------------------------------------------ the images it runs


def env_path(config: Config) -> Path:
    """Where docker.build records the images the stack runs."""
    return config.root / Path(config.artifacts_dir).expanduser() / ENV_FILE


def engine_ref(tags: Sequence[str], digest: str, store: str) -> str:
    """How the engine names a loaded build by digest.

    The containerd store keeps the manifest digest with the name (`repo@sha256:`); the
    classic store knows the image by its id, which is what its build digest is.
    """
    return digest if store == "classic" or not tags else by_digest(tags[0], digest)


def parse_env(text: str) -> dict[str, str]:
    """`KEY=VALUE` lines of an env file (comments and blank lines skipped)."""
    values = {}
    for line in text.splitlines():
        key, eq, value = line.strip().partition("=")
        if eq and not key.startswith("#"):
            values[key.strip()] = value.strip()
    return values


def render_env(values: Mapping[str, str]) -> str:
    """The env file: a header saying who writes it, then one sorted `KEY=VALUE` per image."""
    lines = [
        "# Written by `uv run invoke docker.build`: the images compose.yaml runs, by digest.",
        "# docker compose --env-file .buildtasks/stack.env up -d --wait",
        *(f"{key}={value}" for key, value in sorted(values.items())),
    ]
    return "\n".join(lines) + "\n"


def record_image(config: Config, key: str, ref: str, runner: Runner) -> Path:
    """Set image `key`'s reference in the stack's env file (under a lock: builds run at once)."""
    path = env_path(config)
    path.parent.mkdir(parents=True, exist_ok=True)
    with locks.held(path, "the stack's image list", runner):
        values = parse_env(path.read_text(encoding="utf-8")) if path.exists() else {}
        values[imagetests.image_env(key)] = ref
        write_atomic(path, render_env(values))
    return path


def image_vars(compose_text: str) -> tuple[str, ...]:
    """The image variables a compose file reads (`BUILDTASKS_IMAGE_BACKEND`), each once."""
    return tuple(dict.fromkeys(_IMAGE_VAR.findall(compose_text)))


def key_of(var: str) -> str:
    """`BUILDTASKS_IMAGE_BACKEND` → `backend`."""
    return var.removeprefix(imagetests.IMAGE_ENV + "_").lower()


def missing_images(wanted: Sequence[str], recorded: Mapping[str, str]) -> tuple[str, ...]:
    """The configured images the stack needs that no build has recorded yet."""
    return tuple(key_of(var) for var in wanted if var not in recorded)


# ------------------------------------------------------------------ compose commands


@dataclass(frozen=True)
class Stack:
    """One compose project: its files, the env file of its images, and its name."""

    root: Path
    files: tuple[str, ...]
    env_file: Path
    project: str
    #: Variables for compose's interpolation (published ports of a smoke run, the CA).
    env: Mapping[str, str] = field(default_factory=dict)

    def compose(self, *args: str, hint: str = "") -> Command:
        """`docker compose` on this project, from the repository root."""
        argv = ["docker", "compose", "--project-directory", str(self.root)]
        for name in self.files:
            argv += ["-f", name]
        argv += ["--env-file", str(self.env_file), "-p", self.project, *args]
        return Command(tuple(argv), env=dict(self.env), cwd=str(self.root), hint=hint)


def stack_for(
    config: Config, *, dev: bool = False, project: str = "", env: Mapping[str, str] | None = None
) -> Stack:
    """The stack of this checkout: compose.yaml (and the dev override), its recorded images."""
    files = (COMPOSE_FILE, DEV_FILE) if dev else (COMPOSE_FILE,)
    for name in files:
        if not (config.root / name).is_file():
            raise ConfigError(f"no {name} in {config.root}: the stack tasks run that file")
    return Stack(config.root, files, env_path(config), project or "monorepo", dict(env or {}))


def compose_version() -> Command:
    return Command(("docker", "compose", "version", "--short"))


def require_compose(version_text: str, ok: bool) -> None:
    """Fail naming the install line when Compose v2 is missing or too old."""
    family = host_family()
    install = COMPOSE_INSTALL.get(family, COMPOSE_INSTALL["linux"])
    version = parse_version(version_text) if ok else None
    if version is None:
        raise ToolNotFound(f"docker compose (v2) is not installed: {install}")
    if version < MIN_COMPOSE:
        raise ToolNotFound(
            f"docker compose {'.'.join(map(str, version))} is older than 2.24, which the "
            f"stack's optional .env.local needs: {install}"
        )


def up(stack: Stack, *, wait: int = WAIT_SECONDS) -> Command:
    """Start every service and wait until each is healthy (or running, without a check)."""
    return stack.compose(
        "up",
        "--detach",
        "--wait",
        "--wait-timeout",
        str(wait),
        "--remove-orphans",
        hint=f"see `uv run invoke stack.logs` (project {stack.project})",
    )


def build_dev(stack: Stack) -> Command:
    """Build the development web server (the web image's builder stage with its dependencies)."""
    return stack.compose("build", "web", hint="the web dev server's build failed (log above)")


def down(stack: Stack) -> Command:
    """Stop and remove every container, network and volume of the project."""
    return stack.compose("down", "--volumes", "--remove-orphans", "--timeout", "10")


def logs(
    stack: Stack, services: Sequence[str] = (), *, follow: bool = False, tail: str = ""
) -> Command:
    args = ["logs", "--timestamps"]
    if follow:
        args.append("--follow")
    if tail:
        args += ["--tail", tail]
    return stack.compose(*args, *services)


def port(stack: Stack, service: str, container_port: int) -> Command:
    return stack.compose("port", service, str(container_port))


def stop(stack: Stack, service: str) -> Command:
    return stack.compose("stop", service)


def start(stack: Stack, service: str) -> Command:
    return stack.compose("start", service)


def ps(stack: Stack) -> Command:
    return stack.compose("ps", "--all", "--format", "table {{.Service}}\t{{.Status}}\t{{.Ports}}")


def leftovers(project: str) -> tuple[Command, ...]:
    """What lists a project's containers, networks and volumes (compose labels them)."""
    label = f"label=com.docker.compose.project={project}"
    return (
        Command(("docker", "ps", "--all", "--quiet", "--filter", label)),
        Command(("docker", "network", "ls", "--quiet", "--filter", label)),
        Command(("docker", "volume", "ls", "--quiet", "--filter", label)),
    )


# ------------------------------------------------------------------ preparing a run


def recorded_images(config: Config, stack: Stack, runner: Runner) -> dict[str, str]:
    """The images the stack runs, each checked to be in the engine; fail naming the build."""
    text = "".join((config.root / name).read_text(encoding="utf-8") for name in stack.files)
    wanted = image_vars(text)
    path = stack.env_file
    recorded = parse_env(path.read_text(encoding="utf-8")) if path.exists() else {}
    missing = missing_images(wanted, recorded)
    if missing:
        images = " ".join(f"--image {key}" for key in missing)
        raise NotFound(
            f"no built image of {', '.join(missing)} for the stack in {path}: build with "
            f"`uv run invoke docker.build{' ' + images if len(missing) < len(wanted) else ''}` "
            "(or use plain `docker compose up --build`)"
        )
    if not runner.dry:
        for var in wanted:
            ref = recorded[var]
            probe = image_inspect(ref, "{{.Id}}")
            if not runner.run(probe, capture=True, check=False, quiet=True).ok:
                raise NotFound(
                    f"the {key_of(var)} image {ref} recorded in {path} is not in the engine "
                    f"(pruned, or built on another engine): rebuild it with "
                    f"`uv run invoke docker.build --image {key_of(var)}`"
                )
    return {var: recorded[var] for var in wanted}
