"""Tests for the metadata-action reimplementation.

Cases whose id starts with `readme-` are docker/metadata-action's own documented examples
(the event/ref -> tags tables and pattern tables of its README); the others pin one rule
of its source each. Times, shas and repository facts mirror metadata-action's fixtures.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import pytest

from buildtasks.errors import ConfigError
from buildtasks.metadata import (
    METADATA_ACTION_DEFAULT_TAGS,
    Context,
    compute,
    format_moment,
    options_from_env,
    parse_flavor,
    parse_images,
    parse_pep440,
    parse_semver,
    parse_tag_rules,
    render,
    sanitize_tag,
)
from buildtasks.tagging import DEFAULT_FLAVOR, DEFAULT_TAG_RULES

NOW = datetime(2020, 1, 10, 0, 30, tzinfo=UTC)
SHA = "860c1904a1ce19322e91ac35af1ab07466440c37"
PR_HEAD_SHA = "3370e228f2209994d57af4427fe64e71bb79ac96"
SEMVER_EXAMPLE = (
    "type=ref,event=branch",
    "type=ref,event=pr",
    "type=semver,pattern={{version}}",
    "type=semver,pattern={{major}}.{{minor}}",
)


def context(ref: str, event: str = "push", **fields: Any) -> Context:
    """A context shaped like metadata-action's test fixtures (octocat/Hello-World)."""
    values: dict[str, Any] = {
        "sha": SHA,
        "default_branch": "master",
        "repository": "octocat/Hello-World",
        "description": "This your first repo!",
        "license": "MIT",
        "run_number": "42",
    }
    values.update(fields)
    return Context(event_name=event, ref=ref, **values)


def case(
    case_id: str,
    ref: str,
    rules: Sequence[str],
    tags: Sequence[str],
    *,
    event: str = "push",
    flavor: Sequence[str] = (),
    images: Sequence[str] = ("name/app",),
    version: str | None = None,
    options: dict[str, Any] | None = None,
    **fields: Any,
) -> Any:
    """One row of the table: inputs, then the exact tags (and version when given)."""
    return pytest.param(
        context(ref, event, **fields),
        tuple(rules),
        tuple(flavor),
        tuple(images),
        dict(options or {}),
        tuple(tags),
        version,
        id=case_id,
    )


def app(*names: str) -> list[str]:
    return [f"name/app:{name}" for name in names]


def default_scheme(case_id: str, ref: str, tags: Sequence[str], **kwargs: Any) -> Any:
    images = ("ghcr.io/acme/api",)
    full = [f"ghcr.io/acme/api:{tag}" for tag in tags]
    kw = {"images": images, "flavor": DEFAULT_FLAVOR, **kwargs}
    return case(case_id, ref, DEFAULT_TAG_RULES, full, default_branch="main", **kw)


CASES = [
    # ── README "Basic" table: default tags input ───────────────────────────
    case("readme-basic-pull-request", "refs/pull/2/merge", (), app("pr-2"), event="pull_request"),
    case("readme-basic-push-master", "refs/heads/master", (), app("master")),
    case("readme-basic-push-branch-with-slash", "refs/heads/releases/v1", (), app("releases-v1")),
    case("readme-basic-tag", "refs/tags/v1.2.3", (), app("v1.2.3", "latest")),
    case(
        "readme-basic-tag-prerelease",
        "refs/tags/v2.0.8-beta.67",
        (),
        app("v2.0.8-beta.67", "latest"),
    ),
    case(
        "readme-basic-workflow-dispatch",
        "refs/heads/master",
        (),
        app("master"),
        event="workflow_dispatch",
    ),
    # ── README "Semver" table ──────────────────────────────────────────────
    case(
        "readme-semver-pull-request",
        "refs/pull/2/merge",
        SEMVER_EXAMPLE,
        app("pr-2"),
        event="pull_request",
    ),
    case("readme-semver-push-master", "refs/heads/master", SEMVER_EXAMPLE, app("master")),
    case(
        "readme-semver-push-releases", "refs/heads/releases/v1", SEMVER_EXAMPLE, app("releases-v1")
    ),
    case(
        "readme-semver-tag",
        "refs/tags/v1.2.3",
        SEMVER_EXAMPLE,
        app("1.2.3", "1.2", "latest"),
        version="1.2.3",
    ),
    case(
        "readme-semver-tag-prerelease-no-latest",
        "refs/tags/v2.0.8-beta.67",
        SEMVER_EXAMPLE,
        app("2.0.8-beta.67"),
    ),
    # ── README "Bake definition" example (tags part); the README's `sha-90dd603` tag and
    # its revision label `860c1904...` disagree, so both use the revision's sha here ──
    case(
        "readme-bake-definition-tags",
        "refs/tags/v1.2.3",
        (*SEMVER_EXAMPLE, "type=sha"),
        app("1.2.3", "1.2", "sha-860c190", "latest"),
    ),
    # ── README type=schedule table ─────────────────────────────────────────
    case(
        "readme-schedule-nightly",
        "refs/heads/master",
        ["type=schedule"],
        app("nightly"),
        event="schedule",
    ),
    case(
        "readme-schedule-date",
        "refs/heads/master",
        ["type=schedule,pattern={{date 'YYYYMMDD'}}"],
        app("20200110"),
        event="schedule",
    ),
    case(
        "readme-schedule-date-timezone",
        "refs/heads/master",
        ["type=schedule,pattern={{date 'YYYYMMDD-HHmmss' tz='Asia/Tokyo'}}"],
        app("20200110-093000"),
        event="schedule",
    ),
    # ── README type=semver pattern table ──────────────────────────────────
    case(
        "readme-semver-raw",
        "refs/tags/v1.2.3",
        ["type=semver,pattern={{raw}}"],
        app("v1.2.3", "latest"),
    ),
    case(
        "readme-semver-version",
        "refs/tags/v1.2.3",
        ["type=semver,pattern={{version}}"],
        app("1.2.3", "latest"),
    ),
    case(
        "readme-semver-major-minor",
        "refs/tags/v1.2.3",
        ["type=semver,pattern={{major}}.{{minor}}"],
        app("1.2", "latest"),
    ),
    case(
        "readme-semver-v-major",
        "refs/tags/v1.2.3",
        ["type=semver,pattern=v{{major}}"],
        app("v1", "latest"),
    ),
    case(
        "readme-semver-minor",
        "refs/tags/v1.2.3",
        ["type=semver,pattern={{minor}}"],
        app("2", "latest"),
    ),
    case(
        "readme-semver-patch",
        "refs/tags/v1.2.3",
        ["type=semver,pattern={{patch}}"],
        app("3", "latest"),
    ),
    case(
        "readme-semver-prerelease-raw",
        "refs/tags/v2.0.8-beta.67",
        ["type=semver,pattern={{raw}}"],
        app("v2.0.8-beta.67"),
    ),
    case(
        "readme-semver-prerelease-version",
        "refs/tags/v2.0.8-beta.67",
        ["type=semver,pattern={{version}}"],
        app("2.0.8-beta.67"),
    ),
    case(
        "readme-semver-prerelease-major-minor-gives-version",
        "refs/tags/v2.0.8-beta.67",
        ["type=semver,pattern={{major}}.{{minor}}"],
        app("2.0.8-beta.67"),
    ),
    # ── README type=pep440 pattern table ──────────────────────────────────
    case(
        "readme-pep440-raw",
        "refs/tags/1.2.3",
        ["type=pep440,pattern={{raw}}"],
        app("1.2.3", "latest"),
    ),
    case(
        "readme-pep440-version",
        "refs/tags/1.2.3",
        ["type=pep440,pattern={{version}}"],
        app("1.2.3", "latest"),
    ),
    case(
        "readme-pep440-version-v-prefix",
        "refs/tags/v1.2.3",
        ["type=pep440,pattern={{version}}"],
        app("1.2.3", "latest"),
    ),
    case(
        "readme-pep440-major-minor",
        "refs/tags/1.2.3",
        ["type=pep440,pattern={{major}}.{{minor}}"],
        app("1.2", "latest"),
    ),
    case(
        "readme-pep440-v-major",
        "refs/tags/1.2.3",
        ["type=pep440,pattern=v{{major}}"],
        app("v1", "latest"),
    ),
    case(
        "readme-pep440-rc-raw",
        "refs/tags/v1.2.3rc2",
        ["type=pep440,pattern={{raw}}"],
        app("v1.2.3rc2"),
    ),
    case(
        "readme-pep440-rc-version",
        "refs/tags/1.2.3rc2",
        ["type=pep440,pattern={{version}}"],
        app("1.2.3rc2"),
    ),
    case(
        "readme-pep440-rc-major-minor-gives-version",
        "refs/tags/1.2.3rc2",
        ["type=pep440,pattern={{major}}.{{minor}}"],
        app("1.2.3rc2"),
    ),
    case(
        "readme-pep440-post-release",
        "refs/tags/1.2.3post1",
        ["type=pep440,pattern={{major}}.{{minor}}"],
        app("1.2.3.post1"),
    ),
    case(
        "readme-pep440-beta-normalised",
        "refs/tags/1.2.3beta2",
        ["type=pep440,pattern={{major}}.{{minor}}"],
        app("1.2.3b2"),
    ),
    case(
        "readme-pep440-dev-release",
        "refs/tags/1.0dev4",
        ["type=pep440,pattern={{major}}.{{minor}}"],
        app("1.0.dev4"),
    ),
    # ── README type=match table ────────────────────────────────────────────
    case(
        "readme-match-digits",
        "refs/tags/v1.2.3",
        [r"type=match,pattern=\d.\d.\d"],
        app("1.2.3", "latest"),
    ),
    case(
        "readme-match-group",
        "refs/tags/v2.0.8-beta.67",
        ["type=match,pattern=v(.*),group=1"],
        app("2.0.8-beta.67", "latest"),
    ),
    case(
        "readme-match-major-minor-group",
        "refs/tags/v2.0.8-beta.67",
        [r"type=match,pattern=v(\d.\d),group=1"],
        app("2.0", "latest"),
    ),
    case(
        "readme-match-date",
        "refs/tags/20200110-RC2",
        [r"type=match,pattern=\d+"],
        app("20200110", "latest"),
    ),
    case(
        "readme-match-slash-tag",
        "refs/tags/p1/v1.2.3",
        [r"type=match,pattern=p1/v(\d.\d.\d),group=1"],
        app("1.2.3", "latest"),
    ),
    # ── README type=ref table ──────────────────────────────────────────────
    case(
        "readme-ref-pull-request",
        "refs/pull/2/merge",
        ["type=ref,event=pr"],
        app("pr-2"),
        event="pull_request",
    ),
    case("readme-ref-push-master", "refs/heads/master", ["type=ref,event=branch"], app("master")),
    case(
        "readme-ref-push-my-branch",
        "refs/heads/my/branch",
        ["type=ref,event=branch"],
        app("my-branch"),
    ),
    case("readme-ref-tag", "refs/tags/v1.2.3", ["type=ref,event=tag"], app("v1.2.3", "latest")),
    case(
        "readme-ref-tag-prerelease",
        "refs/tags/v2.0.8-beta.67",
        ["type=ref,event=tag"],
        app("v2.0.8-beta.67", "latest"),
    ),
    case(
        "readme-ref-workflow-dispatch",
        "refs/heads/master",
        ["type=ref,event=branch"],
        app("master"),
        event="workflow_dispatch",
    ),
    # ── README type=raw / type=sha / latest / global expressions ──────────
    case(
        "readme-raw-three-spellings",
        "refs/heads/master",
        ["type=raw,value=foo", "type=raw,bar", "baz"],
        app("foo", "bar", "baz"),
    ),
    case("readme-sha-short", "refs/heads/master", ["type=sha"], app("sha-860c190")),
    case("readme-sha-long", "refs/heads/master", ["type=sha,format=long"], app(f"sha-{SHA}")),
    case(
        "readme-sha-short-length-12",
        "refs/heads/master",
        ["type=sha"],
        app("sha-860c1904a1ce"),
        options={"short_sha_length": 12},
    ),
    case(
        "readme-latest-raw-with-expression-on-master",
        "refs/heads/master",
        ["type=raw,value=latest,enable=${{ github.ref == format('refs/heads/{0}', 'master') }}"],
        app("latest"),
    ),
    case(
        "readme-latest-raw-with-expression-elsewhere",
        "refs/heads/dev",
        ["type=raw,value=latest,enable=${{ github.ref == format('refs/heads/{0}', 'master') }}"],
        [],
    ),
    case(
        "readme-latest-is-default-branch",
        "refs/heads/master",
        ["type=raw,value=latest,enable={{is_default_branch}}"],
        app("latest"),
    ),
    case(
        "readme-global-sha-prefixed-by-branch",
        "refs/heads/master",
        ["type=sha,prefix={{branch}}-"],
        app("master-860c190"),
    ),
    case(
        "readme-global-raw-branch-and-sha",
        "refs/heads/master",
        ["type=raw,value=mytag-{{branch}}-{{sha}}"],
        app("mytag-master-860c190"),
    ),
    case(
        "readme-major-version-zero",
        "refs/tags/v0.1.2",
        [
            "type=semver,pattern={{version}}",
            "type=semver,pattern={{major}}.{{minor}}",
            "type=semver,pattern={{major}},enable=${{ !startsWith(github.ref, 'refs/tags/v0.') }}",
        ],
        app("0.1.2", "0.1", "latest"),
    ),
    # ── rules from metadata-action's source ───────────────────────────────
    case(
        "default-rules-schedule-gives-nightly-and-branch",
        "refs/heads/master",
        (),
        app("nightly", "master"),
        event="schedule",
        version="nightly",
    ),
    case("edge-on-default-branch", "refs/heads/master", ["type=edge"], app("edge")),
    case(
        "edge-custom-branch",
        "refs/heads/dev",
        ["type=edge,branch=dev", "type=sha"],
        app("edge", "sha-860c190"),
    ),
    case(
        "edge-not-matching-falls-to-next-rule",
        "refs/heads/master",
        ["type=edge,branch=dev", "type=sha"],
        app("sha-860c190"),
        version="sha-860c190",
    ),
    case(
        "priority-sorts-rules-highest-first",
        "refs/heads/master",
        ["type=edge", "type=ref,priority=2000,event=branch"],
        app("master", "edge"),
        version="master",
    ),
    case(
        "priority-first-rule-decides-latest",
        "refs/tags/v1.1.1",
        ["type=raw,priority=2000,foo", "type=ref,event=tag", "type=edge"],
        app("foo", "v1.1.1"),
    ),
    case(
        "semver-value-applies-on-branch-push",
        "refs/heads/master",
        [
            "type=semver,pattern={{version}},value=v1.2.3",
            "type=pep440,pattern={{version}},value=v1.2.3",
            "type=edge",
        ],
        app("1.2.3", "edge", "latest"),
    ),
    case(
        "semver-match-strips-tag-prefix",
        "refs/tags/api/v2.3.4",
        [
            "type=semver,pattern={{version}},match=api/v(.*)",
            "type=semver,pattern={{major}},match=api/v(.*)",
        ],
        app("2.3.4", "2", "latest"),
    ),
    case(
        "semver-invalid-tag-gives-nothing",
        "refs/tags/sometag",
        ["type=semver,pattern={{version}}", "type=pep440,pattern={{version}}"],
        [],
        version="",
    ),
    case(
        "semver-build-metadata-dropped-from-version",
        "refs/tags/v9.5.7-alpha.2+fork.3.1.8",
        ["type=semver,pattern={{version}}", "type=semver,pattern={{raw}},priority=100"],
        app("9.5.7-alpha.2", "v9.5.7-alpha.2-fork.3.1.8"),
    ),
    case(
        "semver-duplicates-collapse",
        "refs/tags/v1.1.1",
        ["type=semver,pattern={{version}}", "type=semver,pattern={{major}}.{{minor}}.{{patch}}"],
        app("1.1.1", "latest"),
    ),
    case(
        "pep440-raw-and-major-minor",
        "refs/tags/v1.1.1",
        ["type=pep440,pattern={{raw}}", "type=pep440,pattern={{major}}.{{minor}}"],
        app("v1.1.1", "1.1", "latest"),
    ),
    case(
        "match-regex-literal-with-flags",
        "refs/tags/V12",
        ["type=match,pattern=/^v(\\d+)$/i,group=1"],
        app("12", "latest"),
    ),
    case(
        "match-quoted-field-with-comma",
        "refs/tags/v1.22",
        ['type=match,"pattern=^v(\\d{1,3})\\.(\\d+)$",group=2'],
        app("22", "latest"),
    ),
    case(
        "match-missing-group-skipped",
        "refs/tags/p1/v1.0.0",
        [
            r"type=match,pattern=p1/v(\d.\d.\d),group=1",
            r"type=match,pattern=p1/v(\d.\d),group=3",
            "type=sha",
        ],
        app("1.0.0", "sha-860c190", "latest"),
    ),
    case("ref-tag-not-semver-still-latest", "refs/tags/release1", (), app("release1", "latest")),
    case(
        "pull-request-target-ref",
        "refs/pull/15/merge",
        ["type=ref,event=tag", "type=ref,event=pr", "type=ref,event=branch", "type=sha"],
        app("pr-15", "sha-860c190"),
        event="pull_request_target",
    ),
    case(
        "pr-head-sha-replaces-merge-sha",
        "refs/pull/15/merge",
        ["type=sha,priority=2000", "type=ref,event=pr"],
        app("sha-3370e22", "pr-15"),
        event="pull_request",
        pr_head_sha=PR_HEAD_SHA,
        options={"pr_head_sha": True},
    ),
    case(
        "pr-head-sha-ignored-on-push",
        "refs/heads/master",
        ["type=sha"],
        app("sha-860c190"),
        pr_head_sha=PR_HEAD_SHA,
        options={"pr_head_sha": True},
    ),
    case(
        "sha-skipped-without-commits",
        "refs/heads/master",
        ["type=sha", "type=raw,{{branch}}"],
        app("master"),
        sha="",
    ),
    case(
        "flavor-prefix-suffix-and-pr-default-prefix",
        "refs/pull/15/merge",
        ["type=ref,event=pr"],
        app("pr-15-bal"),
        event="pull_request",
        flavor=["prefix=glo-", "suffix=-bal"],
    ),
    case(
        "flavor-prefix-overridden-by-empty-rule-prefix",
        "refs/pull/15/merge",
        ["type=ref,event=pr,prefix="],
        app("15-bal"),
        event="pull_request",
        flavor=["prefix=glo-", "suffix=-bal"],
    ),
    case(
        "flavor-suffix-onlatest",
        "refs/tags/v1.1.1",
        ["type=semver,pattern={{version}}"],
        app("1.1.1-dev", "latest-dev"),
        flavor=["suffix=-dev,onlatest=true"],
    ),
    case(
        "flavor-prefix-and-suffix-onlatest",
        "refs/tags/v1.1.1",
        ["type=semver,pattern={{version}}"],
        app("foo-1.1.1-dev", "foo-latest-dev"),
        flavor=["prefix=foo-,onlatest=true", "suffix=-dev,onlatest=true"],
    ),
    case(
        "flavor-latest-true-on-branch",
        "refs/heads/dev",
        ["type=ref,priority=90,event=branch", "type=raw,my", "type=raw,custom"],
        app("my", "custom", "dev", "latest"),
        flavor=["latest=true"],
    ),
    case(
        "flavor-latest-false-on-tag",
        "refs/tags/v1.1.1",
        ["type=ref,event=tag"],
        app("v1.1.1"),
        flavor=["latest=false"],
    ),
    case(
        "flavor-latest-from-expression",
        "refs/tags/v1.1.1",
        ["type=ref,event=tag"],
        app("v1.1.1"),
        flavor=["latest=${{ github.ref_type == 'branch' }}"],
    ),
    case(
        "enable-false-skips-rule",
        "refs/heads/dev",
        ["type=raw,foo", "type=raw,bar,enable=false", "type=raw,baz,enable=true"],
        app("foo", "baz"),
    ),
    case(
        "is-not-default-branch",
        "refs/heads/feature",
        ["type=raw,value=preview,enable={{is_not_default_branch}}"],
        app("preview"),
    ),
    case(
        "base-ref-on-pull-request",
        "refs/pull/15/merge",
        ["type=raw,value=mytag-{{base_ref}}", "type=raw,defbranch,enable={{is_default_branch}}"],
        app("mytag-master"),
        event="pull_request",
        base_ref="master",
    ),
    case(
        "tag-and-sha-templates",
        "refs/tags/v1.1.1",
        ["type=raw,{{tag}}-{{sha}}-foo", "type=raw,defbranch-foo,enable={{is_default_branch}}"],
        app("v1.1.1-860c190-foo"),
    ),
    case(
        "commit-date-template",
        "refs/heads/master",
        ["type=raw,value=src-{{commit_date 'YYYYMMDD-HHmmss'}}"],
        app("src-20191231-235959"),
        commit_date=datetime(2019, 12, 31, 23, 59, 59, tzinfo=UTC),
    ),
    case(
        "template-output-is-html-escaped",
        "refs/heads/a&b",
        ["type=ref,event=branch", "type=raw,value={{branch}}"],
        app("a-b", "a-amp-b"),
    ),
    case(
        "sanitize-invalid-characters",
        "refs/heads/feature/ABC_1#x y",
        ["type=ref,event=branch"],
        app("feature-ABC_1-x-y"),
    ),
    case(
        "sanitize-leading-dot-and-dash",
        "refs/heads/master",
        ["type=raw,value=.-foo"],
        app("foo"),
    ),
    case(
        "sanitize-max-128-characters",
        "refs/heads/" + "b" * 200,
        ["type=ref,event=branch"],
        app("b" * 128),
    ),
    case(
        "images-lowercased-images-outer",
        "refs/tags/v1.1.1",
        ["type=ref,event=tag"],
        [
            "org/app:v1.1.1",
            "org/app:latest",
            "ghcr.io/myuser/myapp:v1.1.1",
            "ghcr.io/myuser/myapp:latest",
        ],
        images=["org/app", "ghcr.io/MyUSER/MyApp"],
    ),
    case(
        "images-one-line-comma-separated",
        "refs/heads/dev",
        ["type=ref,event=branch"],
        ["org/app:dev", "ghcr.io/user/app:dev"],
        images=["org/app,ghcr.io/user/app"],
    ),
    case(
        "images-disabled-entry",
        "refs/heads/dev",
        ["type=sha,format=long"],
        [f"org/app:sha-{SHA}"],
        images=["org/app", "name=ghcr.io/user/app,enable=false"],
    ),
    case(
        "images-from-expression",
        "refs/heads/dev",
        ["type=ref,event=branch"],
        ["ghcr.io/octocat/hello-world:dev"],
        images=["ghcr.io/${{ github.repository }}"],
    ),
    case(
        "no-images-gives-bare-tags",
        "refs/tags/v1.1.1",
        ["type=ref,event=tag"],
        ["v1.1.1", "latest"],
        images=[],
    ),
    case(
        "expression-env-value",
        "refs/heads/dev",
        ["type=raw,value=${{ env.IMAGE_TAG }},enable=${{ env.IMAGE_TAG != '' }}"],
        app("from-env"),
        options={"env": {"IMAGE_TAG": "from-env"}},
    ),
    case(
        "expression-priority",
        "refs/heads/dev",
        ["type=sha", "type=raw,value=x,priority=${{ github.run_number }}"],
        app("sha-860c190", "x"),
    ),
    # ── this project's default scheme ─────────────────────────────────────
    default_scheme(
        "default-scheme-push-main",
        "refs/heads/main",
        ["main-860c190", "latest"],
        version="main-860c190",
    ),
    default_scheme(
        "default-scheme-push-develop",
        "refs/heads/develop",
        ["develop-860c190", "develop"],
        version="develop-860c190",
    ),
    default_scheme(
        "default-scheme-tag-release",
        "refs/tags/v1.0.0",
        ["1.0.0", "1.0", "1", "v1.0.0"],
        version="1.0.0",
    ),
    default_scheme("default-scheme-tag-major-zero", "refs/tags/v0.3.1", ["0.3.1", "0.3", "v0.3.1"]),
    default_scheme(
        "default-scheme-tag-prerelease",
        "refs/tags/v1.1.0-rc.1",
        ["1.1.0-rc.1", "v1.1.0-rc.1"],
    ),
    default_scheme(
        "default-scheme-pull-request", "refs/pull/5/merge", ["pr-5"], event="pull_request"
    ),
    default_scheme(
        "default-scheme-dispatch-dev",
        "refs/heads/main",
        ["dev"],
        event="workflow_dispatch",
        inputs={"suffix": "dev"},
    ),
    default_scheme(
        "default-scheme-dispatch-staging",
        "refs/heads/develop",
        ["staging"],
        event="workflow_dispatch",
        inputs={"suffix": "staging"},
    ),
    default_scheme(
        "default-scheme-dispatch-prod-any-case",
        "refs/heads/main",
        ["prod"],
        event="workflow_dispatch",
        inputs={"suffix": "PROD"},
    ),
    default_scheme(
        "default-scheme-dispatch-other-suffix",
        "refs/heads/main",
        ["manual-42"],
        event="workflow_dispatch",
        inputs={"suffix": "qa"},
    ),
    default_scheme(
        "default-scheme-dispatch-without-input",
        "refs/heads/main",
        ["manual-42"],
        event="workflow_dispatch",
    ),
    default_scheme("default-scheme-push-other-branch", "refs/heads/feature/x", [], version=""),
    default_scheme("default-scheme-schedule", "refs/heads/main", [], event="schedule"),
]


@pytest.mark.parametrize(("ctx", "rules", "flavor", "images", "options", "tags", "version"), CASES)
def test_metadata(
    ctx: Context,
    rules: tuple[str, ...],
    flavor: tuple[str, ...],
    images: tuple[str, ...],
    options: dict[str, Any],
    tags: tuple[str, ...],
    version: str | None,
) -> None:
    result = compute(ctx, images, parse_tag_rules(rules), parse_flavor(flavor), now=NOW, **options)
    assert result.tags == tags
    if version is not None:
        assert result.version == version


# ── labels and annotations ───────────────────────────────────────────────────

README_BAKE_LABELS = {
    "org.opencontainers.image.title": "Hello-World",
    "org.opencontainers.image.description": "This your first repo!",
    "org.opencontainers.image.url": "https://github.com/octocat/Hello-World",
    "org.opencontainers.image.source": "https://github.com/octocat/Hello-World",
    "org.opencontainers.image.version": "1.2.3",
    "org.opencontainers.image.created": "2020-01-10T00:30:00.000Z",
    "org.opencontainers.image.revision": "860c1904a1ce19322e91ac35af1ab07466440c37",
    "org.opencontainers.image.licenses": "MIT",
}


def test_readme_bake_definition_labels() -> None:
    rules = parse_tag_rules([*SEMVER_EXAMPLE, "type=sha"])
    result = compute(context("refs/tags/v1.2.3"), ["name/app"], rules, parse_flavor([]), now=NOW)
    assert dict(result.labels) == README_BAKE_LABELS
    assert list(result.labels) == sorted(README_BAKE_LABELS)
    assert result.version == "1.2.3"
    assert result.tag_names == ("1.2.3", "1.2", "sha-860c190", "latest")


def test_readme_overwrite_labels_and_annotations() -> None:
    result = compute(
        context("refs/tags/v1.1.1"),
        ["org/app"],
        parse_tag_rules(["type=ref,event=tag"]),
        parse_flavor(["latest=false"]),
        now=NOW,
        extra_labels=[
            "maintainer=CrazyMax",
            'org.opencontainers.image.description=this is a "good" example',
            "org.opencontainers.image.title=MyCustom=Title",
            "org.opencontainers.image.vendor=MyCompany",
        ],
        extra_annotations=["maintainer=Foo"],
        annotation_levels=("index", "manifest-descriptor"),
    )
    assert list(result.labels.items()) == [
        ("maintainer", "CrazyMax"),
        ("org.opencontainers.image.created", "2020-01-10T00:30:00.000Z"),
        ("org.opencontainers.image.description", 'this is a "good" example'),
        ("org.opencontainers.image.licenses", "MIT"),
        ("org.opencontainers.image.revision", SHA),
        ("org.opencontainers.image.source", "https://github.com/octocat/Hello-World"),
        ("org.opencontainers.image.title", "MyCustom=Title"),
        ("org.opencontainers.image.url", "https://github.com/octocat/Hello-World"),
        ("org.opencontainers.image.vendor", "MyCompany"),
        ("org.opencontainers.image.version", "v1.1.1"),
    ]
    assert result.annotations[0] == "index:maintainer=Foo"
    assert result.annotations[9] == "manifest-descriptor:maintainer=Foo"
    assert "index:org.opencontainers.image.title=Hello-World" in result.annotations
    assert len(result.annotations) == 18


def test_labels_without_version_and_templates_in_labels() -> None:
    result = compute(
        context("", sha=""),
        ["user/app"],
        parse_tag_rules([]),
        parse_flavor([]),
        now=NOW,
        extra_labels=[
            "org.opencontainers.image.created={{commit_date 'YYYY-MM-DDTHH:mm:ss.SSS[Z]'}}"
        ],
    )
    assert result.tags == ()
    assert result.labels["org.opencontainers.image.version"] == ""
    assert result.labels["org.opencontainers.image.revision"] == ""
    assert result.labels["org.opencontainers.image.created"] == "2020-01-10T00:30:00.000Z"
    assert result.annotations[0].startswith("manifest:org.opencontainers.image.created=")


def test_warnings_report_what_metadata_action_logs() -> None:
    result = compute(
        context("refs/tags/sometag"),
        ["user/app"],
        parse_tag_rules(["type=semver,pattern={{version}}", r"type=match,pattern=\d.\d"]),
        parse_flavor([]),
        now=NOW,
    )
    assert result.warnings == (
        "sometag is not a valid semver. More info: https://semver.org/",
        r"\d.\d does not match sometag.",
    )


# ── parsing ──────────────────────────────────────────────────────────────────


def test_default_tags_input_when_no_rules() -> None:
    rules = parse_tag_rules(["", "# only a comment"])
    assert [rule.source for rule in rules] == list(METADATA_ACTION_DEFAULT_TAGS)


def test_rule_defaults_follow_metadata_action() -> None:
    rules = {
        rule.source: rule
        for rule in parse_tag_rules(
            ["type=schedule", "type=ref,event=pr", "type=sha", "type=match,pattern=x", "foo"]
        )
    }
    assert dict(rules["type=schedule"].attrs) == {
        "pattern": "nightly",
        "enable": "true",
        "priority": "1000",
    }
    assert rules["type=ref,event=pr"].attrs["prefix"] == "pr-"
    assert rules["type=sha"].attrs["prefix"] == "sha-"
    assert rules["type=sha"].attrs["format"] == "short"
    assert rules["type=match,pattern=x"].attrs["group"] == "0"
    assert rules["foo"].type == "raw"
    assert rules["foo"].attrs["value"] == "foo"
    assert [rule.priority for rule in rules.values()] == [1000, 600, 100, 800, 200]


def test_attribute_value_keeps_later_equals_signs() -> None:
    (rule,) = parse_tag_rules(["type=raw,value=a=b"])
    assert rule.attrs["value"] == "a=b"


def test_flavor_parsing() -> None:
    flavor = parse_flavor(["latest=false", "prefix=foo-,onlatest=true", "suffix=-bar"])
    assert (flavor.latest, flavor.prefix, flavor.prefix_latest) == ("false", "foo-", True)
    assert (flavor.suffix, flavor.suffix_latest) == ("-bar", False)


def test_images_parsing_validates_and_lowercases() -> None:
    images = parse_images(["ghcr.io/MyOrg/App", "name=localhost:5000/app,enable=false"])
    assert [(image.name, image.enable) for image in images] == [
        ("ghcr.io/myorg/app", True),
        ("localhost:5000/app", False),
    ]


@pytest.mark.parametrize(
    ("lines", "message"),
    [
        pytest.param(
            ["type=raw,prefx=a"],
            "unknown tag attribute 'prefx' in 'type=raw,prefx=a' — did you mean 'prefix'?",
            id="attribute-typo",
        ),
        pytest.param(["type=semvr,pattern=x"], "did you mean 'semver'?", id="type-typo"),
        pytest.param(["type=semver"], "type=semver needs a 'pattern'", id="semver-pattern"),
        pytest.param(["type=match,value=x"], "type=match needs a 'pattern'", id="match-pattern"),
        pytest.param(["type=ref"], "type=ref needs a 'event'", id="ref-event"),
        pytest.param(["type=ref,event=branches"], "did you mean 'branch'?", id="ref-event-typo"),
        pytest.param(["type=sha,format=full"], "invalid format 'full'", id="sha-format"),
        pytest.param(["type=raw"], "type=raw needs a 'value'", id="raw-value"),
        pytest.param(["type=sha,foo"], "type=sha takes no value", id="bare-value"),
        pytest.param(["type=edge,value=x"], "type=edge takes no value", id="value-on-edge"),
        pytest.param(["type=raw,value=a,enable=yes"], "invalid enable 'yes'", id="enable"),
        pytest.param(["type=raw,value=a,priority=high"], "invalid priority", id="priority"),
        pytest.param(["type=match,pattern=x,group=one"], "invalid match group", id="group"),
        pytest.param(["type=match,pattern=(x"], "invalid pattern '(x'", id="bad-regex"),
        pytest.param(["type=semver,pattern=x,match=v.*"], "needs a capture group", id="match"),
        pytest.param(["type=raw,value=a,"], "empty field", id="trailing-comma"),
        pytest.param(['type=raw,value="a"'], "stray '\"'", id="stray-quote"),
        pytest.param(['type=raw,"value=a'], "unclosed", id="unclosed-quote"),
        pytest.param(["type=raw,value=${{ secret.X }}"], "unknown context 'secret'", id="expr"),
        pytest.param(["type=${{ 'raw' }},value=a"], "'type' cannot come from", id="expr-type"),
    ],
)
def test_tag_rule_errors(lines: list[str], message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_tag_rules(lines)
    assert message in str(caught.value)
    assert "\n" not in str(caught.value)


@pytest.mark.parametrize(
    ("lines", "message"),
    [
        pytest.param(["lastest=true"], "did you mean 'latest'?", id="key-typo"),
        pytest.param(["latest=yes"], "invalid latest 'yes'", id="latest-value"),
        pytest.param(["onlatest=true"], "onlatest must follow", id="onlatest-alone"),
        pytest.param(["suffix=-x,onlatest=maybe"], "invalid onlatest", id="onlatest-value"),
        pytest.param(["latest"], "needs key=value", id="bare"),
    ],
)
def test_flavor_errors(lines: list[str], message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_flavor(lines)
    assert message in str(caught.value)


@pytest.mark.parametrize(
    ("lines", "message"),
    [
        pytest.param(["user/app:1.0"], "must not carry a tag", id="tag"),
        pytest.param(["user/app@sha256:abc"], "must not carry a tag or digest", id="digest"),
        pytest.param(["my app"], "invalid image name 'my app'", id="space"),
        pytest.param(["-app"], "invalid image name", id="leading-dash"),
        pytest.param(["name=user/app,enabled=true"], "did you mean 'enable'?", id="attr"),
        pytest.param(["name=user/app,enable=yes"], "invalid enable 'yes'", id="enable"),
    ],
)
def test_image_errors(lines: list[str], message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_images(lines)
    assert message in str(caught.value)


@pytest.mark.parametrize(
    ("rule", "message"),
    [
        pytest.param("type=raw,value={{brnach}}", "did you mean 'branch'?", id="template-typo"),
        pytest.param("type=raw,value=x,enable={{branch}}", "enable must render", id="enable"),
        pytest.param("type=raw,value={{date YYYY}}", "unquoted argument 'YYYY'", id="unquoted"),
        pytest.param("type=raw,value={{date 'YYYY' zone='UTC'}}", "only tz=", id="date-attr"),
        pytest.param("type=raw,value={{date 'YYYY' tz='Mars/Base'}}", "unknown time zone", id="tz"),
        pytest.param("type=raw,value={{#if x}}y{{/if}}", "unsupported template", id="block"),
        pytest.param(
            "type=schedule,pattern={{sha}}", "valid names here: commit_date, date", id="scope"
        ),
        pytest.param("type=raw,value={{date 'N'}}", "date token 'N'", id="era-token"),
    ],
)
def test_template_errors(rule: str, message: str) -> None:
    rules = parse_tag_rules([rule])
    with pytest.raises(ConfigError) as caught:
        compute(
            context("refs/heads/master", event="schedule"), [], rules, parse_flavor([]), now=NOW
        )
    assert message in str(caught.value)


def test_label_without_equals_is_an_error() -> None:
    with pytest.raises(ConfigError, match="needs key=value"):
        compute(
            context("refs/heads/master"),
            [],
            parse_tag_rules([]),
            parse_flavor([]),
            now=NOW,
            extra_labels=["invalid"],
        )


# ── options ──────────────────────────────────────────────────────────────────


def test_options_from_env_defaults() -> None:
    assert options_from_env({}) == {
        "short_sha_length": 7,
        "pr_head_sha": False,
        "annotation_levels": ("manifest",),
    }


def test_options_from_env_values() -> None:
    options = options_from_env(
        {
            "DOCKER_METADATA_SHORT_SHA_LENGTH": "12",
            "DOCKER_METADATA_PR_HEAD_SHA": "True",
            "DOCKER_METADATA_ANNOTATIONS_LEVELS": "manifest, index,index-descriptor[linux/amd64]",
        }
    )
    assert options == {
        "short_sha_length": 12,
        "pr_head_sha": True,
        "annotation_levels": ("manifest", "index", "index-descriptor[linux/amd64]"),
    }


@pytest.mark.parametrize(
    ("env", "message"),
    [
        pytest.param({"DOCKER_METADATA_SHORT_SHA_LENGTH": "abc"}, "not a positive", id="sha-len"),
        pytest.param({"DOCKER_METADATA_SHORT_SHA_LENGTH": "0"}, "not a positive", id="sha-zero"),
        pytest.param(
            {"DOCKER_METADATA_ANNOTATIONS_LEVELS": "manfest"},
            "did you mean 'manifest'?",
            id="level",
        ),
    ],
)
def test_options_from_env_errors(env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        options_from_env(env)
    assert message in str(caught.value)


# ── README global-expression tables ─────────────────────────────────────────


@pytest.mark.parametrize(
    ("template", "event", "ref", "expected"),
    [
        pytest.param("{{branch}}", "pull_request", "refs/pull/2/merge", "", id="readme-branch-pr"),
        pytest.param("{{branch}}", "push", "refs/heads/master", "master", id="readme-branch-push"),
        pytest.param(
            "{{branch}}", "push", "refs/heads/my/branch", "my/branch", id="readme-branch-slash"
        ),
        pytest.param("{{branch}}", "push", "refs/tags/v1.2.3", "", id="readme-branch-tag"),
        pytest.param("{{tag}}", "pull_request", "refs/pull/2/merge", "", id="readme-tag-pr"),
        pytest.param("{{tag}}", "push", "refs/heads/master", "", id="readme-tag-branch"),
        pytest.param("{{tag}}", "push", "refs/tags/v1.2.3", "v1.2.3", id="readme-tag-push"),
        pytest.param(
            "{{base_ref}}", "pull_request", "refs/pull/2/merge", "master", id="readme-base-ref-pr"
        ),
        pytest.param("{{base_ref}}", "push", "refs/heads/master", "", id="readme-base-ref-branch"),
        pytest.param(
            "{{base_ref}}", "push", "refs/tags/v1.2.3", "master", id="readme-base-ref-tag"
        ),
        pytest.param("{{sha}}", "push", "refs/heads/master", "860c190", id="readme-sha"),
        pytest.param(
            "{{is_default_branch}}", "push", "refs/heads/master", "true", id="default-branch"
        ),
        pytest.param("{{is_default_branch}}", "push", "refs/tags/v1", "false", id="default-tag"),
        pytest.param(
            "{{is_default_branch}}", "schedule", "refs/heads/x", "true", id="default-sched"
        ),
        pytest.param("{{is_not_default_branch}}", "push", "refs/heads/x", "true", id="not-default"),
        pytest.param("{{date 'YYYYMMDD'}}", "push", "", "20200110", id="readme-date"),
        pytest.param(
            "{{date 'YYYYMMDD-HHmmss' tz='Asia/Tokyo'}}",
            "push",
            "",
            "20200110-093000",
            id="readme-date-tz",
        ),
        pytest.param("\\{{branch}}", "push", "refs/heads/x", "{{branch}}", id="escaped-mustache"),
        pytest.param("{{{branch}}}", "push", "refs/heads/a&b", "a&b", id="triple-stache-unescaped"),
        pytest.param("a{{! note }}b", "push", "", "ab", id="comment"),
    ],
)
def test_readme_global_expressions(template: str, event: str, ref: str, expected: str) -> None:
    ctx = context(ref, event, base_ref="refs/heads/master" if "tags" in ref else "master")
    assert render(template, ctx, now=NOW) == expected


def test_readme_date_long_format() -> None:
    moment = datetime(2020, 1, 10, 15, 25, 50, tzinfo=UTC)
    assert (
        format_moment(moment, "dddd, MMMM Do YYYY, h:mm:ss a")
        == "Friday, January 10th 2020, 3:25:50 pm"
    )


@pytest.mark.parametrize(
    ("fmt", "expected"),
    [
        pytest.param(
            "YYYY-MM-DDTHH:mm:ss.SSS[Z]", "2021-03-02T04:05:06.789Z", id="iso-with-literal"
        ),
        pytest.param("YY M D H h k m s S SS", "21 3 2 4 4 4 5 6 7 78", id="short-tokens"),
        pytest.param(
            "Mo Do DDD DDDD d do dd ddd E Q", "3rd 2nd 61 061 2 2nd Tu Tue 2 1", id="ordinals"
        ),
        pytest.param("W WW w GGGG gggg", "9 09 10 2021 2021", id="weeks"),
        pytest.param("A a hh kk", "AM am 04 04", id="meridiem"),
        pytest.param(
            "Z ZZ X x z", "+00:00 +0000 1614657906 1614657906789 UTC", id="zone-and-epoch"
        ),
        pytest.param("LT L LL", "4:05 AM 03/02/2021 March 2, 2021", id="locale-formats"),
        pytest.param("[today is] dddd \\Y", "today is Tuesday Y", id="escapes"),
        pytest.param("Hmm hmmss", "405 40506", id="compound-tokens"),
    ],
)
def test_moment_formats(fmt: str, expected: str) -> None:
    moment = datetime(2021, 3, 2, 4, 5, 6, 789000, tzinfo=UTC)
    assert format_moment(moment, fmt) == expected


# ── versions and sanitising ──────────────────────────────────────────────────


@pytest.mark.parametrize(
    ("text", "version"),
    [
        pytest.param("v1.2.3", "1.2.3", id="v-prefix"),
        pytest.param("1.2.3-rc.1+build.5", "1.2.3-rc.1", id="build-dropped"),
        pytest.param("01.2.3", None, id="leading-zero"),
        pytest.param("1.2", None, id="two-parts"),
        pytest.param("V1.2.3", None, id="capital-v"),
        pytest.param("1.2.3-01", None, id="numeric-prerelease-leading-zero"),
        pytest.param(" 1.2.3 ", "1.2.3", id="trimmed"),
    ],
)
def test_parse_semver(text: str, version: str | None) -> None:
    parsed = parse_semver(text)
    assert (parsed.version if parsed else None) == version


@pytest.mark.parametrize(
    ("text", "version", "is_release"),
    [
        pytest.param("1.2.3", "1.2.3", True, id="plain"),
        pytest.param("v1.0-1", "1.0.post1", False, id="implicit-post"),
        pytest.param("1!2.0.0a1.dev2", "1!2.0.0a1.dev2", False, id="epoch-pre-dev"),
        pytest.param("1.0c3", "1.0rc3", False, id="c-is-rc"),
        pytest.param("1.0+ubuntu.1", "1.0+ubuntu,1", True, id="local-joined-like-js"),
        pytest.param("1.0.x", None, False, id="invalid"),
    ],
)
def test_parse_pep440(text: str, version: str | None, is_release: bool) -> None:
    parsed = parse_pep440(text)
    assert (parsed.version if parsed else None) == version
    if parsed:
        assert parsed.is_release == is_release


def test_sanitize_tag() -> None:
    assert sanitize_tag("feature/x y!!z") == "feature-x-y-z"
    assert sanitize_tag("..--v1") == "v1"
    assert len(sanitize_tag("a" * 300)) == 128


def test_images_may_be_one_string_and_dates_may_be_naive() -> None:
    ctx = context("refs/heads/master", commit_date=datetime(2019, 12, 31, 23, 0))
    rules = parse_tag_rules(["type=raw,value={{commit_date 'YYYYMMDD-HH'}}"])
    result = compute(ctx, "Name/App", rules, parse_flavor([]), now=datetime(2020, 1, 10))
    assert result.tags == ("name/app:20191231-23",)
    assert result.labels["org.opencontainers.image.created"] == "2020-01-10T00:00:00.000Z"


def test_github_base_ref_expression_only_on_pull_requests() -> None:
    rules = parse_tag_rules(["type=raw,value=base-${{ github.base_ref }}"])
    on_tag = context("refs/tags/v1", base_ref="refs/heads/master")
    on_pr = context("refs/pull/1/merge", "pull_request", base_ref="master")
    assert compute(on_tag, [], rules, parse_flavor([]), now=NOW).tags == ("base-",)
    assert compute(on_pr, [], rules, parse_flavor([]), now=NOW).tags == ("base-master",)
