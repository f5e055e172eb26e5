"""Generated code for batches (issue 17): every new operation (broadcasts, reductions along an axis, softmax and
logsumexp of each column or row, the lowered max/min/leaky_relu, elu, gelu) computes in NumPy, JAX and PyTorch what
`Derivative.evaluate` computes, and its values and gradients match an oracle written by hand in NumPy (the value)
and central finite differences of it (the gradient); the JAX gradient also matches jax.grad of the generated value.
The code never builds a ones array: a product with ones is a sum along an axis or a broadcast."""

from __future__ import annotations

import importlib.util
from collections.abc import Callable

import numpy as np
import pytest
from test_codegen import call

import matcalc
from matcalc.backends.pycode import Output, backend, compile_source, function_source
from matcalc.core import ir

HAVE_JAX = importlib.util.find_spec("jax") is not None
HAVE_TORCH = importlib.util.find_spec("torch") is not None
needs_jax = pytest.mark.skipif(not HAVE_JAX, reason="jax is not installed (pip install matcalc-symbolic[jax])")
needs_torch = pytest.mark.skipif(not HAVE_TORCH, reason="torch is not installed (pip install matcalc-symbolic[torch])")

if HAVE_JAX:
    import jax

    jax.config.update("jax_enable_x64", True)

SIZES = {"m": 3, "k": 4, "B": 5}
WHERE = "X: matrix(m, B); W: matrix(k, m); Y, Z, C: matrix(k, B); b, g, beta: vector(k); c: vector(B); a: vector(m)"


def softmax(z: np.ndarray, axis: int) -> np.ndarray:
    e = np.exp(z - z.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


def logsumexp(z: np.ndarray, axis: int) -> np.ndarray:
    top = z.max(axis=axis, keepdims=True)
    return top + np.log(np.exp(z - top).sum(axis=axis, keepdims=True))


def layer_norm(x: np.ndarray) -> np.ndarray:
    centred = x - x.mean(axis=0, keepdims=True)
    return centred / np.sqrt((centred * centred).mean(axis=0, keepdims=True) + 0.001)


def gelu(u: np.ndarray) -> np.ndarray:
    from math import erf

    return u * (1 + np.vectorize(erf)(u / np.sqrt(2))) / 2


def elu(u: np.ndarray) -> np.ndarray:
    return np.where(u > 0, u, np.expm1(np.minimum(u, 0)))


# (expression, the variable, its value written in NumPy: the oracle)
Oracle = Callable[[dict], float]
CASES: list[tuple[str, str, Oracle]] = [
    ("sum(Y .* softmax(Z, 1))", "Z", lambda v: np.sum(v["Y"] * softmax(v["Z"], 0))),
    ("sum(Y .* softmax(Z, 2))", "Z", lambda v: np.sum(v["Y"] * softmax(v["Z"], 1))),
    ("-sum(Y .* log(softmax(W X + b, 1)))", "W", lambda v: -np.sum(v["Y"] * np.log(softmax(v["W"] @ v["X"]
                                                                                         + v["b"][:, None], 0)))),
    ("-sum(Y .* log(softmax(W X + b, 1)))", "b", lambda v: -np.sum(v["Y"] * np.log(softmax(v["W"] @ v["X"]
                                                                                         + v["b"][:, None], 0)))),
    ("logsumexp(Z, 1) c", "Z", lambda v: (logsumexp(v["Z"], 0) @ v["c"])[0]),
    ("b^T logsumexp(Z, 2)", "Z", lambda v: (v["b"] @ logsumexp(v["Z"], 1))[0]),
    ("sum(tanh(W X + b))", "W", lambda v: np.sum(np.tanh(v["W"] @ v["X"] + v["b"][:, None]))),
    ("sum(tanh(W X + b))", "b", lambda v: np.sum(np.tanh(v["W"] @ v["X"] + v["b"][:, None]))),
    ("sum(C .* (W X + b - Y) .* (W X + b - Y))", "b",
     lambda v: np.sum(v["C"] * (v["W"] @ v["X"] + v["b"][:, None] - v["Y"]) ** 2)),
    ("a^T sum(X, 2) + sum(X, 1) c", "X", lambda v: v["a"] @ v["X"].sum(1) + v["X"].sum(0) @ v["c"]),
    ("sum(mean(X, 1) .* c^T) + a^T mean(X, 2)", "X", lambda v: v["X"].mean(0) @ v["c"] + v["a"] @ v["X"].mean(1)),
    ("var(X, 1) c + a^T var(X, 2)", "X", lambda v: v["X"].var(0) @ v["c"] + v["a"] @ v["X"].var(1)),
    ("norm2(X, 1) c + a^T norm1(X, 2)", "X",
     lambda v: np.linalg.norm(v["X"], axis=0) @ v["c"] + v["a"] @ np.abs(v["X"]).sum(1)),
    ("sum(C .* ((Z - mean(Z, 1)) ./ sqrt(var(Z, 1) + 0.001)))", "Z", lambda v: np.sum(v["C"] * layer_norm(v["Z"]))),
    ("sum(Y .* (g .* ((Z - mean(Z, 1)) ./ sqrt(var(Z, 1) + 0.001)) + beta))", "g",
     lambda v: np.sum(v["Y"] * (v["g"][:, None] * layer_norm(v["Z"]) + v["beta"][:, None]))),
    ("sum(Y .* (g .* ((Z - mean(Z, 1)) ./ sqrt(var(Z, 1) + 0.001)) + beta))", "beta",
     lambda v: np.sum(v["Y"] * (v["g"][:, None] * layer_norm(v["Z"]) + v["beta"][:, None]))),
    ("sum(Y .* (g .* ((Z - mean(Z, 1)) ./ sqrt(var(Z, 1) + 0.001)) + beta))", "Z",
     lambda v: np.sum(v["Y"] * (v["g"][:, None] * layer_norm(v["Z"]) + v["beta"][:, None]))),
    ("sum(C .* max(W X, Y))", "W", lambda v: np.sum(v["C"] * np.maximum(v["W"] @ v["X"], v["Y"]))),
    ("sum(C .* min(0.5, W X))", "W", lambda v: np.sum(v["C"] * np.minimum(0.5, v["W"] @ v["X"]))),
    ("sum(C .* leaky_relu(W X, 0.1))", "W", lambda v: np.sum(v["C"] * np.where(v["W"] @ v["X"] > 0, v["W"] @ v["X"],
                                                                             0.1 * (v["W"] @ v["X"])))),
    ("sum(C .* elu(W X))", "W", lambda v: np.sum(v["C"] * elu(v["W"] @ v["X"]))),
    ("sum(C .* gelu(W X + b))", "W", lambda v: np.sum(v["C"] * gelu(v["W"] @ v["X"] + v["b"][:, None]))),
    ("sum(C .* (alpha + W X))", "alpha", lambda v: np.sum(v["C"] * (v["alpha"] + v["W"] @ v["X"]))),
]
IDS = [f"d({e})/d{v}" for e, v, _ in CASES]


def values(d: matcalc.Derivative, seed: int = 0) -> dict:
    """Normal entries (both signs: the kinks of relu and abs are missed with probability 1) at SIZES."""
    rng = np.random.default_rng(seed)
    found = {**ir.variables(d.function), **ir.variables(d.expr), d.variable.name: d.variable}
    out: dict = {}
    for name, var in found.items():
        rows, cols = (dim if isinstance(dim, int) else SIZES[dim] for dim in var.shape)
        value = rng.normal(size=(rows, cols))
        out[name] = float(value[0, 0]) if (rows, cols) == (1, 1) else value[:, 0] if cols == 1 else value
    return out


def finite_differences(f: Oracle, at: dict, name: str, step: float = 1e-6) -> np.ndarray:
    point = np.asarray(at[name], dtype=float)
    gradient = np.zeros_like(point)
    for index in np.ndindex(point.shape):
        up, down = point.copy(), point.copy()
        up[index] += step
        down[index] -= step
        gradient[index] = (f({**at, name: up}) - f({**at, name: down})) / (2 * step)
    return gradient


def generated_value(expr: str, target: str):
    """The function itself as generated code (its value, nothing differentiated by matcalc)."""
    function = matcalc.parse(expr, WHERE)
    parameters = list(ir.variables(function).values())
    return compile_source(function_source("f", "f", parameters, (), [Output(function)], backend(target)), "f")


@pytest.mark.parametrize(("expr", "var", "oracle"), CASES, ids=IDS)
def test_generated_numpy_value_and_gradient_of_a_batch_operation_match_numpy_and_finite_differences(expr, var,
                                                                                                    oracle):
    d = matcalc.diff(expr, var, where=WHERE)
    at = values(d)
    assert np.isclose(call(generated_value(expr, "numpy"), at), oracle(at), rtol=1e-10)
    gradient = call(d.compile("numpy"), at)
    np.testing.assert_allclose(gradient, d.evaluate(at), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(gradient, finite_differences(oracle, at, var), rtol=1e-5, atol=1e-7)


@needs_jax
@pytest.mark.parametrize(("expr", "var", "oracle"), CASES, ids=IDS)
def test_generated_jax_gradient_of_a_batch_operation_equals_evaluate_and_jax_grad(expr, var, oracle):
    d = matcalc.diff(expr, var, where=WHERE)
    at = values(d, seed=1)
    value = generated_value(expr, "jax")
    assert np.isclose(float(jax.jit(lambda **v: call(value, v))(**at)), oracle(at), rtol=1e-10)
    got = np.asarray(call(jax.jit(d.compile("jax")), at))
    np.testing.assert_allclose(got, d.evaluate(at), rtol=1e-10, atol=1e-12)
    expected = jax.grad(lambda u: call(value, {**at, var: u}))(at[var])
    np.testing.assert_allclose(got, np.asarray(expected), rtol=1e-10, atol=1e-12)


@needs_torch
@pytest.mark.parametrize(("expr", "var", "oracle"), CASES, ids=IDS)
def test_generated_torch_gradient_of_a_batch_operation_equals_evaluate(expr, var, oracle):
    import torch

    d = matcalc.diff(expr, var, where=WHERE)
    at = values(d, seed=2)
    tensors = {k: torch.as_tensor(np.asarray(v, dtype=float)) for k, v in at.items()}
    assert np.isclose(float(call(generated_value(expr, "torch"), tensors)), oracle(at), rtol=1e-10)
    np.testing.assert_allclose(call(d.compile("torch"), tensors).numpy(), d.evaluate(at), rtol=1e-10, atol=1e-12)


# ---------------------------------------------------------------- tensors: the softmax of a matrix, a Jacobian


TENSORS = [("softmax(Z, 1)", "Z"), ("softmax(Z, 2)", "Z"), ("logsumexp(Z, 1)", "Z"), ("W X + b", "b"),
           ("sum(X, 2)", "X"), ("mean(X, 1)", "X")]


@pytest.mark.parametrize(("expr", "var"), TENSORS, ids=[f"d({e})/d{v}" for e, v in TENSORS])
@pytest.mark.parametrize("target", ["numpy", "jax", "torch"])
def test_generated_code_of_the_derivative_of_a_batch_operation_equals_evaluate(expr, var, target):
    if not {"numpy": True, "jax": HAVE_JAX, "torch": HAVE_TORCH}[target]:
        pytest.skip(f"{target} is not installed")
    d = matcalc.diff(expr, var, where=WHERE)
    at = values(d, seed=3)
    f = d.compile(target)
    if target == "torch":
        import torch

        got = call(f, {k: torch.as_tensor(np.asarray(v, dtype=float)) for k, v in at.items()}).numpy()
    else:
        got = np.asarray(call(jax.jit(f) if target == "jax" else f, at))
    np.testing.assert_allclose(got, d.evaluate(at), rtol=1e-10, atol=1e-12)


def test_the_softmax_of_each_column_has_its_jacobian_blocks_by_finite_differences():
    d = matcalc.diff("softmax(Z, 1)", "Z", where=WHERE)
    at = values(d, seed=4)
    tensor = call(d.compile("numpy"), at)  # (k, B, k, B): d S_ij / d Z_kl
    for column in range(SIZES["B"]):
        numeric = np.stack([finite_differences(lambda v, i=i, j=column: softmax(v["Z"], 0)[i, j], at, "Z")
                            for i in range(SIZES["k"])])
        np.testing.assert_allclose(tensor[:, column], numeric, rtol=1e-5, atol=1e-8)


# ---------------------------------------------------------------- what the code never builds


def code_of(expr: str, var: str, target: str = "numpy") -> str:
    return matcalc.diff(expr, var, where=WHERE).to_code(target).split('"""')[-1]


def test_a_bias_added_to_every_column_is_a_broadcast_not_a_product_with_ones():
    code = code_of("sum(tanh(W X + b))", "W")
    assert "np.tanh(W @ X + b)" in code and "full" not in code


def test_the_gradient_of_a_bias_is_a_sum_along_each_row():
    code = code_of("sum(tanh(W X + b))", "b")
    assert ".sum(1, keepdims=True)" in code and "full" not in code and code.count("@") == 1  # W @ X only


def test_column_sums_spread_down_the_rows_are_a_sum_along_axis_0_broadcast():
    code = code_of("-sum(Y .* log(softmax(W X + b, 1)))", "W")  # matrix(1) Y: each column's sum, in every row
    assert "Y.sum(0, keepdims=True)" in code and "full" not in code


def test_softmax_and_logsumexp_along_an_axis_call_the_library_along_that_axis():
    assert "_softmax_along(Z, 0)" in code_of("sum(Y .* softmax(Z, 1))", "Z")
    assert "jax.nn.softmax(Z, axis=1)" in code_of("sum(Y .* softmax(Z, 2))", "Z", "jax")
    assert "torch.softmax(Z, dim=0)" in code_of("sum(Y .* softmax(Z, 1))", "Z", "torch")
    value = generated_value("logsumexp(Z, 1) c", "jax")
    assert value is not None
    source = function_source("f", "f", [ir.Var("Z", ("k", "B"))], (),
                             [Output(ir.func("logsumexp", ir.Var("Z", ("k", "B")), 2))], backend("torch"))
    assert "torch.logsumexp(Z, dim=1, keepdim=True)" in source


def test_the_layer_norm_gradient_builds_no_ones_array_and_no_square_matrix_of_the_batch():
    code = code_of("sum(C .* ((Z - mean(Z, 1)) ./ sqrt(var(Z, 1) + 0.001)))", "Z")
    assert "full" not in code and "@" not in code  # every product with ones is a sum or a broadcast


def test_a_returned_broadcast_is_a_whole_array_of_its_own():
    d = matcalc.diff("sum(X)", "X", where=WHERE)  # matrix(1)
    x = np.random.default_rng(0).normal(size=(3, 5))
    gradient = d.compile("numpy")(X=x)
    assert gradient.shape == (3, 5) and gradient.flags.writeable and np.all(gradient == 1)
    d = matcalc.diff("sum(tanh(W X + b))", "X", where=WHERE)
    rng = np.random.default_rng(1)
    at = {"W": rng.normal(size=(4, 3)), "X": rng.normal(size=(3, 5)), "b": rng.normal(size=4)}
    np.testing.assert_allclose(call(d.compile("numpy"), at), d.evaluate(at), rtol=1e-12)


def test_a_scalar_spread_into_a_vector_is_returned_whole():
    d = matcalc.diff("alpha^2 sum(x)", "x")  # alpha^2 vector(1)
    got = d.compile("numpy")(alpha=3.0, x=np.ones(4))
    assert got.shape == (4,) and got.flags.writeable
    np.testing.assert_allclose(got, np.full(4, 9.0))


def test_generated_code_of_gelu_and_its_transpose_shares_work_and_matches_finite_differences() -> None:
    """The plan computes gelu's erf once for value and gradient, and K^T Q's softmax backward once for Q and K:
    the generated NumPy gradient still equals central differences."""
    import numpy as np

    import matcalc
    from matcalc.backends.pycode import compile_source

    program = "P = softmax(K^T Q, 1)\nL = sum(C .* gelu(V P))"
    where = "K, Q, V, C: matrix(n, T)"
    source = matcalc.codegen(program, ["K", "Q"], where=where)
    assert source.count("_erfc(") <= 2 and "_gelu(" not in source.split('"""')[-1]
    function = compile_source(source, "value_and_gradients")
    rng = np.random.default_rng(0)
    values = {name: rng.normal(size=(3, 4)) for name in "KQVC"}

    def loss(k: np.ndarray) -> float:
        return float(function(**{**values, "K": k})[0])

    _, g_k, _ = function(**values)
    step, numeric = 1e-6, np.zeros((3, 4))
    for index in np.ndindex(3, 4):
        e = np.zeros((3, 4))
        e[index] = step
        numeric[index] = (loss(values["K"] + e) - loss(values["K"] - e)) / (2 * step)
    assert np.allclose(g_k, numeric, atol=1e-7)
