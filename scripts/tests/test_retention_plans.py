"""The retention plan (pure): what is kept, what goes, why, in which order, and the bytes."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from buildtasks import config as config_mod
from buildtasks.errors import ConfigError
from buildtasks.retention.model import Inventory, parse_manifest, referrer_subject
from buildtasks.retention.oci import storage_root
from buildtasks.retention.plan import plan_cleanup, render
from buildtasks.retention.policy import Policy

NOW = datetime(2026, 12, 1, tzinfo=UTC)
INDEX = "application/vnd.oci.image.index.v1+json"
IMAGE = "application/vnd.oci.image.manifest.v1+json"


def d(name: str) -> str:
    return "sha256:" + name.encode().hex().ljust(64, "0")[:64]


def image(name: str, *layers: tuple[str, int], subject: str = "") -> bytes:
    data = {
        "schemaVersion": 2,
        "mediaType": IMAGE,
        "config": {
            "mediaType": "application/vnd.oci.image.config.v1+json",
            "digest": d(f"cfg-{name}"),
            "size": 100,
        },
        "layers": [
            {
                "mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                "digest": d(layer),
                "size": size,
            }
            for layer, size in layers
        ],
    }
    if subject:
        data["subject"] = {"mediaType": INDEX, "digest": subject, "size": 1}
    return json.dumps(data).encode()


def index(*children: str) -> bytes:
    return json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": INDEX,
            "manifests": [
                {
                    "mediaType": IMAGE,
                    "digest": c,
                    "size": 1,
                    "platform": {"os": "linux", "architecture": f"arch{i}"},
                }
                for i, c in enumerate(children)
            ],
        }
    ).encode()


class History:
    """A repository built by hand: tags, manifests, ages in days."""

    def __init__(self, *, lists_untagged: bool = True) -> None:
        self.inv = Inventory("registry.example/acme/app", lists_untagged=lists_untagged)

    def add(self, name: str, body: bytes, *, days: float = 0, tags: tuple[str, ...] = ()):
        manifest = parse_manifest(body, d(name))
        self.inv.manifests[manifest.digest] = manifest
        self.inv.times[manifest.digest] = NOW - timedelta(days=days)
        for tag in tags:
            self.inv.tags[tag] = manifest.digest
        return manifest.digest

    def sign(self, subject: str, name: str, *, days: float = 0) -> str:
        """A cosign signature and its `sha256-<hex>` referrers list, as cosign 3 pushes them."""
        signature = self.add(
            name, image(name, (f"bundle-{name}", 5000), subject=subject), days=days
        )
        return self.add(
            f"list-{name}", index(signature), days=days, tags=(subject.replace(":", "-"),)
        )


def standard() -> tuple[History, dict[str, str]]:
    """latest → I2 (amd64 A, arm64 B); pr-1 (20 days) → I1 (A shared, C); both signed."""
    h = History()
    n = {}
    n["A"] = h.add("A", image("A", ("base", 50_000_000), ("app", 1_000)), days=20)
    n["B"] = h.add("B", image("B", ("base-arm", 50_000_000), ("app-arm", 1_000)))
    n["C"] = h.add("C", image("C", ("base-arm", 50_000_000), ("old-app", 7_000_000)), days=20)
    n["I1"] = h.add("I1", index(n["A"], n["C"]), days=20, tags=("pr-1",))
    n["I2"] = h.add("I2", index(n["A"], n["B"]), tags=("latest", "main"))
    n["R1"] = h.sign(n["I1"], "sig1", days=20)
    n["R2"] = h.sign(n["I2"], "sig2")
    return h, n


def test_kept_tags_keep_their_children_and_signatures_and_expired_ones_go_with_theirs():
    h, n = standard()
    plan = plan_cleanup(h.inv, Policy(), NOW)
    assert set(plan.deleted) == {n["I1"], n["C"], n["R1"], d("sig1")}
    assert {n["I2"], n["A"], n["B"], n["R2"], d("sig2")} <= set(plan.kept)
    actions = {t.tag: t.action for t in plan.tags}
    assert actions == {
        "latest": "keep",
        "main": "keep",
        "pr-1": "delete",
        n["I1"].replace(":", "-"): "delete",
        n["I2"].replace(":", "-"): "keep",
    }
    # The shared platform manifest A (and its 50 MB base) stays: only C's app layer, C's and
    # the index's configs and manifests, and the signature go.
    assert 7_000_000 < plan.freed < 7_100_000


def test_children_and_referrers_are_deleted_before_what_points_at_them():
    h, n = standard()
    order = list(plan_cleanup(h.inv, Policy(), NOW).deleted)
    assert order.index(n["C"]) < order.index(n["I1"])
    assert order.index(d("sig1")) < order.index(n["R1"]) < order.index(n["I1"])


def test_an_expired_tag_on_a_kept_digest_loses_only_the_tag():
    h, n = standard()
    h.inv.tags["pr-2"] = n["I2"]
    h.inv.tag_times["pr-2"] = NOW - timedelta(days=30)
    plan = plan_cleanup(h.inv, Policy(), NOW)
    untag = [t for t in plan.tags if t.action == "untag"]
    assert [t.tag for t in untag] == ["pr-2"]
    assert "its manifest stays (tag latest)" in untag[0].reason
    assert n["I2"] not in plan.deleted


def test_young_expire_tags_stay_and_unmatched_tags_are_kept():
    h, n = standard()
    h.inv.tags["feature-x"] = n["I1"]
    plan = plan_cleanup(h.inv, Policy(expire_tags={"pr-*": 30}), NOW)
    assert not plan.deleted
    reasons = {t.tag: t.reason for t in plan.tags}
    assert reasons["pr-1"] == 'matches "pr-*", 20.0 days old (expires after 30)'
    assert reasons["feature-x"] == "tagged; no expire pattern matches"


@pytest.mark.parametrize(
    ("keep_untagged", "days", "deleted"),
    [(0, 7, {"old"}), (1, 0, {"old"}), (0, 0, {"old", "young"}), (2, 0, set())],
    ids=["older-than-days", "newest-n-kept", "zero-days-deletes-all", "newest-n-wins"],
)
def test_untagged_manifests_by_count_and_age(keep_untagged, days, deleted):
    h, _ = standard()
    h.add("old", image("old", ("gate-old", 10)), days=10)
    h.add("young", image("young", ("gate-young", 10)), days=1)
    policy = Policy(keep_untagged=keep_untagged, untagged_days=days)
    plan = plan_cleanup(h.inv, policy, NOW)
    gone = {name for name in ("old", "young") if d(name) in plan.deleted}
    assert gone == deleted
    assert plan.loose == 2


def test_a_superseded_referrers_list_goes_whatever_the_untagged_policy():
    h, _n = standard()
    stale = h.add("stale", index(d("sig2")), days=0)
    plan = plan_cleanup(h.inv, Policy(keep_untagged=5, untagged_days=30), NOW)
    assert plan.deleted[stale] == "an old referrers list (its sha256- tag has moved on)"
    assert d("sig2") in plan.kept and plan.loose == 0


def test_a_referrer_tag_whose_subject_is_gone_is_deleted():
    h, _n = standard()
    ghost = d("ghost")
    h.sign(ghost, "sig-ghost")
    plan = plan_cleanup(h.inv, Policy(), NOW)
    decision = next(t for t in plan.tags if referrer_subject(t.tag) == ghost)
    assert decision.action == "delete" and "which is gone" in decision.reason
    assert d("sig-ghost") in plan.deleted


@pytest.mark.parametrize("keep", [True, False], ids=["kept", "dropped"])
def test_build_cache_refs_follow_keep_build_cache(keep):
    h, _ = standard()
    cache = h.add("cache", index(), days=100, tags=("buildcache-linux-amd64",))
    plan = plan_cleanup(h.inv, Policy(keep_build_cache=keep), NOW)
    assert (cache in plan.kept) is keep


def test_blobs_other_repositories_use_are_not_counted_as_freed():
    h, _ = standard()
    h.inv.shared_blobs = frozenset({d("old-app")})
    assert plan_cleanup(h.inv, Policy(), NOW).freed < 100_000


def test_the_printed_plan_names_each_decision_and_its_reason():
    h, n = standard()
    lines = render(plan_cleanup(h.inv, Policy(), NOW), h.inv)
    text = "\n".join(lines)
    assert lines[0].startswith("registry.example/acme/app: 5 tags, 9 manifests")
    assert "delete pr-1" in text and "expires after 14" in text
    assert f"delete {n['C']}  linux/arch1 of " in text
    assert "keep   1 referrer tags of kept manifests" in text


def test_without_an_untagged_listing_the_plan_says_what_it_cannot_see():
    h, _ = standard()
    h.inv.lists_untagged = False
    assert "cannot list untagged manifests" in plan_cleanup(h.inv, Policy(), NOW).notes[0]


# ---------------------------------------------------------------------- config


def load(tmp_path, text: str) -> config_mod.Config:
    (tmp_path / "pyproject.toml").write_text(
        '[tool.buildtasks.images.app]\nrepository = "app"\ndockerfile = "Dockerfile"\n' + text
    )
    return config_mod.load(tmp_path, env={})


def test_an_image_table_replaces_the_shared_policy_key_by_key(tmp_path):
    config = load(
        tmp_path,
        "[tool.buildtasks.images.app.retention]\nkeep-untagged = 9\n"
        '[tool.buildtasks.retention]\nexpire-tags = { "pr-*" = 3, "*" = 90 }\n',
    )
    policy = config.retention_for(config.image("app"))
    assert policy.keep_untagged == 9
    assert policy.expire_tags == {"pr-*": 3.0, "*": 90.0}
    assert config.retention.keep_untagged == Policy().keep_untagged


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[tool.buildtasks.retention]\nkeep-tag = []\n", "did you mean 'keep-tags'"),
        (
            "[tool.buildtasks.images.app.retention]\nuntaged-days = 1\n",
            "did you mean 'untagged-days'",
        ),
        ('[tool.buildtasks.retention]\nexpire-tags = ["pr-*"]\n', 'e.g. { "pr-*" = 14 }'),
        ('[tool.buildtasks.retention]\nexpire-tags = { "pr-*" = -1 }\n', "0 or more"),
        ("[tool.buildtasks.retention]\nkeep-untagged = 1.5\n", "whole number"),
        ('[tool.buildtasks.retention]\nkeep-build-cache = "yes"\n', "true or false"),
    ],
    ids=["typo", "image-typo", "expire-not-table", "negative-days", "fraction", "not-bool"],
)
def test_bad_policy_is_a_config_error_naming_the_key(tmp_path, text, message):
    with pytest.raises(ConfigError, match=re.escape(message)):
        load(tmp_path, text)


@pytest.mark.parametrize(
    "text",
    [
        '{"storage": {"filesystem": {"rootdirectory": "/srv/registry"}}}',
        "version: 0.1\nstorage:\n  filesystem:\n    rootdirectory: /srv/registry  # data\n",
        "storage:\n  filesystem:\n    rootdirectory: '/srv/registry'\n",
    ],
    ids=["json", "yaml", "yaml-quoted"],
)
def test_the_storage_root_of_a_registry_config(text):
    assert storage_root(text, "config.yml") == Path("/srv/registry")


def test_a_registry_config_without_filesystem_storage_is_a_config_error():
    with pytest.raises(ConfigError, match=r"no storage\.filesystem\.rootdirectory"):
        storage_root("storage:\n  s3:\n    bucket: b\n", "config.yml")
