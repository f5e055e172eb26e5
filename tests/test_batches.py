"""Batches and axes: broadcasting, reductions and normalisations along an axis, and the functions they need.

Each test states one identity and checks the engine's derivative numerically (central finite differences in
float64, tests/oracles.py) or a value against NumPy; printed results parse back to the same tree.
"""

from __future__ import annotations

import numpy as np
import pytest
from oracles import assert_matches_finite_differences, evaluate_expr

import matcalc
from matcalc import ShapeError

BATCH = "X: matrix(d, B)"


def parses_back(d: matcalc.Derivative) -> bool:
    return matcalc.parse(str(d), where=d.where, shape=d.shape) == d.expr


def value(expr: str, where: str, **values: np.ndarray) -> np.ndarray:
    """The NumPy value of an expression (as the engine evaluates it) at these values, as a 2-D array."""
    return np.asarray(evaluate_expr(matcalc.parse(expr, where=where), values))


# ---------------------------------------------------------------- broadcasting


def test_a_bias_column_is_added_to_every_example():
    d = matcalc.diff("sum(tanh(W X + b))", "b", where=BATCH)
    assert str(d) == "sum(1 - tanh(W X + b).^2, 2)"  # the broadcast and the sum over the batch, as written
    assert_matches_finite_differences(d)
    assert parses_back(d)


def test_the_gradient_of_a_bias_sums_over_the_batch():
    d = matcalc.diff("sum(W X + b)", "b", where=BATCH)
    assert str(d) == "B vector(1)"
    assert_matches_finite_differences(d)


def test_a_row_is_subtracted_from_every_row():
    d = matcalc.diff("norm2(X - mean(X, 1))^2", "X", where=BATCH)
    assert_matches_finite_differences(d)
    assert parses_back(d)


def test_a_scalar_is_added_at_every_entry():
    d = matcalc.diff("sum(exp(W x + alpha))", "alpha", where="alpha: scalar")
    assert_matches_finite_differences(d)


def test_an_element_wise_product_broadcasts_a_gain():
    d = matcalc.diff("sum((g .* X) .* C)", "g", where=BATCH)
    assert_matches_finite_differences(d)
    assert parses_back(d)


def test_a_broadcast_over_an_undeclared_batch_asks_for_its_size():
    with pytest.raises(ShapeError, match="declare its size"):
        matcalc.diff("sum(W X + b)", "b")


def test_a_column_and_a_row_do_not_make_a_matrix():
    with pytest.raises(ShapeError, match="same shape"):
        matcalc.diff("sum(u + v^T)", "u")


def test_a_scalar_beside_an_undeclared_lowercase_name_asks_which_it_is():
    with pytest.raises(ShapeError, match='x: scalar'):
        matcalc.diff("sum(alpha + x)", "x")


def test_a_greek_scalar_times_a_matrix_is_not_broadcast_silently():
    with pytest.raises(ShapeError, match='theta: vector'):  # X theta - y: theta was meant a vector
        matcalc.diff("norm2(X theta - y)^2", "theta")


# ---------------------------------------------------------------- axes


@pytest.mark.parametrize(("expr", "numpy"), [
    ("sum(X, 1)", lambda x: x.sum(axis=0, keepdims=True)),
    ("sum(X, 2)", lambda x: x.sum(axis=1, keepdims=True)),
    ("mean(X, 1)", lambda x: x.mean(axis=0, keepdims=True)),
    ("mean(X, 2)", lambda x: x.mean(axis=1, keepdims=True)),
    ("var(X, 1)", lambda x: x.var(axis=0, keepdims=True)),
    ("norm2(X, 1)", lambda x: np.linalg.norm(x, axis=0, keepdims=True)),
    ("norm1(X, 2)", lambda x: np.abs(x).sum(axis=1, keepdims=True)),
    ("softmax(X, 1)", lambda x: np.exp(x) / np.exp(x).sum(axis=0, keepdims=True)),
    ("softmax(X, 2)", lambda x: np.exp(x) / np.exp(x).sum(axis=1, keepdims=True)),
    ("logsumexp(X, 1)", lambda x: np.log(np.exp(x).sum(axis=0, keepdims=True))),
    ("logsumexp(X, 2)", lambda x: np.log(np.exp(x).sum(axis=1, keepdims=True))),
])
def test_an_axis_numbers_as_matlab_does(expr, numpy):
    x = np.random.default_rng(1).normal(size=(3, 4))
    expected = numpy(x)
    np.testing.assert_allclose(value(expr, "X: matrix(3, 4)", X=x).reshape(expected.shape), expected, rtol=1e-12)


@pytest.mark.parametrize("expr", [
    "sum(softmax(X, 1) .* C)", "sum(softmax(X, 2) .* C)", "sum(logsumexp(X, 1) .* c^T)",
    "sum(logsumexp(X, 2) .* c)", "sum(var(X, 1) .* c^T)", "sum(norm2(X, 1) .* c^T)", "sum(mean(X, 2) .* c)",
])
def test_the_derivative_along_an_axis_matches_finite_differences(expr):
    where = "X: matrix(3, 4); C: matrix(3, 4); c: vector(" + ("4" if "1)" in expr else "3") + ")"
    d = matcalc.diff(expr, "X", where=where)
    assert_matches_finite_differences(d)
    assert parses_back(d)


def test_softmax_of_a_matrix_asks_for_an_axis():
    with pytest.raises(ShapeError, match=r"softmax\(Z, 1\).*softmax\(Z, 2\)"):
        matcalc.diff("sum(softmax(Z))", "Z")


@pytest.mark.parametrize("axis", ["0", "3", "alpha"])
def test_an_axis_other_than_1_or_2_teaches_the_convention(axis):
    with pytest.raises(ShapeError, match="axis 1 goes down each column"):
        matcalc.diff(f"sum(sum(X, {axis}))", "X")


def test_the_columns_of_a_softmax_sum_to_one():
    d = matcalc.diff("sum(softmax(Z, 1))", "Z")
    assert str(d) == "matrix(0)"


def test_log_softmax_of_each_column_is_evaluated_stably():
    where = "Z: matrix(3, 2); Y: matrix(3, 2)"
    z = np.array([[800.0, -800.0], [0.0, 1.0], [-3.0, 2.0]])
    y = np.array([[1.0, 0.0], [0.0, 0.0], [0.0, 1.0]])
    loss = float(value("-sum(Y .* log(softmax(Z, 1)))", where, Z=z, Y=y).ravel()[0])
    # column 1: -log softmax = logsumexp(800, 0, -3) - 800 = log(1 + e^-800 + e^-803); column 2: logsumexp - 2
    expected = np.log1p(np.exp(-800.0) + np.exp(-803.0)) + (np.log(np.exp(-802.0) + np.exp(-1.0) + 1.0))
    assert loss == pytest.approx(expected, rel=1e-12)
    d = matcalc.diff("-sum(Y .* log(softmax(Z, 1)))", "Z", where=where)
    assert np.all(np.isfinite(np.asarray(d.evaluate({"Z": z, "Y": y}))))


# ---------------------------------------------------------------- element-wise functions of two arguments


@pytest.mark.parametrize(("expr", "numpy"), [
    ("max(u, v)", np.maximum), ("min(u, v)", np.minimum),
    ("max(0, u)", lambda u, v: np.maximum(0, u)), ("min(u, 1)", lambda u, v: np.minimum(u, 1)),
    ("leaky_relu(u, 0.1)", lambda u, v: np.where(u > 0, u, 0.1 * u)),
    ("elu(u)", lambda u, v: np.where(u > 0, u, np.expm1(u))),
])
def test_two_argument_functions_have_numpys_values(expr, numpy):
    rng = np.random.default_rng(3)
    u, v = rng.normal(size=(5, 1)), rng.normal(size=(5, 1))
    got = value(expr, "u, v: vector(5)", u=u, v=v).reshape(5, 1)
    np.testing.assert_allclose(got, numpy(u, v), rtol=1e-12, atol=1e-15)


def test_max_of_zero_and_u_is_relu():
    assert str(matcalc.diff("sum(max(0, u))", "u")) == "step(u)"


@pytest.mark.parametrize("expr", ["sum(max(u, v) .* c)", "sum(min(u, v) .* c)", "sum(leaky_relu(u, 0.1) .* c)",
                                  "sum(elu(u) .* c)", "sum(max(u, 0.5) .* c)"])
def test_two_argument_functions_match_finite_differences(expr):
    d = matcalc.diff(expr, "u", where="u, v, c: vector(4)")
    assert_matches_finite_differences(d)


def test_elu_is_smooth_at_zero_with_slope_one():
    d = matcalc.diff("sum(elu(u))", "u", where="u: vector(2)")
    np.testing.assert_allclose(np.asarray(d.evaluate({"u": np.zeros((2, 1))})).ravel(), [1.0, 1.0])


def test_the_leaky_relu_slope_must_be_a_scalar():
    with pytest.raises(ShapeError, match="slope"):
        matcalc.diff("sum(leaky_relu(u, v))", "u")


def test_max_of_two_shapes_that_do_not_fit_names_both():
    with pytest.raises(ShapeError, match="max"):
        matcalc.diff("sum(max(u, A))", "u", where="u: vector(3); A: matrix(2, 2)")


def test_a_function_given_too_many_arguments_says_how_many_it_takes():
    with pytest.raises(ShapeError, match="tanh takes 1 argument"):
        matcalc.diff("sum(tanh(u, v))", "u")
