"""Generated code (issue 10): every function matcalc writes computes what `d.evaluate` computes, in the same
layout, and the value-and-gradients functions match finite differences; JAX code also matches jax.grad and
jax.hessian of the original function (itself generated, then differentiated by JAX), and runs under jax.jit.
PyTorch code is tested where torch is installed, and skipped cleanly where it is not."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest
from hypothesis import given, settings
from networks import mlp_program, network_forward, residual_program
from oracles import random_values
from test_cookbook_table import COOKBOOK
from test_derivatives import HESSIANS, ML, SEEDS
from test_tensors import CASES as TENSOR_CASES

import matcalc
from matcalc.backends.pycode import Output, backend, compile_source, function_source
from matcalc.core import ir

HAVE_JAX = importlib.util.find_spec("jax") is not None
HAVE_TORCH = importlib.util.find_spec("torch") is not None
needs_jax = pytest.mark.skipif(not HAVE_JAX, reason="jax is not installed (pip install matcalc-symbolic[jax])")
needs_torch = pytest.mark.skipif(not HAVE_TORCH, reason="torch is not installed (pip install matcalc-symbolic[torch])")

if HAVE_JAX:
    import jax

    jax.config.update("jax_enable_x64", True)  # float64, as evaluate: the comparisons are to 1e-9


def _where(expr: str) -> str | None:
    return "a, b: scalar" if expr == "a^b" else ("S: symmetric" if "S" in expr else None)


ACCEPTANCE = ([(e, v, w, False) for e, v, w, _ in COOKBOOK] + [(e, v, None, False) for e, v, _ in SEEDS]
              + [(e, v, _where(e), False) for e, v, _ in ML]
              + [(e, "w" if "w" in e else "x", None, True) for e, _ in HESSIANS]
              + [(e, v, None, False) for e, v, _ in TENSOR_CASES] + [("tr(X^T A X)", "X", None, True)])


def derivative(expr: str, var: str, where: str | None, hessian: bool) -> matcalc.Derivative:
    return matcalc.hessian(expr, var, where) if hessian else matcalc.diff(expr, var, where)  # type: ignore[return-value]


def values_for(d: matcalc.Derivative, seed: int = 0) -> dict:
    values = random_values([d.function, d.expr, d.variable], seed)
    return {name: value for name, value in values.items() if name in ir.variables(d.function)
            or name in ir.variables(d.expr) or name == d.variable.name}


def call(f, values: dict):
    """f at the values (and sizes) it takes as keyword parameters."""
    import inspect

    from matcalc.backends.pycode import python_name

    wanted = set(inspect.signature(inspect.unwrap(f)).parameters)
    return f(**{python_name(name): value for name, value in values.items() if python_name(name) in wanted})


INSTALLED_BACKENDS = ["numpy", *(["jax"] if HAVE_JAX else []), *(["torch"] if HAVE_TORCH else [])]


def generated_value(d: matcalc.Derivative, backend_name: str, values: dict) -> np.ndarray:
    """What the code generated for d computes at `values`: JAX's under jit, torch's on tensors."""
    f = d.compile(backend_name)
    if backend_name == "torch":
        import torch

        return call(f, {k: torch.as_tensor(np.asarray(v, dtype=float)) for k, v in values.items()}).numpy()
    if backend_name == "jax":
        return np.asarray(call(jax.jit(f), values))
    return call(f, values)


@pytest.mark.parametrize(("expr", "var", "where", "hessian"), ACCEPTANCE,
                         ids=[f"{'H' if h else 'd'}({e})/d{v}" for e, v, _, h in ACCEPTANCE])
def test_generated_numpy_computes_what_evaluate_computes(expr, var, where, hessian):
    d = derivative(expr, var, where, hessian)
    values = values_for(d)
    got = call(d.compile("numpy"), values)
    expected = d.evaluate(values)
    assert np.shape(got) == np.shape(expected)
    np.testing.assert_allclose(got, expected, rtol=1e-9, atol=1e-12)


@needs_jax
@pytest.mark.parametrize(("expr", "var", "where", "hessian"), ACCEPTANCE,
                         ids=[f"{'H' if h else 'd'}({e})/d{v}" for e, v, _, h in ACCEPTANCE])
def test_generated_jax_computes_what_evaluate_computes_under_jit(expr, var, where, hessian):
    d = derivative(expr, var, where, hessian)
    values = values_for(d)
    f = jax.jit(d.compile("jax"))
    got = np.asarray(call(f, values))
    np.testing.assert_allclose(got, d.evaluate(values), rtol=1e-9, atol=1e-12)


@needs_torch
@pytest.mark.parametrize(("expr", "var", "where", "hessian"), ACCEPTANCE,
                         ids=[f"{'H' if h else 'd'}({e})/d{v}" for e, v, _, h in ACCEPTANCE])
def test_generated_torch_computes_what_evaluate_computes(expr, var, where, hessian):
    import torch

    d = derivative(expr, var, where, hessian)
    values = values_for(d)
    got = call(d.compile("torch"), {k: torch.as_tensor(np.asarray(v, dtype=float)) for k, v in values.items()})
    np.testing.assert_allclose(got.numpy(), d.evaluate(values), rtol=1e-9, atol=1e-12)


# ---------------------------------------------------------------- fast by construction: what the code never builds


def test_logistic_hessian_scales_rows_instead_of_building_diag():
    source = matcalc.hessian("sum(log(1 + exp(-y .* (X w))))", "w").to_code("numpy")
    assert "np.diag" not in source and "np.eye" not in source
    assert "np.exp(-np.logaddexp(0.0, " in source  # the stable sigmoid


def test_quadratic_form_multiplies_the_vector_first_and_never_forms_an_outer_product():
    source = matcalc.diff("x^T A x", "x").to_code("numpy")
    assert "(A + A.T) @ x" in source and "x.T @" not in source


def test_inverse_times_a_vector_is_a_solve():
    source = matcalc.diff("a^T inv(X) b", "a").to_code("numpy")
    assert "np.linalg.solve(X, b)" in source and "np.linalg.inv" not in source


def test_trace_of_a_product_is_a_sum_of_a_hadamard_product():
    d = matcalc.diff("alpha tr(A B)", "alpha")
    assert "np.sum(A * B.T)" in d.to_code("numpy")
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(3, 4)), rng.normal(size=(4, 3))
    assert np.isclose(d.compile("numpy")(alpha=2.0, A=a, B=b), np.trace(a @ b))


def test_stable_forms_hold_far_in_the_tails():
    f = matcalc.diff("sum(log(1 + exp(-y .* (X w))))", "w").compile("numpy")
    x = np.array([[800.0], [-800.0]])
    g = f(X=x, y=np.array([1.0, 1.0]), w=np.array([1.0]))
    assert np.all(np.isfinite(g))
    np.testing.assert_allclose(g, [800.0])


def test_the_docstring_names_the_derivative_and_the_shapes():
    source = matcalc.diff("W x + b", "x").to_code("numpy")
    assert "The jacobian of W x + b w.r.t. x" in source and "Inputs: W: (n, m), x: (m,), b: (n,)" in source


def test_a_backend_that_is_not_installed_still_gets_its_code():
    assert "import torch" in matcalc.diff("x^T A x", "x").to_code("torch")


def test_an_unknown_backend_is_a_clear_error():
    with pytest.raises(matcalc.ParseError, match="numpy, jax, torch"):
        matcalc.diff("x^T A x", "x").to_code("tensorflow")


# ---------------------------------------------------------------- value and gradients in one function


def test_value_and_gradients_of_a_program_share_the_forward_pass():
    program = "h1 = tanh(W1 x); h2 = tanh(W2 h1); L = sum(h2)"
    source = matcalc.codegen(program, ["W1", "W2"])
    assert source.count("np.tanh(W1 @ x)") == 1 and source.count("np.tanh(W2 @ h1)") == 1
    f = compile_source(source, "value_and_gradients")
    values = random_values([matcalc.parse(program)], 0, {"n": 3, "m": 4, "p": 2})
    value, g1, g2 = f(W1=values["W1"], W2=values["W2"], x=values["x"])
    assert np.isclose(value, np.sum(np.tanh(values["W2"] @ np.tanh(values["W1"] @ values["x"]))))
    gradients = matcalc.grad(program, ["W1", "W2"])
    np.testing.assert_allclose(g1, gradients["W1"].evaluate(values), rtol=1e-12)
    np.testing.assert_allclose(g2, gradients["W2"].evaluate(values), rtol=1e-12)


@pytest.mark.parametrize("layers", [1, 3, 8])
@pytest.mark.parametrize("residual", [False, True], ids=["mlp", "residual"])
def test_value_and_gradients_of_deep_networks_match_finite_differences(layers, residual):
    program = residual_program(layers) if residual else mlp_program(layers)
    names = [f"W{k}" for k in range(1, layers + 1)]
    f = compile_source(matcalc.codegen(program, names), "value_and_gradients")
    rng = np.random.default_rng(layers)
    values = {"x": rng.normal(size=3), **{name: rng.normal(size=(3, 3)) / 2 for name in names}}
    value, *gradients = f(**values)
    forward = network_forward(layers, residual)
    assert np.isclose(value, forward(values))
    step = 1e-6
    for name, gradient in zip(names, gradients, strict=True):
        numeric = np.zeros_like(values[name])
        for index in np.ndindex(numeric.shape):
            up, down = values[name].copy(), values[name].copy()
            up[index] += step
            down[index] -= step
            numeric[index] = (forward({**values, name: up}) - forward({**values, name: down})) / (2 * step)
        np.testing.assert_allclose(gradient, numeric, rtol=1e-5, atol=1e-8)


def test_value_gradient_and_hessian_of_the_logistic_loss():
    source = matcalc.codegen("sum(log(1 + exp(-y .* (X w))))", ["w"], hessian=True)
    f = compile_source(source, "value_and_gradients")
    rng = np.random.default_rng(1)
    x, y, w = rng.normal(size=(20, 4)), np.sign(rng.normal(size=20)), rng.normal(size=4)
    value, gradient, hessian = f(X=x, y=y, w=w)
    c = 1 / (1 + np.exp(y * (x @ w)))
    assert np.isclose(value, np.sum(np.logaddexp(0, -y * (x @ w))))
    np.testing.assert_allclose(gradient, -x.T @ (c * y))
    np.testing.assert_allclose(hessian, x.T @ (x * (c * (1 - c))[:, None]))


# ---------------------------------------------------------------- JAX: against jax.grad and jax.hessian


def jax_function(expr: str, where: str | None = None):
    """The function itself as generated JAX code (its value, nothing differentiated by matcalc)."""
    function = matcalc.parse(expr, where)
    parameters = list(ir.variables(function).values())
    return compile_source(function_source("f", "f", parameters, (), [Output(function)], backend("jax")), "f")


@needs_jax
@pytest.mark.parametrize(("expr", "var"), [("sum(log(1 + exp(-y .* (X w))))", "w"), ("x^T A x", "x"),
                                           ("sum(tanh(W2 tanh(W1 x)))", "W1"), ("logsumexp(W x)", "W"),
                                           ("log(det(X)) + tr(A X)", "X"), ("norm2(A x - b)^2", "x")])
def test_generated_jax_gradient_equals_jax_grad_of_the_function(expr, var):
    d = matcalc.diff(expr, var)
    values = values_for(d, seed=3)
    f = jax_function(expr)
    expected = jax.grad(lambda v: f(**{**values, var: v}))(values[var])
    np.testing.assert_allclose(np.asarray(d.compile("jax")(**values)), np.asarray(expected), rtol=1e-9, atol=1e-12)


@needs_jax
@pytest.mark.parametrize(("expr", "var"), [("sum(log(1 + exp(-y .* (X w))))", "w"), ("sin(x^T x)", "x"),
                                           ("logsumexp(x)", "x"), ("tr(X^T A X)", "X")])
def test_generated_jax_hessian_equals_jax_hessian_of_the_function(expr, var):
    h = matcalc.hessian(expr, var)
    values = values_for(h, seed=4)
    f = jax_function(expr)
    expected = jax.hessian(lambda v: f(**{**values, var: v}))(values[var])
    np.testing.assert_allclose(np.asarray(jax.jit(h.compile("jax"))(**values)), np.asarray(expected),
                               rtol=1e-9, atol=1e-12)


# ---------------------------------------------------------------- random expressions


@settings(max_examples=60, deadline=None)
@given(case=__import__("test_properties").cases(max_depth=3))
def test_generated_numpy_of_random_derivatives_equals_evaluate(case):
    from tally import TALLY

    for name in case.variables:
        d = matcalc.diff(case.text, name, where=case.where)
        values = random_values([d.function, d.expr, d.variable], 0, case.sizes)
        with np.errstate(all="ignore"):
            try:
                expected = d.evaluate(values)
            except matcalc.EvaluationError:
                continue
            got = call(d.compile("numpy"), values)
        if not np.all(np.isfinite(expected)) or np.max(np.abs(expected), initial=0) > 1e8:
            continue
        scale = max(1.0, float(np.max(np.abs(expected), initial=0.0)))
        np.testing.assert_allclose(got, expected, rtol=1e-8, atol=1e-8 * scale, err_msg=f"d/d{name} {case.text}")
        TALLY["generated functions checked against evaluate"] += 1


# ---------------------------------------------------------------- products that never build the tensor


PRODUCTS = [("A X B", "X", "A: matrix(m, p); X: matrix(p, q); B: matrix(q, n)", False),
            ("inv(X)", "X", None, False), ("tanh(W x)", "W", None, False), ("x x^T", "x", None, False),
            ("softmax(W x)", "W", None, False), ("sum(log(1 + exp(-y .* (X w))))", "w", None, True),
            ("tr(X^T A X)", "X", None, True), ("x^T A x", "x", None, False)]


@pytest.mark.parametrize(("expr", "var", "where", "hessian"), PRODUCTS, ids=[f"{e} wrt {v}" for e, v, _, _ in PRODUCTS])
def test_jvp_and_vjp_are_the_tensor_contracted_with_a_direction(expr, var, where, hessian):
    d = derivative(expr, var, where, hessian)
    values = values_for(d, seed=5)
    tensor = np.asarray(d.evaluate(values), dtype=float)
    variable_axes = np.ndim(values[var])
    output_axes = tensor.ndim - variable_axes
    rng = np.random.default_rng(9)
    direction = rng.normal(size=np.shape(values[var]))
    jvp = call(d.compile("numpy", product="jvp"), {**values, f"d{var}": direction})
    expected = np.tensordot(tensor, direction, axes=variable_axes)
    np.testing.assert_allclose(jvp, expected, rtol=1e-9, atol=1e-12)
    cotangent = rng.normal(size=tensor.shape[:output_axes])
    vjp = call(d.compile("numpy", product="vjp"), {**values, "G": cotangent})
    np.testing.assert_allclose(vjp, np.tensordot(cotangent, tensor, axes=output_axes), rtol=1e-9, atol=1e-12)
    assert "kron" not in d.to_code("numpy", product="jvp") and "_reshape_f" not in d.to_code("numpy", product="vjp")


def test_hessian_vector_product_of_the_logistic_loss_never_forms_the_hessian():
    h = matcalc.hessian("sum(log(1 + exp(-y .* (X w))))", "w")
    source = h.to_code("numpy", product="jvp")
    assert "X.T @ (" in source and "@ X)" not in source  # X^T (c .* (X v)): two matrix-vector products
    rng = np.random.default_rng(2)
    x, y, w, v = rng.normal(size=(30, 5)), np.sign(rng.normal(size=30)), rng.normal(size=5), rng.normal(size=5)
    np.testing.assert_allclose(h.compile("numpy", product="jvp")(X=x, y=y, w=w, dw=v),
                               h.evaluate({"X": x, "y": y, "w": w}) @ v, rtol=1e-10)


@needs_jax
def test_generated_jax_jvp_equals_jax_jvp_of_the_function():
    d = matcalc.diff("tanh(W x)", "W")
    values = values_for(d, seed=6)
    f = jax_function("tanh(W x)")
    direction = np.random.default_rng(1).normal(size=np.shape(values["W"]))
    _, expected = jax.jvp(lambda w: f(**{**values, "W": w}), (values["W"],), (direction,))
    got = jax.jit(d.compile("jax", product="jvp"))(**values, dW=direction)
    np.testing.assert_allclose(np.asarray(got), np.asarray(expected).reshape(np.shape(got)), rtol=1e-9)


def test_a_diagonal_matrix_at_either_end_of_a_product_scales_instead_of_being_built():
    d = matcalc.diff("diag(x) A diag(y)", "A")
    source = d.to_code("numpy", product="jvp")
    assert "np.diag" not in source
    rng = np.random.default_rng(3)
    x, a, y, direction = rng.normal(size=3), rng.normal(size=(3, 4)), rng.normal(size=4), rng.normal(size=(3, 4))
    np.testing.assert_allclose(d.compile("numpy", product="jvp")(x=x, A=a, y=y, dA=direction),
                               np.diag(x) @ direction @ np.diag(y))
