"""Version parsing for `type=semver` and `type=pep440`, as metadata-action's libraries do it.

`parse_semver` follows node-semver's strict `valid()`; `parse_pep440` follows
@renovate/pep440, including its normalised form (`1.2.3beta2` -> `1.2.3b2`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_SEMVER_NUMBER = r"(?:0|[1-9][0-9]*)"
_SEMVER_PRE_ID = r"(?:0|[1-9][0-9]*|[0-9]*[a-zA-Z-][a-zA-Z0-9-]*)"
_SEMVER = re.compile(
    rf"v?({_SEMVER_NUMBER})\.({_SEMVER_NUMBER})\.({_SEMVER_NUMBER})"
    rf"(?:-({_SEMVER_PRE_ID}(?:\.{_SEMVER_PRE_ID})*))?"
    r"(?:\+([0-9a-zA-Z-]+(?:\.[0-9a-zA-Z-]+)*))?"
)
_MAX_SAFE_INTEGER = 2**53 - 1


@dataclass(frozen=True)
class SemVer:
    """A version as node-semver parses it (strict), with the fields templates can read."""

    raw: str
    major: int
    minor: int
    patch: int
    prerelease: tuple[str, ...]

    @property
    def version(self) -> str:
        """Return `major.minor.patch` plus `-prerelease`; build metadata is dropped."""
        core = f"{self.major}.{self.minor}.{self.patch}"
        return f"{core}-{'.'.join(self.prerelease)}" if self.prerelease else core


def parse_semver(text: str) -> SemVer | None:
    """Parse like node-semver's `valid()`: optional `v`, no leading zeros, else None."""
    if len(text) > 256:
        return None
    match = _SEMVER.fullmatch(text.strip())
    if match is None:
        return None
    numbers = [int(match.group(index)) for index in (1, 2, 3)]
    if any(number > _MAX_SAFE_INTEGER for number in numbers):
        return None
    prerelease = tuple(match.group(4).split(".")) if match.group(4) else ()
    return SemVer(text, numbers[0], numbers[1], numbers[2], prerelease)


_PEP440 = re.compile(
    r"v?(?:(?:(?P<epoch>[0-9]+)!)?(?P<release>[0-9]+(?:\.[0-9]+)*)"
    r"(?P<pre>[-_.]?(?P<pre_l>a|b|c|rc|alpha|beta|pre|preview)[-_.]?(?P<pre_n>[0-9]+)?)?"
    r"(?P<post>(?:-(?P<post_n1>[0-9]+))|(?:[-_.]?(?P<post_l>post|rev|r)[-_.]?(?P<post_n2>[0-9]+)?))?"
    r"(?P<dev>[-_.]?(?P<dev_l>dev)[-_.]?(?P<dev_n>[0-9]+)?)?)"
    r"(?:\+(?P<local>[a-z0-9]+(?:[-_.][a-z0-9]+)*))?",
    re.IGNORECASE,
)
_PEP440_LETTERS = {"alpha": "a", "beta": "b", "c": "rc", "pre": "rc", "preview": "rc"}


@dataclass(frozen=True)
class Pep440:
    """A PEP 440 version as @renovate/pep440 parses and normalises it."""

    raw: str
    epoch: int
    release: tuple[int, ...]
    pre: tuple[str, int] | None
    post: int | None
    dev: int | None
    local: tuple[str, ...] | None

    @property
    def version(self) -> str:
        """Return the normalised form (`1.2.3beta2` -> `1.2.3b2`, `1.0dev4` -> `1.0.dev4`)."""
        parts = [f"{self.epoch}!" if self.epoch else "", ".".join(map(str, self.release))]
        if self.pre:
            parts.append(f"{self.pre[0]}{self.pre[1]}")
        if self.post is not None:
            parts.append(f".post{self.post}")
        if self.dev is not None:
            parts.append(f".dev{self.dev}")
        if self.local:
            parts.append("+" + ",".join(self.local))
        return "".join(parts)

    @property
    def is_release(self) -> bool:
        """Tell whether this is a final release (pre-, post- and dev-releases are not)."""
        return self.pre is None and self.post is None and self.dev is None

    def segment(self, index: int) -> int:
        """Return release segment `index` (0 major, 1 minor, 2 patch), 0 when absent."""
        return self.release[index] if index < len(self.release) else 0


def parse_pep440(text: str) -> Pep440 | None:
    """Parse a PEP 440 version (leading `v` allowed), or None when it does not conform."""
    match = _PEP440.fullmatch(text)
    if match is None:
        return None
    pre = None
    if match["pre_l"]:
        letter = match["pre_l"].lower()
        pre = (_PEP440_LETTERS.get(letter, letter), int(match["pre_n"] or 0))
    post = None
    if match["post_l"] or match["post_n1"] or match["post_n2"]:
        post = int(match["post_n1"] or match["post_n2"] or 0)
    dev = int(match["dev_n"] or 0) if match["dev_l"] else None
    local = None
    if match["local"]:
        local = tuple(_js_number_text(part.lower()) for part in re.split(r"[._-]", match["local"]))
    release = tuple(int(part) for part in match["release"].split("."))
    return Pep440(text, int(match["epoch"] or 0), release, pre, post, dev, local)


def _js_number_text(part: str) -> str:
    """Render a local-version part as JavaScript's `Number(part)` would, when numeric."""
    if re.fullmatch(r"[0-9]+", part):
        return str(int(part))
    if re.fullmatch(r"0x[0-9a-f]+", part):
        return str(int(part, 16))
    if re.fullmatch(r"0o[0-7]+", part):
        return str(int(part, 8))
    if re.fullmatch(r"0b[01]+", part):
        return str(int(part, 2))
    return part
