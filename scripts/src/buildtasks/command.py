"""The `Command` value that plans return and the runner executes.

A command is an argv tuple (never a shell string) plus the few facts the runner needs:
extra environment, a working directory and the stdin bytes. Plans build these as data so
they can be printed, diffed and unit-tested without running anything.
"""

from __future__ import annotations

import shlex
from collections.abc import Mapping
from dataclasses import dataclass, field


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
        """Shell-quoted form for echoing; environment overrides shown as VAR=... prefixes."""
        env = " ".join(f"{k}={shlex.quote(v)}" for k, v in sorted(self.env.items()))
        text = shlex.join(self.argv)
        return f"{env} {text}" if env else text


def cmd(*argv: str, **kwargs: object) -> Command:
    """Shorthand: `cmd("docker", "info")`."""
    return Command(tuple(argv), **kwargs)  # type: ignore[arg-type]
