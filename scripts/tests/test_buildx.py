"""The buildx plan: exact argv for each option, and the metadata file reader."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from buildtasks import buildx, caches, record, refs
from buildtasks.config import ImageSpec
from buildtasks.errors import BuildtasksError, ConfigError

ROOT = Path("/repo")
IMAGE = ImageSpec(
    key="backend", repository="monorepo", dockerfile="apps/backend/Dockerfile", target="runtime"
)
BASE = (
    "docker",
    "buildx",
    "build",
    "--file",
    "/repo/apps/backend/Dockerfile",
    "--target",
    "runtime",
)


def request(**kw):
    defaults = {
        "tags": ("127.0.0.1:5000/monorepo:dev",),
        "platforms": ("linux/amd64",),
        "metadata_file": "/repo/.buildtasks/backend/metadata.json",
    }
    return buildx.BuildRequest(**{**defaults, **kw})


def argv(**kw):
    return buildx.buildx_build(IMAGE, request(**kw), root=ROOT).argv


def test_default_build_loads_one_platform_with_auto_progress():
    assert argv() == (
        *BASE,
        "--platform",
        "linux/amd64",
        "--progress",
        "auto",
        "--metadata-file",
        "/repo/.buildtasks/backend/metadata.json",
        "--tag",
        "127.0.0.1:5000/monorepo:dev",
        "--load",
        "/repo",
    )


def option_values(result, name: str) -> list[str]:
    return [result[i + 1] for i, word in enumerate(result[:-1]) if word == name]


@pytest.mark.parametrize(
    ("kw", "present", "absent"),
    [
        pytest.param(
            {"progress": "plain"}, ("--progress", "plain"), (), id="verbose-plain-progress"
        ),
        pytest.param(
            {"push_by_digest": ("reg/a", "reg/b"), "load": False},
            (
                "--output",
                'type=image,"name=reg/a,reg/b",push-by-digest=true,name-canonical=true,push=true',
            ),
            ("--load", "--push"),
            id="builder-pushes-by-digest-untagged",
        ),
        pytest.param(
            {"oci_dest": "/a/oci", "rewrite_timestamp": True},
            ("--output", "type=oci,dest=/a/oci,tar=false,rewrite-timestamp=true"),
            ("--load",),
            id="containerd-store-exports-an-oci-layout-with-clamped-times",
        ),
        pytest.param(
            {"rewrite_timestamp": True},
            ("--output", "type=docker,rewrite-timestamp=true"),
            ("--load",),
            id="load-with-clamped-times",
        ),
        pytest.param(
            {"platforms": ("linux/amd64", "linux/arm64")},
            ("--platform", "linux/amd64,linux/arm64"),
            (),
            id="multi-platform",
        ),
        pytest.param(
            {"no_cache": True}, ("--no-cache", "--pull"), ("--cache-from",), id="no-cache-pulls"
        ),
        pytest.param({"build_args": {"A": "1"}}, ("--build-arg", "A=1"), (), id="build-arg"),
        pytest.param(
            {"labels": {"org.opencontainers.image.title": "x"}},
            ("--label", "org.opencontainers.image.title=x"),
            (),
            id="label",
        ),
        pytest.param(
            {"annotations": ("index:a=b",)}, ("--annotation", "index:a=b"), (), id="annotation"
        ),
        pytest.param(
            {"secrets": ("id=ca,src=/ca.crt",)},
            ("--secret", "id=ca,src=/ca.crt"),
            (),
            id="ca-secret",
        ),
        pytest.param({"provenance": "mode=max"}, ("--provenance=mode=max",), (), id="provenance"),
        pytest.param(
            {
                "build_contexts": {
                    "ghcr.io/astral-sh/uv:0.13.9": "docker-image://127.0.0.1:5000/ghcr.io/astral-sh/uv:0.13.9"
                }
            },
            (
                "--build-context",
                "ghcr.io/astral-sh/uv:0.13.9=docker-image://127.0.0.1:5000/ghcr.io/astral-sh/uv:0.13.9",
            ),
            (),
            id="lab-build-context",
        ),
    ],
)
def test_options_map_to_flags(kw, present, absent):
    result = argv(**kw)
    joined = " ".join(result)
    assert " ".join(present) in joined
    for flag in absent:
        assert flag not in result


def _choose(kind: str, **kw):
    args = {
        "driver": "docker",
        "capable": True,
        "env": {},
        "local_dir": "/c/backend",
        "local_present": True,
        "repository": "reg/app",
        "slug": "linux-amd64",
    }
    return caches.choose(kind, **{**args, **kw})


def test_a_local_cache_is_imported_and_exported_in_place():
    spec, note = _choose("local")
    result = argv(cache=spec)
    assert option_values(result, "--cache-from") == ["type=local,src=/c/backend"]
    assert option_values(result, "--cache-to") == ["type=local,dest=/c/backend,mode=max"]
    assert note == ""


def test_a_local_cache_that_does_not_exist_yet_is_only_exported():
    spec, _ = _choose("local", local_present=False)
    result = argv(cache=spec)
    assert "--cache-from" not in result
    assert option_values(result, "--cache-to") == ["type=local,dest=/c/backend,mode=max"]


def test_no_cache_never_imports_but_still_refreshes_the_cache():
    spec, _ = _choose("local")
    result = argv(no_cache=True, cache=spec)
    assert "--cache-from" not in result
    assert option_values(result, "--cache-to") == ["type=local,dest=/c/backend,mode=max"]


def test_a_registry_cache_is_one_ref_per_platform_set_with_oci_media_types():
    spec, _ = _choose("registry", slug="linux-arm64")
    result = argv(cache=spec)
    assert option_values(result, "--cache-from") == [
        "type=registry,ref=reg/app:buildcache-linux-arm64"
    ]
    assert option_values(result, "--cache-to") == [
        "type=registry,ref=reg/app:buildcache-linux-arm64,mode=max,image-manifest=true,"
        "oci-mediatypes=true"
    ]


def test_a_builder_that_cannot_export_still_reads_a_registry_cache_and_says_so():
    spec, note = _choose("registry", capable=False)
    assert spec is not None and spec.sources and spec.dest == ""
    assert "cannot export a registry cache" in note and "reading it still" in note
    local, note = _choose("local", capable=False)
    assert local is None and "cannot export a local cache" in note


GHA_ENV = {"GITHUB_ACTIONS": "true", "ACTIONS_RESULTS_URL": "https://results"}


@pytest.mark.parametrize(
    ("driver", "env", "kind"),
    [
        pytest.param("docker", {}, "local", id="laptop-docker-driver"),
        pytest.param("docker-container", {}, "local", id="laptop-container-builder"),
        pytest.param("docker-container", GHA_ENV, "gha", id="actions-container-builder"),
        pytest.param("docker", GHA_ENV, "local", id="actions-docker-driver"),
    ],
)
def test_auto_picks_gha_in_actions_with_a_builder_that_exports_it_else_local(driver, env, kind):
    spec, _ = _choose("auto", driver=driver, env=env)
    assert spec is not None and spec.kind == kind


def test_gha_outside_actions_is_refused_naming_the_alternatives():
    with pytest.raises(ConfigError, match="inside GitHub Actions only"):
        _choose("gha")


def test_none_means_no_cache_at_all():
    assert _choose("none") == (None, "")


def test_a_hostile_tag_stays_one_argument():
    tag = "127.0.0.1:5000/monorepo:feat-$(id)"
    result = argv(tags=(tag,))
    assert result[result.index("--tag") + 1] == tag


def test_metadata_digest_is_read(tmp_path):
    path = tmp_path / "m.json"
    path.write_text(
        json.dumps({"containerimage.digest": "sha256:" + "a" * 64, "image.name": "r/x:1,r/x:2"})
    )
    result = record.read_metadata(path)
    assert result.digest == "sha256:" + "a" * 64
    assert result.image_names == ("r/x:1", "r/x:2")


def test_missing_metadata_says_to_build_first(tmp_path):
    with pytest.raises(BuildtasksError, match=r"invoke docker\.build"):
        record.read_metadata(tmp_path / "absent.json")


def test_metadata_without_digest_is_an_error():
    with pytest.raises(BuildtasksError, match=r"containerimage\.digest"):
        record.parse_metadata({"buildx.build.ref": "x"})


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("127.0.0.1:5000/monorepo:dev", "127.0.0.1:5000/monorepo@sha256:1"),
        ("127.0.0.1:5000/monorepo", "127.0.0.1:5000/monorepo@sha256:1"),
        ("ghcr.io/a/b:v1@sha256:9", "ghcr.io/a/b@sha256:1"),
    ],
)
def test_by_digest(name, expected):
    assert refs.by_digest(name, "sha256:1") == expected


@pytest.mark.parametrize(
    ("inspect", "info", "capable", "store", "pushes_itself"),
    [
        pytest.param(
            "Driver:        docker\n",
            '[["driver-type","io.containerd.snapshotter.v1"]]',
            True,
            "containerd",
            False,
            id="docker-containerd-store",
        ),
        pytest.param(
            "Driver:        docker\n",
            '[["Backing Filesystem","extfs"]]',
            False,
            "classic",
            False,
            id="docker-classic-store",
        ),
        pytest.param(
            "Driver:        docker-container\n", "", True, "", True, id="docker-container"
        ),
    ],
)
def test_what_the_builder_can_do_follows_its_driver_and_image_store(
    inspect, info, capable, store, pushes_itself
):
    builder = buildx.parse_builder(inspect, info)
    assert (builder.capable, builder.store, builder.pushes_itself) == (
        capable,
        store,
        pushes_itself,
    )


INSPECT = """Name:          default
Driver:        docker

Nodes:
Name:             default
Endpoint:         default
Status:           running
Platforms:        linux/amd64, linux/amd64/v2, linux/386, linux/arm64*
"""


def test_the_builder_lists_the_platforms_it_can_build():
    builder = buildx.parse_builder(INSPECT, "")
    assert builder.driver == "docker"
    assert builder.platforms == ("linux/amd64", "linux/amd64/v2", "linux/386", "linux/arm64")
    assert builder.lacks(("linux/amd64", "linux/arm64")) == ()
    assert builder.lacks(("linux/amd64", "linux/riscv64")) == ("linux/riscv64",)


def test_a_builder_that_lists_no_platforms_is_not_second_guessed():
    assert buildx.parse_builder("Driver: remote\n", "").lacks(("linux/s390x",)) == ()


@pytest.mark.parametrize(
    ("requested", "supported", "value", "noted"),
    [
        pytest.param(None, True, None, False, id="default-left-to-buildx"),
        pytest.param("mode=max", True, "mode=max", False, id="max-where-supported"),
        pytest.param("mode=max", False, "false", True, id="unsupported-is-said-and-dropped"),
        pytest.param("false", False, "false", False, id="off-needs-no-note"),
    ],
)
def test_provenance_follows_the_builder(requested, supported, value, noted):
    result, note = buildx.provenance_for(requested, supported)
    assert result == value
    assert bool(note) is noted
