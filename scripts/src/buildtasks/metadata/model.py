"""The engine's values: what goes into `compute` and what comes out of it."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime


@dataclass(frozen=True)
class Context:
    """What metadata-action reads from the GitHub context and the repository."""

    event_name: str
    ref: str
    sha: str
    default_branch: str = ""
    repository: str = ""
    server_url: str = "https://github.com"
    run_number: str = ""
    run_id: str = ""
    base_ref: str = ""
    head_ref: str = ""
    pr_head_sha: str = ""
    description: str = ""
    license: str = ""
    inputs: Mapping[str, str] = field(default_factory=dict)
    #: Used by `{{commit_date}}`; `None` falls back to `now`, as metadata-action does.
    commit_date: datetime | None = None


@dataclass(frozen=True)
class TagRule:
    """One parsed `tags` line: its type and attributes with metadata-action's defaults."""

    type: str
    attrs: Mapping[str, str]
    source: str
    #: True when the line holds `${{ ... }}`: it is read again once the values are known.
    deferred: bool = False

    @property
    def priority(self) -> float:
        """Return the rule's sort key (higher sorts first)."""
        return float(self.attrs["priority"])


@dataclass(frozen=True)
class Flavor:
    """The parsed `flavor` lines."""

    latest: str = "auto"
    prefix: str = ""
    prefix_latest: bool = False
    suffix: str = ""
    suffix_latest: bool = False
    source: tuple[str, ...] = ()
    deferred: bool = False


@dataclass(frozen=True)
class ImageSpec:
    """One `images` entry: a lowercased base name and whether it is enabled."""

    name: str
    enable: bool = True
    source: str = ""
    deferred: bool = False


@dataclass(frozen=True)
class Metadata:
    """The outputs metadata-action would set."""

    version: str
    #: Full references, images outer and tags inner: `a:1`, `a:latest`, `b:1`, `b:latest`.
    tags: tuple[str, ...]
    #: The same tags without the image name (metadata-action's `tag-names` output).
    tag_names: tuple[str, ...]
    #: Default OCI labels merged with the extra ones, sorted by key.
    labels: Mapping[str, str]
    #: `level:key=value` for every annotation level, levels outer.
    annotations: tuple[str, ...]
    images: tuple[str, ...] = ()
    #: What metadata-action would have logged as warnings (e.g. a tag that is not semver).
    warnings: tuple[str, ...] = ()
