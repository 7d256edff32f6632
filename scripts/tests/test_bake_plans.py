"""The bake file docker.build runs for several images: each target is the build
`docker buildx build` would run for that image alone."""

from __future__ import annotations

import json
from pathlib import Path

from buildtasks import bake
from buildtasks.buildx import BuildRequest
from buildtasks.caches import CacheSpec
from buildtasks.config import ImageSpec

ROOT = Path("/repo")
BACKEND = ImageSpec("backend", "monorepo", "apps/backend/Dockerfile", target="runtime")
WEB = ImageSpec("frontend", "monorepo-web", "apps/frontend/Dockerfile")


def _request(**kw) -> BuildRequest:
    base = {
        "tags": ("r/monorepo:1",),
        "platforms": ("linux/amd64",),
        "metadata_file": "/repo/.buildtasks/backend/metadata.json",
        "oci_dest": "/repo/.buildtasks/backend/oci",
        "rewrite_timestamp": True,
        "build_args": {"APP_VERSION": "1"},
        "labels": {"org.opencontainers.image.version": "1"},
        "annotations": ("manifest:org.opencontainers.image.version=1",),
        "build_contexts": {"python:3.11-slim": "docker-image://127.0.0.1:5000/python:3.11-slim"},
        "secrets": ("id=ca,src=/etc/ssl/certs/ca.crt",),
        "cache": CacheSpec(
            "local",
            ("type=local,src=/home/u/.cache/buildx/backend",),
            "type=local,dest=/home/u/.cache/buildx/backend,mode=max",
            "/home/u/.cache/buildx/backend",
        ),
    }
    return BuildRequest(**{**base, **kw})


def test_a_target_is_the_single_build_of_that_image():
    target = bake.target(BACKEND, _request(ssh=("default",), provenance="mode=max"), root=ROOT)
    assert target == {
        "context": ".",
        "dockerfile": "apps/backend/Dockerfile",
        "target": "runtime",
        "platforms": ["linux/amd64"],
        "tags": ["r/monorepo:1"],
        "args": {"APP_VERSION": "1"},
        "labels": {"org.opencontainers.image.version": "1"},
        "annotations": ["manifest:org.opencontainers.image.version=1"],
        "output": ["type=oci,dest=.buildtasks/backend/oci,tar=false,rewrite-timestamp=true"],
        "contexts": {"python:3.11-slim": "docker-image://127.0.0.1:5000/python:3.11-slim"},
        "secret": ["id=ca,src=/etc/ssl/certs/ca.crt"],
        "ssh": ["default"],
        "cache-from": ["type=local,src=/home/u/.cache/buildx/backend"],
        "cache-to": ["type=local,dest=/home/u/.cache/buildx/backend,mode=max"],
        "attest": ["type=provenance,mode=max"],
    }


def test_every_cache_off_is_no_cache_and_pull():
    target = bake.target(WEB, _request(no_cache=True, oci_dest="", load=True), root=ROOT)
    assert target["no-cache"] is True and target["pull"] is True
    assert "cache-from" not in target
    assert target["output"] == ["type=docker,rewrite-timestamp=true"]


def test_the_definition_groups_every_image_and_asks_only_the_entitlements_it_needs():
    builds = [(BACKEND, _request()), (WEB, _request(secrets=(), cache=None))]
    definition = bake.definition(builds, root=ROOT)
    assert definition["group"] == {"default": {"targets": ["backend", "frontend"]}}
    assert set(definition["target"]) == {"backend", "frontend"}
    assert json.loads(json.dumps(definition)) == definition
    # The layout under the repository needs nothing; files outside it do, and a directory
    # bake makes is allowed where it is made (its parent, or the nearest that exists).
    existing = {"/home/u/.cache/buildx", "/tmp/art/backend"}
    assert bake.entitlements(builds, root=ROOT, is_dir=existing.__contains__) == [
        "fs.read=/etc/ssl/certs/ca.crt",
        "fs.read=/home/u/.cache/buildx/backend",
        "fs.write=/home/u/.cache/buildx",
    ]
    elsewhere = [(BACKEND, _request(oci_dest="/tmp/art/backend/oci", cache=None, secrets=()))]
    assert bake.entitlements(elsewhere, root=ROOT, is_dir=existing.__contains__) == [
        "fs.write=/tmp/art/backend"
    ]
    fresh = [(BACKEND, _request(oci_dest="", cache=_request().cache, secrets=()))]
    assert bake.entitlements(fresh, root=ROOT, is_dir=lambda p: p == "/home") == [
        "fs.read=/home/u/.cache/buildx/backend",
        "fs.write=/home",
    ]


def test_bakes_metadata_becomes_each_images_record(tmp_path):
    records = {"backend": tmp_path / "b/metadata.json", "frontend": tmp_path / "f/metadata.json"}
    digest = "sha256:" + "a" * 64
    bake.split_metadata({"backend": {"containerimage.digest": digest}}, records)
    assert json.loads(records["backend"].read_text()) == {"containerimage.digest": digest}
    assert not records["frontend"].exists()  # bake reported nothing for it: no record


def test_target_names_are_what_bake_accepts():
    assert bake.target_name("backend") == "backend"
    assert bake.target_name("api.v2") == "api-v2"
