"""Configuration: defaults, precedence (CLI > env > pyproject > defaults) and clear errors."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from buildtasks import config
from buildtasks.errors import ConfigError

ROOT = Path("/repo")


def table(**image_overrides):
    image = {"repository": "monorepo", "dockerfile": "apps/backend/Dockerfile", **image_overrides}
    return {"images": {"backend": image}}


def test_defaults_fill_every_unset_key():
    cfg = config.parse(table(), ROOT, {})
    image = cfg.image("backend")
    assert cfg.registry == "127.0.0.1:5000"
    assert image.platforms == ("linux/amd64",)
    assert image.context == "."
    assert cfg.scan.severity == ("CRITICAL", "HIGH")
    assert cfg.cache_dir == "~/.cache/buildx"


def test_pyproject_beats_defaults():
    cfg = config.parse({**table(platforms=["linux/arm64"]), "registry": "ghcr.io/acme"}, ROOT, {})
    assert cfg.registry == "ghcr.io/acme"
    assert cfg.image("backend").platforms == ("linux/arm64",)


def test_environment_beats_pyproject():
    env = {
        "BUILDTASKS_REGISTRY": "ghcr.io/other/",
        "BUILDTASKS_PLATFORMS": "linux/amd64,linux/arm64",
        "BUILDTASKS_SCAN_SEVERITY": "critical",
    }
    cfg = config.parse({**table(platforms=["linux/arm64"]), "registry": "ghcr.io/acme"}, ROOT, env)
    assert cfg.registry == "ghcr.io/other"
    assert cfg.image("backend").platforms == ("linux/amd64", "linux/arm64")
    assert cfg.scan.severity == ("CRITICAL",)


def test_cli_beats_environment_through_the_build_options(tmp_path):
    # The CLI layer replaces values on the loaded config; platforms parse the same way.
    cfg = config.parse(table(), ROOT, {"BUILDTASKS_PLATFORMS": "linux/arm64"})
    cli = config.parse_platforms("linux/amd64")
    image = replace(cfg.image("backend"), platforms=cli)
    assert image.platforms == ("linux/amd64",)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        pytest.param(
            {"registy": "x", **table()},
            "unknown key 'registy' in [tool.buildtasks] — did you mean 'registry'?",
            id="top-level-typo",
        ),
        pytest.param(
            table(platfroms=["linux/amd64"]), "did you mean 'platforms'?", id="image-key-typo"
        ),
        pytest.param(table(dockerfile=3), "dockerfile must be a string", id="wrong-type"),
        pytest.param(
            {"images": {"backend": {"dockerfile": "D"}}},
            "missing 'repository'",
            id="missing-repository",
        ),
        pytest.param(
            table(repository="Bad/Name"), "not a valid repository name", id="uppercase-repository"
        ),
        pytest.param(
            table(platforms=["linux/amd46"]), "did you mean 'linux/amd64'?", id="platform-typo"
        ),
        pytest.param(table(**{"size-budget-mb": -1}), "positive integer", id="negative-budget"),
        pytest.param(
            {**table(), "scan": {"severity": "CRITICALL"}},
            "did you mean 'CRITICAL'?",
            id="severity-typo",
        ),
        pytest.param(
            {**table(), "scan": {"ignore_unfixed": True}},
            "did you mean 'ignore-unfixed'?",
            id="underscore-key",
        ),
        pytest.param({"images": {}}, "at least one image", id="no-images"),
        pytest.param(
            {**table(), "sign": {"release-workflow": "ci.yml"}},
            "tool.buildtasks.sign.release-workflow 'ci.yml' is not a workflow file: give its "
            "path from the repository root, e.g. .github/workflows/ci.yml",
            id="release-workflow-bare-file-name",
        ),
        pytest.param(
            {**table(), "sign": {"release-refs": []}},
            "tool.buildtasks.sign.release-refs is empty",
            id="no-release-refs",
        ),
        pytest.param(
            {**table(), "sign": {"release-refs": ["main"]}},
            "tool.buildtasks.sign.release-refs 'main' is not a branch or tag pattern — did you "
            "mean 'refs/heads/main' or 'refs/tags/main'?",
            id="release-ref-short-name",
        ),
        pytest.param(
            {**table(), "sign": {"release-refs": ["refs/pull/*/merge"]}},
            "'refs/pull/*/merge' is not a branch or tag pattern (use refs/heads/NAME",
            id="release-ref-pull-request",
        ),
        pytest.param(
            {**table(), "sign": {"release-ref": ["refs/heads/main"]}},
            "did you mean 'release-refs'?",
            id="release-refs-typo",
        ),
        pytest.param(
            {**table(), "sign": {"release-refs": [1]}},
            "release-refs must be a list of strings",
            id="release-refs-not-strings",
        ),
    ],
)
def test_bad_config_names_the_key_and_the_fix(data, message):
    with pytest.raises(ConfigError) as err:
        config.parse(data, ROOT, {})
    assert message in str(err.value)
    assert "\n" not in str(err.value)


def test_unknown_environment_variable_is_reported_with_a_suggestion():
    with pytest.raises(ConfigError, match="did you mean 'BUILDTASKS_REGISTRY'"):
        config.parse(table(), ROOT, {"BUILDTASKS_REGISTY": "x"})


def test_unknown_image_lists_the_configured_ones():
    cfg = config.parse(table(), ROOT, {})
    with pytest.raises(ConfigError, match=r"unknown image 'backnd' — did you mean 'backend'\?"):
        cfg.image("backnd")


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("linux/amd64", ("linux/amd64",)),
        ("linux/amd64,linux/arm64", ("linux/amd64", "linux/arm64")),
        ("linux/amd64, linux/amd64", ("linux/amd64",)),
    ],
)
def test_platform_lists_parse(value, expected):
    assert config.parse_platforms(value) == expected


@pytest.mark.parametrize("value", ["amd64", "linux/x86_64", "windows/amd64", ""])
def test_bad_platforms_fail(value):
    with pytest.raises(ConfigError):
        config.parse_platforms(value)


def test_the_repository_config_loads(repo_root):
    cfg = config.load(repo_root, env={})
    assert "backend" in cfg.images
    assert (repo_root / cfg.image("backend").dockerfile).is_file()


def test_load_outside_a_configured_repository_says_where_to_run(tmp_path):
    with pytest.raises(ConfigError, match="run from the repository"):
        config.load(tmp_path, env={})


def test_scan_mirrors_and_cache_come_from_pyproject_or_environment():
    data = {**table(), "scan": {"db-repositories": ["a/db:2"], "cache-dir": "/c"}}
    cfg = config.parse(data, ROOT, {})
    assert (cfg.scan.db_repositories, cfg.scan.cache_dir) == (("a/db:2",), "/c")
    env = {"BUILDTASKS_SCAN_DB_REPOSITORIES": "m1/db:2, m2/db:2", "BUILDTASKS_SCAN_CACHE_DIR": "/e"}
    cfg = config.parse(data, ROOT, env)
    assert (cfg.scan.db_repositories, cfg.scan.cache_dir) == (("m1/db:2", "m2/db:2"), "/e")


def test_sign_release_identity_defaults_to_ci_on_main_and_v_tags():
    sign = config.parse(table(), ROOT, {}).sign
    assert sign.release_workflow == ".github/workflows/ci.yml"
    assert sign.release_refs == ("refs/heads/main", "refs/tags/v*")


def test_sign_release_identity_from_pyproject():
    data = {
        **table(),
        "sign": {
            "release-workflow": ".github/workflows/release.yaml",
            "release-refs": ["refs/heads/main", "refs/heads/release/**"],
            "certificate-identity": "https://github.com/acme/app/x.yml@refs/heads/main",
        },
    }
    sign = config.parse(data, ROOT, {}).sign
    assert sign.release_workflow == ".github/workflows/release.yaml"
    assert sign.release_refs == ("refs/heads/main", "refs/heads/release/**")
    assert sign.certificate_identity == "https://github.com/acme/app/x.yml@refs/heads/main"


#: One wrong type for every key of every table: (table path, key, value). Numbers where text
#: belongs, text where a switch or a number belongs, a switch where a count belongs, text
#: where a table belongs.
WRONG_TYPES = [
    *(("", key, 5) for key in ("registry", "cache", "cache-dir", "ca-cert", "artifacts-dir")),
    *(("", key, "x") for key in ("images", "scan", "sign", "lab", "builders", "runners")),
    ("", "retention", "x"),
    ("", "paths", 5),
    *(
        ("images.backend", key, 5)
        for key in (
            "repository",
            "dockerfile",
            "context",
            "target",
            "platforms",
            "tests",
            "title",
            "description",
            "tags",
            "flavor",
            "labels",
            "annotations",
            "cache",
            "paths",
        )
    ),
    ("images.backend", "build-args", "x"),
    ("images.backend", "size-budget-mb", True),
    ("images.backend", "size-budget-mb", "200"),
    ("images.backend", "retention", "x"),
    *(
        ("scan", key, 5)
        for key in ("severity", "ignorefile", "db-repositories", "cache-dir", "vex")
    ),
    ("scan", "ignore-unfixed", "yes"),
    ("scan", "offline", "true"),
    ("scan", "max-db-age-days", True),
    ("scan", "max-db-age-days", "3"),
    *(
        ("sign", key, 5)
        for key in (
            "key",
            "public-key",
            "certificate-identity",
            "certificate-oidc-issuer",
            "release-workflow",
            "release-refs",
        )
    ),
    *(("lab", key, 5) for key in ("registry", "suite", "seed")),
    ("lab", "classic-engine", "yes"),
    ("retention", "keep-tags", "latest"),
    ("retention", "expire-tags", "pr-*"),
    ("retention", "keep-untagged", True),
    ("retention", "untagged-days", "7"),
    ("retention", "keep-build-cache", "yes"),
]


def test_every_key_is_listed_with_a_wrong_type():
    from buildtasks.retention import policy

    tables = {
        "": config._TOP_KEYS,
        "images.backend": config._IMAGE_KEYS,
        "scan": config._SCAN_KEYS,
        "sign": config._SIGN_KEYS,
        "lab": config._LAB_KEYS,
        "retention": policy.KEYS,
    }
    listed = {(where, key) for where, key, _ in WRONG_TYPES}
    missing = {(w, k) for w, keys in tables.items() for k in keys if (w, k) not in listed}
    assert not missing


@pytest.mark.parametrize(
    ("where", "key", "value"),
    [pytest.param(*case, id=f"{case[0] or 'top'}.{case[1]}={case[2]!r}") for case in WRONG_TYPES],
)
def test_a_wrong_type_is_refused_naming_the_key(where, key, value):
    data = table()
    target = data
    for part in where.split(".") if where else ():
        target = target.setdefault(part, {})
    target[key] = value
    with pytest.raises(ConfigError) as err:
        config.parse(data, ROOT, {})
    message = str(err.value)
    assert "\n" not in message
    path = f"tool.buildtasks.{where}.{key}" if where else f"tool.buildtasks.{key}"
    assert path in message, message
    assert "unknown key" not in message, message
