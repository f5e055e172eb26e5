"""The front end of issue 8: any depth, without recursion."""

from __future__ import annotations

import contextlib
import inspect
import sys
import time
from collections.abc import Iterator

import pytest

from matcalc import ParseError, ShapeError, ir
from matcalc.parsing import MAX_NESTING, parse_declarations, parse_tree
from matcalc.shapes import MAX_DEPTH, parse_typed


def typed(text: str, where: str | dict | None = None) -> ir.Expr:
    return parse_typed(text, parse_declarations(where)).expr


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


def nested_mlp(layers: int) -> str:
    text = "x"
    for k in range(1, layers + 1):
        text = f"tanh(W{k} {text})"
    return f"sum({text})"


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
