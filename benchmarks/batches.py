"""A transformer block on a batch (issue 17 §3), in one run, as ratios against JAX autodiff:

single-head self-attention over a sequence of T tokens (the columns of X: matrix(d, T)), a residual, a layer norm
of each column with a gain and a bias, a GELU MLP (hidden width 4 d) and a residual; the loss is sum(C .* Y) for a
fixed matrix C. matcalc derives the value and the gradients w.r.t. all nine weights as one program (one backward
pass) and writes it as one function; the same block is written by hand in JAX and differentiated by
jax.jit(jax.value_and_grad). Printed, for d = 64, 128 and T = 64, 128:

- the time of jax.jit(jax.value_and_grad) of the hand-written block, of the generated JAX function under jax.jit,
  and of the generated NumPy function; the ratios are JAX's time / the other's (> 1: faster than JAX autodiff);
- the largest absolute difference of the value and every gradient between the three;

and the symbolic derivation time of the block (matcalc.grad of the program, and matcalc.codegen: derivation and
code). Times are medians of repeats, in float64 (as the tests compare to 1e-9).

The generated NumPy code computes erf and GELU with scipy.special where SciPy is installed (as it is with JAX), and
with math.erf entry by entry where it is not; the line says which.

The calls of one size are timed in turns (one call of each, then again), so that a shared machine's load falls on
all of them alike. With `--compare PATH` (a checkout of matcalc, e.g. a worktree of main), the code that checkout
generates for the block is timed in the same turns too, and printed as "before" beside this checkout's "after":
one run, one load, for both.

    PYTHONPATH=. python benchmarks/batches.py [--quick] [--compare PATH]
"""

from __future__ import annotations

import os

# One BLAS thread unless told otherwise (before NumPy starts): on a small shared machine OpenBLAS's spinning threads
# fight XLA's thread pool in the same process, and the NumPy times grow tenfold and vary from run to run.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import importlib.util
import inspect
import json
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

import matcalc
from matcalc.backends.pycode import compile_source

jax.config.update("jax_enable_x64", True)
QUICK = "--quick" in sys.argv
COMPARE = sys.argv[sys.argv.index("--compare") + 1] if "--compare" in sys.argv[:-1] else None

BLOCK = """
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
"""
WHERE = ("X, C: matrix(d, T); Wq, Wk, Wv: matrix(d, d); W1: matrix(f, d); W2: matrix(d, f); "
         "g, beta, b2: vector(d); b1: vector(f)")
WEIGHTS = ["Wq", "Wk", "Wv", "g", "beta", "W1", "b1", "W2", "b2"]


def block(weights: dict[str, Any], x: Any, c: Any) -> Any:
    """The same block, written in JAX: a column per token, each column layer-normed."""
    d = x.shape[0]
    q, k, v = weights["Wq"] @ x, weights["Wk"] @ x, weights["Wv"] @ x
    p = jax.nn.softmax(k.T @ q / jnp.sqrt(d), axis=0)
    h = x + v @ p
    centred = h - h.mean(axis=0, keepdims=True)
    n = centred / jnp.sqrt((centred * centred).mean(axis=0, keepdims=True) + 1e-5)
    z = weights["g"][:, None] * n + weights["beta"][:, None]
    m = weights["W2"] @ jax.nn.gelu(weights["W1"] @ z + weights["b1"][:, None], approximate=False) \
        + weights["b2"][:, None]
    return jnp.sum(c * (z + m))


def block_values(d: int, t: int, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    f = 4 * d
    return {"X": rng.normal(size=(d, t)), "C": rng.normal(size=(d, t)) / np.sqrt(d * t),
            "Wq": rng.normal(size=(d, d)) / np.sqrt(d), "Wk": rng.normal(size=(d, d)) / np.sqrt(d),
            "Wv": rng.normal(size=(d, d)) / np.sqrt(d), "g": 1 + 0.1 * rng.normal(size=d),
            "beta": 0.1 * rng.normal(size=d), "W1": rng.normal(size=(f, d)) / np.sqrt(d),
            "b1": 0.1 * rng.normal(size=f), "W2": rng.normal(size=(d, f)) / np.sqrt(f), "b2": 0.1 * rng.normal(size=d)}


def positional(f: Callable, values: dict) -> tuple:
    """The arguments of a generated function in its parameters' order (a jitted function called positionally
    takes JAX's fast dispatch path)."""
    return tuple(values[name] for name in inspect.signature(inspect.unwrap(f)).parameters)


def median_times(runs: list[Callable[[], object]], repeats: int) -> list[float]:
    """The median of `repeats` calls of each run, taken in turns (each run once, then again), after one warm-up call
    of each (which compiles under jit)."""
    for run in runs:
        jax.block_until_ready(run())
    times: list[list[float]] = [[] for _ in runs]
    for _ in range(repeats):
        for run, taken in zip(runs, times, strict=True):
            start = time.perf_counter()
            jax.block_until_ready(run())  # every output computed (JAX dispatches asynchronously)
            taken.append(time.perf_counter() - start)
    return [statistics.median(taken) for taken in times]


def sources_of(checkout: str) -> dict[str, str]:
    """The JAX and NumPy code another checkout of matcalc generates for the block (its own process: one matcalc
    per interpreter)."""
    script = (f"import json, matcalc; print(json.dumps({{b: matcalc.codegen({BLOCK!r}, {WEIGHTS!r}, where={WHERE!r}, "
              "backend=b) for b in ('jax', 'numpy')}))")
    found = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True,
                           cwd=checkout, env={**os.environ, "PYTHONPATH": checkout})  # cwd: python -c reads it first
    return json.loads(found.stdout)


def derivation_times(repeats: int = 3) -> tuple[float, float, float]:
    """matcalc.grad of the block (its first call, once the parser is built by another call, then the median of
    repeats) and matcalc.codegen (median)."""
    matcalc.diff("x^T x", "x")  # builds the parser: start-up, not derivation
    start = time.perf_counter()
    matcalc.grad(BLOCK, WEIGHTS, where=WHERE)
    first = time.perf_counter() - start
    grads, codes = [], []
    for _ in range(repeats):
        start = time.perf_counter()
        matcalc.grad(BLOCK, WEIGHTS, where=WHERE)
        grads.append(time.perf_counter() - start)
        start = time.perf_counter()
        matcalc.codegen(BLOCK, WEIGHTS, where=WHERE, backend="jax")
        codes.append(time.perf_counter() - start)
    return first, statistics.median(grads), statistics.median(codes)


def largest_difference(a: tuple, b: tuple) -> float:
    return max(float(np.max(np.abs(np.asarray(x) - np.asarray(y)))) for x, y in zip(a, b, strict=True))


def main() -> None:
    first, derive, generate = derivation_times()
    print(f"transformer block, value and all {len(WEIGHTS)} gradients: matcalc.grad {first:.3f} s (first call), "
          f"{derive:.3f} s (median); matcalc.codegen (derivation and code) {generate:.3f} s")
    generated = {"after": {b: matcalc.codegen(BLOCK, WEIGHTS, where=WHERE, backend=b) for b in ("jax", "numpy")}}
    if COMPARE:
        generated = {"before": sources_of(COMPARE), **generated}
    functions = {which: (jax.jit(compile_source(code["jax"], "value_and_gradients")),
                         compile_source(code["numpy"], "value_and_gradients")) for which, code in generated.items()}
    reference = jax.jit(jax.value_and_grad(block))
    print(f"times in ms (medians; OPENBLAS_NUM_THREADS={os.environ['OPENBLAS_NUM_THREADS']}, {os.cpu_count()} CPUs; "
          f"NumPy erf by {'scipy.special' if importlib.util.find_spec('scipy') else 'math.erf, entry by entry'}; "
          f"load average {os.getloadavg()[0]:.2f}); ratio = jax.jit(jax.value_and_grad) time / other time "
          "(> 1: faster than JAX)" + (f"; before: the code of {COMPARE}, after: this checkout's" if COMPARE else ""))
    sizes = [(16, 8)] if QUICK else [(64, 64), (64, 128), (128, 64), (128, 128)]
    repeats = 5 if QUICK else 30
    for d, t in sizes:
        values = block_values(d, t)
        weights = {name: jnp.asarray(values[name]) for name in WEIGHTS}
        x, c = jnp.asarray(values["X"]), jnp.asarray(values["C"])
        value, grads = reference(weights, x, c)
        expected = (value, *(grads[name] for name in WEIGHTS))
        runs: list[Callable[[], object]] = [lambda weights=weights, x=x, c=c: reference(weights, x, c)]
        for jitted, numpy_function in functions.values():
            args = positional(jitted, {name: jnp.asarray(v) for name, v in values.items()})
            runs += [lambda jitted=jitted, args=args: jitted(*args),
                     lambda numpy_function=numpy_function, values=values: numpy_function(**values)]
        t_reference, *others = median_times(runs, repeats)
        line = f"  d = {d:3d}, T = {t:3d}: jax.jit(jax.value_and_grad) {t_reference * 1e3:7.3f}"
        for index, which in enumerate(functions):
            t_jax, t_numpy = others[2 * index], others[2 * index + 1]
            label = f"{which}: " if COMPARE else ""
            line += (f" | {label}generated JAX {t_jax * 1e3:7.3f} (x{t_reference / t_jax:5.2f}) | generated NumPy "
                     f"{t_numpy * 1e3:7.3f} (x{t_reference / t_numpy:5.2f})")
        jitted, numpy_function = functions["after"]
        ours_jax = jitted(*positional(jitted, {name: jnp.asarray(v) for name, v in values.items()}))
        print(line + f" | max abs difference: JAX {largest_difference(ours_jax, expected):.1e}, "
              f"NumPy {largest_difference(numpy_function(**values), expected):.1e}")


if __name__ == "__main__":
    main()
