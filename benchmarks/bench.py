"""Speed figures for the cookbook table (issue 2, section 9). Run: python benchmarks/bench.py

- warm milliseconds per derivative (median of repeated runs, parse + differentiate + simplify + print);
- wall time of `matcalc diff "x^T A x" x` from a cold start (a fresh process each run);
- whether d.verify() passes on every case, and its time;
- matcalc.check on the trust issue's acceptance cases (right, wrong, wrong shape) and on every
  cookbook result, with the verdict and its time (target: each within 2 s).
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from test_cookbook_table import COOKBOOK

import matcalc


def warm_milliseconds(repeats: int) -> list[tuple[str, float]]:
    rows = []
    for expr, var, where, _ in COOKBOOK:
        str(matcalc.diff(expr, var, where=where))  # warm-up: parser built, modules loaded
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            str(matcalc.diff(expr, var, where=where))
            times.append((time.perf_counter() - start) * 1000)
        rows.append((f"d({expr})/d{var}", statistics.median(times)))
    return rows


def cold_start_seconds(runs: int) -> tuple[str, list[float]]:
    script = shutil.which("matcalc")
    scripts_dir = Path(sys.executable).parent / "matcalc"  # the console script itself, not a version-manager shim
    if scripts_dir.exists():
        command = [str(scripts_dir)]
    else:
        command = [script] if script else [sys.executable, "-m", "matcalc"]
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        result = subprocess.run([*command, "diff", "x^T A x", "x"], capture_output=True, text=True)
        times.append(time.perf_counter() - start)
        assert result.stdout == "(A + A^T) x\n", result
    return " ".join(command), times


def verify_times() -> list[tuple[str, bool, float]]:
    rows = []
    for expr, var, where, _ in COOKBOOK:
        d = matcalc.diff(expr, var, where=where)
        start = time.perf_counter()
        ok = bool(d.verify())
        rows.append((f"d({expr})/d{var}", ok, time.perf_counter() - start))
    return rows


ACCEPTANCE_CHECKS = [  # (expression, variable, candidate, where, the right verdict)
    ("logdet(alpha I)", "alpha", "2 / alpha", None, "wrong"),
    ("logdet(alpha I)", "alpha", "n / alpha", None, "correct"),
    ("tr(alpha I)", "alpha", "2", None, "wrong"),
    ("tr(alpha I + A)", "alpha", "rows(A)", None, "correct"),
    ("x^T A x", "x", "x^T (A + A^T)", None, "wrong"),
    ("x^T A x", "x", "(A + A^T) x", None, "correct"),
    ("sigmoid(A * x + sigmoid(x))^T X x", "x", "vector(0)", {"A": "matrix(4, 4)", "x": "vector(4)"}, "wrong"),
]


def verdict(result: matcalc.CheckResult) -> str:
    return "correct" if result else "undecided" if result.undecided else "wrong"


def check_times() -> list[tuple[str, str, str, float]]:
    """(case, the right verdict, the verdict given, seconds) for the acceptance cases and each cookbook result."""
    cases = list(ACCEPTANCE_CHECKS)
    cases += [(expr, var, str(matcalc.diff(expr, var, where=where)), where, "correct")
              for expr, var, where, _ in COOKBOOK]
    rows = []
    for expr, var, candidate, where, right in cases:
        start = time.perf_counter()
        result = matcalc.check(expr, var, candidate, where=where)
        rows.append((f"d({expr})/d{var} =? {candidate}"[:90], right, verdict(result), time.perf_counter() - start))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--cold-runs", type=int, default=10)
    args = parser.parse_args()

    warm = warm_milliseconds(args.repeats)
    print(f"warm ms per derivative (median of {args.repeats} runs each):")
    for name, ms in warm:
        print(f"  {ms:7.2f}  {name}")
    medians = [ms for _, ms in warm]
    print(f"  median over {len(warm)} cases: {statistics.median(medians):.2f} ms (max {max(medians):.2f} ms)"
          f"   target <= 5 ms")

    command, cold = cold_start_seconds(args.cold_runs)
    print(f"\ncold start: {command} diff \"x^T A x\" x  ({args.cold_runs} fresh processes)")
    print(f"  median {statistics.median(cold):.3f} s, min {min(cold):.3f} s, max {max(cold):.3f} s   target <= 0.25 s")

    rows = verify_times()
    print("\nd.verify() (SymPy, exact, elementwise):")
    for name, ok, seconds in rows:
        print(f"  {'pass' if ok else 'FAIL'}  {seconds:6.2f} s  {name}")
    passed = sum(ok for _, ok, _ in rows)
    print(f"  {passed}/{len(rows)} pass; slowest {max(s for _, _, s in rows):.2f} s, "
          f"median {statistics.median(s for _, _, s in rows):.2f} s   target <= 2 s per case")

    checks = check_times()
    print("\nmatcalc.check (SymPy at two sizes, with a time limit):")
    for name, right, given, seconds in checks:
        print(f"  {'ok ' if given == right else 'BAD'} {given:9s} {seconds:6.2f} s  {name}")
    good = sum(given == right for _, right, given, _ in checks)
    print(f"  {good}/{len(checks)} verdicts right; slowest {max(s for *_, s in checks):.2f} s, "
          f"median {statistics.median(s for *_, s in checks):.2f} s   target <= 2 s per case")


if __name__ == "__main__":
    main()
