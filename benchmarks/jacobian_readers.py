"""The Jacobian reader against the vec reader (issue 15): for the recorded inputs whose derivative is the Jacobian of
a column w.r.t. a column, whether the vec reader (VEC_RULES) plus simplification prints what the Jacobian reader
(calculus/jacobian.py) plus simplification prints. Run: python benchmarks/jacobian_readers.py [--examples N]

It prints how many inputs read the same, shorter and longer, and the first examples that differ.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

import replay

import matcalc
from matcalc.calculus.differential import differential
from matcalc.calculus.jacobian import jacobian_from_differential
from matcalc.calculus.readers import vec_jacobian
from matcalc.core import ir
from matcalc.render.text import to_text
from matcalc.rules.simplify import simplify


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--examples", type=int, default=8)
    options = parser.parse_args()
    seen: set[tuple] = set()
    counts = {"same": 0, "shorter": 0, "longer": 0, "vec reader refuses": 0, "Jacobian reader refuses": 0}
    differing: list[tuple[str, str, str]] = []
    for entry in replay.load_record():
        call = entry["call"]
        if call.get("op") != "diff" or "expr" not in call:
            continue
        key = (call["expr"], call["wrt"], call.get("where"))
        if key in seen:
            continue
        seen.add(key)
        try:
            d = matcalc.diff(*key[:2], where=key[2])
        except matcalc.MatcalcError:
            continue
        f, x = d.of, d.variable
        if d.kind != "jacobian" or not ir.is_column(x.shape) or not ir.is_column(f.shape):
            continue
        df = differential(f, x)
        try:
            matrix_form = to_text(simplify(jacobian_from_differential(df, x.shape[0])))
        except matcalc.MatcalcError:  # the Jacobian reader refuses (diff then asks the vec reader)
            counts["Jacobian reader refuses"] += 1
            continue
        try:
            vec_form = to_text(simplify(vec_jacobian(df, x)))
        except matcalc.MatcalcError:
            counts["vec reader refuses"] += 1
            continue
        if vec_form == matrix_form:
            counts["same"] += 1
            continue
        counts["shorter" if len(vec_form) < len(matrix_form) else "longer"] += 1
        differing.append((call["expr"], matrix_form, vec_form))
    print(f"{sum(counts.values())} distinct inputs: " + ", ".join(f"{name} {n}" for name, n in counts.items()))
    for expr, matrix_form, vec_form in differing[: options.examples]:
        print(f"  {expr}\n    Jacobian reader: {matrix_form}\n    vec reader:      {vec_form}")


if __name__ == "__main__":
    main()
