"""Seconds per proof (issue 16): `verify()` of networks and programs, `check` of a printed program candidate, and
the slowest of the acceptance and cookbook cases. Run it on two checkouts in one session to compare (the machine
is shared: compare the ratios, not the seconds):

    PYTHONPATH=. python benchmarks/proofs.py [--quick] [--timeout SECONDS]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from networks import mlp_program

import matcalc

SIGMOID_STACK = "h1 = sigmoid(W1 x + b1); h2 = sigmoid(W2 h1 + b2); L = sum(h2)"
PROGRAMS = [
    ("README program", "h1 = tanh(W1 x); h2 = tanh(W2 h1); L = sum(h2)", "W1"),
    ("Dillon's sigmoid stack", SIGMOID_STACK, "W1"),
    ("Dillon's sigmoid stack, batch", "H1 = sigmoid(W1 X + b1 vector(1)^T); H2 = sigmoid(W2 H1 + b2 vector(1)^T); "
     "L = sum(H2)", "W1"),
    ("6-layer program", mlp_program(6).replace("\n", "; "), "W1"),
    ("8-layer MLP program", mlp_program(8).replace("\n", "; "), "W1"),
]
# The transformer block of the batches issue (benchmarks/batches.py), w.r.t. its query weights.
BLOCK = ("Q = Wq X; K = Wk X; V = Wv X; P = softmax(K^T Q / sqrt(d), 1); H = X + V P; "
         "N = (H - mean(H, 1)) ./ sqrt(var(H, 1) + 0.00001); Z = g .* N + beta; M = W2 gelu(W1 Z + b1) + b2; "
         "Y = Z + M; L = sum(C .* Y)")
BLOCK_WHERE = ("X, C: matrix(d, T); Wq, Wk, Wv: matrix(d, d); W1: matrix(f, d); W2: matrix(d, f); "
               "g, beta, b2: vector(d); b1: vector(f)")


def _timed(run: object) -> tuple[float, object]:
    start = time.perf_counter()
    result = run()  # type: ignore[operator]
    return time.perf_counter() - start, result


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="the programs only")
    parser.add_argument("--timeout", type=float, default=120.0)
    args = parser.parse_args()
    for name, program, wrt, where in [(*row, None) for row in PROGRAMS] + [("transformer block", BLOCK, "Wq",
                                                                             BLOCK_WHERE)]:
        d = matcalc.diff(program, wrt, where=where)
        seconds, report = _timed(lambda d=d: d.verify(timeout=args.timeout))
        print(f"{name}: verify {seconds:.1f} s: {str(report).splitlines()[0][:90]}")
        candidate = str(d)
        seconds, result = _timed(lambda p=program, w=wrt, c=candidate, h=where: matcalc.check(p, w, c, where=h,
                                                                                            timeout=args.timeout))
        print(f"{name}: check of the printed program {seconds:.1f} s: {str(result).split(':')[0]}")
    if args.quick:
        return
    import test_derivatives
    from test_cookbook_table import COOKBOOK

    cases = [(matcalc.diff, expr, var, where) for expr, var, where, _ in COOKBOOK]
    for table in ("SEEDS", "ML"):
        cases += [(matcalc.diff, row[0], row[1], None) for row in getattr(test_derivatives, table)]
    cases += [(matcalc.hessian, expr, "w" if "w" in expr else "x", None) for expr, _ in test_derivatives.HESSIANS]
    times = []
    for derive, expr, var, where in cases:
        try:
            d = derive(expr, var, where)
        except matcalc.MatcalcError:
            continue  # a row that needs its test's declarations
        seconds, report = _timed(lambda d=d: d.verify(timeout=args.timeout))
        times.append((seconds, expr, bool(report)))
    times.sort(reverse=True)
    print(f"acceptance and cookbook cases: {len(times)}, all verified: {all(ok for _, _, ok in times)}, "
          f"slowest {times[0][0]:.2f} s ({times[0][1]}), median {times[len(times) // 2][0]:.2f} s, "
          f"over 1 s: {sum(seconds > 1 for seconds, _, _ in times)}")
    for seconds, expr, _ in times[:8]:
        print(f"  {seconds:.2f} s  {expr}")


if __name__ == "__main__":
    main()
