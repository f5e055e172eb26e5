"""Tensor derivatives (issue 9): milliseconds per derivative (parse + differentiate + simplify + print, warm, median of
repeats) over the tensor cases, and seconds to evaluate a 4th-order result at n = 30 (a 900 x 900 vec Jacobian,
reshaped to 30 x 30 x 30 x 30), against NumPy's own einsum of the known closed form in the same run:

    PYTHONPATH=. python benchmarks/tensors.py
"""

from __future__ import annotations

import statistics
import time

import numpy as np

import matcalc

REPEATS = 15
CASES = [  # (expression, variable, hessian?)
    ("W x + b", "W", False), ("A X B", "X", False), ("X X", "X", False), ("inv(X)", "X", False),
    ("tanh(W x)", "W", False), ("softmax(W x)", "W", False), ("x x^T", "x", False), ("X^T", "X", False),
    ("sigmoid(W2 tanh(W1 x))", "W1", False), ("inv(X) A X", "X", False), ("X^T A X", "X", False),
    ("tr(X^T A X)", "X", True), ("log(det(X))", "X", True), ("sum(tanh(W x))", "W", True),
]


def derive(expr: str, var: str, hessian: bool) -> str:
    return str(matcalc.hessian(expr, var) if hessian else matcalc.diff(expr, var))


def best_of(run, repeats: int = 5) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    medians = []
    for expr, var, hessian in CASES:
        derive(expr, var, hessian)  # warm-up
        times = []
        for _ in range(REPEATS):
            start = time.perf_counter()
            derive(expr, var, hessian)
            times.append((time.perf_counter() - start) * 1000)
        medians.append(statistics.median(times))
        print(f"  {'hessian' if hessian else 'diff':7s} {expr:28s} w.r.t. {var:3s} {medians[-1]:7.2f} ms")
    print(f"{len(medians)} tensor derivatives: median {statistics.median(medians):.2f} ms, max {max(medians):.2f} ms")

    n = 30
    rng = np.random.default_rng(0)
    values = {"X": rng.uniform(0.5, 1.5, (n, n)) + n * np.eye(n), "A": rng.uniform(0.5, 1.5, (n, n)),
              "B": rng.uniform(0.5, 1.5, (n, n))}
    inverse = np.linalg.inv(values["X"])
    for label, d, closed_form in [
        ("A X B w.r.t. X", matcalc.diff("A X B", "X", where="X: matrix(n, n); A: matrix(n, n); B: matrix(n, n)"),
         lambda: np.einsum("ik,lj->ijkl", values["A"], values["B"])),
        ("inv(X) w.r.t. X", matcalc.diff("inv(X)", "X", where="X: matrix(n, n)"),
         lambda: -np.einsum("ik,lj->ijkl", np.linalg.inv(values["X"]), np.linalg.inv(values["X"]))),
        ("Hessian of tr(X^T A X)", matcalc.hessian("tr(X^T A X)", "X", where="X: matrix(n, n); A: matrix(n, n)"),
         lambda: np.einsum("jl,ik->ijkl", np.eye(n), values["A"] + values["A"].T)),
    ]:
        tensor = d.evaluate(values)
        assert tensor.shape == (n, n, n, n)
        np.testing.assert_allclose(tensor, closed_form(), rtol=1e-9, atol=1e-12 * np.abs(inverse).max())
        ours, reference = best_of(lambda d=d: d.evaluate(values)), best_of(closed_form)
        print(f"evaluate, 4th order at n = {n}: {label:24s} {ours * 1000:7.2f} ms   "
              f"(NumPy einsum of the closed form {reference * 1000:6.2f} ms, ratio {ours / reference:.2f})")


if __name__ == "__main__":
    main()
