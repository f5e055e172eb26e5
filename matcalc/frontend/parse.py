"""Stage 1: text -> Lark syntax tree, and `where` declarations -> Declaration records.

Only the grammar reads user text: nothing here evaluates it. The parser is Lark's standalone LALR parser of
grammar/matcalc.lark, generated into generated_parser.py (`python -m matcalc.frontend.generate_parser`), so that
start-up neither imports Lark nor loads a grammar; it is loaded once per process.
"""

from __future__ import annotations

import bisect
import difflib
import re
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache
from typing import TYPE_CHECKING

from ..core import ir
from ..core.constants import CONSTANTS
from ..core.errors import DeclarationError, ParseError, abbreviate
from ..core.functions import FUNCTION_ALIASES, FUNCTIONS, NOT_YET_FUNCTIONS

if TYPE_CHECKING:
    from .generated_parser import Lark, Tree

# No stage recurses over the depth of an expression; deeper nesting is refused up front only so that an
# absurd input fails fast, with a clear message.
MAX_NESTING = 10_000

KINDS = ("scalar", "vector", "matrix", "symmetric", "spd", "dim")
# The kinds of a symmetric matrix: spd (symmetric positive definite) is symmetric for every rule of the engine.
SYMMETRIC_KINDS = frozenset({"symmetric", "spd"})
RESERVED_NAMES = ir.RESERVED_NAMES
# Called like functions, but not functions.py's (they take two or more arguments): reserved as function names are.
OPERATOR_NAMES = ("kron", "commutation", "identity")


@dataclass(frozen=True)
class Declaration:
    """`name: kind(dims)`; dims are symbol names or positive integers, or empty when unknown; an inferred
    symbol's may be a product of them (ir.DimProduct: y in vec(X)^T y)."""

    name: str
    kind: str
    dims: tuple[ir.Dim, ...] = ()

    def __str__(self) -> str:
        dims = f"({', '.join(map(str, self.dims))})" if self.dims else ""
        return f"{self.name}: {self.kind}{dims}"


Declarations = dict[str, Declaration]


def grammar_text() -> str:
    """The grammar shipped in the wheel (matcalc/grammar), or the checkout's grammar/ folder, with the
    names of functions.FUNCTIONS written in for its placeholder %FUNCTION_NAMES%."""
    # only the parser's generator and its test read the grammar: these imports stay off the start-up path
    from importlib import resources
    from pathlib import Path

    try:
        text = resources.files("matcalc.grammar").joinpath("matcalc.lark").read_text(encoding="utf-8")
    except (ModuleNotFoundError, FileNotFoundError):
        source_tree = Path(__file__).resolve().parents[2] / "grammar" / "matcalc.lark"
        text = source_tree.read_text(encoding="utf-8")
    return text.replace("%FUNCTION_NAMES%", "|".join(map(re.escape, FUNCTIONS)))


@cache
def parser(program: bool = False) -> Lark:
    """The parser of expressions and declarations, or of programs.

    Programs have a parser of their own: in one LALR table, an expression's states would merge with a
    statement's, and a syntax error in an expression would list ';' among the tokens it expects.
    """
    from . import generated_parser  # loaded on the first parse: `import matcalc` alone stays light

    return generated_parser.program_parser() if program else generated_parser.expression_parser()


# Friendly names for the grammar's terminals in "expected ..." messages.
_TERMINAL_NAMES = {
    "NAME": "a name",
    "NUMBER": "a number",
    "FUNC": "a function",
    "FILL": "vector(c) or matrix(c)",
    "KRON": "a function",
    "COMMUTATION": "a function",
    "IDENTITY": "a function",
    "KRON_OP": "'⊗'",
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
    # `[]` stands in one place only (max(U, [], k), which _check_empty enforces): not offered as an operand
    names = set(names) - {"EMPTY"}
    if "MUL_OP" in names:  # wherever ⊗ may come, a product's operator may too: "an operator" says both
        names = set(names) - {"KRON_OP"}
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


def line_and_column(text: str, position: int) -> tuple[int, int]:
    """The line and column (both from 1) of a position in `text`."""
    return text.count("\n", 0, position) + 1, position - (text.rfind("\n", 0, position) + 1) + 1


def syntax_error(text: str, position: int, problem: str, expected: str = "", with_line: bool = False) -> ParseError:
    line, column = line_and_column(text, position)
    where = f"line {line}, column {column}" if with_line else f"column {column}"
    message = f"syntax error at {where}: {problem}\n{caret_line(text, position)}"
    if expected:
        message += f"\nexpected {expected}"
    return ParseError(message, text, position)


def _run(text: str, start: str, shown: str | None = None) -> Tree:
    """Parse `text` from the rule `start`. Errors quote `shown` (the text as the user wrote it, of the same
    length: a program's newlines become ';' before parsing) and, for a program, name the line."""
    from .generated_parser import UnexpectedCharacters, UnexpectedEOF, UnexpectedToken

    shown = text if shown is None else shown
    with_line = start == "start_program"
    try:
        return parser(program=with_line).parse(text, start=start)
    except UnexpectedCharacters as error:
        position = error.pos_in_stream or 0
        character = shown[position] if position < len(shown) else ""
        problem = f"unexpected character {character!r}"
        allowed = set(error.allowed or set())
        if "COMMA" in allowed and "COMMA" not in _accepted_before(text, start, position):
            allowed.discard("COMMA")  # the lexer allows it where LALR would reduce on it, but only fail after
        raise syntax_error(shown, position, problem, _expected(allowed), with_line) from None
    except UnexpectedEOF as error:
        raise syntax_error(shown, len(shown), "unexpected end of the input", _expected(set(error.expected)),
                           with_line) from None
    except UnexpectedToken as error:
        at_end = error.token.type == "$END" or error.token.start_pos is None
        position = len(shown) if at_end else error.token.start_pos
        if at_end:
            problem = "unexpected end of the input"
        elif shown[position] == "\n":  # a newline that ends a statement
            problem = "unexpected end of the line"
        else:
            problem = f"unexpected {str(error.token)!r}"
        expected = error.accepts or error.expected
        if error.token.type == "COMMA" and not at_end:
            expected = _accepted_before(text, start, position) or expected
        raise syntax_error(shown, position, problem, _expected(expected), with_line) from None


def _accepted_before(text: str, start: str, position: int) -> set[str]:
    """The tokens the parser accepts just before `position`. A ',' separates kron's and commutation's arguments,
    so LALR reduces an expression on it before it fails (exp(x, y) ends `exp(x`); what may come next is what
    could have come instead of the ',', before those reductions, as for any other unexpected token."""
    from .generated_parser import LarkError

    try:
        interactive = parser(program=start == "start_program").parse_interactive(text[:position], start=start)
        interactive.exhaust_lexer()
        return set(interactive.accepts())
    except LarkError:
        return set()


def _check_nesting(tree: Tree, text: str, with_line: bool = False) -> None:
    from .generated_parser import Tree

    stack = [(tree, 1)]
    while stack:
        current, depth = stack.pop()
        if current.data == "postfix":  # each postfix operator (x^T^T..., a^2^2...) is one more level
            depth += len(current.children) - 1
        if depth > MAX_NESTING:
            position = getattr(current.meta, "start_pos", 0) or 0
            raise syntax_error(text, position, f"the expression is nested deeper than {MAX_NESTING:,} levels",
                               with_line=with_line)
        stack.extend((child, depth + 1) for child in current.children if isinstance(child, Tree))


def _parenthesized(text: str, start: int) -> str:
    """The text of the parenthesis opening at `start`, to its matching ')' (or the end of the line)."""
    depth = 0
    for position in range(start, len(text)):
        character = text[position]
        depth += 1 if character == "(" else -1 if character == ")" else 0
        if depth == 0 or character == "\n":
            return text[start:position + 1].strip()
    return text[start:]


def resembles_function(name: str) -> bool:
    """Whether `name` reads as a function's (`pinv`, `trace`, `sigmod`): a hint never suggests declaring it as a
    variable, which would silently give another function."""
    return name in FUNCTION_ALIASES or name in NOT_YET_FUNCTIONS or \
        bool(len(name) > 2 and difflib.get_close_matches(name, list(FUNCTIONS), n=1, cutoff=0.8))


def call_problem(name: str, argument: str) -> str:
    """What an error says of `name(...)` when `name` is not a function of the language. A hint is given only if
    following it keeps the meaning the user most likely had: a name like a function's gets the function (or is
    said to be missing), never a declaration; any other name gets the product, spelled with a space or `*`."""
    if name in FUNCTION_ALIASES:
        return f"unknown function '{name}'; did you mean '{FUNCTION_ALIASES[name]}'?"
    if name in NOT_YET_FUNCTIONS:
        return f"'{name}' ({NOT_YET_FUNCTIONS[name]}) is not a function of the language yet"
    close = difflib.get_close_matches(name, list(FUNCTIONS), n=1) if len(name) > 2 else []
    if close:
        return f"unknown function '{name}'; did you mean '{close[0]}'?"
    argument = abbreviate(argument)
    return (f"'{name}' is not a function, and a name right before '(' is a call; for a product, write "
            f"`{name} {argument}` or `{name}*{argument}`")


def _check_calls(tree: Tree, code: str, shown: str, with_line: bool = False) -> None:
    """Refuse a name written right before '(' (no space): `σ(W x + b)` is not σ times (W x + b), nor `A pinv(X)` A
    times pinv times X. The grammar reads the functions' names as FUNC, so a NAME token right before '(' is a call of
    something that is not a function; `a (b + c)` and `a*(b + c)` are products. `code` is the text parsed (its
    positions hold in `shown`, the text as the user wrote it)."""
    if "(" not in code:
        return
    calls = [token for node in tree.iter_subtrees_topdown() if node.data == "name"
             for token in node.children[:1] if code[token.end_pos:token.end_pos + 1] == "("]
    if calls:
        token = min(calls, key=lambda token: token.start_pos)
        problem = call_problem(str(token), _parenthesized(shown, token.end_pos))
        raise syntax_error(shown, token.start_pos, problem, with_line=with_line)


def _check_empty(tree: Tree, shown: str, with_line: bool = False) -> None:
    """Refuse MATLAB's `[]` anywhere but as the middle argument of max(U, [], k) or min(U, [], k): it is no value."""
    if "[" not in shown:
        return
    allowed = {id(node.children[2]) for node in tree.iter_subtrees_topdown()
               if node.data == "call" and len(node.children) == 4 and FUNCTIONS[str(node.children[0])].axis_after_empty}
    misplaced = [node.children[0] for node in tree.iter_subtrees_topdown()
                 if node.data == "empty_matrix" and id(node) not in allowed]
    if misplaced:
        token = min(misplaced, key=lambda token: token.start_pos)
        names = " and ".join(f"`{name}(U, [], k)`" for name, spec in FUNCTIONS.items() if spec.axis_after_empty)
        raise syntax_error(shown, token.start_pos, f"`[]` may stand only as the middle argument of {names} (the "
                           f"max or min of each column, k = 1, or of each row, k = 2), as in MATLAB",
                           with_line=with_line)


_BRACKETS = {"(": ")", "{": "}"}
_SCANNED = re.compile(r"[(){}#\n\x00]")


def _scan(text: str) -> Iterator[tuple[int, str, int]]:
    """(position, character, bracket depth after it) of each bracket, newline and NUL outside comments."""
    depth = 0
    in_comment = False
    for match in _SCANNED.finditer(text):
        character = match.group()
        if character == "\x00":
            yield match.start(), character, depth
        elif in_comment:
            in_comment = character != "\n"
            if not in_comment:
                yield match.start(), character, depth
        elif character == "#":
            in_comment = True
        else:
            depth += 1 if character in "({" else -1 if character in ")}" else 0
            yield match.start(), character, depth


def _precheck(text: str, with_line: bool = False) -> None:
    """Nesting depth and NUL bytes, checked before the parser runs so that a pathological input fails fast.

    The expression itself is one level and each bracket adds one, as in _check_nesting: `(x)` has two.
    """
    for position, character, depth in _scan(text):
        if character == "\x00":
            raise syntax_error(text, position, "unexpected NUL character", with_line=with_line)
        if depth + 1 > MAX_NESTING:
            raise syntax_error(text, position, f"parentheses are nested deeper than {MAX_NESTING:,} levels",
                               with_line=with_line)


def parse_tree(text: str) -> Tree:
    """The Lark syntax tree of an expression, or a ParseError with the position and what was expected."""
    if not isinstance(text, str):
        raise ParseError(f"an expression must be text, not {type(text).__name__}")
    if not text.strip():
        raise ParseError("the expression is empty")
    _precheck(text)
    tree = _run(text, "start_expr")
    _check_nesting(tree, text)
    _check_calls(tree, text, text)
    _check_empty(tree, text)
    return tree


# ---------------------------------------------------------------- programs

_COMMENT = re.compile(r"#[^\n]*")


def _blank_comments(text: str) -> str:
    """`text` with each comment's characters replaced by spaces: the same length, so positions hold."""
    return _COMMENT.sub(lambda match: " " * len(match.group()), text)


def is_program(text: str) -> bool:
    """Whether `text` is a program (it has a definition `=` or a separator `;`), not a single expression."""
    if not isinstance(text, str):
        return False
    code = _blank_comments(text)
    return "=" in code or ";" in code


def prepare_program(text: str) -> str:
    """The text the parser reads for a program: comments blanked, and each newline at bracket depth 0 made
    a ';' (inside brackets an expression may span lines). Of the same length, so every position holds."""
    code = list(_blank_comments(text))
    for position, character, depth in _scan(text):
        if character == "\n" and depth <= 0:
            code[position] = ";"
    return "".join(code)


@dataclass(frozen=True)
class Statement:
    """One statement of a program: `name = expr`, or the bare output expression (name None)."""

    name: str | None
    expr: Tree
    position: int  # of the defined name, or of the bare expression
    line: int


def program_error(text: str, position: int, problem: str) -> ParseError:
    """A ParseError about a program's statement, with its line, column and a caret."""
    line, column = line_and_column(text, position)
    return ParseError(f"at line {line}, column {column}: {problem}\n{caret_line(text, position)}", text, position)


# A statement's defined name: the grammar reads a function's name as a function, so these are found first.
_DEFINED_NAME = re.compile(r"(?:^|;)[ \t\f\r\n]*([A-Za-z_\u0370-\u03ff][A-Za-z0-9_\u0370-\u03ff]*)[ \t\f\r\n]*=")


def reserved_because(name: str) -> str:
    """What a reserved name (ir.RESERVED_NAMES) stands for, as an error says it."""
    if name in CONSTANTS:
        return f"is reserved for the constant {name}"
    return "is reserved for the identity matrix"


def _reserved_because(name: str, dimensions: set[str]) -> str | None:
    """Why `name` cannot be defined, or None."""
    if name in RESERVED_NAMES:
        return reserved_because(name)
    if name in ("vector", "matrix"):
        return f"is the constant {name}(c)"
    if name in FUNCTIONS or name in OPERATOR_NAMES:
        return "is a function"
    if name in dimensions:
        return "is a declared dimension (it stands for its size)"
    return None


def parse_statements(text: str, declarations: Declarations | None = None) -> list[Statement]:
    """The statements of a program, in order, checked: only the last may be a bare expression, a name is
    defined once and only after its definition is used (so no definition refers to itself), and no
    definition takes the name of a function, a declared dimension or the identity. Each error is a
    ParseError with the line and column.
    """
    if not isinstance(text, str):
        raise ParseError(f"a program must be text, not {type(text).__name__}")
    if not _blank_comments(text).replace(";", " ").strip():
        raise ParseError("the program is empty")
    _precheck(text, with_line=True)
    code = prepare_program(text)
    dimensions = dimension_names(declarations or {})
    for match in _DEFINED_NAME.finditer(code):
        if match.group(1) in FUNCTIONS or match.group(1) in ("vector", "matrix", *OPERATOR_NAMES):
            name = match.group(1)
            raise program_error(text, match.start(1), f"'{name}' {_reserved_because(name, dimensions)} "
                                                      f"and cannot be defined")
    tree = _run(code, "start_program", shown=text)
    _check_calls(tree, code, text, with_line=True)
    _check_empty(tree, text, with_line=True)
    newlines = [match.start() for match in re.finditer("\n", text)]
    statements: list[Statement] = []
    defined_at: dict[str, int] = {}  # the index of each name's definition
    for index, statement_tree in enumerate(tree.children):
        if statement_tree.data == "definition":
            token, expr = statement_tree.children
            name, position = str(token), token.start_pos
        else:
            (expr,) = statement_tree.children
            name, position = None, statement_tree.meta.start_pos
        line = bisect.bisect_left(newlines, position) + 1  # as line_and_column, in log time for a long program
        if name is None and index < len(tree.children) - 1:
            raise program_error(text, position, "only the last statement may be a bare expression (the output); "
                                                "give this one a name: `name = ...`")
        reserved = _reserved_because(name, dimensions) if name is not None else None
        if reserved:
            raise program_error(text, position, f"'{name}' {reserved} and cannot be defined")
        if name in defined_at:
            first = statements[defined_at[name]].line
            raise program_error(text, position, f"'{name}' is defined twice (first at line {first})")
        _check_nesting(expr, text, with_line=True)
        statements.append(Statement(name, expr, position, line))
        if name is not None:
            defined_at[name] = index
    for index, statement in enumerate(statements):
        uses = (node.children[0] for node in statement.expr.iter_subtrees_topdown() if node.data == "name")
        for use in uses:
            at = defined_at.get(str(use))
            if at is None or at < index:  # an input, or an earlier definition
                continue
            if at == index:
                raise program_error(text, use.start_pos, f"the definition of '{use}' uses '{use}' itself (a cycle)")
            raise program_error(text, use.start_pos, f"'{use}' is used before its definition (it is defined "
                                                     f"later, at line {statements[at].line})")
    return statements


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
    dims: list[ir.Dim] = []
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
    expected_count = {"scalar": (0,), "vector": (0, 1), "matrix": (0, 2), "symmetric": (0, 1), "spd": (0, 1),
                      "dim": (0,)}[kind]
    if len(dims) not in expected_count:
        counts = " or ".join(str(c) for c in expected_count if c)
        raise DeclarationError(f"'{kind}' takes {counts or 'no'} dimension(s), got {len(dims)}: "
                               f"{', '.join(variables)}: {kind}({', '.join(map(str, dims))})")
    out = []
    for variable in variables:
        if variable in RESERVED_NAMES:
            raise DeclarationError(f"'{variable}' {reserved_because(variable)} and cannot be declared")
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
    text = _blank_comments(where).replace("\n", ";")
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
    names = {name for decl in declarations.values() for d in decl.dims for name in ir.dim_names(d)}
    return names | {decl.name for decl in declarations.values() if decl.kind == "dim"}


def _check_dimension_names(declarations: Declarations) -> None:
    """A name is either a variable or a dimension: `n` in an expression means the size of dimension n."""
    dims = dimension_names(declarations)
    for declaration in declarations.values():
        if declaration.kind != "dim" and declaration.name in dims:
            raise DeclarationError(f"'{declaration.name}' is declared as a variable ({declaration}) and used as a "
                                   f"dimension; a dimension's name stands for its size, so it cannot be a variable")
