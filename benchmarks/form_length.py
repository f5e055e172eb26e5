"""Printed length of every acceptance case (the cookbook table and the seed, machine-learning and Hessian tables of
tests/test_derivatives.py, collected as benchmarks/acceptance.py collects them), and, where a table lists the
textbook form, the printed length over the textbook form's (median and worst). Issue 16, section 5: no result may
get longer. Run it on two checkouts to compare, or save the lengths and compare them later:

    PYTHONPATH=. python benchmarks/form_length.py [--save lengths.json] [--against lengths.json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

import test_derivatives
from test_cookbook_table import COOKBOOK
from test_shortest_forms import DERIVATIVES

import matcalc


def cases() -> list[tuple[str, str, str | None, str | None, bool]]:
    """(expression, variable, declarations, textbook form or None, Hessian?) of every acceptance case."""
    rows = [(expr, var, where, book, False) for expr, var, where, book in COOKBOOK]
    rows += [(expr, var, None, book, False) for expr, var, book in test_derivatives.SEEDS]
    for expr, var, book in test_derivatives.ML:
        where = "a, b: scalar" if expr == "a^b" else ("S: symmetric" if "S" in expr else None)
        rows.append((expr, var, where, book, False))
    for expr, book in test_derivatives.HESSIANS:
        rows.append((expr, "w" if "w" in expr else "x", None, book, True))
    return rows


def issue_cases() -> list[tuple[str, str, str | None, str | None, bool]]:
    """The derivatives issue 16 lists as printed longer than the textbook's (tests/test_shortest_forms.py)."""
    return [(expr, var, where, book, False) for expr, var, where, book in DERIVATIVES]


def printed(expr: str, var: str, where: str | None, hessian: bool) -> str:
    return str((matcalc.hessian if hessian else matcalc.diff)(expr, var, where=where))


def measure(rows: list[tuple[str, str, str | None, str | None, bool]], title: str) -> dict[str, int]:
    lengths: dict[str, int] = {}
    ratios: list[tuple[float, str]] = []
    for expr, var, where, book, hessian in rows:
        key = f"{'hessian' if hessian else 'diff'}({expr!r}, {var!r}" + (f", where={where!r})" if where else ")")
        text = printed(expr, var, where, hessian)
        lengths[key] = len(text)
        if book is not None:
            ratios.append((len(text) / len(book), key))
    values = list(lengths.values())
    print(f"{title}: {len(values)} cases, total printed length {sum(values)}, median {statistics.median(values)}, "
          f"longest {max(values)}")
    if ratios:
        median = statistics.median(r for r, _ in ratios)
        worst = max(ratios)
        print(f"  {len(ratios)} with a textbook form: printed length over the textbook's, median {median:.3f}, "
              f"worst {worst[0]:.3f} ({worst[1]})")
    return lengths


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--save", help="write the printed lengths to this JSON file")
    parser.add_argument("--against", help="compare with lengths saved earlier by --save")
    args = parser.parse_args()
    lengths = measure(cases(), "acceptance cases (cookbook, seeds, machine learning, Hessians)")
    lengths.update(measure(issue_cases(), "the long forms of issue 16"))
    if args.save:
        Path(args.save).write_text(json.dumps(lengths, indent=1, ensure_ascii=False) + "\n")
    if args.against:
        before = json.loads(Path(args.against).read_text())
        shared = [k for k in lengths if k in before]
        longer = [k for k in shared if lengths[k] > before[k]]
        shorter = [k for k in shared if lengths[k] < before[k]]
        print(f"against {args.against}: {len(shorter)} shorter, {len(longer)} longer, "
              f"{len(shared) - len(shorter) - len(longer)} the same; total {sum(before[k] for k in shared)} -> "
              f"{sum(lengths[k] for k in shared)}, median {statistics.median(before[k] for k in shared)} -> "
              f"{statistics.median(lengths[k] for k in shared)}")
        for k in shorter + longer:
            print(f"  {before[k]:4d} -> {lengths[k]:4d}  {k}")
        if longer:
            sys.exit(1)


if __name__ == "__main__":
    main()
