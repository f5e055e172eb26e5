"""Issue 9's coverage figure: of the derivatives of random expressions that matcalc once refused as 3rd/4th-order
tensors (a vector or matrix w.r.t. a matrix, a matrix w.r.t. a vector, the Hessian of a scalar w.r.t. a matrix), how
many now come out, print back to the same tree, and match central finite differences (or, where the function is too
steep for them, SymPy's exact proof):

    PYTHONPATH=.:tests python benchmarks/tensor_coverage.py [COUNT] [SEED]
"""

from __future__ import annotations

import statistics
import sys
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

import numpy as np
from generate import random_cases
from oracles import close_to_finite_differences, evaluate_expr, random_values

import matcalc
from matcalc.core import ir


def once_refused(function: ir.Expr, variable: ir.Var) -> bool:
    """The old rule (matcalc 0.1.0, before issue 9): a non-scalar w.r.t. a non-scalar, unless a vector w.r.t. a
    column vector."""
    out, var = function.shape, variable.shape
    if var == ir.SCALAR or out == ir.SCALAR:
        return False
    return not (ir.is_vector_shape(out) and ir.is_column(var))


def main() -> None:
    count = int(sys.argv[1]) if len(sys.argv) > 1 else 2000
    seed = int(sys.argv[2]) if len(sys.argv) > 2 else 9
    tally: Counter[str] = Counter()
    seconds: list[float] = []
    for case in random_cases(seed, count):
        function = matcalc.parse(case.text, where=case.where)
        values = random_values([function], 0, case.sizes)
        with np.errstate(all="ignore"):
            value = evaluate_expr(function, values)
        if not (np.all(np.isfinite(value)) and np.max(np.abs(value), initial=0.0) < 1e6):
            continue
        for name in case.variables:
            variable = ir.variables(function)[name]
            hessian = function.shape == ir.SCALAR and not ir.is_vector_shape(variable.shape) \
                and variable.shape != ir.SCALAR and not variable.symmetric
            if not (once_refused(function, variable) or hessian):
                continue
            kind = "Hessians w.r.t. a matrix" if hessian else "tensor derivatives"
            tally[f"{kind} once refused"] += 1
            start = time.perf_counter()
            try:
                d = (matcalc.hessian if hessian else matcalc.diff)(case.text, name, where=case.where)
                str(d)
            except matcalc.UnsupportedError as error:
                tally[f"{kind} still refused"] += 1
                print(f"refused: {case.text} w.r.t. {name}: {error}")
                continue
            seconds.append(time.perf_counter() - start)
            back = matcalc.parse(str(d), where=d.where, shape=d.matrix_shape)
            tally[f"{kind} printed back to the same tree"] += back is d.expr
            with np.errstate(all="ignore"):
                right = close_to_finite_differences(d, values) or bool(d.verify())
            tally[f"{kind} right"] += right
            if not right:
                print(f"WRONG: {case.text} w.r.t. {name} = {d}")
    for key, value in sorted(tally.items()):
        print(f"{key}: {value}")
    if seconds:
        print(f"time per derivative (diff + print): median {statistics.median(seconds) * 1000:.2f} ms, "
              f"max {max(seconds) * 1000:.1f} ms")


if __name__ == "__main__":
    main()
