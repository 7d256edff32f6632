"""What a registry holds for one repository: tags, manifests, and what each manifest points at.

Pure: the backends (`oci`, `ghcr`) fetch, this module reads what they fetched.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime

INDEX_TYPES = frozenset(
    {
        "application/vnd.oci.image.index.v1+json",
        "application/vnd.docker.distribution.manifest.list.v2+json",
    }
)
MANIFEST_TYPES = INDEX_TYPES | {
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.v2+json",
}
#: What a client accepts when it reads a manifest of any kind.
ACCEPT = ", ".join(sorted(MANIFEST_TYPES))
#: `sha256-<hex>` (the OCI referrers tag schema) and cosign's `sha256-<hex>.sig|.att|.sbom`.
REFERRER_TAG = re.compile(r"^(?P<alg>sha256)-(?P<hex>[0-9a-f]{64})(?:\.[a-z]+)?$")
CREATED = "org.opencontainers.image.created"


@dataclass(frozen=True)
class Blob:
    digest: str
    size: int


@dataclass(frozen=True)
class Manifest:
    """One manifest: an index (children) or an image/artifact (blobs), maybe a referrer."""

    digest: str
    media_type: str
    #: The manifest's own bytes: it is stored as a blob too.
    size: int
    children: tuple[str, ...] = ()
    #: Platform of each child (`linux/amd64`, `unknown/unknown` for attestation manifests).
    platforms: Mapping[str, str] = field(default_factory=dict)
    blobs: tuple[Blob, ...] = ()
    #: The manifest this one refers to (a signature's, attestation's or SBOM's image).
    subject: str = ""
    created: datetime | None = None
    #: The config blob, to read an image's creation time when no annotation has it.
    config: str = ""

    @property
    def is_index(self) -> bool:
        return self.media_type in INDEX_TYPES


def parse_time(value: object) -> datetime | None:
    """An RFC 3339 time as registries and builders write it, or None."""
    if not isinstance(value, str) or not value:
        return None
    text = re.sub(r"(\.\d{6})\d+", r"\1", value.strip()).replace("Z", "+00:00")
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        return None
    return moment if moment.tzinfo else None


def digest_of(body: bytes) -> str:
    return "sha256:" + hashlib.sha256(body).hexdigest()


def parse_manifest(body: bytes, digest: str = "", media_type: str = "") -> Manifest:
    """Read a manifest's JSON: children of an index, blobs of an image, its subject and time."""
    data = json.loads(body)
    kind = data.get("mediaType") or media_type
    if not kind:
        kind = (
            "application/vnd.oci.image.index.v1+json"
            if "manifests" in data
            else "application/vnd.oci.image.manifest.v1+json"
        )
    children: list[str] = []
    platforms: dict[str, str] = {}
    blobs: list[Blob] = []
    for entry in data.get("manifests") or ():
        if entry.get("mediaType", "") in MANIFEST_TYPES or not entry.get("mediaType"):
            children.append(entry["digest"])
            platform = entry.get("platform") or {}
            if platform:
                os_arch = f"{platform.get('os', '?')}/{platform.get('architecture', '?')}"
                if platform.get("variant"):
                    os_arch += f"/{platform['variant']}"
                platforms[entry["digest"]] = os_arch
        else:  # a build cache index lists its layers as blobs
            blobs.append(Blob(entry["digest"], int(entry.get("size", 0))))
    config = data.get("config") or {}
    if config.get("digest"):
        blobs.append(Blob(config["digest"], int(config.get("size", 0))))
    for layer in data.get("layers") or ():
        blobs.append(Blob(layer["digest"], int(layer.get("size", 0))))
    annotations = data.get("annotations") or {}
    return Manifest(
        digest=digest or digest_of(body),
        media_type=kind,
        size=len(body),
        children=tuple(dict.fromkeys(children)),
        platforms=platforms,
        blobs=tuple(dict.fromkeys(blobs)),
        subject=(data.get("subject") or {}).get("digest", ""),
        created=parse_time(annotations.get(CREATED)),
        config=config.get("digest", ""),
    )


def referrer_subject(tag: str) -> str:
    """The digest a referrer tag (`sha256-<hex>`, `sha256-<hex>.sig`) names, else ''."""
    match = REFERRER_TAG.match(tag)
    return f"{match['alg']}:{match['hex']}" if match else ""


@dataclass
class Inventory:
    """Everything one repository holds that the plan decides about."""

    #: The repository's full name (`ghcr.io/acme/app`, `127.0.0.1:5000/acme/app`).
    name: str
    #: Tag → digest.
    tags: dict[str, str] = field(default_factory=dict)
    #: Every manifest read: tagged, their children, referrers, and listed untagged ones.
    manifests: dict[str, Manifest] = field(default_factory=dict)
    #: When each manifest was pushed (the registry's record) or built (its config), where known.
    times: dict[str, datetime] = field(default_factory=dict)
    #: When each tag was last set, where the registry says.
    tag_times: dict[str, datetime] = field(default_factory=dict)
    #: Subject digest → referrer digests (the referrers API; `subject` fields are added too).
    referrers: dict[str, set[str]] = field(default_factory=dict)
    #: Whether untagged manifests could be listed (registry storage, GHCR) or only reached.
    lists_untagged: bool = False
    #: Blobs that manifests outside this repository use: deleting here does not free them.
    shared_blobs: frozenset[str] = frozenset()
    #: Digests something points at that the registry does not have.
    missing: set[str] = field(default_factory=set)

    def when(self, digest: str) -> datetime | None:
        """When `digest` was pushed (the registry's record) or created (its annotation)."""
        if digest in self.times:
            return self.times[digest]
        manifest = self.manifests.get(digest)
        return manifest.created if manifest else None

    def tag_time(self, tag: str) -> datetime | None:
        return self.tag_times.get(tag) or self.when(self.tags[tag])
