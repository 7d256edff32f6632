"""Which builder builds which platform (`[tool.buildtasks.builders]`), pure.

A builder is named by one string:

* `default`: the current docker engine and buildx builder (what runs without configuration);
* `builder:NAME`: a buildx builder (`docker buildx create ...`: a `docker-container` builder,
  or a `remote` BuildKit endpoint created with `--driver remote tcp://host:1234`);
* `context:NAME`: a docker context (`docker context create NAME --docker host=...`);
* an engine endpoint, `unix:///path/docker.sock`, `tcp://host:2376` or `ssh://user@host`.

Platforms without an entry build on `default`. A multi-platform build whose platforms map to
several builders fans out, one build per builder, in parallel, and merges the digests.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from buildtasks.errors import ConfigError

ENDPOINT_SCHEMES = ("unix://", "tcp://", "ssh://", "npipe://")


@dataclass(frozen=True)
class BuilderSpec:
    """One builder: how every docker and buildx command reaches it."""

    kind: str  # "default" | "builder" | "context" | "host"
    value: str = ""

    def __str__(self) -> str:
        if self.kind == "default":
            return "default"
        return self.value if self.kind == "host" else f"{self.kind}:{self.value}"

    @property
    def env(self) -> dict[str, str]:
        """Environment for every docker command of a build on this builder."""
        if self.kind == "host":
            return {"DOCKER_HOST": self.value, "DOCKER_CONTEXT": ""}
        if self.kind == "context":
            return {"DOCKER_CONTEXT": self.value, "DOCKER_HOST": ""}
        return {}

    @property
    def buildx_name(self) -> str:
        """The `--builder` value ('' for the engine's own builder)."""
        return self.value if self.kind == "builder" else ""


DEFAULT = BuilderSpec("default")


def parse_builder(text: str, where: str) -> BuilderSpec:
    """Read one builder string; a ConfigError naming the accepted forms otherwise."""
    value = text.strip()
    if value in ("", "default"):
        return DEFAULT
    if value.startswith(ENDPOINT_SCHEMES):
        return BuilderSpec("host", value)
    kind, sep, name = value.partition(":")
    if sep and kind in ("builder", "context") and name:
        return BuilderSpec(kind, name)
    raise ConfigError(
        f"{where} = {text!r} names no builder: use default, builder:NAME, context:NAME, or an "
        "engine endpoint (unix://..., tcp://..., ssh://...)"
    )


def assign(
    platforms: Sequence[str], builders: Mapping[str, BuilderSpec]
) -> list[tuple[BuilderSpec, tuple[str, ...]]]:
    """Group `platforms` by the builder each maps to, in the order of first use."""
    groups: dict[BuilderSpec, list[str]] = {}
    for platform in platforms:
        groups.setdefault(builders.get(platform, DEFAULT), []).append(platform)
    return [(spec, tuple(group)) for spec, group in groups.items()]
