"""Image references, registries and digests: the one home of these facts.

Pure functions only (no I/O): which registry a reference names, whether that registry is this
machine's own (the lab's, or any loopback address), how an image is named by digest, and what a
registry's error text means. Everything that needs one of these facts imports it from here.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass

from buildtasks.errors import BuildtasksError, ConfigError, RegistryUnavailable

#: Docker Hub, the registry of a reference that names none.
DOCKER_HUB = "docker.io"
DIGEST_RE = re.compile(r"^sha256:[0-9a-f]{64}$")
#: `name@sha256:<64 hex>`: an image by digest (the name may carry a tag, which is ignored).
DIGEST_REF_RE = re.compile(r"^(?P<name>[^@\s]+)@(?P<digest>sha256:[0-9a-f]{64})$")

#: A registry's words for "you may not": no credentials, wrong ones, or no permission.
AUTH_ERRORS = re.compile(
    r"unauthorized|authentication required|denied|forbidden|failed to authorize|anonymous token"
    r"|no basic auth credentials|\b401\b|\b403\b",
    re.I,
)
#: A registry's (or the network's) words for "nobody answers there".
DOWN_ERRORS = re.compile(
    r"connection refused|no such host|i/o timeout|connection reset|dial tcp|server misbehaving",
    re.I,
)
#: A registry's words for "no such manifest or repository".
MISSING_ERRORS = re.compile(
    r"MANIFEST_UNKNOWN|manifest unknown|NAME_UNKNOWN|"
    # a HEAD of a manifest has no body to say MANIFEST_UNKNOWN in: only its status says it
    r"/manifests/sha256:[0-9a-f]{64}: unexpected status code 404",
    re.I,
)


@dataclass(frozen=True)
class DigestRef:
    """An image named by digest: `name@digest`, or the engine's image id when `name` is ""."""

    name: str
    digest: str

    def __str__(self) -> str:
        return f"{self.name}@{self.digest}" if self.name else self.digest


def registry_of(ref: str) -> str:
    """The registry host of a reference (`docker.io` when it names none)."""
    first, _, rest = ref.partition("/")
    if rest and ("." in first or ":" in first or first == "localhost"):
        return first
    return DOCKER_HUB


def host_name(registry: str) -> str:
    """The host of a registry address without its port: `[::1]:5000` → `::1`."""
    if registry.startswith("["):
        return registry[1 : registry.find("]")]
    return registry.rsplit(":", 1)[0] if registry.count(":") == 1 else registry


def is_loopback(registry: str) -> bool:
    """Whether a registry address is on this machine (`localhost`, 127.0.0.0/8, `::1`)."""
    name = host_name(registry)
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def is_local_registry(ref: str, *, lab_registry: str = "") -> bool:
    """Whether `ref` (a reference or a registry address) lives in the lab or on loopback.

    Such a registry is private to this machine: it speaks plain HTTP, no public transparency
    log makes sense for it, and `lab.up` is what starts it.
    """
    registry = registry_of(ref) if "/" in ref else ref
    return (bool(lab_registry) and registry == lab_registry) or is_loopback(registry)


def split_digest_ref(ref: str) -> DigestRef | None:
    """`name@sha256:...` → DigestRef; None when `ref` is not by digest."""
    match = DIGEST_REF_RE.match(ref.strip())
    return DigestRef(match["name"], match["digest"]) if match else None


def require_digest(ref: str, *, allow_image_id: bool = False) -> DigestRef:
    """Return `ref` split into name and digest; a tag or short digest is a `ConfigError`.

    With `allow_image_id`, the engine's image id (`sha256:...` alone) is accepted too (reading
    an image from the engine's store).
    """
    parsed = split_digest_ref(ref)
    if parsed:
        return parsed
    if allow_image_id and DIGEST_RE.match(ref.strip()):
        return DigestRef("", ref.strip())
    raise ConfigError(
        f"this step takes an image by digest (name@sha256:<64 hex>), not {ref!r}: omit --ref "
        "to use the last build's digest, or resolve a tag with `crane digest REF`"
    )


def repository(ref: str) -> str:
    """The repository a reference names, without tag or digest: `reg:5000/app:1` → `reg:5000/app`."""
    repo = ref.split("@", 1)[0]
    last = repo.rsplit("/", 1)[-1]
    if ":" in last:
        repo = repo[: repo.rfind(":")]
    return repo


def by_digest(name: str, digest: str) -> str:
    """Return `name@sha256:...` for a repository name that may carry a tag or digest."""
    return f"{repository(name)}@{digest}"


def login_fix(registry: str) -> str:
    """How to get credentials for `registry`, on a laptop and in GitHub Actions."""
    return (
        f"log in with `docker login {registry}` "
        "(in GitHub Actions: docker/login-action with packages: write)"
    )


def unreachable_fix(registry: str) -> str:
    """What to do when `registry` does not answer."""
    return (
        "start it with `uv run invoke lab.up`"
        if is_loopback(registry)
        else "check the address and network"
    )


def registry_error(ref: str, text: str, *, action: str) -> BuildtasksError | None:
    """Turn a tool's error text about `ref` into a one-line error naming the fix, if recognised.

    `action` completes "not allowed to ...", e.g. "push to" or "sign". Recognises a refused
    login and a registry that does not answer; anything else is left to the caller (None).
    """
    registry = registry_of(ref)
    host = unreachable_host(text)
    same = host == host_name(registry) or (is_loopback(host) and is_loopback(registry))
    if host and not same:
        # Another service did not answer (Sigstore's Fulcio or Rekor, a proxy, a token
        # server): the registry is not to blame.
        hint = (
            "keyless signing needs Sigstore's services (Fulcio, Rekor) reachable from here: "
            "check the network and proxy, or sign with a key (--key)"
            if host.endswith("sigstore.dev")
            else "check the network and proxy settings"
        )
        return RegistryUnavailable(f"cannot reach {host} to {action} {registry}: {hint}")
    if AUTH_ERRORS.search(text):
        return RegistryUnavailable(f"not allowed to {action} {registry}: {login_fix(registry)}")
    if DOWN_ERRORS.search(text):
        return RegistryUnavailable(
            f"registry {registry} is unreachable: {unreachable_fix(registry)}"
        )
    return None


#: Where a connection failed: `lookup HOST`, `dial tcp HOST:PORT`, or the request's URL.
_LOOKUP_RE = re.compile(r"lookup ([A-Za-z0-9.\-]+)(?: on |: )")
_DIAL_RE = re.compile(r"dial tcp \[?([A-Za-z0-9.\-:]+?)\]?:\d+: ")
_URL_RE = re.compile(r"https?://([A-Za-z0-9.\-]+)(?::\d+)?[/\"]")


def unreachable_host(text: str) -> str:
    """The host a connection error in `text` names ('' when none does, or no such error)."""
    for line in text.splitlines():
        if not DOWN_ERRORS.search(line):
            continue
        for pattern in (_LOOKUP_RE, _DIAL_RE, _URL_RE):
            if match := pattern.search(line):
                return match.group(1)
    return ""


@dataclass(frozen=True)
class BaseRef:
    """A base image reference split into registry, repository and tag."""

    registry: str
    repository: str
    tag: str

    @property
    def is_docker_hub(self) -> bool:
        return self.registry == DOCKER_HUB

    def __str__(self) -> str:
        if self.is_docker_hub:
            repo = self.repository.removeprefix("library/")
            return f"{repo}:{self.tag}"
        return f"{self.registry}/{self.repository}:{self.tag}"


def parse_base_ref(ref: str) -> BaseRef:
    """Split `python:3.11-slim` / `ghcr.io/astral-sh/uv:0.13.9` (a digest cannot be mirrored)."""
    if "@" in ref:
        raise ConfigError(f"cannot make a stand-in for a digest reference {ref!r}; use a tag")
    name, _, tag = ref.rpartition(":")
    if not name or "/" in tag:
        name, tag = ref, "latest"
    registry = registry_of(name)
    if registry != DOCKER_HUB or name.startswith(f"{DOCKER_HUB}/"):
        return BaseRef(registry, name.split("/", 1)[1], tag)
    repository = name if "/" in name else f"library/{name}"
    return BaseRef(DOCKER_HUB, repository, tag)


def mirror_ref(base: BaseRef, registry: str) -> str:
    """Where a copy of `base` lives in a local mirror `registry` (the lab's).

    docker.io images keep their mirror path (`library/python`) so the engine's docker.io
    mirror finds them; others are namespaced by their registry host so nothing collides.
    """
    if base.is_docker_hub:
        return f"{registry}/{base.repository}:{base.tag}"
    return f"{registry}/{base.registry}/{base.repository}:{base.tag}"
