"""Time against input size (issue 3): long inputs must cost time linear in their length.

Run: python benchmarks/scaling.py   (prints milliseconds and microseconds per byte for each size)
"""

from __future__ import annotations

import time
from collections.abc import Callable

import matcalc


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


SHAPES: dict[str, Callable[[int], str]] = {"sum of a_i^T x": long_sum, "product x^T A_1 ... A_k x": long_product,
                                           "sum of y_i^T log(softmax(W x))": long_softmax_loss}


def main() -> None:
    print(f"{'input':34} {'bytes':>8} {'ms':>8} {'µs/byte':>8}")
    for name, make in SHAPES.items():
        for size in (12_500, 25_000, 50_000, 100_000):
            text = make(size)
            times = []
            for _ in range(3):
                start = time.perf_counter()
                matcalc.diff(text, "x")
                times.append(time.perf_counter() - start)
            best = min(times)
            print(f"{name:34} {len(text):8,} {1000 * best:8.0f} {1e6 * best / len(text):8.1f}")
        print()


if __name__ == "__main__":
    main()
