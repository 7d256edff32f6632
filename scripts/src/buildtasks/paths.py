"""Which images a change affects: GitHub's `paths` filter patterns, matched in Python (pure).

An image is built from more than its own folder: its Dockerfile, the lock files, the tooling,
the workflow that builds it. `[tool.buildtasks] paths` (shared by every image) and each image's
`paths` list those patterns once; the workflows' `on.push.paths` and `on.pull_request.paths`
must say the same (a test holds them to it), and `docker.affected` answers the question
locally with the same rules GitHub applies:

- `*` matches any run of characters but `/`, `**` any run at all, `?` one character but `/`;
- a pattern starting with `!` excludes what earlier patterns included; the last match wins;
- a change affects an image when at least one changed file is included.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from functools import cache
from typing import TYPE_CHECKING

from buildtasks.command import Command
from buildtasks.errors import ConfigError

if TYPE_CHECKING:
    from buildtasks.config import Config

_GLOB = {"**": ".*", "*": "[^/]*", "?": "[^/]"}


def glob_regexp(pattern: str) -> str:
    """A GitHub filter pattern (`refs/tags/v*`, `apps/**`) as an unanchored regexp (RE2-safe).

    `*` is any run of characters but `/`, `**` any run at all, `?` one character but `/`;
    everything else is literal. `**/` also matches no directory at all, as in GitHub's filters.
    """
    out = []
    for part in re.split(r"(\*\*/|\*\*|\*|\?)", pattern):
        if part == "**/":
            out.append("(?:.*/)?")
        else:
            out.append(_GLOB.get(part) or re.escape(part))
    return "".join(out)


@cache
def _compiled(pattern: str) -> re.Pattern[str]:
    return re.compile(f"^{glob_regexp(pattern)}$")


def check_patterns(patterns: Sequence[str], where: str) -> tuple[str, ...]:
    """`patterns` as a tuple, or a ConfigError naming the malformed one."""
    for pattern in patterns:
        body = pattern[1:] if pattern.startswith("!") else pattern
        if not body or body.startswith("/") or body.startswith("./"):
            raise ConfigError(
                f"{where} pattern {pattern!r} must be a path from the repository root, "
                "without a leading / or ./ (e.g. apps/backend/**)"
            )
    return tuple(patterns)


def included(path: str, patterns: Sequence[str]) -> bool:
    """Whether `path` passes GitHub's `paths` filter `patterns` (the last match decides)."""
    verdict = False
    for pattern in patterns:
        negated = pattern.startswith("!")
        if _compiled(pattern[1:] if negated else pattern).match(path):
            verdict = not negated
    return verdict


def affected(changed: Iterable[str], patterns: Mapping[str, Sequence[str]]) -> dict[str, list[str]]:
    """Image key → the changed files that include it, for every image a change touches."""
    files = list(changed)
    hits = {key: [f for f in files if included(f, pats)] for key, pats in patterns.items()}
    return {key: found for key, found in hits.items() if found}


def ref_check_command(since: str) -> Command:
    """`git rev-parse` of `since` as a commit: fails when the ref is unknown here."""
    return Command(("git", "rev-parse", "--verify", "--quiet", f"{since}^{{commit}}"))


def unknown_ref(since: str) -> ConfigError:
    return ConfigError(
        f"unknown ref {since!r}: name a branch, tag or commit of this repository "
        "(a shallow clone may lack it: git fetch --unshallow, or fetch-depth: 0 in CI)"
    )


def changed_files_commands(since: str) -> tuple[Command, ...]:
    """The git commands whose output lists what changed since `since` (merge base) and now.

    Committed changes since the merge base (`REF...HEAD`, what a pull request shows), tracked
    files changed in the working tree, and untracked files that are not ignored.
    """
    return (
        Command(("git", "diff", "--name-only", "--no-renames", f"{since}...HEAD")),
        Command(("git", "diff", "--name-only", "--no-renames", "HEAD")),
        Command(("git", "ls-files", "--others", "--exclude-standard")),
    )


def affected_since(config: Config, since: str) -> dict[str, list[str]]:
    """Image key → the files changed since `since` that select it (git, read-only: it runs
    under --dry too)."""
    from dataclasses import replace

    from buildtasks.runner import Runner

    runner = Runner(echo=False)
    check = ref_check_command(since)
    if not runner.run(replace(check, cwd=str(config.root)), capture=True, check=False).ok:
        raise unknown_ref(since)
    changed: dict[str, None] = {}
    for command in changed_files_commands(since):
        result = runner.run(replace(command, cwd=str(config.root)), capture=True, quiet=True)
        changed.update(dict.fromkeys(line for line in result.stdout.splitlines() if line))
    patterns = {spec.key: config.image_paths(spec) for spec in config.images.values()}
    return affected(changed, patterns)
