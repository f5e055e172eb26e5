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

import random
import signal
import threading
import time
from collections.abc import Iterator
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
        return FUNCTIONS[name].sympy(self.sp, a)  # every function of the IR has its SymPy meaning


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

    def __bool__(self) -> bool:
        return self.ok

    def _sizes_text(self) -> str:
        texts = [", ".join(f"{k}={v}" for k, v in sizes.items()) for sizes in self.sizes]
        return "; ".join(t for t in texts if t) or "as declared"

    def __str__(self) -> str:
        sizes = self._sizes_text()
        if self.ok:
            exact = self.entries - self.numerically_only
            how = "exactly" if not self.numerically_only else "to 40 digits" if not exact else \
                f"({exact} exactly, {self.numerically_only} to 40 digits)"
            return f"verified: all {self.entries} entries match SymPy {how} (sizes {sizes})"
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
DIGITS = 60  # every entry is compared numerically to this many digits before any exact proof
PROOF_SECONDS = 0.25  # the budget of the exact proof of one entry, past which it counts as equal to 40 digits
PROOF_OPS = 400  # differences larger than this are not put over a common denominator


class VerificationTimeout(Exception):
    """The time limit of a verification ran out."""


class _StepTimeout(Exception):
    """The time budget of one optional step (an exact proof of one entry) ran out: the step is given up."""


class _Deadline:
    """A time limit, checked between steps and, in the main thread, enforced by an alarm inside SymPy calls.

    `step(seconds)` gives one optional step a shorter budget: past it the step raises _StepTimeout and the
    proof goes on without it; past the whole limit, VerificationTimeout ends the proof.
    """

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.end = time.monotonic() + seconds
        self.alarm = False  # whether an alarm enforces the limit (the main thread only)
        self.step_end: float | None = None

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


def verify_derivative(function: Expr, variable: Var, derivative: Expr, kind: str, layout: str = "numerator",
                      seed: int = 0, timeout: float = DEFAULT_TIMEOUT) -> VerificationReport:
    """Check `derivative` of `function` w.r.t. `variable` entry by entry against SymPy, at two sizes.

    The oracle never differentiates symbolically in many variables: for each entry of the variable it
    builds the function along one line through an exact random point, f(X0 + t E), and takes d/dt at
    t = 0 (d2/ds dt for a Hessian) with SymPy. Each entry is compared to 60 digits, then proven exactly
    where the difference expands to 0. A point where the values are undefined proves nothing: other points
    are tried, and past ATTEMPTS or the time limit the report says "undecided", never "verified".
    """
    deadline = _Deadline(timeout)
    assignments = size_assignments([function, derivative, variable])
    total = VerificationReport(True, assignments, 0)
    try:
        with deadline.enforced():
            for sizes in assignments:
                report = _verify_at_sizes(function, variable, derivative, kind, layout, seed, sizes, deadline)
                total.entries += report.entries
                total.numerically_only += report.numerically_only
                if not report:  # the sizes it names are those of the counterexample
                    return report
    except VerificationTimeout:
        return VerificationReport(False, assignments, total.entries,
                                  undecided=f"could not decide within {deadline.seconds:g} s")
    return total


def _verify_at_sizes(function: Expr, variable: Var, derivative: Expr, kind: str, layout: str, seed: int,
                     sizes: dict[str, int], deadline: _Deadline) -> VerificationReport:
    """The proof at one assignment of sizes, at POINTS_PER_SIZE points of different kinds where the values
    are defined, one of them at least where the derivative is not all zero: at a single point a relu can
    be off, and then twice the derivative matches it. Points of further kinds are tried until then."""
    passed: list[VerificationReport] = []
    informative = False
    for attempt in range(ATTEMPTS):
        deadline.check()
        rng = random.Random(seed * 7919 + attempt + 31 * sum(sizes.values()))
        try:
            report, nonzero = _verify_at_point(function, variable, derivative, kind, layout, sizes, rng, attempt,
                                               deadline)
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
    return VerificationReport(True, [sizes], passed[0].entries,
                              numerically_only=max(report.numerically_only for report in passed))


# The kinds of random points, tried in turn: positive (log and sqrt are defined, square matrices are
# diagonally dominant so det > 0), signed, small positive (arcsin and arccos are defined), small signed.
POINTS = ("positive", "signed", "small", "small signed")
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
    return m


def _line_derivatives(function: Expr, variable: Var, kind: str, point: Any, values: dict[str, Any],
                      sizes: dict[str, int], deadline: _Deadline) -> Any:
    """The expected derivative by SymPy along lines through the point, in the engine's layout (numerator)."""
    import sympy as sp

    backend = SympyBackend()
    s, t = sp.Symbol("s", real=True), sp.Symbol("t", real=True)
    rows, cols = point.shape

    def unit(c: int) -> Any:
        """The unit direction at column-major position c of the variable (the entry vec(X)[c])."""
        e = sp.zeros(rows, cols)
        e[c % rows, c // rows] = 1
        return e

    def along(direction: Any) -> Any:
        deadline.check()
        f = interpret(function, {**values, variable.name: point + direction}, sizes, backend)
        if any(value.has(sp.zoo, sp.nan, sp.oo, -sp.oo) for value in f):  # logdet of a singular matrix:
            raise _Undefined  # f is -oo near the point, and its derivative along the line a meaningless 0
        return f

    def at_zero(expr: Any, *symbols: Any) -> Any:
        value = sp.diff(expr, *symbols).subs({s: 0, t: 0})
        if value.has(sp.DiracDelta):  # the derivative of a step: 0 away from its kink, undefined at it
            value = value.replace(lambda e: isinstance(e, sp.DiracDelta), _delta_away_from_zero)
        if value.has(sp.Derivative, sp.Subs):  # SymPy could not differentiate it: nothing can be proven here
            raise _Undefined
        return value

    if kind == "hessian":
        n = rows * cols
        hessian = sp.zeros(n, n)
        for i in range(n):
            for j in range(i, n):
                f = along(t * unit(i)) if i == j else along(s * unit(i) + t * unit(j))
                value = at_zero(f[0, 0], t, t) if i == j else at_zero(f[0, 0], s, t)
                hessian[i, j] = hessian[j, i] = value
        return hessian
    if kind == "tensor":  # the Jacobian of the vecs: column c is d/dt vec(F(X + t E_c))
        columns = []
        for c in range(rows * cols):
            f = along(t * unit(c))
            columns.append([at_zero(f[i, j], t) for j in range(f.cols) for i in range(f.rows)])
        return sp.Matrix(len(columns[0]), len(columns), lambda i, c: columns[c][i])
    if variable.shape == (1, 1):
        return along(t * unit(0)).applyfunc(lambda v: at_zero(v, t))
    if function.shape == (1, 1):
        gradient = sp.zeros(rows, cols)
        for i in range(rows):
            for j in range(cols):
                gradient[i, j] = at_zero(along(t * unit(i + rows * j))[0, 0], t)
        return gradient
    # a vector function of a vector: column j of the Jacobian is d/dt f(x + t e_j); a row vector
    # function has the Jacobian of its transpose
    columns = [[at_zero(v, t) for v in along(t * unit(j))] for j in range(rows)]
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
    forms = (sp.expand, sp.cancel) if sp.count_ops(difference) <= PROOF_OPS else (sp.expand,)
    for normal_form in forms:
        deadline.check()
        try:
            with deadline.step(PROOF_SECONDS):
                if normal_form(difference) == 0:
                    return True, True
        except (_StepTimeout, TypeError, ValueError, RecursionError, sp.PolynomialError):
            break
    return True, False


def _verify_at_point(function: Expr, variable: Var, derivative: Expr, kind: str, layout: str,
                     sizes: dict[str, int], rng: random.Random, attempt: int,
                     deadline: _Deadline) -> tuple[VerificationReport, bool]:
    """The report at one random point, and whether the expected derivative is not all zero there."""
    import sympy as sp

    def size(d: Any) -> int:
        return ir.dim_value(d, sizes)

    points = POINTS[attempt]
    rows, cols = size(variable.shape[0]), size(variable.shape[1])
    point = _random_matrix(variable, rows, cols, rng, sp, points)
    values: dict[str, Any] = {}
    for name, var in sorted({**variables(function), **variables(derivative)}.items()):
        if name != variable.name:
            values[name] = _random_matrix(var, size(var.shape[0]), size(var.shape[1]), rng, sp, points)

    expected = _line_derivatives(function, variable, kind, point, values, sizes, deadline)
    spec = DerivativeSpec(Kind(kind), layout, variable.symmetric)  # the conventions, as the engine applies them
    if spec.symmetric_gradient:
        expected = (expected + expected.T) / 2
    if spec.transposed:
        expected = expected.T
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
            equal, proven = _compare(expected[i, j], got[i, j], sp, deadline)
            if not equal:
                report.ok = False
                report.mismatches.append(Mismatch((i, j), _short(expected[i, j], sp), _short(got[i, j], sp)))
            elif not proven:
                report.numerically_only += 1
    if not report.ok:
        report.point = {variable.name: point.tolist(), **{k: v.tolist() for k, v in values.items()}}
    return report, any(value != 0 for value in expected)
