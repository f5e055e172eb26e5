"""Median milliseconds per derivative over the acceptance cases (the cookbook table and the seed, machine-learning
and Hessian tables of tests/test_derivatives.py): parse + differentiate + simplify + print, warm, each case
repeated. Run it on two checkouts to compare commits (issue 8: the median must not get worse):

    PYTHONPATH=. python benchmarks/acceptance.py
"""

from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

import test_derivatives
from test_cookbook_table import COOKBOOK

import matcalc

REPEATS = 15


def cases() -> list[tuple[str, str, str | None]]:
    rows = [(expr, var, where) for expr, var, where, _ in COOKBOOK]
    for table in ("SEEDS", "ML", "HESSIANS"):
        rows += [(row[0], row[1], None) for row in getattr(test_derivatives, table, [])]
    return rows


def main() -> None:
    medians = []
    for expr, var, where in cases():
        try:
            str(matcalc.diff(expr, var, where=where))  # warm-up
        except matcalc.MatcalcError:
            continue  # a case of another kind (a Hessian table entry diff refuses)
        times = []
        for _ in range(REPEATS):
            start = time.perf_counter()
            str(matcalc.diff(expr, var, where=where))
            times.append((time.perf_counter() - start) * 1000)
        medians.append(statistics.median(times))
    print(f"{len(medians)} cases: median {statistics.median(medians):.3f} ms per derivative, "
          f"mean {statistics.mean(medians):.3f} ms, max {max(medians):.3f} ms")


if __name__ == "__main__":
    main()
