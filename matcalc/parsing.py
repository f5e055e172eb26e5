"""Stage 1: text -> Lark syntax tree, and `where` declarations -> Declaration records.

Only the grammar reads user text: nothing here evaluates it. The Lark parser is built once per
process (and cached on disk by Lark between processes).
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass
from functools import cache
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING

from .errors import DeclarationError, ParseError

if TYPE_CHECKING:
    from lark import Lark, Tree

# No stage recurses over the depth of an expression; deeper nesting is refused up front only so that an
# absurd input fails fast, with a clear message.
MAX_NESTING = 10_000

KINDS = ("scalar", "vector", "matrix", "symmetric", "dim")
RESERVED_NAMES = frozenset({"I", "eye"})


@dataclass(frozen=True)
class Declaration:
    """`name: kind(dims)`; dims are symbol names or positive integers, or empty when unknown."""

    name: str
    kind: str
    dims: tuple[str | int, ...] = ()

    def __str__(self) -> str:
        dims = f"({', '.join(map(str, self.dims))})" if self.dims else ""
        return f"{self.name}: {self.kind}{dims}"


Declarations = dict[str, Declaration]


def grammar_text() -> str:
    """The grammar shipped in the wheel (matcalc/grammar), or the checkout's grammar/ folder."""
    try:
        return resources.files("matcalc.grammar").joinpath("matcalc.lark").read_text(encoding="utf-8")
    except (ModuleNotFoundError, FileNotFoundError):
        source_tree = Path(__file__).resolve().parent.parent / "grammar" / "matcalc.lark"
        return source_tree.read_text(encoding="utf-8")


@cache
def parser() -> Lark:
    from lark import Lark

    return Lark(
        grammar_text(),
        parser="lalr",
        start=["start_expr", "start_declarations"],
        propagate_positions=True,
        maybe_placeholders=True,
        cache=True,
    )


# Friendly names for the grammar's terminals in "expected ..." messages.
_TERMINAL_NAMES = {
    "NAME": "a name",
    "NUMBER": "a number",
    "FUNC": "a function",
    "FILL": "vector(c) or matrix(c)",
    "SIGN": "'+' or '-'",
    "MUL_OP": "an operator (* / .* ./)",
    "TRANSPOSE": "a transpose (')",
    "_SEP": "';'",
    "$END": "the end of the input",
}


def _describe_terminal(name: str) -> str:
    if name in _TERMINAL_NAMES:
        return _TERMINAL_NAMES[name]
    try:
        pattern = parser().get_terminal(name).pattern
    except KeyError:
        return name
    return f"'{pattern.value}'" if pattern.type == "str" else name


def _expected(names: set[str] | frozenset[str]) -> str:
    described = sorted({_describe_terminal(n) for n in names})
    if not described:
        return ""
    if len(described) == 1:
        return described[0]
    return ", ".join(described[:-1]) + " or " + described[-1]


def caret_line(text: str, position: int) -> str:
    """The line of `text` holding `position`, and a caret under it."""
    start = text.rfind("\n", 0, position) + 1
    end = text.find("\n", position)
    line = text[start : end if end != -1 else len(text)]
    column = position - start
    if len(line) > 100:  # keep the window around the error readable
        cut = max(0, column - 50)
        line, column = line[cut : cut + 100], column - cut
    return f"  {line}\n  {' ' * column}^"


def syntax_error(text: str, position: int, problem: str, expected: str = "") -> ParseError:
    column = position - (text.rfind("\n", 0, position) + 1) + 1
    message = f"syntax error at column {column}: {problem}\n{caret_line(text, position)}"
    if expected:
        message += f"\nexpected {expected}"
    return ParseError(message, text, position)


def _run(text: str, start: str) -> Tree:
    from lark.exceptions import UnexpectedCharacters, UnexpectedEOF, UnexpectedToken

    try:
        return parser().parse(text, start=start)
    except UnexpectedCharacters as error:
        position = error.pos_in_stream or 0
        character = text[position] if position < len(text) else ""
        problem = f"unexpected character {character!r}"
        raise syntax_error(text, position, problem, _expected(error.allowed or set())) from None
    except UnexpectedEOF as error:
        raise syntax_error(text, len(text), "unexpected end of the input", _expected(set(error.expected))) from None
    except UnexpectedToken as error:
        at_end = error.token.type == "$END" or error.token.start_pos is None
        position = len(text) if at_end else error.token.start_pos
        problem = "unexpected end of the input" if at_end else f"unexpected {str(error.token)!r}"
        raise syntax_error(text, position, problem, _expected(error.accepts or error.expected)) from None


def _check_nesting(tree: Tree, text: str) -> None:
    from lark import Tree

    stack = [(tree, 1)]
    while stack:
        current, depth = stack.pop()
        if current.data == "postfix":  # each postfix operator (x^T^T..., a^2^2...) is one more level
            depth += len(current.children) - 1
        if depth > MAX_NESTING:
            position = getattr(current.meta, "start_pos", 0) or 0
            raise syntax_error(text, position, f"the expression is nested deeper than {MAX_NESTING:,} levels")
        stack.extend((child, depth + 1) for child in current.children if isinstance(child, Tree))


_BRACKETS = {"(": ")", "{": "}"}


def _precheck(text: str) -> None:
    """Nesting depth and NUL bytes, checked before the parser runs so that a pathological input fails fast.

    The expression itself is one level and each bracket adds one, as in _check_nesting: `(x)` has two.
    """
    depth = 1
    for position, character in enumerate(text):
        if character in "({":
            depth += 1
            if depth > MAX_NESTING:
                raise syntax_error(text, position, f"parentheses are nested deeper than {MAX_NESTING:,} levels")
        elif character in ")}":
            depth -= 1
        if character == "\x00":
            raise syntax_error(text, position, "unexpected NUL character")


def parse_tree(text: str) -> Tree:
    """The Lark syntax tree of an expression, or a ParseError with the position and what was expected."""
    if not isinstance(text, str):
        raise ParseError(f"an expression must be text, not {type(text).__name__}")
    if not text.strip():
        raise ParseError("the expression is empty")
    _precheck(text)
    tree = _run(text, "start_expr")
    _check_nesting(tree, text)
    return tree


_NAME = re.compile(r"[A-Za-z_\u0370-\u03ff][A-Za-z0-9_\u0370-\u03ff]*\Z")


def _declaration_from_tree(declaration: Tree, text: str) -> list[Declaration]:
    names = [str(t) for t in declaration.children if getattr(t, "type", None) == "NAME"]
    *variables, kind = names
    kind_token = [t for t in declaration.children if getattr(t, "type", None) == "NAME"][-1]
    if kind not in KINDS:
        suggestion = difflib.get_close_matches(kind, KINDS, n=1)
        hint = f"; did you mean '{suggestion[0]}'?" if suggestion else f"; the kinds are {', '.join(KINDS)}"
        raise DeclarationError(f"unknown kind '{kind}' for {', '.join(variables)}{hint}\n"
                               f"{caret_line(text, kind_token.start_pos)}")
    dims: list[str | int] = []
    for dim_tree in declaration.children:
        if getattr(dim_tree, "data", None) == "dim":
            token = dim_tree.children[0]
            if token.type == "NUMBER":
                if not re.fullmatch(r"\d+", str(token)) or int(token) < 2:
                    raise DeclarationError(f"a dimension must be a name or a whole number of at least 2, "
                                           f"not {token} (a size-1 axis is a vector or scalar)")
                dims.append(int(token))
            else:
                dims.append(str(token))
    expected_count = {"scalar": (0,), "vector": (0, 1), "matrix": (0, 2), "symmetric": (0, 1), "dim": (0,)}[kind]
    if len(dims) not in expected_count:
        counts = " or ".join(str(c) for c in expected_count if c)
        raise DeclarationError(f"'{kind}' takes {counts or 'no'} dimension(s), got {len(dims)}: "
                               f"{', '.join(variables)}: {kind}({', '.join(map(str, dims))})")
    out = []
    for variable in variables:
        if variable in RESERVED_NAMES:
            raise DeclarationError(f"'{variable}' is reserved for the identity matrix and cannot be declared")
        out.append(Declaration(variable, kind, tuple(dims)))
    return out


def parse_declarations(where: str | dict[str, str] | Declarations | None) -> Declarations:
    """Declarations from 'A: symmetric; X: matrix(m, n)' or a dict {'A': 'symmetric', ...}."""
    if where is None:
        return {}
    if isinstance(where, dict):
        if all(isinstance(v, Declaration) for v in where.values()):
            return dict(where)
        parts = []
        for name, spec in where.items():
            if not isinstance(name, str) or not _NAME.match(name):
                raise DeclarationError(f"not a variable name: {name!r}")
            if not isinstance(spec, str):
                raise DeclarationError(f"the declaration of {name} must be text like 'matrix(m, n)', not {spec!r}")
            parts.append(f"{name}: {spec}")
        where = "; ".join(parts)
    if not isinstance(where, str):
        raise DeclarationError(f"declarations must be text or a dict, not {type(where).__name__}")
    text = where.replace("\n", ";")
    if len(text) > 100_000:
        raise DeclarationError("the declarations are longer than 100,000 characters")
    try:
        tree = _run(text, "start_declarations")
    except ParseError as error:
        raise DeclarationError(f"in the declarations: {error}") from None
    declarations: Declarations = {}
    for declaration_tree in tree.children:
        if declaration_tree is None:
            continue
        for declaration in _declaration_from_tree(declaration_tree, text):
            previous = declarations.get(declaration.name)
            if previous is not None and previous != declaration:
                raise DeclarationError(f"conflicting declarations of {declaration.name}: "
                                       f"'{previous}' and '{declaration}'")
            declarations[declaration.name] = declaration
    _check_dimension_names(declarations)
    return declarations


def dimension_names(declarations: Declarations) -> set[str]:
    """The declared dimension names: those in `matrix(m, n)`-style declarations and those declared `n: dim`."""
    names = {d for decl in declarations.values() for d in decl.dims if isinstance(d, str)}
    return names | {decl.name for decl in declarations.values() if decl.kind == "dim"}


def _check_dimension_names(declarations: Declarations) -> None:
    """A name is either a variable or a dimension: `n` in an expression means the size of dimension n."""
    dims = dimension_names(declarations)
    for declaration in declarations.values():
        if declaration.kind != "dim" and declaration.name in dims:
            raise DeclarationError(f"'{declaration.name}' is declared as a variable ({declaration}) and used as a "
                                   f"dimension; a dimension's name stands for its size, so it cannot be a variable")
