"""The front end of issue 8: programs with named intermediates, and any depth without recursion.

A program is definitions `name = expr` separated by ';' or newlines, the last statement being the
output. One inference types the whole program; a use of a defined name is an opaque leaf of its
definition's shape, and `inline` substitutes the definitions into one DAG.
"""

from __future__ import annotations

import contextlib
import inspect
import sys
import time
from collections.abc import Iterator

import pytest
from networks import nested_mlp

from matcalc import ParseError, ShapeError
from matcalc.core import ir
from matcalc.core.errors import ResultShapeError
from matcalc.frontend.parse import MAX_NESTING, parse_declarations, parse_tree
from matcalc.frontend.typecheck import MAX_DEPTH, ParsedProgram, inline, parse_program, parse_typed

MLP = "h1 = tanh(W1 x)\nh2 = tanh(W2 h1)\nL = sum(h2)"


def typed(text: str, where: str | dict | None = None) -> ir.Expr:
    return parse_typed(text, parse_declarations(where)).expr


def program(text: str, where: str | None = None, **options: object) -> ParsedProgram:
    return parse_program(text, parse_declarations(where), **options)  # type: ignore[arg-type]


def error_of(text: str, where: str | None = None, kind: type[Exception] = ParseError) -> str:
    with pytest.raises(kind) as caught:
        program(text, where)
    return str(caught.value)


@contextlib.contextmanager
def shallow_stack(frames: int = 120) -> Iterator[None]:
    """Allow only `frames` more Python frames than the caller's: a walk that recursed over a depth of
    1,000 would raise RecursionError. (The front end itself never changes the recursion limit.)"""
    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(len(inspect.stack(0)) + frames)
    try:
        yield
    finally:
        sys.setrecursionlimit(limit)


def mlp_program(layers: int) -> str:
    lines = ["h0 = x"] + [f"h{k} = tanh(W{k} h{k - 1} + b{k})" for k in range(1, layers + 1)]
    return "\n".join([*lines, f"L = sum(h{layers})"])


def residual_program(layers: int) -> str:
    lines = ["h0 = x"] + [f"h{k + 1} = h{k} + tanh(W{k} h{k})" for k in range(layers)]
    return "\n".join([*lines, f"loss = sum(h{layers})"])


# ---------------------------------------------------------------- programs


def test_a_three_line_program_binds_each_name_to_its_expression_over_earlier_names():
    parsed = program(MLP)
    h1 = ir.Var("h1", ("n", 1))
    h2 = ir.Var("h2", ("p", 1))
    W1, W2, x = ir.Var("W1", ("n", "m")), ir.Var("W2", ("p", "n")), ir.Var("x", ("m", 1))
    assert parsed.bindings == (
        ("h1", ir.func("tanh", ir.mul(W1, x))),
        ("h2", ir.func("tanh", ir.mul(W2, h1))),
        ("L", ir.func("sum", h2)),
    )
    assert parsed.output == "L" and parsed.is_program


def test_defined_names_are_not_inputs():
    assert set(program(MLP).symbols) == {"W1", "W2", "x"}


def test_semicolons_and_newlines_separate_statements_alike():
    assert program(MLP) == program(MLP.replace("\n", "; "))


def test_blank_lines_and_extra_separators_are_ignored():
    assert program("\n\n" + MLP.replace("\n", "\n\n;\n") + ";\n\n") == program(MLP)


def test_a_newline_inside_parentheses_continues_the_statement():
    assert program("h1 = tanh(W1\n x)\nh2 = tanh(W2 h1)\nL = sum(\n  h2\n)") == program(MLP)


def test_comments_run_to_the_end_of_the_line():
    commented = "# a two-layer network (input x)\nh1 = tanh(W1 x)  # first layer; = (\nh2 = tanh(W2 h1)\nL = sum(h2) #"
    assert program(commented) == program(MLP)


def test_a_comment_after_a_single_expression_is_ignored():
    assert typed("x^T A x  # a quadratic form (") == typed("x^T A x")


def test_a_bare_final_expression_is_the_output_named_f():
    parsed = program("h = W x; sum(h)")
    assert parsed.output == "f" and parsed.bindings[-1][0] == "f"


def test_the_output_takes_a_fresh_name_when_f_is_taken():
    assert program("h = W f; sum(h)").output == "f_1"
    assert program("f = W x; g = f; f .* g").output == "f_1"


def test_a_single_expression_gives_what_parse_typed_gives():
    text, where = "x^T A x + b^T x", "A: symmetric"
    parsed, single = program(text, where), parse_typed(text, parse_declarations(where))
    assert parsed == ParsedProgram((("f", single.expr),), "f", single.symbols, False)


def test_a_multi_line_single_expression_still_reads_as_one_expression():
    assert program("x^T A x\n + b^T x").bindings[0][1] == typed("x^T A x + b^T x")


def test_a_use_of_a_defined_name_has_the_definitions_shape_across_the_program():
    parsed = program("h = W x; y = A h")
    assert parsed.symbols["A"].dims[1] == parsed.symbols["W"].dims[0]


def test_a_later_definition_can_fix_an_earlier_dimension():
    parsed = program("h = W x\ny = h + b", "b: vector(3)")
    assert parsed.bindings[0][1].shape == (3, 1) and parsed.symbols["W"].dims[0] == 3


def test_expected_shape_pins_the_output():
    assert program("h = W x; y = h", expected_shape=("k", 1)).bindings[-1][1].shape == ("k", 1)
    with pytest.raises(ResultShapeError, match="a result of shape 1×1 was expected"):
        program("h = W x; y = h", expected_shape=(1, 1))


def test_extra_symbols_are_typed_as_inputs():
    assert program(MLP, extra_symbols=("b",)).symbols["b"].kind == "vector"


def test_a_declaration_of_a_defined_name_that_agrees_pins_its_dimensions():
    assert program("h = W x; L = sum(h)", "h: vector(k)").symbols["W"].dims[0] == "k"


def test_a_declaration_of_a_defined_name_that_disagrees_is_a_shape_error_naming_it():
    message = error_of("h = W x\nL = sum(h)", "h: scalar", ShapeError)
    assert "`h` is declared 'h: scalar'" in message and "line 1" in message


def test_a_shape_error_names_the_definition_and_its_line():
    message = error_of("h = A x\ny = h + B", kind=ShapeError)
    assert "(in the definition of `y`, line 2)" in message
    assert 'where="B: vector"' in message  # and the default-type hint still helps


def test_inline_substitutes_every_definition():
    parsed = program(MLP)
    assert inline(parsed) == typed("sum(tanh(W2 tanh(W1 x)))", parsed.symbols)


def test_inline_of_a_single_expression_is_the_expression():
    assert inline(program("x^T A x")) == typed("x^T A x")


# ---------------------------------------------------------------- errors, each with its line and column


def test_a_name_defined_twice_is_an_error_at_the_second_definition():
    message = error_of("h = W x\nh = A x\nsum(h)")
    assert message.startswith("at line 2, column 1: 'h' is defined twice (first at line 1)")


def test_a_use_before_the_definition_says_where_it_is_defined():
    message = error_of("y = A h\nh = W x\nsum(y)")
    assert message.startswith("at line 1, column 7: 'h' is used before its definition (it is defined later, at line 2)")


def test_a_definition_that_uses_itself_is_a_cycle():
    message = error_of("h0 = x\nh = tanh(W h)\nsum(h)")
    assert message.startswith("at line 2, column 12: the definition of 'h' uses 'h' itself (a cycle)")


@pytest.mark.parametrize(("text", "where", "reason"), [
    ("x0 = x\nsum = W x0", None, "at line 2, column 1: 'sum' is a function"),
    ("  tanh = W x; L = tanh", None, "at line 1, column 3: 'tanh' is a function"),
    ("vector = x; L = sum(vector(1))", None, "at line 1, column 1: 'vector' is the constant vector(c)"),
    ("I = W x; L = sum(x)", None, "at line 1, column 1: 'I' is reserved for the identity matrix"),
    ("h = W x; eye = h", None, "at line 1, column 10: 'eye' is reserved for the identity matrix"),
    ("h = W x\nn = sum(h)", "W: matrix(m, n)", "at line 2, column 1: 'n' is a declared dimension"),
])
def test_a_definition_cannot_take_a_reserved_name(text, where, reason):
    message = error_of(text, where)
    assert message.startswith(reason) and "cannot be defined" in message


def test_only_the_last_statement_may_be_a_bare_expression():
    message = error_of("h = W x\nsum(h)\nL = sum(h)")
    assert message.startswith("at line 2, column 1: only the last statement may be a bare expression")


def test_errors_show_the_line_with_a_caret():
    assert error_of("h = W x\ny = A h h2\nh2 = x").endswith("\n  y = A h h2\n          ^")


def test_a_syntax_error_in_a_program_names_the_line_and_column():
    message = error_of("h = W x\ny = h +\nL = sum(y)")
    assert message.startswith("syntax error at line 2, column 8: unexpected end of the line")


def test_an_empty_program_is_an_error():
    with pytest.raises(ParseError, match="empty"):
        program(";\n; # nothing")


# ---------------------------------------------------------------- any depth, without recursion


def test_a_thousand_layer_nested_expression_parses_and_types_without_recursion():
    text = nested_mlp(1_000)
    start = time.perf_counter()
    with shallow_stack():
        parse_tree(text)
        expr = typed(text)
    assert time.perf_counter() - start < 10  # about 0.2 s; a bound against a hang, not a benchmark
    assert ir.depth(expr) > 2_000


def test_a_shape_error_deep_in_a_thousand_layer_expression_is_reported():
    with shallow_stack(), pytest.raises(ShapeError, match=r"cannot multiply `W1` \(a matrix \(5×5\)\) by `A`"):
        typed(nested_mlp(1_000).replace("W1 x", "W1 A", 1), "A: matrix(3, 4); W1: matrix(5, 5)")


def test_a_thousand_nested_parentheses_parse():
    with shallow_stack():
        assert typed("(" * 1_000 + "x" + ")" * 1_000) == typed("x")


def test_a_thousand_transposes_parse():
    with shallow_stack():
        assert typed("x" + "'" * 1_000) == typed("x")
        assert typed("x" + "'" * 1_001) == typed("x^T")


def test_nesting_beyond_the_cap_is_a_clear_error():
    assert MAX_NESTING == MAX_DEPTH == 10_000
    with shallow_stack(), pytest.raises(ParseError, match="nested deeper than 10,000 levels"):
        typed("exp(" * MAX_NESTING + "x" + ")" * MAX_NESTING)


def test_a_thousand_line_program_parses_without_recursion():
    with shallow_stack():
        parsed = program(mlp_program(1_000))
    assert len(parsed.bindings) == 1_002
    assert ir.depth(inline(parsed)) > 3_000


def traced_lines(text: str) -> int:
    """The number of Python lines run to parse and type `text`: a measure of work that is the same on
    every run, whatever the machine's load."""
    count = 0

    def tracer(frame: object, event: str, arg: object) -> object:
        nonlocal count
        count += 1
        return tracer

    sys.settrace(tracer)  # type: ignore[arg-type]
    try:
        program(text)
    finally:
        sys.settrace(None)
    return count


def test_a_thousand_line_program_takes_linear_work():
    program(mlp_program(3))  # build the parser first
    small, large = traced_lines(mlp_program(250)), traced_lines(mlp_program(1_000))
    assert large / small < 4.5  # 4 times the lines: about 4.0 for linear work, 16 for quadratic


def test_inline_of_a_256_layer_residual_network_is_a_dag_of_linear_size():
    layers = 256
    expr = inline(program(residual_program(layers)))
    distinct = sum(1 for _ in ir.walk(expr))
    assert distinct <= 4 * layers + 2  # per layer: W_k, W_k h_k, tanh(...), and the sum h_{k+1}
    assert ir.depth(expr) > 3 * layers  # as a tree, it would have about 2^256 nodes
    half = sum(1 for _ in ir.walk(inline(program(residual_program(layers // 2)))))
    assert distinct <= 2 * half + 2
