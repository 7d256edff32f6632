"""docs/tasks.md says what the tasks and sessions say about themselves, word for word:
every task's option table is `invoke --help TASK`'s, every session summary `nox --list`'s."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest
from invoke.parser import ParserContext
from support.lab import ROOT
from support.recipes import all_recipes, parse_marker

from buildtasks.tasks import namespace

TASKS_DOC = (ROOT / "docs/tasks.md").read_text(encoding="utf-8")


def _section(task: str) -> str:
    match = re.search(rf"^### `{re.escape(task)}`\n(.*?)(?=^### |^## |\Z)", TASKS_DOC, re.S | re.M)
    assert match, f"docs/tasks.md has no section for {task}"
    return match.group(1)


def _normal(text: str) -> str:
    return " ".join(text.replace("(*repeatable*)", "(repeatable)").replace("\\|", "|").split())


@pytest.mark.parametrize("task", sorted(namespace.task_names))
def test_each_tasks_options_are_documented_as_invoke_prints_them(task):
    context = ParserContext(name=task, args=namespace[task].get_arguments())
    printed = sorted((f"`{flags}`", _normal(text)) for flags, text in context.help_tuples())
    section = _section(task)
    documented = sorted(
        (cells[0].strip(), _normal(cells[1]))
        for cells in (
            line.strip().strip("|").split(" | ", 1)
            for line in section.splitlines()
            if line.startswith("| `")
        )
    )
    assert documented == printed
    if not printed:
        assert "No options." in section


def test_the_session_summaries_are_what_nox_list_prints():
    listed = subprocess.run(
        [sys.executable, "-m", "nox", "--list", "--noxfile", str(ROOT / "noxfile.py")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    sessions = [line for line in listed.splitlines() if re.match(r"^[*-] \w+ -> ", line)]
    block = TASKS_DOC.split("Session summaries as `uv run nox --list` prints them:", 1)[1]
    documented = block.split("```text\n", 1)[1].split("```", 1)[0].strip().splitlines()
    assert sessions and documented == sessions


def test_every_task_has_a_section_and_every_section_a_task():
    sections = set(re.findall(r"^### `([a-z]+\.[a-z_-]+)`", TASKS_DOC, re.M))
    assert sections == set(namespace.task_names)


def test_the_readme_commands_are_the_ones_ci_runs():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    ci = (ROOT / ".ci/run").read_text(encoding="utf-8")
    for command in ("uv run --locked invoke lab.up docker.build", "uv run --locked nox"):
        assert f"{command} " in readme or f"{command}\n" in readme
        assert re.search(rf"^{re.escape(command)}$", ci, re.M), command


def test_the_selections_the_docs_show_select_tests():
    """`-k EXPR` in the docs selects at least one test (a recipe that selects none fails)."""
    texts = [TASKS_DOC, *(p.read_text(encoding="utf-8") for p in (ROOT / "docs").glob("*.md"))]
    expressions = {
        m.group(1)
        for text in texts
        for m in re.finditer(r"nox -s tests -- -k (\"[^\"]+\"|'[^']+'|[\w.]+)", text)
        if "..." not in m.group(1)
    }
    assert expressions
    for expression in sorted(expressions):
        result = subprocess.run(
            [sys.executable, "-m", "pytest", "--collect-only", "-q", "-k", expression.strip("\"'"),
             str(ROOT / "scripts/tests")],
            cwd=ROOT, capture_output=True, text=True, check=False,
        )  # fmt: skip
        assert result.returncode == 0, f"-k {expression} selects no test: {result.stdout[-500:]}"


def test_every_recipe_says_how_it_is_tested():
    """`nox -s recipes` runs the recipes marked `run`; the others say why they are not run."""
    recipes = all_recipes(ROOT)
    unmarked = [r.id for r in recipes if not r.kind]
    assert unmarked == [], "add <!-- recipe: run --> (or skip: / github: with a reason) before"
    assert not [r.id for r in recipes if r.kind != "run" and not r.reason]
    assert len([r for r in recipes if r.kind == "run"]) >= 20


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("<!-- recipe: run -->", ("run", "", "", "")),
        (
            "<!-- recipe: run; then: uv run invoke stack.down -->",
            ("run", "", "", "uv run invoke stack.down"),
        ),
        ("<!-- recipe: run; before: git tag v1; then: x -->", ("run", "", "git tag v1", "x")),
        ("<!-- recipe: github: a ghcr.io login -->", ("github", "a ghcr.io login", "", "")),
        ("<!-- recipe: skip: stops the lab -->", ("skip", "stops the lab", "", "")),
        ("<!-- a comment -->", ("", "", "", "")),
    ],
)
def test_recipe_markers(line, expected):
    assert parse_marker(line) == expected


def test_a_misspelt_recipe_clause_is_refused():
    with pytest.raises(ValueError, match="unknown recipe clause"):
        parse_marker("<!-- recipe: run; afterwards: x -->")
