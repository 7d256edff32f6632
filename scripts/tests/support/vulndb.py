"""A small, self-made Trivy vulnerability database for offline scans and tests.

Trivy reads `CACHE/db/trivy.db` (a bbolt file) and `CACHE/db/metadata.json`. Nothing here
downloads anything: `bbolt_bytes` serializes nested mappings into a valid bbolt file with the
standard library, `trivy_tree` lays advisories out in the buckets trivy-db uses, and
`write_db` writes both files. For a registry mirror (`trivy --db-repository`),
`write_db_tarball` packs them the way the upstream artifact does and `oras_push` plans the
push with the layer media type Trivy insists on.

Every advisory id in `DEFAULT_ADVISORIES` is an invented `CVE-2099-NNNN`, so nobody can
mistake this fixture for real vulnerability data.

bbolt layout written here (all integers little-endian, 4096-byte pages):

* pages 0 and 1: meta pages (txid 0 and 1, identical otherwise), each checksummed with
  FNV-1a 64 over the meta fields before the checksum;
* page 2: an empty freelist page;
* pages 3..: the root bucket's B+tree, then the trees of nested buckets too big to inline.

A nested bucket with no sub-buckets whose page would fit in a quarter page is stored inline
in its parent's value (bucket header with root 0, then the page), as bbolt itself does;
other buckets get leaf pages of their own, under branch pages when one leaf is not enough,
with overflow pages for an element larger than a page.
"""

from __future__ import annotations

import gzip
import io
import ipaddress
import json
import re
import struct
import tarfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from buildtasks.command import Command
from buildtasks.trivy import FIXTURE_KEY

# --- bbolt on-disk format -------------------------------------------------------------

PAGE_SIZE = 4096
BBOLT_MAGIC = 0xED0CDAED
BBOLT_VERSION = 2

BRANCH_PAGE = 0x01
LEAF_PAGE = 0x02
META_PAGE = 0x04
FREELIST_PAGE = 0x10
BUCKET_LEAF_FLAG = 0x01

_PAGE_HEADER = struct.Struct("<QHHI")  # id, flags, count, overflow
_LEAF_ELEMENT = struct.Struct("<IIII")  # flags, pos, ksize, vsize
_BRANCH_ELEMENT = struct.Struct("<IIQ")  # pos, ksize, pgid
_BUCKET_HEADER = struct.Struct("<QQ")  # root pgid, sequence
# magic, version, page size, flags, root {pgid, sequence}, freelist, high-water pgid, txid
_META = struct.Struct("<IIIIQQQQQ")
_CHECKSUM = struct.Struct("<Q")

_META_PGIDS = (0, 1)
_FREELIST_PGID = 2
_FIRST_DATA_PGID = 3

_FNV64_OFFSET = 0xCBF29CE484222325
_FNV64_PRIME = 0x100000001B3

Tree = Mapping[bytes, "Mapping[bytes, object] | bytes"]


def fnv1a_64(data: bytes) -> int:
    """Return the 64-bit FNV-1a hash of `data`, the checksum bbolt puts on meta pages."""
    h = _FNV64_OFFSET
    for byte in data:
        h = ((h ^ byte) * _FNV64_PRIME) & 0xFFFFFFFFFFFFFFFF
    return h


def meta_bytes(*, root_pgid: int, high_water: int, txid: int, page_size: int = PAGE_SIZE) -> bytes:
    """Return a meta record (without page header): the fields and their FNV-1a checksum."""
    fields = _META.pack(
        BBOLT_MAGIC,
        BBOLT_VERSION,
        page_size,
        0,
        root_pgid,
        0,
        _FREELIST_PGID,
        high_water,
        txid,
    )
    return fields + _CHECKSUM.pack(fnv1a_64(fields))


@dataclass(frozen=True)
class _Element:
    key: bytes
    value: bytes
    flags: int = 0


def _leaf_size(elements: Iterable[_Element]) -> int:
    return _PAGE_HEADER.size + sum(_LEAF_ELEMENT.size + len(e.key) + len(e.value) for e in elements)


def _page_body(
    pgid: int, flags: int, elements: list[_Element], *, branch_pgids: list[int] | None = None
) -> bytes:
    """Lay out one node as bbolt's `node.write` does: header, element table, then data."""
    table = bytearray()
    data = bytearray()
    elem_size = _BRANCH_ELEMENT.size if branch_pgids is not None else _LEAF_ELEMENT.size
    data_start = _PAGE_HEADER.size + elem_size * len(elements)
    for i, element in enumerate(elements):
        if not element.key:
            raise ValueError("bbolt keys must not be empty")
        elem_offset = _PAGE_HEADER.size + elem_size * i
        pos = data_start + len(data) - elem_offset
        if branch_pgids is not None:
            table += _BRANCH_ELEMENT.pack(pos, len(element.key), branch_pgids[i])
            data += element.key
        else:
            table += _LEAF_ELEMENT.pack(element.flags, pos, len(element.key), len(element.value))
            data += element.key + element.value
    size = _PAGE_HEADER.size + len(table) + len(data)
    overflow = max(0, -(-size // PAGE_SIZE) - 1)
    if len(elements) >= 0xFFFF:
        raise ValueError(f"too many elements for one bbolt page: {len(elements)}")
    header = _PAGE_HEADER.pack(pgid, flags, len(elements), overflow)
    return header + bytes(table) + bytes(data)


def _pack(sizes: list[int], capacity: int) -> list[range]:
    """Split element indexes into runs whose sizes fit `capacity` (at least one per run)."""
    runs: list[range] = []
    start, used = 0, _PAGE_HEADER.size
    for i, size in enumerate(sizes):
        if i > start and used + size > capacity:
            runs.append(range(start, i))
            start, used = i, _PAGE_HEADER.size
        used += size
    runs.append(range(start, len(sizes)))
    return runs


class _Writer:
    """Allocates page ids and collects page images for one database file."""

    def __init__(self) -> None:
        self.pages: dict[int, bytes] = {}
        self.next_pgid = _FIRST_DATA_PGID

    def _store(self, body: bytes) -> int:
        pgid = self.next_pgid
        # The page id is the first header field; it is only known once allocated.
        self.pages[pgid] = struct.pack("<Q", pgid) + body[8:]
        self.next_pgid += -(-len(body) // PAGE_SIZE)
        return pgid

    def elements(self, tree: Tree) -> list[_Element]:
        """Return a bucket's sorted leaf elements, nested buckets already serialized."""
        out = []
        for key in sorted(tree):
            if not isinstance(key, bytes):
                raise TypeError(f"bbolt keys must be bytes, got {key!r}")
            value = tree[key]
            if isinstance(value, bytes | bytearray):
                out.append(_Element(key, bytes(value)))
            elif isinstance(value, Mapping):
                out.append(_Element(key, self.nested_bucket(value), BUCKET_LEAF_FLAG))
            else:
                raise TypeError(f"value for {key!r} must be bytes or a mapping, got {value!r}")
        return out

    def nested_bucket(self, tree: Tree) -> bytes:
        """Return the value stored under a nested bucket's key: header, maybe an inline page."""
        elements = self.elements(tree)
        inlineable = all(not e.flags & BUCKET_LEAF_FLAG for e in elements)
        if inlineable and _leaf_size(elements) <= PAGE_SIZE // 4:
            return _BUCKET_HEADER.pack(0, 0) + _page_body(0, LEAF_PAGE, elements)
        return _BUCKET_HEADER.pack(self.btree(elements), 0)

    def btree(self, elements: list[_Element]) -> int:
        """Write a bucket's B+tree (leaves, then branch levels) and return its root pgid."""
        sizes = [_LEAF_ELEMENT.size + len(e.key) + len(e.value) for e in elements]
        level = [
            (elements[run.start].key if run else b"", self._leaf([elements[i] for i in run]))
            for run in _pack(sizes, PAGE_SIZE)
        ]
        while len(level) > 1:
            sizes = [_BRANCH_ELEMENT.size + len(key) for key, _ in level]
            level = [
                (level[run.start][0], self._branch([level[i] for i in run]))
                for run in _pack(sizes, PAGE_SIZE)
            ]
        return level[0][1]

    def _leaf(self, elements: list[_Element]) -> int:
        return self._store(_page_body(0, LEAF_PAGE, elements))

    def _branch(self, children: list[tuple[bytes, int]]) -> int:
        elements = [_Element(key, b"") for key, _ in children]
        pgids = [pgid for _, pgid in children]
        return self._store(_page_body(0, BRANCH_PAGE, elements, branch_pgids=pgids))


def bbolt_bytes(tree: Tree) -> bytes:
    """Serialize nested mappings into a bbolt database file (mapping = bucket, bytes = value).

    Top-level values must be mappings: bbolt's root bucket holds only buckets. Keys are
    stored in bytewise order, as bbolt requires.
    """
    for key, value in tree.items():
        if not isinstance(value, Mapping):
            raise TypeError(f"top-level key {key!r} must map to a bucket, not a value")
    writer = _Writer()
    root = writer.btree(writer.elements(tree))
    high_water = writer.next_pgid

    out = bytearray(PAGE_SIZE * high_water)
    for txid, pgid in enumerate(_META_PGIDS):
        page = _PAGE_HEADER.pack(pgid, META_PAGE, 0, 0)
        page += meta_bytes(root_pgid=root, high_water=high_water, txid=txid)
        out[pgid * PAGE_SIZE : pgid * PAGE_SIZE + len(page)] = page
    freelist = _PAGE_HEADER.pack(_FREELIST_PGID, FREELIST_PAGE, 0, 0)
    out[_FREELIST_PGID * PAGE_SIZE : _FREELIST_PGID * PAGE_SIZE + len(freelist)] = freelist
    for pgid, body in writer.pages.items():
        out[pgid * PAGE_SIZE : pgid * PAGE_SIZE + len(body)] = body
    return bytes(out)


# --- trivy-db layout ------------------------------------------------------------------

SEVERITIES = ("UNKNOWN", "LOW", "MEDIUM", "HIGH", "CRITICAL")
#: trivy-db's `types.StatusAffected`: affected, no fix released.
STATUS_AFFECTED = 2
#: trivy-db's schema version; also the tag of the OCI artifact (`trivy-db:2`).
SCHEMA_VERSION = 2

VULNERABILITY_BUCKET = "vulnerability"
DATA_SOURCE_BUCKET = "data-source"
PIP_BUCKET = "pip::GitHub Security Advisory pip"

_DEBIAN = re.compile(r"debian (\d+)")
_DEBIAN_SOURCE = {
    "ID": "debian",
    "Name": "Debian Security Tracker",
    "URL": "https://salsa.debian.org/security-tracker-team/security-tracker",
}
_PIP_SOURCE = {
    "ID": "ghsa",
    "Name": "GitHub Security Advisory pip",
    "URL": "https://github.com/advisories?query=type%3Areviewed+ecosystem%3Apip",
}


@dataclass(frozen=True)
class Advisory:
    """One invented vulnerability affecting one package of one ecosystem.

    `ecosystem` is `"debian N"` (the package is a Debian *source* package) or `"pip"`.
    `fixed_version` None means affected with no fix released. For pip, `vulnerable_range`
    is a version constraint such as `"<99.0"`; without it, `"<fixed_version"` is used.
    """

    id: str
    ecosystem: str
    package: str
    severity: str
    fixed_version: str | None
    vulnerable_range: str | None = None
    title: str = ""

    def __post_init__(self) -> None:
        if self.severity not in SEVERITIES:
            raise ValueError(f"{self.id}: severity must be one of {SEVERITIES}")
        if self.ecosystem != "pip" and not _DEBIAN.fullmatch(self.ecosystem):
            raise ValueError(f"{self.id}: ecosystem must be 'debian N' or 'pip'")
        if self.ecosystem == "pip" and not (self.vulnerable_range or self.fixed_version):
            raise ValueError(f"{self.id}: a pip advisory needs vulnerable_range or fixed_version")

    @property
    def bucket(self) -> str:
        """Return the trivy-db top-level bucket that holds this advisory."""
        return PIP_BUCKET if self.ecosystem == "pip" else self.ecosystem

    @property
    def package_key(self) -> str:
        """Return the package key as Trivy looks it up (PEP 503-normalized for pip)."""
        if self.ecosystem == "pip":
            return re.sub(r"[-_.]+", "-", self.package).lower()
        return self.package

    def advisory_json(self) -> dict[str, object]:
        """Return the value stored under `bucket / package / id`."""
        if self.ecosystem == "pip":
            vulnerable = self.vulnerable_range or f"<{self.fixed_version}"
            doc: dict[str, object] = {"VulnerableVersions": [vulnerable]}
            if self.fixed_version:
                doc["PatchedVersions"] = [self.fixed_version]
            return doc
        if self.fixed_version:
            return {"FixedVersion": self.fixed_version}
        return {"Status": STATUS_AFFECTED, "Severity": SEVERITIES.index(self.severity)}

    def vulnerability_json(self) -> dict[str, object]:
        """Return the value stored under `vulnerability / id`."""
        source = _PIP_SOURCE if self.ecosystem == "pip" else _DEBIAN_SOURCE
        title = self.title or f"{self.package}: invented test vulnerability"
        return {
            "Title": title,
            "Description": (
                f"{title}. Invented for a test vulnerability database; not a real advisory."
            ),
            "Severity": self.severity,
            "VendorSeverity": {source["ID"]: SEVERITIES.index(self.severity)},
        }


DEFAULT_ADVISORIES: tuple[Advisory, ...] = (
    Advisory(
        id="CVE-2099-0001",
        ecosystem="debian 12",
        package="bash",
        severity="CRITICAL",
        # Above bookworm's 5.2.15-2(+b7), so the installed bash is fixable and detected.
        fixed_version="5.3-1",
        title="bash: invented critical flaw with a fix",
    ),
    Advisory(
        id="CVE-2099-0002",
        ecosystem="debian 12",
        package="coreutils",
        severity="HIGH",
        fixed_version=None,
        title="coreutils: invented high flaw without a fix",
    ),
    Advisory(
        id="CVE-2099-0003",
        ecosystem="debian 12",
        package="tar",
        severity="MEDIUM",
        fixed_version="1.36+dfsg-1",
        title="tar: invented medium flaw with a fix",
    ),
    Advisory(
        id="CVE-2099-0004",
        ecosystem="pip",
        package="starlette",
        severity="HIGH",
        fixed_version="99.0",
        vulnerable_range="<99.0",
        title="starlette: invented high flaw in every release",
    ),
)


def _json_bytes(doc: object) -> bytes:
    return json.dumps(doc, separators=(",", ":"), sort_keys=True).encode()


def trivy_tree(advisories: Iterable[Advisory]) -> dict[bytes, Any]:
    """Return the bucket tree Trivy reads for `advisories`, ready for `bbolt_bytes`.

    Layout: `<bucket> / <package> / <id>` -> advisory, `vulnerability / <id>` -> detail,
    `data-source / <bucket>` -> source (whose ID selects the vendor severity).
    """
    advisories_by_bucket: dict[str, dict[str, dict[str, bytes]]] = {}
    details: dict[str, bytes] = {}
    sources: dict[str, bytes] = {}
    for adv in advisories:
        ids = advisories_by_bucket.setdefault(adv.bucket, {}).setdefault(adv.package_key, {})
        if adv.id in ids:
            raise ValueError(f"duplicate advisory {adv.id} for {adv.bucket} {adv.package}")
        ids[adv.id] = _json_bytes(adv.advisory_json())
        details[adv.id] = _json_bytes(adv.vulnerability_json())
        sources[adv.bucket] = _json_bytes(_PIP_SOURCE if adv.ecosystem == "pip" else _DEBIAN_SOURCE)
    tree: dict[str, Mapping[str, object]] = {
        **advisories_by_bucket,
        VULNERABILITY_BUCKET: details,
        DATA_SOURCE_BUCKET: sources,
    }
    return _encode_keys(tree)


def _encode_keys(tree: Mapping[str, object]) -> dict[bytes, Any]:
    return {
        key.encode(): _encode_keys(value) if isinstance(value, Mapping) else value
        for key, value in tree.items()
    }


def _rfc3339(moment: datetime) -> str:
    if moment.tzinfo is None:
        raise ValueError("timestamps must be timezone-aware")
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


#: How long Trivy keeps the fixture before it tries to refresh it (a test's lifetime).
FIXTURE_LIFETIME = timedelta(hours=6)


def metadata_json(*, now: datetime, downloaded: bool = True) -> dict[str, object]:
    """Return `metadata.json` for a fixture DB built at `now`, marked as a test fixture.

    Trivy skips the download while `now < NextUpdate`: a few hours ahead, so a fixture that
    ever lands where a real scan reads is replaced by the real DB the same day. The
    `BuildtasksTestFixture` key (Trivy ignores it) makes `docker.scan` refuse the DB unless
    `BUILDTASKS_ALLOW_TEST_DB` is set. `downloaded=False` leaves DownloadedAt at Go's zero
    time, as in the upstream artifact (Trivy stamps it after pulling).
    """
    zero = "0001-01-01T00:00:00Z"
    return {
        "Version": SCHEMA_VERSION,
        "NextUpdate": _rfc3339(now + FIXTURE_LIFETIME),
        "UpdatedAt": _rfc3339(now),
        "DownloadedAt": _rfc3339(now) if downloaded else zero,
        FIXTURE_KEY: "invented advisories (CVE-2099-*) for tests; never scan with this",
    }


def write_db(
    cache_dir: Path,
    advisories: Iterable[Advisory] = DEFAULT_ADVISORIES,
    *,
    now: datetime,
    downloaded: bool = True,
) -> Path:
    """Write `cache_dir/db/trivy.db` and `metadata.json`; return the `db` directory."""
    db_dir = Path(cache_dir) / "db"
    db_dir.mkdir(parents=True, exist_ok=True)
    (db_dir / "trivy.db").write_bytes(bbolt_bytes(trivy_tree(advisories)))
    meta = metadata_json(now=now, downloaded=downloaded)
    (db_dir / "metadata.json").write_text(json.dumps(meta) + "\n")
    return db_dir


# --- OCI artifact ---------------------------------------------------------------------

#: The only layer media type Trivy accepts for the vulnerability DB artifact.
DB_LAYER_MEDIA_TYPE = "application/vnd.aquasec.trivy.db.layer.v1.tar+gzip"
#: The artifact type the upstream `trivy-db:2` manifest carries.
DB_ARTIFACT_TYPE = "application/vnd.aquasec.trivy.config.v1+json"
DB_TARBALL_NAME = "db.tar.gz"
DB_TARBALL_MEMBERS = ("trivy.db", "metadata.json")


def write_db_tarball(db_dir: Path, dest: Path) -> Path:
    """Pack `trivy.db` and `metadata.json` from `db_dir` into a reproducible tar.gz at `dest`.

    Both files sit at the archive root, as in the upstream artifact; Trivy names the
    downloaded layer after its title annotation and unpacks it into `CACHE/db`, so `dest`
    should be called `db.tar.gz`.
    """
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        for name in DB_TARBALL_MEMBERS:
            data = (Path(db_dir) / name).read_bytes()
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mode = 0o644
            info.mtime = 0
            tar.addfile(info, io.BytesIO(data))
    with dest.open("wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", mtime=0) as gz:
        gz.write(buffer.getvalue())
    return dest


def oras_push_command(ref: str, tarball: Path, *, plain_http: bool) -> tuple[str, ...]:
    """Return the oras argv that pushes `tarball` as Trivy's DB artifact to `ref`.

    The file is named relatively (oras records that name as the layer's title annotation,
    which Trivy uses as the download's file name), so run the argv in `tarball.parent`;
    `oras_push` returns it as a `Command` with that working directory. `plain_http` is for
    registries served over HTTP, such as a local lab registry.
    """
    argv = ["oras", "push"]
    if plain_http:
        argv.append("--plain-http")
    argv += [
        "--artifact-type",
        DB_ARTIFACT_TYPE,
        ref,
        f"{Path(tarball).name}:{DB_LAYER_MEDIA_TYPE}",
    ]
    return tuple(argv)


def oras_push(ref: str, tarball: Path, *, plain_http: bool) -> Command:
    """Return the `Command` that pushes `tarball` to `ref`, run from the tarball's folder."""
    return Command(
        oras_push_command(ref, tarball, plain_http=plain_http),
        cwd=str(Path(tarball).parent),
        hint="is the registry up? run `uv run invoke lab.up`",
    )


def db_repository(registry: str, repository: str) -> str:
    """Return the `--db-repository` reference for a mirror: `REGISTRY/REPOSITORY:2`."""
    return f"{registry}/{repository}:{SCHEMA_VERSION}"


_PLAIN_HTTP_NETWORKS = tuple(
    ipaddress.ip_network(n) for n in ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16")
)


def trivy_needs_insecure(registry: str) -> bool:
    """Return whether Trivy needs `--insecure` to pull from a plain-HTTP `registry`.

    Trivy (go-containerregistry) already speaks plain HTTP to `localhost:PORT`, addresses
    containing `127.0.0.1` or `::1`, and RFC 1918 addresses; any other host is tried over
    HTTPS only unless `--insecure` (`TRIVY_INSECURE=true`) is given.
    """
    if registry.startswith("localhost:") or "127.0.0.1" in registry or "::1" in registry:
        return False
    host = registry.rsplit(":", 1)[0] if registry.count(":") == 1 else registry
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return True
    return not any(address in network for network in _PLAIN_HTTP_NETWORKS)


def write_openvex(path: Path, vulnerability: str, purl: str) -> Path:
    """An OpenVEX document at `path`: the product `purl` is not affected by `vulnerability`."""
    document = {
        "@context": "https://openvex.dev/ns/v0.2.0",
        "@id": "https://example.invalid/vex/backend",
        "author": "buildtasks tests",
        "timestamp": "2026-01-01T00:00:00Z",
        "version": 1,
        "statements": [
            {
                "vulnerability": {"name": vulnerability},
                "products": [{"@id": purl}],
                "status": "not_affected",
                "justification": "vulnerable_code_not_in_execute_path",
            }
        ],
    }
    path.write_text(json.dumps(document), encoding="utf-8")
    return path
