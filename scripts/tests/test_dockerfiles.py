"""The bases a Dockerfile starts from, as BuildKit resolves them (pure)."""

from __future__ import annotations

import pytest
from support.lab import ROOT

from buildtasks import dockerfiles
from buildtasks.config import load
from buildtasks.lab.standins import seed_refs


def test_global_args_feed_from_lines_and_later_defaults():
    text = (
        "# syntax=docker/dockerfile:1\n"
        "ARG NODE_MAJOR=24\n"
        "ARG NODE_IMAGE=node:${NODE_MAJOR}-slim\n"
        "FROM $NODE_IMAGE AS builder\n"
        "ARG NODE_MAJOR=99\n"  # a stage's ARG: not global
        "FROM ${NODE_IMAGE} AS runtime\n"
    )
    assert dockerfiles.base_images(text) == ("node:24-slim",)
    assert dockerfiles.base_images(text, {"NODE_MAJOR": "20"}) == ("node:20-slim",)
    assert dockerfiles.base_images(text, {"NODE_IMAGE": "mirror.example/node:22"}) == (
        "mirror.example/node:22",
    )


def test_stages_scratch_and_platform_flags_are_not_bases():
    text = (
        "FROM --platform=$BUILDPLATFORM golang:1.23 AS build\n"
        "FROM scratch AS empty\n"
        "from build as again\n"
        "FROM BUILD\n"
        "FROM alpine:3.20\n"
    )
    assert dockerfiles.base_images(text) == ("golang:1.23", "alpine:3.20")


@pytest.mark.parametrize(
    ("value", "variables", "expected"),
    [
        ("${A:-x}", {}, "x"),
        ("${A:-x}", {"A": "a"}, "a"),
        ("${A:+y}", {"A": "a"}, "y"),
        ("${A:+y}", {}, ""),
        ("$A/$B", {"A": "r", "B": "s"}, "r/s"),
        ("${A:-${B}}", {"B": "b"}, "b"),
    ],
)
def test_variables_expand_as_buildkit_does(value, variables, expected):
    assert dockerfiles.expand(value, variables) == expected


def test_continuations_comments_and_an_escape_directive():
    text = (
        "# escape=`\n"
        "ARG BASE=python:3.11-slim\n"
        "FROM `\n"
        "  # a comment inside the instruction\n"
        "  ${BASE} AS app\n"
    )
    assert dockerfiles.base_images(text) == ("python:3.11-slim",)
    assert dockerfiles.instructions("RUN a \\\n  && b\n") == [("RUN", "a  && b")]


def test_quoted_arg_defaults():
    assert dockerfiles.global_args("ARG A=\"x y\" B='z'\nFROM a\n") == {"A": "x y", "B": "z"}


def test_the_lab_seeds_the_bases_of_this_projects_images():
    config = load(ROOT)
    refs = seed_refs(config)
    assert set(refs) == {"python:3.11-slim", "ghcr.io/astral-sh/uv:0.13.9", "node:24-slim"}


def test_an_images_build_args_choose_what_the_lab_seeds(tmp_path):
    (tmp_path / "Dockerfile").write_text("ARG NODE_MAJOR=24\nFROM node:${NODE_MAJOR}-slim\n")
    (tmp_path / "pyproject.toml").write_text(
        "[tool.buildtasks]\n"
        "[tool.buildtasks.images.web]\n"
        'repository = "web"\ndockerfile = "Dockerfile"\n'
        'build-args = { NODE_MAJOR = "20" }\n'
        "[tool.buildtasks.lab]\n"
        'seed = ["python:3.11-slim"]\n'
    )
    assert seed_refs(load(tmp_path)) == ("node:20-slim", "python:3.11-slim")
