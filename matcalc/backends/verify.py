"""Stage 5c: prove a derivative right, entry by entry, with SymPy (imported lazily).

The proof runs at two assignments of sizes (each dimension symbol gets two different sizes, and
different symbols different sizes), because a result proven at one size proves nothing about the size.
At each, every constant matrix gets exact random rationals and the variable an exact random point X0.
SymPy differentiates the function along lines through X0 (d/dt f(X0 + t E_ij) at t = 0, a single
symbol at a time, so the cost stays small), and each entry is compared with the derivative evaluated
exactly at X0: numerically to 60 digits, then exactly where the difference expands to 0. None of the
engine's rules is involved in the oracle. A time limit bounds the whole proof: past it the report is
"undecided", never "verified".

For a symmetric variable the expected gradient is sym(G) = (G + G^T)/2 at a symmetric point, G taken
entry by entry: the gradient in the space of symmetric matrices.
"""

from __future__ import annotations

import functools
import itertools
import random
import signal
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any

from ..calculus.spec import DerivativeSpec, Kind
from ..core import ir
from ..core.constants import CONSTANTS
from ..core.functions import FUNCTIONS
from ..core.ir import Expr, Var, dimensions, variables
from .interpret import interpret


class SympyBackend:
    def __init__(self) -> None:
        import sympy

        self.sp = sympy

    def constant(self, value: Fraction, rows: int, cols: int) -> Any:
        return self.sp.Matrix(rows, cols, lambda i, j: self.sp.Rational(value.numerator, value.denominator))

    def named_constant(self, name: str) -> Any:
        return self.sp.Matrix([[CONSTANTS[name].sympy(self.sp)]])

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

    def adjugate(self, a: Any) -> Any:
        return a.adjugate()

    def kron(self, a: Any, b: Any) -> Any:
        return self.sp.kronecker_product(a, b)

    def scale_rows(self, v: Any, a: Any) -> Any:
        return self.sp.diag(*v) * a

    def scale_columns(self, a: Any, v: Any) -> Any:
        return a * self.sp.diag(*v)

    def commutation(self, rows: int, cols: int) -> Any:
        from .interpret import commutation_permutation

        return self.sp.eye(rows * cols).extract(commutation_permutation(rows, cols), list(range(rows * cols)))

    def function(self, name: str, a: Any) -> Any:
        if name == "inv" and a.rows <= 3 and not a.free_symbols:
            # the meaning's own formula (adjugate / det) on exact numbers, with the determinant's zero test by its
            # value to 40 digits: SymPy's inv tests it by simplify, seconds on a det of tanh values
            det = a.det(method="berkowitz")
            try:
                if any(_significant(part, self.sp) for part in _parts(det, self.sp)):
                    return a.adjugate() / det
            except _Undefined:
                pass  # a value evalf cannot resolve: the meaning decides, as before
        return FUNCTIONS[name].sympy(self.sp, a)  # every function of the IR has its SymPy meaning

    def function_of_columns(self, name: str, a: Any) -> Any:
        return self.sp.Matrix.hstack(*(self.function(name, a[:, j]) for j in range(a.cols)))

    def spd_function(self, name: str, a: Any) -> Any:
        return self.function(name, a)  # exact: the definition itself, no factorisation needed

    def spd_solve(self, a: Any, b: Any) -> Any:
        return self.function("inv", a) * b


@dataclass(frozen=True)
class Dual:
    """A matrix on a line through the point, to first order: its value at t = 0 and its tangent d/dt there."""

    value: Any
    tangent: Any


class DualBackend:
    """Exact forward mode: each value is a Dual, X0 + t E and what the operations make of it, so that d/dt of the
    whole function at t = 0 comes from products of exact matrices (rationals, and the values of transcendental
    functions at rationals), never from SymPy expressions in t grown through the whole function. The operations'
    tangents are the definitions of first-order arithmetic (the product's (a + t a')(b + t b')); a function of the
    language gets its value from its SymPy meaning and its tangent by SymPy differentiating that meaning along
    the line, f(V + t D) in t at 0, for that one call: SymPy stays the oracle of every function's meaning."""

    def __init__(self) -> None:
        import sympy

        self.sp = sympy
        self.exact = SympyBackend()
        self.t = sympy.Symbol(T, real=True)
        # The values are the same along every direction (only tangents differ): each is computed once per point
        # and the same object returned, keyed by the operation and its operands' identities (kept alive here,
        # so an id is never reused), so that the next operation's key matches too; a miss only recomputes.
        self._values: dict[tuple[Any, ...], tuple[Any, tuple[Any, ...]]] = {}

    def _once(self, operation: str, operands: tuple[Any, ...], compute: Callable[[], Any]) -> Any:
        key = (operation, *map(id, operands))
        if key not in self._values:
            self._values[key] = (compute(), operands)
        return self._values[key][0]

    def fixed(self, value: Any) -> Dual:
        return Dual(value, self.sp.zeros(value.rows, value.cols))

    def constant(self, value: Fraction, rows: int, cols: int) -> Dual:
        return self.fixed(self._once(f"constant {value} {rows} {cols}", (),
                                     lambda: self.exact.constant(value, rows, cols)))

    def named_constant(self, name: str) -> Dual:
        return self.fixed(self.exact.named_constant(name))

    def identity(self, size: int) -> Dual:
        return self.fixed(self._once(f"identity {size}", (), lambda: self.sp.eye(size)))

    def commutation(self, rows: int, cols: int) -> Dual:
        return self.fixed(self.exact.commutation(rows, cols))

    def matmul(self, a: Dual, b: Dual) -> Dual:
        return Dual(self._once("matmul", (a.value, b.value), lambda: a.value * b.value),
                    a.value * b.tangent + a.tangent * b.value)

    def scale(self, scalar: Dual, a: Dual) -> Dual:
        s, ds = scalar.value[0, 0], scalar.tangent[0, 0]
        return Dual(self._once("scale", (scalar.value, a.value), lambda: s * a.value), s * a.tangent + ds * a.value)

    def add(self, a: Dual, b: Dual) -> Dual:
        return Dual(self._once("add", (a.value, b.value), lambda: a.value + b.value), a.tangent + b.tangent)

    def hadamard(self, a: Dual, b: Dual) -> Dual:
        return Dual(self._once("hadamard", (a.value, b.value), lambda: a.value.multiply_elementwise(b.value)),
                    a.value.multiply_elementwise(b.tangent) + a.tangent.multiply_elementwise(b.value))

    def divide(self, a: Dual, b: Dual) -> Dual:
        sp = self.sp
        value = self._once("divide", (a.value, b.value), lambda: self.exact.divide(a.value, b.value))
        return Dual(value, sp.Matrix(value.rows, value.cols, lambda i, j: (
            a.tangent[i, j] - value[i, j] * b.tangent[i, j]) / b.value[i, j]))

    def transpose(self, a: Dual) -> Dual:
        return Dual(self._once("transpose", (a.value,), lambda: a.value.T), a.tangent.T)

    def scalar_power(self, a: Dual, p: Dual) -> Dual:
        return self.elem_power(a, p)  # a 1 x 1 a

    def elem_power(self, a: Dual, p: Dual) -> Dual:
        """a.^p (a scalar p) along the line, entry by entry, differentiated by SymPy."""
        sp, t = self.sp, self.t
        exponent, d_exponent = p.value[0, 0], p.tangent[0, 0]
        value = self._once("power", (a.value, p.value), lambda: a.value.applyfunc(lambda v: v ** exponent))
        tangent = sp.Matrix(a.value.rows, a.value.cols, lambda i, j: _tangent_at_zero(
            (a.value[i, j] + t * a.tangent[i, j]) ** (exponent + t * d_exponent), t, sp)
            if a.tangent[i, j] != 0 or d_exponent != 0 else 0)
        return Dual(value, tangent)

    def matrix_power(self, a: Dual, k: int) -> Dual:
        if k < 0:
            a, k = self.function("inv", a), -k
        result = self.identity(a.value.rows)
        for _ in range(k):
            result = self.matmul(result, a)
        return result

    def adjugate(self, a: Dual) -> Dual:
        return self._along(a, lambda m: m.adjugate())

    def kron(self, a: Dual, b: Dual) -> Dual:
        kron = self.sp.kronecker_product
        return Dual(kron(a.value, b.value), kron(a.value, b.tangent) + kron(a.tangent, b.value))

    def scale_rows(self, v: Dual, a: Dual) -> Dual:
        return self.matmul(self._diagonal(v), a)

    def scale_columns(self, a: Dual, v: Dual) -> Dual:
        return self.matmul(a, self._diagonal(v))

    def function(self, name: str, a: Dual) -> Dual:
        kind = FUNCTIONS[name].kind
        if kind == "elementwise":
            return self._elementwise(name, a)
        if kind != "square" or a.value.rows <= SYMBOLIC_SQUARE:
            return self._by_partials(name, a)
        # det, inv, logdet of a larger matrix: their meanings on a matrix of symbols grow factorially with its size
        return self._along(a, lambda m: self.exact.function(name, m))

    def _elementwise(self, name: str, a: Dual) -> Dual:
        """f(V) and f'(V) .* D, f' what SymPy makes of the derivative of f's meaning on one entry (once per f)."""
        sp = self.sp
        value = self._once(f"function {name}", (a.value,), lambda: self.exact.function(name, a.value))
        if _written_zero(a.tangent):
            return self.fixed(value)
        u, meaning, slope, kinked = _entry_derivative(name, sp)

        def tangent(i: int, j: int) -> Any:
            direction = a.tangent[i, j]
            if direction == 0:
                return sp.Integer(0)
            if kinked:  # relu, abs, step: a point on the kink proves nothing
                _refuse_kinks(meaning.subs(u, a.value[i, j] + self.t * direction), [self.t], sp)
            return _tangent_value(slope.subs(u, a.value[i, j]), sp) * direction

        return Dual(value, sp.Matrix(value.rows, value.cols, tangent))

    def function_of_columns(self, name: str, a: Dual) -> Dual:
        columns = [self.function(name, Dual(a.value[:, j], a.tangent[:, j])) for j in range(a.value.cols)]
        hstack = self.sp.Matrix.hstack
        return Dual(hstack(*(c.value for c in columns)), hstack(*(c.tangent for c in columns)))

    def _by_partials(self, name: str, a: Dual) -> Dual:
        """f(V) and its tangent Σ_k ∂f/∂v_k (V) D_k, the partials SymPy's own, of f's meaning on a matrix of
        symbols (once per function and size): differentiated along the line through the exact values instead,
        SymPy asks its assumptions about every exact entry (seconds for one sum of tanh values)."""
        value = self._once(f"function {name}", (a.value,), lambda: self.exact.function(name, a.value))
        if _written_zero(a.tangent):
            return self.fixed(value)
        partials = _meaning_partials(name, a.value.rows, a.value.cols, self.sp)
        if partials is None:  # a kink (norm1's abs): along the line, where a point on it proves nothing
            return self._along(a, lambda m: self.exact.function(name, m))
        symbols, rows = partials
        at = dict(zip(symbols, a.value, strict=True))
        moved = [(k, d) for k, d in enumerate(a.tangent) if d != 0]
        tangent = [_tangent_value(self.sp.Add(*(row[k].xreplace(at) * d for k, d in moved if row[k] != 0)), self.sp)
                   for row in rows]
        return Dual(value, self.sp.Matrix(value.rows, value.cols, tangent))

    def spd_function(self, name: str, a: Dual) -> Dual:
        return self.function(name, a)

    def spd_solve(self, a: Dual, b: Dual) -> Dual:
        return self.matmul(self.function("inv", a), b)

    def _diagonal(self, v: Dual) -> Dual:
        return Dual(self.sp.diag(*v.value), self.sp.diag(*v.tangent))

    def _along(self, a: Dual, meaning: Callable[[Any], Any]) -> Dual:
        """meaning(a) and its tangent: SymPy differentiates meaning(V + t D) in t at 0, for this one call."""
        value = meaning(a.value)
        if _written_zero(a.tangent):
            return self.fixed(value)
        sp, t = self.sp, self.t
        on_line = meaning(a.value + t * a.tangent)
        tangent = on_line.applyfunc(lambda entry: _tangent_at_zero(entry, t, sp))
        return Dual(value, tangent)


def _written_zero(m: Any) -> bool:
    """Whether every entry is written as 0: a shortcut only, so a zero SymPy cannot see at a glance may take the
    long way (is_zero_matrix would ask SymPy's assumptions about every exact entry, seconds per proof)."""
    return all(entry == 0 for entry in m)


def _has_kink(meaning: Any, sp: Any) -> bool:
    """Whether a SymPy meaning holds a non-smooth part (relu's Heaviside, abs, sign, a max, a piecewise form)."""
    return bool(meaning.atoms(sp.Heaviside, sp.DiracDelta, sp.Abs, sp.sign, sp.Max, sp.Min, sp.Piecewise))


SYMBOLIC_SQUARE = 3  # det, inv and logdet take their partials on symbols up to this size (3×3: 6 terms in det)
_MEANING_PARTIALS: dict[tuple[str, int, int], tuple[list[Any], list[list[Any]]] | None] = {}


def _meaning_partials(name: str, rows: int, cols: int, sp: Any) -> tuple[list[Any], list[list[Any]]] | None:
    """(the symbols v_k of a rows×cols matrix, row-major; for each entry of f's meaning on it, its partials
    ∂f/∂v_k), or None where the meaning has a kink."""
    key = (name, rows, cols)
    if key not in _MEANING_PARTIALS:
        symbols = [sp.Symbol(f"v{k}", real=True) for k in range(rows * cols)]
        meaning = SympyBackend().function(name, sp.Matrix(rows, cols, symbols))
        kinked = any(_has_kink(entry, sp) for entry in meaning)
        _MEANING_PARTIALS[key] = None if kinked else (symbols, [[sp.diff(entry, v) for v in symbols]
                                                                for entry in meaning])
    return _MEANING_PARTIALS[key]


_ENTRY_DERIVATIVES: dict[str, tuple[Any, Any, Any, bool]] = {}


def _entry_derivative(name: str, sp: Any) -> tuple[Any, Any, Any, bool]:
    """(u, f(u), f'(u), whether f has a kink) for an element-wise f, from its SymPy meaning on one entry."""
    if name not in _ENTRY_DERIVATIVES:
        u = sp.Symbol("u", real=True)
        meaning = FUNCTIONS[name].sympy(sp, sp.Matrix([[u]]))[0, 0]
        kinked = _has_kink(meaning, sp)
        _ENTRY_DERIVATIVES[name] = (u, meaning, sp.diff(meaning, u), kinked)
    return _ENTRY_DERIVATIVES[name]


def _tangent_at_zero(entry: Any, t: Any, sp: Any) -> Any:
    """d/dt entry at t = 0; a kink at the point (relu at 0) or what SymPy cannot differentiate proves nothing."""
    if not entry.has(t):
        return sp.Integer(0)
    _refuse_kinks(entry, [t], sp)
    return _tangent_value(sp.diff(entry, t).subs(t, 0), sp)


def _tangent_value(value: Any, sp: Any) -> Any:
    if value.has(sp.DiracDelta):  # the derivative of a step: 0 away from its kink, undefined at it
        value = value.replace(lambda e: isinstance(e, sp.DiracDelta), _delta_away_from_zero)
    if value.has(sp.Derivative, sp.Subs):
        raise _Undefined
    return value


class PreciseBackend:
    """Every operation over mpmath numbers of the working precision (mpmath.mp.dps), each result perturbed by a
    random relative amount of the size of its last digits (stochastic arithmetic): two runs with other
    perturbations differ by about the error their roundings carry, so a cancellation (1 - tanh(60)^2) shows as
    disagreement instead of passing for digits. A program is evaluated line by line, each node once (interpret
    walks the DAG): a network costs what its definitions cost, where one exact SymPy value of the inlined network
    grows exponentially with its depth.

    SymPy stays the oracle of every function's meaning: an element-wise function is its SymPy meaning on one entry,
    compiled to mpmath (lambdify); any other is its SymPy meaning applied to the matrix of Floats. A non-smooth
    function (relu, abs, sign) applied at or next to its kink makes the point prove nothing."""

    def __init__(self, rng: random.Random, kink_distance: Any = 0) -> None:
        import mpmath
        import sympy

        self.mp, self.sp, self.rng = mpmath, sympy, rng
        self.noise = mpmath.mpf(10) ** (3 - mpmath.mp.dps)
        # the largest value any operation rounded: what cancels (y - y) leaves errors of its size, not of the result's
        self.largest_rounded = mpmath.mpf(0)
        self.kink_distance = kink_distance

    def _perturbed(self, x: Any) -> Any:
        if isinstance(x, self.mp.mpc):
            if abs(x.imag) > abs(x.real) * self.noise * 100:
                raise _Undefined  # a log of a negative number: this point proves nothing
            x = x.real
        if not self.mp.isfinite(x):
            raise _Undefined  # a pole, an overflow: this point proves nothing
        self.largest_rounded = max(self.largest_rounded, abs(x))
        return x * (1 + self.noise * self.rng.uniform(-1, 1))

    def _each(self, a: Any, f: Any) -> Any:
        out = self.mp.matrix(a.rows, a.cols)
        for i in range(a.rows):
            for j in range(a.cols):
                out[i, j] = self._perturbed(f(a[i, j]))
        return out

    def _pairs(self, a: Any, b: Any, f: Any) -> Any:
        out = self.mp.matrix(a.rows, a.cols)
        for i in range(a.rows):
            for j in range(a.cols):
                out[i, j] = self._perturbed(f(a[i, j], b[i, j]))
        return out

    def settle(self, a: Any) -> Any:
        return self._each(a, lambda v: v)

    def from_sympy(self, m: Any) -> Any:
        out = self.mp.matrix(m.rows, m.cols)
        for i in range(m.rows):
            for j in range(m.cols):
                out[i, j] = self.mp.mpf(m[i, j].p) / m[i, j].q if m[i, j].is_Rational else self.mp.mpf(m[i, j])
        return out

    def to_sympy(self, a: Any) -> Any:
        sp = self.sp
        return sp.Matrix(a.rows, a.cols, lambda i, j: sp.Float(a[i, j], self.mp.mp.dps))

    def constant(self, value: Fraction, rows: int, cols: int) -> Any:
        return self.mp.matrix(rows, cols) + self.mp.mpf(value.numerator) / value.denominator

    def named_constant(self, name: str) -> Any:
        return self.mp.matrix([[self.mp.mpf(CONSTANTS[name].sympy(self.sp).evalf(self.mp.mp.dps))]])

    def identity(self, size: int) -> Any:
        return self.mp.eye(size)

    def matmul(self, a: Any, b: Any) -> Any:
        return self.settle(a * b)

    def scale(self, scalar: Any, a: Any) -> Any:
        return self.settle(scalar[0, 0] * a)

    def add(self, a: Any, b: Any) -> Any:
        return self.settle(a + b)

    def hadamard(self, a: Any, b: Any) -> Any:
        return self._pairs(a, b, lambda x, y: x * y)

    def divide(self, a: Any, b: Any) -> Any:
        return self._pairs(a, b, lambda x, y: x / y)

    def transpose(self, a: Any) -> Any:
        return a.T

    def scalar_power(self, a: Any, p: Any) -> Any:
        return self._each(a, lambda x: self.mp.power(x, p[0, 0]))

    def matrix_power(self, a: Any, k: int) -> Any:
        return self.settle(a**k)

    def elem_power(self, a: Any, p: Any) -> Any:
        return self._each(a, lambda x: self.mp.power(x, p[0, 0]))

    def adjugate(self, a: Any) -> Any:
        return self.settle(self.from_sympy(self.to_sympy(a).adjugate()))

    def kron(self, a: Any, b: Any) -> Any:
        out = self.mp.matrix(a.rows * b.rows, a.cols * b.cols)
        for i in range(out.rows):
            for j in range(out.cols):
                out[i, j] = a[i // b.rows, j // b.cols] * b[i % b.rows, j % b.cols]
        return self.settle(out)

    def scale_rows(self, v: Any, a: Any) -> Any:
        return self.settle(self.mp.diag([v[i, 0] for i in range(v.rows)]) * a)

    def scale_columns(self, a: Any, v: Any) -> Any:
        return self.settle(a * self.mp.diag([v[i, 0] for i in range(v.rows)]))

    def commutation(self, rows: int, cols: int) -> Any:
        from .interpret import commutation_permutation

        out = self.mp.matrix(rows * cols, rows * cols)
        for i, j in enumerate(commutation_permutation(rows, cols)):
            out[i, j] = 1
        return out

    def function(self, name: str, a: Any) -> Any:
        if _is_non_smooth(name) and FUNCTIONS[name].kind == "vector":
            entries = sorted(a[i, j] for i in range(a.rows) for j in range(a.cols))
            if any(b - c <= self.kink_distance for c, b in itertools.pairwise(entries)):
                raise _Undefined  # at or within a step of a kink of max: two entries (nearly) tie
        elif _is_non_smooth(name) and any(abs(a[i, j]) <= self.kink_distance
                                          for i in range(a.rows) for j in range(a.cols)):
            raise _Undefined  # at or within a step of the kink (at 0) of relu, abs, sign, step, norm1
        if FUNCTIONS[name].kind == "elementwise":
            return self._each(a, _entrywise(name))
        compiled = _compiled(name, a.rows, a.cols)
        if compiled is not None:
            out = compiled(*(a[i, j] for j in range(a.cols) for i in range(a.rows)))
            return self.settle(self.mp.matrix(out if isinstance(out, list) else [[out]]))
        value = FUNCTIONS[name].sympy(self.sp, self.to_sympy(a)).evalf(self.mp.mp.dps)
        if any(not entry.is_Float and not entry.is_Rational for entry in value):
            raise _Undefined  # complex, or not a number: this point proves nothing
        return self.settle(self.from_sympy(value))

    def function_of_columns(self, name: str, a: Any) -> Any:
        columns = [self.function(name, a.column(j)) for j in range(a.cols)]
        out = self.mp.matrix(columns[0].rows, a.cols)
        for j, column in enumerate(columns):
            for i in range(column.rows):
                out[i, j] = column[i, 0]
        return out

    def spd_function(self, name: str, a: Any) -> Any:
        return self.function(name, a)  # at the working precision, as any other function

    def spd_solve(self, a: Any, b: Any) -> Any:
        return self.matmul(self.function("inv", a), b)


_ENTRYWISE: dict[str, Any] = {}
_COMPILED: dict[tuple[str, int, int], Any] = {}
_LINEAR_SIZE: dict[tuple[str, str], bool] = {}


def _compiled(name: str, rows: int, cols: int) -> Any:
    """A function's SymPy meaning on a matrix of symbols of this shape, compiled to mpmath once; None for a
    function whose meaning grows faster than its argument (det, inv: SymPy computes those on the numbers)."""
    import sympy as sp

    def meaning(r: int, c: int) -> Any:
        entries = sp.symbols(f"u:{r * c}", real=True)
        return entries, FUNCTIONS[name].sympy(sp, sp.Matrix(c, r, entries).T)  # column-major, as vec

    shape = "matrix" if rows > 1 and cols > 1 else "column" if cols == 1 else "row"
    if (name, shape) not in _LINEAR_SIZE:
        try:
            small, larger = (meaning(2, 2)[1], meaning(3, 3)[1]) if shape == "matrix" else \
                (meaning(2, 1)[1], meaning(4, 1)[1]) if shape == "column" else (meaning(1, 2)[1], meaning(1, 4)[1])
            # a vector's meaning may grow with the square of its length (softmax: each entry divides by the sum
            # of all, 4x from 2 to 4 entries): cheap at the sizes proofs use, and far cheaper compiled than
            # evaluated by SymPy; a matrix's may not (det and inv grow factorially)
            grows = sp.count_ops(list(larger)) <= (3 if shape == "matrix" else 5) * max(sp.count_ops(list(small)), 1)
        except (ValueError, TypeError):
            grows = False
        _LINEAR_SIZE[name, shape] = grows
    if not _LINEAR_SIZE[name, shape]:
        return None
    key = (name, rows, cols)
    if key not in _COMPILED:
        entries, value = meaning(rows, cols)
        _COMPILED[key] = sp.lambdify(entries, value.tolist(), "mpmath", cse=True)  # softmax's sum once
    return _COMPILED[key]


def _entrywise(name: str) -> Any:
    """An element-wise function's SymPy meaning on one entry, compiled to mpmath once."""
    if name not in _ENTRYWISE:
        import sympy as sp

        u = sp.Symbol("u", real=True)
        _ENTRYWISE[name] = sp.lambdify(u, FUNCTIONS[name].sympy(sp, sp.Matrix([[u]]))[0, 0], "mpmath")
    return _ENTRYWISE[name]


_NON_SMOOTH: dict[str, bool] = {}


def _is_non_smooth(name: str) -> bool:
    """Whether a function's SymPy meaning has a kink (Heaviside, Max, Abs, sign): decided once per function."""
    if name not in _NON_SMOOTH:
        import sympy as sp

        try:
            meaning = FUNCTIONS[name].sympy(sp, sp.Matrix(2, 2, sp.symbols("u:4", real=True)))
        except (ValueError, TypeError):  # a function of a vector only: try one
            meaning = FUNCTIONS[name].sympy(sp, sp.Matrix(2, 1, sp.symbols("u:2", real=True)))
        _NON_SMOOTH[name] = any(entry.has(sp.Heaviside, sp.Max, sp.Min, sp.Abs, sp.sign, sp.Piecewise)
                                for entry in meaning)
    return _NON_SMOOTH[name]


def _refuse_kinks(e: Any, symbols: list[Any], sp: Any) -> None:
    """A point on a kink of a non-smooth function (relu at 0, abs at 0, a max of two equal values) proves
    nothing: the one-sided derivatives differ there, and SymPy's Heaviside(0) = 1/2 is not matcalc's convention."""
    at_zero = dict.fromkeys(symbols, 0)
    for atom in e.atoms(sp.Heaviside, sp.DiracDelta, sp.Abs, sp.sign, sp.Max, sp.Min):
        if not any(atom.has(x) for x in symbols):
            continue
        if isinstance(atom, sp.Max | sp.Min):
            values = [arg.subs(at_zero) for arg in atom.args]
            if any(a - b == 0 for i, a in enumerate(values) for b in values[i + 1 :]):
                raise _Undefined
        elif atom.args[0].subs(at_zero) == 0:
            raise _Undefined


@dataclass
class Mismatch:
    index: tuple[int, ...]
    expected: str
    got: str


@dataclass
class VerificationReport:
    """Truthy when every entry matches at every size tried. `mismatches` lists the entries that differ;
    `undecided` says why nothing could be decided (a time limit, or no point where the values are defined)."""

    ok: bool
    sizes: list[dict[str, int]]
    entries: int
    mismatches: list[Mismatch] = field(default_factory=list)
    point: dict[str, Any] = field(default_factory=dict)
    numerically_only: int = 0  # entries equal to 40 digits whose difference did not expand to 0
    undecided: str = ""
    directions: int = 0  # where a large derivative was compared along random directions: how many
    method: str = ""  # how it was proven: "exact" (SymPy values) or "lines" (line by line, high precision)

    def __bool__(self) -> bool:
        return self.ok

    def to_json(self) -> dict[str, Any]:
        """The report as JSON values (check --json): what was compared, how, at which sizes, and the
        counterexample's entries and point, each exact number as its text."""
        compared = self.entries + self.directions
        return {
            "method": self.method or None,
            "entries": self.entries,
            "directions": self.directions,
            "exactly": compared - self.numerically_only if self.ok else None,
            "to_digits": self.numerically_only if self.ok else None,
            "digits": NUMERIC_DIGITS if self.ok and self.numerically_only else None,
            "sizes": [dict(sizes) for sizes in self.sizes],
            "undecided": self.undecided or None,
            "mismatches": [{"entry": list(m.index), "expected": m.expected, "got": m.got} for m in self.mismatches],
            "point": {name: [[str(entry) for entry in row] for row in value] for name, value in self.point.items()},
        }

    def _sizes_text(self) -> str:
        texts = [", ".join(f"{k}={v}" for k, v in sizes.items()) for sizes in self.sizes]
        return "; ".join(t for t in texts if t) or "as declared"

    def __str__(self) -> str:
        sizes = self._sizes_text()
        if self.ok:
            exact = self.entries + self.directions - self.numerically_only
            how = "exactly" if not self.numerically_only else "to 40 digits" if not exact else \
                f"({exact} exactly, {self.numerically_only} to 40 digits)"
            compared = [f"{self.entries} entries"] if self.entries or not self.directions else []
            if self.directions:  # a large variable, checked along random directions
                compared.append(f"{self.directions} derivatives along random directions")
            return f"verified: all {' and '.join(compared)} match SymPy {how} (sizes {sizes})"
        if self.undecided:
            return f"undecided: {self.undecided} (sizes {sizes})"
        lines = [f"NOT verified: {len(self.mismatches)} of {self.entries} entries differ (sizes {sizes})"]
        for m in self.mismatches[:10]:
            lines.append(f"  entry {m.index}: expected {m.expected}, got {m.got}")
        if self.point:
            lines.append("  at the point " + "; ".join(f"{k} = {v}" for k, v in self.point.items()))
        return "\n".join(lines)

    def __repr__(self) -> str:
        # the report itself, as print() shows it, instead of a dump of every field
        return str(self)

    def _repr_markdown_(self) -> str:
        """Jupyter: the verdict in bold, then the differing entries and the point as a code block."""
        head, _, tail = str(self).partition("\n")
        verdict, _, rest = head.partition(": ")
        return f"**{verdict}**: {rest}" + (f"\n\n```\n{tail}\n```" if tail else "")


def concrete_sizes(exprs: list[Expr]) -> dict[str, int]:
    """A different small size for each dimension symbol, in order of appearance: 2, 3, 4, ..."""
    return {d: 2 + i for i, d in enumerate(dimensions(exprs))}


def size_assignments(exprs: list[Expr]) -> list[dict[str, int]]:
    """Two assignments of sizes: within each, different symbols get different sizes; across them, every
    symbol gets two different sizes, and so do their differences and products (2, 3, 4, ... then 3, 5, 7, ...).
    A result proven at one size proves nothing about the size (tr(I) is 2 at n = 2)."""
    first = concrete_sizes(exprs)
    if not first:
        return [{}]
    return [first, {d: 2 * size - 1 for d, size in first.items()}]


DEFAULT_TIMEOUT = 30.0  # seconds; check and verify report "undecided" past it, never hang
NUMERIC_DIGITS = 40  # an entry not proven exactly is equal to this many significant digits (TOLERANCE)
DIGITS = 60  # every entry is compared numerically to this many digits before any exact proof
PROOF_SECONDS = 0.25  # the budget of the exact proof of one entry, past which it counts as equal to 40 digits
PROOF_OPS = 400  # differences larger than this are not put over a common denominator


@dataclass
class Progress:
    """Where a proof stands, for a progress display (verify(progress=...)): the assignment of sizes (which of how
    many), the point tried at it, and how many of the current step's items (entries of the derivative along lines,
    comparisons of entries, random directions) are done."""

    sizes: dict[str, int]
    assignment: int  # 1-based
    assignments: int
    point: int = 1  # 1-based: the random point tried at these sizes
    step: str = "entries"  # what is counted: "entries", "comparisons", "directions"
    done: int = 0
    total: int = 0
    digits: int = 0  # line by line: the working precision

    def __str__(self) -> str:
        sizes = ", ".join(f"{k}={v}" for k, v in self.sizes.items()) or "as declared"
        at = f"sizes {sizes} ({self.assignment} of {self.assignments}), point {self.point}"
        if self.digits:
            at += f", {self.digits} digits"
        return f"{at}: {self.step} {self.done} of {self.total}" if self.total else at


ProgressCallback = Callable[[Progress], None]


class VerificationTimeout(Exception):
    """The time limit of a verification ran out."""


class _StepTimeout(Exception):
    """The time budget of one optional step (an exact proof of one entry) ran out: the step is given up."""


class _Deadline:
    """A time limit, checked between steps and, in the main thread, enforced by an alarm inside SymPy calls.

    `step(seconds)` gives one optional step a shorter budget: past it the step raises _StepTimeout and the
    proof goes on without it; past the whole limit, VerificationTimeout ends the proof.
    """

    def __init__(self, seconds: float, progress: ProgressCallback | None = None) -> None:
        self.seconds = seconds
        self.end = time.monotonic() + seconds
        self.alarm = False  # whether an alarm enforces the limit (the main thread only)
        self.step_end: float | None = None
        # once an exact normal form has run out of its budget, the entries after it (alike, and no smaller) would
        # too: they are compared to 40 digits without trying, so a proof costs its evaluations, not budgets
        self.exact_exhausted = False
        # the progress display rides along with the time limit: every step that checks the time is worth reporting
        self.callback = progress
        self.state = Progress({}, 1, 1)

    def report(self, **changes: Any) -> None:
        """Update where the proof stands and tell the callback, if any (never from inside an alarm)."""
        if self.callback is None:
            return
        for name, value in changes.items():
            setattr(self.state, name, value)
        self.callback(self.state)

    def check(self) -> None:
        if time.monotonic() > self.end:
            raise VerificationTimeout

    def _arm(self, end: float) -> None:
        signal.setitimer(signal.ITIMER_REAL, max(end - time.monotonic(), 0.001))

    def _expire(self, signum: int, frame: Any) -> None:
        if self.step_end is not None and time.monotonic() < self.end:
            raise _StepTimeout
        raise VerificationTimeout

    @contextmanager
    def enforced(self) -> Iterator[None]:
        usable = threading.current_thread() is threading.main_thread() and hasattr(signal, "setitimer") \
            and signal.getsignal(signal.SIGALRM) in (signal.SIG_DFL, signal.SIG_IGN, None)
        if not usable:
            yield
            return
        previous = signal.signal(signal.SIGALRM, self._expire)
        self.alarm = True
        self._arm(self.end)
        try:
            yield
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, previous)
            self.alarm = False

    @contextmanager
    def step(self, seconds: float) -> Iterator[None]:
        if not self.alarm:
            yield
            return
        self.step_end = min(self.end, time.monotonic() + seconds)
        self._arm(self.step_end)
        try:
            yield
        finally:
            self.step_end = None
            self._arm(self.end)


def _non_invertible_error() -> type[Exception]:
    try:
        from sympy.matrices.exceptions import NonInvertibleMatrixError
    except ImportError:  # SymPy < 1.13
        from sympy.matrices.common import NonInvertibleMatrixError  # type: ignore[no-redef]
    return NonInvertibleMatrixError


class _Undefined(Exception):
    """The function or the derivative is undefined at this point (a singular matrix, a log of a negative)."""


Method = str  # "exact": one SymPy value per entry, proven exactly where it can; "lines": line by line (proof_method)


EXACT_TRANSCENDENTALS = 1  # an exact proof of more transcendental calls than this grows too fast


def proof_method(function: Expr, derivative: Expr) -> Method:
    """How to prove: exactly where the function and the derivative apply at most one transcendental function
    (tanh, exp, log, norm2: one that does not keep rationals rational) to the variables (`tr(A X B X^T)`,
    `logdet(X)`, `tanh(W x)`): their values are exact, and so is the proof. More of them (a network's layers,
    gelu through erf and exp) make exact values grow with the expression, exponentially with a network's depth:
    then line by line at high precision (PreciseBackend), each definition once, to 40 digits."""
    calls = _transcendental_calls(function) | _transcendental_calls(derivative)
    # a call along an axis (softmax(Z, 1)) is one call per column: as many as a layer's
    weight = sum(2 if call.axis else 1 for call in calls)
    return "lines" if weight > EXACT_TRANSCENDENTALS else "exact"


def _transcendental_calls(e: Expr) -> set[Expr]:
    """The distinct calls in e of functions that do not keep rationals rational, applied to a variable."""
    ir.cached_bottom_up(e, "_holds_variable", lambda node: isinstance(node, Var) or any(
        child.__dict__["_holds_variable"] for child in node.children))
    return {node for node in ir.walk(e) if isinstance(node, ir.Func) and node.__dict__["_holds_variable"]
            and not _keeps_rationals(node.name)}


_RATIONAL: dict[str, bool] = {}


def _keeps_rationals(name: str) -> bool:
    """Whether a function's SymPy meaning maps rational values to rational values (tr, det, inv, abs, relu), tried
    on a rational vector or matrix once per function."""
    if name not in _RATIONAL and FUNCTIONS[name].sympy is None:  # a size (rows, cols): read off the shapes
        _RATIONAL[name] = True
    if name not in _RATIONAL:
        import sympy as sp

        q = sp.Rational
        matrix, column = sp.Matrix([[q(5, 2), q(1, 3)], [q(1, 2), q(3)]]), sp.Matrix([q(5, 2), q(-1, 3)])
        try:
            value = FUNCTIONS[name].sympy(sp, matrix)
        except (ValueError, TypeError):
            value = FUNCTIONS[name].sympy(sp, column)
        _RATIONAL[name] = all(entry.is_Rational for entry in value)
    return _RATIONAL[name]


def verify_derivative(function: Expr, variable: Var, derivative: Expr, kind: str, layout: str = "numerator",
                      seed: int = 0, timeout: float = DEFAULT_TIMEOUT,
                      method: Method | None = None, progress: ProgressCallback | None = None) -> VerificationReport:
    """Check `derivative` of `function` w.r.t. `variable` entry by entry against SymPy, at two sizes.

    The oracle never differentiates symbolically in many variables: for each entry of the variable it
    builds the function along one line through an exact random point, f(X0 + t E), and takes d/dt at
    t = 0 (d2/ds dt for a Hessian) with SymPy. Each entry is compared to 60 digits, then proven exactly
    where the difference expands to 0. A point where the values are undefined proves nothing: other points
    are tried, and past ATTEMPTS or the time limit the report says "undecided", never "verified".
    `progress`, if given, is called with a Progress record at each step (which sizes, point, entries done of how
    many): a display for a long proof; it changes nothing in the proof.
    """
    deadline = _Deadline(timeout, progress)
    method = method or proof_method(function, derivative)
    assignments = size_assignments([function, derivative, variable])
    total = VerificationReport(True, assignments, 0, method=method)
    try:
        with deadline.enforced():
            for number, sizes in enumerate(assignments, 1):
                deadline.report(sizes=sizes, assignment=number, assignments=len(assignments))
                report = _verify_at_sizes(function, variable, derivative, kind, layout, seed, sizes, deadline,
                                          method)
                total.entries += report.entries
                total.numerically_only += report.numerically_only
                total.directions += report.directions
                if not report:  # the sizes it names are those of the counterexample
                    report.method = method
                    return report
    except VerificationTimeout:
        return VerificationReport(False, assignments, total.entries,
                                  undecided=f"could not decide within {deadline.seconds:g} s", method=method)
    return total


def _verify_at_sizes(function: Expr, variable: Var, derivative: Expr, kind: str, layout: str, seed: int,
                     sizes: dict[str, int], deadline: _Deadline, method: Method) -> VerificationReport:
    """The proof at one assignment of sizes, at POINTS_PER_SIZE points of different kinds where the values
    are defined, one of them at least where the derivative is not all zero: at a single point a relu can
    be off, and then twice the derivative matches it. Points of further kinds are tried until then."""
    passed: list[VerificationReport] = []
    informative = False
    for attempt in range(ATTEMPTS):
        deadline.check()
        deadline.report(point=attempt + 1, step="entries", done=0, total=0, digits=0)
        rng = random.Random(seed * 7919 + attempt + 31 * sum(sizes.values()))
        try:
            report, nonzero = _verify_at_point(function, variable, derivative, kind, layout, sizes, rng, attempt,
                                               deadline, method)
        except (_Undefined, ZeroDivisionError, ValueError, TypeError, _non_invertible_error()):
            continue  # SymPy refuses a value outside a function's domain (Heaviside of a complex number)
        if not report:
            return report
        passed.append(report)
        informative = informative or nonzero
        if len(passed) >= POINTS_PER_SIZE and informative:
            break
    if not passed:
        return VerificationReport(False, [sizes], 0, undecided=f"the values are undefined at {ATTEMPTS} random points")
    return VerificationReport(True, [sizes], passed[0].entries, directions=passed[0].directions,
                              numerically_only=max(report.numerically_only for report in passed))


# The kinds of random points, tried in turn: positive (log and sqrt are defined, square matrices are
# diagonally dominant so det > 0), signed, small positive (arcsin and arccos are defined), small signed.
POINTS = ("positive", "signed", "small", "small signed")
# Line by line, small points first: a network's layers then stay off their saturation (tanh(500), erf(50)), where
# a difference quotient resolves a derivative like exp(-2500) only at thousands of digits.
LINE_POINTS = ("small", "small signed", "positive", "signed")
ATTEMPTS = len(POINTS)
POINTS_PER_SIZE = 2


def _random_rational(rng: random.Random, sp: Any, kind: str) -> Any:
    if kind.startswith("small"):
        numerator = rng.randint(1, 5) * (rng.choice([-1, 1]) if kind == "small signed" else 1)
        return sp.Rational(numerator, rng.randint(6, 9))
    numerator = rng.randint(1, 9) if kind == "positive" else rng.choice([n for n in range(-9, 10) if n])
    return sp.Rational(numerator, rng.randint(1, 4))


def _random_matrix(var: Var, rows: int, cols: int, rng: random.Random, sp: Any, kind: str) -> Any:
    """Exact random entries of the attempt's kind."""
    if var.symmetric:
        upper = {(i, j): _random_rational(rng, sp, kind) for i in range(rows) for j in range(i, cols)}
        m = sp.Matrix(rows, cols, lambda i, j: upper[(min(i, j), max(i, j))])
    else:
        m = sp.Matrix(rows, cols, lambda i, j: _random_rational(rng, sp, kind))
    if kind == "positive" and rows == cols and rows > 1:
        m += 3 * rows * sp.eye(rows)
    if var.positive_definite:  # a point of its domain: M M^T + I is symmetric positive definite
        m = m * m.T + sp.eye(rows)
    return m


S, T = "s", "t"  # the parameters of the lines through the point


class _Lines:
    """The derivatives of the function along lines through the point, exactly: SymPy differentiates f(X0 + t E)
    in t at t = 0 (d2/ds dt for a Hessian)."""

    def __init__(self, function: Expr, variable: Var, point: Any, values: dict[str, Any], sizes: dict[str, int],
                 deadline: _Deadline, backend: SympyBackend) -> None:
        import sympy as sp

        self.sp, self.function, self.variable, self.point = sp, function, variable, point
        self.values, self.sizes, self.deadline, self.backend = values, sizes, deadline, backend
        self.s, self.t = sp.Symbol(S, real=True), sp.Symbol(T, real=True)

    def unit(self, c: int) -> Any:
        """The unit direction at column-major position c of the variable (the entry vec(X)[c])."""
        rows = self.point.rows
        e = self.sp.zeros(rows, self.point.cols)
        e[c % rows, c // rows] = 1
        return e

    def along(self, direction: Any) -> Any:
        self.deadline.check()
        sp = self.sp
        f = interpret(self.function, {**self.values, self.variable.name: self.point + direction}, self.sizes,
                      self.backend)
        if any(value.has(sp.zoo, sp.nan, sp.oo, -sp.oo) for value in f):  # logdet of a singular matrix:
            raise _Undefined  # f is -oo near the point, and its derivative along the line a meaningless 0
        return f

    def first(self, c: int) -> Any:
        """d/dt F(X0 + t E_c) at t = 0, every entry of F."""
        return self.along(self.t * self.unit(c)).applyfunc(lambda v: self._at_zero(v, self.t))

    def second(self, i: int, j: int) -> Any:
        """d2/ds dt f(X0 + s E_i + t E_j) at 0, for a scalar f; for i = j it is f'' along E_i."""
        return self._at_zero(self.along(self.s * self.unit(i) + self.t * self.unit(j))[0, 0], self.s, self.t)

    def _at_zero(self, expr: Any, *symbols: Any) -> Any:
        sp = self.sp
        _refuse_kinks(expr, [x for x in (self.s, self.t) if expr.has(x)], sp)
        value = sp.diff(expr, *symbols).subs({self.s: 0, self.t: 0})
        if value.has(sp.DiracDelta):  # the derivative of a step: 0 away from its kink, undefined at it
            value = value.replace(lambda e: isinstance(e, sp.DiracDelta), _delta_away_from_zero)
        if value.has(sp.Derivative, sp.Subs):  # SymPy could not differentiate it: nothing can be proven here
            raise _Undefined
        return value


class _DualLines(_Lines):
    """The first derivatives along lines, exactly, by forward mode (DualBackend): the function is evaluated once
    per direction over exact values and their tangents; second derivatives (a Hessian) go by SymPy in s and t."""

    @functools.cached_property
    def _dual_values(self) -> tuple[DualBackend, dict[str, Dual]]:
        """The backend and the constants' values (tangent 0), the same along every direction."""
        dual = DualBackend()
        return dual, {name: dual.fixed(value) for name, value in self.values.items()}

    def first(self, c: int) -> Any:
        self.deadline.check()
        sp = self.sp
        dual, values = self._dual_values
        f = interpret(self.function, {**values, self.variable.name: Dual(self.point, self.unit(c))}, self.sizes,
                      dual)
        if any(entry.has(sp.zoo, sp.nan, sp.oo, -sp.oo) for entry in (*f.value, *f.tangent)):
            raise _Undefined  # logdet of a singular matrix: no derivative along the line
        return f.tangent


class _PreciseLines(_Lines):
    """The derivatives along lines by central differences of the function's values at high precision
    (PreciseBackend): f evaluated line by line at X0 +- h E, each definition once. With d digits and a step
    h = 10^(-d / 4), the truncation error (h^2) and the rounding error (10^-d / h^2) both stay near 10^(-d / 2),
    far below the 40 digits compared; two runs with other perturbations and steps measure it."""

    def __init__(self, *args: Any, step: Any) -> None:
        super().__init__(*args)
        backend = self.backend
        assert isinstance(backend, PreciseBackend)
        self.precise = backend
        self.h = step
        self.mp_point = backend.from_sympy(self.point)
        self.mp_values = {name: backend.from_sympy(value) for name, value in self.values.items()}
        self.largest = backend.mp.mpf(0)  # the largest value of the function seen
        self.second_order = False

    def along(self, direction: Any) -> Any:
        self.deadline.check()
        f = interpret(self.function, {**self.mp_values, self.variable.name: self.mp_point + direction},
                      self.sizes, self.precise)  # type: ignore[arg-type]
        self.largest = max([self.largest, *(abs(f[i, j]) for i in range(f.rows) for j in range(f.cols))])
        return f

    def error_floor(self) -> Any:
        """A bound on the error the roundings of the values put in a difference quotient: their relative error
        times the values' size, over h (over h^2 for a second difference), with a wide margin. The size is that of
        the largest value rounded on the way, not only the function's: log(exp(x)) (y^T - y^T) is 0 up to the
        roundings of y, and a floor from the function's own size called that noise a wrong derivative."""
        size = max(self.largest, self.precise.largest_rounded)
        return 100 * self.precise.noise * size / (self.h**2 if self.second_order else self.h)

    def unit(self, c: int) -> Any:
        rows = self.point.rows
        e = self.precise.mp.matrix(rows, self.point.cols)
        e[c % rows, c // rows] = 1
        return e

    def first(self, c: int) -> Any:
        e = self.unit(c) * self.h
        return self.precise.to_sympy((self.along(e) - self.along(-e)) / (2 * self.h))

    def second(self, i: int, j: int) -> Any:
        self.second_order = True
        a, b = self.unit(i) * self.h, self.unit(j) * self.h
        corners = [self.along(a * p + b * q)[0, 0] * p * q for p in (1, -1) for q in (1, -1)]
        return self.precise.sp.Float(sum(corners) / (4 * self.h**2), self.precise.mp.mp.dps)


def _line_derivatives(lines: _Lines, kind: str) -> Any:
    """The expected derivative from the derivatives along lines through the point, in the engine's layout
    (numerator)."""
    sp = lines.sp
    rows, cols = lines.point.shape
    report = lines.deadline.report
    if kind == "hessian":
        n = rows * cols
        hessian = sp.zeros(n, n)
        for i in range(n):
            for j in range(i, n):
                report(step="entries", done=i * n - i * (i - 1) // 2 + j - i, total=n * (n + 1) // 2)
                hessian[i, j] = hessian[j, i] = lines.second(i, j)
        return hessian
    if kind == "tensor":  # the Jacobian of the vecs: column c is d/dt vec(F(X + t E_c))
        columns = []
        for c in range(rows * cols):
            report(step="entries", done=c, total=rows * cols)
            f = lines.first(c)
            columns.append([f[i, j] for j in range(f.cols) for i in range(f.rows)])
        return sp.Matrix(len(columns[0]), len(columns), lambda i, c: columns[c][i])
    if lines.variable.shape == (1, 1):
        return lines.first(0)
    if lines.function.shape == (1, 1):
        gradient = sp.zeros(rows, cols)
        for i in range(rows):
            for j in range(cols):
                report(step="entries", done=i * cols + j, total=rows * cols)
                gradient[i, j] = lines.first(i + rows * j)[0, 0]
        return gradient
    # a vector function of a vector: column j of the Jacobian is d/dt f(x + t e_j); a row vector
    # function has the Jacobian of its transpose
    columns = []
    for j in range(rows):
        report(step="entries", done=j, total=rows)
        columns.append(list(lines.first(j)))
    return sp.Matrix(len(columns[0]), rows, lambda i, j: columns[j][i])


def _delta_away_from_zero(delta: Any) -> Any:
    """DiracDelta(u) (or a derivative of it) at a point: 0 where u is not 0; at u = 0 the point is a kink."""
    import sympy as sp

    if not any(_significant(part, sp) for part in _parts(delta.args[0], sp)):
        raise _Undefined
    return sp.Integer(0)


def _parts(value: Any, sp: Any, working_digits: int | None = None) -> tuple[Any, Any]:
    """The real and imaginary parts of an exact value, evaluated to DIGITS significant digits (SymPy's evalf
    keeps relative precision, however small the value: no underflow to 0 as in a float). `working_digits`
    raises the precision evalf may use on a cancellation (1 - 1/(1 + exp(-522)) is exp(-522))."""
    try:
        evaluated = sp.N(value, DIGITS) if working_digits is None else sp.N(value, DIGITS, maxn=working_digits)
        real, imaginary = evaluated.as_real_imag()
    except (TypeError, ValueError, RecursionError) as error:  # an unevaluated value
        raise _Undefined from error
    if not (real.is_Number and imaginary.is_Number) or any(p in (sp.oo, -sp.oo, sp.nan, sp.zoo)
                                                         for p in (real, imaginary)):
        raise _Undefined
    return real, imaginary


def _significant(x: Any, sp: Any) -> bool:
    """Whether an evaluated number is nonzero: evalf returns an exact zero it cannot simplify as 0.e-N,
    a Float with no significant digit."""
    return x != 0 and not (isinstance(x, sp.Float) and x._prec < 30)


def _error(x: Any, sp: Any) -> Any:
    """A bound on the absolute error of an evaluated number: a Float knows how many bits it holds (0.e-192
    holds one, so its error is its size); an exact number has none."""
    if isinstance(x, sp.Float) and x != 0:
        return abs(x) * sp.Float(2) ** (2 - x._prec)
    return sp.Integer(0)


def _short(value: Any, sp: Any) -> str:
    """An exact value as text, or its first 15 digits where the exact text is long."""
    text = str(value)
    return text if len(text) <= 60 else f"{sp.N(value, 15)} (≈)"


CANCELLATION_DIGITS = 3_000  # working precision for a value evalf resolves to fewer than PRECISE_BITS at first
PRECISE_BITS = 160  # about 48 digits: enough for a comparison to 40
TOLERANCE = "1e-40"  # relative: entries equal to 40 significant digits are equal numerically


def _evaluated(value: Any, sp: Any) -> tuple[Any, Any]:
    """(real part, its error bound): evaluated again at a higher working precision where evalf lost digits
    to a cancellation (1 - 1/(1 + exp(-522)) is exp(-522)). A complex value makes the point undefined."""
    real, imaginary = _parts(value, sp)
    if isinstance(real, sp.Float) and real._prec < PRECISE_BITS:
        real, imaginary = _parts(value, sp, CANCELLATION_DIGITS)
    if _significant(imaginary, sp) and bool(abs(imaginary) > sp.Float(TOLERANCE) * abs(real)):
        raise _Undefined  # a log of a negative number: this point proves nothing
    return real, _error(real, sp)


def _rational_form(value: Any) -> Any:
    """The value as one element of the field of rational functions over QQ in its transcendental atoms
    (exp(3/2), log(2), sqrt(5), pi, ...), each taken as an independent symbol: zero there is zero at the atoms'
    values (a substitution), so it proves an entry exactly. Why not sp.cancel: on sums of exponentials it
    spends most of its time in factor_terms and signsimp; the sparse field does the same cancellation 3x faster.
    A relation between atoms the field does not know (exp(1)^2 vs exp(2)) only leaves an entry "to 40 digits"."""
    import sympy as sp

    atoms = value.atoms(sp.Function, sp.NumberSymbol) | {p for p in value.atoms(sp.Pow) if not p.exp.is_Integer}
    if not atoms:
        return value

    def positive(atom: Any) -> tuple[Any, int]:  # exp(-a) is 1/exp(a): one symbol for both, not two unrelated
        if isinstance(atom, sp.exp) and atom.args[0].could_extract_minus_sign():
            return sp.exp(-atom.args[0], evaluate=False), -1
        return atom, 1

    generators = sorted({positive(atom)[0] for atom in atoms}, key=sp.default_sort_key)
    field_of_atoms, *gens = _field_of_atoms(len(generators))
    generator = dict(zip(generators, gens, strict=True))
    # the difference rebuilt in the field bottom-up, with an explicit stack (no recursion over its depth); the
    # outermost atom is taken whole, so exp(exp(1)) is one generator, not a function of another
    done: dict[Any, Any] = {}
    stack = [value]
    while stack:
        node = stack[-1]
        if node in done:
            stack.pop()
            continue
        if node in atoms:
            base, sign = positive(node)
            done[node] = generator[base] ** sign
        elif node.is_Rational:
            done[node] = field_of_atoms(node)
        elif node.is_Add or node.is_Mul or (node.is_Pow and node.exp.is_Integer):
            parts = node.args[:1] if node.is_Pow else node.args
            waiting = [part for part in parts if part not in done]
            if waiting:
                stack.extend(waiting)
                continue
            if node.is_Pow:
                done[node] = done[node.base] ** int(node.exp)
            else:
                total = done[parts[0]]
                for part in parts[1:]:
                    total = total + done[part] if node.is_Add else total * done[part]
                done[node] = total
        else:
            raise ValueError(f"not a rational function of atoms: {node}")
        stack.pop()
    return done[value]


@functools.lru_cache(maxsize=64)
def _field_of_atoms(count: int) -> tuple[Any, ...]:
    """QQ(t0, ..., t<count-1>) and its generators, built once per count."""
    import sympy as sp

    return sp.field(sp.symbols(f"t0:{count}", cls=sp.Dummy), sp.QQ)


def _compare(expected: Any, got: Any, sp: Any, deadline: _Deadline) -> tuple[bool, bool]:
    """(equal, proven exactly) for two exact SymPy numbers. Equal to 40 significant digits, relative to the
    entries however small they are (1 - tanh(60)^2 is 3e-52, and twice it is wrong), then proven where the
    difference expands or cancels to 0. Where evalf cannot resolve the entries to 40 digits, the point
    proves nothing (undefined), unless both are zero to within what it resolves."""
    tolerance = sp.Float(TOLERANCE)
    (a, error_a), (b, error_b) = _evaluated(expected, sp), _evaluated(got, sp)
    scale = max(abs(a), abs(b))
    if bool(abs(a - b) > error_a + error_b + tolerance * scale):
        return False, False
    both_zero = bool(abs(a) <= error_a) and bool(abs(b) <= error_b)
    if not both_zero and bool(error_a + error_b > tolerance * scale):
        raise _Undefined
    difference = expected - got
    if difference == 0:
        return True, True
    # an exact proof where a cheap normal form settles it within its budget: a polynomial, then a rational
    # function in the transcendental atoms (exp(3/2), log(2), ...); what neither settles stays "equal to 40
    # digits". Large differences skip the rational form, which grows fast with their size.
    forms: tuple[Callable[[Any], Any], ...] = (sp.expand,)
    if sp.count_ops(difference) <= PROOF_OPS:
        # with transcendental calls (exp, tanh, log...) the rational form goes first: it settles what expand
        # settles there (atoms as symbols) and more, and a sum of exponentials expand only spends seconds on;
        # expand stays the second try for an algebraic relation ((1 + sqrt(2))^2 = 3 + 2 sqrt(2))
        forms = (_rational_form, sp.expand) if difference.atoms(sp.Function) else (sp.expand, _rational_form)
    for normal_form in () if deadline.exact_exhausted else forms:
        deadline.check()
        try:
            with deadline.step(PROOF_SECONDS):
                if normal_form(difference) == 0:
                    return True, True
        except _StepTimeout:
            deadline.exact_exhausted = True
            break
        except (TypeError, ValueError, RecursionError, ZeroDivisionError, sp.polys.polyerrors.BasePolynomialError):
            continue  # this form cannot hold the difference: the other may
    return True, False


def _verify_at_point(function: Expr, variable: Var, derivative: Expr, kind: str, layout: str,
                     sizes: dict[str, int], rng: random.Random, attempt: int,
                     deadline: _Deadline, method: Method = "exact") -> tuple[VerificationReport, bool]:
    """The report at one random point, and whether the expected derivative is not all zero there."""
    import sympy as sp

    def size(d: Any) -> int:
        return ir.dim_value(d, sizes)

    points = (LINE_POINTS if method == "lines" else POINTS)[attempt]
    rows, cols = size(variable.shape[0]), size(variable.shape[1])
    point = _random_matrix(variable, rows, cols, rng, sp, points)
    values: dict[str, Any] = {}
    for name, var in sorted({**variables(function), **variables(derivative)}.items()):
        if name != variable.name:
            values[name] = _random_matrix(var, size(var.shape[0]), size(var.shape[1]), rng, sp, points)

    spec = DerivativeSpec(Kind(kind), layout, variable.symmetric)  # the conventions, as the engine applies them

    def in_convention(expected: Any) -> Any:
        if spec.symmetric_gradient:
            expected = (expected + expected.T) / 2
        return expected.T if spec.transposed else expected

    if method == "lines":
        return _verify_by_lines(function, variable, derivative, kind, in_convention, spec.transposed, point, values,
                                sizes, rng.randrange(1 << 30), deadline)
    lines = (_Lines if kind == "hessian" else _DualLines)(function, variable, point, values, sizes, deadline,
                                                           SympyBackend())
    expected = in_convention(_line_derivatives(lines, kind))
    got = interpret(derivative, {**values, variable.name: point}, sizes, SympyBackend())
    undefined = (sp.zoo, sp.nan, sp.oo, -sp.oo)
    if any(value.has(*undefined) for value in (*expected, *got)):
        raise _Undefined
    report = VerificationReport(True, [sizes], expected.rows * expected.cols)
    if got.shape != expected.shape:
        report.ok = False
        report.mismatches.append(Mismatch((), f"shape {expected.shape}", f"shape {got.shape}"))
        return report, True
    for i in range(expected.rows):
        for j in range(expected.cols):
            deadline.report(step="comparisons", done=i * expected.cols + j, total=expected.rows * expected.cols)
            equal, proven = _compare(expected[i, j], got[i, j], sp, deadline)
            if not equal:
                report.ok = False
                report.mismatches.append(Mismatch((i, j), _short(expected[i, j], sp), _short(got[i, j], sp)))
            elif not proven:
                report.numerically_only += 1
    if not report.ok:
        report.point = {variable.name: point.tolist(), **{k: v.tolist() for k, v in values.items()}}
    return report, any(value != 0 for value in expected)


LINE_DIGITS = (60, 240, 960)  # the precisions of the line-by-line proof, tried in turn until every entry resolves
AGREEMENT = 10  # how many times the disagreement of two perturbed runs bounds an entry's rounding error


def _verify_by_lines(function: Expr, variable: Var, derivative: Expr, kind: str, in_convention: Any,
                     transposed: bool, point: Any,
                     values: dict[str, Any], sizes: dict[str, int], seed: int,
                     deadline: _Deadline) -> tuple[VerificationReport, bool]:
    """The report at one point, with the function and the derivative evaluated line by line (PreciseBackend),
    twice with different perturbations at each precision of LINE_DIGITS: an entry is equal where the two agree
    with each other better than 40 digits and the runs agree with themselves (always "to 40 digits", never
    exactly). An entry no precision resolves (a cancellation beyond them) makes the point prove nothing."""
    import mpmath
    import sympy as sp

    directions: list[Any] = []
    if point.rows * point.cols > DIRECT_ENTRIES:  # a large variable: along random directions, not entry by entry
        direction_rng = random.Random(seed)
        count = 2 * DIRECTIONS if kind == "hessian" else DIRECTIONS
        directions = [_random_matrix(variable, point.rows, point.cols, direction_rng, sp, "signed") for _ in
                      range(count)]
    for level, digits in enumerate(LINE_DIGITS):
        runs = []
        deadline.report(digits=digits)
        with mpmath.workdps(digits):
            for run in range(2):
                rng = random.Random(seed * 31 + run)
                # the step: 10^(-digits/4), a little different in each run, so that the runs measure its error too
                step = mpmath.mpf(10) ** (-(digits // 4)) * (5 + run) / 5
                backend = PreciseBackend(rng, kink_distance=step * 10**6)  # far more than a step moves an argument
                lines = _PreciseLines(function, variable, point, values, sizes, deadline, backend, step=step)
                got_value = interpret(derivative, {**lines.mp_values, variable.name: lines.mp_point}, sizes,
                                      backend)  # type: ignore[arg-type]
                if directions:
                    expected, got = _along_directions(lines, kind, got_value, transposed, directions)
                else:
                    expected, got = in_convention(_line_derivatives(lines, kind)), backend.to_sympy(got_value)
                runs.append((expected, got, sp.Float(lines.error_floor(), digits)))
        (expected, got, floor), (expected_2, got_2, floor_2) = runs
        along = len(directions) // (2 if kind == "hessian" else 1)
        report = VerificationReport(True, [sizes], 0 if along else expected.rows * expected.cols, directions=along)
        if got.shape != expected.shape:
            report.ok = False
            report.mismatches.append(Mismatch((), f"shape {expected.shape}", f"shape {got.shape}"))
            return report, True
        last = level == len(LINE_DIGITS) - 1
        verdicts = {(i, j): _agreement(expected[i, j], expected_2[i, j], got[i, j], got_2[i, j],
                                       max(floor, floor_2), level, sp)
                    for i in range(expected.rows) for j in range(expected.cols)}
        if "unresolved" in verdicts.values():
            if last:
                raise _Undefined
            continue
        for (i, j), verdict in verdicts.items():
            if verdict == "differ":
                report.ok = False
                report.mismatches.append(Mismatch((i, j), _short(expected[i, j], sp), _short(got[i, j], sp)))
            elif verdict == "numerically":
                report.numerically_only += 1
        if along:  # a direction counts once, however many entries its derivative has
            report.numerically_only = along if report.numerically_only else 0
        if not report.ok:
            report.point = {variable.name: point.tolist(), **{k: v.tolist() for k, v in values.items()}}
        return report, any(value != 0 for value in expected)
    raise _Undefined  # not reached: the last level decides or raises


DIRECT_ENTRIES = 16  # a variable with more entries is checked along random directions (each a full derivative)
DIRECTIONS = 3  # random directions per point


def _along_directions(lines: _PreciseLines, kind: str, derivative: Any, transposed: bool,
                      directions: list[Any]) -> tuple[Any, Any]:
    """(expected, got): the directional derivatives of the function along each direction E (central differences
    of its values), and the derivative applied to E: <G, E> for a gradient, J vec(E) for a Jacobian or a tensor
    in vec form, vec(E1)^T H vec(E2) for a Hessian (directions in pairs). One column, direction after direction;
    a symmetric variable's directions are symmetric, so sym(G) and G give the same <G, E>."""
    backend = lines.precise
    mp, sp = backend.mp, backend.sp
    derivative = derivative.T if transposed else derivative  # back to the numerator layout
    expected: list[Any] = []
    got: list[Any] = []

    def vec(m: Any) -> Any:
        return mp.matrix([m[i, j] for j in range(m.cols) for i in range(m.rows)])

    mp_directions = [backend.from_sympy(d) for d in directions]
    deadline = lines.deadline
    if kind == "hessian":
        lines.second_order = True
        for number, (first, second) in enumerate(zip(mp_directions[::2], mp_directions[1::2], strict=True)):
            deadline.report(step="directions", done=number, total=len(mp_directions) // 2)
            a, b, h = first * lines.h, second * lines.h, lines.h
            corners = [lines.along(a * p + b * q)[0, 0] * p * q for p in (1, -1) for q in (1, -1)]
            expected.append(sum(corners) / (4 * h**2))
            got.append((vec(first).T * derivative * vec(second))[0, 0])
    else:
        for number, direction in enumerate(mp_directions):
            deadline.report(step="directions", done=number, total=len(mp_directions))
            step = direction * lines.h
            change = (lines.along(step) - lines.along(-step)) / (2 * lines.h)
            expected.extend(vec(change))
            if lines.function.shape == (1, 1) and kind != "tensor":  # a gradient: <G, E>
                got.append(sum(derivative[i, j] * direction[i, j] for i in range(direction.rows)
                               for j in range(direction.cols)))
            else:  # a Jacobian (numerator layout) or the Jacobian of the vecs: J vec(E)
                got.extend(derivative * vec(direction))
    dps = mp.mp.dps
    return (sp.Matrix(len(expected), 1, [sp.Float(v, dps) for v in expected]),
            sp.Matrix(len(got), 1, [sp.Float(v, dps) for v in got]))


def _agreement(a: Any, a_2: Any, b: Any, b_2: Any, floor: Any, level: int, sp: Any) -> str:
    """Whether the expected entry a and the derivative's b are equal "numerically" (to 40 digits), "differ", or are
    "unresolved" at this precision (`level`, its index in LINE_DIGITS). a_2 and b_2 are the same entries from a
    second run with other perturbations: their disagreement measures the rounding error of each; `floor` bounds
    the error the difference quotient's roundings put in a, whatever the runs show."""
    error_a, error_b = max(AGREEMENT * abs(a - a_2), floor), AGREEMENT * abs(b - b_2)
    scale = max(abs(a), abs(b))
    tolerance = sp.Float(TOLERANCE)
    if bool(abs(a - b) > error_a + error_b + tolerance * scale):
        return "differ"
    if bool(abs(a) <= error_a) and bool(abs(b) <= error_b):  # both zero to within what this precision resolves:
        return "numerically" if level else "unresolved"  # once more at a higher one (exp(-x^2) stays below both)
    if bool(error_a + error_b > tolerance * scale):
        return "unresolved"
    return "numerically"
