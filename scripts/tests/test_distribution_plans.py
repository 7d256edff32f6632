"""Distribute by digest, fast: the push and tag commands, the export, the second engine's plan."""

from __future__ import annotations

import io
import json
import re
import tarfile
from pathlib import Path

import pytest

from buildtasks import builders, merge, push
from buildtasks.errors import BuildtasksError, ConfigError
from buildtasks.refs import repository

DIGEST = "sha256:" + "ab" * 32


@pytest.mark.parametrize(
    ("ref", "expected"),
    [
        ("127.0.0.1:5000/app:1", "127.0.0.1:5000/app"),
        ("127.0.0.1:5000/app@" + DIGEST, "127.0.0.1:5000/app"),
        ("ghcr.io/acme/app:v1.0", "ghcr.io/acme/app"),
        ("app", "app"),
    ],
)
def test_repository_drops_tag_and_digest_but_keeps_a_registry_port(ref, expected):
    assert repository(ref) == expected


def test_tags_are_made_in_the_registry_from_one_digest_in_one_command():
    command = push.tag_command(f"reg/app@{DIGEST}", ["reg/app:1", "reg/app:latest"])
    assert command.argv == (
        "docker", "buildx", "imagetools", "create", "--prefer-index=false",
        "--tag", "reg/app:1", "--tag", "reg/app:latest", f"reg/app@{DIGEST}",
    )  # fmt: skip


def test_each_repository_is_pushed_once_in_the_order_of_the_tags():
    refs = ["reg/a:1", "reg/b:1", "reg/a:2"]
    assert push.repositories(refs) == ("reg/a", "reg/b")


def _save_tarball(path: Path, index: dict) -> None:
    data = json.dumps(index).encode()
    with tarfile.open(path, "w") as archive:
        info = tarfile.TarInfo("index.json")
        info.size = len(data)
        archive.addfile(info, io.BytesIO(data))


@pytest.mark.parametrize(
    ("entries", "expected"),
    [
        pytest.param([{"digest": DIGEST}], DIGEST, id="one-image"),
        pytest.param([], "", id="empty"),
        pytest.param([{"digest": DIGEST}, {"digest": DIGEST}], "", id="several"),
    ],
)
def test_the_export_names_the_built_digest_only_when_it_holds_exactly_one_image(
    tmp_path, entries, expected
):
    tarball = tmp_path / "image.tar"
    _save_tarball(tarball, {"manifests": entries})
    assert push.export_index_digest(tarball) == expected


# ------------------------------------------------------------------ merge

OTHER = "sha256:" + "cd" * 32


def _pd(platform: str, digest: str = DIGEST, repo: str = "reg/app", source: str = "a.json"):
    return merge.PlatformDigest((platform,), digest, repo, source=source)


@pytest.mark.parametrize(
    ("given", "message"),
    [
        pytest.param([], "no platform digests to merge", id="none"),
        pytest.param([_pd("linux/amd64")], "no digest for linux/arm64", id="missing"),
        pytest.param(
            [_pd("linux/amd64"), _pd("linux/amd64", OTHER, source="b.json"), _pd("linux/arm64")],
            "linux/amd64 is given twice (a.json and b.json)",
            id="twice",
        ),
        pytest.param(
            [_pd("linux/amd64"), _pd("linux/arm64"), _pd("linux/s390x")],
            "linux/s390x is not one of the platforms to merge",
            id="unexpected",
        ),
        pytest.param(
            [_pd("linux/amd64"), _pd("linux/arm64", repo="reg/other")],
            "different repositories",
            id="two-repositories",
        ),
    ],
)
def test_a_bad_set_of_platform_digests_is_refused_naming_the_fix(given, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        merge.check_set(["linux/amd64", "linux/arm64"], given)


def test_a_complete_set_passes():
    merge.check_set(["linux/amd64", "linux/arm64"], [_pd("linux/arm64"), _pd("linux/amd64")])


@pytest.mark.parametrize(
    ("value", "platform", "repo"),
    [
        (f"linux/arm64={DIGEST}", "linux/arm64", "reg/app"),
        (f"linux/arm/v7=other/repo@{DIGEST}", "linux/arm/v7", "other/repo"),
    ],
)
def test_a_digest_option_names_a_platform_and_a_digest(value, platform, repo):
    parsed = merge.parse_digest_option(value, "reg/app")
    assert (parsed.platforms, parsed.digest, parsed.repository) == ((platform,), DIGEST, repo)


@pytest.mark.parametrize("value", ["linux/arm64", f"arm64={DIGEST}", "linux/arm64=sha256:abc"])
def test_a_malformed_digest_option_is_a_config_error(value):
    with pytest.raises(ConfigError, match="bad --digest"):
        merge.parse_digest_option(value, "reg/app")


def test_the_build_annotations_become_index_annotations():
    assert merge.index_annotations(
        ["manifest:org.opencontainers.image.revision=abc", "index:a=b", "junk"]
    ) == ("index:org.opencontainers.image.revision=abc", "index:a=b")


def test_configs_of_a_manifest_and_of_an_index_are_keyed_by_platform():
    single = json.dumps({"architecture": "arm64", "os": "linux", "config": {}})
    assert list(merge.image_configs(single)) == ["linux/arm64"]
    index = json.dumps({"linux/amd64": {"os": "linux"}, "unknown/unknown": {}})
    assert list(merge.image_configs(index)) == ["linux/amd64"]


def _config(revision: str, title: str = "app") -> dict:
    return {"config": {"Labels": {merge.REVISION: revision, merge.TITLE: title}}}


@pytest.mark.parametrize(
    ("configs", "message"),
    [
        pytest.param(
            {"linux/arm64": _config("r1")}, "is linux/arm64, not linux/amd64", id="platform"
        ),
        pytest.param({"linux/amd64": _config("r2")}, "built from commit r2", id="commit"),
        pytest.param({"linux/amd64": _config("r1", "web")}, "is image 'web'", id="image"),
    ],
)
def test_what_the_registry_says_a_digest_is_must_match_its_claim(configs, message):
    with pytest.raises(ConfigError, match=message):
        merge.check_configs(_pd("linux/amd64"), configs, revision="r1", title="app")


def test_the_created_index_must_list_every_platform_and_every_given_manifest():
    index = {
        "manifests": [
            {"digest": DIGEST, "platform": {"os": "linux", "architecture": "amd64"}},
            {"digest": OTHER, "platform": {"os": "linux", "architecture": "arm64"}},
        ]
    }
    given = [_pd("linux/amd64"), _pd("linux/arm64", OTHER)]
    merge.check_index(index, ["linux/amd64", "linux/arm64"], given, {})
    with pytest.raises(BuildtasksError, match="lists linux/amd64, linux/arm64, not"):
        merge.check_index(index, ["linux/amd64"], given[:1], {})
    nested = {OTHER: {"sha256:" + "ef" * 32}}
    with pytest.raises(BuildtasksError, match="does not list"):
        merge.check_index(index, ["linux/amd64", "linux/arm64"], given, nested)


# ------------------------------------------------------------------ builders


@pytest.mark.parametrize(
    ("text", "kind", "env", "buildx_name"),
    [
        ("default", "default", {}, ""),
        ("builder:arm", "builder", {}, "arm"),
        ("context:lab", "context", {"DOCKER_CONTEXT": "lab", "DOCKER_HOST": ""}, ""),
        ("ssh://me@arm-box", "host", {"DOCKER_HOST": "ssh://me@arm-box", "DOCKER_CONTEXT": ""}, ""),
        (
            "unix:///run/x.sock",
            "host",
            {"DOCKER_HOST": "unix:///run/x.sock", "DOCKER_CONTEXT": ""},
            "",
        ),
    ],
)
def test_a_builder_string_says_how_every_command_reaches_it(text, kind, env, buildx_name):
    spec = builders.parse_builder(text, "here")
    assert (spec.kind, spec.env, spec.buildx_name) == (kind, env, buildx_name)


@pytest.mark.parametrize("text", ["arm-box", "builder:", "http://x:2375", "kontext:lab"])
def test_a_builder_string_that_names_nothing_is_a_config_error(text):
    with pytest.raises(ConfigError, match="names no builder"):
        builders.parse_builder(text, "tool.buildtasks.builders")


def test_platforms_are_grouped_by_builder_and_unlisted_ones_go_to_default():
    arm = builders.parse_builder("ssh://arm", "x")
    groups = builders.assign(["linux/amd64", "linux/arm64", "linux/386"], {"linux/arm64": arm})
    assert groups == [
        (builders.DEFAULT, ("linux/amd64", "linux/386")),
        (arm, ("linux/arm64",)),
    ]


def _config(extra: str, tmp_path: Path):
    from buildtasks import config as config_mod

    (tmp_path / "Dockerfile").write_text("FROM scratch\n")
    (tmp_path / "pyproject.toml").write_text(
        "[tool.buildtasks]\n"
        + extra
        + '\n[tool.buildtasks.images.app]\nrepository = "app"\ndockerfile = "Dockerfile"\n'
    )
    return config_mod.load(tmp_path, env={})


def test_builders_and_caches_are_read_from_pyproject(tmp_path):
    config = _config(
        'cache = "registry"\n[tool.buildtasks.builders]\n"linux/arm64" = "context:arm"\n',
        tmp_path,
    )
    assert config.builders == {"linux/arm64": builders.BuilderSpec("context", "arm")}
    assert config.cache_kind(config.image("app")) == "registry"


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ('cache = "s3"', "tool.buildtasks.cache must be one of auto, local, registry, gha, none"),
        ('[tool.buildtasks.builders]\n"linux/arm" = "default"', "linux/arm"),
        ('[tool.buildtasks.builders]\n"linux/arm64" = "arm-box"', "names no builder"),
    ],
)
def test_a_bad_builder_or_cache_setting_is_one_config_error(tmp_path, extra, message):
    with pytest.raises(ConfigError, match=re.escape(message)):
        _config(extra, tmp_path)


def test_a_spread_build_needs_a_push_and_cannot_run_the_image_tests():
    from buildtasks import fanout
    from buildtasks.build import BuildOptions

    arm = builders.parse_builder("ssh://arm", "x")
    groups = [(builders.DEFAULT, ("linux/amd64",)), (arm, ("linux/arm64",))]
    with pytest.raises(ConfigError, match="add --push to merge them"):
        fanout.check_spread(groups, BuildOptions())
    with pytest.raises(ConfigError, match="--test runs on one engine"):
        fanout.check_spread(groups, BuildOptions(push=True), test=True)
    fanout.check_spread(groups, BuildOptions(push=True))
    fanout.check_spread(groups[:1], BuildOptions(), test=True)
