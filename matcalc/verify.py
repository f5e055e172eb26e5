"""Stage 5c: prove a derivative right, entry by entry, with SymPy (imported lazily).

Each dimension symbol gets its own small size (2, 3, 4, ...). Every constant matrix gets exact
random rationals, the variable gets one SymPy symbol per entry; the function is built entry by
entry, `sympy.diff` is taken w.r.t. each entry, and the result is compared exactly with the
derivative evaluated on the same values. None of the engine's rules is involved in the oracle.

For a symmetric variable the entries are independent symbols and the expected gradient is
sym(G) = (G + G^T)/2 at a symmetric point: the gradient in the space of symmetric matrices.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any

from .evaluate import interpret
from .functions import FUNCTIONS
from .ir import Expr, Var, dimensions, variables


class SympyBackend:
    def __init__(self) -> None:
        import sympy

        self.sp = sympy

    def constant(self, value: Fraction, rows: int, cols: int) -> Any:
        return self.sp.Matrix(rows, cols, lambda i, j: self.sp.Rational(value.numerator, value.denominator))

    def identity(self, size: int) -> Any:
        return self.sp.eye(size)

    def matmul(self, a: Any, b: Any) -> Any:
        return a * b

    def scale(self, scalar: Any, a: Any) -> Any:
        return scalar[0, 0] * a

    def add(self, a: Any, b: Any) -> Any:
        return a + b

    def hadamard(self, a: Any, b: Any) -> Any:
        return a.multiply_elementwise(b)

    def divide(self, a: Any, b: Any) -> Any:
        return self.sp.Matrix(a.rows, a.cols, lambda i, j: a[i, j] / b[i, j])

    def transpose(self, a: Any) -> Any:
        return a.T

    def scalar_power(self, a: Any, p: Any) -> Any:
        return self.sp.Matrix([[a[0, 0] ** p[0, 0]]])

    def matrix_power(self, a: Any, k: int) -> Any:
        return a**k

    def elem_power(self, a: Any, p: Any) -> Any:
        return a.applyfunc(lambda v: v ** p[0, 0])

    def function(self, name: str, a: Any) -> Any:
        sp = self.sp
        M = sp.Matrix
        if name in _ELEMENTWISE:
            return a.applyfunc(_ELEMENTWISE[name](sp))
        if name == "sum":
            return M([[sum(a)]])
        if name == "norm1":
            return M([[sum(sp.Abs(v) for v in a)]])
        if name == "norm2":
            return M([[sp.sqrt(sum(v**2 for v in a))]])
        if name == "tr":
            return M([[a.trace()]])
        if name == "det":
            return M([[a.det(method="berkowitz")]])
        if name == "logdet":
            return M([[sp.log(a.det(method="berkowitz"))]])
        if name == "inv":
            return a.inv(method="ADJ") if a.rows <= 3 else a.inv()
        if name == "softmax":
            exps = a.applyfunc(sp.exp)
            total = sum(exps)
            return exps.applyfunc(lambda v: v / total)
        if name == "logsumexp":
            return M([[sp.log(sum(a.applyfunc(sp.exp)))]])
        if name == "diag":
            if a.shape == (1, 1):
                return a
            if a.cols == 1 or a.rows == 1:
                return sp.diag(*list(a))
            return M([[a[i, i]] for i in range(a.rows)])
        raise KeyError(name)


_ELEMENTWISE: dict[str, Any] = {
    "exp": lambda sp: sp.exp,
    "log": lambda sp: sp.log,
    "sin": lambda sp: sp.sin,
    "cos": lambda sp: sp.cos,
    "tan": lambda sp: sp.tan,
    "tanh": lambda sp: sp.tanh,
    "sigmoid": lambda sp: (lambda v: 1 / (1 + sp.exp(-v))),
    "relu": lambda sp: (lambda v: sp.Max(0, v)),
    "softplus": lambda sp: (lambda v: sp.log(1 + sp.exp(v))),
    "sqrt": lambda sp: sp.sqrt,
    "abs": lambda sp: sp.Abs,
    "sign": lambda sp: sp.sign,
    "step": lambda sp: (lambda v: sp.Heaviside(v, 0)),
    "arcsin": lambda sp: sp.asin,
    "arccos": lambda sp: sp.acos,
    "arctan": lambda sp: sp.atan,
}
assert {n for n, s in FUNCTIONS.items() if s.kind == "elementwise"} == set(_ELEMENTWISE)


@dataclass
class Mismatch:
    index: tuple[int, ...]
    expected: str
    got: str


@dataclass
class VerificationReport:
    """Truthy when every entry matches. `mismatches` lists the entries that differ."""

    ok: bool
    sizes: dict[str, int]
    entries: int
    mismatches: list[Mismatch] = field(default_factory=list)
    point: dict[str, Any] = field(default_factory=dict)
    numerically_only: int = 0  # entries equal to 40 digits that simplification could not prove

    def __bool__(self) -> bool:
        return self.ok

    def __str__(self) -> str:
        sizes = ", ".join(f"{k}={v}" for k, v in self.sizes.items()) or "as declared"
        if self.ok:
            extra = f" ({self.numerically_only} to 40 digits)" if self.numerically_only else ""
            return f"verified: all {self.entries} entries match SymPy exactly{extra} (sizes {sizes})"
        lines = [f"NOT verified: {len(self.mismatches)} of {self.entries} entries differ (sizes {sizes})"]
        for m in self.mismatches[:10]:
            lines.append(f"  entry {m.index}: expected {m.expected}, got {m.got}")
        if self.point:
            lines.append("  at the point " + "; ".join(f"{k} = {v}" for k, v in self.point.items()))
        return "\n".join(lines)


def concrete_sizes(exprs: list[Expr], descending: bool = False) -> dict[str, int]:
    """A different small size for each dimension symbol, in order of appearance: 2, 3, 4, ... (or reversed)."""
    dims = dimensions(exprs)
    sizes = [2 + index for index in range(len(dims))]
    return dict(zip(dims, reversed(sizes) if descending else sizes, strict=True))


def _random_rational(rng: random.Random, sp: Any) -> Any:
    numerator = rng.choice([n for n in range(-9, 10) if n])
    return sp.Rational(numerator, rng.randint(1, 4))


def _random_matrix(var: Var, rows: int, cols: int, rng: random.Random, sp: Any) -> Any:
    if var.symmetric:
        upper = {(i, j): _random_rational(rng, sp) for i in range(rows) for j in range(i, cols)}
        return sp.Matrix(rows, cols, lambda i, j: upper[(min(i, j), max(i, j))])
    return sp.Matrix(rows, cols, lambda i, j: _random_rational(rng, sp))


def _equal(a: Any, b: Any, sp: Any) -> tuple[bool, bool]:
    """(equal, proven exactly) for two SymPy numbers."""
    difference = a - b
    if difference == 0:
        return True, True
    for method in (sp.expand, sp.simplify):
        try:
            if method(difference) == 0:
                return True, True
        except (TypeError, ValueError, RecursionError):
            break
    value = sp.N(difference, 50)
    try:
        small = abs(complex(value)) < 1e-40
    except (TypeError, ValueError):
        return False, False
    return small, False


ATTEMPTS = 3


def _non_invertible_error() -> type[Exception]:
    try:
        from sympy.matrices.exceptions import NonInvertibleMatrixError
    except ImportError:  # SymPy < 1.13
        from sympy.matrices.common import NonInvertibleMatrixError  # type: ignore[no-redef]
    return NonInvertibleMatrixError


def verify_derivative(function: Expr, variable: Var, derivative: Expr, kind: str, layout: str = "numerator",
                      seed: int = 0) -> VerificationReport:
    """Check `derivative` of `function` w.r.t. `variable` elementwise against sympy.diff.

    A point where the function or the derivative is undefined (a singular matrix, a log of 0)
    proves nothing: other sizes and values are tried, and after ATTEMPTS the report says so.
    """
    for attempt in range(ATTEMPTS):
        try:
            report = _verify_at_point(function, variable, derivative, kind, layout, seed + attempt, attempt % 2 == 1)
        except (ZeroDivisionError, _non_invertible_error()):  # a singular matrix at this point
            continue
        if report is not None:
            return report
    sizes = concrete_sizes([function, derivative, variable])
    report = VerificationReport(False, sizes, 0)
    report.mismatches.append(Mismatch((), "a finite value", f"undefined values at {ATTEMPTS} random points"))
    return report


def _verify_at_point(function: Expr, variable: Var, derivative: Expr, kind: str, layout: str, seed: int,
                     descending: bool) -> VerificationReport | None:
    import sympy as sp

    backend = SympyBackend()
    rng = random.Random(seed)
    sizes = concrete_sizes([function, derivative, variable], descending)

    def size(d: Any) -> int:
        return d if isinstance(d, int) else sizes[d]

    rows, cols = size(variable.shape[0]), size(variable.shape[1])
    entries = sp.Matrix(rows, cols, lambda i, j: sp.Symbol(f"{variable.name}_{i}_{j}", real=True))
    point_matrix = _random_matrix(variable, rows, cols, rng, sp)
    point = {entries[i, j]: point_matrix[i, j] for i in range(rows) for j in range(cols)}

    values: dict[str, Any] = {}
    for name, var in sorted({**variables(function), **variables(derivative)}.items()):
        if name != variable.name:
            values[name] = _random_matrix(var, size(var.shape[0]), size(var.shape[1]), rng, sp)

    f = interpret(function, {**values, variable.name: entries}, sizes, backend)
    if kind == "hessian":
        gradient = [sp.diff(f[0, 0], entries[i, 0]) for i in range(rows)]
        expected = sp.Matrix(rows, rows, lambda i, j: sp.diff(gradient[i], entries[j, 0]))
    elif variable.shape == (1, 1):
        expected = f.applyfunc(lambda v: sp.diff(v, entries[0, 0]))
    elif function.shape == (1, 1):
        expected = sp.Matrix(rows, cols, lambda i, j: sp.diff(f[0, 0], entries[i, j]))
    else:
        expected = sp.Matrix(len(f), rows, lambda i, j: sp.diff(f[i], entries[j, 0]))  # f a column or a row
        if layout == "denominator":
            expected = expected.T
    expected = expected.subs(point)
    if variable.symmetric and function.shape == (1, 1) and kind != "hessian":
        expected = (expected + expected.T) / 2

    got = interpret(derivative, {**values, variable.name: point_matrix}, sizes, backend)
    undefined = (sp.zoo, sp.nan, sp.oo, -sp.oo)
    if any(value.has(*undefined) for value in (*expected, *got)):
        return None
    report = VerificationReport(True, sizes, expected.rows * expected.cols)
    if got.shape != expected.shape:
        report.ok = False
        report.mismatches.append(Mismatch((), f"shape {expected.shape}", f"shape {got.shape}"))
        return report
    for i in range(expected.rows):
        for j in range(expected.cols):
            equal, proven = _equal(expected[i, j], got[i, j], sp)
            if not equal:
                report.ok = False
                report.mismatches.append(Mismatch((i, j), str(expected[i, j]), str(got[i, j])))
            elif not proven:
                report.numerically_only += 1
    if not report.ok:
        report.point = {variable.name: point_matrix.tolist(), **{k: v.tolist() for k, v in values.items()}}
    return report
