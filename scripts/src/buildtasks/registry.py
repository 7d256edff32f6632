"""Ask a registry before using it: is it up, and does Docker hold a login it will accept?

These probes speak HTTP to the registry's `/v2/` endpoint directly (no process started). The
facts about references and error texts they rely on live in `buildtasks.refs`.
"""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.request
from collections.abc import Iterable, Mapping
from pathlib import Path

from buildtasks.errors import RegistryUnavailable
from buildtasks.refs import DOCKER_HUB, is_loopback, login_fix


def v2_url(registry: str) -> str:
    """The registry's API root: plain HTTP on loopback (as Docker and trivy do), else HTTPS."""
    scheme = "http" if is_loopback(registry) else "https"
    host = "registry-1.docker.io" if registry == DOCKER_HUB else registry
    return f"{scheme}://{host}/v2/"


def v2_status(registry: str, timeout: float = 5.0) -> int | None:
    """The HTTP status of `GET /v2/`, or None when nothing answers."""
    try:
        with urllib.request.urlopen(v2_url(registry), timeout=timeout) as response:
            return response.status
    except urllib.error.HTTPError as exc:
        return exc.code
    except (OSError, ValueError):
        return None


def registry_up(address: str, timeout: float = 2.0) -> bool:
    """Whether a registry answers `/v2/` at `address` (any status below 500)."""
    status = v2_status(address, timeout)
    return status is not None and status < 500


def login_missing(registry: str, v2: int | None, docker_config: Mapping[str, object]) -> bool:
    """Whether a push to `registry` will be refused for want of credentials.

    The registry asks for authentication (401 on /v2/) and Docker holds none for it: no
    `auths` entry, no credential helper for it, and no default credential store.
    """
    if v2 != 401:
        return False
    auths = docker_config.get("auths") or {}
    helpers = docker_config.get("credHelpers") or {}
    hosts = {registry, f"https://{registry}", f"http://{registry}"}
    if registry == DOCKER_HUB:
        hosts |= {"https://index.docker.io/v1/", "index.docker.io"}
    known = any(h in auths for h in hosts) or any(h in helpers for h in hosts)  # type: ignore[operator]
    return not known and not docker_config.get("credsStore")


def docker_config(env: Mapping[str, str]) -> Mapping[str, object]:
    """Docker's client configuration (`$DOCKER_CONFIG/config.json`), {} when absent or broken."""
    directory = Path(env.get("DOCKER_CONFIG") or os.path.expanduser("~/.docker"))
    try:
        data = json.loads((directory / "config.json").read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return {}
    return data if isinstance(data, dict) else {}


def require_ready(registries: Iterable[str], *, env: Mapping[str, str]) -> None:
    """Before any push: each registry on this machine answers, and none wants a missing login.

    One `/v2/` probe per registry. A remote registry that does not answer is left to the push
    itself, which reports it with the right fix.
    """
    for registry in dict.fromkeys(registries):
        status = v2_status(registry)
        if is_loopback(registry) and (status is None or status >= 500):
            raise RegistryUnavailable(
                f"registry {registry} is down: start it with `uv run invoke lab.up`"
            )
        if login_missing(registry, status, docker_config(env)):
            raise RegistryUnavailable(f"not logged in to {registry}: {login_fix(registry)}")
