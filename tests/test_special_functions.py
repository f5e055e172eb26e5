"""The functions added as one FunctionSpec entry each (core/functions.py), erf and gelu: each derivative through them
matches central finite differences and is proven by SymPy with the exact function, prints and parses back to the
same tree, and generated NumPy and JAX code (PyTorch where installed) computes what `evaluate` computes; the
function's differential rule is in the rule tables, its NumPy meaning is right in both tails. gelu is the exact one,
u Phi(u) through erf."""

from __future__ import annotations

import math

import numpy as np
import pytest
from test_codegen import HAVE_JAX, HAVE_TORCH, INSTALLED_BACKENDS, generated_value, values_for
from test_derivatives import assert_proven

import matcalc
from matcalc.backends.pycode import compile_source
from matcalc.calculus.differential import DIFFERENTIAL_RULES, ELEMENTWISE_RULES
from matcalc.core import ir
from matcalc.core.functions import FUNCTIONS

if HAVE_JAX:
    import jax

NEW_FUNCTIONS = ["erf", "gelu"]

# (expression, variable, its derivative as printed, or None)
CASES = [
    ("erf(x)", "x", "2 diag(exp(-x.^2)) / sqrt(pi)"),
    ("erf(alpha)", "alpha", "2 exp(-alpha^2) / sqrt(pi)"),
    ("sum(erf(W x + b))", "x", "2 W^T exp(-(W x + b).^2) / sqrt(pi)"),
    ("sum(erf(W x + b))", "W", None),
    ("erf(a^T x)", "x", "2 exp(-(a^T x)^2) a / sqrt(pi)"),
    ("sum(erf(X))", "X", "2 exp(-X.^2) / sqrt(pi)"),
    ("erf(W x)", "W", None),  # a 3rd-order tensor, in vec form
    ("norm2(erf(W x) - y)^2", "W", None),
    ("erf(erf(alpha) x)", "alpha", None),
    ("gelu(x)", "x", "diag(0.5 (1 + erf(x / sqrt(2))) + (x .* exp(-0.5 x.^2)) / sqrt(2 pi))"),
    ("gelu(alpha)", "alpha", "0.5 (1 + erf(alpha / sqrt(2))) + alpha exp(-0.5 alpha^2) / sqrt(2 pi)"),
    ("sum(gelu(W x + b))", "W", None),
    ("norm2(V gelu(W x) - y)^2", "W", None),  # a two-layer GELU network's loss
    ("sum(gelu(X))", "X", "0.5 (1 + erf(X / sqrt(2))) + (X .* exp(-0.5 X.^2)) / sqrt(2 pi)"),
    ("gelu(W x)", "W", None),
    ("gelu(gelu(alpha) x)", "alpha", None),
]
IDS = [f"d({e})/d{v}" for e, v, _ in CASES]


@pytest.mark.parametrize(("expr", "var", "expected"), CASES, ids=IDS)
def test_derivatives_through_the_new_functions_match_finite_differences_and_are_proven(expr, var, expected):
    d = matcalc.diff(expr, var)
    if expected is not None:
        assert str(d) == expected
    assert_proven(d)


@pytest.mark.parametrize(("expr", "var", "expected"), CASES, ids=IDS)
def test_printed_derivatives_through_the_new_functions_parse_back_to_the_same_tree(expr, var, expected):
    d = matcalc.diff(expr, var)
    assert matcalc.parse(str(d), where=d.where, shape=d.body.shape) == d.expr


@pytest.mark.parametrize("backend", INSTALLED_BACKENDS)
@pytest.mark.parametrize(("expr", "var", "expected"), CASES, ids=IDS)
def test_generated_code_through_the_new_functions_computes_what_evaluate_computes(backend, expr, var, expected):
    d = matcalc.diff(expr, var)
    values = values_for(d)
    np.testing.assert_allclose(generated_value(d, backend, values), d.evaluate(values), rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("name", NEW_FUNCTIONS)
def test_the_differential_rule_of_each_new_function_is_in_the_rule_tables(name):
    rule = ELEMENTWISE_RULES[name]
    assert rule.statement == FUNCTIONS[name].derivative and rule.statement.startswith(f"d {name}(u) -> ")
    assert name in DIFFERENTIAL_RULES.first(ir.func(name, ir.Var("x", ("n", 1)))).heads
    assert "elementwise function" in matcalc.diff(f"{name}(x)", "x").derivation()


def test_erf_is_exact_in_numpy_in_both_tails_and_odd():
    points = np.array([[-30.0, -6.0, -1e-12, 0.0, 1e-12, 0.5, 6.0, 30.0]])
    got = FUNCTIONS["erf"].numpy(np, points)
    assert got.dtype == np.float64 and got.shape == points.shape
    np.testing.assert_array_equal(got, [[math.erf(v) for v in points[0]]])
    np.testing.assert_array_equal(got, -FUNCTIONS["erf"].numpy(np, -points))
    assert got[0, 0] == -1.0 and got[0, -1] == 1.0 and got[0, 3] == 0.0


def test_erf_prints_in_latex_as_an_operator_and_is_zero_at_zero():
    assert r"\operatorname{erf}\left(x\right)" in matcalc.diff("erf(x)", "x").latex()
    assert str(matcalc.parse("erf(vector(0))")) == "vector(0)"


def test_erf_has_its_own_numpy_helper_in_generated_code():
    code = matcalc.diff("sum(erf(x))", "x").to_code("numpy")
    assert "def _erf(a):" not in code  # the derivative uses exp only
    code = matcalc.codegen("sum(erf(W x))", ["W"], backend="numpy")
    assert "def _erf(a):" in code and "np.sum(_erf(" in code
    f = compile_source(code, "value_and_gradients")
    W, x = np.arange(6.0).reshape(2, 3) / 10, np.array([0.5, -1.0, 2.0])
    value, gradient = f(W=W, x=x)
    np.testing.assert_allclose(value, sum(math.erf(v) for v in W @ x), rtol=1e-14)
    np.testing.assert_allclose(gradient, np.outer(2 * np.exp(-(W @ x) ** 2) / math.sqrt(math.pi), x), rtol=1e-13)


def test_gelu_in_numpy_is_u_phi_of_u_and_keeps_its_precision_far_in_the_negative_tail():
    import sympy as sp

    points = [-40.0, -12.0, -5.0, -1.0, -1e-8, 0.0, 1e-8, 0.5, 3.0, 40.0]
    got = FUNCTIONS["gelu"].numpy(np, np.array([points]))[0]
    u = sp.Symbol("u")
    # 1 + erf(u / sqrt(2)) = erfc(-u / sqrt(2)), which SymPy evaluates without cancelling, to 50 digits
    exact = [float((u * sp.erfc(-u / sp.sqrt(2)) / 2).subs(u, sp.Rational(v)).evalf(50)) for v in points]
    np.testing.assert_allclose(got, exact, rtol=1e-13, atol=0)  # relative: 1 + erf would cancel to 0 below -8
    assert got[1] < 0 and got[5] == 0.0 and got[-1] == 40.0  # gelu(-12) is -2.1e-32, not 0


@pytest.mark.skipif(not HAVE_JAX, reason="jax is not installed")
def test_gelu_is_jax_s_exact_gelu():
    u = np.linspace(-6, 6, 25).reshape(-1, 1)
    np.testing.assert_allclose(FUNCTIONS["gelu"].numpy(np, u), np.asarray(jax.nn.gelu(u, approximate=False)),
                               rtol=1e-13, atol=1e-15)


@pytest.mark.skipif(not HAVE_TORCH, reason="torch is not installed")
def test_gelu_is_torch_s_exact_gelu():
    import torch

    u = np.linspace(-6, 6, 25).reshape(-1, 1)
    np.testing.assert_allclose(FUNCTIONS["gelu"].numpy(np, u),
                               torch.nn.functional.gelu(torch.as_tensor(u)).numpy(), rtol=1e-13, atol=1e-15)


def test_gelu_prints_in_latex_as_an_operator():
    assert r"\operatorname{gelu}\left(W \, x\right)" in matcalc.diff("sum(gelu(W x))", "W").latex()


@pytest.mark.parametrize("scipy", ["installed", "absent"])
def test_erf_and_gelu_compute_the_same_numbers_with_scipy_and_without_it(scipy, monkeypatch):
    """SciPy's erf (whole arrays at once) where it is installed; math.erf entry by entry where it is not: the
    evaluation and the generated NumPy code give math's values, to the last digits, either way."""
    import sys

    from matcalc.core import functions

    if scipy == "installed":
        pytest.importorskip("scipy.special")
    else:
        monkeypatch.setitem(sys.modules, "scipy.special", None)  # import scipy.special raises ImportError
    functions._erf_functions.cache_clear()
    try:
        points = np.array([[-40.0, -6.0, -1.5, -1e-8, 0.0, 1e-8, 0.3, 2.0, 7.0]])
        erf = [math.erf(v) for v in points[0]]
        gelu = [v * math.erfc(-v / math.sqrt(2)) / 2 for v in points[0]]
        np.testing.assert_allclose(FUNCTIONS["erf"].numpy(np, points)[0], erf, rtol=1e-15, atol=0)
        np.testing.assert_allclose(FUNCTIONS["gelu"].numpy(np, points)[0], gelu, rtol=1e-15, atol=0)
        code = matcalc.codegen("sum(erf(x)) + sum(gelu(x))", ["x"], backend="numpy")
        value, _ = compile_source(code, "value_and_gradients")(x=points[0])
        np.testing.assert_allclose(value, sum(erf) + sum(gelu), rtol=1e-15)
    finally:
        functions._erf_functions.cache_clear()
