"""Deep networks (issue 8) in the back ends: printing, NumPy evaluation and the conversion to SymPy.

No pass over an expression may recurse over its depth: a network of 1,000 layers prints, evaluates and
converts, and a network whose layers share their input (a residual network) is evaluated once per
distinct node, not once per path. The expressions are built with the IR constructors, not the parser.
"""

from __future__ import annotations

from matcalc import ir
from matcalc.ir import Expr, Var
from matcalc.printing import to_latex, to_text

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
    import matcalc.printing as printing

    h, _ = residual(12)  # its text holds 2^12 copies of x: the work must follow the text, not exceed it
    built: list[Expr] = []
    template = printing._text
    monkeypatch.setattr(printing, "_text", lambda e: built.append(e) or template(e))
    text = printing.to_text(h)
    compound = [e for e in built if e.children]
    assert len(compound) == len(set(compound)) == sum(1 for e in ir.walk(h) if e.children)
    assert text.count("x") == 2**12
