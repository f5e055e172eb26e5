"""Depth figures (issue 8): time and printed size of deep-network gradients. Run: python benchmarks/depth.py

For L = 1, 2, 4, ..., 1024 layers of h_k = tanh(W_k h_{k-1}), loss sum(h_L), the gradient w.r.t. W1:
- nested input `sum(tanh(WL ... tanh(W1 x)))` and program input `h1 = tanh(W1 x); ...; L = sum(hL)`;
- the time of parse + differentiate + print (median of a few runs), the printed size in characters and in
  tokens (a name counts one token, whatever its number of digits), each per layer;
and the same for the residual network h_k = h_{k-1} + tanh(W_k h_{k-1}) (a program), and the time of
all gradients W1 ... WL at once (`matcalc.grad`, one backward pass).
"""

from __future__ import annotations

import argparse
import re
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from networks import mlp_program, nested_mlp, residual_program

import matcalc

TOKEN = re.compile(r"[A-Za-z_][A-Za-z0-9_]*|\d+|\.\^|\.\*|\./|\^T|\S")


def timed(run: callable, repeats: int) -> tuple[float, object]:
    times, result = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        result = run()
        times.append(time.perf_counter() - start)
    return statistics.median(times), result


def row(label: str, layers: int, text: str, repeats: int) -> None:
    seconds, printed = timed(lambda: str(matcalc.diff(text, "W1")), repeats)
    tokens = len(TOKEN.findall(printed))
    print(f"{label:9s} {layers:5d} {seconds:9.4f} {len(printed):9d} {len(printed) / layers:9.1f} "
          f"{tokens:8d} {tokens / layers:8.1f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--max-layers", type=int, default=1024)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    sys.setrecursionlimit(1000)  # the default: nothing may depend on a raised limit
    depths = [2 ** k for k in range(11) if 2 ** k <= args.max_layers]
    print("gradient w.r.t. W1: seconds (parse + differentiate + print), printed chars and tokens, per layer")
    print(f"{'input':9s} {'L':>5s} {'seconds':>9s} {'chars':>9s} {'chars/L':>9s} {'tokens':>8s} {'tok/L':>8s}")
    for layers in depths:
        row("nested", layers, nested_mlp(layers), args.repeats)
    for layers in depths:
        row("program", layers, mlp_program(layers), args.repeats)
    for layers in [d for d in depths if d <= 256]:
        row("residual", layers, residual_program(layers), args.repeats)
    print("\nall gradients W1 ... WL at once (matcalc.grad, one backward pass, printed as one program)")
    for layers in [d for d in depths if d in (8, 64, 256, 1024)]:
        text = mlp_program(layers)
        names = [f"W{k}" for k in range(1, layers + 1)]
        seconds, _ = timed(lambda text=text, names=names: str(matcalc.grad(text, names)), args.repeats)
        print(f"program   {layers:5d} {seconds:9.4f} s")


if __name__ == "__main__":
    main()
