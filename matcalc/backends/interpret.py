"""Stage 5b: evaluate an expression on concrete values.

One interpreter walks the IR; a backend supplies the arithmetic: NumPy here (imported lazily),
SymPy in verify.py. Every value is a 2-D array: a scalar is 1x1, a vector n x 1.

NumPy evaluates an *evaluation plan*, not the expression itself: the table STABLE_FORMS rewrites
forms that lose everything in float64 far in a tail (log(sigmoid(u)), 1 - sigmoid(u), ...) into
equal ones that do not. The plan is never printed and never seen by SymPy.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Generator, Mapping
from dataclasses import dataclass
from fractions import Fraction
from functools import lru_cache, reduce
from typing import Any, Protocol

from ..calculus.spec import DerivativeSpec, Result
from ..core import ir
from ..core.constants import CONSTANTS
from ..core.errors import EvaluationError, ParseError, abbreviate
from ..core.functions import FUNCTIONS
from ..core.ir import (
    Add,
    Dim,
    ElemDiv,
    ElemPower,
    Expr,
    Fill,
    Func,
    Hadamard,
    Identity,
    MatMul,
    Num,
    Power,
    Shape,
    Size,
    Transpose,
    Var,
)
from ..render.text import to_text
from ..rules.rule import Rule
from ..rules.stable import STABLE_FORMS
from ..rules.strategy import normalize


class Backend(Protocol):
    def constant(self, value: Fraction, rows: int, cols: int) -> Any: ...
    def named_constant(self, name: str) -> Any: ...  # pi, as 1 x 1 (constants.CONSTANTS)
    def identity(self, size: int) -> Any: ...
    def matmul(self, a: Any, b: Any) -> Any: ...
    def scale(self, scalar: Any, a: Any) -> Any: ...
    def add(self, a: Any, b: Any) -> Any: ...
    def hadamard(self, a: Any, b: Any) -> Any: ...
    def divide(self, a: Any, b: Any) -> Any: ...
    def transpose(self, a: Any) -> Any: ...
    def scalar_power(self, a: Any, p: Any) -> Any: ...
    def matrix_power(self, a: Any, k: int) -> Any: ...
    def elem_power(self, a: Any, p: Any) -> Any: ...
    def function(self, name: str, a: Any) -> Any: ...
    def function_of_columns(self, name: str, a: Any) -> Any: ...  # a function of a vector, of each column of a
    def spd_function(self, name: str, a: Any) -> Any: ...  # logdet or inv of a symmetric positive definite a
    def spd_solve(self, a: Any, b: Any) -> Any: ...  # inv(a) b, a symmetric positive definite
    def adjugate(self, a: Any) -> Any: ...  # adj(X) = det(X) inv(X), defined for a singular X too
    def kron(self, a: Any, b: Any) -> Any: ...
    def scale_rows(self, v: Any, a: Any) -> Any: ...  # diag(v) a, v a column
    def scale_columns(self, a: Any, v: Any) -> Any: ...  # a diag(v)
    def commutation(self, rows: int, cols: int) -> Any: ...  # K with K vec(A) = vec(A^T), A rows x cols


class NumericFailure(Exception):
    """Raised by a backend when an operation has no value at these numbers (inverting a singular matrix).

    `interpret` turns it into an EvaluationError naming the matrix, which only it knows.
    """

    def __init__(self, problem: str) -> None:
        self.problem = problem
        super().__init__(problem)


def _failure(node: Expr, matrix: Expr, failure: NumericFailure) -> EvaluationError:
    return EvaluationError(f"cannot evaluate {abbreviate(str(node))}: the matrix {abbreviate(str(matrix))} "
                           f"{failure.problem} at these values")


def _det_power(e: Expr) -> tuple[Expr, int] | None:
    """(X, k) when e is det(X)^k for a whole k >= 1 (det(X) itself is k = 1)."""
    if isinstance(e, Func) and e.name == "det":
        return e.arg, 1
    if isinstance(e, Power) and isinstance(e.base, Func) and e.base.name == "det" and isinstance(e.exponent, Num) \
            and e.exponent.value.denominator == 1 and e.exponent.value >= 1:
        return e.base.arg, int(e.exponent.value)
    return None


Evaluation = Generator[Expr, Any, Any]  # yields the nodes whose values it needs, is sent each, returns the value


@dataclass(frozen=True)
class _SpdInverse:
    """A factor inv(S) of a chain, S a variable declared spd, held as S's value: applied as a solve."""

    matrix: Any


def _chain_product(chain: list[tuple[Any, bool]], backend: Backend, from_the_right: bool) -> Any:
    """The product of a chain whose diag(v) factors are held as their columns v: each scales the rows (or, at the
    right end, the columns) of its neighbour. Multiplied from the right when the chain ends in a vector, so that
    x^T A x is x^T (A x), never the outer product."""
    items = list(reversed(chain)) if from_the_right else list(chain)
    acc: Any = None
    pending: Any = None  # a diag(v) at the start of the fold, waiting for a neighbour
    for value, diagonal in items:
        if isinstance(value, _SpdInverse):  # inv(S) acc is a solve by S's Cholesky factor; elsewhere the inverse
            if from_the_right and acc is not None:
                acc = backend.spd_solve(value.matrix, acc)
                continue
            value = backend.spd_function("inv", value.matrix)
        if acc is None and pending is None and diagonal:
            pending = value
            continue
        if acc is None and pending is not None:
            if diagonal:
                pending = backend.hadamard(pending, value)  # diag(a) diag(b) = diag(a .* b)
                continue
            acc = backend.scale_columns(value, pending) if from_the_right else backend.scale_rows(pending, value)
            pending = None
            continue
        if acc is None:
            acc = value
        elif diagonal:
            acc = backend.scale_rows(value, acc) if from_the_right else backend.scale_columns(acc, value)
        else:
            acc = backend.matmul(value, acc) if from_the_right else backend.matmul(acc, value)
    if acc is None:  # the chain was diagonal matrices only
        return backend.function("diag", pending)
    return acc


@dataclass(frozen=True)
class _Point:
    """Where an expression is evaluated: the variables' values, the dimensions' sizes, and the backend."""

    values: dict[str, Any]
    sizes: dict[str, int]
    backend: Backend

    def size(self, dim: Dim) -> int:
        return ir.dim_value(dim, self.sizes)

    def concrete(self, shape: Shape) -> tuple[int, int]:
        return self.size(shape[0]), self.size(shape[1])


# A leaf's value, by node type.
_LEAVES: dict[type, Callable[[Any, _Point], Any]] = {
    Var: lambda node, at: at.values[node.name],
    Num: lambda node, at: at.backend.constant(node.value, 1, 1),
    Fill: lambda node, at: at.backend.constant(node.value, *at.concrete(node.shape)),
    Identity: lambda node, at: at.backend.identity(at.size(node.size)),
    Size: lambda node, at: at.backend.constant(Fraction(at.size(node.dim)), 1, 1),
    ir.Constant: lambda node, at: at.backend.named_constant(node.name),
    ir.Commutation: lambda node, at: at.backend.commutation(at.size(node.rows), at.size(node.cols)),
}


def _folded(combine: str) -> Callable[[Any, _Point], Evaluation]:
    """The evaluation of a node whose value folds its children's with one backend operation (a sum, .*, ⊗)."""

    def evaluation(node: Expr, at: _Point) -> Evaluation:
        children = node.children
        total = yield children[0]
        for child in children[1:]:
            total = getattr(at.backend, combine)(total, (yield child))
        return total

    return evaluation


def _transposed(node: Transpose, at: _Point) -> Evaluation:
    return at.backend.transpose((yield node.arg))


def _quotient(node: ElemDiv, at: _Point) -> Evaluation:
    numerator = yield node.numerator
    return at.backend.divide(numerator, (yield node.denominator))


def _power(node: Power, at: _Point) -> Evaluation:
    if node.base.is_scalar:
        base = yield node.base
        return at.backend.scalar_power(base, (yield node.exponent))
    return at.backend.matrix_power((yield node.base), int(node.exponent.value))  # type: ignore[attr-defined]


def _elem_power(node: ElemPower, at: _Point) -> Evaluation:
    base = yield node.base
    return at.backend.elem_power(base, (yield node.exponent))


# The functions of an spd variable evaluated by its Cholesky factor (Backend.spd_function).
CHOLESKY_FUNCTIONS = frozenset({"logdet", "inv"})


def of_spd_variable(node: Func) -> bool:
    """logdet(S) or inv(S) of a variable S declared spd: evaluated (and written as code) by its Cholesky factor."""
    return node.name in CHOLESKY_FUNCTIONS and isinstance(node.arg, Var) and node.arg.positive_definite


def _call(node: Func, at: _Point) -> Evaluation:
    value = yield node.arg
    backend = at.backend
    if of_spd_variable(node):  # its value was checked positive definite when bound (bind_values)
        return backend.spd_function(node.name, value)
    if node.axis == 1:
        return backend.function_of_columns(node.name, value)
    if node.axis == 2:  # of each row: of each column of the transpose
        return backend.transpose(backend.function_of_columns(node.name, backend.transpose(value)))
    return backend.function(node.name, value)


def _product(node: MatMul, at: _Point) -> Evaluation:
    """A product; det(X)^k ... inv(X) in it is det(X)^(k-1) ... adj(X), which is defined where X is singular."""
    scalar_factors = [f for f in node.factors if f.is_scalar]
    dets: dict[Expr, list[int]] = {}  # X -> the positions of det(X)^k among scalar_factors
    det_of: dict[int, Expr] = {}  # position -> X
    remaining: dict[int, int] = {}  # position -> the power of det(X) not yet used by an inverse
    for position, factor in enumerate(scalar_factors):
        found = _det_power(factor)
        if found is not None:
            dets.setdefault(found[0], []).append(position)
            det_of[position], remaining[position] = found
    chain = []  # (value, is the column v of a diag(v) factor)
    for factor in node.factors:
        if factor.is_scalar:
            continue
        if isinstance(factor, Func) and factor.name == "diag" and ir.is_vector_shape(factor.arg.shape):
            vector = yield factor.arg  # diag(v) A is v .* A: the diagonal matrix is never built
            chain.append((vector if ir.is_column(factor.arg.shape) else at.backend.transpose(vector), True))
            continue
        transposed = isinstance(factor, Transpose)
        inverse = factor.arg if transposed else factor
        if isinstance(inverse, Func) and inverse.name == "inv" and of_spd_variable(inverse):  # symmetric: inv(S)^T
            chain.append((_SpdInverse((yield inverse.arg)), False))  # S is positive definite: no adjugate needed
            continue
        holders = dets.get(inverse.arg) if isinstance(inverse, Func) and inverse.name == "inv" else None
        if not holders:
            chain.append(((yield factor), False))
            continue
        position = holders[-1]
        remaining[position] -= 1
        if remaining[position] == 0:
            holders.pop()
        matrix = yield inverse.arg
        try:
            adjugate = at.backend.adjugate(matrix)
        except NumericFailure as failure:
            raise _failure(factor, inverse.arg, failure) from None
        chain.append((at.backend.transpose(adjugate) if transposed else adjugate, False))
    scalars = []
    for position, factor in enumerate(scalar_factors):
        if position not in remaining:
            scalars.append((yield factor))
        elif remaining[position] > 0:  # det(X)^k unused is the same node as factor: memoised
            scalars.append((yield ir.power(ir.func("det", det_of[position]), Num(Fraction(remaining[position])))))
    ends_in_vector = bool(chain) and node.factors[-1].shape[1] == 1 and not node.factors[-1].is_scalar
    product = _chain_product(chain, at.backend, ends_in_vector) if chain else scalars.pop()
    return reduce(lambda value, scalar: at.backend.scale(scalar, value), scalars, product)


# A compound node's evaluation, by node type: a generator that yields each node whose value it needs, and is
# sent that value.
_STEPS: dict[type, Callable[[Any, _Point], Evaluation]] = {
    Add: _folded("add"),
    MatMul: _product,
    Transpose: _transposed,
    Hadamard: _folded("hadamard"),
    ElemDiv: _quotient,
    Power: _power,
    ElemPower: _elem_power,
    Func: _call,
    ir.Kron: _folded("kron"),
}


def interpret(e: Expr, values: dict[str, Any], sizes: dict[str, int], backend: Backend) -> Any:
    """The value of e: `values` maps variable names to 2-D backend arrays, `sizes` dimension names to ints.

    Each distinct node is evaluated once (a residual network's h_k, shared by every later layer, too),
    and without recursion over the depth of e: each node's evaluation is a generator that yields the
    nodes whose values it needs, driven from an explicit stack, in the order a recursive evaluator
    would take (so the same failure is reported first).
    """
    memo: dict[Expr, Any] = {}
    at = _Point(values, sizes, backend)

    def failure(node: Expr, problem: NumericFailure) -> EvaluationError:
        """A failure raised by the backend at this very node: inv(X), X^-k."""
        return _failure(node, node.children[0] if node.children else node, problem)

    def start(node: Expr) -> Evaluation | None:
        """The evaluation of a node: stored at once for a leaf (None), else a generator to drive."""
        kind = _STEPS.get(type(node)) if node.children else _LEAVES.get(type(node))
        if kind is None:
            raise EvaluationError(f"cannot evaluate {node} (a {type(node).__name__})")
        if node.children:
            return kind(node, at)
        try:
            memo[node] = kind(node, at)
        except NumericFailure as problem:
            raise failure(node, problem) from None
        return None

    root = start(e)
    if root is None:
        return memo[e]
    stack: list[tuple[Expr, Evaluation]] = [(e, root)]
    sent: Any = None
    while stack:
        node, evaluation = stack[-1]
        try:
            needed = evaluation.send(sent)
        except StopIteration as done:
            memo[node] = sent = done.value
            stack.pop()
            continue
        except NumericFailure as problem:
            raise failure(node, problem) from None
        if needed in memo:
            sent = memo[needed]
            continue
        pending = start(needed)
        if pending is None:
            sent = memo[needed]
        else:
            stack.append((needed, pending))
            sent = None
    return memo[e]


# ---------------------------------------------------------------- NumPy

FLOAT_MAX = 1.7976931348623157e308


def _magnitude(value: Fraction) -> str:
    """|value| as 'about 2.0e308', for a value too large to become a float."""
    exponent10 = math.log10(abs(value.numerator)) - math.log10(value.denominator)
    whole = math.floor(exponent10)
    return f"about {10 ** (exponent10 - whole):.1f}e{whole}"


class NumpyBackend:
    """float64 arithmetic; overflow and invalid values give inf/nan as NumPy does."""

    def __init__(self, factors: dict[int, tuple[Any, Any]] | None = None) -> None:
        import numpy

        self.np = numpy
        # id(value) -> (value, its Cholesky factor L, S = L L^T): one factorisation per spd value, shared by
        # logdet(S) and inv(S); the value is held so that its id is not reused
        self.factors: dict[object, tuple[Any, Any]] = dict(factors or {})

    def constant(self, value: Fraction, rows: int, cols: int) -> Any:
        try:
            number = float(value)
        except OverflowError:  # an exact constant the engine built (2 x 1e308) has no float64 value
            raise EvaluationError(f"a constant of {_magnitude(value)} in this expression is beyond the range of "
                                  f"float64 (about {FLOAT_MAX:.1e}): it cannot be evaluated numerically") from None
        return self.np.full((rows, cols), number)

    def named_constant(self, name: str) -> Any:
        return self.np.full((1, 1), CONSTANTS[name].value)

    def identity(self, size: int) -> Any:
        return self.np.eye(size)

    def matmul(self, a: Any, b: Any) -> Any:
        return a @ b

    def scale(self, scalar: Any, a: Any) -> Any:
        return scalar[0, 0] * a

    def add(self, a: Any, b: Any) -> Any:
        return a + b

    def hadamard(self, a: Any, b: Any) -> Any:
        return a * b

    def divide(self, a: Any, b: Any) -> Any:
        return a / b

    def transpose(self, a: Any) -> Any:
        return a.T

    def scalar_power(self, a: Any, p: Any) -> Any:
        return self.np.power(a, p[0, 0])

    def matrix_power(self, a: Any, k: int) -> Any:
        try:
            return self.np.linalg.matrix_power(a, k)
        except self.np.linalg.LinAlgError as error:
            raise _linear_algebra_failure(error) from None

    def elem_power(self, a: Any, p: Any) -> Any:
        return self.np.power(a, p[0, 0])

    def function(self, name: str, a: Any) -> Any:
        np = self.np
        try:
            return FUNCTIONS[name].numpy(np, a)  # every function of the IR has its NumPy meaning
        except np.linalg.LinAlgError as error:
            raise _linear_algebra_failure(error) from None

    def function_of_columns(self, name: str, a: Any) -> Any:
        return self.function(name, a)  # a function of a vector's NumPy meaning maps each column (core/functions.py)

    def cholesky(self, a: Any) -> Any:
        """The lower Cholesky factor L of a (a = L L^T), computed once per value."""
        found = self.factors.get(id(a))
        if found is not None and found[0] is a:
            return found[1]
        try:
            factor = self.np.linalg.cholesky(a)
        except self.np.linalg.LinAlgError:
            raise NumericFailure("is not positive definite (its Cholesky factorisation fails)") from None
        self.factors[id(a)] = (a, factor)
        return factor

    def spd_function(self, name: str, a: Any) -> Any:
        """logdet(S) = 2 sum(log(diag(L))) and inv(S) = inv(L)^T inv(L), by the Cholesky factor L of S: half the
        work of an LU factorisation, and inv(S) symmetric to the last bit."""
        np = self.np
        if name == "logdet":
            return np.array([[2.0 * np.sum(np.log(np.diagonal(self.cholesky(a))))]])
        inverse_factor = self.inverse_factor(a)
        return inverse_factor.T @ inverse_factor

    def inverse_factor(self, a: Any) -> Any:
        """inv(L), once per value: NumPy has no triangular solve (SciPy is not a dependency), so each solve by L
        would be a whole LU factorisation; with inv(L) kept, every inv(S) b is two O(n^2) products."""
        key = ("inverse", id(a))
        found = self.factors.get(key)
        if found is not None and found[0] is a:
            return found[1]
        factor = self.cholesky(a)
        inverse = self.np.linalg.solve(factor, self.np.eye(len(factor)))
        self.factors[key] = (a, inverse)
        return inverse

    def spd_solve(self, a: Any, b: Any) -> Any:
        """inv(S) b = inv(L)^T (inv(L) b), by the Cholesky factor L of S."""
        inverse_factor = self.inverse_factor(a)
        return inverse_factor.T @ (inverse_factor @ b)

    def kron(self, a: Any, b: Any) -> Any:
        return self.np.kron(a, b)

    def scale_rows(self, v: Any, a: Any) -> Any:
        return v * a

    def scale_columns(self, a: Any, v: Any) -> Any:
        return a * v.T

    def commutation(self, rows: int, cols: int) -> Any:
        return self.np.eye(rows * cols)[commutation_permutation(rows, cols)]

    def adjugate(self, a: Any) -> Any:
        """adj(X) by the SVD X = U S V^T: adj(X) = det(U) det(V) V adj(S) U^T, adj(S)_ii = prod_{j != i} s_j.

        No division by a singular value, so a singular X gets its (finite, often nonzero) adjugate.
        """
        np = self.np
        try:
            u, s, vh = np.linalg.svd(a)
        except np.linalg.LinAlgError as error:
            raise _linear_algebra_failure(error) from None
        before = np.concatenate(([1.0], np.cumprod(s[:-1])))  # prod_{j < i} s_j
        after = np.concatenate((np.cumprod(s[:0:-1])[::-1], [1.0]))  # prod_{j > i} s_j
        sign = np.sign(np.linalg.det(u) * np.linalg.det(vh))  # each is +-1: orthogonal
        return sign * (vh.T * (before * after)) @ u.T


def commutation_permutation(rows: int, cols: int) -> list[int]:
    """Row r of K(rows, cols) is row perm[r] of the identity: (K vec(A))[j + cols i] = vec(A)[i + rows j]."""
    return [i + rows * j for i in range(rows) for j in range(cols)]


def _linear_algebra_failure(error: Exception) -> NumericFailure:
    text = str(error)
    return NumericFailure("is singular" if "singular" in text.lower() else f"cannot be used ({text})")


# ---------------------------------------------------------------- the evaluation plan: stable forms

@lru_cache(maxsize=1024)
def evaluation_plan(e: Expr) -> Expr:
    """e with STABLE_FORMS applied: equal in exact arithmetic, no worse in float64, for NumPy only.

    Where no stable form applies at any distinct node, the plan is e itself (what normalize returns
    then), found by one pass over the distinct nodes, without recursion: a deep network with no
    unstable form is evaluated as it is, whatever its depth.
    """
    if not any(_fires(rule, node) for node in ir.walk(e) for rule in STABLE_FORMS.for_node(node)):
        return e
    return normalize(e, STABLE_FORMS)


def _fires(rule: Rule, node: Expr) -> bool:
    """Whether the rule rewrites this node (as normalize decides it)."""
    out = rule.apply(node)
    return out is not None and out != node


# ---------------------------------------------------------------- binding user values


def bind_sizes(variables: dict[str, Var], shapes: dict[str, tuple[int, ...]]) -> dict[str, int]:
    """Concrete sizes for the dimension symbols, from the shapes of the given values; clear errors on conflicts."""
    sizes: dict[str, int] = {}
    sources: dict[str, str] = {}
    for name, var in variables.items():
        given = shapes[name]
        expected = var.shape
        kind = "a scalar" if expected == (1, 1) else ("a vector" if expected[1] == 1 else "a matrix")
        if expected == (1, 1):
            if given not in ((), (1,), (1, 1)):
                raise EvaluationError(f"{name} is a scalar, but the value given has shape {given}")
            continue
        if expected[1] == 1:
            if len(given) == 2 and given[1] == 1:
                given = (given[0],)
            if len(given) != 1:
                raise EvaluationError(f"{name} is {kind} ({expected[0]}×1), but the value given has shape {given}")
            given = (given[0], 1)
        elif len(given) != 2:
            raise EvaluationError(f"{name} is {kind} ({expected[0]}×{expected[1]}), "
                                  f"but the value given has shape {given}")
        for dim, actual in zip(expected, given, strict=True):
            if isinstance(dim, int):
                if dim != actual:
                    raise EvaluationError(f"{name} must have size {dim} on an axis, but the value has {actual}")
            elif dim in sizes and sizes[dim] != actual:
                raise EvaluationError(f"the sizes do not fit: {sources[dim]} gives {dim} = {sizes[dim]}, "
                                      f"but {name} has shape {shapes[name]}")
            else:
                sizes.setdefault(dim, actual)
                sources.setdefault(dim, name)
    return sizes


SYMMETRY_TOLERANCE = 1e-10  # relative to the largest entry: rounding in a computed S + S^T is not an error


def _as_array(name: str, value: Any) -> Any:
    """A user value as a finite float array, or an EvaluationError naming the variable."""
    import numpy as np

    if isinstance(value, str | bytes):  # NumPy would read "1.5" as a number
        raise EvaluationError(f"the value of {name} is text ({value!r:.40}), not a number or numeric array")
    try:
        raw = np.asarray(value)
        if raw.dtype.kind == "c":
            raise EvaluationError(f"the value of {name} is complex: matcalc evaluates real numbers only")
        if raw.dtype.kind not in "biufO" or (raw.dtype.kind == "O" and any(v is None for v in raw.flat)):
            raise TypeError  # text, dates, records; None (which NumPy would read as nan)
        if raw.dtype == np.float64:
            array = raw  # the common case: no copy
        else:
            with np.errstate(all="ignore"):  # a long double beyond float64 becomes inf, refused below
                array = raw.astype(float)
    except OverflowError:  # a Python int like 10**400
        raise EvaluationError(f"the value of {name} is beyond the range of float64") from None
    except (TypeError, ValueError):
        raise EvaluationError(f"the value of {name} is not a number or numeric array") from None
    if array.size == 0:
        raise EvaluationError(f"the value of {name} is empty")
    if not np.isfinite(array).all():
        what = "nan" if np.any(np.isnan(array)) else "an infinite entry"
        raise EvaluationError(f"the value of {name} holds {what}: only finite numbers can be evaluated")
    return array


def _check_symmetric(name: str, matrix: Any, kind: str = "symmetric") -> None:
    import numpy as np

    largest = float(np.max(np.abs(matrix)))
    asymmetry = float(np.max(np.abs(matrix - matrix.T)))
    if asymmetry > SYMMETRY_TOLERANCE * largest:
        what = "" if kind == "symmetric" else " symmetric"
        raise EvaluationError(f"{name} is declared {kind}, but the value given is not{what}: the largest entry of "
                              f"|{name} - {name}^T| is {asymmetry:.3g} (the largest entry of {name} is {largest:.3g})")


def _check_spd(name: str, matrix: Any) -> Any:
    """The Cholesky factor of the value of a variable declared spd, or an EvaluationError naming it."""
    import numpy as np

    _check_symmetric(name, matrix, "spd (symmetric positive definite)")
    try:
        return np.linalg.cholesky(matrix)
    except np.linalg.LinAlgError:
        smallest = float(np.linalg.eigvalsh(matrix)[0])
        raise EvaluationError(f"{name} is declared spd (symmetric positive definite), but the value given is not "
                              f"positive definite: its Cholesky factorisation fails (its smallest eigenvalue is "
                              f"{smallest:.3g})") from None


def bind_values(values: dict[str, Any], variables: dict[str, Var], optional: dict[str, Var] | None = None,
                symmetric: bool = False, factors_out: dict[int, tuple[Any, Any]] | None = None,
                ) -> tuple[dict[str, Any], dict[str, int]]:
    """User values (scalars as floats, vectors 1-D or n x 1) -> 2-D float arrays and dimension sizes.

    Every name of `variables` needs a value. A name of `optional` (declared, but absent from the
    expression) may have one: it is checked the same way and binds its sizes. With `symmetric`, the
    value of a symmetric variable must be symmetric. The value of an spd variable must always be symmetric
    positive definite (its logdet and inv are read off its Cholesky factor, which sees one triangle only);
    `factors_out` receives each such factor (NumpyBackend.factors).
    """
    if not isinstance(values, Mapping):
        raise EvaluationError("values must be a dict of name -> number or numpy array")
    missing = [name for name in variables if name not in values]
    if missing:
        raise EvaluationError(f"missing value{'s' if len(missing) > 1 else ''} for {', '.join(missing)}")
    given = {**variables, **{name: var for name, var in (optional or {}).items()
                             if name in values and name not in variables}}
    arrays = {name: _as_array(name, values[name]) for name in given}
    sizes = bind_sizes(given, {name: array.shape for name, array in arrays.items()})
    # vectors and scalars become columns (a scalar a 1x1 one); matrices are 2-D already (bind_sizes checked)
    two_d = {name: arrays[name].reshape(-1, 1) if var.shape[1] == 1 else arrays[name] for name, var in given.items()}
    for name, var in given.items():
        if var.positive_definite:
            factor = _check_spd(name, two_d[name])
            if factors_out is not None:
                factors_out[id(two_d[name])] = (two_d[name], factor)
        elif symmetric and var.symmetric:
            _check_symmetric(name, two_d[name])
    return two_d, sizes


def evaluate_numpy(exprs: list[Expr], values: dict[str, Any], variables: dict[str, Var],
                   optional: dict[str, Var] | None = None, symmetric: bool = False,
                   sizes_out: dict[str, int] | None = None) -> list[Any]:
    """Evaluate expressions with NumPy on user values (scalars as floats, vectors 1-D or n x 1).

    A dimension name may be given a size too ({"n": 3}), for a size no variable's value tells.
    `symmetric` refuses a non-symmetric value for a symmetric variable: a derivative is right only on
    symmetric values, while a function is read on all matrices (finite differences perturb one entry).
    Each expression goes through its evaluation plan (STABLE_FORMS). Overflow and invalid operations
    give inf and nan, as NumPy does, whatever np.seterr says: never a FloatingPointError.
    """
    import numpy as np

    given = _given_sizes(exprs, values, variables)
    factors: dict[int, tuple[Any, Any]] = {}
    two_d, sizes = bind_values({k: v for k, v in values.items() if k not in given} if given else values,
                               variables, optional, symmetric, factors)
    for dim, value in given.items():
        if sizes.setdefault(dim, value) != value:
            raise EvaluationError(f"the size {dim} = {value} given contradicts the values, which give {sizes[dim]}")
    unknown = {d for e in exprs for d in _dims_of(e)} - set(sizes)
    if unknown:
        raise EvaluationError(f"cannot tell the size {', '.join(sorted(unknown))} from the values given")
    if sizes_out is not None:  # the sizes bound, for a caller that reshapes the result (a tensor's axes)
        sizes_out.update(sizes)
    backend = NumpyBackend(factors)
    plans = [evaluation_plan(e) for e in exprs]
    for plan in plans:
        _check_fits(plan, sizes)
    with np.errstate(all="ignore"):
        return [interpret(plan, two_d, sizes, backend) for plan in plans]


# The most entries one evaluated array may have (2 GiB of float64). A structured matrix (an identity, a Kronecker
# product, a commutation matrix, diag of a long vector) is dense in NumPy: d x / d x for a 10^6-vector would be a
# 10^6 x 10^6 identity, 7.3 TiB. Such a node is refused before anything is allocated, naming its size.
MAX_ENTRIES = 2**28


def _check_fits(plan: Expr, sizes: dict[str, int]) -> None:
    for node in ir.walk(plan):
        rows, cols = (ir.dim_value(dim, sizes) for dim in node.shape)
        if rows * cols > MAX_ENTRIES:
            raise EvaluationError(
                f"`{abbreviate(to_text(node))}` would be a {rows:,}×{cols:,} matrix ({rows * cols:.2e} entries, "
                f"{_bytes(rows * cols * 8)} as float64), too large to evaluate (at most "
                f"{MAX_ENTRIES:,} entries)")


def _bytes(count: int) -> str:
    """A size in bytes as 7.3 TiB."""
    amount, unit = float(count), "bytes"
    for larger in ("KiB", "MiB", "GiB", "TiB"):
        if amount < 1024:
            break
        amount, unit = amount / 1024, larger
    return f"{amount:.1f} {unit}"


def _given_sizes(exprs: list[Expr], values: dict[str, Any], variables: dict[str, Var]) -> dict[str, int]:
    """The sizes given by dimension name in `values`, checked."""
    if not isinstance(values, Mapping):
        return {}
    given: dict[str, int] = {}
    for dim in {d for e in exprs for d in _dims_of(e)} - set(variables):
        if dim in values:
            value = values[dim]
            if isinstance(value, bool) or not isinstance(value, int | np_integer()) or value < 1:
                raise EvaluationError(f"the size {dim} must be a whole number of at least 1, not {value!r}")
            given[dim] = int(value)
    return given


def np_integer() -> type:
    import numpy

    return numpy.integer


def _dims_of(e: Expr) -> set[str]:
    from ..core.ir import dimensions

    return set(dimensions([e]))


def squeeze(array: Any, shape: Shape) -> Any:
    """2-D value -> its natural NumPy shape: a scalar 0-d, a column or row vector 1-D."""
    if shape == (1, 1):
        return array.reshape(())
    if shape[1] == 1 or shape[0] == 1:
        return array.reshape(-1)
    return array


def arrange(value: Any, d: Result, sizes: dict[str, int], form: str = "tensor") -> Any:
    """A derivative's evaluated 2-D value as the user gets it: with form="tensor", an array with the output's axes,
    then the variable's; with form="vec", the Jacobian of the vecs d vec(F) / d vec(X)^T (both column-major)."""
    import numpy as np

    if not isinstance(form, str) or form not in ("tensor", "vec"):
        raise ParseError(f"form must be 'tensor' or 'vec', not {form!r}")
    if d.form == "matrix" and form == "tensor":
        return squeeze(value, d.expr.shape)
    output, variable = d.split_axes
    axis_sizes = tuple(ir.dim_value(x, sizes) for x in (*output, *variable))
    if d.form == "vec":  # J[vec index of the output, vec index of X]: column-major over all the axes
        tensor = np.reshape(value, axis_sizes, order="F")
    else:
        matrix = value.T if DerivativeSpec(d.kind, d.layout).transposed else value
        tensor = np.reshape(squeeze(matrix, matrix.shape), axis_sizes)
    if form == "vec":  # rows: vec of the output's axes; columns: vec of the variable's
        rows = int(np.prod(axis_sizes[: len(output)], dtype=int))
        return np.reshape(tensor, (rows, -1), order="F")
    return tensor
