"""Stage 5b: evaluate an expression on concrete values.

One interpreter walks the IR; a backend supplies the arithmetic: NumPy here (imported lazily),
SymPy in verify.py. Every value is a 2-D array: a scalar is 1x1, a vector n x 1.
"""

from __future__ import annotations

from fractions import Fraction
from functools import reduce
from typing import Any, Protocol

from .errors import EvaluationError
from .functions import IR_FUNCTIONS
from .ir import (
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


class Backend(Protocol):
    def constant(self, value: Fraction, rows: int, cols: int) -> Any: ...
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


def interpret(e: Expr, values: dict[str, Any], sizes: dict[str, int], backend: Backend) -> Any:
    """The value of e: `values` maps variable names to 2-D backend arrays, `sizes` dimension names to ints."""
    memo: dict[Expr, Any] = {}

    def size(dim: Dim) -> int:
        return dim if isinstance(dim, int) else sizes[dim]

    def concrete(shape: Shape) -> tuple[int, int]:
        return size(shape[0]), size(shape[1])

    def run(node: Expr) -> Any:
        if node in memo:
            return memo[node]
        result = _step(node)
        memo[node] = result
        return result

    def _step(node: Expr) -> Any:
        if isinstance(node, Var):
            return values[node.name]
        if isinstance(node, Num):
            return backend.constant(node.value, 1, 1)
        if isinstance(node, Fill):
            return backend.constant(node.value, *concrete(node.shape))
        if isinstance(node, Identity):
            return backend.identity(size(node.size))
        if isinstance(node, Size):
            return backend.constant(Fraction(size(node.dim)), 1, 1)
        if isinstance(node, Add):
            return reduce(backend.add, map(run, node.terms))
        if isinstance(node, MatMul):
            scalars = [run(f) for f in node.factors if f.is_scalar]
            chain = [run(f) for f in node.factors if not f.is_scalar]
            product = reduce(backend.matmul, chain) if chain else scalars.pop()
            return reduce(lambda value, scalar: backend.scale(scalar, value), scalars, product)
        if isinstance(node, Transpose):
            return backend.transpose(run(node.arg))
        if isinstance(node, Hadamard):
            return reduce(backend.hadamard, map(run, node.factors))
        if isinstance(node, ElemDiv):
            return backend.divide(run(node.numerator), run(node.denominator))
        if isinstance(node, Power):
            if node.base.is_scalar:
                return backend.scalar_power(run(node.base), run(node.exponent))
            return backend.matrix_power(run(node.base), int(node.exponent.value))  # type: ignore[attr-defined]
        if isinstance(node, ElemPower):
            return backend.elem_power(run(node.base), run(node.exponent))
        if isinstance(node, Func):
            return backend.function(node.name, run(node.arg))
        raise EvaluationError(f"cannot evaluate {node} (a {type(node).__name__})")

    return run(e)


# ---------------------------------------------------------------- NumPy


class NumpyBackend:
    """float64 arithmetic; overflow and invalid values give inf/nan as NumPy does."""

    def __init__(self) -> None:
        import numpy

        self.np = numpy

    def constant(self, value: Fraction, rows: int, cols: int) -> Any:
        return self.np.full((rows, cols), float(value))

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
        return self.np.linalg.matrix_power(a, k)

    def elem_power(self, a: Any, p: Any) -> Any:
        return self.np.power(a, p[0, 0])

    def function(self, name: str, a: Any) -> Any:
        np = self.np
        if name == "diag":
            if a.shape == (1, 1):
                return a
            if a.shape[1] == 1 or a.shape[0] == 1:
                return np.diag(a.ravel())
            return np.diag(a).reshape(-1, 1)
        return _NUMPY_FUNCTIONS[name](np, a)


def _softmax(np: Any, a: Any) -> Any:
    shifted = np.exp(a - a.max())
    return shifted / shifted.sum()


def _logsumexp(np: Any, a: Any) -> Any:
    top = a.max()
    return np.array([[top + np.log(np.exp(a - top).sum())]])


def _logdet(np: Any, a: Any) -> Any:
    sign, logabs = np.linalg.slogdet(a)
    return np.array([[logabs if sign > 0 else np.nan]])


_NUMPY_FUNCTIONS: dict[str, Any] = {
    "exp": lambda np, a: np.exp(a),
    "log": lambda np, a: np.log(a),
    "sin": lambda np, a: np.sin(a),
    "cos": lambda np, a: np.cos(a),
    "tan": lambda np, a: np.tan(a),
    "tanh": lambda np, a: np.tanh(a),
    "sigmoid": lambda np, a: 0.5 * (1.0 + np.tanh(0.5 * a)),  # stable for large |a|
    "relu": lambda np, a: np.maximum(a, 0.0),
    "softplus": lambda np, a: np.logaddexp(0.0, a),
    "sqrt": lambda np, a: np.sqrt(a),
    "abs": lambda np, a: np.abs(a),
    "sign": lambda np, a: np.sign(a),
    "step": lambda np, a: (a > 0).astype(float),
    "arcsin": lambda np, a: np.arcsin(a),
    "arccos": lambda np, a: np.arccos(a),
    "arctan": lambda np, a: np.arctan(a),
    "sum": lambda np, a: np.array([[a.sum()]]),
    "norm1": lambda np, a: np.array([[np.abs(a).sum()]]),
    "norm2": lambda np, a: np.array([[np.sqrt((a * a).sum())]]),
    "tr": lambda np, a: np.array([[np.trace(a)]]),
    "det": lambda np, a: np.array([[np.linalg.det(a)]]),
    "logdet": _logdet,
    "inv": lambda np, a: np.linalg.inv(a),
    "softmax": _softmax,
    "logsumexp": _logsumexp,
}
assert set(_NUMPY_FUNCTIONS) | {"diag"} == IR_FUNCTIONS, "every function needs a NumPy implementation"


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


def bind_values(values: dict[str, Any], variables: dict[str, Var]) -> tuple[dict[str, Any], dict[str, int]]:
    """User values (scalars as floats, vectors 1-D or n x 1) -> 2-D float arrays and dimension sizes."""
    import numpy as np

    if not isinstance(values, dict):
        raise EvaluationError("values must be a dict of name -> number or numpy array")
    missing = [name for name in variables if name not in values]
    if missing:
        raise EvaluationError(f"missing value{'s' if len(missing) > 1 else ''} for {', '.join(missing)}")
    arrays: dict[str, Any] = {}
    for name in variables:
        try:
            arrays[name] = np.asarray(values[name], dtype=float)
        except (TypeError, ValueError):
            raise EvaluationError(f"the value of {name} is not a number or numeric array") from None
    sizes = bind_sizes(variables, {name: arrays[name].shape for name in variables})
    # vectors and scalars become columns (a scalar a 1x1 one); matrices are 2-D already (bind_sizes checked)
    two_d = {name: arrays[name].reshape(-1, 1) if var.shape[1] == 1 else arrays[name]
             for name, var in variables.items()}
    return two_d, sizes


def evaluate_numpy(exprs: list[Expr], values: dict[str, Any], variables: dict[str, Var]) -> list[Any]:
    """Evaluate expressions with NumPy on user values (scalars as floats, vectors 1-D or n x 1).

    A dimension name may be given a size too ({"n": 3}), for a size no variable's value tells.
    """
    given = _given_sizes(exprs, values, variables)
    two_d, sizes = bind_values({k: v for k, v in values.items() if k not in given}, variables)
    for dim, value in given.items():
        if sizes.setdefault(dim, value) != value:
            raise EvaluationError(f"the size {dim} = {value} given contradicts the values, which give {sizes[dim]}")
    unknown = {d for e in exprs for d in _dims_of(e)} - set(sizes)
    if unknown:
        raise EvaluationError(f"cannot tell the size {', '.join(sorted(unknown))} from the values given")
    backend = NumpyBackend()
    return [interpret(e, two_d, sizes, backend) for e in exprs]


def _given_sizes(exprs: list[Expr], values: dict[str, Any], variables: dict[str, Var]) -> dict[str, int]:
    if not isinstance(values, dict):
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
    from .ir import dimensions

    return set(dimensions([e]))


def squeeze(array: Any, shape: Shape) -> Any:
    """2-D value -> its natural NumPy shape: a scalar 0-d, a column or row vector 1-D."""
    if shape == (1, 1):
        return array.reshape(())
    if shape[1] == 1 or shape[0] == 1:
        return array.reshape(-1)
    return array
