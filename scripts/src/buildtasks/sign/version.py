"""Which cosign is installed: its version, or at least which flags it has.

`cosign version --json` says so for release builds. Distribution builds (Debian's cosign)
report `gitVersion: devel`; then the documented `cosign sign --help` output tells the flag
generation apart by `--use-signing-config`: default `true` is v3 behaviour (a TUF signing
config by default), default `false` is 2.6 or later, and no such flag is an older v2.

`parse_cosign_version` and `version_from_sign_help` are pure (text in, version out);
`detect_cosign_version` runs the two probes through a `Runner`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from buildtasks.command import Command
from buildtasks.errors import BuildtasksError, ToolNotFound
from buildtasks.runner import Runner

COSIGN = "cosign"
#: Where a version read from `cosign sign --help` came from.
SIGN_HELP_SOURCE = "cosign sign --help"


@dataclass(frozen=True, order=True)
class CosignVersion:
    """The installed cosign's version; `exact=False` when only a lower bound is known."""

    major: int
    minor: int = 0
    patch: int = 0
    exact: bool = field(default=True, compare=False)
    source: str = field(default="", compare=False)

    def __str__(self) -> str:
        if self.exact:
            return f"{self.major}.{self.minor}.{self.patch}"
        return f"{self.major}.{self.minor}+" if self.minor else f"{self.major}.x"

    def at_least(self, major: int, minor: int = 0, patch: int = 0) -> bool:
        return (self.major, self.minor, self.patch) >= (major, minor, patch)

    @property
    def signing_config_by_default(self) -> bool:
        """v3 fetches Fulcio/Rekor URLs from a TUF signing config unless told not to."""
        return self.major >= 3

    def supports_bundle_flag(self, subcommand: str) -> bool:
        """Whether `cosign <subcommand>` accepts `--new-bundle-format`."""
        if subcommand in ("attest", "verify-attestation"):
            return self.at_least(2, 5)
        return self.at_least(2, 6)


#: What to assume when the version cannot be read at all.
ASSUMED_VERSION = CosignVersion(3, exact=False, source="assumed")

_GIT_VERSION_RE = re.compile(
    r"""(?:GitVersion:|"gitVersion"\s*:)\s*"?v?(\d+)\.(\d+)\.(\d+)""", re.IGNORECASE
)
#: A flag listing of `cosign sign --help` (`    --key='':`, or cobra's `      --key string`).
_KEY_FLAG_RE = re.compile(r"^\s*--key\b", re.MULTILINE)
#: The `--use-signing-config` flag line: `    --use-signing-config=true:` (cosign's template)
#: or `      --use-signing-config   whether ... (default true)` (cobra's).
_SIGNING_CONFIG_FLAG_RE = re.compile(r"^\s*--use-signing-config\b(?P<rest>.*)$", re.MULTILINE)


def version_command() -> Command:
    return Command((COSIGN, "version", "--json"))


def sign_help_command() -> Command:
    return Command((COSIGN, "sign", "--help"))


def parse_cosign_version(text: str) -> CosignVersion | None:
    """Read `GitVersion` from `cosign version` (text or `--json`); None for "devel" builds."""
    match = _GIT_VERSION_RE.search(text)
    if not match:
        return None
    major, minor, patch = (int(g) for g in match.groups())
    return CosignVersion(major, minor, patch, source="cosign version")


def version_from_sign_help(text: str) -> CosignVersion | None:
    """Tell the cosign flag generation from `cosign sign --help`; None if that is not its help.

    `--use-signing-config` defaulting to true: v3; present but false: 2.6 or later; absent:
    an older v2. The result is a lower bound (`exact=False`).
    """
    if not _KEY_FLAG_RE.search(text):
        return None
    flag = _SIGNING_CONFIG_FLAG_RE.search(text)
    if not flag:
        return CosignVersion(2, exact=False, source=SIGN_HELP_SOURCE)
    rest = flag["rest"]
    if rest.startswith("=true") or "(default true)" in rest:
        return CosignVersion(3, exact=False, source=SIGN_HELP_SOURCE)
    return CosignVersion(2, 6, exact=False, source=SIGN_HELP_SOURCE)


def detect_cosign_version(runner: Runner) -> CosignVersion:
    """Ask the installed cosign its version; for a "devel" build, read its sign flags."""
    try:
        text = runner.output(version_command(), timeout=30)
    except ToolNotFound:
        if runner.dry:
            return ASSUMED_VERSION
        raise
    except BuildtasksError:
        text = ""
    version = parse_cosign_version(text)
    if version:
        return version
    try:
        version = version_from_sign_help(runner.output(sign_help_command(), timeout=30))
    except BuildtasksError:
        version = None
    if version:
        return version
    runner.say("note: could not tell which cosign is installed; using cosign v3 flags")
    return ASSUMED_VERSION
