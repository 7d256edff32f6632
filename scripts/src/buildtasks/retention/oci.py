"""Any OCI registry through the distribution API, and a distribution registry's own storage.

The API answers what is tagged and what each manifest points at; it cannot list untagged
manifests nor say when anything was pushed. A registry whose storage this machine can read
(the lab's, or any distribution registry given with `--registry-config`) adds both: the
manifest revisions it stores and their times, the blobs other repositories use, and a
garbage collection that really frees the space.
"""

from __future__ import annotations

import json
import os
import re
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from buildtasks.command import Command
from buildtasks.errors import BuildtasksError, ConfigError, RegistryUnavailable
from buildtasks.refs import login_fix, registry_of, unreachable_fix
from buildtasks.registry import v2_url
from buildtasks.retention.model import (
    ACCEPT,
    INDEX_TYPES,
    Inventory,
    Manifest,
    digest_of,
    parse_manifest,
    parse_time,
    referrer_subject,
)

#: The empty JSON blob (`{}`) OCI artifacts use as their config.
EMPTY = b"{}"
EMPTY_DIGEST = digest_of(EMPTY)
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
WORKERS = 8


class RegistryRefused(BuildtasksError):
    """The registry answered, but refused what cleanup asked (deletes disabled, no scope)."""

    exit_code = 4


@dataclass(frozen=True)
class Response:
    status: int
    headers: dict[str, str]
    body: bytes


def split_name(name: str) -> tuple[str, str]:
    """`127.0.0.1:5000/acme/app` → (`127.0.0.1:5000`, `acme/app`)."""
    registry = registry_of(name)
    path = name[len(registry) + 1 :] if name.startswith(registry + "/") else name
    return registry, path


def next_link(header: str) -> str:
    """The `rel="next"` target of an HTTP Link header, or ''."""
    for part in header.split(","):
        match = re.match(r'\s*<([^>]+)>\s*;.*rel="?next"?', part)
        if match:
            return match.group(1)
    return ""


class Client:
    """The distribution API of one repository, with the token crane gets from Docker's login."""

    def __init__(
        self,
        name: str,
        *,
        authorize: Callable[[str], str] | None = None,
        timeout: float = 30.0,
    ) -> None:
        self.name = name
        self.registry, self.path = split_name(name)
        self.base = v2_url(self.registry)
        self.timeout = timeout
        self._authorize = authorize
        self._auth = ""

    # ------------------------------------------------------------------ transport

    def request(
        self,
        method: str,
        url: str,
        *,
        headers: dict[str, str] | None = None,
        data: bytes | None = None,
    ) -> Response:
        """One HTTP exchange; a 401 fetches a token once and retries; any other status is
        returned for the caller to judge."""
        full = url if url.startswith("http") else self.base + url.lstrip("/")
        for attempt in range(2):
            request = urllib.request.Request(full, data=data, method=method)
            for key, value in (headers or {}).items():
                request.add_header(key, value)
            if self._auth:
                request.add_header("Authorization", self._auth)
            try:
                with urllib.request.urlopen(request, timeout=self.timeout) as response:
                    return Response(
                        response.status, dict(response.headers.items()), response.read()
                    )
            except urllib.error.HTTPError as exc:
                body = exc.read()
                if exc.code == 401 and attempt == 0 and self._authorize and not self._auth:
                    self._auth = self._authorize(self.name)
                    continue
                if exc.code == 401:
                    raise RegistryUnavailable(
                        f"not allowed to read {self.name}: {login_fix(self.registry)}"
                    ) from None
                return Response(exc.code, dict(exc.headers.items()), body)
            except (urllib.error.URLError, OSError) as exc:
                raise RegistryUnavailable(
                    f"registry {self.registry} is unreachable ({_reason(exc)}): "
                    f"{unreachable_fix(self.registry)}"
                ) from None
        raise AssertionError("unreachable")  # pragma: no cover

    def _fail(self, what: str, response: Response) -> BuildtasksError:
        return RegistryRefused(
            f"{self.registry} refused to {what} ({response.status} {_error_code(response)})"
        )

    # ------------------------------------------------------------------ reads

    def tags(self) -> list[str]:
        """Every tag of the repository ([] when the repository does not exist)."""
        found: list[str] = []
        url = f"{self.path}/tags/list?n=1000"
        while url:
            response = self.request("GET", url)
            if response.status == 404:
                return found
            if response.status != 200:
                raise self._fail(f"list the tags of {self.name}", response)
            found.extend(json.loads(response.body or b"{}").get("tags") or ())
            link = next_link(response.headers.get("Link", ""))
            url = urllib.parse.urljoin(self.base, link) if link else ""
        return found

    def manifest(self, reference: str) -> Manifest | None:
        """The manifest a tag or digest names, or None when the registry lacks it."""
        response = self.request(
            "GET", f"{self.path}/manifests/{reference}", headers={"Accept": ACCEPT}
        )
        if response.status == 404:
            return None
        if response.status != 200:
            raise self._fail(f"read {self.name}:{reference}", response)
        digest = response.headers.get("Docker-Content-Digest") or digest_of(response.body)
        return parse_manifest(
            response.body, digest, response.headers.get("Content-Type", "").split(";")[0]
        )

    def config_created(self, digest: str) -> datetime | None:
        """The `created` time of an image config blob."""
        response = self.request("GET", f"{self.path}/blobs/{digest}")
        if response.status != 200:
            return None
        try:
            return parse_time(json.loads(response.body).get("created"))
        except (ValueError, AttributeError):
            return None

    def referrers(self, digest: str) -> list[str] | None:
        """Referrer digests from the OCI referrers API; None when the registry has no such API."""
        response = self.request(
            "GET",
            f"{self.path}/referrers/{digest}",
            headers={"Accept": "application/vnd.oci.image.index.v1+json"},
        )
        kind = response.headers.get("Content-Type", "")
        if response.status != 200 or "application/vnd.oci.image.index.v1+json" not in kind:
            return None
        return [m["digest"] for m in json.loads(response.body).get("manifests") or ()]

    # ------------------------------------------------------------------ writes

    def _ensure_empty_blob(self) -> None:
        head = self.request("HEAD", f"{self.path}/blobs/{EMPTY_DIGEST}")
        if head.status == 200:
            return
        start = self.request("POST", f"{self.path}/blobs/uploads/", data=b"")
        if start.status != 202:
            raise self._fail(f"accept an upload to {self.name}", start)
        location = start.headers.get("Location", "")
        location = urllib.parse.urljoin(self.base, location)
        joiner = "&" if "?" in location else "?"
        done = self.request(
            "PUT",
            f"{location}{joiner}digest={urllib.parse.quote(EMPTY_DIGEST)}",
            headers={"Content-Type": "application/octet-stream"},
            data=EMPTY,
        )
        if done.status != 201:
            raise self._fail(f"store a blob in {self.name}", done)

    def put_placeholder(self, reference: str, note: str) -> str:
        """Push a tiny empty artifact under `reference` (a tag, or its own digest); its digest.

        How one tag goes away on any registry: point it at a placeholder, delete the
        placeholder by digest (the OCI API deletes tags only on some registries).
        """
        self._ensure_empty_blob()
        empty = {
            "mediaType": "application/vnd.oci.empty.v1+json",
            "digest": EMPTY_DIGEST,
            "size": len(EMPTY),
        }
        body = json.dumps(
            {
                "schemaVersion": 2,
                "mediaType": OCI_MANIFEST,
                "artifactType": "application/vnd.buildtasks.placeholder.v1",
                "config": empty,
                "layers": [empty],
                "annotations": {
                    "org.opencontainers.image.created": datetime.now(UTC).isoformat(),
                    "org.opencontainers.image.description": note,
                },
            },
            sort_keys=True,
        ).encode()
        digest = digest_of(body)
        target = reference or digest
        response = self.request(
            "PUT",
            f"{self.path}/manifests/{target}",
            headers={"Content-Type": OCI_MANIFEST},
            data=body,
        )
        if response.status != 201:
            raise self._fail(f"push to {self.name}", response)
        return digest

    def delete(self, digest: str) -> bool:
        """Delete a manifest (and the tags on it) by digest; False when it was already gone."""
        response = self.request("DELETE", f"{self.path}/manifests/{digest}")
        if response.status in (200, 202):
            return True
        if response.status == 404 and _error_code(response) in ("MANIFEST_UNKNOWN", ""):
            return False
        if response.status == 405 or _error_code(response) == "UNSUPPORTED":
            raise RegistryRefused(
                f"{self.registry} refuses deletes ({response.status} {_error_code(response)}): "
                "enable them in its config (distribution: storage.delete.enabled: true; "
                "`uv run invoke lab.up` configures the lab registry so)"
            )
        raise self._fail(f"delete {self.name}@{digest}", response)


def _error_code(response: Response) -> str:
    try:
        errors = json.loads(response.body or b"{}").get("errors") or []
    except (ValueError, AttributeError):
        return ""
    return str(errors[0].get("code", "")) if errors else ""


def _reason(exc: BaseException) -> str:
    reason = getattr(exc, "reason", exc)
    return str(reason).strip() or type(exc).__name__


def token_command(name: str) -> Command:
    """crane's token for `name` (pull and push scopes) from Docker's login, as a header line."""
    return Command(
        ("crane", "auth", "token", "-H", "--push", name), hint=login_fix(registry_of(name))
    )


# ---------------------------------------------------------------------- storage


@dataclass(frozen=True)
class Storage:
    """A distribution registry's filesystem storage (`storage.filesystem.rootdirectory`)."""

    root: Path
    config: Path

    @property
    def v2(self) -> Path:
        return self.root / "docker" / "registry" / "v2"

    def repository(self, path: str) -> Path:
        return self.v2 / "repositories" / path

    def revisions(self, path: str) -> dict[str, datetime]:
        """Every manifest the repository stores (tagged or not) → when it was pushed."""
        found = {}
        base = self.repository(path) / "_manifests" / "revisions"
        for link in base.glob("*/*/link"):
            found[f"{link.parent.parent.name}:{link.parent.name}"] = _mtime(link)
        return found

    def tag_times(self, path: str) -> dict[str, datetime]:
        """Tag → when it was last set."""
        base = self.repository(path) / "_manifests" / "tags"
        return {link.parent.parent.name: _mtime(link) for link in base.glob("*/current/link")}

    def blobs_elsewhere(self, path: str) -> frozenset[str]:
        """Blobs and manifests other repositories link (garbage collection keeps those)."""
        mine = self.repository(path)
        found: set[str] = set()
        for top, dirs, _files in os.walk(self.v2 / "repositories"):
            here = Path(top)
            if here.name in ("_layers", "_manifests", "_uploads"):
                dirs.clear()
                continue
            if here == mine:
                dirs[:] = [d for d in dirs if not d.startswith("_")]
                continue
            for name in ("_layers", "_manifests/revisions"):
                for algorithm in (here / name).glob("*"):
                    found.update(f"{algorithm.name}:{d.name}" for d in algorithm.iterdir())
        return frozenset(found)

    def blob_bytes(self) -> int:
        """The bytes of every blob the registry stores (what garbage collection frees)."""
        return sum(data.stat().st_size for data in (self.v2 / "blobs").glob("*/*/*/data"))


def _mtime(path: Path) -> datetime:
    return datetime.fromtimestamp(path.stat().st_mtime, UTC)


def storage_root(config_text: str, where: str) -> Path:
    """The filesystem root a distribution registry's config (JSON or YAML) names."""
    try:
        data = json.loads(config_text)
        root = data["storage"]["filesystem"]["rootdirectory"]
    except (ValueError, KeyError, TypeError):
        match = re.search(
            r"^\s*rootdirectory:\s*['\"]?([^'\"\n#]+?)['\"]?\s*(?:#.*)?$", config_text, re.MULTILINE
        )
        if not match:
            raise ConfigError(
                f"{where} has no storage.filesystem.rootdirectory: give the config of a "
                "distribution registry with filesystem storage"
            ) from None
        root = match.group(1)
    return Path(root)


def open_storage(config: Path) -> Storage:
    """The storage a registry config names, or a ConfigError naming the file."""
    try:
        text = config.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read the registry config {config}: {exc.strerror}") from None
    root = storage_root(text, str(config))
    if not root.is_dir():
        raise ConfigError(f"the registry storage {root} (from {config}) does not exist")
    return Storage(root, config)


def garbage_collect(registry_bin: str, config: Path) -> Command:
    """The distribution registry's garbage collection: frees blobs no manifest uses."""
    return Command(
        (registry_bin, "garbage-collect", str(config)),
        hint="run it while nothing pushes to this registry",
    )


# ---------------------------------------------------------------------- inventory


def inventory(client: Client, storage: Storage | None = None) -> Inventory:
    """Read a repository: tags, manifests (all stored ones with storage), children, referrers."""
    inv = Inventory(client.name)
    with ThreadPoolExecutor(WORKERS) as pool:
        tags = client.tags()
        for tag, manifest in zip(tags, pool.map(client.manifest, tags), strict=True):
            if manifest is None:  # deleted between the listing and the read
                continue
            inv.tags[tag] = manifest.digest
            inv.manifests.setdefault(manifest.digest, manifest)
        stored: list[str] = []
        if storage is not None:
            inv.lists_untagged = True
            inv.times.update(storage.revisions(client.path))
            inv.tag_times.update(storage.tag_times(client.path))
            inv.shared_blobs = storage.blobs_elsewhere(client.path)
            stored = list(inv.times)
        complete(pool, client, inv, stored, referrers_api=True)
    return inv


def complete(
    pool: ThreadPoolExecutor,
    client: Client,
    inv: Inventory,
    digests: Iterable[str],
    *,
    referrers_api: bool,
) -> None:
    """Read `digests`, then every child and referrer they lead to, then date the undated."""
    _fetch(pool, client, inv, [d for d in dict.fromkeys(digests) if d not in inv.manifests])
    supports: bool | None = None if referrers_api else False
    asked: set[str] = set()
    while True:
        wanted = {c for m in inv.manifests.values() for c in m.children}
        # A referrer tag's subject is read to learn whether it still exists.
        wanted |= {referrer_subject(t) for t in inv.tags} - {""}
        wanted -= set(inv.manifests) | inv.missing
        if supports is None and inv.manifests:
            supports = client.referrers(next(iter(inv.manifests))) is not None
        todo = [d for d in inv.manifests if d not in asked] if supports else []
        asked.update(todo)
        for digest, found in zip(todo, pool.map(client.referrers, todo), strict=True):
            if found:
                inv.referrers.setdefault(digest, set()).update(found)
                wanted |= set(found) - set(inv.manifests)
        if not wanted:
            break
        _fetch(pool, client, inv, sorted(wanted))
    _date_roots(pool, client, inv)


def _fetch(pool: ThreadPoolExecutor, client: Client, inv: Inventory, digests: list[str]) -> None:
    for digest, manifest in zip(digests, pool.map(client.manifest, digests), strict=True):
        if manifest is None:
            inv.missing.add(digest)
        else:
            inv.manifests[digest] = manifest


def _date_roots(pool: ThreadPoolExecutor, client: Client, inv: Inventory) -> None:
    """Give a time to each tagged or top-level manifest the registry did not date."""
    children = {c for m in inv.manifests.values() for c in m.children}
    undated = [
        d
        for d, m in inv.manifests.items()
        if inv.when(d) is None and d not in children and not m.subject
    ]
    configs = {}
    for digest in undated:
        manifest = inv.manifests[digest]
        if manifest.media_type in INDEX_TYPES:
            first = next(
                (
                    inv.manifests[c]
                    for c in manifest.children
                    if c in inv.manifests and inv.manifests[c].config
                ),
                None,
            )
            if first is not None:
                configs[digest] = first.config
        elif manifest.config:
            configs[digest] = manifest.config
    keys = list(configs)
    for digest, created in zip(
        keys, pool.map(client.config_created, [configs[k] for k in keys]), strict=True
    ):
        if created is not None:
            inv.times[digest] = created
