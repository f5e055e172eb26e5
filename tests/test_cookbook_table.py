"""The cases of the Matrix Cookbook table (issue 2, section 8): each checked three ways.

1. the printed result is no longer than the cookbook form;
2. its numbers match central finite differences of the function (float64);
3. SymPy proves it entry by entry (exact).
"""

import numpy as np
import pytest
from oracles import assert_matches_finite_differences, evaluate_expr, random_values

import matcalc

# (expression, variable, declarations, cookbook form)
COOKBOOK = [
    ("a^T x", "x", None, "a"),
    ("x^T A x", "x", None, "(A + A^T) x"),
    ("x^T A x", "x", "A: symmetric", "2 A x"),
    ("x^T A x", "A", None, "x x^T"),
    ("A x", "x", None, "A"),
    ("W x + b", "b", None, "I"),
    ("norm2(A x - b)^2", "x", None, "2 A^T (A x - b)"),
    ("tr(A X B)", "X", None, "A^T B^T"),
    ("log(det(X))", "X", None, "inv(X)^T"),
    ("det(X)", "X", None, "det(X) inv(X)^T"),
    ("sum(log(exp(-y .* (X w)) + vector(1)))", "w", None, "-X^T (y .* sigmoid(-y .* (X w)))"),
    ("exp(x)", "x", None, "diag(exp(x))"),
    ("sigmoid(W x + b)", "x", None, "diag(sigmoid(W x + b) .* (1 - sigmoid(W x + b))) W"),
    ("relu(W x + b)", "b", None, "diag(step(W x + b))"),
    ("sum(x)", "x", None, "vector(1)"),
    ("x .* y", "x", None, "diag(y)"),
    ("tr(A*X'*B*X*C)", "X", None, "B^T X A^T C^T + B X C A"),
    ("0.5*x'*A*x", "x", None, "0.5 (A + A^T) x"),
    ("norm1(A x - y)", "x", None, "A^T sign(A x - y)"),
    ("log(det(inv(X)))", "X", None, "-inv(X)^T"),
    ("sin(x^T x)", "x", None, "2 cos(x^T x) x"),
    ("(y.*v)'*x", "x", None, "y .* v"),
    ("A*exp(x)", "x", None, "A diag(exp(x))"),
]
IDS = [f"d({e})/d{v}" + (f" [{w}]" if w else "") for e, v, w, _ in COOKBOOK]


@pytest.mark.parametrize(("expr", "var", "where", "cookbook"), COOKBOOK, ids=IDS)
def test_result_is_no_longer_than_the_cookbook_form(expr, var, where, cookbook):
    assert len(str(matcalc.diff(expr, var, where=where))) <= len(cookbook)


@pytest.mark.parametrize(("expr", "var", "where", "cookbook"), COOKBOOK, ids=IDS)
def test_result_equals_the_cookbook_form_numerically(expr, var, where, cookbook):
    d = matcalc.diff(expr, var, where=where)
    book = matcalc.parse(cookbook, where=dict(d.where), shape=d.matrix_shape)
    values = random_values([d.function, d.expr, book], seed=3)
    np.testing.assert_allclose(d.evaluate(values), evaluate_expr(book, values, (d.function,)), rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize(("expr", "var", "where", "cookbook"), COOKBOOK, ids=IDS)
def test_result_matches_finite_differences(expr, var, where, cookbook):
    assert_matches_finite_differences(matcalc.diff(expr, var, where=where))


@pytest.mark.parametrize(("expr", "var", "where", "cookbook"), COOKBOOK, ids=IDS)
def test_result_is_proven_exactly_by_sympy(expr, var, where, cookbook):
    report = matcalc.diff(expr, var, where=where).verify(method="exact", timeout=600)
    assert report, str(report)
    assert report.numerically_only == 0


@pytest.mark.parametrize(("expr", "var", "where", "cookbook"), COOKBOOK, ids=IDS)
def test_result_is_proven_by_the_default_method(expr, var, where, cookbook):
    assert matcalc.diff(expr, var, where=where).verify(timeout=600)


def test_exact_cookbook_strings():
    """The headline results print exactly as the cookbook writes them."""
    assert str(matcalc.diff("x^T A x", "x")) == "(A + A^T) x"
    assert str(matcalc.diff("x^T A x", "x", where="A: symmetric")) == "2 A x"
    assert str(matcalc.diff("log(det(X))", "X")) == "inv(X)^T"
    assert str(matcalc.diff("norm2(A x - b)^2", "x")) == "2 A^T (A x - b)"


def test_hessian_of_quadratic_form_is_A_plus_A_transpose():
    h = matcalc.hessian("x^T A x", "x")
    assert str(h) == "A + A^T"
    assert h.verify()
    assert_matches_finite_differences(h)
