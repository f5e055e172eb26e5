"""Single expressions linear in the input (issue 15): products of many factors holding the variable, and
inlined residual programs. Run: python benchmarks/linear.py   (with PYTHONPATH naming the checkout to measure)

- chains of k copies of a small term, k = 25 ... 2000: seconds (parse + differentiate + print, the best of three
  runs, each with a variable of its own so that no run finds another's work done) and printed characters, or
  "refused" (the code before refused a product rule that writes more than 20,000 factors);
- the residual program h_k = h_(k-1) + tanh(W_k h_(k-1)), L = 8 ... 256 layers, gradient w.r.t. W1: the distinct
  nodes and links (children, a shared node's once) of the inlined function and of the inlined gradient d.expr.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.append(str(Path(__file__).resolve().parent.parent / "tests"))  # networks.py; matcalc from PYTHONPATH

from networks import residual_program

import matcalc

try:
    from matcalc.core import ir
except ImportError:  # the code before the package layout
    from matcalc import ir  # type: ignore[attr-defined,no-redef]

CHAINS: dict[str, Callable[[int, str], str]] = {
    # the term of tests/test_scaling.py and benchmarks/scaling.py: a scalar, so ./ is a product with its reciprocal
    "s ./ ... ./ s, s = (norm2(...))^2": lambda k, x: " ./ ".join([f"(norm2(vector(3) + ({x} + {x}) .* -{x})^2)"] * k),
    "sin(x) ./ ... ./ sin(x)": lambda k, x: " ./ ".join([f"sin({x})"] * k),
    "sin(x) .* ... .* sin(x)": lambda k, x: " .* ".join([f"sin({x})"] * k),
    "sum(sin(x) .* cos(x) ./ ...)": lambda k, x: "sum(" + " ./ ".join(
        f"sin({x}) .* cos({x})" if i % 2 else f"exp({x})" for i in range(k)) + ")",
}
LENGTHS = (25, 50, 100, 200, 500, 1000, 2000)
LAYERS = (8, 16, 32, 64, 128, 256)


def chain_row(name: str, make: Callable[[int, str], str], k: int) -> None:
    times, printed, outcome = [], 0, ""
    for run in range(3):
        text = make(k, f"x{'abc'[run]}")  # names of one length: the printed sizes agree
        start = time.perf_counter()
        try:
            printed = len(str(matcalc.diff(text, f"x{'abc'[run]}")))
        except matcalc.UnsupportedError:
            outcome = "refused"
        times.append(time.perf_counter() - start)
    size = outcome or f"{printed:,}"
    print(f"{name:36} {k:5d} {len(text):9,} {min(times):9.3f} {size:>10}")


def counts(e: object) -> tuple[int, int]:
    nodes = list(ir.walk(e))
    return len(nodes), sum(len(node.children) for node in nodes)


def residual_row(layers: int) -> None:
    start = time.perf_counter()
    d = matcalc.diff(residual_program(layers), "W1")
    printed = len(str(d))
    seconds = time.perf_counter() - start
    (f_nodes, f_links), (g_nodes, g_links) = counts(d.function), counts(d.expr)
    print(f"{layers:5d} {f_nodes:8,} {f_links:8,} {g_nodes:8,} {g_links:8,} {g_links / layers:8.1f} {printed:8,} "
          f"{seconds:8.3f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--max-length", type=int, default=max(LENGTHS))
    parser.add_argument("--max-layers", type=int, default=max(LAYERS))
    options = parser.parse_args()
    print(f"matcalc from {Path(matcalc.__file__).parent}")
    print(f"\n{'chain of k copies':36} {'k':>5} {'bytes':>9} {'seconds':>9} {'printed':>10}")
    for name, make in CHAINS.items():
        for k in (k for k in LENGTHS if k <= options.max_length):
            chain_row(name, make, k)
        print()
    print("residual program, gradient w.r.t. W1: the inlined function and gradient (d.expr), distinct nodes and links")
    print(f"{'L':>5} {'f nodes':>8} {'f links':>8} {'g nodes':>8} {'g links':>8} {'links/L':>8} {'printed':>8} "
          f"{'seconds':>8}")
    for layers in (n for n in LAYERS if n <= options.max_layers):
        residual_row(layers)


if __name__ == "__main__":
    main()
