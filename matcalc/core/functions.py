"""The named functions of the input language: one table, read by every stage.

Each FunctionSpec says everything a stage needs to know about one function: its kind (how
frontend/typecheck.py types a call), the shape of its result (`result`, read by ir.function_shape), whether
f(0) = 0 (read by ir.func), its differential rule (calculus/differential.py makes one rule of the table
DIFFERENTIAL_RULES from it), its NumPy meaning (backends/interpret.py), its SymPy meaning
(backends/verify.py), its generated code (backends/pycode.py), its LaTeX (render/text.py); the grammar's FUNC
terminal is made of these names (frontend/parse.grammar_text). This module builds with the IR; the IR reads
the shapes and zeros from ir.FUNCTION_FACTS, which this table fills, so there is no import circle.

NumPy and SymPy are imported lazily (`import matcalc` imports neither), so their meanings take the
module as their first parameter: `numpy(np, a)` maps a 2-D array to a 2-D array (a scalar is 1x1, a
vector n x 1), `sympy(sp, a)` a SymPy Matrix to a Matrix. The NumPy meanings are the numerically stable
forms (sigmoid, softplus, softmax, logsumexp, logdet); the SymPy meanings are the exact definitions.

The functions of kind "lowered" never reach the IR: the parser writes them with other nodes (`rows(X)`
is the size of a dimension, `mean(u)` is `sum(u) / size(u)`, `max(u, v)` is `u + relu(v - u)`), so they have no
meaning of their own; so are the reductions along an axis (`sum(U, 1)` is `vector(1)^T U`). A function of a vector
(kind "vector": softmax, logsumexp) takes an axis as a node of its own: its NumPy meaning maps each column of a
matrix (axis 1); the backends transpose for axis 2 and apply the SymPy meaning column by column.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any, Literal, Protocol

from . import ir
from .ir import Expr

Kind = Literal["elementwise", "scalar_of_matrix", "square", "vector", "diag", "reshape", "lowered"]
# The result's shape from the argument's: the same shape, a scalar, diag's (vector <-> square matrix), or vec's
# (an m x n matrix -> an mn vector).
Result = Literal["same", "scalar", "diag", "vec"]
Meaning = Callable[[Any, Any], Any]  # (module, value) -> value


class Builder(Protocol):
    """What a lowering writes with: the type checker's operations over its typed operands (frontend/typecheck.py
    implements it), with broadcasting and shape checks as in the input language. Values are opaque here."""

    def call(self, name: str, *args: Any, axis: int = 0) -> Any: ...
    def add(self, a: Any, b: Any) -> Any: ...
    def sub(self, a: Any, b: Any) -> Any: ...
    def neg(self, a: Any) -> Any: ...
    def mul(self, a: Any, b: Any) -> Any: ...  # a matrix product, or a scalar times anything
    def div(self, a: Any, b: Any) -> Any: ...  # by a scalar
    def hadamard(self, a: Any, b: Any) -> Any: ...
    def transpose(self, a: Any) -> Any: ...
    def number(self, value: int | Fraction) -> Any: ...
    def ones_column(self) -> Any: ...  # vector(1), of the length its use tells
    def size(self, a: Any, axis: int) -> Any: ...  # rows (1), columns (2) or entries (0) of a, a scalar
    def is_number(self, a: Any) -> bool: ...
    def same_shape(self, what: str, a: Any, b: Any) -> None: ...  # ShapeError naming both unless they can broadcast
    def require_scalar(self, what: str, a: Any) -> None: ...  # ShapeError unless a is a scalar


# A lowering: (builder, the arguments, the axis or 0) -> the call written with other operations.
Lowering = Callable[[Builder, list[Any], int], Any]


@dataclass(frozen=True)
class FunctionSpec:
    name: str
    kind: Kind
    meaning: str
    numpy: Meaning | None = None
    sympy: Meaning | None = None
    # LaTeX: an operator name written before \left(u\right), or a template where # stands for the argument
    # (the function has brackets of its own); a template starting with # is postfix: its argument is a base
    latex: str = ""
    zero_preserving: bool = False  # f(0) = 0, entry by entry for an element-wise function
    result: Result = "scalar"  # the shape of f(u) from u's (ir.function_shape)
    # The differential rule: its statement, and (f(u), du) -> d f(u), built with the IR's smart constructors; the
    # name under which a derivation cites it, and an example (expression, variable) whose derivative uses it.
    # The element-wise functions are all cited as "elementwise function" (calculus/differential.py).
    derivative: str = ""
    differential: Callable[[Expr, Expr], Expr] | None = None
    cited_as: str = ""
    example: tuple[str, str] = ("", "")
    # Generated code (codegen.py): a template per backend ("numpy", "jax", "torch") where {m} is the backend's
    # module (np, jnp, torch) and {a} the argument; a backend not listed writes {m}.<name>({a}).
    code: dict[str, str] = field(default_factory=dict)
    # The source of `_<name>`, a function the generated code calls, per backend (NumPy has no softmax): written
    # once, before the generated function, where its code uses it.
    helpers: dict[str, str] = field(default_factory=dict)
    # The calls of more than one argument, as `usage` shows them (`max(u, v)`): `arguments` is how many (an axis,
    # if `axes`, comes after them). A function of a vector (kind "vector") applies to each column or row given an
    # axis; a "lowered" function, or a call with an axis that `lowering` accepts, is written with other operations
    # (`lowering`, whose statement `lowered_as` gives) and never reaches the IR.
    arguments: int = 1
    axes: bool = False
    usage: str = ""
    lowering: Lowering | None = None
    lowered_as: str = ""
    # MATLAB's reduction form f(U, [], k) (max, min): the axis is the third argument, after an empty `[]` (the
    # second argument is taken by the two-argument form f(u, v)); f(u) of a vector is its reduction. The printer
    # writes the axis the same way, so that the text parses back.
    axis_after_empty: bool = False


def _each(scalar: Callable[[Any], Callable[[Any], Any]]) -> Meaning:
    """The SymPy meaning of an element-wise function, from its meaning on one entry: scalar(sp)(v)."""
    return lambda sp, a: a.applyfunc(scalar(sp))


Differential = Callable[[Expr, Expr], Expr]  # (u, du) -> d f(u) for an element-wise f


def _elementwise(name: str, meaning: str, numpy: Meaning, sympy: Callable[[Any], Callable[[Any], Any]],
                 latex: str, zero_preserving: bool = False, *, derivative: tuple[str, Differential],
                 code: dict[str, str] | None = None, helpers: dict[str, str] | None = None) -> FunctionSpec:
    statement, of_argument = derivative
    return FunctionSpec(name, "elementwise", meaning, numpy, _each(sympy), latex, zero_preserving, result="same",
                        derivative=statement, differential=lambda e, du: of_argument(e.arg, du),  # type: ignore[attr-defined]
                        cited_as="elementwise function", example=(f"{name}(0.5 x)", "x"), code=code or {},
                        helpers=helpers or {})


def _square(u: Expr) -> Expr:
    return ir.elem_power(u, ir.num(2))


def _one_minus(u: Expr) -> Expr:
    return ir.sub(ir.ones(u.shape), u)


def normal_distribution(u: Expr) -> Expr:
    """Phi(u) = (1 + erf(u / sqrt(2))) / 2, the standard normal distribution, entry by entry: gelu(u) = u .* Phi(u),
    and gelu's derivative holds it (the generated code computes it once for both: backends/pycode.py)."""
    return ir.mul(ir.num(Fraction(1, 2)), ir.add(ir.ones(u.shape), ir.func("erf", ir.mul(u, ir.reciprocal(
        ir.func("sqrt", ir.num(2)))))))


def _gelu_differential(u: Expr, du: Expr) -> Expr:
    """d gelu(u) = (Phi(u) + u .* phi(u)) .* du: Phi(u) = (1 + erf(u / sqrt(2))) / 2 the normal distribution,
    phi(u) = exp(-u.^2 / 2) / sqrt(2 pi) its density."""
    half = ir.num(Fraction(1, 2))
    density = ir.mul(ir.reciprocal(ir.func("sqrt", ir.mul(ir.num(2), ir.Constant("pi")))),
                     ir.func("exp", ir.neg(ir.mul(half, _square(u)))))
    return ir.hadamard(ir.add(normal_distribution(u), ir.hadamard(u, density)), du)


def _elu_differential(u: Expr, du: Expr) -> Expr:
    """d elu(u) = exp(min(u, 0)) .* du, written exp(u - relu(u)): 1 for u > 0, e^u below, 1 at 0 (elu is smooth
    there: both sides' slopes are 1)."""
    return ir.hadamard(ir.func("exp", ir.sub(u, ir.func("relu", u))), du)


def _column_sums(a: Expr) -> Expr:
    """The sum of each column of a, repeated down the column: vector(1) vector(1)^T a."""
    ones = ir.ones((a.shape[0], 1))
    return ir.mul(ones, ir.transpose(ones), a)


def _row_sums(a: Expr) -> Expr:
    """The sum of each row of a, repeated along the row: a vector(1) vector(1)^T."""
    ones = ir.ones((a.shape[1], 1))
    return ir.mul(a, ones, ir.transpose(ones))


def _softmax_differential(e: Expr, du: Expr) -> Expr:
    """d softmax(u) = s .* du - s s^T du; of each column (axis 1) or row (axis 2) of U: S .* du minus S times the
    column's (row's) sum of S .* du."""
    axis = e.axis  # type: ignore[attr-defined]
    if not axis:
        return ir.sub(ir.hadamard(e, du), ir.mul(e, ir.transpose(e), du))
    weighted = ir.hadamard(e, du)
    return ir.sub(weighted, ir.hadamard(e, _column_sums(weighted) if axis == 1 else _row_sums(weighted)))


def _weighted_reduction(weights: str) -> Callable[[Expr, Expr], Expr]:
    """d f(u) -> w(u)^T du for a reduction whose gradient is the vector w(u) (`weights`, a function of the language);
    of each column (axis 1): vector(1)^T (w(U, 1) .* dU), a row; of each row (axis 2): (w(U, 2) .* dU) vector(1)."""

    def differential(e: Expr, du: Expr) -> Expr:
        axis, u = e.axis, e.arg  # type: ignore[attr-defined]
        if not axis:
            return ir.mul(ir.transpose(ir.func(weights, u)), du)
        weighted = ir.hadamard(ir.func(weights, u, axis), du)
        if axis == 1:
            return ir.mul(ir.transpose(ir.ones((u.shape[0], 1))), weighted)
        return ir.mul(weighted, ir.ones((u.shape[1], 1)))

    return differential


# d logsumexp(u) = softmax(u)^T du
_logsumexp_differential = _weighted_reduction("softmax")
# d max(u) = argmax_mask(u)^T du: the derivative shared equally among tied entries (the mask is softmax's limit at
# zero temperature)
_max_differential = _weighted_reduction("argmax_mask")


# ---------------------------------------------------------------- lowerings: calls written with other operations


def _sum_along(b: Builder, args: list[Any], axis: int) -> Any:
    """sum(U, 1) -> vector(1)^T U (a row: each column's sum);  sum(U, 2) -> U vector(1) (a column)."""
    (u,) = args
    ones = b.ones_column()
    return b.mul(b.transpose(ones), u) if axis == 1 else b.mul(u, ones)


def _mean(b: Builder, args: list[Any], axis: int) -> Any:
    """mean(u) -> sum(u) / size(u);  mean(U, 1) -> sum(U, 1) / rows(U);  mean(U, 2) -> sum(U, 2) / cols(U)."""
    (u,) = args
    return b.div(b.call("sum", u, axis=axis), b.size(u, axis))


def _variance(b: Builder, args: list[Any], axis: int) -> Any:
    """var(u) -> mean((u - mean(u)).^2), the population variance (as NumPy's and layer norm's); along an axis, of
    each column or row."""
    (u,) = args
    centred = b.sub(u, b.call("mean", u, axis=axis))
    return b.call("mean", b.hadamard(centred, centred), axis=axis)


def _norm2_along(b: Builder, args: list[Any], axis: int) -> Any:
    """norm2(U, k) -> sqrt(sum(U .* U, k)): the Euclidean norm of each column (k = 1) or row (k = 2)."""
    (u,) = args
    return b.call("sqrt", b.call("sum", b.hadamard(u, u), axis=axis))


def _norm1_along(b: Builder, args: list[Any], axis: int) -> Any:
    """norm1(U, k) -> sum(abs(U), k)."""
    (u,) = args
    return b.call("sum", b.call("abs", u), axis=axis)


def _maximum(b: Builder, args: list[Any], axis: int) -> Any:
    """max(u, v) -> u + relu(v - u);  max(u, c) and max(c, u) for a number c -> c + relu(u - c) (max(0, u) is
    relu(u)). At a tie the derivative is step's at 0: that of the number's side, or of u. (max(u) and
    max(U, [], k), the largest entry, are nodes of their own: only the two-argument form is lowered.)"""
    u, v = args
    b.same_shape("max", u, v)
    if b.is_number(u) or b.is_number(v):
        c, w = (u, v) if b.is_number(u) else (v, u)
        return b.add(c, b.call("relu", b.sub(w, c)))
    return b.add(u, b.call("relu", b.sub(v, u)))


def _minimum(b: Builder, args: list[Any], axis: int) -> Any:
    """min(u, v) -> u - relu(u - v);  min(u, c) and min(c, u) for a number c -> c - relu(c - u);  the smallest
    entry: min(u) -> -max(-u), min(U, [], k) -> -max(-U, [], k)."""
    if len(args) == 1:
        return b.neg(b.call("max", b.neg(args[0]), axis=axis))
    u, v = args
    b.same_shape("min", u, v)
    if b.is_number(u) or b.is_number(v):
        c, w = (u, v) if b.is_number(u) else (v, u)
        return b.sub(c, b.call("relu", b.sub(c, w)))
    return b.sub(u, b.call("relu", b.sub(u, v)))


def _leaky_relu(b: Builder, args: list[Any], axis: int) -> Any:
    """leaky_relu(u, a) -> a u + (1 - a) relu(u), for a scalar slope a: u above 0, a u below; the derivative at 0 is
    the slope below, a (as relu's is 0)."""
    u, slope = args
    b.require_scalar("the slope of leaky_relu(u, a)", slope)
    return b.add(b.mul(slope, u), b.mul(b.sub(b.number(1), slope), b.call("relu", u)))


def _differential(cited_as: str, statement: str, rule: Callable[[Expr, Expr], Expr],
                  example: tuple[str, str]) -> dict[str, Any]:
    """The differential fields of a FunctionSpec that is not element-wise."""
    return {"cited_as": cited_as, "derivative": statement, "differential": rule, "example": example}


# ---------------------------------------------------------------- numerically stable NumPy forms


def _sigmoid(np: Any, a: Any) -> Any:
    """1 / (1 + e^-a), with exp of a non-positive number only: no overflow, full precision in both tails."""
    small = np.exp(-np.abs(a))
    return np.where(a >= 0, 1.0 / (1.0 + small), small / (1.0 + small))


def _softmax(np: Any, a: Any) -> Any:
    """Of each column: exp(a - max) / sum, and where a column holds +inf, the limit (its infinite entries share the
    whole mass)."""
    top = a.max(axis=0, keepdims=True)
    shifted = np.exp(a - np.where(np.isfinite(top), top, 0.0))
    out = shifted / shifted.sum(axis=0, keepdims=True)
    if np.any(top == np.inf):
        mass = (a == np.inf).astype(float)
        out = np.where(top == np.inf, mass / np.maximum(mass.sum(axis=0, keepdims=True), 1.0), out)
    return out


def _logsumexp(np: Any, a: Any) -> Any:
    """Of each column: max + log(sum(exp(a - max))), a row."""
    top = a.max(axis=0, keepdims=True)
    top = np.where(np.isfinite(top), top, 0.0)
    return top + np.log(np.exp(a - top).sum(axis=0, keepdims=True))


def _max(np: Any, a: Any) -> Any:
    """Of each column: its largest entry, a row."""
    return a.max(axis=0, keepdims=True)


def _argmax_mask(np: Any, a: Any) -> Any:
    """Of each column: 1 / count where the entry is the column's largest (count the entries that tie), else 0."""
    mask = (a == a.max(axis=0, keepdims=True)).astype(float)
    return mask / mask.sum(axis=0, keepdims=True)


def _logdet(np: Any, a: Any) -> Any:
    sign, logabs = np.linalg.slogdet(a)
    return np.array([[logabs if sign > 0 else np.nan]])


@functools.cache
def _erf_functions() -> tuple[Callable[[Any], Any], Callable[[Any], Any]]:
    """(erf, erfc) on arrays: SciPy's, where it is installed (JAX brings it); else math's, entry by entry (NumPy has
    none, and SciPy is not a dependency), both in float64 to the last digit or so."""
    try:
        from scipy.special import erf, erfc
    except ImportError:
        import numpy

        return (numpy.vectorize(math.erf, otypes=[float]), numpy.vectorize(math.erfc, otypes=[float]))
    return erf, erfc


def _erf(np: Any, a: Any) -> Any:
    return _erf_functions()[0](a)


def _gelu(np: Any, a: Any) -> Any:
    """u Phi(u) with Phi(u) = erfc(-u / sqrt(2)) / 2: no 1 + erf(..) cancelling far in the negative tail."""
    return a * _erf_functions()[1](-a / math.sqrt(2.0)) / 2


def _elu(np: Any, a: Any) -> Any:
    return np.where(a > 0, a, np.expm1(np.minimum(a, 0.0)))


def _diag_numpy(np: Any, a: Any) -> Any:
    if a.shape == (1, 1):
        return a
    if a.shape[1] == 1 or a.shape[0] == 1:
        return np.diag(a.ravel())
    return np.diag(a).reshape(-1, 1)


# ---------------------------------------------------------------- exact SymPy forms


def _softmax_sympy(sp: Any, a: Any) -> Any:
    exps = a.applyfunc(sp.exp)
    total = sum(exps)
    return exps.applyfunc(lambda v: v / total)


def _argmax_mask_sympy(sp: Any, a: Any) -> Any:
    """Entry i is top_i / sum(top), top_i = prod over j != i of H(u_i - u_j) with H(0) = 1: 1 where u_i is a largest
    entry, so each of the tied largest entries gets 1 / count. Exact at exact values; SymPy differentiates it (0 off
    the ties, where the derivative's DiracDelta vanishes), and a tie is a Heaviside at 0: a kink, which proves
    nothing (verify's _refuse_kinks)."""
    entries = list(a)
    top = [sp.Mul(*(sp.Heaviside(v - w, 1) for j, w in enumerate(entries) if j != i)) for i, v in enumerate(entries)]
    count = sp.Add(*top)
    return sp.Matrix(a.rows, a.cols, [t / count for t in top])


def _diag_sympy(sp: Any, a: Any) -> Any:
    if a.shape == (1, 1):
        return a
    if a.cols == 1 or a.rows == 1:
        return sp.diag(*list(a))
    return sp.Matrix([[a[i, i]] for i in range(a.rows)])


# ---------------------------------------------------------------- helpers of the generated code

_SOFTMAX_NUMPY = '''def _softmax(a):
    e = np.exp(a - np.max(a))
    return e / np.sum(e)'''
_LOGSUMEXP_NUMPY = '''def _logsumexp(a):
    top = np.max(a)
    return top + np.log(np.sum(np.exp(a - top)))'''
_ARGMAX_MASK_NUMPY = '''def _argmax_mask(a):
    mask = (a == np.max(a)).astype(a.dtype)
    return mask / np.sum(mask)'''
_ARGMAX_MASK_JAX = '''def _argmax_mask(a):
    mask = (a == jnp.max(a)).astype(a.dtype)
    return mask / jnp.sum(mask)'''
_ARGMAX_MASK_TORCH = '''def _argmax_mask(a):
    mask = (a == torch.max(a)).to(a.dtype)
    return mask / torch.sum(mask)'''
_LOGDET_NUMPY = '''def _logdet(a):
    sign, value = np.linalg.slogdet(a)
    return value if sign > 0 else np.nan'''
_LOGDET_JAX = '''def _logdet(a):
    sign, value = jnp.linalg.slogdet(a)
    return jnp.where(sign > 0, value, jnp.nan)'''
_ERF_NUMPY = '''def _erf(a):
    try:
        from scipy.special import erf
    except ImportError:  # NumPy has no erf: math's, entry by entry
        from math import erf
        return np.vectorize(erf, otypes=[float])(a)
    return erf(a)'''
_GELU_NUMPY = '''def _gelu(a):
    try:
        from scipy.special import erfc
    except ImportError:  # NumPy has no erfc: math's, entry by entry
        from math import erfc
        erfc = np.vectorize(erfc, otypes=[float])
    return a * erfc(-a / 1.4142135623730951) / 2'''
_LOGDET_TORCH = '''def _logdet(a):
    sign, value = torch.linalg.slogdet(a)
    return torch.where(sign > 0, value, torch.full_like(value, float("nan")))'''


_SPECS = [
    _elementwise("exp", "e^u, entry by entry", lambda np, a: np.exp(a), lambda sp: sp.exp, r"\exp",
                 derivative=("d exp(u) -> exp(u) .* du",
                             lambda u, du: ir.hadamard(ir.func("exp", u), du))),
    _elementwise("log", "natural logarithm, entry by entry", lambda np, a: np.log(a), lambda sp: sp.log, r"\log",
                 derivative=("d log(u) -> du ./ u",
                             lambda u, du: ir.elem_div(du, u))),
    _elementwise("sin", "sine, entry by entry", lambda np, a: np.sin(a), lambda sp: sp.sin, r"\sin", True,
                 derivative=("d sin(u) -> cos(u) .* du",
                             lambda u, du: ir.hadamard(ir.func("cos", u), du))),
    _elementwise("cos", "cosine, entry by entry", lambda np, a: np.cos(a), lambda sp: sp.cos, r"\cos",
                 derivative=("d cos(u) -> -sin(u) .* du",
                             lambda u, du: ir.neg(ir.hadamard(ir.func("sin", u), du)))),
    _elementwise("tan", "tangent, entry by entry", lambda np, a: np.tan(a), lambda sp: sp.tan, r"\tan", True,
                 derivative=("d tan(u) -> du ./ cos(u).^2",
                             lambda u, du: ir.elem_div(du, _square(ir.func("cos", u))))),
    _elementwise("tanh", "hyperbolic tangent, entry by entry", lambda np, a: np.tanh(a), lambda sp: sp.tanh,
                 r"\tanh", True,
                 derivative=("d tanh(u) -> (1 - tanh(u).^2) .* du",
                             lambda u, du: ir.hadamard(_one_minus(_square(ir.func("tanh", u))), du))),
    _elementwise("sigmoid", "logistic function 1 / (1 + e^-u), entry by entry", _sigmoid,
                 lambda sp: (lambda v: 1 / (1 + sp.exp(-v))), r"\sigma",
                 derivative=("d sigmoid(u) -> sigmoid(u) .* (1 - sigmoid(u)) .* du",
                             lambda u, du: ir.hadamard(ir.func("sigmoid", u),
                                                           _one_minus(ir.func("sigmoid", u)), du)),
                 code={"numpy": "np.exp(-np.logaddexp(0.0, -{a}))", "jax": "jax.nn.sigmoid({a})",
                       "torch": "torch.sigmoid({a})"}),
    _elementwise("relu", "max(u, 0), entry by entry", lambda np, a: np.maximum(a, 0.0),
                 lambda sp: (lambda v: sp.Max(0, v)), r"\operatorname{relu}", True,
                 derivative=("d relu(u) -> step(u) .* du",
                             lambda u, du: ir.hadamard(ir.func("step", u), du)),
                 code={"numpy": "np.maximum({a}, 0.0)", "jax": "jax.nn.relu({a})", "torch": "torch.relu({a})"}),
    # max(a, 0) + log1p(e^-|a|): stable in both tails
    _elementwise("softplus", "log(1 + e^u), entry by entry", lambda np, a: np.logaddexp(0.0, a),
                 lambda sp: (lambda v: sp.log(1 + sp.exp(v))), r"\operatorname{softplus}",
                 derivative=("d softplus(u) -> sigmoid(u) .* du",
                             lambda u, du: ir.hadamard(ir.func("sigmoid", u), du)),
                 code={"numpy": "np.logaddexp(0.0, {a})", "jax": "jax.nn.softplus({a})",
                       "torch": "torch.nn.functional.softplus({a})"}),
    _elementwise("sqrt", "square root, entry by entry", lambda np, a: np.sqrt(a), lambda sp: sp.sqrt,
                 r"\sqrt{#}", True,
                 derivative=("d sqrt(u) -> du ./ (2 sqrt(u))",
                             lambda u, du: ir.elem_div(du, ir.mul(ir.num(2), ir.func("sqrt", u))))),
    _elementwise("abs", "absolute value, entry by entry", lambda np, a: np.abs(a), lambda sp: sp.Abs,
                 r"\left| # \right|", True,
                 derivative=("d abs(u) -> sign(u) .* du",
                             lambda u, du: ir.hadamard(ir.func("sign", u), du))),
    # sign(u) = 2 H(u) - 1 with H(0) = 1/2: the same values, and SymPy can differentiate it (sign it cannot)
    _elementwise("sign", "-1, 0 or 1, entry by entry", lambda np, a: np.sign(a),
                 lambda sp: (lambda v: 2 * sp.Heaviside(v, sp.Rational(1, 2)) - 1), r"\operatorname{sign}", True,
                 derivative=("d sign(u) -> 0 (almost everywhere)",
                             lambda u, du: ir.zeros(u.shape))),
    _elementwise("step", "Heaviside step: 1 where u > 0, else 0 (the derivative of relu)",
                 lambda np, a: (a > 0).astype(float), lambda sp: (lambda v: sp.Heaviside(v, 0)),
                 r"\operatorname{step}",
                 derivative=("d step(u) -> 0 (almost everywhere)",
                             lambda u, du: ir.zeros(u.shape)),
                 code={"numpy": "np.heaviside({a}, 0.0)", "jax": "jnp.heaviside({a}, 0.0)",
                       "torch": "torch.heaviside({a}, torch.zeros((), dtype={a}.dtype, device={a}.device))"}),
    _elementwise("arcsin", "inverse sine, entry by entry", lambda np, a: np.arcsin(a), lambda sp: sp.asin,
                 r"\arcsin", True,
                 derivative=("d arcsin(u) -> du ./ sqrt(1 - u.^2)",
                             lambda u, du: ir.elem_div(du, ir.func("sqrt", _one_minus(_square(u)))))),
    _elementwise("arccos", "inverse cosine, entry by entry", lambda np, a: np.arccos(a), lambda sp: sp.acos,
                 r"\arccos",
                 derivative=("d arccos(u) -> -du ./ sqrt(1 - u.^2)",
                             lambda u, du: ir.neg(ir.elem_div(du, ir.func("sqrt",
                                                                              _one_minus(_square(u))))))),
    _elementwise("arctan", "inverse tangent, entry by entry", lambda np, a: np.arctan(a), lambda sp: sp.atan,
                 r"\arctan", True,
                 derivative=("d arctan(u) -> du ./ (1 + u.^2)",
                             lambda u, du: ir.elem_div(du, ir.add(ir.ones(u.shape), _square(u))))),
    _elementwise("erf", "error function (2 / sqrt(pi)) ∫_0^u e^(-t^2) dt, entry by entry", _erf, lambda sp: sp.erf,
                 r"\operatorname{erf}", True,
                 derivative=("d erf(u) -> 2 exp(-u.^2) .* du / sqrt(pi)",
                             lambda u, du: ir.mul(ir.num(2), ir.reciprocal(ir.func("sqrt", ir.Constant("pi"))),
                                                  ir.hadamard(ir.func("exp", ir.neg(_square(u))), du))),
                 code={"numpy": "_erf({a})", "jax": "jax.scipy.special.erf({a})", "torch": "torch.erf({a})"},
                 helpers={"numpy": _ERF_NUMPY}),
    # the exact GELU, through erf (not the tanh approximation)
    _elementwise("gelu", "Gaussian error linear unit u Phi(u) = u (1 + erf(u / sqrt(2))) / 2, entry by entry", _gelu,
                 lambda sp: (lambda v: v * (1 + sp.erf(v / sp.sqrt(2))) / 2), r"\operatorname{gelu}", True,
                 derivative=("d gelu(u) -> ((1 + erf(u / sqrt(2))) / 2 + u .* exp(-u.^2 / 2) / sqrt(2 pi)) .* du",
                             _gelu_differential),
                 code={"numpy": "_gelu({a})", "jax": "jax.nn.gelu({a}, approximate=False)",
                       "torch": "torch.nn.functional.gelu({a})"},
                 helpers={"numpy": _GELU_NUMPY}),
    # elu with alpha = 1 (PyTorch's and JAX's default): smooth at 0, as both slopes there are 1
    _elementwise("elu", "exponential linear unit: u where u > 0, else exp(u) - 1, entry by entry", _elu,
                 lambda sp: (lambda v: sp.Piecewise((v, v > 0), (sp.exp(v) - 1, True))), r"\operatorname{elu}", True,
                 derivative=("d elu(u) -> exp(u - relu(u)) .* du", _elu_differential),
                 code={"numpy": "np.where({a} > 0, {a}, np.expm1(np.minimum({a}, 0.0)))",
                       "jax": "jax.nn.elu({a})", "torch": "torch.nn.functional.elu({a})"}),
    FunctionSpec("sum", "scalar_of_matrix", "sum of all entries",
                 lambda np, a: np.array([[a.sum()]]), lambda sp, a: sp.Matrix([[sum(a)]]),
                 r"\operatorname{sum}", True,
                 axes=True, usage="sum(U) or sum(U, axis)", lowering=_sum_along,
                 lowered_as="sum(U, 1) -> vector(1)^T U;  sum(U, 2) -> U vector(1)",
                 **_differential("sum of entries", "d sum(A) -> sum(dA)", lambda e, du: ir.func("sum", du),
                                 ("sum(X)", "X"))),
    FunctionSpec("norm1", "scalar_of_matrix", "sum of absolute values of all entries",
                 lambda np, a: np.array([[np.abs(a).sum()]]), lambda sp, a: sp.Matrix([[sum(sp.Abs(v) for v in a)]]),
                 r"\left\lVert # \right\rVert_1", True, axes=True, usage="norm1(U) or norm1(U, axis)",
                 lowering=_norm1_along, lowered_as="norm1(U, k) -> sum(abs(U), k)",
                 code={"numpy": "np.sum(np.abs({a}))",
                       "jax": "jnp.sum(jnp.abs({a}))", "torch": "torch.sum(torch.abs({a}))"},
                 **_differential("norm1", "d norm1(A) -> <sign(A), dA>",
                                 lambda e, du: ir.inner(ir.func("sign", e.arg), du), ("norm1(X)", "X"))),
    FunctionSpec("norm2", "scalar_of_matrix", "Euclidean norm of a vector, Frobenius norm of a matrix",
                 lambda np, a: np.array([[np.sqrt((a * a).sum())]]),
                 lambda sp, a: sp.Matrix([[sp.sqrt(sum(v**2 for v in a))]]),
                 r"\left\lVert # \right\rVert_2", True, axes=True, usage="norm2(U) or norm2(U, axis)",
                 lowering=_norm2_along, lowered_as="norm2(U, k) -> sqrt(sum(U .* U, k))",
                 code={"numpy": "np.linalg.norm({a})",
                       "jax": "jnp.linalg.norm({a})", "torch": "torch.linalg.norm({a})"},
                 **_differential("norm2", "d norm2(A) -> <A, dA> / norm2(A)",
                                 lambda e, du: ir.mul(ir.inner(e.arg, du), ir.reciprocal(e)), ("norm2(A x - b)", "x"))),
    FunctionSpec("tr", "square", "trace of a square matrix (a scalar)",
                 lambda np, a: np.array([[np.trace(a)]]), lambda sp, a: sp.Matrix([[a.trace()]]),
                 r"\operatorname{tr}", True, code={"numpy": "np.trace({a})", "jax": "jnp.trace({a})",
                                                   "torch": "torch.trace({a})"},
                 **_differential("trace", "d tr(A) -> tr(dA)", lambda e, du: ir.func("tr", du), ("tr(A X)", "X"))),
    FunctionSpec("det", "square", "determinant of a square matrix (a scalar)",
                 lambda np, a: np.array([[np.linalg.det(a)]]),
                 lambda sp, a: sp.Matrix([[a.det(method="berkowitz")]]), r"\det",
                 code={"numpy": "np.linalg.det({a})", "jax": "jnp.linalg.det({a})", "torch": "torch.linalg.det({a})"},
                 **_differential("determinant", "d det(X) -> det(X) tr(inv(X) dX)",
                                 lambda e, du: ir.mul(e, ir.func("tr", ir.mul(ir.func("inv", e.arg), du))),
                                 ("det(X)", "X"))),
    FunctionSpec("logdet", "square", "log(det(X)) of a square matrix (a scalar)", _logdet,
                 lambda sp, a: sp.Matrix([[sp.log(a.det(method="berkowitz"))]]), r"\log\det",
                 code={"numpy": "_logdet({a})", "jax": "_logdet({a})", "torch": "_logdet({a})"},
                 helpers={"numpy": _LOGDET_NUMPY, "jax": _LOGDET_JAX, "torch": _LOGDET_TORCH},
                 **_differential("log-determinant", "d logdet(X) -> tr(inv(X) dX)",
                                 lambda e, du: ir.func("tr", ir.mul(ir.func("inv", e.arg), du)), ("logdet(X)", "X"))),
    FunctionSpec("inv", "square", "inverse of a square matrix", lambda np, a: np.linalg.inv(a),
                 lambda sp, a: a.inv(method="ADJ") if a.rows <= 3 else a.inv(), "#^{-1}", result="same",
                 code={"numpy": "np.linalg.inv({a})", "jax": "jnp.linalg.inv({a})", "torch": "torch.linalg.inv({a})"},
                 **_differential("inverse", "d inv(X) -> -inv(X) dX inv(X)", lambda e, du: ir.neg(ir.mul(e, du, e)),
                                 ("a^T inv(X) b", "X"))),
    FunctionSpec("softmax", "vector", "exp(u) / sum(exp(u)) for a vector u; of each column (axis 1) or row (axis 2)",
                 _softmax, _softmax_sympy, r"\operatorname{softmax}", result="same", axes=True,
                 usage="softmax(u) or softmax(U, axis)",
                 code={"numpy": "_softmax({a})", "jax": "jax.nn.softmax({a}, axis=0)",
                       "torch": "torch.softmax({a}, dim=0)"}, helpers={"numpy": _SOFTMAX_NUMPY},
                 **_differential("softmax", "d softmax(u) -> s .* du - s s^T du,  s = softmax(u);  "
                                 "d softmax(U, 1) -> softmax(U, 1) .* dU - "
                                 "softmax(U, 1) .* (vector(1) sum(softmax(U, 1) .* dU, 1))",
                                 _softmax_differential, ("softmax(W x)", "x"))),
    FunctionSpec("logsumexp", "vector", "log(sum(exp(u))) for a vector u (a scalar); of each column (axis 1: a row) "
                 "or row (axis 2: a column)", _logsumexp, axes=True, usage="logsumexp(u) or logsumexp(U, axis)",
                 sympy=lambda sp, a: sp.Matrix([[sp.log(sum(a.applyfunc(sp.exp)))]]), latex=r"\operatorname{logsumexp}",
                 code={"numpy": "_logsumexp({a})", "jax": "jax.scipy.special.logsumexp({a})",
                       "torch": "torch.logsumexp({a}.reshape(-1), dim=0)"}, helpers={"numpy": _LOGSUMEXP_NUMPY},
                 **_differential("logsumexp", "d logsumexp(u) -> softmax(u)^T du;  "
                                 "d logsumexp(U, 1) -> vector(1)^T (softmax(U, 1) .* dU)",
                                 _logsumexp_differential, ("logsumexp(W x)", "W"))),
    # the derivative of max: piecewise constant, so its own derivative is 0 (the Hessian of max(u) is 0 almost
    # everywhere); a function of the language so that printed derivatives of max parse back
    FunctionSpec("argmax_mask", "vector", "where the entry is the largest of the vector u, 1 / (the number of entries "
                 "that tie for it), else 0 (the derivative of max(u)); of each column (axis 1) or row (axis 2)",
                 _argmax_mask, _argmax_mask_sympy, r"\operatorname{argmax\_mask}", result="same", axes=True,
                 usage="argmax_mask(u) or argmax_mask(U, axis)",
                 code={"numpy": "_argmax_mask({a})", "jax": "_argmax_mask({a})", "torch": "_argmax_mask({a})"},
                 helpers={"numpy": _ARGMAX_MASK_NUMPY, "jax": _ARGMAX_MASK_JAX, "torch": _ARGMAX_MASK_TORCH},
                 **_differential("argmax mask", "d argmax_mask(u) -> 0 (almost everywhere)",
                                 lambda e, du: ir.zeros(e.shape), ("x^T argmax_mask(x)", "x"))),
    FunctionSpec("diag", "diag", "vector -> diagonal matrix; square matrix -> vector of its diagonal",
                 _diag_numpy, _diag_sympy, r"\operatorname{diag}", True, result="diag",
                 **_differential("diag", "d diag(A) -> diag(dA)", lambda e, du: ir.func("diag", du),
                                 ("a^T diag(x) b", "x"))),
    FunctionSpec("vec", "reshape", "the columns of a matrix stacked into one column vector (column-major)",
                 lambda np, a: a.reshape(-1, 1, order="F"),
                 lambda sp, a: sp.Matrix([a[i, j] for j in range(a.cols) for i in range(a.rows)]),
                 r"\operatorname{vec}", True, result="vec",
                 code={"numpy": "{a}.reshape(-1, 1, order='F')", "jax": "{a}.reshape(-1, 1, order='F')",
                       "torch": "{a}.T.reshape(-1, 1)"},
                 **_differential("vec", "d vec(A) -> vec(dA)", lambda e, du: ir.vec(du), ("sum(vec(A .* X))", "X"))),
    FunctionSpec("rows", "lowered", "the number of rows (a scalar): the size of that dimension"),
    FunctionSpec("cols", "lowered", "the number of columns (a scalar): the size of that dimension"),
    FunctionSpec("size", "lowered", "the number of entries (a scalar): rows × columns, the length of a vector"),
    FunctionSpec("mean", "lowered", "the mean of all entries: sum(u) / size(u); of each column (axis 1) or row (2)",
                 axes=True, usage="mean(U) or mean(U, axis)", lowering=_mean,
                 lowered_as="mean(u) -> sum(u) / size(u);  mean(U, 1) -> sum(U, 1) / rows(U)"),
    FunctionSpec("var", "lowered", "the population variance of all entries, or of each column (axis 1) or row (2)",
                 axes=True, usage="var(U) or var(U, axis)", lowering=_variance,
                 lowered_as="var(U, k) -> mean((U - mean(U, k)) .* (U - mean(U, k)), k)"),
    # max(u) and max(U, [], k) are nodes (MATLAB's reductions); max(u, v), the element-wise form, is lowered
    FunctionSpec("max", "vector", "the largest entry of a vector u; of each column (max(U, [], 1): a row) or row "
                 "(max(U, [], 2): a column); max(u, v): the larger of u and v, entry by entry (either may be a "
                 "number: max(0, u) is relu)", _max, lambda sp, a: sp.Matrix([[sp.Max(*a)]]), r"\max",
                 True, axes=True, axis_after_empty=True, arguments=2,
                 usage="max(u), max(U, [], axis) or max(u, v)", lowering=_maximum,
                 lowered_as="max(u, v) -> u + relu(v - u);  max(u, c) -> c + relu(u - c)",
                 code={"numpy": "np.max({a})", "jax": "jnp.max({a})", "torch": "torch.max({a})"},
                 **_differential("max", "d max(u) -> argmax_mask(u)^T du;  "
                                 "d max(U, [], 1) -> vector(1)^T (argmax_mask(U, 1) .* dU)",
                                 _max_differential, ("max(W x)", "W"))),
    FunctionSpec("min", "lowered", "the smallest entry of a vector, of each column or row (min(U, [], k)); "
                 "min(u, v): the smaller of u and v, entry by entry (either may be a number)",
                 axes=True, axis_after_empty=True, arguments=2,
                 usage="min(u), min(U, [], axis) or min(u, v)", lowering=_minimum,
                 lowered_as="min(u) -> -max(-u);  min(U, [], k) -> -max(-U, [], k);  min(u, v) -> u - relu(u - v);  "
                            "min(u, c) -> c - relu(c - u)"),
    FunctionSpec("leaky_relu", "lowered", "u where u > 0, else a u, entry by entry, for a scalar slope a",
                 arguments=2, usage="leaky_relu(u, a)", lowering=_leaky_relu,
                 lowered_as="leaky_relu(u, a) -> a u + (1 - a) relu(u)"),
]

FUNCTIONS: dict[str, FunctionSpec] = {spec.name: spec for spec in _SPECS}
IR_FUNCTIONS: frozenset[str] = frozenset(s.name for s in _SPECS if s.kind != "lowered")  # the names Func nodes hold
ELEMENTWISE: frozenset[str] = frozenset(s.name for s in _SPECS if s.kind == "elementwise")
SCALAR_VALUED: frozenset[str] = frozenset(s.name for s in _SPECS if s.result == "scalar" and s.kind != "lowered")
ir.FUNCTION_FACTS.update(FUNCTIONS)

# What the parser's error says of `name(` when name is not a function (frontend/parse.py): the names users write
# for a function of the language, and the functions it does not have yet. Data, so that the advice is a table.
FUNCTION_ALIASES: dict[str, str] = {
    "σ": "sigmoid", "sigma": "sigmoid", "logistic": "sigmoid", "expit": "sigmoid",
    "trace": "tr", "Tr": "tr", "ln": "log", "Det": "det", "log_det": "logdet", "logabsdet": "logdet",
    "inverse": "inv", "Inv": "inv", "ReLU": "relu", "Relu": "relu", "GELU": "gelu", "Softmax": "softmax",
    "lse": "logsumexp", "diagm": "diag", "Diag": "diag", "heaviside": "step", "Heaviside": "step", "sgn": "sign",
    "asin": "arcsin", "acos": "arccos", "atan": "arctan", "nrow": "rows", "ncol": "cols", "numel": "size",
    "len": "size", "length": "size", "avg": "mean", "norm": "norm2", "frobenius": "norm2",
}
NOT_YET_FUNCTIONS: dict[str, str] = {
    "pinv": "the pseudo-inverse", "adj": "the adjugate", "adjugate": "the adjugate", "sqrtm": "the matrix square root",
    "expm": "the matrix exponential", "logm": "the matrix logarithm", "nuclear": "the nuclear norm",
    "prod": "the product of the entries", "rank": "the rank",
    "eig": "the eigenvalues", "svd": "the singular value decomposition", "chol": "the Cholesky factor",
    "cosh": "the hyperbolic cosine", "sinh": "the hyperbolic sine", "log1p": "log(1 + u)", "expm1": "exp(u) - 1",
    "tril": "the lower triangle", "triu": "the upper triangle", "transpose": "the transpose: write X^T",
}
