"""Derivatives beyond the cookbook table: the seeds' derivations, ML models, Hessians, conventions.

Every result is checked against finite differences of the function and proven with SymPy.
"""

import numpy as np
import pytest
from oracles import assert_matches_finite_differences, random_values

import matcalc


def assert_proven(d: matcalc.Derivative) -> None:
    assert_matches_finite_differences(d)
    report = d.verify()
    assert report, str(report)


# Parr & Howard, Dillon, and the Jacobian theory page: what the seeds derive by hand.
SEEDS = [
    ("W x", "x", "W"),                                  # linear layer: Jacobian W
    ("a^T x", "x", "a"),                                # gradient of a dot product
    ("x + y", "x", "I"),                                # element-wise +: diagonal (identity) Jacobian
    ("x - y", "y", "-I"),
    ("x .* y", "y", "diag(x)"),
    ("x ./ y", "x", "diag(1 ./ y)"),
    ("sum(x)", "x", "vector(1)"),                       # sum reduction
    ("sum(x .* z)", "x", "z"),
    ("relu(W x + b)", "x", "diag(step(W x + b)) W"),    # activations: diagonal Jacobians
    ("sigmoid(x)", "x", "diag(sigmoid(x) .* (1 - sigmoid(x)))"),
    ("V sigmoid(W x + b)", "x", None),                  # a stack of layers: the vector chain rule
    ("V relu(W x + b) + c", "b", None),
    ("sum(V tanh(W x))", "W", None),
    ("norm2(V relu(W x) - y)^2", "W", None),            # gradient of a loss through two layers
    ("norm2(V relu(W x) - y)^2", "V", None),
]


@pytest.mark.parametrize(("expr", "var", "expected"), SEEDS, ids=[f"d({e})/d{v}" for e, v, _ in SEEDS])
def test_seed_derivations(expr, var, expected):
    d = matcalc.diff(expr, var)
    if expected is not None:
        assert str(d) == expected
    assert_proven(d)


ML = [
    ("y^T log(softmax(W x))", "W", "(y - sum(y) softmax(W x)) x^T"),   # cross-entropy
    ("logsumexp(W x) - y^T W x", "x", None),
    ("norm2(X w - y)^2 + lambda norm2(w)^2", "w", "2 (X^T (X w - y) + lambda w)"),  # ridge
    ("sum(log(exp(-y .* (X w)) + 1))", "w", None),                   # logistic loss, number broadcast
    ("log(sigmoid(w^T x))", "w", "(1 - sigmoid(w^T x)) x"),
    ("softmax(W x)", "x", "s = softmax(W x)\n(diag(s) - s s^T) W"),
    ("x / norm2(x)", "x", "-x x^T / norm2(x)^3 + I / norm2(x)"),
    ("0.5 (x - c)^T inv(S) (x - c)", "x", "inv(S) (x - c)"),               # Gaussian energy, repeated variable
    ("logdet(S) + a^T inv(S) a", "S", "inv(S) - inv(S) a a^T inv(S)"),
    ("a^T X^T X b", "X", "X (b a^T + a b^T)"),
    ("tr(A X^T B X C)", "X", None),
    ("det(X^T X)", "X", "2 det(X^T X) X inv(X^T X)"),
    ("sqrt(x^T x)", "x", "x / sqrt(x^T x)"),
    ("(x^T A x) (x^T B x)", "x", None),
    ("tr(X^3)", "X", "3 (X^T)^2"),
    ("exp(alpha) x", "alpha", "exp(alpha) x"),
    ("det(alpha X)", "alpha", None),
    ("a^b", "b", "a^b log(a)"),
]


@pytest.mark.parametrize(("expr", "var", "expected"), ML, ids=[f"d({e})/d{v}" for e, v, _ in ML])
def test_machine_learning_derivatives(expr, var, expected):
    where = "a, b: scalar" if expr == "a^b" else ("S: symmetric" if "S" in expr else None)
    d = matcalc.diff(expr, var, where=where)
    if expected is not None:
        assert str(d) == expected
    assert_proven(d)


HESSIANS = [
    ("x^T A x", "A + A^T"),
    ("norm2(A x - b)^2", "2 A^T A"),
    ("sum(log(exp(-y .* (X w)) + vector(1)))", None),
    ("logsumexp(x)", "diag(softmax(x)) - softmax(x) softmax(x)^T"),
    ("sin(x^T x)", None),
    ("norm2(x)", None),
    ("x^T x x^T x", None),
]


@pytest.mark.parametrize(("expr", "expected"), HESSIANS, ids=[e for e, _ in HESSIANS])
def test_hessians(expr, expected):
    var = "w" if "w" in expr else "x"
    h = matcalc.hessian(expr, var)
    if expected is not None:
        assert str(h) == expected
    assert_proven(h)


def test_second_derivative_wrt_a_scalar():
    h = matcalc.hessian("alpha^3", "alpha")
    assert str(h) == "6 alpha"
    assert_proven(h)


def test_denominator_layout_is_the_transpose():
    numerator = matcalc.diff("sigmoid(W x)", "x")
    denominator = matcalc.diff("sigmoid(W x)", "x", layout="denominator")
    assert denominator.shape == (numerator.shape[1], numerator.shape[0])
    values = random_values([numerator.function])
    np.testing.assert_allclose(denominator.evaluate(values), numerator.evaluate(values).T)
    assert_proven(denominator)


def test_gradient_layout_is_the_variables_shape_in_both_layouts():
    for layout in ("numerator", "denominator"):
        assert matcalc.diff("a^T x", "x", layout=layout).shape == ("n", 1)


def test_symmetric_gradient_is_sym_of_the_unconstrained_gradient():
    """For symmetric X the gradient is (G + G^T)/2: <G_sym, H> is the directional derivative along symmetric H."""
    d = matcalc.diff("a^T S b", "S", where="S: symmetric")
    assert str(d) == "0.5 (a b^T + b a^T)"
    values = random_values([d.function])
    g = d.evaluate(values)
    rng = np.random.default_rng(1)
    h = rng.normal(size=g.shape)
    h = h + h.T
    step = 1e-6
    f = matcalc.diff("a^T S b", "a", where="S: symmetric")  # a^T S b = a . (S b): evaluate f through its gradient
    up = float(np.dot(values["a"], f.evaluate({**values, "S": values["S"] + step * h})))
    down = float(np.dot(values["a"], f.evaluate({**values, "S": values["S"] - step * h})))
    np.testing.assert_allclose((up - down) / (2 * step), np.sum(g * h), rtol=1e-6)
    np.testing.assert_allclose(g, g.T)
    assert_proven(d)


def test_symmetric_declaration_simplifies_the_gradient():
    assert str(matcalc.diff("x^T S x", "x", where="S: symmetric")) == "2 S x"
    assert str(matcalc.diff("log(det(S))", "S", where="S: symmetric")) == "inv(S)"


def test_variable_not_in_the_expression_gives_a_zero_of_the_right_shape():
    """Declared, a variable the expression does not use has the zero derivative (undeclared, it is a typo's error)."""
    assert str(matcalc.diff("a^T x", "y", where="y: vector(k)")) == "vector(0)"
    assert matcalc.diff("a^T x", "y", where="y: vector(k)").shape == ("k", 1)
    assert str(matcalc.diff("x^T A x", "B", where="B: matrix")) == "matrix(0)"
    assert matcalc.diff("x", "alpha", where="alpha: scalar").shape == ("n", 1)
    assert str(matcalc.diff("x", "y", where="y: vector")) == "matrix(0)"


@pytest.mark.parametrize(("expr", "var", "expected", "order"), [
    ("A x", "A", "x^T ⊗ I", 3), ("X", "X", "identity(m n)", 4), ("inv(X)", "X", "-(inv(X)^T ⊗ inv(X))", 4),
    ("x x^T", "x", "x ⊗ I + I ⊗ x", 3), ("x^T", "X", "matrix(0)", 3),
])
def test_higher_order_tensors_once_refused_are_written_in_vec_form(expr, var, expected, order):
    d = matcalc.diff(expr, var, where=f"{var}: matrix" if var not in expr else None)
    assert str(d) == expected and d.order == order
    assert_matches_finite_differences(d)


def test_hessian_wrt_a_matrix_is_the_4th_order_vec_form():
    d = matcalc.hessian("tr(X^T X)", "X")
    assert str(d) == "2 identity(m n)" and d.order == 4
    assert_matches_finite_differences(d)


def test_hessian_of_a_vector_is_a_shape_error():
    with pytest.raises(matcalc.ShapeError, match="scalar"):
        matcalc.hessian("A x", "x")


@pytest.mark.parametrize(("expr", "var", "expected"), [
    ("diag(X x z^T)", "x", "diag(z) X"),
    ("diag(x z^T)", "z", "diag(x)"),
    ("diag(x y^T + A x x^T)", "x", "diag(y) + diag(x) A + diag(A x)"),
])
def test_jacobian_through_the_diagonal_of_an_outer_product(expr, var, expected):
    """Regression: the Jacobian reader once refused diag(u dx^T); diag(u v^T) = u .* v."""
    d = matcalc.diff(expr, var)
    assert str(d) == expected
    assert_proven(d)


def test_hessian_through_the_diagonal_of_a_diagonal_matrix():
    """Regression (found by random expressions): diag(diag(y)) = y, in the Jacobian reader and in simplification."""
    assert str(matcalc.diff("norm2(diag(y))^2", "y")) == "2 y"
    h = matcalc.hessian("norm2(diag(y))^2", "y")
    assert str(h) == "2 I"
    assert_proven(h)
