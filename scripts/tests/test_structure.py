"""The package's shape: rules that `docs/architecture.md` states, checked on the source."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "buildtasks"
#: Modules that are the lab, or its Invoke adapter: the only ones that may import it.
LAB_SIDE = ("lab/", "tasks/lab.py")
MAX_LINES = 700


def modules() -> list[Path]:
    return sorted(PACKAGE.rglob("*.py"))


def imported(path: Path) -> set[str]:
    """Every module `path` imports, at the top or inside a function."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
            names |= {f"{node.module}.{alias.name}" for alias in node.names}
    return names


@pytest.mark.parametrize(
    "path",
    [p for p in modules() if not str(p.relative_to(PACKAGE)).startswith(LAB_SIDE)],
    ids=lambda p: str(p.relative_to(PACKAGE)),
)
def test_nothing_outside_the_lab_imports_the_lab(path):
    lab = {name for name in imported(path) if name.startswith("buildtasks.lab.")}
    lab |= {name for name in imported(path) if name == "buildtasks.lab"}
    assert not lab, f"{path.name} imports {sorted(lab)}: read lab facts through labstate"


def test_no_module_is_longer_than_the_limit():
    long = {
        str(p.relative_to(PACKAGE)): n
        for p in modules()
        if (n := len(p.read_text(encoding="utf-8").splitlines())) > MAX_LINES
    }
    assert long == {}, f"split these modules (limit {MAX_LINES} lines): {long}"


def test_the_product_does_not_import_pytest_outside_its_testing_plugin():
    users = [
        str(p.relative_to(PACKAGE))
        for p in modules()
        if "pytest" in imported(p) and not str(p.relative_to(PACKAGE)).startswith("testing/")
    ]
    assert users == []
