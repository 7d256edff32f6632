"""The shell recipes of README.md, docs/ and the apps' READMEs, and how each is to be tested.

Every fenced `sh`, `bash`, `shell` or `console` block carries a marker on the line before it:

    <!-- recipe: run -->                          run it as written, from a fresh clone
    <!-- recipe: run; before: CMD; then: CMD -->   with a setup step, and a clean-up that always runs
    <!-- recipe: skip: REASON -->                  not run here, and why
    <!-- recipe: github: REASON -->                needs GitHub (a login, a runner): not run here

so a new recipe cannot be added without saying how it is tested (`test_every_recipe_is_marked`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

FENCE = re.compile(r"^```(?:sh|bash|shell|console)\n(?P<body>.*?)^```", re.MULTILINE | re.DOTALL)
MARKER = re.compile(r"^<!--\s*recipe:\s*(?P<kind>run|skip|github)\b(?P<rest>.*?)-->\s*$")
KINDS = ("run", "skip", "github")


@dataclass(frozen=True)
class Recipe:
    """One fenced block: where it is, how it is tested, and its text."""

    path: str
    line: int
    kind: str  # "run", "skip", "github" or "" when unmarked
    script: str
    reason: str = ""
    before: str = ""
    then: str = ""

    @property
    def id(self) -> str:
        return f"{self.path}:{self.line}"


def documents(root: Path) -> list[Path]:
    """Where recipes live: the README, docs/ and each app's README."""
    return [
        root / "README.md",
        *sorted((root / "docs").glob("*.md")),
        *sorted(root.glob("apps/*/README.md")),
    ]


def parse_marker(text: str) -> tuple[str, str, str, str]:
    """(kind, reason, before, then) of a marker line; kind "" when the line is no marker."""
    match = MARKER.match(text.strip())
    if not match:
        return "", "", "", ""
    kind, rest = match.group("kind"), match.group("rest").strip()
    fields = {"reason": "", "before": "", "then": ""}
    if kind == "run":
        # `; before: CMD` and `; then: CMD`, where CMD may hold `;` itself.
        parts = re.split(r"(?:^|;)\s*(\w+):", rest)
        if parts[0].strip():
            raise ValueError(f"unknown recipe clause {parts[0].strip()!r} in {text.strip()!r}")
        for name, value in zip(parts[1::2], parts[2::2], strict=True):
            if name not in ("before", "then"):
                raise ValueError(f"unknown recipe clause {name!r} in {text.strip()!r}")
            fields[name] = value.strip().rstrip(";").strip()
    else:
        fields["reason"] = rest.lstrip(":").strip()
    return kind, fields["reason"], fields["before"], fields["then"]


def recipes_in(path: Path, root: Path) -> list[Recipe]:
    text = path.read_text(encoding="utf-8")
    found = []
    for match in FENCE.finditer(text):
        line = text.count("\n", 0, match.start()) + 1
        previous = text[: match.start()].rstrip("\n").rsplit("\n", 1)[-1]
        kind, reason, before, then = parse_marker(previous)
        found.append(
            Recipe(
                str(path.relative_to(root)), line, kind, match.group("body"), reason, before, then
            )
        )
    return found


def all_recipes(root: Path) -> list[Recipe]:
    return [recipe for path in documents(root) for recipe in recipes_in(path, root)]
