"""Push a built image by digest: every computed tag, then prove the registry serves that digest.

The source of truth is the digest recorded by the build. Each tag is pointed at exactly that
digest in the engine's image store before it is pushed, so a tag that meanwhile moved to
another build is never published. After pushing, each tag is read back from the registry and
its manifest digest compared; any mismatch or failure is an error that says which tags made it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass

from buildtasks.buildx import image_inspect
from buildtasks.command import Command
from buildtasks.errors import BuildtasksError, CommandFailed, RegistryUnavailable
from buildtasks.refs import registry_error
from buildtasks.runner import Runner


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
            runner.output(image_inspect(digest, "{{.Id}}"))
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
            error: BuildtasksError = registry_error(ref, str(exc), action="push to") or exc
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
