"""The MathML of a result (render/mathml.py, what the page of `matcalc serve` typesets) says the same as its text:
read back into the input language by a small reader here, it parses to an expression with the same numbers as the
engine's result, on the cookbook table and on forms that exercise every template (fractions, inverses, norms,
element-wise operators, Kronecker products, named shared parts). Deep expressions render without recursion."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import numpy as np
import pytest
from oracles import evaluate_expr, random_values
from test_cookbook_table import COOKBOOK

import matcalc
from matcalc.render.mathml import derivative_mathml, gradients_mathml, to_mathml

NS = "{http://www.w3.org/1998/Math/MathML}"
GREEK = {"α": "alpha", "β": "beta", "λ": "lambda", "θ": "theta", "σ": "sigma", "π": "pi"}
FUNCTION_NAMES = {"σ": "sigmoid", "log det": "logdet"}
OPERATORS = {"\u2062": " ", "\u2061": "", "⊙": " .* ", "⊘": " ./ ", "⊗": " ⊗ ", "·": " * ", "+": " + ", "−": " - ",
             "(": "(", ")": ")", ",": ", "}


def _tag(element: ET.Element) -> str:
    return element.tag.removeprefix(NS)


def read(element: ET.Element) -> str:
    """MathML back to the input language (a test's reader: recursion is fine at these depths)."""
    tag, children = _tag(element), list(element)
    text = (element.text or "").strip()
    if tag == "mi":
        return FUNCTION_NAMES.get(text, GREEK.get(text, text))
    if tag == "mn":
        return "vector(1)" if element.get("mathvariant") == "bold" else text
    if tag == "mo":
        return OPERATORS[text]
    if tag == "mrow":
        if children and _tag(children[0]) == "mo" and children[0].text == "|":
            return f"abs({''.join(read(c) for c in children[1:-1])})"
        return "".join(read(child) for child in children)
    if tag == "mfrac":
        return f"({read(children[0])}) / ({read(children[1])})"
    if tag == "msqrt":
        return f"sqrt({''.join(read(c) for c in children)})"
    if tag == "msub":
        base, sub = children
        if _tag(base) == "mrow" and base[0].text == "‖":
            return f"norm{read(sub)}({''.join(read(c) for c in list(base)[1:-1])})"
        return read(base) + read(sub)  # W with subscript 1: W1
    if tag == "msup":
        base, exponent = (read(child) for child in children)
        if exponent == "⊤":
            return f"({base})^T"
        if exponent.replace(" ", "") == "-⊤":  # the minus sign −, read as -
            return f"inv({base})^T"
        if exponent.replace(" ", "") == "-1":
            return f"inv({base})"
        if exponent.startswith("∘"):
            return f"({base}).^({exponent[1:]})"
        return f"({base})^({exponent})"
    raise AssertionError(f"unexpected MathML element {tag}")


OPERATORS["⊤"] = "⊤"
OPERATORS["∘"] = "∘"


def mathml_as_text(d: matcalc.Derivative) -> str:
    """The derivative's MathML equation read back: a line `name = value` per definition, then the right-hand side
    of the last row (the rows of a table are a name or `∂f/∂x`, then `= value`)."""
    body = ET.fromstring(derivative_mathml(d))[0]
    if _tag(body) != "mtable":  # one row: ∂f/∂x, =, the value
        return read(body[2])
    rows = [[cell[0] for cell in row] for row in body]  # right cells: <mrow><mo>=</mo>value</mrow>
    definitions = [f"{read(left)} = {read(right[1])}" for left, right in rows[:-1]]
    return "; ".join([*definitions, read(rows[-1][1][1])])


CASES = [(expr, wrt, where) for expr, wrt, where, _ in COOKBOOK] + [
    ("tr(inv(X)^T A) / 2 + sqrt(x^T x) - 3 alpha", "X", None),
    ("norm1(x) + abs(alpha) * sum(x ./ (a + 2))", "x", "alpha: scalar"),
    ("x^T A x / (x^T x)", "x", None),
    ("sum(x.^3) + x^T x ⊗ alpha", "x", "alpha: scalar"),
    ("h = tanh(W x); L = sum(h .* h)", "W", None),
    ("W x + b", "W", None),
]


@pytest.mark.parametrize(("expr", "wrt", "where"), CASES, ids=[f"{e} by {w}" for e, w, _ in CASES])
def test_the_mathml_of_a_result_reads_back_to_its_numbers(expr, wrt, where):
    d = matcalc.diff(expr, wrt, where)
    declarations = {name: str(declaration).split(": ", 1)[1] for name, declaration in d.where.items()}
    read_back = matcalc.parse(mathml_as_text(d), declarations, shape=d.expr.shape)  # a bare I: its size
    values = random_values([d.function], seed=11)
    expected = evaluate_expr(d.expr, values, (d.function,))
    np.testing.assert_allclose(evaluate_expr(read_back, values, (d.function,)), expected, rtol=1e-10, atol=1e-12)


def test_the_mathml_of_several_gradients_reads_back_to_each_ones_numbers():
    program = "h1 = sigmoid(W1 x + b1); h2 = sigmoid(W2 h1 + b2); L = sum(h2)"
    gradients = matcalc.grad(program, ["W1", "b1", "W2"])
    definitions, _ = gradients.lines()
    body = ET.fromstring(gradients_mathml(definitions, list(gradients.values())))[0]
    rows = [[cell[0] for cell in row] for row in body]
    shared = [f"{read(left)} = {read(right[1])}" for left, right in rows[:len(definitions)]]
    first = next(iter(gradients.values()))
    declarations = {name: str(declaration).split(": ", 1)[1] for name, declaration in first.where.items()}
    values = random_values([first.function], seed=5)
    for (_, right), d in zip(rows[len(definitions):], gradients.values(), strict=True):
        read_back = matcalc.parse("; ".join([*shared, read(right[1])]), declarations, shape=d.expr.shape)
        np.testing.assert_allclose(evaluate_expr(read_back, values, (d.function,)),
                                   evaluate_expr(d.expr, values, (d.function,)), rtol=1e-10, atol=1e-12)


def test_the_mathml_of_a_deep_expression_is_written_without_recursion():
    depth = 5_000
    e = matcalc.parse("exp(" * depth + "x" + ")" * depth)
    markup = to_mathml(e)
    assert markup.count("<mi>exp</mi>") == depth


def test_names_are_escaped_and_greek_is_written_as_letters():
    d = matcalc.diff("theta^T x + sum(W1 x)", "x", "theta: vector(n)")
    markup = derivative_mathml(d)
    assert "<mi>θ</mi>" in markup and "<msub><mi>W</mi><mi>1</mi></msub>" in markup
    ET.fromstring(markup)  # well-formed XML
