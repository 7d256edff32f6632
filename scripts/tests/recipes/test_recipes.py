"""Every shell recipe in README.md, docs/ and the apps' READMEs, run as a new user runs it.

`nox -s recipes` (a default session). Each recipe marked `run` runs in one fresh clone of this
repository's HEAD, in order, against the lab, as `bash -e` from the clone's root: the clone's
own `.buildtasks/`, and its own `uv sync`ed environment. The user it stands for has done what
the docs ask before signing and scanning: a cosign key pair in `BUILDTASKS_COSIGN_KEY` and a
vulnerability DB (here an empty one, since the real DB cannot be downloaded here). Recipes
marked `skip` or `github` show as skipped with their reason (support/recipes.py).
"""

from __future__ import annotations

import os
import subprocess
from datetime import UTC, datetime
from pathlib import Path

import pytest
from support.lab import ROOT, cosign_key_pair
from support.recipes import Recipe, all_recipes
from support.vulndb import write_db

pytestmark = pytest.mark.lab

RECIPES = all_recipes(ROOT)
#: The lab the suite runs against is the recipes' lab too.
KEPT = ("BUILDTASKS_LAB_HOME", "BUILDTASKS_LAB_REGISTRY")
#: Long enough for the slowest recipe (a two-platform build and push under QEMU, cold).
TIMEOUT = 1200


@pytest.fixture(scope="module")
def user(tmp_path_factory) -> tuple[Path, dict[str, str]]:
    """A fresh clone of HEAD, synced, and the environment of a user who followed the docs."""
    home = tmp_path_factory.mktemp("recipes")
    checkout = home / "monorepo"
    subprocess.run(["git", "clone", "--quiet", str(ROOT), str(checkout)], check=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith("BUILDTASKS_") or k in KEPT}
    env.pop("VIRTUAL_ENV", None)  # `uv run` in the clone uses the clone's environment
    cosign_key_pair(home)
    write_db(home / "trivy", (), now=datetime.now(UTC))
    env.update(
        BUILDTASKS_COSIGN_KEY=str(home / "cosign.key"),
        COSIGN_PASSWORD="",
        TRIVY_CACHE_DIR=str(home / "trivy"),
        # The DB above is the suite's own fixture format: docker.scan accepts it only so.
        BUILDTASKS_ALLOW_TEST_DB="1",
    )
    if os.geteuid() == 0:
        # `sudo -E uv run invoke lab.up`: root needs no sudo, and a bare machine has none.
        shims = home / "bin"
        shims.mkdir()
        sudo = shims / "sudo"
        sudo.write_text('#!/bin/sh\nif [ "$1" = -E ]; then shift; fi\nexec "$@"\n')
        sudo.chmod(0o755)
        env["PATH"] = f"{shims}{os.pathsep}{env['PATH']}"
    sync = subprocess.run(
        ["uv", "sync", "--locked", "--quiet"], cwd=checkout, env=env, capture_output=True, text=True
    )
    assert sync.returncode == 0, sync.stderr[-2000:]
    return checkout, env


def bash(script: str, cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", "-e", "-o", "pipefail", "-c", script],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=False,
    )


@pytest.mark.parametrize("recipe", RECIPES, ids=[r.id for r in RECIPES])
def test_recipe(recipe: Recipe, user) -> None:
    if recipe.kind == "github":
        pytest.skip(f"needs GitHub: {recipe.reason}")
    if recipe.kind != "run":
        pytest.skip(recipe.reason or "not marked")
    checkout, env = user
    try:
        if recipe.before:
            setup = bash(recipe.before, checkout, env)
            assert setup.returncode == 0, f"before: {recipe.before}\n{setup.stderr[-3000:]}"
        result = bash(recipe.script, checkout, env)
        assert result.returncode == 0, (
            f"{recipe.id} failed with exit code {result.returncode}:\n{recipe.script}\n"
            f"--- stdout\n{result.stdout[-3000:]}\n--- stderr\n{result.stderr[-5000:]}"
        )
    finally:
        if recipe.then:
            bash(recipe.then, checkout, env)
