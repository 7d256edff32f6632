"""Push a built image by digest: every computed tag, then prove the registry serves that digest.

The source of truth is the digest recorded by the build. Each tag is pointed at exactly that
digest in the engine's image store before it is pushed, so a tag that meanwhile moved to
another build is never published. After pushing, each tag is read back from the registry and
its manifest digest compared; any mismatch or failure is an error that says which tags made it.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from buildtasks.command import Command
from buildtasks.errors import BuildtasksError, CommandFailed, RegistryUnavailable
from buildtasks.runner import Runner

AUTH_ERRORS = re.compile(
    r"unauthorized|authentication required|denied|forbidden|failed to authorize|anonymous token"
    r"|no basic auth credentials|\b401\b|\b403\b",
    re.I,
)
DOWN_ERRORS = re.compile(
    r"connection refused|no such host|i/o timeout|connection reset|dial tcp|server misbehaving",
    re.I,
)


def registry_of(ref: str) -> str:
    """The registry host of a reference (`docker.io` when it names none)."""
    first, _, rest = ref.partition("/")
    if rest and ("." in first or ":" in first or first == "localhost"):
        return first
    return "docker.io"


def tag_command(digest: str, ref: str) -> Command:
    """Point `ref` at the image whose id is `digest` in the engine's image store."""
    return Command(("docker", "image", "tag", digest, ref))


def push_command(ref: str) -> Command:
    return Command(("docker", "image", "push", "--quiet", ref))


def inspect_raw_command(ref: str) -> Command:
    """Read the manifest (or index) bytes a registry serves for `ref`."""
    return Command(("docker", "buildx", "imagetools", "inspect", "--raw", ref))


def manifest_digest(raw: str) -> str:
    """The digest of manifest bytes as a registry computes it."""
    return "sha256:" + hashlib.sha256(raw.encode()).hexdigest()


def login_fix(registry: str) -> str:
    return (
        f"log in with `docker login {registry}` "
        "(in GitHub Actions: docker/login-action with packages: write)"
    )


def login_missing(registry: str, v2_status: int, docker_config: Mapping[str, object]) -> bool:
    """Whether a push to `registry` will be refused for want of credentials.

    The registry asks for authentication (401 on /v2/) and Docker holds none for it: no
    `auths` entry, no credential helper for it, and no default credential store.
    """
    if v2_status != 401:
        return False
    auths = docker_config.get("auths") or {}
    helpers = docker_config.get("credHelpers") or {}
    hosts = {registry, f"https://{registry}", f"http://{registry}"}
    if registry == "docker.io":
        hosts |= {"https://index.docker.io/v1/", "index.docker.io"}
    known = any(h in auths for h in hosts) or any(h in helpers for h in hosts)  # type: ignore[operator]
    return not known and not docker_config.get("credsStore")


def classify_push_failure(ref: str, stderr: str) -> BuildtasksError | None:
    """Turn a push's error text into a one-line error that names the fix, when recognisable."""
    registry = registry_of(ref)
    if AUTH_ERRORS.search(stderr):
        return RegistryUnavailable(f"not allowed to push to {registry}: {login_fix(registry)}")
    if DOWN_ERRORS.search(stderr):
        fix = (
            "start it with `uv run invoke lab.up`"
            if registry.startswith(("127.", "localhost"))
            else "check the address and network"
        )
        return RegistryUnavailable(f"registry {registry} is unreachable: {fix}")
    return None


@dataclass(frozen=True)
class PushReport:
    digest: str
    pushed: tuple[str, ...]


def push_by_digest(digest: str, tags: Sequence[str], runner: Runner) -> PushReport:
    """Push `tags`, all pointing at `digest`, and verify the registry serves `digest` for each.

    Raises `RegistryUnavailable` (down, not logged in) or `BuildtasksError` (digest mismatch),
    naming the tags that were already pushed when a later one fails.
    """
    if not tags:
        raise BuildtasksError(
            "nothing to push: the build recorded no tags; pass --tag to docker.build"
        )
    if not runner.dry:
        try:
            runner.output(Command(("docker", "image", "inspect", "--format", "{{.Id}}", digest)))
        except CommandFailed:
            raise BuildtasksError(
                f"image {digest[:19]} is not in the engine's image store: rebuild it with "
                "`uv run invoke docker.build` (loaded, not --push only)"
            ) from None
    pushed: list[str] = []
    for ref in tags:
        try:
            runner.run(tag_command(digest, ref), capture=True)
            runner.run(push_command(ref), capture=True)
        except CommandFailed as exc:
            error: BuildtasksError = classify_push_failure(ref, str(exc)) or exc
            if pushed:
                rest = ", ".join(t for t in tags if t not in pushed)
                cls = (
                    RegistryUnavailable
                    if isinstance(error, RegistryUnavailable)
                    else BuildtasksError
                )
                error = cls(
                    f"{error} (already pushed: {', '.join(pushed)}; not pushed: {rest})",
                    exit_code=error.exit_code,
                )
            raise error from None
        pushed.append(ref)
    verify_pushed(digest, tags, runner)
    return PushReport(digest, tuple(pushed))


def verify_pushed(digest: str, tags: Sequence[str], runner: Runner) -> None:
    """Fail unless the registry serves exactly `digest` for every one of `tags`."""
    if runner.dry:
        return
    for ref in tags:
        raw = runner.run(inspect_raw_command(ref), capture=True, quiet=True).stdout
        served = manifest_digest(raw)
        if served != digest:
            raise BuildtasksError(
                f"registry serves {served[:19]} for {ref}, not the built {digest[:19]}: "
                "another push raced this one; rerun docker.push"
            )


def require_login(registry: str, *, env: Mapping[str, str]) -> None:
    """Fail before pushing anything when `registry` wants a login Docker does not have."""
    import json
    import os
    import urllib.error
    import urllib.request
    from pathlib import Path

    scheme = "http" if registry.startswith(("127.", "localhost")) else "https"
    host = "registry-1.docker.io" if registry == "docker.io" else registry
    try:
        with urllib.request.urlopen(f"{scheme}://{host}/v2/", timeout=5) as response:
            status = response.status
    except urllib.error.HTTPError as exc:
        status = exc.code
    except OSError:
        return  # unreachable: the push itself reports it with the right fix
    config_dir = Path(env.get("DOCKER_CONFIG") or os.path.expanduser("~/.docker"))
    try:
        docker_config = json.loads((config_dir / "config.json").read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        docker_config = {}
    if login_missing(registry, status, docker_config):
        raise RegistryUnavailable(f"not logged in to {registry}: {login_fix(registry)}")
