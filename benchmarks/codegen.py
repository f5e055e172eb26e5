"""Generated code against autodiff (issue 10), in one run, as ratios against JAX:

- the Hessian of the logistic loss sum(log(1 + exp(-y .* (X w)))), X of 2n x n: matcalc's generated NumPy and JAX
  against jax.jit(jax.hessian) and torch.autograd.functional.hessian (where torch is installed);
- the gradient of the logistic loss and of a 3-layer tanh MLP w.r.t. all its weights: generated NumPy and JAX against
  jax.jit(jax.grad);
- d.evaluate before (dense diag, as the interpreter of issue 9) and after (the structure-aware plan);
- generating and compiling (first call) the value-and-gradients function of the 64-layer MLP program.

    PYTHONPATH=. python benchmarks/codegen.py [--quick]
"""

from __future__ import annotations

import importlib.util
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

import jax
import jax.numpy as jnp
from networks import mlp_program

import matcalc
from matcalc.backends.pycode import compile_source

jax.config.update("jax_enable_x64", True)
HAVE_TORCH = importlib.util.find_spec("torch") is not None
QUICK = "--quick" in sys.argv
LOGISTIC = "sum(log(1 + exp(-y .* (X w))))"


def positional(f: Callable, values: dict) -> tuple:
    """The arguments of a generated function in its parameters' order: a jitted function called positionally
    takes JAX's fast dispatch path (keyword arguments take a slower one)."""
    import inspect

    return tuple(values[name] for name in inspect.signature(inspect.unwrap(f)).parameters)


def best(run: Callable[[], object], repeats: int = 7) -> float:
    """The fastest of `repeats` calls (after one warm-up call): the least disturbed by the shared machine."""
    run()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(run())  # every output computed (JAX dispatches asynchronously)
        times.append(time.perf_counter() - start)
    return min(times)


def logistic(xm, y, w):
    return jnp.sum(jnp.logaddexp(0.0, -y * (xm @ w)))


def mlp_loss(weights, x):
    h = x
    for w in weights:
        h = jnp.tanh(w @ h)
    return jnp.sum(h)


def logistic_hessian() -> None:
    print("Hessian of the logistic loss, X of 2n x n (ms; ratio = JAX jit hessian / other, > 1: faster than JAX)")
    d = matcalc.hessian(LOGISTIC, "w")
    numpy_code, jax_code = d.compile("numpy"), jax.jit(d.compile("jax"))
    jax_hessian = jax.jit(jax.hessian(logistic, argnums=2))
    for n in (100, 500) if QUICK else (100, 500, 1000, 2000):
        rng = np.random.default_rng(n)
        xm, y, w = rng.normal(size=(2 * n, n)), np.sign(rng.normal(size=2 * n)), rng.normal(size=n) / np.sqrt(n)
        reference = np.asarray(jax_hessian(xm, y, w))
        np.testing.assert_allclose(numpy_code(X=xm, y=y, w=w), reference, rtol=1e-8, atol=1e-10)
        np.testing.assert_allclose(np.asarray(jax_code(X=xm, y=y, w=w)), reference, rtol=1e-8, atol=1e-10)
        t_jax = best(lambda xm=xm, y=y, w=w: jax_hessian(xm, y, w))
        t_numpy = best(lambda xm=xm, y=y, w=w: numpy_code(X=xm, y=y, w=w))
        args = positional(d.compile("jax"), {"X": xm, "y": y, "w": w})
        t_generated_jax = best(lambda args=args: jax_code(*args))
        t_evaluate = best(lambda xm=xm, y=y, w=w: d.evaluate({"X": xm, "y": y, "w": w}), 3)
        t_dense = best(lambda xm=xm, y=y, w=w: dense_evaluate(d, xm, y, w), 3)
        line = (f"  n = {n:4d}: jax.jit(jax.hessian) {t_jax * 1e3:8.2f} | generated NumPy {t_numpy * 1e3:8.2f} "
                f"(x{t_jax / t_numpy:5.2f}) | generated JAX {t_generated_jax * 1e3:8.2f} "
                f"(x{t_jax / t_generated_jax:5.2f})"
                f" | evaluate {t_evaluate * 1e3:8.2f}, dense-diag evaluate {t_dense * 1e3:8.2f}")
        if HAVE_TORCH and n <= 1000:
            t_torch = torch_hessian_time(xm, y, w)
            line += f" | torch autograd {t_torch * 1e3:9.2f} (numpy x{t_torch / t_numpy:6.1f} faster)"
        print(line)


def dense_evaluate(d: matcalc.Derivative, xm, y, w):
    """The closed form as the interpreter of issue 9 ran it: diag(v) built as a dense matrix, then multiplied."""
    s = 1 / (1 + np.exp(y * (xm @ w)))
    return xm.T @ np.diag(s * (1 - s) * y * y) @ xm


def torch_hessian_time(xm, y, w) -> float:
    import torch

    tx, ty, tw = (torch.as_tensor(a) for a in (xm, y, w))

    def loss(v):
        return torch.nn.functional.softplus(-ty * (tx @ v)).sum()

    return best(lambda: torch.autograd.functional.hessian(loss, tw), 2)


def gradients() -> None:
    print("Gradients (ms; ratio = JAX jit grad / other)")
    g = matcalc.diff(LOGISTIC, "w")
    numpy_code, jax_code = g.compile("numpy"), jax.jit(g.compile("jax"))
    jax_grad = jax.jit(jax.grad(logistic, argnums=2))
    for n in (100, 300) if QUICK else (100, 300, 1000):
        rng = np.random.default_rng(n)
        xm, y, w = rng.normal(size=(2 * n, n)), np.sign(rng.normal(size=2 * n)), rng.normal(size=n) / np.sqrt(n)
        np.testing.assert_allclose(numpy_code(X=xm, y=y, w=w), np.asarray(jax_grad(xm, y, w)), rtol=1e-8)
        t_jax = best(lambda xm=xm, y=y, w=w: jax_grad(xm, y, w), 20)
        t_numpy = best(lambda xm=xm, y=y, w=w: numpy_code(X=xm, y=y, w=w), 20)
        args = positional(g.compile("jax"), {"X": xm, "y": y, "w": w})
        t_generated_jax = best(lambda args=args: jax_code(*args), 20)
        print(f"  logistic n = {n:4d}: jax.jit(jax.grad) {t_jax * 1e3:7.3f} | generated NumPy {t_numpy * 1e3:7.3f} "
              f"(x{t_jax / t_numpy:5.2f}) | generated JAX {t_generated_jax * 1e3:7.3f} "
              f"(x{t_jax / t_generated_jax:5.2f})")
    program = mlp_program(3)
    source = matcalc.codegen(program, ["W1", "W2", "W3"])
    numpy_mlp = compile_source(source, "value_and_gradients")
    jax_mlp_source = compile_source(matcalc.codegen(program, ["W1", "W2", "W3"], backend="jax"),
                                    "value_and_gradients")
    jax_mlp = jax.jit(jax_mlp_source)
    jax_value_and_grad = jax.jit(jax.value_and_grad(mlp_loss))
    for n in (100, 300) if QUICK else (100, 300, 1000):
        rng = np.random.default_rng(n)
        weights = [rng.normal(size=(n, n)) / np.sqrt(n) for _ in range(3)]
        x = rng.normal(size=n)
        named = {"W1": weights[0], "W2": weights[1], "W3": weights[2], "x": x}
        value, grads = jax_value_and_grad(weights, x)
        ours = numpy_mlp(**named)
        assert np.isclose(ours[0], value)
        for mine, theirs in zip(ours[1:], grads, strict=True):
            np.testing.assert_allclose(mine, np.asarray(theirs), rtol=1e-8, atol=1e-12)
        t_jax = best(lambda weights=weights, x=x: jax_value_and_grad(weights, x), 20)
        t_numpy = best(lambda named=named: numpy_mlp(**named), 20)
        args = positional(jax_mlp_source, named)
        t_generated_jax = best(lambda args=args: jax_mlp(*args), 20)
        print(f"  3-layer MLP n = {n:4d}, value and all gradients: jax.jit(jax.value_and_grad) {t_jax * 1e3:7.3f} | "
              f"generated NumPy {t_numpy * 1e3:7.3f} (x{t_jax / t_numpy:5.2f}) | generated JAX "
              f"{t_generated_jax * 1e3:7.3f} (x{t_jax / t_generated_jax:5.2f})")


def generation_time() -> None:
    program = mlp_program(64)
    names = [f"W{k}" for k in range(1, 65)]
    start = time.perf_counter()
    f = compile_source(matcalc.codegen(program, names), "value_and_gradients")
    rng = np.random.default_rng(0)
    values = {"x": rng.normal(size=8), **{name: rng.normal(size=(8, 8)) / 3 for name in names}}
    f(**values)
    print(f"64-layer MLP program: generate + compile + first call (NumPy), all 64 gradients: "
          f"{time.perf_counter() - start:.3f} s")


if __name__ == "__main__":
    logistic_hessian()
    gradients()
    generation_time()
