"""`tools.install`: the pinned gitleaks release, checksum first, or the good enough copy on PATH.

The plans are checked against the pinned table. The downloads are real: a local HTTP server
stands for the release host (`--mirror`), serving a tarball made here with a script in
gitleaks's place. Its sha256 is not the pinned one, so the task itself must refuse it; the
install path runs with a table that pins the tarball's own checksum.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import http.server
import io
import platform
import shutil
import socket
import stat
import tarfile
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from support.lab import invoke

from buildtasks import downloads, tools
from buildtasks.errors import ConfigError, ToolNotFound

GITLEAKS = tools.TOOLS["gitleaks"]
HOST = downloads.host_platform(platform.system(), platform.machine())
UPSTREAM = "https://github.com/gitleaks/gitleaks/releases/download"
NO_PROXY = {"NO_PROXY": "127.0.0.1,localhost", "no_proxy": "127.0.0.1,localhost"}


@pytest.fixture(autouse=True)
def own_cache(tmp_path, monkeypatch):
    """Versions are read afresh, into a cache of this test; the local server is never proxied."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setattr(tools, "_MEMO", tools._Memo())
    for name, value in NO_PROXY.items():
        monkeypatch.setenv(name, value)


# ----------------------------------------------------------------------------- plans


@pytest.mark.parametrize(
    ("system", "machine", "host"),
    [
        ("Linux", "x86_64", ("linux", "x64")),
        ("Linux", "aarch64", ("linux", "arm64")),
        ("Darwin", "arm64", ("darwin", "arm64")),
        ("Darwin", "x86_64", ("darwin", "x64")),
        ("Windows", "AMD64", ("windows", "x64")),
        ("Linux", "riscv64", ("linux", "riscv64")),
    ],
    ids=["linux-x86_64", "linux-aarch64", "macos-arm", "macos-intel", "windows", "riscv"],
)
def test_the_host_is_named_as_release_assets_name_it(system, machine, host):
    assert downloads.host_platform(system, machine) == host


@pytest.mark.parametrize(
    ("host", "asset", "sha256"),
    [
        (
            ("linux", "x64"),
            "gitleaks_8.28.0_linux_x64.tar.gz",
            "a65b5253807a68ac0cafa4414031fd740aeb55f54fb7e55f386acb52e6a840eb",
        ),
        (
            ("linux", "arm64"),
            "gitleaks_8.28.0_linux_arm64.tar.gz",
            "eff65261156100e5d94a6b3dec313d532fddfe19ae1590bf7a2b4f2699128356",
        ),
        (
            ("darwin", "x64"),
            "gitleaks_8.28.0_darwin_x64.tar.gz",
            "edf5a507008b0d2ef4959575772772770586409c1f6f74dabf19cbe7ec341ced",
        ),
        (
            ("darwin", "arm64"),
            "gitleaks_8.28.0_darwin_arm64.tar.gz",
            "d942f3ad147250c9edbaab3fed9e482f98d3b59ba10ae97b8d75647e3ade492c",
        ),
    ],
    ids=["linux-x64", "linux-arm64", "darwin-x64", "darwin-arm64"],
)
def test_each_host_gets_its_pinned_asset_and_checksum(host, asset, sha256):
    download = downloads.plan_download(GITLEAKS, host, family="ubuntu")
    assert download == downloads.Download(
        "gitleaks", "v8.28.0", asset, sha256, f"{UPSTREAM}/v8.28.0/{asset}", "gitleaks"
    )


@pytest.mark.parametrize(
    "mirror",
    ["https://mirror.example/gitleaks", "https://mirror.example/gitleaks/"],
    ids=["plain", "trailing-slash"],
)
def test_a_mirror_stands_for_the_release_host_and_the_checksum_stays(mirror):
    pinned = downloads.plan_download(GITLEAKS, ("linux", "x64"), family="ubuntu")
    mirrored = downloads.plan_download(GITLEAKS, ("linux", "x64"), family="ubuntu", mirror=mirror)
    assert mirrored.url == (
        "https://mirror.example/gitleaks/v8.28.0/gitleaks_8.28.0_linux_x64.tar.gz"
    )
    assert mirrored.sha256 == pinned.sha256


def test_a_mirror_that_is_no_url_is_refused():
    with pytest.raises(ConfigError, match=r"--mirror 'mirror\.example' is not a URL"):
        downloads.plan_download(
            GITLEAKS, ("linux", "x64"), family="ubuntu", mirror="mirror.example"
        )


def test_a_host_without_a_pinned_asset_names_its_install_line():
    with pytest.raises(ToolNotFound) as err:
        downloads.plan_download(GITLEAKS, ("linux", "riscv64"), family="linux")
    assert str(err.value) == (
        f"no gitleaks v8.28.0 download is pinned for linux/riscv64: {tools.install_line('gitleaks', 'linux')}"
    )
    assert "elsewhere the release binary from gitleaks/gitleaks" in str(err.value)


def test_a_tool_without_pinned_downloads_names_its_install_line():
    with pytest.raises(ToolNotFound) as err:
        downloads.plan_download(tools.TOOLS["cosign"], ("linux", "x64"), family="ubuntu")
    assert str(err.value) == (
        "tools.install has no pinned download of cosign: the release binary from sigstore/cosign "
        "(Ubuntu has no package); in GitHub Actions sigstore/cosign-installer"
    )


def test_only_cosign_crane_and_gitleaks_pin_a_release_and_only_gitleaks_downloads():
    assert {n: s.release for n, s in tools.TOOLS.items() if s.release} == {
        "cosign": "v3.1.1",
        "crane": "v0.20.7",
        "gitleaks": "v8.28.0",
    }
    assert [n for n, s in tools.TOOLS.items() if s.downloads] == ["gitleaks"]


def test_an_unknown_tool_gets_the_nearest_name():
    with pytest.raises(ConfigError, match=r"unknown tool 'gitleak' — did you mean 'gitleaks'\?"):
        downloads.find_spec("gitleak")


# ----------------------------------------------------------------------------- a release host


def tarball(directory: Path, asset: str, script: str = "#!/bin/sh\necho 8.28.0\n") -> Path:
    """A release archive laid out like gitleaks's: the binary, LICENSE and README.md."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / asset
    with tarfile.open(path, "w:gz") as tar:
        for name, text, mode in (
            ("LICENSE", "MIT\n", 0o644),
            ("README.md", "gitleaks\n", 0o644),
            ("gitleaks", script, 0o644),  # not executable inside: the install makes it so
            ("../escaped", "outside\n", 0o755),  # never written: only the binary is read
        ):
            data = text.encode()
            info = tarfile.TarInfo(name)
            info.size, info.mode = len(data), mode
            tar.addfile(info, io.BytesIO(data))
    return path


@dataclasses.dataclass
class ReleaseHost:
    url: str
    root: Path
    requests: list[str]


@pytest.fixture
def release_host(tmp_path) -> Iterator[ReleaseHost]:
    """An HTTP server on 127.0.0.1 serving `root`, remembering every path asked for."""
    root = tmp_path / "mirror"
    root.mkdir()
    requests: list[str] = []

    class Handler(http.server.SimpleHTTPRequestHandler):
        def log_message(self, format, *args):
            requests.append(self.path)

    server = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), functools.partial(Handler, directory=str(root))
    )
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield ReleaseHost(f"http://127.0.0.1:{server.server_address[1]}/gitleaks", root, requests)
    finally:
        server.shutdown()
        server.server_close()


def host_asset() -> str:
    return GITLEAKS.downloads.get(HOST, ("gitleaks_8.28.0_linux_x64.tar.gz", ""))[0]


def test_a_matching_archive_installs_the_binary_executable_and_tells_github_actions(
    release_host, tmp_path
):
    archive = tarball(release_host.root / "gitleaks" / "v8.28.0", host_asset())
    sha256 = hashlib.sha256(archive.read_bytes()).hexdigest()
    spec = dataclasses.replace(GITLEAKS, downloads={HOST: (host_asset(), sha256)})
    download = downloads.plan_download(spec, HOST, family="linux", mirror=release_host.url)
    dest, github_path = tmp_path / "home" / ".local" / "bin", tmp_path / "github_path"
    github_path.write_text("/opt/other/bin\n")

    installed = downloads.install_download(download, dest, github_path=github_path)

    assert installed == dest / "gitleaks"
    assert stat.S_IMODE(installed.stat().st_mode) == 0o755
    assert installed.read_text() == "#!/bin/sh\necho 8.28.0\n"
    assert sorted(p.name for p in dest.iterdir()) == ["gitleaks"]
    assert not (dest.parent / "escaped").exists()
    assert tools.probe_version(str(installed), GITLEAKS) == (8, 28, 0)
    assert github_path.read_text() == f"/opt/other/bin\n{dest}\n"
    # Again (a re-run of the step): the same binary, GITHUB_PATH not repeated.
    downloads.install_download(download, dest, github_path=github_path)
    assert github_path.read_text() == f"/opt/other/bin\n{dest}\n"
    assert release_host.requests == [f"/gitleaks/v8.28.0/{host_asset()}"] * 2


def test_install_says_where_the_new_copy_is_when_path_finds_another(
    release_host, tmp_path, monkeypatch
):
    archive = tarball(release_host.root / "gitleaks" / "v8.28.0", host_asset())
    sha256 = hashlib.sha256(archive.read_bytes()).hexdigest()
    spec = dataclasses.replace(GITLEAKS, downloads={HOST: (host_asset(), sha256)})
    said: list[str] = []
    dest = tmp_path / "dest"
    empty = tmp_path / "empty"
    empty.mkdir()
    monkeypatch.setitem(tools.TOOLS, "gitleaks", spec)  # the table, pinning this tarball
    downloads.install(
        "gitleaks",
        dest=dest,
        host=HOST,
        family="linux",
        mirror=release_host.url,
        env={"PATH": str(empty)},
        say=said.append,
    )
    assert said == [
        f"gitleaks: no good enough copy on PATH; downloading {release_host.url}/v8.28.0/{host_asset()}",
        f"installed gitleaks 8.28.0 at {dest / 'gitleaks'} (sha256 {sha256} verified)",
        f"note: put {dest} first on PATH (`gitleaks` there is not found)",
    ]


# ----------------------------------------------------------------------------- the task


def run_install(tmp_path: Path, *args: str, path: str, github_path: Path):
    return invoke(
        "tools.install",
        "gitleaks",
        *args,
        env={
            "PATH": path,
            "GITHUB_PATH": str(github_path),
            "XDG_CACHE_HOME": str(tmp_path / "cache"),
            **NO_PROXY,
        },
    )


def test_the_task_refuses_an_archive_whose_checksum_is_not_the_pinned_one(release_host, tmp_path):
    if HOST not in GITLEAKS.downloads:
        pytest.skip(f"no gitleaks download is pinned for {HOST}")
    tarball(release_host.root / "gitleaks" / "v8.28.0", host_asset())
    got = hashlib.sha256(
        (release_host.root / "gitleaks" / "v8.28.0" / host_asset()).read_bytes()
    ).hexdigest()
    dest, github_path = tmp_path / "dest", tmp_path / "github_path"
    no_gitleaks = tmp_path / "bin"
    no_gitleaks.mkdir()

    result = run_install(
        tmp_path,
        "--mirror",
        release_host.url,
        "--dest",
        str(dest),
        path=str(no_gitleaks),
        github_path=github_path,
    )

    assert result.returncode == 1, result.stderr
    url = f"{release_host.url}/v8.28.0/{host_asset()}"
    assert result.stderr.strip().splitlines()[-1] == (
        f"error: checksum mismatch for {url}: expected sha256 {GITLEAKS.downloads[HOST][1]}, "
        f"got {got}; nothing was installed"
    )
    assert release_host.requests == [f"/gitleaks/v8.28.0/{host_asset()}"]
    assert not dest.exists() or list(dest.iterdir()) == []
    assert not github_path.exists()


def test_the_task_uses_the_machines_gitleaks_and_downloads_nothing(release_host, tmp_path):
    machine = shutil.which("gitleaks")
    assert machine, "the lab installs gitleaks"
    dest, github_path = tmp_path / "dest", tmp_path / "github_path"

    result = run_install(
        tmp_path,
        "--mirror",
        release_host.url,
        "--dest",
        str(dest),
        path=str(Path(machine).parent),
        github_path=github_path,
    )

    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines() == [
        f"using gitleaks >= 8.19.0 from {machine} (PATH): nothing to download"
    ]
    assert release_host.requests == []
    assert not dest.exists() and not github_path.exists()


def test_an_unreachable_release_host_is_one_line_naming_the_url_and_mirror(tmp_path):
    if HOST not in GITLEAKS.downloads:
        pytest.skip(f"no gitleaks download is pinned for {HOST}")
    with socket.socket() as sock:  # a port bound, then released: nothing listens there
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    mirror = f"http://127.0.0.1:{port}/gitleaks"
    no_gitleaks = tmp_path / "bin"
    no_gitleaks.mkdir()

    result = run_install(
        tmp_path,
        "--mirror",
        mirror,
        "--dest",
        str(tmp_path / "dest"),
        path=str(no_gitleaks),
        github_path=tmp_path / "github_path",
    )

    assert result.returncode == 1
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith(f"error: cannot download {mirror}/v8.28.0/{host_asset()}: ")
    assert last.endswith(f"or pass --mirror URL of a mirror of {UPSTREAM}")
    assert not (tmp_path / "dest").exists()


def test_an_unwritable_dest_is_refused_before_anything_is_downloaded(release_host, tmp_path):
    if HOST not in GITLEAKS.downloads:
        pytest.skip(f"no gitleaks download is pinned for {HOST}")
    blocker = tmp_path / "file"
    blocker.write_text("not a directory\n")
    no_gitleaks = tmp_path / "bin"
    no_gitleaks.mkdir()

    result = run_install(
        tmp_path,
        "--mirror",
        release_host.url,
        "--dest",
        str(blocker / "bin"),
        path=str(no_gitleaks),
        github_path=tmp_path / "github_path",
    )

    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1] == (
        f"error: cannot install into {blocker / 'bin'}: {blocker} is not a directory"
    )
    assert release_host.requests == []


def test_a_tool_without_a_download_and_not_on_path_names_the_install_line(tmp_path):
    with pytest.raises(ToolNotFound) as err:
        downloads.install(
            "crane",
            dest=tmp_path / "dest",
            host=("linux", "x64"),
            family="macos",
            env={"PATH": str(tmp_path)},
            say=lambda _: None,
        )
    assert str(err.value) == "tools.install has no pinned download of crane: `brew install crane`"
