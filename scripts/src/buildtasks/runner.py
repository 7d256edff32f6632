"""Execute `Command`s: echo them shell-quoted, honour dry runs, turn failures into errors.

Every command a plan returns runs here. The runner checks that the tool exists before running
it (a missing tool is a `ToolNotFound` naming what to install) and turns a non-zero exit into
`CommandFailed` with the command line and the plan's hint.

A few processes start elsewhere, each for a reason of its own: the daemons `lab.up` leaves
running (`lab.probes.spawn`), the `git` reads behind the tag context (`gitcontext.run_git`,
injectable for tests), the `docker` calls that measure or probe a running image
(`containers` and the image-test plugin), the benchmark timing `uv run invoke --list`,
and Nox's own `session.run`.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TextIO

from buildtasks import tools
from buildtasks.command import Command
from buildtasks.errors import TIMED_OUT, CommandFailed, ToolNotFound


@dataclass(frozen=True)
class Result:
    """What a finished command returned; `stdout`/`stderr` are empty unless captured."""

    command: Command
    returncode: int
    stdout: str = ""
    stderr: str = ""

    @property
    def ok(self) -> bool:
        return self.returncode == 0


@dataclass
class Runner:
    """Runs commands; `dry` prints without running, `echo` prints before running."""

    dry: bool = False
    echo: bool = True
    out: TextIO = field(default_factory=lambda: sys.stderr)
    #: A stand-in for the PATH lookup (tests); None looks tools up with `tools.locate`.
    which: Callable[[str], str | None] | None = None
    #: Added to every command's environment (`DOCKER_HOST` of the builder a build runs on).
    env: Mapping[str, str] = field(default_factory=dict)
    #: Put before every line this runner prints, its commands' output included, so builds
    #: running side by side stay readable (`[linux/arm64] ...`).
    prefix: str = ""
    #: Facts that cannot change within one task invocation (the builder's capabilities),
    #: asked once per runner; a derived runner (another engine) starts without them.
    memo: dict[object, object] = field(default_factory=dict, repr=False, compare=False)

    def derive(self, *, env: Mapping[str, str] | None = None, prefix: str = "") -> Runner:
        """A runner like this one, with more environment and a line prefix."""
        return Runner(
            dry=self.dry,
            echo=self.echo,
            out=self.out,
            which=self.which,
            env={**self.env, **(env or {})},
            prefix=self.prefix + prefix,
        )

    def resolve(self, tool: str) -> str:
        """Return the absolute path of `tool`, or raise `ToolNotFound` with the fix.

        `tools.locate` decides between a copy on PATH and the locked wheel, and says once
        when the copy used is not the pinned version.
        """
        if os.sep in tool:
            if os.access(tool, os.X_OK):
                return tool
            raise ToolNotFound(f"{tool} not found or not executable")
        if self.which is not None:
            if path := self.which(tool):
                return path
            raise ToolNotFound(f"{tool} not found: {tools.install_line(tool)}")
        found = tools.locate(tool)
        if tools.first_time(found.note):
            self.say(f"note: {found.note}")
        return found.path

    def say(self, message: str) -> None:
        """Print one progress line the user should see (not a command)."""
        print(f"{self.prefix}{message}", file=self.out, flush=True)

    def run(
        self,
        command: Command,
        *,
        capture: bool = False,
        check: bool = True,
        quiet: bool = False,
        timeout: float | None = None,
    ) -> Result:
        """Run `command`; capture its output when asked; raise `CommandFailed` on failure.

        `quiet` suppresses the echo for read-only probes that are not part of the plan the user
        asked for. In dry mode nothing runs and the result is a success with empty output.
        """
        if self.dry or (self.echo and not quiet):
            self.say(f"+ {command.shell()}")
        if self.dry:
            return Result(command, 0)
        executable = self.resolve(command.tool)
        extra = {**self.env, **command.env}
        env = {**os.environ, **extra} if extra else None
        if self.prefix and not capture:
            result = self._stream(command, (executable, *command.argv[1:]), env, timeout)
        else:
            try:
                proc = subprocess.run(
                    (executable, *command.argv[1:]),
                    input=command.stdin,
                    capture_output=capture,
                    env=env,
                    cwd=command.cwd,
                    timeout=timeout,
                    check=False,
                )
            except subprocess.TimeoutExpired:
                raise CommandFailed(
                    command.argv, TIMED_OUT, f"timed out after {timeout:.0f}s"
                ) from None
            result = Result(
                command,
                proc.returncode,
                proc.stdout.decode(errors="replace") if capture else "",
                proc.stderr.decode(errors="replace") if capture else "",
            )
        if check and not result.ok:
            hint = command.hint
            if (capture or self.prefix) and result.stderr.strip():
                last = result.stderr.strip().splitlines()[-1].strip()
                hint = f"{last}; {hint}" if hint else last
            raise CommandFailed(command.argv, result.returncode, hint)
        return result

    def _stream(
        self,
        command: Command,
        argv: tuple[str, ...],
        env: Mapping[str, str] | None,
        timeout: float | None,
    ) -> Result:
        """Run with stdout and stderr merged, each line printed with this runner's prefix."""
        proc = subprocess.Popen(
            argv,
            stdin=subprocess.PIPE if command.stdin is not None else subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=command.cwd,
        )
        if command.stdin is not None and proc.stdin:
            proc.stdin.write(command.stdin)
            proc.stdin.close()
        last = ""
        assert proc.stdout is not None
        for raw in proc.stdout:
            line = raw.decode(errors="replace").rstrip("\n")
            if line.strip():
                last = line
            print(f"{self.prefix}{line}", file=self.out, flush=True)
        try:
            returncode = proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            raise CommandFailed(
                command.argv, TIMED_OUT, f"timed out after {timeout:.0f}s"
            ) from None
        return Result(command, returncode, "", last)

    def output(self, command: Command, *, quiet: bool = True, timeout: float | None = None) -> str:
        """Run a read-only probe and return its stdout, stripped (even in dry mode it runs)."""
        probe = Runner(
            dry=False,
            echo=self.echo and not quiet,
            out=self.out,
            which=self.which,
            env=self.env,
            prefix=self.prefix,
        )
        return probe.run(command, capture=True, quiet=quiet, timeout=timeout).stdout.strip()
