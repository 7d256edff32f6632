"""The `Command` value that plans return and the runner executes.

A command is an argv tuple (never a shell string) plus the few facts the runner needs:
extra environment, a working directory and the stdin bytes. Plans build these as data so
they can be printed, diffed and unit-tested without running anything.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Mapping
from dataclasses import dataclass, field

#: Names whose values are never echoed: `COSIGN_PASSWORD`, `NPM_TOKEN`, `AWS_SECRET_ACCESS_KEY`...
SENSITIVE_NAME = re.compile(r"PASSWORD|PASSWD|TOKEN|SECRET|KEY|CREDENTIAL|AUTH", re.IGNORECASE)
MASK = "***"
#: `NAME=value` inside one argument (`--build-arg NPM_TOKEN=...`, `-e GH_TOKEN=...`).
_ASSIGNMENT = re.compile(r"^(?P<name>[A-Za-z_][A-Za-z0-9_.-]*)=(?P<value>.+)$", re.DOTALL)


def mask_value(name: str, value: str) -> str:
    """`value`, or `***` when `name` looks like it holds a secret."""
    return MASK if value and SENSITIVE_NAME.search(name) else value


def mask_argument(arg: str) -> str:
    """`NAME=value` with the value masked when NAME looks secret; any other argument as is."""
    match = _ASSIGNMENT.match(arg)
    if match is None:
        return arg
    return f"{match['name']}={mask_value(match['name'], match['value'])}"


@dataclass(frozen=True)
class Command:
    argv: tuple[str, ...]
    env: Mapping[str, str] = field(default_factory=dict)
    cwd: str | None = None
    stdin: bytes | None = None
    #: Shown in one-line errors when the command fails ("is the registry up? run ...").
    hint: str = ""

    def __post_init__(self) -> None:
        if (
            not isinstance(self.argv, tuple)
            or not self.argv
            or not all(isinstance(a, str) for a in self.argv)
        ):
            raise TypeError(f"argv must be a non-empty tuple of str, got {self.argv!r}")

    @property
    def tool(self) -> str:
        return self.argv[0]

    def shell(self) -> str:
        """Shell-quoted form for echoing; environment overrides shown as VAR=... prefixes.

        Values of names that look secret (`*PASSWORD*`, `*TOKEN*`, `*KEY*`, ...) are shown as
        `***`, in the environment and in `NAME=value` arguments alike: dry runs and logs are
        pasted into issues and CI output.
        """
        env = " ".join(f"{k}={shlex.quote(mask_value(k, v))}" for k, v in sorted(self.env.items()))
        text = shlex.join(mask_argument(a) for a in self.argv)
        return f"{env} {text}" if env else text


def cmd(*argv: str, **kwargs: object) -> Command:
    """Shorthand: `cmd("docker", "info")`."""
    return Command(tuple(argv), **kwargs)  # type: ignore[arg-type]
