"""Decide what a cleanup keeps and deletes, and why (pure).

Kept means reachable. The roots are the tags the policy keeps (and the newest or youngest
untagged manifests); from each root the plan keeps its index's platform manifests and every
referrer of every kept manifest (signatures, SBOM, vulnerability and provenance attestations),
whether the registry lists them through the referrers API, a `subject` field or the tag
fallback (`sha256-<digest>`, `sha256-<digest>.sig`). Everything else goes, and a referrer
whose subject goes goes with it. A tag that expires while its digest stays reachable through
another tag loses only the tag.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from fnmatch import fnmatchcase

from buildtasks.retention.model import Inventory, referrer_subject
from buildtasks.retention.policy import BUILD_CACHE_PATTERN, Policy


@dataclass(frozen=True)
class TagDecision:
    tag: str
    digest: str
    #: "keep", "delete" (with its manifest) or "untag" (the manifest stays).
    action: str
    reason: str


@dataclass
class CleanupPlan:
    name: str
    tags: list[TagDecision] = field(default_factory=list)
    #: Kept manifest → why (the first root that reached it).
    kept: dict[str, str] = field(default_factory=dict)
    #: Deleted manifest → why, in the order to delete them: referrers and children before
    #: what points at them, so an interrupted run leaves nothing unreachable behind.
    deleted: dict[str, str] = field(default_factory=dict)
    #: Bytes the registry frees once it collects garbage (blobs no kept manifest uses).
    freed: int = 0
    #: Bytes of every blob and manifest of the repository, counted once.
    total: int = 0
    #: Untagged manifests nothing points at (judged by keep-untagged and untagged-days).
    loose: int = 0
    notes: list[str] = field(default_factory=list)

    @property
    def untag(self) -> list[TagDecision]:
        return [t for t in self.tags if t.action == "untag"]

    @property
    def changes(self) -> bool:
        return bool(self.deleted or self.untag)


def _age_days(now: datetime, moment: datetime | None) -> float | None:
    return None if moment is None else max(0.0, (now - moment).total_seconds() / 86400)


def _fmt_days(days: float) -> str:
    return f"{days:.1f} days"


def short(digest: str) -> str:
    return digest.split(":", 1)[-1][:12]


def plan_cleanup(inventory: Inventory, policy: Policy, now: datetime) -> CleanupPlan:
    """Keep what the policy keeps and all it reaches; delete the rest, each with its reason."""
    inv = inventory
    result = CleanupPlan(inv.name)
    subjects: dict[str, set[str]] = {d: set(r) for d, r in inv.referrers.items()}
    for manifest in inv.manifests.values():
        if manifest.subject:
            subjects.setdefault(manifest.subject, set()).add(manifest.digest)
    referrer_tags: dict[str, list[str]] = {}  # subject → referrer tags
    roots: dict[str, str] = {}  # digest → reason
    tag_reasons: dict[str, tuple[bool, str]] = {}  # tag → (keep, reason)

    for tag, digest in sorted(inv.tags.items()):
        if subject := referrer_subject(tag):
            referrer_tags.setdefault(subject, []).append(tag)
            continue
        keep, reason = _judge_tag(tag, inv, policy, now)
        tag_reasons[tag] = (keep, reason)
        if keep:
            roots.setdefault(digest, f"tag {tag}")

    # Untagged manifests nothing points at: the newest N, and any younger than the limit.
    pointed = set(inv.tags.values())
    for manifest in inv.manifests.values():
        pointed.update(manifest.children)
        if manifest.subject:
            pointed.add(manifest.digest)
    for refs in subjects.values():
        pointed.update(refs)
    loose = [d for d in inv.manifests if d not in pointed]
    loose.sort(key=lambda d: inv.when(d) or now, reverse=True)
    untagged_reason: dict[str, str] = {}
    # cosign rewrites a `sha256-<digest>` referrers list for each new signature: the list it
    # replaced stays behind untagged, naming nothing a tag does not name better.
    for digest in [d for d in loose if _stale_referrers_list(inv, d)]:
        loose.remove(digest)
        untagged_reason[digest] = "an old referrers list (its sha256- tag has moved on)"
    result.loose = len(loose)
    for rank, digest in enumerate(loose):
        age = _age_days(now, inv.when(digest))
        if rank < policy.keep_untagged:
            roots.setdefault(digest, f"untagged, one of the {policy.keep_untagged} newest")
        elif age is None:
            roots.setdefault(digest, "untagged, age unknown")
        elif policy.untagged_days and age < policy.untagged_days:
            roots.setdefault(
                digest,
                f"untagged, {_fmt_days(age)} old (kept {policy.untagged_days:g} days)",
            )
        else:
            limit = (
                f"older than {policy.untagged_days:g} days"
                if policy.untagged_days
                else "untagged-days is 0"
            )
            untagged_reason[digest] = (
                f"untagged, {_fmt_days(age)} old (beyond the {policy.keep_untagged} newest, "
                f"{limit})"
            )

    # Everything reachable from a root is kept.
    def reach(digest: str) -> Iterable[tuple[str, str]]:
        manifest = inv.manifests.get(digest)
        if manifest is not None:
            for child in manifest.children:
                yield child, f"{manifest.platforms.get(child, 'child')} of {short(digest)}"
        for ref in subjects.get(digest, ()):
            yield ref, f"referrer of {short(digest)}"
        for tag in referrer_tags.get(digest, ()):
            tagged = inv.tags[tag]
            yield tagged, f"{tag} (referrers of {short(digest)})"

    stack = list(roots.items())
    while stack:
        digest, reason = stack.pop()
        if digest in result.kept:
            continue
        result.kept[digest] = reason
        stack.extend((d, r) for d, r in reach(digest) if d not in result.kept)

    # The tags: kept ones, expired ones (with or without their manifest), referrer tags.
    for tag, digest in sorted(inv.tags.items()):
        subject = referrer_subject(tag)
        if subject:
            if subject in result.kept and digest in result.kept:
                decision = TagDecision(tag, digest, "keep", f"referrers of kept {short(subject)}")
            elif subject not in inv.manifests:
                decision = TagDecision(
                    tag, digest, "delete", f"referrers of {short(subject)}, which is gone"
                )
            else:
                decision = TagDecision(
                    tag, digest, "delete", f"referrers of {short(subject)}, deleted"
                )
        else:
            keep, reason = tag_reasons[tag]
            if keep:
                decision = TagDecision(tag, digest, "keep", reason)
            elif digest in result.kept:
                decision = TagDecision(
                    tag, digest, "untag", f"{reason}; its manifest stays ({result.kept[digest]})"
                )
            else:
                decision = TagDecision(tag, digest, "delete", reason)
        result.tags.append(decision)

    # Deleted manifests, leaves first: post-order from each deleted root.
    why: dict[str, str] = {}
    for decision in result.tags:
        if decision.action == "delete" and decision.digest in inv.manifests:
            why.setdefault(decision.digest, f"tag {decision.tag}: {decision.reason}")
    why.update({d: r for d, r in untagged_reason.items() if d not in why})
    for digest in inv.manifests:
        if digest not in result.kept and digest not in why:
            why[digest] = "unreachable"
    seen: set[str] = set()

    def visit(digest: str, reason: str) -> None:
        if digest in seen or digest in result.kept or digest not in inv.manifests:
            return
        seen.add(digest)
        for child, child_reason in reach(digest):
            visit(child, f"{child_reason}, deleted")
        result.deleted[digest] = why.get(digest) if why.get(digest) != "unreachable" else reason

    for digest, reason in why.items():
        visit(digest, reason)

    result.total, result.freed = _bytes(inv, result)
    if not inv.lists_untagged:
        result.notes.append(
            "this registry cannot list untagged manifests: only those reachable from a tag "
            "are judged; its own garbage collection removes the rest"
        )
    if inv.missing:
        result.notes.append(
            f"{len(inv.missing)} manifest(s) named by an index or tag are gone from the registry"
        )
    return result


def _stale_referrers_list(inv: Inventory, digest: str) -> bool:
    """Whether an untagged manifest is an index listing only referrers (signatures and the like)."""
    manifest = inv.manifests[digest]
    return (
        manifest.is_index
        and bool(manifest.children)
        and all(c in inv.manifests and inv.manifests[c].subject for c in manifest.children)
    )


def _judge_tag(tag: str, inv: Inventory, policy: Policy, now: datetime) -> tuple[bool, str]:
    """Whether the policy keeps `tag`, and why."""
    if fnmatchcase(tag, BUILD_CACHE_PATTERN):
        if policy.keep_build_cache:
            return True, "build cache (keep-build-cache)"
        return False, "build cache, keep-build-cache = false"
    if pattern := policy.keep_pattern(tag):
        return True, f'matches keep pattern "{pattern}"'
    if expiry := policy.expiry(tag):
        pattern, days = expiry
        age = _age_days(now, inv.tag_time(tag))
        if age is None:
            return True, f'matches "{pattern}", age unknown'
        if age >= days:
            return False, f'matches "{pattern}", {_fmt_days(age)} old (expires after {days:g})'
        return True, f'matches "{pattern}", {_fmt_days(age)} old (expires after {days:g})'
    return True, "tagged; no expire pattern matches"


def _bytes(inv: Inventory, plan: CleanupPlan) -> tuple[int, int]:
    """(all bytes of the repository, bytes freed): blobs and manifests, each counted once."""
    sizes: dict[str, int] = {}
    kept_blobs: set[str] = set()
    deleted_blobs: set[str] = set()
    for digest, manifest in inv.manifests.items():
        sizes[digest] = manifest.size
        used = {b.digest for b in manifest.blobs}
        for blob in manifest.blobs:
            sizes.setdefault(blob.digest, blob.size)
        if digest in plan.deleted:
            deleted_blobs |= used | {digest}
        else:
            kept_blobs |= used | {digest}
    freed = deleted_blobs - kept_blobs - set(inv.shared_blobs)
    return sum(sizes.values()), sum(sizes[d] for d in freed)


def human(size: float) -> str:
    """Bytes as people read them: 1.2 MB, 530 kB."""
    for unit in ("B", "kB", "MB", "GB"):
        if abs(size) < 1000 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1000
    return f"{size:.1f} TB"  # pragma: no cover - the loop returns at GB


def render(plan: CleanupPlan, inv: Inventory, *, verbose: bool = False) -> list[str]:
    """The plan as the lines `docker.cleanup` prints."""
    lines = [
        f"{plan.name}: {len(inv.tags)} tags, {len(inv.manifests)} manifests, {human(plan.total)}"
    ]
    width = max((len(t.tag) for t in plan.tags), default=0)
    referrer_kept = 0
    for decision in plan.tags:
        if decision.action == "keep" and referrer_subject(decision.tag) and not verbose:
            referrer_kept += 1
            continue
        lines.append(
            f"  {decision.action:<6} {decision.tag.ljust(width)}  {short(decision.digest)}  "
            f"{decision.reason}"
        )
    if referrer_kept:
        lines.append(f"  keep   {referrer_kept} referrer tags of kept manifests")
    tagged = set(inv.tags.values())
    for digest, reason in plan.kept.items():
        if verbose or (digest not in tagged and reason.startswith("untagged")):
            lines.append(f"  keep   {digest}  {reason}")
    for digest, reason in plan.deleted.items():
        lines.append(f"  delete {digest}  {reason}")
    lines.extend(f"  note: {note}" for note in plan.notes)
    return lines
