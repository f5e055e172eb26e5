"""Every printed result parses back and evaluates (issue 16, section 3).

Each test takes one result the issue names, reads its text back with the result's own `where` and `shape`
(docs/language.md: `parse(str(d), where=d.where, shape=d.shape) == d.expr`, a tensor's shape included), and
evaluates the tree read back from the values of the function's variables alone: its numbers must match central
finite differences of the function (tests/oracles.py, which never looks at the engine's rules).
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from oracles import finite_difference, random_values

import matcalc
from matcalc import ShapeError
from matcalc.core import ir


def _read_back(d: matcalc.Derivative) -> matcalc.Derivative:
    """d as its own text reads back (with d's where and shape): the same tree, else the test fails."""
    back = matcalc.parse(str(d), where=d.where, shape=d.shape)
    assert back == d.expr, f"{d} parses back to {back!r}, not to {d.expr!r}"
    return dataclasses.replace(d, body=back, bindings=(), inline_result=back)


def _function_values(function: ir.Expr, seed: int = 0, sizes: dict[str, int] | None = None) -> dict:
    """Values of the function's variables only: no sizes, no names the result alone uses."""
    values = random_values([function], seed, sizes)
    return {name: value for name, value in values.items() if name in ir.variables(function)}


def assert_parses_back_and_evaluates(d: matcalc.Derivative, function: ir.Expr | None = None,
                                     sizes: dict[str, int] | None = None) -> None:
    """The text reads back to d's tree, and that tree, evaluated from the values of the variables of `function` (the
    function first differentiated; d's own by default), matches finite differences of what d differentiates."""
    reread = _read_back(d)
    values = _function_values(function if function is not None else d.function, sizes=sizes)
    got = np.asarray(reread.evaluate(values, form="vec") if d.form == "vec" else reread.evaluate(values))
    oracle_values = random_values([function if function is not None else d.function, d.function], 0, sizes)
    expected = finite_difference(d, {**oracle_values, **values})
    assert got.shape == expected.shape
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)


def test_the_sylvester_operator_prints_as_the_textbook_writes_it_and_parses_back():
    d = matcalc.diff("A X + X B", "X")
    assert str(d) == "I ⊗ A + B^T ⊗ I"
    assert_parses_back_and_evaluates(d)


def test_kron_of_identities_beside_declared_matrices_types():
    where = "A: matrix(n, n); B: matrix(m, m)"
    e = matcalc.parse("kron(I, A) + kron(B^T, I)", where=where)
    assert e == matcalc.parse("I ⊗ A + B^T ⊗ I", where=where)
    d = matcalc.diff("A X + X B", "X", where=where)
    assert e == d.expr  # I_m ⊗ A + B^T ⊗ I_n: each identity takes the size the other factor leaves
    assert_parses_back_and_evaluates(d)


def test_the_gradient_of_the_trace_of_diag_of_vec_parses_back():
    assert_parses_back_and_evaluates(matcalc.diff("tr(diag(vec(Q)))", "Q"))


def test_the_gradient_of_a_trace_of_kronecker_products_parses_back():
    assert_parses_back_and_evaluates(matcalc.diff("tr((A ⊗ B) (X ⊗ X))", "X"))


def test_the_gradient_of_a_kronecker_quadratic_form_parses_back():
    assert_parses_back_and_evaluates(matcalc.diff("vec(X)^T (A ⊗ B) vec(X)", "X"))


def test_an_undeclared_kronecker_quadratic_form_takes_the_sizes_vec_means():
    # (A ⊗ B) vec(X) = vec(B X A^T): for X n×m, A is m×m and B n×n, so X 2×3, A 3×3, B 2×2 evaluate
    d = matcalc.diff("vec(X)^T (A ⊗ B) vec(X)", "X")
    assert (d.where["A"].dims, d.where["B"].dims, d.where["X"].dims) == (("m", "m"), ("n", "n"), ("n", "m"))
    rng = np.random.default_rng(0)
    x, a, b = rng.uniform(0.5, 1.5, (2, 3)), rng.uniform(0.5, 1.5, (3, 3)), rng.uniform(0.5, 1.5, (2, 2))
    # the gradient of vec(X)^T (A ⊗ B) vec(X) is the unvec of ((A ⊗ B) + (A ⊗ B)^T) vec(X), by hand
    by_hand = ((np.kron(a, b) + np.kron(a, b).T) @ x.reshape(-1, order="F")).reshape(2, 3, order="F")
    np.testing.assert_allclose(_read_back(d).evaluate({"X": x, "A": a, "B": b}), by_hand, rtol=1e-12)


def test_a_derivative_of_a_derivative_with_commutation_matrices_parses_back():
    first = matcalc.diff("B Q", "B")
    second = first.diff("Q")
    assert_parses_back_and_evaluates(second, function=first.function)


def test_a_tensor_parses_back_with_its_own_shape():
    d = matcalc.diff("W x + b", "W")
    assert d.shape == ("n", "n", "m") and d.shape.matrix == d.matrix_shape
    assert_parses_back_and_evaluates(d)


def test_a_constant_in_a_kronecker_product_prints_the_size_of_the_identity_beside_it():
    where = "u: vector(m); W: matrix(m, n)"
    d = matcalc.diff("exp(u u^T - u u^T) W", "W", where=where)
    assert str(d) == "identity(n) ⊗ matrix(1)"
    assert_parses_back_and_evaluates(d)
    assert matcalc.check("exp(u u^T - u u^T) W", "W", str(d), where=where)


def test_the_hessian_of_a_determinant_of_fixed_size_parses_back():
    assert_parses_back_and_evaluates(matcalc.hessian("det(X)", "X", where="X: matrix(2, 2)"))


def test_the_derivative_of_a_gram_matrix_of_fixed_size_parses_back():
    assert_parses_back_and_evaluates(matcalc.diff("W^T W", "W", where="W: matrix(2, 3)"))


def test_the_hessian_of_a_row_variance_names_no_ones_of_open_size():
    # var(x y^T, 2) is x .* x var(y): the Hessian is 2 x^T (x .* x) (I - matrix(1) / n) / n. It printed
    # diag(vector(1) x^T (x .* x)) and (x vector(1)^T) .* (x vector(1)^T), ones whose size nothing in the text fixed
    h = matcalc.hessian("x^T var((x y^T), 2)", "y", where="x: vector(n); y: vector(n)")
    assert "vector(1)" not in str(h)
    assert_parses_back_and_evaluates(h)


def test_a_second_derivative_evaluates_from_the_functions_variables_alone():
    # d/dbeta of d/dv of (v - (u - u)) / sigmoid(beta) holds an I of v's size, which no variable of it carries
    function = "((v - (u - u)) / sigmoid((beta)^T))"
    first = matcalc.diff(function, "v", where="beta: scalar; u: vector(m); v: vector(m)")
    second = first.diff("beta")
    assert "v" not in ir.variables(second.expr)
    assert_parses_back_and_evaluates(second, function=first.function, sizes={"m": 3})
    values = _function_values(matcalc.parse(function, where="beta: scalar; u: vector(m); v: vector(m)"),
                              sizes={"m": 3})
    assert np.asarray(second.evaluate(values)).shape == (3, 3)


@pytest.mark.parametrize("shape", [("n",), ("n", "m", "p"), 3, "n", (0, 2), (True, 2)])
def test_a_shape_that_is_not_a_pair_of_sizes_is_a_parse_error(shape):
    with pytest.raises(ShapeError, match="shape"):
        matcalc.parse("x", shape=shape)
