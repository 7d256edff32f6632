"""The retention policy: which tags stay, which expire, how many untagged manifests are kept.

Configured in `[tool.buildtasks.retention]` (every image) and `[tool.buildtasks.images.<key>
.retention]` (one image; its keys replace the shared table's one by one). Tag patterns are
globs (`*`, `?`, `[0-9]`), matched against the whole tag.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from fnmatch import fnmatchcase
from typing import Any

from buildtasks.errors import ConfigError

KEYS = ("keep-tags", "expire-tags", "keep-untagged", "untagged-days", "keep-build-cache")
#: The tags `docker.build` gives its registry build cache (`caches.registry_ref`).
BUILD_CACHE_PATTERN = "buildcache*"


@dataclass(frozen=True)
class Policy:
    #: Tags kept for ever, with everything they reach.
    keep_tags: tuple[str, ...] = (
        "latest",
        "main",
        "master",
        "develop",
        "stable",
        "edge",
        "v[0-9]*",
        "[0-9]*",
    )
    #: Tag pattern → days: a tag matching it (and no keep pattern) is deleted once older.
    #: The first matching pattern decides; tags matching none are kept.
    expire_tags: Mapping[str, float] = field(default_factory=lambda: {"pr-*": 14.0})
    #: The newest untagged manifests kept whatever their age.
    keep_untagged: int = 3
    #: Untagged manifests younger than this are kept (a build waiting for its merge is one).
    untagged_days: float = 7.0
    #: Keep the registry build cache refs (`buildcache-*`).
    keep_build_cache: bool = True

    def keep_pattern(self, tag: str) -> str | None:
        """The keep pattern `tag` matches, if any."""
        return next((p for p in self.keep_tags if fnmatchcase(tag, p)), None)

    def expiry(self, tag: str) -> tuple[str, float] | None:
        """The first expire pattern `tag` matches, with its days."""
        return next(((p, d) for p, d in self.expire_tags.items() if fnmatchcase(tag, p)), None)


def _days(value: Any, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
        raise ConfigError(f"{where} must be a number of days, 0 or more, got {value!r}")
    return float(value)


def _patterns(value: Any, where: str) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise ConfigError(f'{where} must be a list of tag patterns, e.g. ["latest", "v*"]')
    return tuple(value)


def parse(table: Any, where: str, base: Policy, check_keys: Any) -> Policy:
    """`base` with the keys of `table` applied; `check_keys(table, KEYS, where)` rejects typos."""
    if not isinstance(table, dict):
        raise ConfigError(f"[{where}] must be a table")
    check_keys(table, KEYS, where)
    changes: dict[str, Any] = {}
    if "keep-tags" in table:
        changes["keep_tags"] = _patterns(table["keep-tags"], f"{where}.keep-tags")
    if "expire-tags" in table:
        expire = table["expire-tags"]
        if not isinstance(expire, dict):
            raise ConfigError(
                f'{where}.expire-tags must be a table of tag pattern = days, e.g. {{ "pr-*" = 14 }}'
            )
        changes["expire_tags"] = {
            str(p): _days(d, f"{where}.expire-tags.{p!r}") for p, d in expire.items()
        }
    if "keep-untagged" in table:
        count = table["keep-untagged"]
        if isinstance(count, bool) or not isinstance(count, int) or count < 0:
            raise ConfigError(f"{where}.keep-untagged must be a whole number, 0 or more")
        changes["keep_untagged"] = count
    if "untagged-days" in table:
        changes["untagged_days"] = _days(table["untagged-days"], f"{where}.untagged-days")
    if "keep-build-cache" in table:
        value = table["keep-build-cache"]
        if not isinstance(value, bool):
            raise ConfigError(f"{where}.keep-build-cache must be true or false, got {value!r}")
        changes["keep_build_cache"] = value
    return replace(base, **changes)
