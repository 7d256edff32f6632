"""Load `[tool.buildtasks]` from the root pyproject.toml into frozen, validated dataclasses.

Precedence, highest first: CLI options (applied by the task through `with_overrides`),
environment (`BUILDTASKS_*`), `pyproject.toml`, built-in defaults. Every unknown key or bad
value raises `ConfigError` naming the key and, for typos, the nearest valid one.
"""

from __future__ import annotations

import difflib
import os
import re
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from buildtasks.builders import BuilderSpec, parse_builder
from buildtasks.caches import check_kind
from buildtasks.errors import ConfigError
from buildtasks.paths import check_patterns
from buildtasks.retention import policy as retention_policy
from buildtasks.retention.policy import Policy

#: The lab registry: where images go unless configured otherwise.
LAB_REGISTRY = "127.0.0.1:5000"

PLATFORM_RE = re.compile(r"^linux/(amd64|arm64|arm/v7|arm/v6|386|ppc64le|s390x|riscv64)$")
KNOWN_PLATFORMS = (
    "linux/amd64",
    "linux/arm64",
    "linux/arm/v7",
    "linux/arm/v6",
    "linux/386",
    "linux/ppc64le",
    "linux/s390x",
    "linux/riscv64",
)
SEVERITIES = ("UNKNOWN", "LOW", "MEDIUM", "HIGH", "CRITICAL")
#: The workflow that signs releases, and the refs it may sign from: keyless verification
#: trusts only this workflow on these refs (see `sign.modes.github_identity_regexp`).
RELEASE_WORKFLOW = ".github/workflows/ci.yml"
RELEASE_REFS = ("refs/heads/main", "refs/tags/v*")
#: GitHub's native runners per platform: each platform builds on its own architecture.
RUNNERS = {"linux/amd64": "ubuntu-24.04", "linux/arm64": "ubuntu-24.04-arm"}
WORKFLOW_PATH_RE = re.compile(r"^\.github/workflows/[^/]+\.ya?ml$")
RELEASE_REF_RE = re.compile(r"^refs/(?:heads|tags)/[^\s@~^:\\\[]+$")
REPOSITORY_RE = re.compile(
    r"^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*$"
)


@dataclass(frozen=True)
class ImageSpec:
    """One image the monorepo ships, as configured in `[tool.buildtasks.images.<key>]`."""

    key: str
    repository: str
    dockerfile: str
    context: str = "."
    target: str | None = None
    platforms: tuple[str, ...] = ("linux/amd64",)
    build_args: Mapping[str, str] = field(default_factory=dict)
    size_budget_mb: int | None = None
    tests: str | None = None
    title: str = ""
    description: str = ""
    tags: tuple[str, ...] = ()
    flavor: tuple[str, ...] = ()
    #: Extra OCI labels and annotations, `KEY=VALUE` lines (metadata-action's `labels` and
    #: `annotations` inputs): they win over the defaults, templates such as {{sha}} work.
    labels: tuple[str, ...] = ()
    annotations: tuple[str, ...] = ()
    #: The build cache of this image (`caches.KINDS`); '' follows the top-level `cache`.
    cache: str = ""
    #: What the image is built from beyond the shared `paths` (GitHub filter patterns).
    paths: tuple[str, ...] = ()
    #: This image's retention policy (`[...images.<key>.retention]` over the shared one).
    retention: Policy | None = None


@dataclass(frozen=True)
class ScanConfig:
    """Trivy gate settings (`[tool.buildtasks.scan]`)."""

    severity: tuple[str, ...] = ("CRITICAL", "HIGH")
    ignore_unfixed: bool = False
    ignorefile: str = ".trivyignore"
    db_repositories: tuple[str, ...] = ()
    offline: bool = False
    #: Trivy's cache (DB and layers); empty leaves it to trivy (TRIVY_CACHE_DIR, ~/.cache/trivy).
    cache_dir: str = ""
    #: A scan refuses a vulnerability DB older than this (0 turns the check off).
    max_db_age_days: float = 3.0
    #: VEX sources for every scan: files (from the repository root), `repo` or `oci`.
    vex: tuple[str, ...] = ()


@dataclass(frozen=True)
class SignConfig:
    """Cosign settings (`[tool.buildtasks.sign]`)."""

    key: str = ""
    public_key: str = ""
    certificate_identity: str = ""
    certificate_oidc_issuer: str = "https://token.actions.githubusercontent.com"
    #: The workflow file that signs in GitHub Actions, from the repository root.
    release_workflow: str = RELEASE_WORKFLOW
    #: Branch and tag patterns (`*`, `**`, `?` as in GitHub's branch filters) it signs from.
    release_refs: tuple[str, ...] = RELEASE_REFS


@dataclass(frozen=True)
class LabConfig:
    """The local lab (`[tool.buildtasks.lab]`): registry address and base-image stand-ins."""

    registry: str = LAB_REGISTRY
    #: Debian suite the stand-in bases are made from.
    suite: str = "bookworm"
    #: Base images to seed besides those the images' Dockerfiles build from (`seed_refs`).
    seed: tuple[str, ...] = ()
    #: Also start a second engine with the classic (overlay2) image store.
    classic_engine: bool = False


@dataclass(frozen=True)
class Config:
    """Everything the tasks need, loaded once."""

    root: Path
    registry: str
    images: Mapping[str, ImageSpec]
    cache_dir: str = "~/.cache/buildx"
    #: A CA bundle passed to builds as the BuildKit secret `ca`; "none" turns off the
    #: CA that `lab.up` detected.
    ca_cert: str = ""
    #: Where build metadata, reports and SBOMs go (relative to the repository root).
    artifacts_dir: str = ".buildtasks"
    scan: ScanConfig = field(default_factory=ScanConfig)
    sign: SignConfig = field(default_factory=SignConfig)
    lab: LabConfig = field(default_factory=LabConfig)
    #: The build cache of every image without its own `cache` (`caches.KINDS`).
    cache: str = "auto"
    #: Platform → builder (`[tool.buildtasks.builders]`); unlisted platforms use `default`.
    builders: Mapping[str, BuilderSpec] = field(default_factory=dict)
    #: Files every image is built from (the lock files, the tooling, the shared workflow).
    paths: tuple[str, ...] = ()
    #: Platform → the GitHub Actions runner label its build job runs on.
    runners: Mapping[str, str] = field(default_factory=lambda: dict(RUNNERS))
    #: Build without any cache (BUILDTASKS_NO_CACHE): what `--no-cache` does, for every build.
    no_cache: bool = False
    #: What `docker.cleanup` keeps (`[tool.buildtasks.retention]`).
    retention: Policy = field(default_factory=Policy)

    def image_paths(self, image: ImageSpec) -> tuple[str, ...]:
        """Everything `image` is built from, as GitHub `paths` filter patterns."""
        return (*self.paths, *image.paths)

    def runner_for(self, platform: str) -> str:
        """The runner label the build job of `platform` runs on, or fail naming the key."""
        try:
            return self.runners[platform]
        except KeyError:
            raise ConfigError(
                f"no runner for {platform}: add it to [tool.buildtasks.runners], e.g. "
                f'"{platform}" = "ubuntu-24.04" (emulated with QEMU) or a native runner label'
            ) from None

    def retention_for(self, image: ImageSpec) -> Policy:
        """The retention policy of `image`: its own table over the shared one."""
        return image.retention or self.retention

    def cache_kind(self, image: ImageSpec) -> str:
        """The cache kind configured for `image`."""
        return image.cache or self.cache

    def artifacts_path(self, image: ImageSpec) -> Path:
        """Where the build record, scan reports and SBOMs of `image` are written."""
        return self.root / Path(self.artifacts_dir).expanduser() / image.key

    def dockerfile_path(self, image: ImageSpec) -> Path:
        """The image's Dockerfile, or fail naming the key to fix."""
        path = self.root / image.dockerfile
        if not path.is_file():
            raise ConfigError(
                f"Dockerfile {image.dockerfile} not found: fix "
                f"[tool.buildtasks.images.{image.key}] dockerfile"
            )
        return path

    def image(self, key: str) -> ImageSpec:
        """Return the image named `key`, or fail naming the configured ones."""
        try:
            return self.images[key]
        except KeyError:
            raise ConfigError(
                f"unknown image {key!r}{_suggest(key, self.images)}; "
                f"configured images: {', '.join(self.images) or 'none'}"
            ) from None

    def select(self, key: str | None) -> tuple[ImageSpec, ...]:
        """Return the image named `key`, or every configured image when `key` is empty."""
        if key:
            return (self.image(key),)
        return tuple(self.images.values())


# --------------------------------------------------------------------------- parsing

_TOP_KEYS = (
    "registry",
    "cache",
    "cache-dir",
    "ca-cert",
    "artifacts-dir",
    "images",
    "scan",
    "sign",
    "lab",
    "builders",
    "paths",
    "runners",
    "retention",
)
_IMAGE_KEYS = (
    "repository",
    "dockerfile",
    "context",
    "target",
    "platforms",
    "build-args",
    "size-budget-mb",
    "tests",
    "title",
    "description",
    "tags",
    "flavor",
    "labels",
    "annotations",
    "cache",
    "paths",
    "retention",
)
_SCAN_KEYS = (
    "severity",
    "ignore-unfixed",
    "ignorefile",
    "db-repositories",
    "offline",
    "cache-dir",
    "max-db-age-days",
    "vex",
)
_SIGN_KEYS = (
    "key",
    "public-key",
    "certificate-identity",
    "certificate-oidc-issuer",
    "release-workflow",
    "release-refs",
)
_LAB_KEYS = ("registry", "suite", "seed", "classic-engine")

#: Environment variables and the top-level setting they override.
ENV_VARS = {
    "BUILDTASKS_REGISTRY": "registry",
    "BUILDTASKS_CACHE_DIR": "cache-dir",
    "BUILDTASKS_CA_CERT": "ca-cert",
    "BUILDTASKS_ARTIFACTS_DIR": "artifacts-dir",
    "BUILDTASKS_PLATFORMS": "platforms",
    "BUILDTASKS_SCAN_SEVERITY": "scan.severity",
    "BUILDTASKS_SCAN_DB_REPOSITORIES": "scan.db-repositories",
    "BUILDTASKS_SCAN_CACHE_DIR": "scan.cache-dir",
    "BUILDTASKS_COSIGN_KEY": "sign.key",
    "BUILDTASKS_COSIGN_PUBLIC_KEY": "sign.public-key",
    "BUILDTASKS_BUILDERS": "builders",
    "BUILDTASKS_CACHE": "cache",
    "BUILDTASKS_NO_CACHE": "no cache for every build (--no-cache)",
}


def _suggest(word: str, choices: Sequence[str] | Mapping[str, Any]) -> str:
    match = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f" — did you mean {match[0]!r}?" if match else ""


def _check_keys(table: Mapping[str, Any], allowed: Sequence[str], where: str) -> None:
    if not isinstance(table, Mapping):
        raise ConfigError(f"[{where}] must be a table, got {table!r}")
    for key in table:
        if key not in allowed:
            raise ConfigError(
                f"unknown key {key!r} in [{where}]{_suggest(key, allowed)} "
                f"(valid keys: {', '.join(allowed)})"
            )


def _str(value: Any, where: str) -> str:
    if not isinstance(value, str):
        raise ConfigError(f"{where} must be a string, got {value!r}")
    return value


def _str_list(value: Any, where: str) -> tuple[str, ...]:
    if isinstance(value, str):
        value = [v for v in re.split(r"[,\n]", value) if v.strip()]
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ConfigError(f"{where} must be a list of strings, got {value!r}")
    return tuple(v.strip() for v in value)


def _lines(value: Any, where: str) -> tuple[str, ...]:
    """metadata-action input lines: a list, or one string with a line each (commas are data)."""
    if isinstance(value, str):
        value = [line for line in value.splitlines() if line.strip()]
    return _str_list(value, where)


def key_values(lines: Sequence[str], where: str) -> tuple[str, ...]:
    """`KEY=VALUE` lines (labels, annotations): each needs a key and an `=`."""
    for line in lines:
        key, sep, _ = line.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"{where} item {line!r} is not KEY=VALUE, e.g. org.example.team=web")
    return tuple(lines)


def parse_days(value: Any, where: str) -> float:
    """A number of days, 0 or more (a bool or a string is no number here)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
        raise ConfigError(
            f"{where} must be a number of days, 0 or more (0: no limit), got {value!r}"
        )
    return float(value)


def _bool(value: Any, where: str) -> bool:
    """A TOML boolean: `true` or `false`, unquoted (a string is no switch here)."""
    if isinstance(value, bool):
        return value
    raise ConfigError(f"{where} must be true or false (unquoted), got {value!r}")


def parse_platforms(value: str | Sequence[str], where: str = "--platform") -> tuple[str, ...]:
    """Split and validate `linux/amd64,linux/arm64`; fail naming the nearest valid platform."""
    items = _str_list(value if not isinstance(value, tuple) else list(value), where)
    if not items:
        raise ConfigError(f"{where} is empty; use e.g. linux/amd64")
    for item in items:
        if not PLATFORM_RE.match(item):
            raise ConfigError(
                f"bad platform {item!r} in {where}{_suggest(item, KNOWN_PLATFORMS)} "
                f"(expected os/arch such as {', '.join(KNOWN_PLATFORMS[:2])})"
            )
    return tuple(dict.fromkeys(items))


def parse_severity(value: str | Sequence[str], where: str) -> tuple[str, ...]:
    """Validate a trivy severity list such as `CRITICAL,HIGH`."""
    items = tuple(s.upper() for s in _str_list(value, where))
    for item in items:
        if item not in SEVERITIES:
            raise ConfigError(
                f"bad severity {item!r} in {where}{_suggest(item, SEVERITIES)} "
                f"(valid: {','.join(SEVERITIES)})"
            )
    return items


def _parse_sign(table: Any) -> SignConfig:
    where = "tool.buildtasks.sign"
    _check_keys(table, _SIGN_KEYS, where)
    strings = {
        k.replace("-", "_"): _str(v, f"{where}.{k}")
        for k, v in table.items()
        if k != "release-refs"
    }
    workflow = strings.get("release_workflow", RELEASE_WORKFLOW)
    if not WORKFLOW_PATH_RE.match(workflow):
        raise ConfigError(
            f"{where}.release-workflow {workflow!r} is not a workflow file: give its path from "
            f"the repository root, e.g. {RELEASE_WORKFLOW}"
        )
    refs = _str_list(table.get("release-refs", list(RELEASE_REFS)), f"{where}.release-refs")
    if not refs:
        raise ConfigError(
            f"{where}.release-refs is empty: list the refs releases are signed from, "
            'e.g. ["refs/heads/main", "refs/tags/v*"]'
        )
    for ref in refs:
        if not RELEASE_REF_RE.match(ref):
            hint = (
                f" — did you mean 'refs/heads/{ref}' or 'refs/tags/{ref}'?"
                if not ref.startswith("refs/") and RELEASE_REF_RE.match(f"refs/heads/{ref}")
                else ""
            )
            raise ConfigError(
                f"{where}.release-refs {ref!r} is not a branch or tag pattern{hint} "
                "(use refs/heads/NAME or refs/tags/PATTERN, e.g. refs/tags/v*)"
            )
    return SignConfig(**strings, release_refs=refs)


def _parse_image(key: str, table: Any, retention: Policy | None = None) -> ImageSpec:
    where = f"tool.buildtasks.images.{key}"
    if not isinstance(table, dict):
        raise ConfigError(f"[{where}] must be a table")
    _check_keys(table, _IMAGE_KEYS, where)
    for required in ("repository", "dockerfile"):
        if required not in table:
            raise ConfigError(f"[{where}] is missing {required!r}")
    repository = _str(table["repository"], f"{where}.repository")
    if not REPOSITORY_RE.match(repository):
        raise ConfigError(
            f"{where}.repository {repository!r} is not a valid repository name "
            "(lowercase letters, digits, '.', '_', '-', separated by '/')"
        )
    build_args = table.get("build-args", {})
    if not isinstance(build_args, dict) or not all(isinstance(v, str) for v in build_args.values()):
        raise ConfigError(f"{where}.build-args must be a table of strings")
    budget = table.get("size-budget-mb")
    if budget is not None and (
        isinstance(budget, bool) or not isinstance(budget, int) or budget <= 0
    ):
        raise ConfigError(f"{where}.size-budget-mb must be a positive integer, got {budget!r}")
    return ImageSpec(
        key=key,
        repository=repository,
        dockerfile=_str(table["dockerfile"], f"{where}.dockerfile"),
        context=_str(table.get("context", "."), f"{where}.context"),
        target=_str(table["target"], f"{where}.target") if "target" in table else None,
        platforms=parse_platforms(table.get("platforms", ["linux/amd64"]), f"{where}.platforms"),
        build_args=dict(build_args),
        size_budget_mb=budget,
        tests=_str(table["tests"], f"{where}.tests") if "tests" in table else None,
        title=_str(table.get("title", ""), f"{where}.title"),
        description=_str(table.get("description", ""), f"{where}.description"),
        tags=_lines(table.get("tags", []), f"{where}.tags"),
        flavor=_lines(table.get("flavor", []), f"{where}.flavor"),
        labels=key_values(_lines(table.get("labels", []), f"{where}.labels"), f"{where}.labels"),
        annotations=key_values(
            _lines(table.get("annotations", []), f"{where}.annotations"), f"{where}.annotations"
        ),
        cache=check_kind(_str(table["cache"], f"{where}.cache"), f"{where}.cache")
        if "cache" in table
        else "",
        paths=check_patterns(_str_list(table.get("paths", []), f"{where}.paths"), f"{where}.paths"),
        retention=retention_policy.parse(
            table["retention"], f"{where}.retention", retention or Policy(), _check_keys
        )
        if "retention" in table
        else None,
    )


def _parse_builders(table: Any, where: str = "tool.buildtasks.builders") -> dict[str, BuilderSpec]:
    if not isinstance(table, dict):
        raise ConfigError(f"[{where}] must be a table of platform = builder")
    builders = {}
    for platform, value in table.items():
        (parsed,) = parse_platforms([platform], f"{where} key")
        builders[parsed] = parse_builder(
            _str(value, f"{where}.{platform!r}"), f"{where}.{platform!r}"
        )
    return builders


def parse(data: Mapping[str, Any], root: Path, env: Mapping[str, str]) -> Config:
    """Build a `Config` from the `[tool.buildtasks]` table and the environment."""
    table = dict(data)
    _check_keys(table, _TOP_KEYS, "tool.buildtasks")
    images_table = table.get("images", {})
    if not isinstance(images_table, dict) or not images_table:
        raise ConfigError("[tool.buildtasks.images] must configure at least one image")
    retention = retention_policy.parse(
        table.get("retention", {}), "tool.buildtasks.retention", Policy(), _check_keys
    )
    images = {key: _parse_image(key, value, retention) for key, value in images_table.items()}

    scan_t = table.get("scan", {})
    _check_keys(scan_t, _SCAN_KEYS, "tool.buildtasks.scan")
    scan = ScanConfig(
        severity=parse_severity(
            scan_t.get("severity", "CRITICAL,HIGH"), "tool.buildtasks.scan.severity"
        ),
        ignore_unfixed=_bool(
            scan_t.get("ignore-unfixed", False), "tool.buildtasks.scan.ignore-unfixed"
        ),
        ignorefile=_str(
            scan_t.get("ignorefile", ".trivyignore"), "tool.buildtasks.scan.ignorefile"
        ),
        db_repositories=_str_list(
            scan_t.get("db-repositories", []), "tool.buildtasks.scan.db-repositories"
        ),
        offline=_bool(scan_t.get("offline", False), "tool.buildtasks.scan.offline"),
        cache_dir=_str(scan_t.get("cache-dir", ""), "tool.buildtasks.scan.cache-dir"),
        max_db_age_days=parse_days(
            scan_t.get("max-db-age-days", ScanConfig.max_db_age_days),
            "tool.buildtasks.scan.max-db-age-days",
        ),
        vex=_str_list(scan_t.get("vex", []), "tool.buildtasks.scan.vex"),
    )
    sign = _parse_sign(table.get("sign", {}))
    lab_t = table.get("lab", {})
    _check_keys(lab_t, _LAB_KEYS, "tool.buildtasks.lab")
    lab = LabConfig(
        registry=_str(lab_t.get("registry", LAB_REGISTRY), "tool.buildtasks.lab.registry"),
        suite=_str(lab_t.get("suite", "bookworm"), "tool.buildtasks.lab.suite"),
        seed=_str_list(lab_t.get("seed", list(LabConfig.seed)), "tool.buildtasks.lab.seed"),
        classic_engine=_bool(
            lab_t.get("classic-engine", False), "tool.buildtasks.lab.classic-engine"
        ),
    )
    config = Config(
        root=root,
        registry=_str(table.get("registry", LAB_REGISTRY), "tool.buildtasks.registry"),
        images=images,
        cache_dir=_str(table.get("cache-dir", "~/.cache/buildx"), "tool.buildtasks.cache-dir"),
        ca_cert=_str(table.get("ca-cert", ""), "tool.buildtasks.ca-cert"),
        artifacts_dir=_str(
            table.get("artifacts-dir", ".buildtasks"), "tool.buildtasks.artifacts-dir"
        ),
        scan=scan,
        sign=sign,
        lab=lab,
        cache=check_kind(
            _str(table.get("cache", "auto"), "tool.buildtasks.cache"), "tool.buildtasks.cache"
        ),
        builders=_parse_builders(table.get("builders", {})),
        paths=check_patterns(
            _str_list(table.get("paths", []), "tool.buildtasks.paths"), "tool.buildtasks.paths"
        ),
        runners=_parse_runners(table.get("runners", {})),
        retention=retention,
    )
    return apply_env(config, env)


def _parse_runners(table: Any, where: str = "tool.buildtasks.runners") -> dict[str, str]:
    if not isinstance(table, dict):
        raise ConfigError(f"[{where}] must be a table of platform = runner label")
    runners = dict(RUNNERS)
    for platform, label in table.items():
        (parsed,) = parse_platforms([platform], f"{where} key")
        runners[parsed] = _str(label, f"{where}.{platform!r}")
    return runners


def apply_env(config: Config, env: Mapping[str, str]) -> Config:
    """Apply `BUILDTASKS_*` environment overrides; unknown `BUILDTASKS_` names are errors."""
    for name in env:
        if (
            name.startswith("BUILDTASKS_")
            and name not in ENV_VARS
            and name not in _ENV_IGNORED
            and not name.startswith(_ENV_IGNORED_PREFIXES)
        ):
            raise ConfigError(
                f"unknown environment variable {name}{_suggest(name, ENV_VARS)} "
                f"(known: {', '.join(ENV_VARS)})"
            )
    if value := env.get("BUILDTASKS_REGISTRY"):
        config = replace(config, registry=registry_name(value))
    if value := env.get("BUILDTASKS_CACHE"):
        config = replace(config, cache=check_kind(value, "BUILDTASKS_CACHE"))
    if "BUILDTASKS_NO_CACHE" in env:
        config = replace(
            config, no_cache=_env_bool(env["BUILDTASKS_NO_CACHE"], "BUILDTASKS_NO_CACHE")
        )
    if value := env.get("BUILDTASKS_CACHE_DIR"):
        config = replace(config, cache_dir=value)
    if "BUILDTASKS_CA_CERT" in env:
        config = replace(config, ca_cert=env["BUILDTASKS_CA_CERT"])
    if value := env.get("BUILDTASKS_ARTIFACTS_DIR"):
        config = replace(config, artifacts_dir=value)
    if value := env.get("BUILDTASKS_PLATFORMS"):
        platforms = parse_platforms(value, "BUILDTASKS_PLATFORMS")
        config = replace(
            config,
            images={k: replace(v, platforms=platforms) for k, v in config.images.items()},
        )
    if value := env.get("BUILDTASKS_SCAN_SEVERITY"):
        config = replace(
            config,
            scan=replace(config.scan, severity=parse_severity(value, "BUILDTASKS_SCAN_SEVERITY")),
        )
    if value := env.get("BUILDTASKS_SCAN_DB_REPOSITORIES"):
        repos = _str_list(value, "BUILDTASKS_SCAN_DB_REPOSITORIES")
        config = replace(config, scan=replace(config.scan, db_repositories=repos))
    if value := env.get("BUILDTASKS_SCAN_CACHE_DIR"):
        config = replace(config, scan=replace(config.scan, cache_dir=value))
    if value := env.get("BUILDTASKS_COSIGN_KEY"):
        config = replace(config, sign=replace(config.sign, key=value))
    if value := env.get("BUILDTASKS_COSIGN_PUBLIC_KEY"):
        config = replace(config, sign=replace(config.sign, public_key=value))
    if value := env.get("BUILDTASKS_BUILDERS"):
        pairs = {}
        for item in _str_list(value, "BUILDTASKS_BUILDERS"):
            platform, sep, builder = item.partition("=")
            if not sep:
                raise ConfigError(
                    f"BUILDTASKS_BUILDERS item {item!r} is not PLATFORM=BUILDER, "
                    "e.g. linux/arm64=ssh://ci@arm-box"
                )
            pairs[platform.strip()] = builder.strip()
        config = replace(config, builders=_parse_builders(pairs, "BUILDTASKS_BUILDERS"))
    return config


#: `BUILDTASKS_` variables read elsewhere (tests, lab), not configuration overrides.
_ENV_IGNORED = frozenset(
    {
        "BUILDTASKS_LAB_REGISTRY",
        "BUILDTASKS_LAB_HOME",
        "BUILDTASKS_ALLOW_TEST_DB",
        "BUILDTASKS_IMAGE",
        "BUILDTASKS_SIZE_BUDGET_MB",
    }
)
#: Prefixes of variables the image tests read (BUILDTASKS_IMAGE_BACKEND=sha256:...).
_ENV_IGNORED_PREFIXES = ("BUILDTASKS_IMAGE_",)


def registry_name(value: str) -> str:
    """A registry and namespace as docker accepts it: no trailing `/`, a lowercase path.

    `ghcr.io/${{ github.repository_owner }}` keeps the owner's capitals (`ghcr.io/Acme`),
    which docker refuses in a repository name; metadata-action lowercases it too.
    """
    host, sep, path = value.strip().rstrip("/").partition("/")
    return f"{host}{sep}{path.lower()}"


def _env_bool(value: str, name: str) -> bool:
    """A boolean environment value as GitHub Actions writes them (`true`/`false`, or empty)."""
    lowered = value.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("", "0", "false", "no", "off"):
        return False
    raise ConfigError(f"{name} must be true or false, got {value!r}")


def find_root(start: Path) -> Path:
    """Return the nearest directory at or above `start` whose pyproject has [tool.buildtasks]."""
    for directory in (start, *start.parents):
        candidate = directory / "pyproject.toml"
        if candidate.is_file() and "[tool.buildtasks" in candidate.read_text(encoding="utf-8"):
            return directory
    raise ConfigError(
        f"no pyproject.toml with [tool.buildtasks] at or above {start}; run from the repository"
    )


def load(start: Path | None = None, env: Mapping[str, str] | None = None) -> Config:
    """Read and validate the configuration of the repository containing `start`."""
    root = find_root((start or Path.cwd()).resolve())
    path = root / "pyproject.toml"
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path.name} is not valid TOML: {exc}") from None
    table = data.get("tool", {}).get("buildtasks", {})
    return parse(table, root, os.environ if env is None else env)
