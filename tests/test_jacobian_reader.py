"""Jacobians and Hessians the reader once refused ("cannot write the Jacobian in matrix form yet"), and
row-vector functions, which have the Jacobian of their transpose.

Each result must match central finite differences, print back to the same expression, be proven entry by
entry with SymPy, and equal an independent closed form (checked by SymPy through matcalc.check).
"""

from __future__ import annotations

import pytest
from oracles import assert_matches_finite_differences
from test_regressions import assert_right_and_printable

import matcalc


def assert_given(d: matcalc.Derivative, closed_form: str) -> None:
    """Right by finite differences and by SymPy, printable, and equal to `closed_form` (SymPy again)."""
    assert_right_and_printable(d)
    report = d.verify()
    assert report, str(report)
    hessian_of = d.kind == "hessian"
    verdict = matcalc.check(str(d.function), d.variable.name, closed_form, where=dict(d.where), hessian_of=hessian_of)
    assert verdict, str(verdict)


# ---------------------------------------------------------------- a scalar on the path to dx: t = s t[s := 1]


def test_a_scalar_factor_inside_a_diagonal_gives_an_outer_product():
    """diag((db^T c) A A) = (db^T c) diag(A A): J = diag(A A) c^T."""
    d = matcalc.diff("diag((b^T c) A A)", "b")
    assert str(d) == "diag(A^2) c^T"
    assert_given(d, "diag(A A) c^T")


def test_a_scalar_factor_inside_an_elementwise_product():
    """((db^T b + b^T db) A .* A) c = (2 b^T db) (A .* A) c: J = 2 (A .* A) c b^T."""
    d = matcalc.diff("((b^T b) A .* A) c", "b")
    assert_given(d, "2 (A .* A) c b^T")


# ---------------------------------------------------------------- Hessians through diag(z) inside matrices


def test_hessian_of_the_sum_of_a_diagonal_matrix_power():
    """sum(diag(z)^-2) = sum(z.^-2): the Hessian is 6 diag(z.^-4)."""
    assert_given(matcalc.hessian("sum(diag(z)^-2)", "z"), "6 diag(z .^ (-4))")


def test_hessian_of_logdet_of_a_diagonal_times_a_matrix():
    """logdet(diag(z) A) = sum(log(z)) + logdet(A): the Hessian is -diag(1 ./ z.^2)."""
    assert_given(matcalc.hessian("logdet(diag(z) A)", "z"), "-diag(1 ./ (z .* z))")


def test_hessian_of_the_trace_of_an_inverse_with_a_diagonal_shift():
    """tr(inv(M)), M = X + diag(z): H_ij = inv(M)_ij (inv(M)^2)_ji + (inv(M)^2)_ij inv(M)_ji."""
    m = "inv(X + diag(z))"
    assert_given(matcalc.hessian("tr(inv(X + diag(z)))", "z"), f"{m} .* ({m}^2)^T + {m}^2 .* {m}^T")


# ---------------------------------------------------------------- row-vector functions


def test_a_transposed_variable_has_the_identity_jacobian():
    d = matcalc.diff("x^T", "x")
    assert d.kind == "jacobian"
    assert str(d) == "I"
    assert_given(d, "I")


def test_a_row_vector_times_a_matrix_has_the_transposed_matrix_as_jacobian():
    d = matcalc.diff("x^T A", "x")
    assert (d.kind, str(d), d.shape) == ("jacobian", "A^T", ("m", "n"))
    assert_given(d, "A^T")


def test_a_row_vector_function_in_denominator_layout_is_the_transpose():
    d = matcalc.diff("x^T A", "x", layout="denominator")
    assert str(d) == "A"
    assert_right_and_printable(d)
    assert d.verify()


def test_a_row_vector_wrt_a_matrix_is_a_third_order_tensor_in_vec_form():
    d = matcalc.diff("x^T A", "A")  # vec(x^T dA) = (I ⊗ x^T) vec(dA): a row vector is its own vec, transposed
    assert str(d) == "I ⊗ x^T" and d.order == 3
    assert_matches_finite_differences(d)


# ---------------------------------------------------------------- found by random expressions (depth 4)


@pytest.mark.parametrize(("expr", "var", "where"), [
    # (B .* (a b^T)^T) R: the transpose pushed into the element-wise product
    ("((W ./ sigmoid(W))^T .* (u x^T)^T) (((v x^T) .* W.^3) (softmax(z) - z))", "u",
     "W: matrix(m, n); u, v: vector(m); x, z: vector(n)"),
    ("((W ./ sigmoid(W))^T .* (u x^T)^T) (((v x^T) .* W.^3) (softmax(z) - z))", "x",
     "W: matrix(m, n); u, v: vector(m); x, z: vector(n)"),
    ("diag((diag(u)^2)^2)", "u", None),  # diag(P (F1 + F2) Q): the product distributed over the sum
])
def test_jacobians_of_random_expressions_the_reader_once_refused(expr, var, where):
    d = matcalc.diff(expr, var, where=where)
    assert_right_and_printable(d)
    assert d.verify()


@pytest.mark.parametrize(("expr", "var"), [
    ("logdet(5 I + tanh(v u^T))", "u"),  # (B .* G) r = diag(G diag(r) B^T), G = P (C .* (v du^T)) Q
    ("det(5 I + sin((1.5 I + A) diag(y)))", "y"),
])
def test_hessians_of_random_expressions_the_reader_once_refused(expr, var):
    """Finite differences only: SymPy takes most of a minute over tanh inside an inverse."""
    assert_right_and_printable(matcalc.hessian(expr, var, where="u, v: vector(m)" if "u" in expr else None))
