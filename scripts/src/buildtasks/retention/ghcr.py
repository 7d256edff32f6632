"""GitHub's container registry through the Packages REST API.

GHCR lists every version of a package (tagged or not) with its digest, tags and times, and
deletes versions by id; it has no OCI delete and no referrers API. The manifests themselves
(what an index lists, what a signature names) are read through the registry API, so the same
plan decides here as everywhere: a version is deleted only when nothing kept reaches it.

Endpoints (docs.github.com/rest/packages/packages):
`GET {api}/orgs/{org}/packages/container/{package}/versions?per_page=100`, paged by the Link
header; `/user/packages/...` for the token's own account, `/users/{user}/packages/...` for
another user's; `DELETE .../versions/{id}`. A package in a folder (`app/web`) is `app%2Fweb`.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime

from buildtasks.errors import ConfigError, RegistryUnavailable, clip
from buildtasks.retention.model import Inventory, parse_time
from buildtasks.retention.oci import RegistryRefused, next_link, split_name

API = "https://api.github.com"
API_VERSION = "2022-11-28"


@dataclass(frozen=True)
class Version:
    id: int
    digest: str
    tags: tuple[str, ...]
    created: datetime | None
    updated: datetime | None


def parse_versions(payload: object) -> list[Version]:
    """One page of `GET .../versions` as GitHub documents it."""
    if not isinstance(payload, list):
        raise RegistryRefused(
            f"GitHub answered {clip(str(payload), 120)!r} where versions were due"
        )
    versions = []
    for item in payload:
        container = (item.get("metadata") or {}).get("container") or {}
        versions.append(
            Version(
                id=int(item["id"]),
                digest=str(item["name"]),
                tags=tuple(container.get("tags") or ()),
                created=parse_time(item.get("created_at")),
                updated=parse_time(item.get("updated_at")),
            )
        )
    return versions


def package_of(name: str) -> tuple[str, str]:
    """`ghcr.io/acme/app/web` → (`acme`, `app/web`)."""
    _registry, path = split_name(name)
    owner, _, package = path.partition("/")
    if not package:
        raise ConfigError(f"{name} names no package under an owner (ghcr.io/OWNER/PACKAGE)")
    return owner, package


def versions_paths(owner: str, package: str) -> tuple[str, ...]:
    """Where the versions may be listed, in the order tried: organisation, own, other user."""
    quoted = urllib.parse.quote(package, safe="")
    tail = f"packages/container/{quoted}/versions"
    return (f"orgs/{owner}/{tail}", f"user/{tail}", f"users/{owner}/{tail}")


@dataclass
class Packages:
    """The REST API for one package; `token` needs read:packages, and delete:packages (or the
    workflow's `packages: write`) to delete."""

    owner: str
    package: str
    token: str
    api: str = API
    timeout: float = 30.0
    #: The versions path that answered (found by `versions`).
    path: str = ""
    ids: dict[str, int] = field(default_factory=dict)

    def _call(self, method: str, url: str) -> tuple[int, Mapping[str, str], bytes]:
        request = urllib.request.Request(url, method=method)
        request.add_header("Accept", "application/vnd.github+json")
        request.add_header("X-GitHub-Api-Version", API_VERSION)
        if self.token:
            request.add_header("Authorization", f"Bearer {self.token}")
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                return response.status, dict(response.headers.items()), response.read()
        except urllib.error.HTTPError as exc:
            return exc.code, dict(exc.headers.items()), exc.read()
        except (urllib.error.URLError, OSError) as exc:
            raise RegistryUnavailable(
                f"the GitHub API at {self.api} is unreachable ({getattr(exc, 'reason', exc)}): "
                "check the network, or GITHUB_API_URL"
            ) from None

    def versions(self) -> list[Version]:
        """Every version of the package, all pages."""
        candidates = (self.path,) if self.path else versions_paths(self.owner, self.package)
        for path in candidates:
            url = f"{self.api.rstrip('/')}/{path}?per_page=100"
            status, headers, body = self._call("GET", url)
            if status == 404:
                continue
            found: list[Version] = []
            while True:
                if status in (401, 403):
                    raise RegistryRefused(
                        f"GitHub refused to list {self.owner}/{self.package} ({status}): set "
                        "GITHUB_TOKEN to a token with read:packages (in a workflow: "
                        "permissions: packages: read)"
                    )
                if status != 200:
                    raise RegistryRefused(
                        f"GitHub answered {status} listing {self.owner}/{self.package}"
                    )
                found.extend(parse_versions(json.loads(body or b"[]")))
                link = next_link(headers.get("Link", "") or headers.get("link", ""))
                if not link:
                    break
                status, headers, body = self._call("GET", link)
            self.path = path
            self.ids = {v.digest: v.id for v in found}
            return found
        raise RegistryRefused(
            f"no container package {self.package!r} under {self.owner} on GitHub (or the token "
            "cannot see it): check the image name and that GITHUB_TOKEN has read:packages"
        )

    def delete(self, digest: str) -> bool:
        """Delete the version holding `digest`; False when it was already gone."""
        if digest not in self.ids:
            self.versions()
        version = self.ids.get(digest)
        if version is None:
            return False
        status, _headers, body = self._call(
            "DELETE", f"{self.api.rstrip('/')}/{self.path}/{version}"
        )
        if status in (200, 204):
            del self.ids[digest]
            return True
        if status == 404:
            return False
        if status in (401, 403):
            raise RegistryRefused(
                f"GitHub refused to delete version {version} of {self.owner}/{self.package} "
                f"({status}): the token needs delete:packages (in a workflow: permissions: "
                "packages: write, and the repository given admin access to the package)"
            )
        raise RegistryRefused(
            f"GitHub answered {status} deleting version {version} of {self.package}: "
            f"{clip(body.decode(errors='replace'), 200)}"
        )


def add_versions(inv: Inventory, versions: list[Version]) -> list[str]:
    """Put GHCR's own record (tags, times) into `inv`; the digests whose manifests to read."""
    inv.lists_untagged = True
    for version in versions:
        when = version.created or version.updated
        if when is not None:
            inv.times[version.digest] = when
        for tag in version.tags:
            inv.tags[tag] = version.digest
            if version.updated is not None:
                inv.tag_times[tag] = version.updated
    return [v.digest for v in versions]
