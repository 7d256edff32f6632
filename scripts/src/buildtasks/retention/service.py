"""Inventory → plan → apply: what `docker.cleanup` and `docker.usage` run.

Nothing is replayed: every run reads the registry afresh and plans again, so a run that
stopped halfway (a refused delete, a network error) is finished by running it again.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from buildtasks import labstate
from buildtasks.config import Config
from buildtasks.errors import (
    BuildtasksError,
    CommandFailed,
    ConfigError,
    RegistryUnavailable,
    ToolNotFound,
)
from buildtasks.refs import login_fix, registry_of
from buildtasks.retention import ghcr, oci
from buildtasks.retention.model import Inventory
from buildtasks.retention.plan import CleanupPlan, human, plan_cleanup
from buildtasks.retention.policy import Policy
from buildtasks.runner import Runner

BACKENDS = ("auto", "registry", "ghcr")


@dataclass(frozen=True)
class Target:
    """One repository to clean, with the policy that applies to it."""

    key: str
    name: str
    policy: Policy


def targets(config: Config, image: str, name: str) -> list[Target]:
    """The repositories of the selected images (`--name` replaces the one image's name)."""
    specs = config.select(image)
    if name and len(specs) > 1:
        keys = " or ".join(f"--image {s.key}" for s in specs)
        raise ConfigError(f"--name applies to one image: add {keys}")
    return [
        Target(s.key, name or f"{config.registry}/{s.repository}", config.retention_for(s))
        for s in specs
    ]


class Backend:
    """How one repository is read and changed."""

    name: str
    #: The registry API of the repository (reads; writes where the backend has no other way).
    client: oci.Client
    storage: oci.Storage | None = None

    def inventory(self) -> Inventory:  # pragma: no cover - interface
        raise NotImplementedError

    def probe(self) -> None:
        """Fail before the first delete when deletes cannot work."""

    def untag(self, tag: str) -> None:  # pragma: no cover - interface
        raise NotImplementedError

    def delete(self, digest: str) -> bool:  # pragma: no cover - interface
        raise NotImplementedError


class RegistryBackend(Backend):
    """The distribution API (any OCI registry), plus the registry's storage when readable."""

    def __init__(self, client: oci.Client, storage: oci.Storage | None) -> None:
        self.client = client
        self.name = client.name
        self.storage = storage

    def inventory(self) -> Inventory:
        return oci.inventory(self.client, self.storage)

    def probe(self) -> None:
        # A placeholder pushed by digest and deleted: a registry that refuses deletes says so
        # before anything of the user's is touched.
        self.client.delete(self.client.put_placeholder("", "buildtasks cleanup: delete probe"))

    def untag(self, tag: str) -> None:
        placeholder = self.client.put_placeholder(tag, f"buildtasks cleanup: removes tag {tag}")
        self.client.delete(placeholder)

    def delete(self, digest: str) -> bool:
        return self.client.delete(digest)


class GhcrBackend(Backend):
    """GHCR: versions and deletes through the REST API, manifests through the registry API."""

    def __init__(self, client: oci.Client, packages: ghcr.Packages) -> None:
        self.client = client
        self.packages = packages
        self.name = client.name

    def inventory(self) -> Inventory:
        inv = Inventory(self.name)
        digests = ghcr.add_versions(inv, self.packages.versions())
        with ThreadPoolExecutor(oci.WORKERS) as pool:
            oci.complete(pool, self.client, inv, digests, referrers_api=False)
        return inv

    def probe(self) -> None:
        if not self.packages.token:
            raise ConfigError(
                "GITHUB_TOKEN is not set: GHCR deletes need a token with delete:packages "
                "(in a workflow: GITHUB_TOKEN: ${{ github.token }} and packages: write)"
            )

    def untag(self, tag: str) -> None:
        placeholder = self.client.put_placeholder(tag, f"buildtasks cleanup: removes tag {tag}")
        self.packages.versions()  # the placeholder is a new version: learn its id
        self.packages.delete(placeholder)

    def delete(self, digest: str) -> bool:
        return self.packages.delete(digest)


def lab_registry_config(config: Config, registry: str, env: Mapping[str, str]) -> Path | None:
    """The lab registry's config file when `registry` is the lab's and this user can read it."""
    if registry != config.lab.registry:
        return None
    recorded = labstate.read(env).registry_config
    return Path(recorded) if recorded and os.access(recorded, os.R_OK) else None


def backend_for(
    target: Target,
    config: Config,
    runner: Runner,
    *,
    kind: str = "auto",
    registry_config: str = "",
    env: Mapping[str, str],
) -> Backend:
    """The backend that reads and cleans `target`."""
    if kind not in BACKENDS:
        raise ConfigError(f"--backend must be one of {', '.join(BACKENDS)}, got {kind!r}")
    registry = registry_of(target.name)

    def authorize(name: str) -> str:
        try:
            line = runner.output(oci.token_command(name))
        except CommandFailed:
            raise RegistryUnavailable(
                f"not allowed to read {name}: {login_fix(registry_of(name))}"
            ) from None
        return line.partition(":")[2].strip() if line.lower().startswith("authorization:") else line

    client = oci.Client(target.name, authorize=authorize)
    if kind == "ghcr" or (kind == "auto" and registry == "ghcr.io"):
        owner, package = ghcr.package_of(target.name)
        token = env.get("GITHUB_TOKEN") or env.get("GH_TOKEN") or ""
        api = env.get("GITHUB_API_URL") or ghcr.API
        return GhcrBackend(client, ghcr.Packages(owner, package, token, api))
    path = Path(registry_config) if registry_config else lab_registry_config(config, registry, env)
    return RegistryBackend(client, oci.open_storage(path) if path else None)


@dataclass
class Outcome:
    target: Target
    inventory: Inventory
    plan: CleanupPlan
    deleted: int = 0
    untagged: int = 0


def survey(backend: Backend, target: Target, now: datetime) -> Outcome:
    inv = backend.inventory()
    return Outcome(target, inv, plan_cleanup(inv, target.policy, now))


def apply(backend: Backend, outcome: Outcome, runner: Runner) -> None:
    """Carry the plan out: untag, then delete leaves first; then check every kept tag."""
    plan = outcome.plan
    if not plan.changes:
        return
    steps: list[tuple[str, Callable[[], object]]] = []
    for decision in plan.untag:
        steps.append((f"untag {decision.tag}", lambda t=decision.tag: backend.untag(t)))
    for digest in plan.deleted:
        steps.append((f"delete {digest}", lambda d=digest: backend.delete(d)))
    if runner.dry:
        for label, _ in steps:
            runner.say(f"+ {label}  ({plan.name})")
        return
    backend.probe()
    for done, (label, step) in enumerate(steps):
        runner.say(f"  {label}")
        try:
            result = step()
        except BuildtasksError as exc:
            raise BuildtasksError(
                f"{plan.name}: {label} failed after {done} of {len(steps)} changes: {exc}; "
                "nothing kept was touched, and `docker.cleanup --apply` again plans afresh "
                "and finishes the job",
                exit_code=exc.exit_code,
            ) from None
        if label.startswith("untag"):
            outcome.untagged += 1
        elif result:
            outcome.deleted += 1
    _check_kept(backend, outcome)


def _check_kept(backend: Backend, outcome: Outcome) -> None:
    """Every tag the plan kept still resolves (a tag another push moved meanwhile is fine)."""
    client = backend.client
    kept = [t.tag for t in outcome.plan.tags if t.action == "keep"]
    with ThreadPoolExecutor(oci.WORKERS) as pool:
        gone = [tag for tag, m in zip(kept, pool.map(client.manifest, kept), strict=True) if not m]
    if gone:
        raise BuildtasksError(
            f"{outcome.plan.name}: kept tags no longer resolve after cleaning: "
            f"{', '.join(sorted(gone))}; push them again from their build records, and report "
            "this: cleanup must never delete what a kept tag names"
        )


def registry_binary() -> str:
    found = shutil.which("docker-registry") or shutil.which("registry")
    if not found:
        raise ToolNotFound(
            "the distribution registry binary (docker-registry or registry) is not installed: "
            "garbage collection needs it (`uv run invoke lab.up` installs it)"
        )
    return found


def collect_garbage(storage: oci.Storage, runner: Runner) -> tuple[int, int]:
    """Run the registry's garbage collection; the blob bytes before and after."""
    before = storage.blob_bytes()
    runner.run(oci.garbage_collect(registry_binary(), storage.config), capture=True)
    return before, storage.blob_bytes()


def summary(outcome: Outcome, *, applied: bool) -> str:
    plan = outcome.plan
    tags = sum(1 for t in plan.tags if t.action != "keep")
    if not plan.changes:
        return f"{plan.name}: nothing to delete"
    if applied:
        return (
            f"{plan.name}: deleted {outcome.deleted} manifests and {tags} tags; "
            f"{human(plan.freed)} to be freed by the registry's garbage collection"
        )
    return (
        f"{plan.name}: would delete {len(plan.deleted)} manifests and {tags} tags, freeing "
        f"{human(plan.freed)}; dry run: add --apply to delete"
    )


def usage_row(outcome: Outcome) -> tuple[str, ...]:
    inv, plan = outcome.inventory, outcome.plan
    untagged = str(plan.loose) if inv.lists_untagged else "?"
    return (
        plan.name,
        str(len(inv.tags)),
        str(len(inv.manifests)),
        untagged,
        human(plan.total),
        f"{human(plan.freed)} ({len(plan.deleted)})",
    )
