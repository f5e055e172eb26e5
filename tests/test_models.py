"""The models that must come out right (issue 17 §2): each a program on a batch of B examples (the columns of X, B a
declared dimension), differentiated w.r.t. every parameter in one backward pass, and checked against central finite
differences (float64) of the same model written by hand in NumPy, and against jax.grad of that model written in JAX
(the same function, given jax.numpy for NumPy). The printed results stay readable: one line per definition and
adjoint, each line short, each result reading back to the tree it prints."""

from __future__ import annotations

import importlib.util
import math
from collections.abc import Callable
from dataclasses import dataclass
from types import ModuleType
from typing import Any

import numpy as np
import pytest
from test_codegen import call
from test_codegen_batches import finite_differences

import matcalc
from matcalc.backends.pycode import compile_source

HAVE_JAX = importlib.util.find_spec("jax") is not None
if HAVE_JAX:
    import jax

    jax.config.update("jax_enable_x64", True)

# ---------------------------------------------------------------- the models written by hand (xp: numpy or jax.numpy)


def sigmoid(xp: ModuleType, u: Any) -> Any:
    return 1 / (1 + xp.exp(-u))


def softmax_columns(xp: ModuleType, z: Any) -> Any:
    e = xp.exp(z - z.max(axis=0, keepdims=True))
    return e / e.sum(axis=0, keepdims=True)


def layer_norm_columns(xp: ModuleType, h: Any, epsilon: float) -> Any:
    centred = h - h.mean(axis=0, keepdims=True)
    return centred / xp.sqrt((centred * centred).mean(axis=0, keepdims=True) + epsilon)


def erf(xp: ModuleType, u: Any) -> Any:
    if xp is np:
        return np.vectorize(math.erf)(u)
    return jax.scipy.special.erf(u)


def gelu(xp: ModuleType, u: Any) -> Any:
    return u * (1 + erf(xp, u / math.sqrt(2))) / 2


def attention(xp: ModuleType, v: dict, x: Any) -> Any:
    q, k, values = v["Wq"] @ x, v["Wk"] @ x, v["Wv"] @ x
    return values @ softmax_columns(xp, k.T @ q / math.sqrt(x.shape[0]))


def dillon_stack(xp: ModuleType, v: dict) -> Any:
    h1 = sigmoid(xp, v["W1"] @ v["X"] + v["b1"][:, None])
    h2 = sigmoid(xp, v["W2"] @ h1 + v["b2"][:, None])
    return xp.sum((h2 - v["Y"]) ** 2) / v["X"].shape[1]


def mlp_cross_entropy(xp: ModuleType, v: dict) -> Any:
    h = xp.maximum(0, v["W1"] @ v["X"] + v["b1"][:, None])
    z = v["W2"] @ h + v["b2"][:, None]
    return -xp.sum(v["Y"] * xp.log(softmax_columns(xp, z))) / v["X"].shape[1]


def layer_norm(xp: ModuleType, v: dict) -> Any:
    return xp.sum(v["C"] * (v["g"][:, None] * layer_norm_columns(xp, v["X"], 1e-5) + v["beta"][:, None]))


def self_attention(xp: ModuleType, v: dict) -> Any:
    return xp.sum(v["C"] * attention(xp, v, v["X"]))


def transformer_block(xp: ModuleType, v: dict) -> Any:
    h = v["X"] + attention(xp, v, v["X"])
    z = v["g"][:, None] * layer_norm_columns(xp, h, 1e-5) + v["beta"][:, None]
    m = v["W2"] @ gelu(xp, v["W1"] @ z + v["b1"][:, None]) + v["b2"][:, None]
    return xp.sum(v["C"] * (z + m))


def logistic_regression(xp: ModuleType, v: dict) -> Any:
    p = sigmoid(xp, v["X"].T @ v["w"])
    return -xp.sum(v["y"] * xp.log(p) + (1 - v["y"]) * xp.log(1 - p)) / v["X"].shape[1] + v["lam"] * v["w"] @ v["w"]


# ---------------------------------------------------------------- the same models as matcalc programs


@dataclass(frozen=True)
class Model:
    program: str
    where: str
    weights: tuple[str, ...]
    sizes: dict[str, int]
    loss: Callable[[ModuleType, dict], Any]


MODELS: dict[str, Model] = {
    "Dillon's stack of sigmoid layers, squared error averaged over the batch": Model(
        """
        H1 = sigmoid(W1 X + b1)
        H2 = sigmoid(W2 H1 + b2)
        L = sum((H2 - Y) .* (H2 - Y)) / B
        """,
        "X: matrix(n, B); W1: matrix(h, n); b1: vector(h); W2: matrix(m, h); b2: vector(m); Y: matrix(m, B)",
        ("W1", "b1", "W2", "b2"), {"n": 3, "h": 4, "m": 2, "B": 5}, dillon_stack),
    "a 2-layer MLP with relu and softmax cross-entropy over the batch": Model(
        """
        H = max(0, W1 X + b1)
        Z = W2 H + b2
        L = -sum(Y .* log(softmax(Z, 1))) / B
        """,
        "X: matrix(n, B); W1: matrix(h, n); b1: vector(h); W2: matrix(m, h); b2: vector(m); Y: matrix(m, B)",
        ("W1", "b1", "W2", "b2"), {"n": 3, "h": 4, "m": 3, "B": 5}, mlp_cross_entropy),
    "layer norm of each column with gain and bias": Model(
        """
        N = (X - mean(X, 1)) ./ sqrt(var(X, 1) + 0.00001)
        L = sum(C .* (g .* N + beta))
        """,
        "X, C: matrix(d, B); g, beta: vector(d)",
        ("X", "g", "beta"), {"d": 4, "B": 3}, layer_norm),
    "single-head self-attention on a sequence": Model(
        """
        Q = Wq X
        K = Wk X
        V = Wv X
        P = softmax(K^T Q / sqrt(d), 1)
        O = V P
        L = sum(C .* O)
        """,
        "X, C: matrix(d, T); Wq, Wk, Wv: matrix(d, d)",
        ("Wq", "Wk", "Wv"), {"d": 3, "T": 4}, self_attention),
    "a transformer block: attention, residual, layer norm, GELU MLP, residual": Model(
        """
        Q = Wq X
        K = Wk X
        V = Wv X
        P = softmax(K^T Q / sqrt(d), 1)
        H = X + V P
        N = (H - mean(H, 1)) ./ sqrt(var(H, 1) + 0.00001)
        Z = g .* N + beta
        M = W2 gelu(W1 Z + b1) + b2
        Y = Z + M
        L = sum(C .* Y)
        """,
        "X, C: matrix(d, T); Wq, Wk, Wv: matrix(d, d); W1: matrix(f, d); W2: matrix(d, f); g, beta, b2: vector(d); "
        "b1: vector(f)",
        ("Wq", "Wk", "Wv", "g", "beta", "W1", "b1", "W2", "b2"), {"d": 3, "T": 4, "f": 5}, transformer_block),
    "batch logistic regression with an L2 penalty": Model(
        """
        p = sigmoid(X^T w)
        L = -sum(y .* log(p) + (1 - y) .* log(1 - p)) / B + lam w^T w
        """,
        "X: matrix(n, B); w: vector(n); y: vector(B); lam: scalar",
        ("w",), {"n": 3, "B": 5}, logistic_regression),
}
NAMES = list(MODELS)


def model_values(model: Model, seed: int = 0) -> dict[str, Any]:
    """Normal entries at the model's sizes, scaled as in training (weights ~ 1/sqrt(fan-in)); a one-hot Y for the
    cross-entropy, labels in [0, 1] for the logistic regression."""
    rng = np.random.default_rng(seed)
    declarations = matcalc.parse(model.program, where=model.where)  # the program's variables and their shapes
    values: dict[str, Any] = {}
    for name, var in sorted(matcalc.core.ir.variables(declarations).items()):
        rows, cols = (model.sizes[dim] if isinstance(dim, str) else dim for dim in var.shape)
        value = rng.normal(size=(rows, cols)) / math.sqrt(rows if name.startswith("W") else 1)
        values[name] = float(value[0, 0]) if (rows, cols) == (1, 1) else value[:, 0] if cols == 1 else value
    if "Y" in values and model.loss is mlp_cross_entropy:
        values["Y"] = np.eye(model.sizes["m"])[:, rng.integers(model.sizes["m"], size=model.sizes["B"])]
    if "y" in values:
        values["y"] = rng.uniform(size=model.sizes["B"])
    if "lam" in values:
        values["lam"] = 0.1
    return values


def gradients(name: str) -> matcalc.Gradients:
    model = MODELS[name]
    return matcalc.grad(model.program, list(model.weights), where=model.where)


# ---------------------------------------------------------------- the gradients


@pytest.mark.parametrize("name", NAMES)
def test_every_gradient_of_the_model_matches_central_finite_differences(name):
    model = MODELS[name]
    at = model_values(model)
    for weight, d in gradients(name).items():
        numeric = finite_differences(lambda v: float(model.loss(np, v)), at, weight)
        np.testing.assert_allclose(d.evaluate(at), numeric, rtol=1e-6, atol=1e-8, err_msg=f"dL/d{weight}")


@pytest.mark.skipif(not HAVE_JAX, reason="jax is not installed (pip install matcalc-symbolic[jax])")
@pytest.mark.parametrize("name", NAMES)
def test_every_gradient_of_the_model_equals_jax_grad_of_the_model_written_in_jax(name):
    model = MODELS[name]
    at = model_values(model, seed=1)
    expected = jax.grad(lambda v: model.loss(jax.numpy, v))({k: jax.numpy.asarray(x) for k, x in at.items()})
    for weight, d in gradients(name).items():
        np.testing.assert_allclose(d.evaluate(at), np.asarray(expected[weight]), rtol=1e-10, atol=1e-12,
                                   err_msg=f"dL/d{weight}")


@pytest.mark.parametrize("name", NAMES)
def test_the_generated_value_and_gradients_function_computes_the_loss_and_every_gradient(name):
    model = MODELS[name]
    at = model_values(model, seed=2)
    source = matcalc.codegen(model.program, list(model.weights), where=model.where)
    value, *computed = call(compile_source(source, "value_and_gradients"), at)
    assert np.isclose(float(value), float(model.loss(np, at)), rtol=1e-12)
    for weight, got in zip(model.weights, computed, strict=True):
        numeric = finite_differences(lambda v: float(model.loss(np, v)), at, weight)
        np.testing.assert_allclose(got, numeric, rtol=1e-6, atol=1e-8, err_msg=f"dL/d{weight}")


# ---------------------------------------------------------------- the printed results


LONGEST_LINE = 200


@pytest.mark.parametrize("name", NAMES)
def test_the_printed_gradients_are_one_short_line_per_definition_and_adjoint_and_read_back(name):
    g = gradients(name)
    lines = str(g).splitlines()
    assert max(map(len, lines)) <= LONGEST_LINE, str(g)
    assert len(lines) == len({line.split(" = ")[0] for line in lines})  # each name defined once
    for d in g.values():
        assert matcalc.parse(str(d), where=d.where, shape=d.shape) == d.expr, str(d)


# ---------------------------------------------------------------- second order and 4th order


def test_the_logistic_regression_hessian_matches_finite_differences_of_its_gradient_and_jax_hessian():
    model = MODELS["batch logistic regression with an L2 penalty"]
    at = model_values(model, seed=3)
    h = matcalc.hessian(model.program, "w", where=model.where)
    gradient = matcalc.grad(model.program, ["w"], where=model.where)["w"]
    numeric = np.stack([finite_differences(lambda v, i=i: np.asarray(gradient.evaluate(v))[i], at, "w")
                        for i in range(model.sizes["n"])])
    np.testing.assert_allclose(h.evaluate(at), numeric, rtol=1e-6, atol=1e-8)
    assert np.allclose(h.evaluate(at), np.asarray(h.evaluate(at)).T, rtol=1e-12)  # a Hessian is symmetric
    if HAVE_JAX:
        expected = jax.hessian(lambda w: model.loss(jax.numpy, {**at, "w": w}))(jax.numpy.asarray(at["w"]))
        np.testing.assert_allclose(h.evaluate(at), np.asarray(expected), rtol=1e-10, atol=1e-12)


def test_the_softmax_of_each_column_wrt_the_matrix_is_a_4th_order_jacobian_equal_to_finite_differences_in_vec_form():
    where, (k, b) = "Z: matrix(k, B)", (3, 4)
    d = matcalc.diff("softmax(Z, 1)", "Z", where=where)
    assert d.order == 4
    z = np.random.default_rng(4).normal(size=(k, b))
    vec = np.asarray(d.evaluate({"Z": z}, form="vec"))  # d vec(S) / d vec(Z)^T, column-major vec

    def vec_softmax(flat: np.ndarray) -> np.ndarray:
        return softmax_columns(np, flat.reshape((k, b), order="F")).reshape(-1, order="F")

    flat = z.reshape(-1, order="F")
    numeric = np.stack([(vec_softmax(flat + 1e-6 * e) - vec_softmax(flat - 1e-6 * e)) / 2e-6
                        for e in np.eye(k * b)], axis=1)
    np.testing.assert_allclose(vec, numeric, rtol=1e-6, atol=1e-9)
    if HAVE_JAX:
        expected = jax.jacobian(lambda f: softmax_columns(jax.numpy, f.reshape((k, b), order="F"))
                                .reshape(-1, order="F"))(jax.numpy.asarray(flat))
        np.testing.assert_allclose(vec, np.asarray(expected), rtol=1e-10, atol=1e-12)
