"""Derivatives of any order (issue 9): each result in vec (Kronecker) form, proven against central finite
differences of the function in float64, and its shape as a tensor (the output's axes, then the variable's)."""

from __future__ import annotations

import numpy as np
import pytest
from oracles import random_values

import matcalc
from matcalc.core.ir import variables

STEP = 1e-6


def tensor_by_finite_differences(function, values: dict, name: str) -> np.ndarray:
    """d vec(F) / d vec(X)^T by central differences (column-major vecs), F any expression of the function."""
    from oracles import evaluate_expr

    point = np.array(values[name], dtype=float)
    flat = point.reshape(-1, order="F")
    columns = []
    for c in range(flat.size):
        up, down = flat.copy(), flat.copy()
        up[c] += STEP
        down[c] -= STEP
        f_up = evaluate_expr(function, {**values, name: up.reshape(point.shape, order="F")})
        f_down = evaluate_expr(function, {**values, name: down.reshape(point.shape, order="F")})
        columns.append((np.reshape(f_up, -1, order="F") - np.reshape(f_down, -1, order="F")) / (2 * STEP))
    return np.stack(columns, axis=-1)


def assert_vec_form_matches(d: matcalc.Derivative, sizes: dict[str, int] | None = None, seed: int = 0) -> None:
    values = random_values([d.function, d.expr, d.variable], seed, sizes)
    expected = tensor_by_finite_differences(d.function, values, d.variable.name)
    got = d.evaluate(values, form="vec")
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-7, err_msg=str(d))


# The table: expression, variable, vec form (numerator layout, d vec(F) / d vec(X)^T)
CASES = [
    ("W x + b", "W", "x^T ⊗ I"),
    ("A X B", "X", "B^T ⊗ A"),
    ("X X", "X", "X^T ⊗ I + I ⊗ X"),
    ("inv(X)", "X", "-(inv(X)^T ⊗ inv(X))"),
    ("tanh(W x)", "W", "diag(1 - tanh(W x).^2) (x^T ⊗ I)"),
    ("softmax(W x)", "W", "s = softmax(W x)\n(diag(s) - s s^T) (x^T ⊗ I)"),
    ("x x^T", "x", "x ⊗ I + I ⊗ x"),
    ("X^T", "X", "commutation(n, m)"),
]


@pytest.mark.parametrize(("expr", "wrt", "expected"), CASES, ids=[f"{e} wrt {v}" for e, v, _ in CASES])
def test_vec_form_of_a_tensor_derivative_matches_finite_differences(expr: str, wrt: str, expected: str):
    d = matcalc.diff(expr, wrt)
    assert str(d) == expected
    assert d.kind == "tensor" and d.form == "vec"
    assert_vec_form_matches(d)


def test_linear_layer_wrt_weights_is_a_3rd_order_tensor_of_shape_m_m_n():
    d = matcalc.diff("W x + b", "W", where="W: matrix(m, n)")
    assert d.shape == ("m", "m", "n") and d.order == 3
    values = {"W": np.arange(6.0).reshape(2, 3), "x": np.array([1.0, 2.0, 3.0]), "b": np.zeros(2)}
    tensor = d.evaluate(values)
    assert tensor.shape == (2, 2, 3)
    expected = np.einsum("ik,l->ikl", np.eye(2), values["x"])  # ∂(W x)_i / ∂W_kl = δ_ik x_l
    np.testing.assert_allclose(tensor, expected)


def test_matrix_wrt_matrix_evaluates_to_m_n_p_q_in_that_axis_order():
    d = matcalc.diff("A X B", "X", where="A: matrix(m, p); X: matrix(p, q); B: matrix(q, n)")
    assert d.shape == ("m", "n", "p", "q")
    values = random_values([d.function], 1, {"m": 2, "p": 3, "q": 4, "n": 5})
    tensor = d.evaluate(values)
    expected = np.einsum("ik,lj->ijkl", values["A"], values["B"])  # ∂(A X B)_ij / ∂X_kl = A_ik B_lj
    np.testing.assert_allclose(tensor, expected)


def test_matrix_wrt_vector_is_a_3rd_order_tensor():
    d = matcalc.diff("x x^T", "x")
    assert d.shape == ("n", "n", "n")
    values = {"x": np.array([1.0, 2.0, 3.0])}
    eye = np.eye(3)
    expected = np.einsum("ik,j->ijk", eye, values["x"]) + np.einsum("i,jk->ijk", values["x"], eye)
    np.testing.assert_allclose(d.evaluate(values), expected)


def test_hessian_of_a_trace_quadratic_wrt_a_matrix_is_I_kron_A_plus_A_transpose():
    d = matcalc.hessian("tr(X^T A X)", "X")
    assert str(d) == "I ⊗ (A + A^T)"
    assert d.kind == "hessian" and d.order == 4
    values = random_values([d.function], 0, {"n": 3, "m": 2})
    expected = tensor_by_finite_differences(matcalc.diff("tr(X^T A X)", "X").expr, values, "X")
    np.testing.assert_allclose(d.evaluate(values, form="vec"), expected, rtol=1e-5, atol=1e-7)


def test_hessian_of_log_det_wrt_a_matrix_is_minus_K_times_inv_transpose_kron_inv():
    d = matcalc.hessian("log(det(X))", "X")
    assert str(d) == "-commutation(n, n) (inv(X)^T ⊗ inv(X))"
    values = random_values([d.function], 2, {"n": 3})
    gradient = matcalc.diff("log(det(X))", "X").expr
    np.testing.assert_allclose(d.evaluate(values, form="vec"), tensor_by_finite_differences(gradient, values, "X"),
                               rtol=1e-5, atol=1e-7)


def test_second_derivative_of_a_bilinear_form_wrt_the_matrix_is_zero_of_4th_order():
    d = matcalc.diff("a^T X b", "X", where="X: matrix(m, n)").diff("X")
    assert str(d) == "matrix(0)"
    assert d.order == 4
    values = random_values([matcalc.parse("a^T X b", where="X: matrix(m, n)")], 0, {"m": 2, "n": 3})
    assert d.evaluate(values).shape == (2, 3, 2, 3)
    assert not d.evaluate(values).any()


def test_diff_of_a_gradient_wrt_another_vector_is_the_mixed_second_derivative():
    d = matcalc.diff("x^T A y", "x").diff("y")
    assert str(d) == "A"
    assert d.verify()


def test_second_derivative_of_an_outer_product_is_the_constant_derivative_of_its_kronecker_form():
    first = matcalc.diff("x x^T", "x")  # x ⊗ I + I ⊗ x: linear in x, so its derivative is constant, not zero
    d = first.diff("x")
    assert d.shape == ("n", "n", "n", "n")
    values = random_values([first.function], 0, {"n": 3})
    expected = tensor_by_finite_differences(first.expr, values, "x")
    np.testing.assert_allclose(d.evaluate(values, form="vec"), expected, atol=1e-7)
    eye = np.eye(3)  # ∂²(x x^T)_ij / ∂x_k ∂x_l = δ_ik δ_jl + δ_il δ_jk
    expected_tensor = np.einsum("ik,jl->ijkl", eye, eye) + np.einsum("il,jk->ijkl", eye, eye)
    np.testing.assert_allclose(d.evaluate(values), expected_tensor)


def test_derivative_of_a_kronecker_form_differentiates_the_kronecker_product():
    first = matcalc.diff("x x^T A x", "x")
    second = first.diff("x")
    values = random_values([first.function, first.expr], 3, {"n": 2})
    expected = tensor_by_finite_differences(first.expr, values, "x")
    np.testing.assert_allclose(second.evaluate(values, form="vec"), expected, rtol=1e-5, atol=1e-6)
    assert second.verify()


def test_block_hessian_of_two_vectors_assembles_the_mixed_blocks():
    h = matcalc.hessian("x^T A y + x^T x", ["x", "y"])
    assert str(h[("x", "y")]) == "A"
    assert str(h[("x", "x")]) == "2 I"
    values = random_values([matcalc.parse("x^T A y + x^T x")], 0, {"n": 2, "m": 3})
    full = h.evaluate(values)
    assert full.shape == (5, 5)
    np.testing.assert_allclose(full, full.T)
    np.testing.assert_allclose(full[:2, 2:], values["A"])
    assert h.verify()


def test_block_hessian_with_a_matrix_variable_uses_the_vec_of_the_matrix():
    h = matcalc.hessian("a^T W x", ["W", "x"], where="W: matrix(m, n)")
    values = random_values([matcalc.parse("a^T W x", where="W: matrix(m, n)")], 0, {"m": 2, "n": 3})
    full = h.evaluate(values)
    assert full.shape == (6 + 3, 6 + 3)
    np.testing.assert_allclose(full, full.T, atol=1e-12)
    gradient_w = matcalc.diff("a^T W x", "W", where="W: matrix(m, n)").expr
    np.testing.assert_allclose(full[:6, 6:], tensor_by_finite_differences(gradient_w, values, "x"), atol=1e-7)


def test_loss_of_two_layers_wrt_the_first_weights_is_still_a_matrix_gradient():
    d = matcalc.diff("sum(tanh(W2 tanh(W1 x)))", "W1")
    assert d.kind == "gradient" and d.form == "matrix"
    assert len(d.shape) == 2


def test_verify_refuses_a_wrong_kronecker_candidate():
    result = matcalc.check("A X B", "X", "B ⊗ A", where="A: matrix(n, n); X: matrix(n, n); B: matrix(n, n)")
    assert not result
    assert matcalc.check("A X B", "X", "B^T ⊗ A", where="A: matrix(n, n); X: matrix(n, n); B: matrix(n, n)")


def test_the_differential_form_is_the_engine_s_compact_linear_map():
    d = matcalc.diff("inv(X)", "X")
    assert d.text(form="differential") == "d(inv(X)) = -inv(X) dX inv(X)"


def test_json_of_a_tensor_derivative_has_its_shape_and_three_forms():
    data = matcalc.diff("W x", "W").to_json()
    assert data["form"] == "vec" and data["shape"] == ["n", "n", "m"]
    assert data["text"] == "x^T ⊗ I"
    assert data["forms"]["differential"]["text"] == "d(W x) = dW x"
    assert data["forms"]["index"]["text"] == "∂(W x)_i / ∂W_kl = δ_ik x_l"
    assert data["forms"]["vec"]["latex"].endswith(r"x^\top \otimes I")


def test_vec_form_parses_back_to_the_same_expression():
    for expr, wrt, _ in CASES:
        d = matcalc.diff(expr, wrt, inline=True)
        assert matcalc.parse(str(d), where=dict(d.where), shape=d.body.shape) is d.expr


def test_denominator_layout_of_a_tensor_is_refused_with_a_reason():
    with pytest.raises(matcalc.UnsupportedError, match="denominator layout"):
        matcalc.diff("W x", "W", layout="denominator")


def test_variables_of_a_tensor_result_are_the_function_s():
    d = matcalc.diff("tanh(W x)", "W")
    assert set(variables(d.expr)) <= set(variables(d.function))
