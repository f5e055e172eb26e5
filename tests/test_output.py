"""Printing, LaTeX, evaluation, verification and check: the result is usable and honest."""

import dataclasses

import numpy as np
import pytest
from test_cookbook_table import COOKBOOK, IDS

import matcalc
from matcalc import EvaluationError
from matcalc.render.text import to_latex


@pytest.mark.parametrize(("expr", "var", "where", "cookbook"), COOKBOOK, ids=IDS)
def test_printed_result_parses_back_to_the_same_expression(expr, var, where, cookbook):
    d = matcalc.diff(expr, var, where=where)
    assert matcalc.parse(str(d), where=d.where, shape=d.shape) == d.expr


@pytest.mark.parametrize(("expr", "var", "where", "cookbook"), COOKBOOK, ids=IDS)
def test_printed_function_parses_back_to_the_same_expression(expr, var, where, cookbook):
    d = matcalc.diff(expr, var, where=where)
    assert matcalc.parse(str(d.function), where=d.where) == d.function


def test_latex_uses_standard_notation():
    assert r"\frac{\partial}{\partial x}" in matcalc.diff("x^T A x", "x").latex()
    assert r"A^\top" in matcalc.diff("x^T A x", "x").latex()
    assert r"\odot" in matcalc.diff("(y .* v)^T x", "x").latex()
    assert r"\operatorname{tr}" in matcalc.diff("tr(A X B)", "X").latex()
    assert r"\det" in matcalc.diff("det(X)", "X").latex()
    assert r"\log" in matcalc.diff("log(det(X))", "X").latex()
    assert r"X^{-\top}" in matcalc.diff("log(det(X))", "X").latex()
    assert r"\frac{\partial^2}" in matcalc.hessian("x^T A x", "x").latex()


def test_notebooks_render_latex():
    d = matcalc.diff("x^T A x", "x")
    assert d._repr_latex_() == f"$${d.latex()}$$"


def test_shape_of_each_kind_of_result():
    assert matcalc.diff("x^T A x", "x").shape == ("n", 1)
    assert matcalc.diff("x^T A x", "A").shape == ("n", "n")
    assert matcalc.diff("A x", "x").shape == ("n", "m")  # A is n x m: named in order of appearance
    assert matcalc.diff("alpha x", "alpha").shape == ("n", 1)
    assert matcalc.diff("A x", "x", layout="denominator").shape == tuple(reversed(matcalc.diff("A x", "x").shape))


def test_evaluate_returns_output_axes_then_variable_axes():
    x = np.array([1.0, 2.0])
    a = np.array([[1.0, 2.0], [3.0, 4.0]])
    gradient = matcalc.diff("x^T A x", "x").evaluate({"x": x, "A": a})
    np.testing.assert_allclose(gradient, (a + a.T) @ x)
    jacobian = matcalc.diff("W x + b", "x").evaluate({"W": np.ones((3, 2)), "x": x, "b": np.zeros(3)})
    assert jacobian.shape == (3, 2)
    scalar = matcalc.diff("alpha^2", "alpha").evaluate({"alpha": 3.0})
    assert scalar.shape == () and float(scalar) == 6.0


def test_evaluate_reports_missing_values_and_sizes_that_do_not_fit():
    d = matcalc.diff("x^T A x", "x")
    with pytest.raises(EvaluationError, match="missing value for A"):
        d.evaluate({"x": np.ones(2)})
    with pytest.raises(EvaluationError, match="do not fit"):
        d.evaluate({"x": np.ones(2), "A": np.ones((3, 3))})
    with pytest.raises(EvaluationError, match="vector"):
        d.evaluate({"x": np.ones((2, 2)), "A": np.ones((2, 2))})


def test_verify_rejects_a_wrong_result_and_lists_the_entries():
    d = matcalc.diff("x^T A x", "x")
    candidate = matcalc.parse("2 A x", where=d.where)
    wrong = dataclasses.replace(d, body=candidate, inline_result=candidate)
    report = wrong.verify()
    assert not report
    assert report.mismatches and "entry" in str(report)


def test_check_accepts_a_right_candidate():
    result = matcalc.check("a^T x", "x", "a")
    assert result and "correct" in str(result)


def test_check_gives_a_counterexample_for_a_wrong_candidate():
    result = matcalc.check("x^T A x", "x", "2 A x")
    assert not result
    assert "counterexample" in str(result) and "at the point" in str(result)


def test_check_of_a_candidate_with_the_wrong_shape_is_wrong_and_says_why():
    result = matcalc.check("a^T x", "x", "a^T")
    assert not result and not result.undecided
    assert "your candidate is 1×n, the derivative is n×1" in str(result) and "transpose" in str(result)


def test_json_carries_input_declarations_shape_text_and_latex():
    payload = matcalc.diff("x^T A x", "x", where="A: symmetric").to_json()
    assert payload["text"] == "2 A x"
    assert payload["where"]["A"] == "symmetric(n)"
    assert payload["shape"] == ["n", "1"]
    assert payload["latex"].startswith(r"\frac")


def test_derivation_names_the_rules_it_used():
    derivation = matcalc.diff("x^T A x", "x").derivation()
    assert "product" in derivation and "common right factor" in derivation and "differential" in derivation


@pytest.mark.parametrize("text", [
    "(z^T z) logsumexp(x) beta sigmoid(x)^T z",   # scalar sub-products sit after plain scalars
    "beta (z^T z) sigmoid(x)^T z",
    "(x^T B y) y^T",                               # a 1x1 prefix of a chain is one scalar factor
    "(a^T x) b^T y",
    "x / norm2(x) + alpha x / beta^2",
])
def test_products_print_and_parse_back_whatever_their_association(text):
    """Regressions found by random expressions: the same product built two ways must print the same."""
    e = matcalc.parse(text)
    assert matcalc.parse(str(e), shape=e.shape) == e


def test_a_flat_chain_with_a_scalar_prefix_equals_its_grouped_form():
    from matcalc.core.ir import mul

    x, b, y = (matcalc.parse(name, where="B: matrix(n, m); x: vector(n); y: vector(m)") for name in ("x", "B", "y"))
    flat = mul(matcalc.core.ir.transpose(x), b, y, matcalc.core.ir.transpose(y))
    assert flat == matcalc.parse("(x^T B y) y^T", where="B: matrix(n, m); x: vector(n); y: vector(m)")


@pytest.mark.parametrize(("expr", "var", "where", "cookbook"), COOKBOOK, ids=IDS)
def test_latex_is_well_formed(expr, var, where, cookbook):
    latex = matcalc.diff(expr, var, where=where).latex()
    depth = 0
    for character in latex.replace(r"\{", "").replace(r"\}", ""):
        depth += {"{": 1, "}": -1}.get(character, 0)
        assert depth >= 0, latex
    assert depth == 0, latex
    assert latex.count(r"\left") == latex.count(r"\right"), latex


def test_verify_reports_a_function_undefined_at_every_point_instead_of_raising():
    """Y Y^T is singular for a 3x2 Y: every sampled point is undefined, so nothing is proven."""
    d = matcalc.diff("logdet(Y Y^T)", "Y", where="Y: matrix(3, 2)")
    report = d.verify()
    assert not report
    assert "undecided" in str(report) and "undefined" in str(report)


def test_latex_of_a_power_of_an_inverse_brackets_the_inverse():
    """X^{-1}^{2} is a LaTeX error (a double superscript): the inverse is bracketed first."""
    latex = to_latex(matcalc.parse("inv(X)^2"))
    assert latex == r"\left(X^{-1}\right)^{2}" and "}^{" not in latex.replace(r"\right)^{", "")
