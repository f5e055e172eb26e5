"""Deep networks (issue 8) in the back ends: printing, NumPy evaluation and the conversion to SymPy.

No pass over an expression may recurse over its depth: a network of 1,000 layers prints, evaluates and
converts, and a network whose layers share their input (a residual network) is evaluated once per
distinct node, not once per path. The expressions are built with the IR constructors, not the parser.
"""

from __future__ import annotations

import time
from fractions import Fraction
from typing import Any

import numpy as np
import pytest
import sympy as sp

from matcalc.backends.interpret import NumpyBackend, evaluate_numpy, interpret
from matcalc.backends.verify import SympyBackend
from matcalc.core import ir
from matcalc.core.errors import EvaluationError
from matcalc.core.ir import Expr, Var
from matcalc.render.text import program_latex, program_text, shared_subexpressions, to_latex, to_text

N = ("n", "n")
COLUMN = ("n", 1)
x = Var("x", COLUMN)


def layers(count: int, bottom: Expr = x) -> tuple[Expr, dict[str, Var]]:
    """sum(h_L) for the network h_{k+1} = tanh(W_k h_k), h_0 = bottom, and its weight variables."""
    weights: dict[str, Var] = {}
    h = bottom
    for k in range(count):
        weight = weights[f"W{k}"] = Var(f"W{k}", N)
        h = ir.func("tanh", ir.mul(weight, h))
    return ir.func("sum", h), weights


def residual(count: int) -> tuple[Expr, dict[str, Var]]:
    """h_L for the residual network h_{k+1} = h_k + tanh(W_k h_k), h_0 = x: each h_k is used twice."""
    weights: dict[str, Var] = {}
    h: Expr = x
    for k in range(count):
        weight = weights[f"W{k}"] = Var(f"W{k}", N)
        h = ir.add(h, ir.func("tanh", ir.mul(weight, h)))
    return h, weights


def weight_values(weights: dict[str, Var], size: int, seed: int = 0) -> dict[str, Any]:
    rng = np.random.default_rng(seed)
    return {name: rng.normal(size=(size, size)) / np.sqrt(size) for name in weights}


# ---------------------------------------------------------------- printing


def test_a_thousand_layer_network_prints_as_text():
    f, _ = layers(1000)
    text = to_text(f)
    assert text.startswith("sum(tanh(W999 tanh(W998 ")
    assert text.endswith("tanh(W1 tanh(W0 x)" + ")" * 1000)
    assert text.count("tanh(") == 1000


def test_a_thousand_layer_network_prints_as_latex():
    f, _ = layers(1000)
    latex = to_latex(f)
    assert latex.startswith(r"\operatorname{sum}\left(\tanh\left(W_{999} \, \tanh\left(W_{998} \, ")
    assert latex.count(r"\tanh\left(") == 1000


def test_a_small_network_prints_as_before():
    f, _ = layers(3)
    assert to_text(f) == "sum(tanh(W2 tanh(W1 tanh(W0 x))))"
    assert to_latex(f) == (r"\operatorname{sum}\left(\tanh\left(W_{2} \, \tanh\left(W_{1} \, \tanh\left(W_{0} \, x"
                           r"\right)\right)\right)\right)")


def test_a_small_residual_network_prints_each_use_of_a_shared_layer():
    h, _ = residual(2)
    assert to_text(h) == "x + tanh(W0 x) + tanh(W1 (x + tanh(W0 x)))"


def test_printing_builds_the_template_of_each_distinct_node_once(monkeypatch):
    import matcalc.render.text as printing

    h, _ = residual(12)  # its text holds 2^12 copies of x: the work must follow the text, not exceed it
    built: list[Expr] = []
    template = printing._text
    monkeypatch.setattr(printing, "_text", lambda e: built.append(e) or template(e))
    text = printing.to_text(h)
    compound = [e for e in built if e.children]
    assert len(compound) == len(set(compound)) == sum(1 for e in ir.walk(h) if e.children)
    assert text.count("x") == 2**12


# ---------------------------------------------------------------- NumPy evaluation


def test_a_thousand_layer_network_evaluates_like_a_numpy_loop():
    f, weights = layers(1000)
    values = weight_values(weights, 4)
    values["x"] = np.linspace(-1, 1, 4)
    (got,) = evaluate_numpy([f], values, {**weights, "x": x})
    h = values["x"].reshape(-1, 1)
    for k in range(1000):
        h = np.tanh(values[f"W{k}"] @ h)
    assert got.shape == (1, 1)
    assert got[0, 0] == pytest.approx(h.sum(), rel=1e-12, abs=1e-300)


def test_a_residual_network_evaluates_each_distinct_node_once():
    calls: dict[str, int] = {}

    class Counting(NumpyBackend):
        def function(self, name: str, a: Any) -> Any:
            calls[name] = calls.get(name, 0) + 1
            return super().function(name, a)

        def matmul(self, a: Any, b: Any) -> Any:
            calls["matmul"] = calls.get("matmul", 0) + 1
            return super().matmul(a, b)

    h, weights = residual(200)  # 2^200 paths from the output to x
    values = weight_values(weights, 3, seed=1)
    values["x"] = np.array([[0.5], [-0.25], [1.0]])
    got = interpret(h, values, {"n": 3}, Counting())
    assert calls == {"tanh": 200, "matmul": 200}
    expected = values["x"]
    for k in range(200):
        expected = expected + np.tanh(values[f"W{k}"] @ expected)
    np.testing.assert_allclose(got, expected, rtol=1e-12)


def test_a_failure_deep_in_a_network_is_reported_as_at_its_node():
    X = Var("X", N)
    f, weights = layers(1000, bottom=ir.mul(ir.func("inv", X), x))
    values = weight_values(weights, 2)
    values.update(x=np.ones(2), X=np.ones((2, 2)))
    with pytest.raises(EvaluationError, match=r"^cannot evaluate inv\(X\): the matrix X is singular at these values$"):
        evaluate_numpy([f], values, {**weights, "x": x, "X": X})


# ---------------------------------------------------------------- the conversion to SymPy


def test_a_thousand_layer_network_converts_to_sympy():
    # |W_k h| with W_k a sign flip or a swap: exact values stay small, so only the depth is tested
    swap, flip = sp.Matrix([[0, 1], [1, 0]]), sp.Matrix([[1, 0], [0, -1]])
    h: Expr = x
    values = {"x": sp.Matrix([Fraction(1, 2), -3])}
    for k in range(1000):
        values[f"W{k}"] = swap if k % 2 else flip
        h = ir.func("abs", ir.mul(Var(f"W{k}", N), h))
    got = interpret(ir.func("sum", h), values, {"n": 2}, SympyBackend())
    assert got == sp.Matrix([[sp.Rational(7, 2)]])


# ---------------------------------------------------------------- programs: named intermediates

W, b = Var("W", N), Var("b", COLUMN)
SIGMOID = ir.func("sigmoid", ir.add(ir.mul(W, x), b))
LOGISTIC_DERIVATIVE = ir.hadamard(SIGMOID, ir.sub(ir.ones(COLUMN), SIGMOID))  # sigmoid(W x + b) .* (1 - sigmoid(...))


def named(e: Expr, prefix: str = "s") -> tuple[list[tuple[str, Expr]], Expr]:
    """The program of e: each shared subexpression bound to a name, in order, and e over those names.

    substitute matches the nodes as rebuilt over the names already given: a shared node is found as its
    binding's value (over earlier names), not as itself."""
    names: dict[Expr, Expr] = {}
    bindings = []
    for index, shared in enumerate(shared_subexpressions(e), 1):
        value = ir.substitute(shared, names)
        bindings.append((f"{prefix}{index}", value))
        names[value] = Var(f"{prefix}{index}", shared.shape)
    return bindings, ir.substitute(e, names)


def test_program_text_is_one_line_per_binding_then_the_output():
    h1, h2 = ir.func("tanh", ir.mul(Var("W0", N), x)), ir.func("tanh", ir.mul(Var("W1", N), Var("h1", COLUMN)))
    output = ir.func("sum", Var("h2", COLUMN))
    assert program_text([("h1", h1), ("h2", h2)], output) == "h1 = tanh(W0 x)\nh2 = tanh(W1 h1)\nsum(h2)"
    assert program_text([("h1", h1)]) == "h1 = tanh(W0 x)"


def test_program_latex_is_an_aligned_block_with_latex_names():
    h1 = ir.func("tanh", ir.mul(Var("W0", N), x))
    output = ir.func("sum", Var("h_1", COLUMN))
    assert program_latex([("h_1", h1)], output) == (
        "\\begin{aligned}\n"
        r"h_{1} &= \tanh\left(W_{0} \, x\right) \\" "\n"
        r"& \operatorname{sum}\left(h_{1}\right)" "\n"
        "\\end{aligned}")
    assert program_latex([("α", x)]) == "\\begin{aligned}\n\\alpha &= x\n\\end{aligned}"


def test_a_subexpression_printed_twice_is_named_once():
    assert shared_subexpressions(LOGISTIC_DERIVATIVE) == [SIGMOID]
    assert program_text(*named(LOGISTIC_DERIVATIVE)) == "s1 = sigmoid(W x + b)\ns1 .* (1 - s1)"


def test_a_small_or_unshared_subexpression_is_not_named():
    assert shared_subexpressions(LOGISTIC_DERIVATIVE, min_size=8) == []  # sigmoid(W x + b) is 7 tokens long
    assert shared_subexpressions(SIGMOID) == []


def test_shared_subexpressions_come_children_first():
    h: Expr = ir.func("tanh", ir.mul(W, x))
    chain = [h]
    for _ in range(5):
        h = ir.func("sin", ir.add(h, ir.func("cos", h)))  # h_{k+1} = sin(h_k + cos(h_k)): each h_k printed twice
        chain.append(h)
    assert shared_subexpressions(h) == chain[:-1]
    bindings, output = named(h, "h")
    assert program_text(bindings, output).splitlines()[:3] == [
        "h1 = tanh(W x)", "h2 = sin(h1 + cos(h1))", "h3 = sin(h2 + cos(h2))"]


def test_occurrences_are_counted_without_expanding_the_tree():
    h: Expr = ir.func("tanh", ir.mul(W, x))
    for _ in range(400):  # 2^400 occurrences of tanh(W x) in the printed tree
        h = ir.func("sin", ir.add(h, ir.func("cos", h)))
    start = time.perf_counter()
    assert len(shared_subexpressions(h)) == 400
    assert shared_subexpressions(h, min_size=2**500) == []  # nothing named: the counts reach 2^400
    assert time.perf_counter() - start < 2


def test_naming_the_shared_subexpressions_keeps_the_structure():
    # substituted back into the program, the names give the very same expression (nodes are interned)
    a, y, z = Var("a", COLUMN), Var("y", COLUMN), Var("z", COLUMN)
    ax, yz = ir.mul(ir.transpose(a), x), ir.mul(ir.transpose(y), z)  # scalar sub-products a^T x, y^T z
    s = ir.func("exp", ir.mul(W, x))
    examples = [
        LOGISTIC_DERIVATIVE,
        residual(6)[0],
        ir.add(ir.mul(ax, yz, ir.func("exp", ax)), ir.mul(ax, yz, W, x)),  # naming a^T x would unfold y^T z
        ir.add(ir.mul(ir.func("tanh", ax), yz, W, x), ir.mul(ir.func("tanh", ax), W, y)),
        ir.add(ir.neg(s), ir.hadamard(s, x), ir.elem_div(x, s)),
        ir.add(ir.neg(ir.mul(W, s)), ir.func("tanh", ir.neg(ir.mul(W, s))), ir.func("sin", ir.neg(ir.mul(W, s)))),
        ir.mul(ir.func("sum", s), ir.reciprocal(ir.func("sum", s)), ir.reciprocal(ir.func("norm2", s)), s),
    ]
    for e in examples:
        bindings, output = named(e)
        for name, value in reversed(bindings):
            output = ir.substitute(output, {Var(name, value.shape): value})
        assert output is e, to_text(e)
