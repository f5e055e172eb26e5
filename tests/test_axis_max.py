"""The largest and smallest entry (issue 17): max(u) of a vector, max(U, [], 1) of each column and max(U, [], 2) of
each row (MATLAB's form), min likewise (-max(-U, [], k)), and argmax_mask, their derivative: where entries tie for
the largest, the derivative is shared equally among them (as JAX and PyTorch do).

Each test states one identity and checks it against an oracle: central finite differences in float64
(tests/oracles.py), NumPy written by hand, SymPy (verify), or jax.grad.
"""

from __future__ import annotations

import importlib.util
import random

import numpy as np
import pytest
from oracles import assert_matches_finite_differences, evaluate_expr, finite_difference
from test_derivation_methods import assert_every_step_true

import matcalc
from matcalc import ParseError, ShapeError
from matcalc.backends import verify
from matcalc.backends.pycode import compile_source

HAVE_JAX = importlib.util.find_spec("jax") is not None
needs_jax = pytest.mark.skipif(not HAVE_JAX, reason="jax is not installed (pip install matcalc-symbolic[jax])")
if HAVE_JAX:
    import jax

    jax.config.update("jax_enable_x64", True)

# a 3x4 matrix whose column 1 has a tie for its largest entry (rows 0 and 2) and row 1 a tie (columns 0 and 3)
TIED = np.array([[0.5, 2.0, -1.0, 0.25],
                 [1.5, 0.75, 0.0, 1.5],
                 [-0.5, 2.0, 0.5, 1.0]])


def parses_back(d: matcalc.Derivative) -> bool:
    shape = d.shape.matrix if d.form == "vec" else d.shape
    return matcalc.parse(str(d), where=d.where, shape=shape) == d.expr


def mask_by_hand(u: np.ndarray, axis: int) -> np.ndarray:
    """1 / count at each entry tied for the largest of its column (axis 0) or row (axis 1), else 0."""
    top = (u == u.max(axis=axis, keepdims=True)).astype(float)
    return top / top.sum(axis=axis, keepdims=True)


# ---------------------------------------------------------------- gradients and Jacobians, against finite differences


def test_the_gradient_of_the_sum_of_column_maxima_is_each_columns_mask():
    d = matcalc.diff("sum(max(U, [], 1))", "U")
    assert str(d) == "argmax_mask(U, 1)"
    assert_matches_finite_differences(d)
    assert parses_back(d)


def test_the_gradient_of_the_largest_entry_of_a_vector_is_its_mask():
    d = matcalc.diff("max(u)", "u")
    assert str(d) == "argmax_mask(u)"
    assert_matches_finite_differences(d)
    assert parses_back(d)


def test_the_jacobian_of_the_row_maxima_in_vec_form_matches_finite_differences():
    d = matcalc.diff("max(U, [], 2)", "U")
    assert d.shape == ("n", "n", "m")
    assert_matches_finite_differences(d)
    assert parses_back(d)


def test_the_jacobian_of_the_column_maxima_of_a_layer_matches_finite_differences():
    d = matcalc.diff("max(W X, [], 1)", "W")
    assert_matches_finite_differences(d)
    assert parses_back(d)


def test_the_gradient_of_the_smallest_entry_is_the_mask_of_the_negated_vector():
    d = matcalc.diff("min(u)", "u")
    assert str(d) == "argmax_mask(-u)"  # min(u) = -max(-u)
    assert_matches_finite_differences(d)
    assert parses_back(d)


def test_the_gradient_of_the_sum_of_row_minima_matches_finite_differences():
    d = matcalc.diff("sum(min(U, [], 2))", "U")
    assert str(d) == "argmax_mask(-U, 2)"
    assert_matches_finite_differences(d)


def test_the_jacobian_of_the_column_minima_in_vec_form_matches_finite_differences():
    d = matcalc.diff("min(U, [], 1)", "U")
    assert_matches_finite_differences(d)
    assert parses_back(d)


def test_a_max_inside_a_network_is_differentiated_in_one_backward_pass():
    d = matcalc.diff("h = tanh(W X); L = sum(max(h, [], 1)) + min(W x)", "W")
    assert_matches_finite_differences(d)
    assert parses_back(d)


def test_the_two_argument_max_stays_the_element_wise_max():
    d = matcalc.diff("sum(max(u, 1))", "u")  # the max of u and the number 1, entry by entry (MATLAB's meaning too)
    assert str(d) == "step(u - 1)"
    assert_matches_finite_differences(d)


# ---------------------------------------------------------------- ties: the derivative shared equally


def test_at_a_tie_the_mask_shares_the_derivative_equally():
    for axis, k in ((0, 1), (1, 2)):
        got = matcalc.diff(f"sum(max(U, [], {k}))", "U").evaluate({"U": TIED})
        np.testing.assert_array_equal(got, mask_by_hand(TIED, axis))
    np.testing.assert_array_equal(matcalc.diff("max(u)", "u").evaluate({"u": [1.0, 3.0, 3.0, 3.0]}),
                                  [0.0, 1 / 3, 1 / 3, 1 / 3])


@needs_jax
def test_the_equal_share_at_a_tie_is_jaxs():
    import jax.numpy as jnp

    for k, axis in ((1, 0), (2, 1)):
        expected = jax.grad(lambda u, axis=axis: jnp.sum(jnp.max(u, axis=axis)))(TIED)
        got = matcalc.diff(f"sum(max(U, [], {k}))", "U").evaluate({"U": TIED})
        np.testing.assert_allclose(got, expected, rtol=0, atol=1e-15)
        expected = jax.grad(lambda u, axis=axis: jnp.sum(jnp.min(u, axis=axis)))(-TIED)
        got = matcalc.diff(f"sum(min(U, [], {k}))", "U").evaluate({"U": -TIED})
        np.testing.assert_allclose(got, expected, rtol=0, atol=1e-15)


def test_a_proof_at_a_tie_is_a_kink_that_proves_nothing():
    import mpmath
    import sympy as sp

    dual = verify.DualBackend()
    tied = verify.Dual(sp.Matrix([1, 3, 3]), sp.Matrix([0, 1, 0]))
    for name in ("max", "argmax_mask"):
        with pytest.raises(verify._Undefined):
            dual.function(name, tied)
        with pytest.raises(verify._Undefined):
            verify.PreciseBackend(random.Random(0)).function(name, mpmath.matrix([[1], [3], [3]]))
    untied = dual.function("max", verify.Dual(sp.Matrix([1, 3, 2]), sp.Matrix([5, 7, 11])))
    assert untied == verify.Dual(sp.Matrix([[3]]), sp.Matrix([[7]]))  # the largest entry moves as its own direction


# ---------------------------------------------------------------- Hessians, higher orders, proofs


def test_the_hessian_of_the_largest_entry_is_zero():
    h = matcalc.hessian("max(u)", "u")
    assert str(h) == "matrix(0)"
    u = np.array([0.3, 1.2, -0.4, 0.9])
    gradient = matcalc.diff("max(u)", "u")
    np.testing.assert_allclose(finite_difference(h, {"u": u.reshape(-1, 1)}), np.zeros((4, 4)), atol=1e-12)
    np.testing.assert_array_equal(gradient.evaluate({"u": u}), [0.0, 1.0, 0.0, 0.0])


def test_the_hessian_of_a_max_of_a_quadratic_matches_finite_differences():
    h = matcalc.hessian("max(A x) + x^T x", "x")
    assert str(h) == "2 I"  # the max's part is piecewise linear: its Hessian is 0
    assert_matches_finite_differences(h)


def test_the_derivative_of_the_mask_is_zero_in_every_order():
    d = matcalc.diff("max(U, [], 1)", "U")
    assert str(d.diff("U")) == "matrix(0)"  # a 4th-order tensor, zero
    assert d.diff("U").shape == ("m", "n", "m", "n", "m")


@pytest.mark.parametrize("expr, var", [("sum(max(U, [], 2))", "U"), ("min(A x)", "x")])
def test_derivatives_of_max_and_min_are_proven_with_sympy(expr: str, var: str):
    assert matcalc.diff(expr, var).verify()


def test_a_wrong_derivative_of_a_max_is_refuted():
    result = matcalc.check("max(W x)", "W", "argmax_mask(W x) x^T / 2")
    assert not result and not result.undecided


@pytest.mark.parametrize("method", ["differential", "chain", "index"])
def test_every_step_of_a_max_derivation_is_true(method: str):
    d = matcalc.diff("sum(max(W X, [], 1))", "W")
    assert assert_every_step_true(d.method_steps(method), [d]) > 0


# ---------------------------------------------------------------- values, code, printing


def test_max_and_min_of_each_column_and_row_evaluate_as_numpy():
    for k, axis in ((1, 0), (2, 1)):
        for name, reduce in (("max", np.max), ("min", np.min)):
            got = evaluate_expr(matcalc.parse(f"{name}(U, [], {k})"), {"U": TIED})
            np.testing.assert_array_equal(np.asarray(got).reshape(-1), reduce(TIED, axis=axis))
        got = evaluate_expr(matcalc.parse(f"argmax_mask(U, {k})"), {"U": TIED})
        np.testing.assert_array_equal(got, mask_by_hand(TIED, axis))


@pytest.mark.parametrize("expr", ["sum(max(U, [], 1))", "sum(min(U, [], 2))", "max(U, [], 2)", "max(vec(U))"])
def test_generated_numpy_code_computes_the_engines_numbers(expr: str):
    d = matcalc.diff(expr, "U")
    code = d.to_code("numpy")
    assert "for " not in code.split('"""')[-1]  # no Python loop in the function's body
    np.testing.assert_allclose(d.compile("numpy")(U=TIED), d.evaluate({"U": TIED}), rtol=1e-15)


@needs_jax
def test_generated_jax_code_computes_the_engines_numbers_at_a_tie():
    d = matcalc.diff("sum(max(U, [], 1)) + sum(min(U, [], 2))", "U")
    np.testing.assert_allclose(np.asarray(d.compile("jax")(U=TIED)), d.evaluate({"U": TIED}), rtol=1e-15)


@pytest.mark.skipif(importlib.util.find_spec("torch") is None, reason="torch is not installed")
def test_generated_torch_code_computes_the_engines_numbers_at_a_tie():
    import torch

    d = matcalc.diff("sum(max(U, [], 1)) + sum(min(U, [], 2)) + max(vec(U))", "U")
    got = d.compile("torch")(U=torch.tensor(TIED, dtype=torch.float64))
    np.testing.assert_allclose(got.numpy(), d.evaluate({"U": TIED}), rtol=1e-15)


def test_generated_numpy_code_reduces_along_an_axis_with_keepdims():
    code = matcalc.codegen("L = sum(max(U, [], 1)) + sum(min(U, [], 2))", ["U"], backend="numpy")
    assert "np.max(U, axis=0, keepdims=True)" in code  # each column's largest entry, a row
    assert "axis=1, keepdims=True)" in code  # each row's smallest, -max(-U, [], 2), a column


@needs_jax
def test_generated_jax_value_and_gradient_match_jax_grad():
    program = "h = tanh(W X); L = sum(max(h, [], 1)) - max(W x)"
    value_and_gradients = compile_source(matcalc.codegen(program, ["W"], backend="jax"), "value_and_gradients")
    rng = np.random.default_rng(1)
    at = {"W": rng.normal(size=(3, 4)), "X": rng.normal(size=(4, 5)), "x": rng.normal(size=4)}
    value, gradient = value_and_gradients(**at)

    def model(w):
        import jax.numpy as jnp

        return jnp.sum(jnp.max(jnp.tanh(w @ at["X"]), axis=0)) - jnp.max(w @ at["x"])

    np.testing.assert_allclose(value, model(at["W"]), rtol=1e-12)
    np.testing.assert_allclose(gradient, jax.grad(model)(at["W"]), rtol=1e-12)


@pytest.mark.parametrize("text", ["max(U, [], 1)", "min(U, [], 2)", "max(u)", "-max(-u)", "argmax_mask(U, 2)",
                                  "argmax_mask(u)^T x", "max(u, v)"])
def test_printed_calls_parse_back_as_the_same_tree(text: str):
    e = matcalc.parse(text)
    assert matcalc.parse(str(matcalc.parse(str(e)))) == e
    if "[]" in text:
        assert "[]" in str(e)


def test_latex_writes_max_with_its_empty_argument():
    d = matcalc.diff("sum(max(U, [], 1))", "U")
    assert r"\max\left(U, [\,], 1\right)" in d.latex()
    assert r"\operatorname{argmax\_mask}\left(U, 1\right)" in d.latex()


# ---------------------------------------------------------------- errors


def test_the_max_of_a_matrix_without_an_axis_suggests_both_axis_forms():
    for name in ("max", "min"):
        both = rf"`{name}\(U, \[\], 1\)` of each column, `{name}\(U, \[\], 2\)` of each row"
        with pytest.raises(ShapeError, match=both):
            matcalc.parse(f"{name}(U)")


@pytest.mark.parametrize("text", ["[]", "x + []", "max(U, [])", "max([], U, 1)", "max(U, 1, [])", "softmax(U, [], 1)",
                                  "sum([])", "h = []; L = sum(h)"])
def test_an_empty_matrix_elsewhere_says_where_it_may_stand(text: str):
    with pytest.raises(ParseError, match=r"`\[\]` may stand only as the middle argument of `max\(U, \[\], k\)`"):
        matcalc.parse(text) if ";" not in text else matcalc.diff(text, "h")


@pytest.mark.parametrize("text", ["max(U, [], 3)", "min(U, [], 0)", "argmax_mask(U, 3)"])
def test_an_axis_other_than_1_or_2_is_the_conventions_error(text: str):
    with pytest.raises(ParseError, match=r"must be 1 or 2.*axis 1 goes down each column"):
        matcalc.parse(text)


def test_the_cli_exits_2_on_an_empty_matrix_elsewhere():
    from matcalc.cli import main

    assert main(["diff", "sum(x + [])", "x"]) == 2


@pytest.mark.parametrize(("expr", "var", "where", "printed"), [
    ("x^T logsumexp(W - W, 2)", "x", "W: matrix(n, m); x: vector(n)", "log(m) vector(1)"),  # log of m equal terms
    ("sum(softmax(W - W, 1) .* C)", "C", "W, C: matrix(n, m)", "matrix(1) / n"),  # each column shared n ways
    ("sum(argmax_mask(W - W, 2) .* C)", "C", "W, C: matrix(n, m)", "matrix(1) / m"),  # every entry ties
    ("x^T max(W - W + 2, [], 2)", "x", "W: matrix(n, m); x: vector(n)", "vector(2)"),
])
def test_a_function_of_a_constant_matrix_along_an_axis_is_the_constant_it_gives(expr, var, where, printed):
    # the rule "functions of a constant vector", of each column or row: the printed result keeps the sizes it needs
    d = matcalc.diff(expr, var, where=where)
    assert str(d) == printed
    assert matcalc.parse(str(d), where=d.where, shape=d.shape) == d.expr
    assert_matches_finite_differences(d)
