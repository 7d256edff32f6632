"""Tests for the `${{ ... }}` evaluator: GitHub's literals, operators, coercions, functions."""

from __future__ import annotations

import math

import pytest

from buildtasks.errors import ConfigError
from buildtasks.metadata.expressions import (
    ExpressionContext,
    check,
    evaluate,
    find_spans,
    loose_equals,
    substitute,
    to_number,
    to_string,
    truthy,
)

CONTEXT = ExpressionContext(
    github={
        "event_name": "push",
        "ref": "refs/heads/main",
        "ref_name": "main",
        "ref_type": "branch",
        "sha": "860c1904a1ce19322e91ac35af1ab07466440c37",
        "run_number": "42",
        "repository": "octocat/Hello-World",
        "event": {"inputs": {"suffix": "prod"}},
    },
    inputs={"suffix": "prod", "dry": True},
    env={"IMAGE_TAG": "v9", "EMPTY": ""},
)


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        pytest.param("null", None, id="literal-null"),
        pytest.param("true", True, id="literal-true"),
        pytest.param("false", False, id="literal-false"),
        pytest.param("42", 42.0, id="literal-int"),
        pytest.param("-9.5", -9.5, id="literal-negative-float"),
        pytest.param("0xff", 255.0, id="literal-hex"),
        pytest.param("2e3", 2000.0, id="literal-exponent"),
        pytest.param("'it''s'", "it's", id="literal-string-escaped-quote"),
        pytest.param("github.event_name", "push", id="context-property"),
        pytest.param("github['ref']", "refs/heads/main", id="context-index-string"),
        pytest.param("GITHUB.EVENT_NAME", "push", id="context-names-case-insensitive"),
        pytest.param("github.event.inputs.suffix", "prod", id="event-inputs"),
        pytest.param("inputs.suffix", "prod", id="inputs-context"),
        pytest.param("inputs.missing", None, id="missing-input-is-null"),
        pytest.param("env.IMAGE_TAG", "v9", id="env-context"),
        pytest.param("env.image_tag", "v9", id="env-case-insensitive"),
        pytest.param("env.NOPE", None, id="missing-env-is-null"),
        pytest.param("github.ref == 'REFS/HEADS/MAIN'", True, id="string-equality-ignores-case"),
        pytest.param("github.ref != 'refs/heads/main'", False, id="not-equal"),
        pytest.param("!github.ref", False, id="not-of-truthy-string"),
        pytest.param("!env.EMPTY", True, id="not-of-empty-string"),
        pytest.param("'a' && 'b'", "b", id="and-returns-right-operand"),
        pytest.param("'' && 'b'", "", id="and-returns-falsy-left"),
        pytest.param("'' || 'b'", "b", id="or-returns-right-operand"),
        pytest.param("'a' || 'b'", "a", id="or-returns-truthy-left"),
        pytest.param("inputs.suffix == 'prod' && 'yes' || 'no'", "yes", id="ternary-idiom"),
        pytest.param("!(1 == 2) && (true || false)", True, id="parentheses"),
        pytest.param("1 < 2", True, id="less-than"),
        pytest.param("'abc' < 'ABD'", True, id="string-order-ignores-case"),
        pytest.param("2 >= '2'", True, id="number-vs-numeric-string"),
        pytest.param("null == 0", True, id="null-coerces-to-zero"),
        pytest.param("'' == 0", True, id="empty-string-coerces-to-zero"),
        pytest.param("true == 1", True, id="true-coerces-to-one"),
        pytest.param("'abc' == 0", False, id="nan-never-equal"),
        pytest.param("'abc' != 'abc'", False, id="equal-strings-not-unequal"),
        pytest.param("github.run_number == 42", True, id="numeric-string-equals-number"),
        pytest.param("inputs.dry == true", True, id="boolean-input"),
        pytest.param("format('{0}-{1}', 'a', 1)", "a-1", id="format-args"),
        pytest.param("format('{{{0}}}', 'x')", "{x}", id="format-escaped-braces"),
        pytest.param("format('refs/heads/{0}', 'main') == github.ref", True, id="format-compare"),
        pytest.param("startsWith(github.ref, 'REFS/heads/')", True, id="startswith-ignores-case"),
        pytest.param("startswith(github.ref, 'refs/tags/')", False, id="function-name-any-case"),
        pytest.param("endsWith(github.repository, 'world')", True, id="endswith"),
        pytest.param("contains('Hello', 'ELL')", True, id="contains-string"),
        pytest.param("contains(github.event.inputs, 'x')", False, id="contains-object-as-string"),
        pytest.param("!startsWith(github.ref, 'refs/tags/v0.')", True, id="readme-major-zero"),
    ],
)
def test_evaluate(expression: str, expected: object) -> None:
    assert evaluate(expression, CONTEXT) == expected


@pytest.mark.parametrize(
    ("expression", "message"),
    [
        pytest.param("secrets.TOKEN", "unknown context 'secrets'", id="unknown-context"),
        pytest.param("gihub.ref", "did you mean 'github'?", id="context-typo-suggestion"),
        pytest.param("github.actor", "unknown property 'github.actor'", id="unknown-github-prop"),
        pytest.param("github.ref_nam", "did you mean 'github.ref_name'?", id="github-prop-typo"),
        pytest.param("github.event.pull_request", "github.event.pull_request", id="event-prop"),
        pytest.param("toJSON(github)", "unknown function 'toJSON()'", id="unknown-function"),
        pytest.param("startWith(github.ref, 'a')", "did you mean 'startsWith'?", id="fn-typo"),
        pytest.param("contains('a')", "takes 2 arguments", id="wrong-arity"),
        pytest.param("format()", "needs at least a format string", id="format-no-args"),
        pytest.param("format('{1}', 'a')", "has no argument {1}", id="format-missing-arg"),
        pytest.param("format('{x}')", "bad placeholder", id="format-bad-placeholder"),
        pytest.param("'a' ==", "unexpected end", id="dangling-operator"),
        pytest.param("('a'", "expected ')'", id="unclosed-paren"),
        pytest.param("a b", "unknown context 'a'", id="bare-word"),
        pytest.param("1 + 2", "unexpected '+'", id="unsupported-operator"),
        pytest.param("", "empty expression", id="empty"),
        pytest.param("'a' = 'b'", "unexpected '='", id="single-equals"),
    ],
)
def test_evaluate_errors(expression: str, message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        evaluate(expression, CONTEXT)
    assert message in str(caught.value)
    assert "\n" not in str(caught.value)


def test_check_validates_without_values() -> None:
    check("github.event_name == 'push' && inputs.anything == env.WHATEVER")
    with pytest.raises(ConfigError, match=r"unknown property 'github\.nope'"):
        check("github.nope")


@pytest.mark.parametrize(
    ("value", "number"),
    [
        pytest.param(None, 0.0, id="null"),
        pytest.param(True, 1.0, id="true"),
        pytest.param(False, 0.0, id="false"),
        pytest.param("", 0.0, id="empty"),
        pytest.param(" 12 ", 12.0, id="padded"),
        pytest.param("1.5e2", 150.0, id="exponent"),
        pytest.param("0x10", math.nan, id="hex-string-is-nan"),
        pytest.param("abc", math.nan, id="word"),
        pytest.param({"a": 1}, math.nan, id="object"),
    ],
)
def test_to_number(value: object, number: float) -> None:
    result = to_number(value)  # type: ignore[arg-type]
    assert (math.isnan(result) and math.isnan(number)) or result == number


@pytest.mark.parametrize(
    ("value", "text"),
    [
        pytest.param(None, "", id="null"),
        pytest.param(True, "true", id="true"),
        pytest.param(3.0, "3", id="integral-float"),
        pytest.param(2.5, "2.5", id="float"),
        pytest.param(math.nan, "NaN", id="nan"),
        pytest.param({"a": 1}, "Object", id="object"),
        pytest.param(["a"], "Array", id="array"),
    ],
)
def test_to_string(value: object, text: str) -> None:
    assert to_string(value) == text  # type: ignore[arg-type]


def test_truthiness_and_loose_equality() -> None:
    assert [truthy(v) for v in (None, False, 0.0, "", math.nan)] == [False] * 5
    assert [truthy(v) for v in (True, 1.0, "0", {}, [])] == [True] * 5
    obj = {"a": 1}
    assert loose_equals(obj, obj)
    assert not loose_equals(obj, {"a": 1})


def test_substitute_whole_line_before_splitting() -> None:
    line = "type=raw,value=latest,enable=${{ github.ref == format('refs/heads/{0}', 'main') }}"
    assert substitute(line, CONTEXT) == "type=raw,value=latest,enable=true"


def test_substitute_several_and_renders_types() -> None:
    text = "${{ env.IMAGE_TAG }}-${{ github.run_number }}-${{ inputs.dry }}-${{ env.NOPE }}."
    assert substitute(text, CONTEXT) == "v9-42-true-."


def test_find_spans_ignores_braces_inside_strings() -> None:
    spans = find_spans("a ${{ format('}}{0}', 'x') }} b")
    assert [span.expression for span in spans] == [" format('}}{0}', 'x') "]
    assert substitute("a ${{ format('}}{0}', 'x') }} b", CONTEXT) == "a }x b"


def test_unterminated_expression() -> None:
    with pytest.raises(ConfigError, match="unterminated"):
        substitute("value=${{ github.ref", CONTEXT)
