"""Time against input size (issue 3): long inputs must cost time linear in their length.

Run: python benchmarks/scaling.py   (prints milliseconds and microseconds per byte for each size)
     python benchmarks/scaling.py --hessians 300   (and times the Hessians of 300 seeded random cases)
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]  # this checkout's matcalc, and the generator of the tests

from generate import random_cases  # noqa: E402

import matcalc  # noqa: E402
from matcalc.core import ir  # noqa: E402


def _repeated(term: Callable[[int], str], separator: str, size: int) -> str:
    """term(0), term(1), ... joined by separator, up to at least `size` characters."""
    parts, total = [], 0
    while total < size:
        parts.append(term(len(parts)))
        total += len(parts[-1]) + len(separator)
    return separator.join(parts)


def long_sum(size: int) -> str:
    return _repeated(lambda i: f"a{i}^T x", " + ", size)


def long_product(size: int) -> str:
    return "x^T " + _repeated(lambda i: f"A{i}", " ", size - 8) + " x"


def long_softmax_loss(size: int) -> str:
    return _repeated(lambda i: f"y{i}^T log(softmax(W x))", " + ", size)


def long_quotient(size: int) -> str:
    # the same scalar k times: a product of k factors that all hold the variable (issue 7)
    return _repeated(lambda i: "(norm2(vector(3) + (x + x) .* -x)^2)", " ./ ", size)


SHAPES: dict[str, tuple[Callable[[int], str], tuple[int, ...]]] = {
    "sum of a_i^T x": (long_sum, (12_500, 25_000, 50_000, 100_000)),
    "product x^T A_1 ... A_k x": (long_product, (12_500, 25_000, 50_000, 100_000)),
    "sum of y_i^T log(softmax(W x))": (long_softmax_loss, (12_500, 25_000, 50_000, 100_000)),
    # past about 5.6 kB the product rule would write more than 20,000 factors: the input is refused
    "s ./ s ./ ... ./ s": (long_quotient, (1_000, 2_000, 4_000, 5_600, 16_000)),
}


def _best_of_three(run: Callable[[], object]) -> tuple[float, str]:
    """The best time of three runs, and "refused" when the input is refused as too large."""
    times, outcome = [], ""
    for _ in range(3):
        start = time.perf_counter()
        try:
            run()
        except matcalc.UnsupportedError:
            outcome = "refused"
        times.append(time.perf_counter() - start)
    return min(times), outcome


def sizes() -> None:
    print(f"{'input':34} {'bytes':>8} {'ms':>8} {'µs/byte':>8}")
    for name, (make, lengths) in SHAPES.items():
        for size in lengths:
            text = make(size)
            best, outcome = _best_of_three(lambda text=text: matcalc.diff(text, "x"))
            print(f"{name:34} {len(text):8,} {1000 * best:8.0f} {1e6 * best / len(text):8.1f}  {outcome}")
        print()


def random_hessians(count: int, seed: int, depth: int, slowest: int = 8) -> None:
    """The Hessian of every scalar case of tests/generate.py w.r.t. each vector or scalar variable in it."""
    timed: list[tuple[float, str, str]] = []
    for case in random_cases(seed, count, max_depth=depth):
        f = matcalc.parse(case.text, where=case.where)
        if f.shape != ir.SCALAR:
            continue
        for var in ir.variables(f).values():
            if var.shape[1] != 1:
                continue
            start = time.perf_counter()
            with contextlib.suppress(matcalc.MatcalcError):  # a refusal takes time too
                matcalc.hessian(case.text, var.name, where=case.where)
            timed.append((time.perf_counter() - start, var.name, str(case)))
    timed.sort(reverse=True)
    total = sum(t for t, _, _ in timed)
    over = sum(t > 1 for t, _, _ in timed)
    print(f"random Hessians (seed {seed}, {count} cases of depth {depth}): {len(timed)} Hessians in {total:.1f} s, "
          f"{over} over 1 s, median {1000 * timed[len(timed) // 2][0]:.0f} ms")
    for seconds, name, text in timed[:slowest]:
        print(f"{1000 * seconds:9.0f} ms  d²/d{name}²  {text}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hessians", type=int, default=300, metavar="N",
                        help="random cases whose Hessians are timed (0: none)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random cases")
    parser.add_argument("--depth", type=int, default=4, help="nesting depth of the random cases")
    parser.add_argument("--no-sizes", action="store_true", help="only the random Hessians")
    options = parser.parse_args()
    if not options.no_sizes:
        sizes()
    if options.hessians:
        random_hessians(options.hessians, options.seed, options.depth)


if __name__ == "__main__":
    main()
