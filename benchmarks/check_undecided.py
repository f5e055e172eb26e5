"""The long random check run's undecided count (issue 16, section 1), on a fixed-seed sample: for each random
expression (tests/generate.py) and each of its variables, `check` of the engine's own printed result at the long
run's limits (the default 30 s; a tensor in vec form 5 s, as tests/test_properties.py allows it). Prints
`undecided/N` and the slowest checks. A full long run (-m slow, 10,000 cases) is too long for a shared machine:

    PYTHONPATH=. python benchmarks/check_undecided.py [--count 300] [--seed 0]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from generate import Case, random_cases

import matcalc

TENSOR_SECONDS = 5.0  # tests/test_properties.py: TENSOR_PROOF_SECONDS


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--count", type=int, default=300)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    checks = undecided = wrong = 0
    times: list[tuple[float, str]] = []
    left: list[tuple[Case, str, matcalc.Derivative]] = []
    for case in random_cases(args.seed, args.count):
        for name in case.variables:
            try:
                d = matcalc.diff(case.text, name, where=case.where)
            except matcalc.MatcalcError:
                continue
            start = time.perf_counter()
            verdict = matcalc.check(case.text, name, str(d), where=case.where,
                                    timeout=TENSOR_SECONDS if d.form == "vec" else None)
            seconds = time.perf_counter() - start
            checks += 1
            undecided += verdict.undecided
            wrong += not verdict and not verdict.undecided
            times.append((seconds, f"d/d{name} {case.text}" + (" (undecided)" if verdict.undecided else "")))
            if verdict.undecided:
                left.append((case, name, d))
    times.sort(reverse=True)
    print(f"cases {args.count} (seed {args.seed}), checks {checks}: undecided {undecided}/{checks}, wrong {wrong}")
    print(f"median {times[len(times) // 2][0]:.2f} s; slowest:")
    for seconds, what in times[:8]:
        print(f"  {seconds:6.2f} s  {what[:110]}")
    # the undecided ones again, each at the default limit (30 s), tensors too
    still = 0
    for case, name, d in left:
        start = time.perf_counter()
        verdict = matcalc.check(case.text, name, str(d), where=case.where)
        still += verdict.undecided
        print(f"  at 30 s: {time.perf_counter() - start:6.2f} s  {verdict.verdict:9s}  "
              f"{'tensor ' if d.form == 'vec' else ''}d/d{name} {case.text}"[:130])
    print(f"undecided at the 30 s limit for every check: {still}/{checks}")


if __name__ == "__main__":
    main()
