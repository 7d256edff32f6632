"""The GHCR backend against recorded GitHub Packages API responses.

GitHub is not reachable here. `data/ghcr/versions.json` is a package's version list in the shape
GitHub documents (docs.github.com/rest/packages/packages: `id`, `name` = digest, `created_at`,
`metadata.container.tags`), recorded from a real multi-platform, signed and attested history
(the manifests in `data/ghcr/manifests.json` are that history's own). A local HTTP server
answers as GitHub and ghcr.io would: the REST API paged by the Link header, DELETE by version
id, and the registry API for the manifests. The test of `delete-package-versions`' failure:
the platform manifests under a kept tag are untagged versions, and must survive.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from buildtasks.errors import BuildtasksError
from buildtasks.retention import ghcr, oci, service
from buildtasks.retention.model import parse_manifest
from buildtasks.retention.policy import Policy
from buildtasks.runner import Runner

DATA = Path(__file__).parent / "data" / "ghcr"
VERSIONS = json.loads((DATA / "versions.json").read_text())
MANIFESTS = json.loads((DATA / "manifests.json").read_text())
NOW = datetime(2026, 12, 1, tzinfo=UTC)
POLICY = Policy(expire_tags={"pr-*": 14.0}, keep_untagged=0, untagged_days=7.0)


def by_tag(tag: str) -> dict:
    return next(v for v in VERSIONS if tag in v["metadata"]["container"]["tags"])


def closure(digest: str) -> set[str]:
    """A manifest, its children and (through the referrer tags) its signatures, recursively."""
    found: set[str] = set()
    stack = [digest]
    while stack:
        current = stack.pop()
        if current in found or current not in MANIFESTS:
            continue
        found.add(current)
        stack.extend(parse_manifest(MANIFESTS[current].encode(), current).children)
        referrers = "sha256-" + current.split(":")[1]
        stack.extend(v["name"] for v in VERSIONS if referrers in v["metadata"]["container"]["tags"])
    return found


class Fake:
    """GitHub's REST API and ghcr.io's registry API, from the recording."""

    def __init__(self) -> None:
        self.versions = [dict(v) for v in VERSIONS]
        self.manifests = dict(MANIFESTS)
        self.deleted: list[int] = []
        self.fail_delete_after: int | None = None
        self.delete_status = 204

    def handler(self) -> type[BaseHTTPRequestHandler]:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def reply(self, status: int, body: bytes = b"", headers: dict | None = None):
                self.send_response(status)
                for key, value in (headers or {}).items():
                    self.send_header(key, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self) -> None:
                path, _, query = self.path.partition("?")
                if path == "/api/orgs/acme/packages/container/monorepo/versions":
                    page = int(dict(p.split("=") for p in query.split("&")).get("page", "1"))
                    size = 20
                    items = fake.versions[(page - 1) * size : page * size]
                    headers = {"Content-Type": "application/json"}
                    if page * size < len(fake.versions):
                        base = f"http://{self.headers['Host']}/api/orgs/acme/packages"
                        headers["Link"] = (
                            f"<{base}/container/monorepo/versions?per_page=100&page={page + 1}>;"
                            ' rel="next"'
                        )
                    return self.reply(200, json.dumps(items).encode(), headers)
                if path.startswith("/api/"):
                    return self.reply(404, b'{"message": "Not Found"}')
                if path.startswith("/v2/acme/monorepo/manifests/"):
                    reference = path.rsplit("/", 1)[1]
                    tagged = {
                        t: v["name"]
                        for v in fake.versions
                        for t in v["metadata"]["container"]["tags"]
                    }
                    reference = tagged.get(reference, reference)
                    live = {v["name"] for v in fake.versions}
                    if reference not in live or reference not in fake.manifests:
                        return self.reply(404, b'{"errors": [{"code": "MANIFEST_UNKNOWN"}]}')
                    body = fake.manifests[reference].encode()
                    kind = json.loads(body).get("mediaType", "")
                    return self.reply(
                        200, body, {"Content-Type": kind, "Docker-Content-Digest": reference}
                    )
                if path == "/v2/":
                    return self.reply(200, b"{}")
                return self.reply(404, b"{}")

            def do_DELETE(self) -> None:
                prefix = "/api/orgs/acme/packages/container/monorepo/versions/"
                if not self.path.startswith(prefix):
                    return self.reply(404, b"{}")
                if fake.delete_status != 204:
                    return self.reply(fake.delete_status, b'{"message": "Forbidden"}')
                if fake.fail_delete_after is not None and len(fake.deleted) >= (
                    fake.fail_delete_after
                ):
                    fake.fail_delete_after = None
                    return self.reply(502, b'{"message": "Server Error"}')
                version = int(self.path[len(prefix) :])
                before = len(fake.versions)
                fake.versions = [v for v in fake.versions if v["id"] != version]
                if len(fake.versions) == before:
                    return self.reply(404, b'{"message": "Not Found"}')
                fake.deleted.append(version)
                return self.reply(204)

        return Handler


@pytest.fixture
def fake() -> Iterator[tuple[Fake, str]]:
    state = Fake()
    server = ThreadingHTTPServer(("127.0.0.1", 0), state.handler())
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield state, f"127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()


def backend(address: str, token: str = "t0ken") -> service.GhcrBackend:
    name = f"{address}/acme/monorepo"
    packages = ghcr.Packages("acme", "monorepo", token, api=f"http://{address}/api")
    return service.GhcrBackend(oci.Client(name), packages)


def run(address: str, *, apply: bool = True, token: str = "t0ken") -> service.Outcome:
    chosen = backend(address, token)
    target = service.Target("backend", chosen.name, POLICY)
    outcome = service.survey(chosen, target, NOW)
    if apply:
        service.apply(chosen, outcome, Runner(echo=False))
    return outcome


def test_versions_parse_as_github_documents_them():
    versions = ghcr.parse_versions(VERSIONS)
    latest = next(v for v in versions if "latest" in v.tags)
    assert latest.id == by_tag("latest")["id"]
    assert latest.digest == by_tag("latest")["name"]
    assert latest.created == datetime(2026, 11, 30, 10, tzinfo=UTC)


@pytest.mark.parametrize(
    ("package", "paths"),
    [
        (
            "monorepo",
            (
                "orgs/acme/packages/container/monorepo/versions",
                "user/packages/container/monorepo/versions",
                "users/acme/packages/container/monorepo/versions",
            ),
        ),
        ("app/web", ("orgs/acme/packages/container/app%2Fweb/versions",)),
    ],
    ids=["org-then-own-then-user", "package-in-a-folder"],
)
def test_versions_paths(package, paths):
    assert ghcr.versions_paths("acme", package)[: len(paths)] == paths


def test_package_of_a_ghcr_name():
    assert ghcr.package_of("ghcr.io/acme/app/web") == ("acme", "app/web")
    with pytest.raises(BuildtasksError, match="OWNER/PACKAGE"):
        ghcr.package_of("ghcr.io/acme")


def test_cleanup_keeps_everything_a_kept_tag_reaches_and_deletes_the_expired(fake):
    state, address = fake
    latest = closure(by_tag("latest")["name"])
    expired = closure(by_tag("pr-41")["name"]) - latest
    ids = {v["name"]: v["id"] for v in VERSIONS}
    untagged_under_latest = {d for d in latest if not by_digest(d)["metadata"]["container"]["tags"]}
    assert len(untagged_under_latest) >= 4  # platform and attestation manifests, signatures

    outcome = run(address)

    assert not {ids[d] for d in latest} & set(state.deleted)
    assert {ids[d] for d in expired} <= set(state.deleted)
    leftovers = {v["name"] for v in state.versions}
    assert leftovers == latest  # the old failed gate and the stale referrers list went too
    assert outcome.deleted == len(VERSIONS) - len(latest)
    assert any(t.tag == "pr-41" and t.action == "delete" for t in outcome.plan.tags)
    # Paged: the recording holds more versions than one page.
    assert len(VERSIONS) > 20


def by_digest(digest: str) -> dict:
    return next(v for v in VERSIONS if v["name"] == digest)


def test_a_delete_failing_halfway_is_one_error_and_a_rerun_finishes(fake):
    state, address = fake
    state.fail_delete_after = 3
    with pytest.raises(BuildtasksError) as failure:
        run(address)
    message = str(failure.value)
    assert "failed after 3 of" in message and "again plans afresh" in message
    assert "\n" not in message
    assert len(state.deleted) == 3
    latest = closure(by_tag("latest")["name"])
    outcome = run(address)
    assert {v["name"] for v in state.versions} == latest
    assert outcome.deleted == len(VERSIONS) - len(latest) - 3


def test_a_token_without_delete_scope_fails_before_anything_else(fake):
    state, address = fake
    state.delete_status = 403
    with pytest.raises(BuildtasksError, match="delete:packages") as failure:
        run(address)
    assert failure.value.exit_code == 4
    assert state.deleted == []
    with pytest.raises(BuildtasksError, match="GITHUB_TOKEN is not set"):
        run(address, token="")


def test_the_dry_plan_deletes_nothing(fake):
    state, address = fake
    outcome = run(address, apply=False)
    assert outcome.plan.deleted and state.deleted == []
