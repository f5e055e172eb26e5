"""Every object a user gets back renders in a notebook: Derivative and Gradients and block Hessians as LaTeX
(aligned, labelled ∂L/∂W and ∂²f/∂x ∂y^T), derivations as LaTeX or Markdown (a str all the same), check and
verify reports as Markdown, generated code as a Python block. The values behind them are proven elsewhere; here
what is shown is the result's own text and LaTeX, well formed."""

from __future__ import annotations

import copy
import pickle

import numpy as np
from oracles import evaluate_expr, random_values
from test_first_contact import braces_balance

import matcalc
from matcalc.render.derivative import derivation as plain_derivation
from matcalc.results import Derivation

PROGRAM = "h = tanh(W1 x); L = sum(tanh(W2 h))"


def test_a_derivation_is_the_same_string_as_before():
    d = matcalc.diff("x^T A x", "x")
    text = d.derivation()
    assert isinstance(text, str) and text == plain_derivation(d.steps)
    assert text.splitlines()[-1] == "simplified: (A + A^T) x   [transpose of a product, common right factor]"
    assert d.derivation(latex=True) == plain_derivation(d.steps, latex=True)


def test_a_text_derivation_renders_as_markdown_with_its_lines_in_a_block():
    text = matcalc.diff("x^T A x", "x").derivation()
    assert text._repr_latex_() is None  # IPython then shows the Markdown
    assert text._repr_markdown_() == f"#### Derivation: differentials, then identification\n\n```text\n{text}\n```"


def test_a_latex_derivation_renders_as_displayed_math():
    latex = matcalc.diff("tr(A X B)", "X").derivation(latex=True)
    shown = latex._repr_latex_()
    assert shown == f"$${latex}$$" and shown.startswith(r"$$\begin{aligned}") and braces_balance(latex)


def test_a_derivation_keeps_its_kind_through_copy_and_pickle():
    latex = matcalc.diff("a^T x", "x").derivation(latex=True)
    for again in (copy.copy(latex), pickle.loads(pickle.dumps(latex))):
        assert isinstance(again, Derivation) and again == latex and again.latex


def test_the_heading_names_the_method():
    assert Derivation("x", method="chain")._repr_markdown_().startswith("#### Derivation: the vector chain rule")
    assert Derivation("x", method="index").heading.startswith("Derivation: the index method")
    assert Derivation("x", method="other").heading == "Derivation: other"


def test_gradients_render_as_an_aligned_block_labelled_by_partials():
    g = matcalc.grad(PROGRAM, ["W1", "W2"])
    shown = g._repr_latex_()
    assert shown == f"$${g.latex()}$$" and braces_balance(g.latex())
    rows = g.latex().split(" \\\\\n")
    assert rows[0] == r"\begin{aligned}" + "\n" + r"h &= \tanh\left(W_{1} \, x\right)"
    assert rows[-2].startswith(r"\frac{\partial L}{\partial W_{1}} &= ")
    assert rows[-1].startswith(r"\frac{\partial L}{\partial W_{2}} &= ")
    assert str(g).splitlines()[-1].startswith("dL_dW2 = ")  # the text is unchanged


def test_a_block_hessian_renders_with_second_partials_and_vecs_of_matrices():
    h = matcalc.hessian("x^T A y + sum(exp(y)) + alpha^2 tr(X)", ["x", "y", "alpha", "X"])
    latex = h.latex()
    assert h._repr_latex_() == f"$${latex}$$" and braces_balance(latex)
    assert r"\frac{\partial^2 f}{\partial x \, \partial y^\top} &= A" in latex
    assert r"\frac{\partial^2 f}{\partial \alpha^2} &= 2 \operatorname{tr}\left(X\right)" in latex
    assert (r"\frac{\partial^2 f}{\partial \alpha \, \partial \operatorname{vec}\left(X\right)^\top} &= 2 \alpha \, I"
            in latex)
    assert latex.count("&=") == 10  # the blocks on and above the diagonal of 4 variables


def test_the_block_hessian_shown_is_the_one_evaluated():
    expr = "x^T A y + sum(exp(y))"
    h = matcalc.hessian(expr, ["x", "y"])
    f = matcalc.parse(expr)
    values = random_values([f])
    n, m = values["x"].size, values["y"].size
    step = 1e-4
    second = np.zeros((n, m))  # ∂²f/∂x_i ∂y_j by central differences of f alone
    for i in range(n):
        for j in range(m):
            total = 0.0
            for p in (1, -1):
                for q in (1, -1):
                    x, y = values["x"].copy(), values["y"].copy()
                    x[i] += p * step
                    y[j] += q * step
                    total += p * q * float(evaluate_expr(f, {**values, "x": x, "y": y}))
            second[i, j] = total / (4 * step**2)
    np.testing.assert_allclose(h.evaluate(values)[:n, n:], second, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(h["x", "y"].evaluate(values), values["A"])  # the row labelled ∂²f/∂x ∂y^T is A


def test_check_and_verify_reports_render_as_markdown():
    right = matcalc.check("a^T x", "x", "a")
    assert right._repr_markdown_().startswith("**correct**: `a` equals `a`")
    wrong = matcalc.check("x^T A x", "x", "2 A x")
    assert wrong._repr_markdown_().startswith("**wrong**: `2 A x` is not the derivative")
    transposed = matcalc.check("a^T x", "x", "a^T")
    assert transposed._repr_markdown_().startswith("**wrong**: your candidate is 1×n")
    assert matcalc.diff("a^T x", "x").verify()._repr_markdown_().startswith("**verified**: ")


def test_generated_code_renders_as_a_python_block_and_stays_a_str():
    code = matcalc.diff("x^T A x", "x").to_code("numpy")
    assert isinstance(code, str) and code._repr_markdown_() == f"```python\n{code}```"
    source = matcalc.codegen(PROGRAM, ["W1", "W2"])
    assert source._repr_markdown_().startswith("```python\nimport numpy as np")


def test_a_derivative_renders_as_its_equation():
    d = matcalc.diff("a^T x", "x", layout="jacobian")
    assert d._repr_latex_() == r"$$\frac{\partial}{\partial x} \left(a^\top \, x\right) = a^\top$$"
