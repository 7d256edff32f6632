"""Behaviour of the running web image, as an operator would check it."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest

from buildtasks.testing.images import (
    assert_fast_healthcheck,
    assert_no_proxy_ca_in_layers,
    assert_within_size_budget,
    docker,
)

pytestmark = pytest.mark.lab


def test_turns_healthy_within_seconds_and_serves_healthz(service):
    response = service.request("/healthz")
    assert response.status == 200
    assert response.headers["content-type"] == "application/json; charset=utf-8"
    assert response.json() == {"status": "ok"}


def test_serves_the_built_page_and_its_hashed_assets(service):
    container = service
    page = container.request("/")
    assert page.status == 200
    assert page.headers["content-type"] == "text/html; charset=utf-8"
    assert page.headers["cache-control"] == "no-cache"
    html = page.body.decode()
    assert "<title>Service status</title>" in html
    assets = re.findall(r'(?:src|href)="(/assets/[^"]+)"', html)
    assert any(a.endswith(".js") for a in assets), html
    types = {".js": "text/javascript; charset=utf-8", ".css": "text/css; charset=utf-8"}
    for asset in assets:
        response = container.request(asset)
        assert response.status == 200, asset
        assert response.headers["content-type"] == types[Path(asset).suffix]
        assert response.headers["cache-control"] == "public, max-age=31536000, immutable"
    assert container.request("/no-such-file.js").status == 404


def test_version_reports_build_metadata(service, image):
    status, body = service.get("/version")
    assert status == 200
    config_env = docker("image", "inspect", "--format", "{{json .Config.Env}}", image).stdout
    env = dict(item.split("=", 1) for item in json.loads(config_env))
    assert body == {
        "version": env["APP_VERSION"],
        "revision": env["APP_REVISION"],
        "build_date": env["APP_BUILD_DATE"],
    }


def test_gateway_routes_are_404_without_gateway_url(service):
    status, body = service.get("/api/gateway/health")
    assert status == 404
    assert "GATEWAY_URL" in body["detail"]


def test_gateway_routes_are_502_when_the_gateway_is_unreachable(run_container):
    container = run_container(env={"GATEWAY_URL": "http://127.0.0.1:1"})
    container.wait_healthy()
    status, body = container.get("/api/gateway/health")
    assert (status, body["detail"]) == (502, "API gateway unreachable")


def test_forwards_to_an_upstream_on_the_network(run_container, network):
    # Another container of the same image stands in for the gateway: a real HTTP upstream.
    upstream = run_container(network=network, alias="upstream")
    web = run_container(env={"GATEWAY_URL": "http://upstream:8080"}, network=network)
    upstream.wait_healthy()
    web.wait_healthy()
    assert web.get("/api/gateway/healthz") == (200, {"status": "ok"})
    assert web.request("/api/gateway/no-such-file.js").status == 404


def test_forwards_to_a_real_api_gateway(run_container, network):
    gateway_image = os.environ.get("BUILDTASKS_IMAGE_BACKEND", "")
    if not gateway_image:
        pytest.skip("set BUILDTASKS_IMAGE_BACKEND to a backend image to test against the gateway")
    gateway = run_container(network=network, alias="gateway", port=8000, image=gateway_image)
    web = run_container(env={"GATEWAY_URL": "http://gateway:8000"}, network=network)
    gateway.wait_healthy()
    web.wait_healthy()
    assert web.get("/api/gateway/health") == (200, {"status": "ok"})
    status, body = web.get("/api/gateway/version")
    assert status == 200 and "version" in body


def test_stops_promptly_on_sigterm(run_container):
    container = run_container()
    container.wait_healthy()
    docker("stop", "--time", "10", container.name)
    # 0, not 137: the server exited on SIGTERM by itself instead of being killed at the timeout.
    code = docker("inspect", "--format", "{{.State.ExitCode}}", container.name).stdout.strip()
    assert code == "0"


def test_runs_as_a_non_root_user(image):
    user = docker("image", "inspect", "--format", "{{.Config.User}}", image).stdout.strip()
    assert user and not user.startswith(("0", "root"))
    assert user.split(":")[0].isdigit(), "USER should be numeric so runtimes can verify it"
    uid = docker("run", "--rm", image, "id", "-u").stdout.strip()
    assert uid != "0"


def test_other_commands_are_executed_as_given(image):
    out = docker("run", "--rm", image, "node", "-e", "console.log('hello from the image')").stdout
    assert "hello from the image" in out


def test_app_directory_holds_only_the_built_page_and_the_server(image):
    out = docker("run", "--rm", "--entrypoint", "ls", image, "-A", "/app").stdout.split()
    assert sorted(out) == ["dist", "server.mjs"]


def test_no_build_tooling_or_leftovers(image):
    script = r"""
const fs = require('fs'), path = require('path')
const bad = ['/src', '/.git', '/app/.git', '/app/node_modules', '/app/package.json',
  '/app/pnpm-lock.yaml', '/run/secrets/ca', '/opt/corepack', '/pnpm', '/tmp/pnpm-store',
  '/root/.cache/pnpm', '/root/.local/share/pnpm', '/root/.cache/node/corepack',
  '/usr/local/bin/pnpm'].filter((p) => { try { fs.lstatSync(p); return true } catch { return false } })
// Only the base image's npm and corepack may live in a node_modules directory.
const allowed = new Set(['/usr/local/lib/node_modules'])
const skip = new Set(['/proc', '/sys', '/dev', '/usr/local/lib/node_modules'])
function walk(dir) {
  let entries
  try { entries = fs.readdirSync(dir, { withFileTypes: true }) } catch { return }
  for (const entry of entries) {
    if (!entry.isDirectory()) continue
    const full = path.join(dir, entry.name)
    if (skip.has(full)) continue
    if (entry.name === 'node_modules' && !allowed.has(full)) bad.push(full)
    else if (entry.name === '.pnpm-store' || entry.name === '.git') bad.push(full)
    else walk(full)
  }
}
walk('/')
console.log(JSON.stringify(bad))
process.exit(bad.length ? 1 : 0)
"""
    result = docker(
        "run", "--rm", "--user", "0", "--entrypoint", "node", image, "-e", script, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_pnpm_is_absent(image):
    result = docker("run", "--rm", image, "sh", "-c", "command -v pnpm", check=False)
    assert result.returncode != 0, f"pnpm found at {result.stdout.strip()}"


def test_no_proxy_ca_in_any_layer(image, tmp_path):
    assert_no_proxy_ca_in_layers(image, tmp_path)


def test_unpacked_size_within_budget(image):
    assert_within_size_budget(image)


def test_healthcheck_is_declared_with_a_fast_start_interval(image):
    assert_fast_healthcheck(image)
