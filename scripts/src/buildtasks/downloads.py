"""`tools.install`: the pinned release of a tool without a wheel, downloaded and checked.

GitHub's Ubuntu 24.04 runners have gitleaks 8.16 from apt, older than `gitleaks git` needs;
`tools.install gitleaks` puts the release `tools.TOOLS` pins there instead. A copy on PATH
that is good enough (`tools.locate`: the minimum, the feature check) is used as it is.

- plan (pure): this host's `(os, arch)` (`host_platform`), its asset, checksum and URL
  (`plan_download`; `--mirror` replaces the release host, the checksum stays).
- run: fetch with urllib (the proxy environment and the system CAs, as Python does), check
  the sha256 before anything is unpacked, take the one binary out of the archive, make it
  executable, and append its directory to `$GITHUB_PATH` (how setup actions put tools on
  PATH in GitHub Actions). A failure leaves nothing behind.
"""

from __future__ import annotations

import contextlib
import difflib
import gzip
import hashlib
import http.client
import os
import shutil
import tarfile
import tempfile
import urllib.error
import urllib.request
import zlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from urllib.parse import urlsplit

from buildtasks import tools
from buildtasks.errors import BuildtasksError, ConfigError, GateFailed, ToolNotFound
from buildtasks.files import append_text

#: `platform.machine()` spellings → the arch names release assets use.
_ARCHES = {"x86_64": "x64", "amd64": "x64", "x64": "x64", "aarch64": "arm64", "arm64": "arm64"}
_SCHEMES = ("http", "https", "file")


@dataclass(frozen=True)
class Download:
    """One pinned release asset: where it is, what its sha256 must be, what to take out."""

    tool: str
    release: str
    asset: str
    sha256: str
    url: str
    #: The file taken out of the archive and installed (the tool's name).
    binary: str


# --------------------------------------------------------------------------- plan


def host_platform(system: str, machine: str) -> tuple[str, str]:
    """`(os, arch)` as release assets name them: `platform.system(), platform.machine()` →
    `("linux", "x64")`, `("darwin", "arm64")`; unknown ones lower-cased as they are."""
    arch = machine.lower()
    return system.lower(), _ARCHES.get(arch, arch)


def find_spec(name: str) -> tools.ToolSpec:
    """The `tools.TOOLS` entry of `name`, or a `ConfigError` with the nearest name."""
    spec = tools.TOOLS.get(name)
    if spec is not None:
        return spec
    close = difflib.get_close_matches(name, list(tools.TOOLS), n=1, cutoff=0.6)
    hint = f" — did you mean {close[0]!r}?" if close else f" — known: {', '.join(tools.REPORTED)}"
    raise ConfigError(f"unknown tool {name!r}{hint}")


def check_mirror(mirror: str) -> str:
    """`mirror` without its trailing slash, or a `ConfigError` when it is no URL."""
    if urlsplit(mirror).scheme not in _SCHEMES:
        raise ConfigError(
            f"--mirror {mirror!r} is not a URL: give the http(s):// address of a mirror of "
            "the release downloads, e.g. https://mirror.example/gitleaks/releases/download"
        )
    return mirror.rstrip("/")


def release_url(spec: tools.ToolSpec, asset: str, mirror: str = "") -> str:
    """`<download_url>/<release>/<asset>`, with `mirror` standing for `download_url`."""
    base = check_mirror(mirror) if mirror else spec.download_url
    return f"{base}/{spec.release}/{asset}"


def plan_download(
    spec: tools.ToolSpec, host: tuple[str, str], *, family: str, mirror: str = ""
) -> Download:
    """The asset of `spec.release` for `host`, its pinned sha256 and URL.

    A tool without pinned downloads, or without one for this host, is a `ToolNotFound` naming
    the install line of the host `family`.
    """
    line = tools.install_line(spec.name, family)
    if not spec.downloads:
        raise ToolNotFound(f"tools.install has no pinned download of {spec.name}: {line}")
    entry = spec.downloads.get(host)
    if entry is None:
        raise ToolNotFound(
            f"no {spec.name} {spec.release} download is pinned for {host[0]}/{host[1]}: {line}"
        )
    asset, sha256 = entry
    return Download(
        spec.name, spec.release, asset, sha256.lower(), release_url(spec, asset, mirror), spec.name
    )


# --------------------------------------------------------------------------- run


def writable_dir(dest: Path) -> None:
    """Raise a `ConfigError` naming `dest` unless it is, or can be made, a writable directory.

    Nothing is created: a failed download leaves no empty directory behind.
    """
    existing = dest
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise ConfigError(f"cannot install into {dest}: {existing} is not a directory")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise ConfigError(f"cannot install into {dest}: {existing} is not writable; pass --dest")


def fetch(url: str, directory: Path, *, hint: str, timeout: float = 60) -> tuple[Path, str]:
    """Download `url` into `directory`; return the file and its sha256 (hex)."""
    target = directory / (PurePosixPath(urlsplit(url).path).name or "download")
    digest = hashlib.sha256()
    request = urllib.request.Request(url, headers={"User-Agent": "buildtasks"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response, target.open("wb") as out:
            while chunk := response.read(1 << 16):
                digest.update(chunk)
                out.write(chunk)
    except urllib.error.HTTPError as exc:
        raise BuildtasksError(
            f"cannot download {url}: HTTP {exc.code} {exc.reason}; {hint}"
        ) from None
    except urllib.error.URLError as exc:
        raise BuildtasksError(f"cannot download {url}: {exc.reason}; {hint}") from None
    except (OSError, http.client.HTTPException) as exc:
        raise BuildtasksError(f"cannot download {url}: {exc}; {hint}") from None
    return target, digest.hexdigest()


def verify(download: Download, got: str) -> None:
    """Raise `GateFailed` unless `got` is the sha256 pinned for `download`."""
    if got != download.sha256:
        raise GateFailed(
            f"checksum mismatch for {download.url}: expected sha256 {download.sha256}, "
            f"got {got}; nothing was installed"
        )


def extract_binary(archive: Path, binary: str, dest: Path) -> Path:
    """Take the regular file named `binary` out of the tar `archive` into `dest`, executable.

    Only that file's bytes are read: no path from the archive is ever used on disk. The file
    appears whole or not at all (a temporary file renamed over it).
    """
    try:
        with tarfile.open(archive) as tar:
            member = next(
                (m for m in tar if m.isfile() and PurePosixPath(m.name).name == binary), None
            )
            source = tar.extractfile(member) if member else None
            if source is None:
                raise BuildtasksError(f"{archive.name} holds no {binary}: nothing was installed")
            try:
                dest.mkdir(parents=True, exist_ok=True)
                fd, tmp = tempfile.mkstemp(prefix=f".{binary}.", dir=dest)
            except OSError as exc:
                raise ConfigError(f"cannot install into {dest}: {exc.strerror}") from None
            try:
                with os.fdopen(fd, "wb") as out:
                    shutil.copyfileobj(source, out)
                    os.fchmod(out.fileno(), 0o755)
                os.replace(tmp, dest / binary)
            except BaseException:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(tmp)
                raise
    except (tarfile.TarError, EOFError, gzip.BadGzipFile, zlib.error) as exc:
        raise BuildtasksError(f"{archive.name} is not a readable archive: {exc}") from None
    except OSError as exc:
        raise ConfigError(f"cannot install into {dest}: {exc.strerror or exc}") from None
    return dest / binary


def add_to_github_path(github_path: Path, directory: Path) -> None:
    """Append `directory` to the `$GITHUB_PATH` file (once): later steps find the tool there."""
    try:
        lines = github_path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        lines = []
    if str(directory) not in lines:
        append_text(github_path, f"{directory}\n")


def install_download(download: Download, dest: Path, *, github_path: Path | None = None) -> Path:
    """Fetch `download`, check its sha256, install its binary into `dest`; return the path.

    The archive lives in a temporary directory that is removed whatever happens.
    """
    writable_dir(dest)
    spec = tools.TOOLS.get(download.tool)
    upstream = spec.download_url if spec and spec.download_url else "the release downloads"
    hint = f"check the network and proxy settings, or pass --mirror URL of a mirror of {upstream}"
    with tempfile.TemporaryDirectory(prefix="buildtasks-download-") as tmp:
        archive, got = fetch(download.url, Path(tmp), hint=hint)
        verify(download, got)
        path = extract_binary(archive, download.binary, dest)
    if github_path is not None:
        add_to_github_path(github_path, dest)
    return path


def _good_enough(spec: tools.ToolSpec, env: Mapping[str, str] | None) -> tools.Located | None:
    try:
        return tools.locate(spec.name, env=env)
    except ToolNotFound:
        return None


def install(
    name: str,
    *,
    dest: Path,
    host: tuple[str, str],
    family: str,
    mirror: str = "",
    github_path: Path | None = None,
    env: Mapping[str, str] | None = None,
    dry: bool = False,
    say: Callable[[str], None] = print,
) -> Path | None:
    """`tools.install NAME`: the copy on PATH when good enough, else the pinned download.

    Returns the installed binary (None when nothing was installed).
    """
    spec = find_spec(name)
    if mirror:
        check_mirror(mirror)
    found = _good_enough(spec, env)
    if found is not None:
        version = found.version or (
            tools.probe_version(found.path, spec) if spec.version_args else None
        )
        shown = tools.version_str(version) if version else ""
        if not shown and spec.minimum and found.source == "PATH":
            shown = f">= {spec.minimum}"  # it passed the feature check
        label = f"{name} {shown}" if shown else name
        say(f"using {label} from {found.path} ({found.source}): nothing to download")
        return None
    download = plan_download(spec, host, family=family, mirror=mirror)
    if dry:
        say(
            f"would download {download.url}, check its sha256 is {download.sha256} and "
            f"install {dest / download.binary}"
        )
        return None
    say(f"{name}: no good enough copy on PATH; downloading {download.url}")
    path = install_download(download, dest, github_path=github_path)
    version = tools.probe_version(str(path), spec) if spec.version_args else None
    say(
        f"installed {name} {tools.version_str(version)} at {path} (sha256 {download.sha256} verified)"
    )
    if github_path is not None:
        say(f"added {dest} to $GITHUB_PATH: the next steps find {name} there")
    else:
        search = (os.environ if env is None else env).get("PATH", os.defpath)
        first = shutil.which(name, path=search)
        if first is None or Path(first) != path:
            say(f"note: put {dest} first on PATH (`{name}` there is {first or 'not found'})")
    return path
