"""A small, safe evaluator for GitHub Actions `${{ ... }}` expressions.

Tag rules live in pyproject.toml rather than in a workflow, so nothing substitutes
`${{ ... }}` before the rules are read. This module does that substitution itself, with
GitHub's documented semantics and without `eval`:

* literals: `null`, `true`, `false`, numbers (`1`, `-2.5`, `0xff`, `1e3`) and strings in
  single quotes (`'it''s'`);
* contexts: `github.*`, `inputs.*` and `env.*`, reached with `.name` or `['name']`;
* operators, tightest first: `( )`, `[ ]`, `.`, `!`, `< <= > >=`, `== !=`, `&&`, `||`;
  `&&` and `||` return one of their operands, as in GitHub;
* comparisons coerce mismatched types to numbers and compare strings case-insensitively;
* functions: `format()`, `startsWith()`, `endsWith()`, `contains()` (names are
  case-insensitive, as in GitHub).

An unknown context, `github` property or function is a `ConfigError`, never a silent empty
string, because a rule that quietly renders `''` would tag the wrong images.
"""

from __future__ import annotations

import difflib
import math
import re
import types
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeAlias

from buildtasks.errors import ConfigError

Value: TypeAlias = bool | float | str | Mapping[str, Any] | Sequence[Any] | None

#: The `github` context properties this evaluator knows (GitHub's names).
GITHUB_PROPERTIES = (
    "event_name",
    "ref",
    "ref_name",
    "ref_type",
    "sha",
    "run_number",
    "run_id",
    "repository",
    "repository_owner",
    "server_url",
    "base_ref",
    "head_ref",
    "event",
)
#: The `github.event` properties this evaluator knows.
EVENT_PROPERTIES = ("inputs",)
CONTEXTS = ("github", "inputs", "env")
#: Known functions (lowercase) and their arity; `format` takes one or more arguments.
FUNCTIONS: Mapping[str, int | None] = types.MappingProxyType(
    {"format": None, "startswith": 2, "endswith": 2, "contains": 2}
)
_FUNCTION_NAMES = ("format", "startsWith", "endsWith", "contains")


@dataclass(frozen=True)
class ExpressionContext:
    """The values `${{ ... }}` can read: the `github`, `inputs` and `env` contexts."""

    github: Mapping[str, Any] = field(default_factory=dict)
    inputs: Mapping[str, Any] = field(default_factory=dict)
    env: Mapping[str, str] = field(default_factory=dict)


# ── syntax tree ──────────────────────────────────────────────────────────────


@dataclass(frozen=True)
class _Literal:
    value: Value


@dataclass(frozen=True)
class _Context:
    name: str


@dataclass(frozen=True)
class _Member:
    target: Any
    name: str


@dataclass(frozen=True)
class _Index:
    target: Any
    index: Any


@dataclass(frozen=True)
class _Not:
    operand: Any


@dataclass(frozen=True)
class _Binary:
    op: str
    left: Any
    right: Any


@dataclass(frozen=True)
class _Call:
    name: str
    args: tuple[Any, ...]


# ── tokenizer ────────────────────────────────────────────────────────────────

_TOKEN = re.compile(
    r"""
    (?P<ws>\s+)
    | (?P<string>'(?:[^']|'')*')
    | (?P<number>0x[0-9a-fA-F]+|(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][-+]?[0-9]+)?)
    | (?P<ident>[A-Za-z_][A-Za-z0-9_-]*)
    | (?P<op>==|!=|<=|>=|&&|\|\||[()\[\].,!<>-])
    """,
    re.VERBOSE,
)


@dataclass(frozen=True)
class _Token:
    kind: str
    text: str


def _tokenize(source: str) -> list[_Token]:
    tokens: list[_Token] = []
    pos = 0
    while pos < len(source):
        match = _TOKEN.match(source, pos)
        if match is None:
            raise ConfigError(f"unexpected {source[pos]!r} in expression '${{{{ {source} }}}}'")
        kind = match.lastgroup or ""
        if kind != "ws":
            tokens.append(_Token(kind, match.group()))
        pos = match.end()
    return tokens


# ── parser ───────────────────────────────────────────────────────────────────


class _Parser:
    """Recursive-descent parser over GitHub's operator precedence."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.tokens = _tokenize(source)
        self.pos = 0

    def fail(self, message: str, hint: str = "") -> ConfigError:
        where = f"'${{{{ {self.source.strip()} }}}}'"
        return ConfigError(f"{message} in expression {where}{hint}")

    def peek(self) -> _Token | None:
        return self.tokens[self.pos] if self.pos < len(self.tokens) else None

    def accept(self, text: str) -> bool:
        token = self.peek()
        if token is not None and token.kind == "op" and token.text == text:
            self.pos += 1
            return True
        return False

    def expect(self, text: str) -> None:
        if not self.accept(text):
            token = self.peek()
            found = f"'{token.text}'" if token else "the end"
            raise self.fail(f"expected '{text}' but found {found}")

    def parse(self) -> Any:
        if not self.tokens:
            raise self.fail("empty expression")
        node = self.parse_or()
        token = self.peek()
        if token is not None:
            raise self.fail(f"unexpected '{token.text}'")
        return node

    def parse_or(self) -> Any:
        node = self.parse_and()
        while self.accept("||"):
            node = _Binary("||", node, self.parse_and())
        return node

    def parse_and(self) -> Any:
        node = self.parse_equality()
        while self.accept("&&"):
            node = _Binary("&&", node, self.parse_equality())
        return node

    def parse_equality(self) -> Any:
        node = self.parse_relational()
        while (op := self.accept_any("==", "!=")) is not None:
            node = _Binary(op, node, self.parse_relational())
        return node

    def parse_relational(self) -> Any:
        node = self.parse_unary()
        while (op := self.accept_any("<", "<=", ">", ">=")) is not None:
            node = _Binary(op, node, self.parse_unary())
        return node

    def accept_any(self, *ops: str) -> str | None:
        for op in ops:
            if self.accept(op):
                return op
        return None

    def parse_unary(self) -> Any:
        if self.accept("!"):
            return _Not(self.parse_unary())
        return self.parse_postfix(self.parse_primary())

    def parse_postfix(self, node: Any) -> Any:
        while True:
            if self.accept("."):
                token = self.peek()
                if token is None or token.kind != "ident":
                    raise self.fail("expected a property name after '.'")
                self.pos += 1
                node = _Member(node, token.text)
            elif self.accept("["):
                index = self.parse_or()
                self.expect("]")
                if isinstance(index, _Literal) and isinstance(index.value, str):
                    node = _Member(node, index.value)
                else:
                    node = _Index(node, index)
            else:
                return node

    def parse_primary(self) -> Any:
        token = self.peek()
        if token is None:
            raise self.fail("unexpected end")
        self.pos += 1
        if token.kind == "string":
            return _Literal(token.text[1:-1].replace("''", "'"))
        if token.kind == "number":
            return _Literal(_parse_number_literal(token.text))
        if token.kind == "op" and token.text == "-":
            number = self.peek()
            if number is None or number.kind != "number":
                raise self.fail("'-' must start a number")
            self.pos += 1
            return _Literal(-_parse_number_literal(number.text))
        if token.kind == "op" and token.text == "(":
            node = self.parse_or()
            self.expect(")")
            return node
        if token.kind == "ident":
            return self.parse_identifier(token.text)
        raise self.fail(f"unexpected '{token.text}'")

    def parse_identifier(self, name: str) -> Any:
        keywords = {"true": True, "false": False, "null": None}
        if name in keywords:
            return _Literal(keywords[name])
        if name in ("NaN", "Infinity"):
            return _Literal(math.nan if name == "NaN" else math.inf)
        if self.accept("("):
            return self.parse_call(name)
        if name.lower() not in CONTEXTS:
            raise self.fail(f"unknown context '{name}'", _hint(name, CONTEXTS, "contexts"))
        return _Context(name.lower())

    def parse_call(self, name: str) -> _Call:
        lowered = name.lower()
        if lowered not in FUNCTIONS:
            hint = _hint(name, _FUNCTION_NAMES, "functions")
            raise self.fail(f"unknown function '{name}()'", hint)
        args: list[Any] = []
        if not self.accept(")"):
            args.append(self.parse_or())
            while self.accept(","):
                args.append(self.parse_or())
            self.expect(")")
        arity = FUNCTIONS[lowered]
        if arity is not None and len(args) != arity:
            raise self.fail(f"{name}() takes {arity} arguments, got {len(args)}")
        if arity is None and not args:
            raise self.fail(f"{name}() needs at least a format string")
        return _Call(lowered, tuple(args))


def _parse_number_literal(text: str) -> float:
    if text.lower().startswith("0x"):
        return float(int(text, 16))
    return float(text)


def _hint(name: str, choices: Sequence[str], what: str) -> str:
    lowered = {choice.lower(): choice for choice in choices}
    close = difflib.get_close_matches(name.lower(), list(lowered), n=1, cutoff=0.5)
    if close:
        return f" — did you mean '{lowered[close[0]]}'?"
    return f" — known {what}: {', '.join(choices)}"


# ── static checks ────────────────────────────────────────────────────────────


def check(expression: str) -> None:
    """Raise `ConfigError` if `expression` is malformed or names unknown things."""
    parser = _Parser(expression)
    _check_node(parser.parse(), parser)


def _check_node(node: Any, parser: _Parser) -> None:
    if isinstance(node, _Member):
        path = _member_path(node)
        if path is not None:
            _check_path(path, parser)
        _check_node(node.target, parser)
    elif isinstance(node, _Index):
        _check_node(node.target, parser)
        _check_node(node.index, parser)
    elif isinstance(node, _Not):
        _check_node(node.operand, parser)
    elif isinstance(node, _Binary):
        _check_node(node.left, parser)
        _check_node(node.right, parser)
    elif isinstance(node, _Call):
        for arg in node.args:
            _check_node(arg, parser)


def _member_path(node: Any) -> list[str] | None:
    names: list[str] = []
    while isinstance(node, _Member):
        names.append(node.name)
        node = node.target
    if isinstance(node, _Context):
        return [node.name, *reversed(names)]
    return None


def _check_path(path: list[str], parser: _Parser) -> None:
    if path[0] != "github" or len(path) < 2:
        return
    prop = path[1].lower()
    if prop not in GITHUB_PROPERTIES:
        hint = _hint(
            f"github.{prop}", [f"github.{name}" for name in GITHUB_PROPERTIES], "properties"
        )
        raise parser.fail(f"unknown property 'github.{path[1]}'", hint)
    if prop == "event" and len(path) > 2 and path[2].lower() not in EVENT_PROPERTIES:
        hint = _hint(f"github.event.{path[2]}", ["github.event.inputs"], "properties")
        raise parser.fail(f"unsupported property 'github.event.{path[2]}'", hint)


# ── evaluation ───────────────────────────────────────────────────────────────


def evaluate(expression: str, context: ExpressionContext) -> Value:
    """Evaluate one expression (the text between `${{` and `}}`) against `context`."""
    parser = _Parser(expression)
    node = parser.parse()
    _check_node(node, parser)
    return _Evaluator(context, parser).eval(node)


class _Evaluator:
    def __init__(self, context: ExpressionContext, parser: _Parser) -> None:
        self.roots: dict[str, Value] = {
            "github": context.github,
            "inputs": context.inputs,
            "env": context.env,
        }
        self.parser = parser

    def eval(self, node: Any) -> Value:
        if isinstance(node, _Literal):
            return node.value
        if isinstance(node, _Context):
            return self.roots[node.name]
        if isinstance(node, _Member):
            return _lookup(self.eval(node.target), node.name)
        if isinstance(node, _Index):
            return self.index(self.eval(node.target), self.eval(node.index))
        if isinstance(node, _Not):
            return not truthy(self.eval(node.operand))
        if isinstance(node, _Binary):
            return self.binary(node)
        if isinstance(node, _Call):
            return self.call(node.name, [self.eval(arg) for arg in node.args])
        raise TypeError(f"unknown node {node!r}")  # pragma: no cover

    def binary(self, node: _Binary) -> Value:
        left = self.eval(node.left)
        if node.op == "&&":
            return self.eval(node.right) if truthy(left) else left
        if node.op == "||":
            return left if truthy(left) else self.eval(node.right)
        right = self.eval(node.right)
        if node.op == "==":
            return loose_equals(left, right)
        if node.op == "!=":
            return not loose_equals(left, right)
        return _compare(node.op, left, right)

    def index(self, target: Value, index: Value) -> Value:
        if isinstance(target, Sequence) and not isinstance(target, str):
            number = to_number(index)
            if number.is_integer() and 0 <= number < len(target):
                return target[int(number)]
            return None
        if isinstance(target, Mapping):
            return _lookup(target, to_string(index))
        return None

    def call(self, name: str, args: list[Value]) -> Value:
        if name == "format":
            return _format(self.parser, to_string(args[0]), args[1:])
        if name == "contains":
            return _contains(args[0], args[1])
        haystack, needle = to_string(args[0]).casefold(), to_string(args[1]).casefold()
        if name == "startswith":
            return haystack.startswith(needle)
        return haystack.endswith(needle)


def _lookup(target: Value, name: str) -> Value:
    if not isinstance(target, Mapping):
        return None
    if name in target:
        return target[name]
    lowered = name.lower()
    for key, value in target.items():
        if key.lower() == lowered:
            return value
    return None


def _contains(search: Value, item: Value) -> bool:
    if isinstance(search, Sequence) and not isinstance(search, str):
        return any(loose_equals(element, item) for element in search)
    return to_string(item).casefold() in to_string(search).casefold()


def _format(parser: _Parser, template: str, args: Sequence[Value]) -> str:
    out: list[str] = []
    pos = 0
    while pos < len(template):
        char = template[pos]
        if template.startswith("{{", pos) or template.startswith("}}", pos):
            out.append(char)
            pos += 2
            continue
        if char == "}":
            raise parser.fail(f"format string '{template}' has an unmatched '}}'")
        if char == "{":
            end = template.find("}", pos)
            index = template[pos + 1 : end] if end != -1 else ""
            if not index.isdigit():
                raise parser.fail(f"format string '{template}' has a bad placeholder")
            if int(index) >= len(args):
                raise parser.fail(f"format string '{template}' has no argument {{{index}}}")
            out.append(to_string(args[int(index)]))
            pos = end + 1
            continue
        out.append(char)
        pos += 1
    return "".join(out)


# ── GitHub's type coercions ─────────────────────────────────────────────────

_JSON_NUMBER = re.compile(r"-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][-+]?[0-9]+)?")


def truthy(value: Value) -> bool:
    """Apply GitHub's truthiness: `false`, `0`, `''`, `null` and `NaN` are falsy."""
    if value is None or value is False:
        return False
    if isinstance(value, float | int):
        return value != 0 and not math.isnan(value)
    if isinstance(value, str):
        return value != ""
    return True


def to_number(value: Value) -> float:
    """Coerce like GitHub: null 0, booleans 1/0, JSON-number strings, else NaN."""
    if value is None:
        return 0.0
    if isinstance(value, bool):
        return 1.0 if value else 0.0
    if isinstance(value, float | int):
        return float(value)
    if isinstance(value, str):
        text = value.strip()
        if text == "":
            return 0.0
        if _JSON_NUMBER.fullmatch(text):
            return float(text)
        return math.nan
    return math.nan


def to_string(value: Value) -> str:
    """Render a value as GitHub does when it substitutes `${{ ... }}` into text."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float | int):
        return _number_text(float(value))
    if isinstance(value, str):
        return value
    if isinstance(value, Mapping):
        return "Object"
    return "Array"


def _number_text(number: float) -> str:
    if math.isnan(number):
        return "NaN"
    if math.isinf(number):
        return "Infinity" if number > 0 else "-Infinity"
    if number.is_integer() and abs(number) < 1e21:
        return str(int(number))
    return repr(number)


def _kind(value: Value) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, float | int):
        return "number"
    if isinstance(value, str):
        return "string"
    return "object"


def loose_equals(left: Value, right: Value) -> bool:
    """Compare like GitHub's `==`: same types directly (strings ignore case), else as numbers."""
    kind = _kind(left)
    if kind != _kind(right):
        return to_number(left) == to_number(right)
    if kind == "string":
        return str(left).casefold() == str(right).casefold()
    if kind == "number":
        return to_number(left) == to_number(right)
    if kind == "object":
        return left is right
    return left == right


def _compare(op: str, left: Value, right: Value) -> bool:
    if _kind(left) == _kind(right) == "string":
        a: Any = str(left).upper()
        b: Any = str(right).upper()
    elif "object" in (_kind(left), _kind(right)):
        return False
    else:
        a, b = to_number(left), to_number(right)
        if math.isnan(a) or math.isnan(b):
            return False
    return {"<": a < b, "<=": a <= b, ">": a > b, ">=": a >= b}[op]


# ── `${{ ... }}` in text ────────────────────────────────────────────────────


@dataclass(frozen=True)
class Span:
    """One `${{ ... }}` occurrence: `text[start:end]`, with the inner expression."""

    start: int
    end: int
    expression: str


def find_spans(text: str) -> tuple[Span, ...]:
    """Locate every `${{ ... }}` in `text`, honouring `}}` inside quoted strings."""
    spans: list[Span] = []
    pos = text.find("${{")
    while pos != -1:
        end = _closing(text, pos + 3)
        if end == -1:
            raise ConfigError(f"unterminated '${{{{' in '{text}' — close it with '}}}}'")
        spans.append(Span(pos, end + 2, text[pos + 3 : end]))
        pos = text.find("${{", end + 2)
    return tuple(spans)


def _closing(text: str, pos: int) -> int:
    in_string = False
    while pos < len(text):
        char = text[pos]
        if char == "'":
            in_string = not in_string
        elif not in_string and text.startswith("}}", pos):
            return pos
        pos += 1
    return -1


def has_expression(text: str) -> bool:
    """Tell whether `text` contains a `${{ ... }}` to substitute."""
    return "${{" in text


def check_text(text: str) -> None:
    """Raise `ConfigError` if any `${{ ... }}` in `text` is malformed or unknown."""
    for span in find_spans(text):
        check(span.expression)


def substitute(text: str, context: ExpressionContext) -> str:
    """Replace every `${{ ... }}` in `text` with its value rendered as a string."""
    out: list[str] = []
    pos = 0
    for span in find_spans(text):
        out.append(text[pos : span.start])
        out.append(to_string(evaluate(span.expression, context)))
        pos = span.end
    out.append(text[pos:])
    return "".join(out)


def replace_spans(text: str, replacement: str) -> str:
    """Replace every `${{ ... }}` in `text` with a fixed `replacement` string."""
    out: list[str] = []
    pos = 0
    for span in find_spans(text):
        out.append(text[pos : span.start])
        out.append(replacement)
        pos = span.end
    out.append(text[pos:])
    return "".join(out)
