"""The one intermediate representation: immutable expression trees with structural equality.

Every node is a matrix with a 2-D shape: a column vector is (n, 1), a row vector (1, n) and a
scalar (1, 1). Dimensions are symbols (str) or positive integers; an inferred symbol is never 1,
so "is a scalar" is a structural fact. A product's 1x1 factors act as scalars (they commute);
its other factors form a chain that must compose as a matrix product.

The smart constructors (`add`, `mul`, `transpose`, ...) keep a light normal form that every
stage can rely on and that the printer round-trips through the parser: flattened sums and
products, one leading numeric coefficient, scalars before the chain, zeros and identities
absorbed. All real algebra lives in the rewrite-rule table (simplify.py), not here.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, fields
from fractions import Fraction
from operator import attrgetter
from typing import ClassVar, Protocol, TypeVar
from weakref import WeakValueDictionary

from .constants import CONSTANTS

try:  # hashlib's own blake2b: importing hashlib also loads OpenSSL, 3 to 5 ms of the CLI's start-up
    from _blake2 import blake2b
except ImportError:  # a Python built without its own hash implementations
    from hashlib import blake2b

T = TypeVar("T")
_INTERNED: WeakValueDictionary[tuple, Expr] = WeakValueDictionary()
# The most recently built nodes stay alive, with what is cached on them (simplified forms, keys, shapes), so that
# an expression built again soon after (the same input differentiated twice) finds its work done; bounded memory.
_RECENT: deque[Expr] = deque(maxlen=1 << 16)


@dataclass(frozen=True, order=True)
class DimProduct:
    """A product of symbolic dimensions times a whole number: the m n rows of vec(X) for X m x n.

    Built only by `dim_product`, which keeps it canonical (factors sorted, repeated as they multiply, never
    a lone factor), so that two equal products are equal values: m n and n m are one dimension.
    """

    factors: tuple[str, ...]
    coefficient: int = 1

    def __str__(self) -> str:
        return "·".join([*([str(self.coefficient)] if self.coefficient != 1 else []), *self.factors])


Dim = str | int | DimProduct
Shape = tuple[Dim, Dim]
SCALAR: Shape = (1, 1)


class _Interned(type):
    """Hash-consing: building a node equal to a live one returns that one.

    Equal expressions are then one object, so equality is identity and a DAG with shared
    subexpressions (a residual network's h_k, used by every later layer) is compared, hashed and
    memoised in O(1) per node, without recursing over its depth. The hash and the shape are
    computed once, when the node is built, from its children's (already computed) ones; a product's hash
    when first asked for, as s ./ s ./ ... ./ s builds a product of each length on its way and uses only the
    last (its factors are never products but for 1 x 1 sub-products of chains: no deep recursion either).
    """

    def __call__(cls, *args: object, **kwargs: object) -> Expr:
        key: tuple | None = None
        if not kwargs and len(args) == len(cls._field_names):  # the usual call: look up before building
            key = (cls, *map(_identity_part, args))
            found = _INTERNED.get(key)
            if found is not None:
                return found
        candidate = super().__call__(*args, **kwargs)
        if key is None:
            key = (cls, *map(_identity_part, candidate._key()))
            found = _INTERNED.get(key)
            if found is not None:
                return found
        if cls is not MatMul:  # a product's hash waits until it is asked for (below)
            hash(candidate)
        candidate.shape  # noqa: B018 (computed now, from the children's: no recursion later)
        _INTERNED[key] = candidate
        _RECENT.append(candidate)
        return candidate


def _identity_part(value: object) -> object:
    """A field as it identifies an interned node: children by identity (they are interned already)."""
    if isinstance(value, Expr):
        return id(value)
    if isinstance(value, tuple) and value and isinstance(value[0], Expr):
        return tuple(map(id, value))  # map, not a generator: a product of k factors is built k times in s ./ s ...
    if isinstance(value, Fraction):  # Fraction(2) and 2 are one value, but keep the type out of the key
        return (value.numerator, value.denominator)
    return value


class Expr(metaclass=_Interned):
    """Base of all nodes: interned (equal nodes are one object), with a cached structural hash and shape."""

    _field_names: ClassVar[tuple[str, ...]] = ()

    def _key(self) -> tuple:
        return tuple(self.__dict__[name] for name in self._field_names)

    def __hash__(self) -> int:
        cached = self.__dict__.get("_hash")
        if cached is None:
            cached = hash((type(self).__name__, *map(_hash_part, self._key())))
            object.__setattr__(self, "_hash", cached)
        return cached

    def __eq__(self, other: object) -> bool:
        return self is other

    def __ne__(self, other: object) -> bool:
        return self is not other

    def __repr__(self) -> str:
        """The dataclass repr (`Var(name='x', ...)`), written once here: a dataclass writes and compiles one per
        class, which costs the CLI's start-up time."""
        fields = ", ".join(f"{name}={self.__dict__[name]!r}" for name in self._field_names)
        return f"{type(self).__qualname__}({fields})"

    @property
    def shape(self) -> Shape:
        cached = self.__dict__.get("_shape")
        if cached is None:
            cached = self._compute_shape()
            object.__setattr__(self, "_shape", cached)
        return cached

    def _compute_shape(self) -> Shape:
        raise NotImplementedError

    @property
    def is_scalar(self) -> bool:
        return self.shape == SCALAR

    @property
    def children(self) -> tuple[Expr, ...]:
        return ()

    def rebuild(self, children: tuple[Expr, ...]) -> Expr:
        """The same node over new children, through the smart constructors."""
        return self

    # What each kind of node knows of itself, so that the constructors, the rules and the printers ask the node
    # instead of testing its type.

    symmetric: ClassVar[bool] = False  # A^T = A for every value (a variable declared symmetric, an identity)

    @property
    def constant(self) -> Fraction | None:
        """The value of every entry, for a number or a constant fill; None for any other node."""
        return None

    @property
    def coefficient(self) -> Fraction:
        """The numeric factor in front (-2 of -2 A, the value of a number), 1 where there is none."""
        return Fraction(1)

    @property
    def numeric_exponent(self) -> Fraction | None:
        """p, for a power b^p with a number p; None for any other node."""
        return None

    def own_transpose(self) -> Expr | None:
        """e^T where a node of this kind writes it without a Transpose node (A^T^T = A, K(m, n)^T = K(n, m)),
        else None."""
        return self if self.symmetric else None

    def operands_of(self, kind: type[Expr]) -> tuple[Expr, ...]:
        """The operands of this node as an operand of a flattened `kind` (a sum, a Hadamard or Kronecker
        product): its children if it is one, else itself."""
        return self.children if type(self) is kind else (self,)

    def __str__(self) -> str:
        return TEXT_PRINTER[0](self)


# str(e) is the input language's text; the printer lives in render/text.py, which installs itself here when it
# is imported (matcalc's import does), so that core imports nothing above it.
TEXT_PRINTER: list[Callable[[Expr], str]] = [lambda e: f"<{type(e).__name__}>"]
IDENTITY_NAMES = frozenset({"I", "eye"})
# The identity's names and the named constants' (pi): never a variable's, a declaration's, nor a definition's.
RESERVED_NAMES = IDENTITY_NAMES | frozenset(CONSTANTS)


def _hash_part(value: object) -> object:
    """A field as hashed: a Fraction as (sign, |numerator|, denominator), others as they are.

    In CPython hash(-1) == hash(-2), so x^-1 and x^-2, or -1 A and -2 A, would share a hash: a
    product rule's terms that differ only in where such a factor sits then all collide, and
    each dict lookup among them compares whole trees (quadratic time, issue 7).
    """
    if isinstance(value, Fraction):
        return (value < 0, abs(value.numerator), value.denominator)
    return value


_SHAPE = attrgetter("_shape")  # every node's shape is computed when it is built (_Interned)


try:
    from typing import dataclass_transform
except ImportError:  # Python 3.10

    def dataclass_transform(**_: object) -> Callable[[Callable], Callable]:  # type: ignore[no-redef]
        return lambda decorator: decorator


MAX_CONSTANT_BITS = 12_000  # about 3,600 digits: exact constants stay exact, and printable


def fits_exactly(value: Fraction) -> bool:
    """Whether an exact constant is small enough to keep (and to print and read back)."""
    return max(value.numerator.bit_length(), value.denominator.bit_length()) <= MAX_CONSTANT_BITS


def _check_number_size(value: Fraction) -> None:
    if not fits_exactly(value):
        from .errors import UnsupportedError

        raise UnsupportedError(f"a constant in this expression grows beyond {MAX_CONSTANT_BITS * 3 // 10:,} digits")


_NO_DEFAULT = object()


@dataclass_transform(frozen_default=True, eq_default=False)
def node(cls: type) -> type:
    """Declare an IR node: a frozen dataclass whose equality and hash come from Expr."""
    cls = dataclass(frozen=True, eq=False, repr=False)(cls)  # the repr is Expr's: one, not one written per class
    cls._field_names = tuple(f.name for f in fields(cls))
    # a field listed in _optional_fields, at its default (a Func's axis 0), is left out of the canonical order's
    # digest: the order stays what it was before the field existed
    optional = getattr(cls, "_optional_fields", ())
    cls._skipped_defaults = tuple(f.default if f.name in optional else _NO_DEFAULT for f in fields(cls))
    return cls


def dim_product(*dims: Dim) -> Dim:
    """The product of dimensions, in canonical form: an int, a single name, or a DimProduct."""
    coefficient = 1
    factors: list[str] = []
    for dim in dims:
        if isinstance(dim, int):
            coefficient *= dim
        elif isinstance(dim, DimProduct):
            coefficient *= dim.coefficient
            factors.extend(dim.factors)
        else:
            factors.append(dim)
    if not factors:
        return coefficient
    if len(factors) == 1 and coefficient == 1:
        return factors[0]
    return DimProduct(tuple(sorted(factors)), coefficient)


def dim_names(dim: Dim) -> tuple[str, ...]:
    """The symbolic dimensions a dimension is made of."""
    if isinstance(dim, int):
        return ()
    return dim.factors if isinstance(dim, DimProduct) else (dim,)


def dim_value(dim: Dim, sizes: dict[str, int]) -> int:
    """A dimension's size, given the sizes of the named dimensions."""
    if isinstance(dim, int):
        return dim
    if isinstance(dim, DimProduct):
        value = dim.coefficient
        for factor in dim.factors:
            value *= sizes[factor]
        return value
    return sizes[dim]


# ---------------------------------------------------------------- leaves


@node
class Var(Expr):
    name: str
    var_shape: Shape
    symmetric: bool = False
    # Declared `spd`: symmetric (so `symmetric` is set too, and every rule treats it as symmetric) and positive
    # definite, which only evaluation reads (logdet and inv by a Cholesky factorisation).
    positive_definite: bool = False
    _optional_fields = ("positive_definite",)  # left out of the canonical digest when False (the order stays)

    def _compute_shape(self) -> Shape:
        return self.var_shape


@node
class Num(Expr):
    value: Fraction

    def __post_init__(self) -> None:
        _check_number_size(self.value)

    def _compute_shape(self) -> Shape:
        return SCALAR

    @property
    def constant(self) -> Fraction:
        return self.value

    @property
    def coefficient(self) -> Fraction:
        return self.value


@node
class Fill(Expr):
    """A vector or matrix whose entries all equal `value`: vector(c), matrix(c), and zeros."""

    value: Fraction
    fill_shape: Shape

    def __post_init__(self) -> None:
        _check_number_size(self.value)

    def _compute_shape(self) -> Shape:
        return self.fill_shape

    @property
    def constant(self) -> Fraction:
        return self.value

    def own_transpose(self) -> Expr:
        return Fill(self.value, (self.fill_shape[1], self.fill_shape[0]))


@node
class Identity(Expr):
    size: Dim
    symmetric: ClassVar[bool] = True

    def _compute_shape(self) -> Shape:
        return (self.size, self.size)


@node
class Commutation(Expr):
    """K(m, n): the mn x mn permutation matrix with K vec(A) = vec(A^T) for every m x n matrix A."""

    rows: Dim
    cols: Dim

    def _compute_shape(self) -> Shape:
        size = dim_product(self.rows, self.cols)
        return (size, size)

    def own_transpose(self) -> Expr:
        return Commutation(self.cols, self.rows)  # K(m, n)^T = K(n, m)


@node
class Constant(Expr):
    """A named real constant of constants.CONSTANTS (pi): a scalar leaf, whose meanings each stage reads there."""

    name: str

    def _compute_shape(self) -> Shape:
        return SCALAR


@node
class Size(Expr):
    """The size of a dimension as a scalar: `n` for a dimension named n (rows(X), cols(X), size(x) in the input)."""

    dim: str

    def _compute_shape(self) -> Shape:
        return SCALAR


@node
class Differential(Expr):
    """dX: the infinitesimal change of a variable, only ever present linearly."""

    var: Var

    def _compute_shape(self) -> Shape:
        return self.var.shape


# ---------------------------------------------------------------- compound nodes


@node
class Add(Expr):
    terms: tuple[Expr, ...]

    def _compute_shape(self) -> Shape:
        return self.terms[0].shape

    @property
    def children(self) -> tuple[Expr, ...]:
        return self.terms

    def rebuild(self, children: tuple[Expr, ...]) -> Expr:
        return add(*children)


@node
class MatMul(Expr):
    """Product: a leading Num (if not 1), then 1x1 factors (scalars), then the matrix chain."""

    factors: tuple[Expr, ...]

    def _compute_shape(self) -> Shape:
        # the factors' shapes as computed when they were built (read without a call per factor: a long product
        # of scalars grows one factor at a time)
        chain = [shape for shape in map(_SHAPE, self.factors) if shape != SCALAR]
        return (chain[0][0], chain[-1][1]) if chain else SCALAR

    @property
    def children(self) -> tuple[Expr, ...]:
        return self.factors

    def rebuild(self, children: tuple[Expr, ...]) -> Expr:
        return mul(*children)

    @property
    def coefficient(self) -> Fraction:
        first = self.factors[0]  # in normal form, the coefficient is the first factor, and the only number
        return first.coefficient if first.is_scalar and first.constant is not None else Fraction(1)


@node
class Transpose(Expr):
    arg: Expr

    def _compute_shape(self) -> Shape:
        rows, cols = self.arg.shape
        return (cols, rows)

    @property
    def children(self) -> tuple[Expr, ...]:
        return (self.arg,)

    def rebuild(self, children: tuple[Expr, ...]) -> Expr:
        return transpose(children[0])

    def own_transpose(self) -> Expr:
        return self.arg


@node
class Hadamard(Expr):
    factors: tuple[Expr, ...]

    def _compute_shape(self) -> Shape:
        return self.factors[0].shape

    @property
    def children(self) -> tuple[Expr, ...]:
        return self.factors

    def rebuild(self, children: tuple[Expr, ...]) -> Expr:
        return hadamard(*children)


@node
class ElemDiv(Expr):
    numerator: Expr
    denominator: Expr

    def _compute_shape(self) -> Shape:
        return self.numerator.shape

    @property
    def children(self) -> tuple[Expr, ...]:
        return (self.numerator, self.denominator)

    def rebuild(self, children: tuple[Expr, ...]) -> Expr:
        return elem_div(*children)


@node
class Power(Expr):
    """base^exponent: a scalar power (any scalar exponent) or an integer power of a square matrix."""

    base: Expr
    exponent: Expr

    def _compute_shape(self) -> Shape:
        return self.base.shape

    @property
    def children(self) -> tuple[Expr, ...]:
        return (self.base, self.exponent)

    def rebuild(self, children: tuple[Expr, ...]) -> Expr:
        return power(*children)

    @property
    def numeric_exponent(self) -> Fraction | None:
        return self.exponent.constant  # a scalar: a number, or not a constant


@node
class ElemPower(Expr):
    """base .^ exponent, entry by entry, with a scalar exponent."""

    base: Expr
    exponent: Expr

    def _compute_shape(self) -> Shape:
        return self.base.shape

    @property
    def children(self) -> tuple[Expr, ...]:
        return (self.base, self.exponent)

    def rebuild(self, children: tuple[Expr, ...]) -> Expr:
        return elem_power(*children)


@node
class Func(Expr):
    """A named function of functions.FUNCTIONS (FUNCTION_FACTS here) applied to one argument: to the whole of it
    (axis 0), or to each column (axis 1: softmax(Z, 1)) or each row (axis 2) of a matrix, for a function of a
    vector."""

    name: str
    arg: Expr
    axis: int = 0
    _optional_fields = ("axis",)

    def _compute_shape(self) -> Shape:
        return function_shape(self.name, self.arg.shape, self.axis)

    @property
    def children(self) -> tuple[Expr, ...]:
        return (self.arg,)

    def rebuild(self, children: tuple[Expr, ...]) -> Expr:
        return func(self.name, children[0], self.axis)


@node
class Kron(Expr):
    """The Kronecker product A ⊗ B ⊗ ...: flattened (it is associative), no 1 x 1 factor."""

    factors: tuple[Expr, ...]

    def _compute_shape(self) -> Shape:
        return (dim_product(*(f.shape[0] for f in self.factors)), dim_product(*(f.shape[1] for f in self.factors)))

    @property
    def children(self) -> tuple[Expr, ...]:
        return self.factors

    def rebuild(self, children: tuple[Expr, ...]) -> Expr:
        return kron(*children)


# ---------------------------------------------------------------- what the IR knows of each function


class FunctionFacts(Protocol):
    result: str  # the shape of f(u) from u's: "same", "scalar", "diag" or "vec" (function_shape)
    zero_preserving: bool  # f(0) = 0 (func)


# Each function's FunctionSpec, by name: filled by core/functions.py, which describes every function and builds
# its calculus with this module (core/__init__ imports it, so the table is full before anything else runs).
FUNCTION_FACTS: dict[str, FunctionFacts] = {}


# ---------------------------------------------------------------- shape helpers


def is_vector_shape(shape: Shape) -> bool:
    """A column or row vector (exactly one dimension is 1)."""
    return (shape[0] == 1) != (shape[1] == 1)


def is_column(shape: Shape) -> bool:
    return shape[1] == 1 and shape[0] != 1


def chain_shape(chain: list[Expr] | tuple[Expr, ...]) -> Shape:
    if not chain:
        return SCALAR
    return (chain[0].shape[0], chain[-1].shape[1])


D = TypeVar("D")


def result_shape(result: str, shape: tuple[D, D], product: Callable[..., D]) -> tuple[tuple[D, D], bool]:
    """The shape of f(u) from u's by f's FunctionSpec.result, and whether u must be square (diag of a matrix).

    Over any dimensions: the IR's (`product` is dim_product) or the type checker's unknowns (its own product),
    so that the result shapes are written once."""
    rows, cols = shape
    if result == "same":
        return shape, False
    if result == "vec":
        # outer factor first, as in a Kronecker product: vec(X) of an m×n X is n blocks of m (the type checker pairs
        # the factors of two products in this order)
        return (product(cols, rows), 1), False  # type: ignore[return-value]
    if result == "scalar" or (rows == 1 and cols == 1):  # a scalar, or diag of a scalar
        return (1, 1), False  # type: ignore[return-value]
    if cols == 1:  # diag of a column: a square matrix
        return (rows, rows), False
    if rows == 1:  # diag of a row
        return (cols, cols), False
    return (rows, 1), True  # the diagonal of a square matrix


def function_shape(name: str, arg: Shape, axis: int = 0) -> Shape:
    """The shape of name(u) for u of shape `arg`, by the function's FunctionSpec.result; along an axis, a function
    of a vector maps each column (axis 1) or row (axis 2) to its result (a scalar-valued one gives a row or column)."""
    if axis:
        return axis_result_shape(FUNCTION_FACTS[name].result, arg, axis)
    return result_shape(FUNCTION_FACTS[name].result, arg, dim_product)[0]


def axis_result_shape(result: str, shape: tuple[D, D], axis: int) -> tuple[D, D]:
    """The shape of f(U, axis) for a function f of a vector: one result per column (axis 1) or row (axis 2)."""
    if result == "same":
        return shape
    return (1, shape[1]) if axis == 1 else (shape[0], 1)  # type: ignore[return-value]


# ---------------------------------------------------------------- constructors


def num(value: int | Fraction | str) -> Num:
    return Num(Fraction(value))


ZERO = Num(Fraction(0))
ONE = Num(Fraction(1))


def fill(value: int | Fraction, shape: Shape) -> Expr:
    if shape == SCALAR:
        return num(value)
    return Fill(Fraction(value), shape)


def zeros(shape: Shape) -> Expr:
    return fill(0, shape)


def ones(shape: Shape) -> Expr:
    return fill(1, shape)


def size(dim: Dim) -> Expr:
    """The size of a dimension: a number for a fixed size, else a Size leaf."""
    if isinstance(dim, DimProduct):
        return mul(Num(Fraction(dim.coefficient)), *map(Size, dim.factors))
    return Num(Fraction(dim)) if isinstance(dim, int) else Size(dim)


def identity(size: Dim) -> Expr:
    return ONE if size == 1 else Identity(size)


def is_reciprocal(e: Expr) -> bool:
    """A scalar power with a negative numeric exponent: printed after '/'."""
    exponent = e.numeric_exponent
    return exponent is not None and exponent < 0 and e.is_scalar


def is_zero(e: Expr) -> bool:
    return e.constant == 0


def is_ones(e: Expr) -> bool:
    return e.constant == 1


def spread_parts(e: Expr) -> tuple[Expr, Expr, str] | None:
    """A broadcast as the parser writes it (frontend/typecheck.py), split: (the operand spread, the ones it is spread
    with, how): b vector(1)^T -> (b, vector(1)^T, "columns"), vector(1) r -> (r, vector(1), "rows"), alpha matrix(1)
    -> (alpha, matrix(1), "entries"); None for anything else."""
    if not isinstance(e, MatMul) or e.is_scalar:
        return None
    coefficient, scalars, chain = split_product(e)
    if len(chain) == 1 and isinstance(chain[0], Fill) and chain[0].value == 1 and scalars:
        return mul(Num(coefficient), *scalars), chain[0], "entries"
    if len(chain) < 2 or e.shape[0] == 1 or e.shape[1] == 1:
        return None
    first, last = chain[0], chain[-1]
    if isinstance(last, Fill) and last.value == 1 and last.shape[0] == 1:
        return mul(Num(coefficient), *scalars, *chain[:-1]), last, "columns"
    if isinstance(first, Fill) and first.value == 1 and first.shape[1] == 1:
        return mul(Num(coefficient), *scalars, *chain[1:]), first, "rows"
    return None


def respread(core: Expr, ones: Expr, how: str) -> Expr:
    """The broadcast of spread_parts' pieces, put back together over a new operand."""
    return mul(ones, core) if how == "rows" else mul(core, ones)


def has_minus_sign(e: Expr) -> bool:
    """Printed with a leading minus: a negative number or fill, a product with a negative coefficient."""
    value = e.constant
    return (value if value is not None else e.coefficient) < 0


def add(*terms: Expr) -> Expr:
    """Sum, flattened, without zero terms."""
    if not terms:
        raise ValueError("add() needs at least one term")
    shape = terms[0].shape
    flat: list[Expr] = []
    for term in terms:
        flat.extend(t for t in term.operands_of(Add) if not is_zero(t))
    if not flat:
        return zeros(shape)
    if len(flat) == 1:
        return flat[0]
    return Add(tuple(flat))


def split_product(e: Expr) -> tuple[Fraction, list[Expr], list[Expr]]:
    """(numeric coefficient, scalar factors, chain factors) of any expression seen as a product."""
    if isinstance(e, Num):
        return e.value, [], []
    if isinstance(e, MatMul):
        coefficient = Fraction(1)
        scalars: list[Expr] = []
        chain: list[Expr] = []
        for factor in e.factors:
            if isinstance(factor, Num):
                coefficient *= factor.value
            elif factor.is_scalar:
                scalars.append(factor)
            else:
                chain.append(factor)
        return coefficient, scalars, chain
    if e.is_scalar:
        return Fraction(1), [e], []
    return Fraction(1), [], [e]


def mul(*factors: Expr) -> Expr:
    """Product in normal form: coefficient, then scalar factors, then the matrix chain.

    A scalar sub-product with a chain (like a^T x) stays one factor unless it is the only chain
    in the product, because its chain may not compose with the neighbours' (a^T x y).
    """
    if len(factors) == 2 and isinstance(factors[0], MatMul) and _is_plain_scalar(factors[1]):
        appended = _append_scalar(factors[0], factors[1])
        if appended is not None:
            return appended
    return general_mul(*factors)


def _is_plain_scalar(e: Expr) -> bool:
    """A 1 x 1 factor that a product keeps as it is: no number, no sub-product."""
    return e.is_scalar and not isinstance(e, Num | Fill | MatMul)


def _first_divisor(product: MatMul) -> int | None:
    """For a product of plain scalars in normal form (a coefficient, the factors, the divisors last), where its
    divisors start; None for any other product. Cached on the node, so that a long product grown one factor at
    a time (s ./ s ./ ... ./ s, read left to right) is not rescanned at each step."""
    if "_first_divisor" in product.__dict__:
        return product.__dict__["_first_divisor"]
    factors = product.factors
    start = 0 if product.coefficient == 1 else 1
    first: int | None = None
    if all(_is_plain_scalar(f) for f in factors[start:]):
        divisors = [is_reciprocal(f) for f in factors[start:]]
        count = divisors.index(True) if True in divisors else len(divisors)
        first = start + count if all(divisors[count:]) else None
    object.__setattr__(product, "_first_divisor", first)
    return first


def _append_scalar(product: MatMul, factor: Expr) -> Expr | None:
    """mul(product, factor) for a product of plain scalars and one more plain scalar, in time independent of the
    product's length (but for copying it): the factor goes after the last factor of its kind, as the sort of
    general_mul puts it. None when the product is of another kind."""
    first = _first_divisor(product)
    if first is None:
        return None
    divisor = is_reciprocal(factor)
    at = len(product.factors) if divisor else first
    out = MatMul((*product.factors[:at], factor, *product.factors[at:]))
    object.__setattr__(out, "_first_divisor", first if divisor else first + 1)
    return out


def general_mul(*factors: Expr) -> Expr:
    """mul for any factors (mul takes a shortcut for one scalar appended to a product of scalars)."""
    coefficient = Fraction(1)
    scalars: list[Expr] = []
    chain: list[Expr] = []
    for factor in factors:
        c, s, ch = split_product(factor)
        coefficient *= c
        scalars.extend(s)
        if factor.is_scalar and ch:
            scalars.append(MatMul(tuple(ch)))
        else:
            chain.extend(ch)
    shape = chain_shape(chain)
    if coefficient == 0 or any(is_zero(f) for f in scalars + chain):
        return zeros(shape)
    if len(chain) > 1:  # A I -> A, but (x^T x) I stays a matrix
        kept = [f for f in chain if not isinstance(f, Identity)] or [chain[0]]
        chain = kept if chain_shape(kept) == shape else chain
    units, chain = _split_scalar_prefixes(chain)
    scalars.extend(units)
    if not chain:
        units = [s for s in scalars if isinstance(s, MatMul)]
        if len(units) == 1:
            scalars.remove(units[0])
            chain = list(units[0].factors)
    if chain and chain_shape(chain) == SCALAR and any(isinstance(s, MatMul) for s in scalars):
        # a 1x1 chain beside other scalar sub-products is one of them: (a^T x) y^T z has units (a^T x), (y^T z)
        scalars.append(MatMul(tuple(chain)))
        chain = []
    fill_value = chain[0].constant if len(chain) == 1 else None  # a lone chain factor that is a fill
    if fill_value:
        if not scalars:  # c vector(v) -> vector(c v)
            return fill(coefficient * fill_value, chain[0].shape)
        # s vector(v) -> v s vector(1): one form for a scaled fill, whichever way it was built
        coefficient *= fill_value
        chain = [fill(Fraction(1), chain[0].shape)]
    # Canonical order whatever the association: plain scalars, then scalar sub-products (a^T x) in a
    # canonical order of their own, then divisors (printed after '/'); plain scalars and divisors keep
    # the order they were written in, which no association changes.
    scalars.sort(key=lambda s: (is_reciprocal(s), isinstance(s, MatMul),
                                canonical_key(s) if isinstance(s, MatMul) else ("", b"")))
    head: list[Expr] = [] if coefficient == 1 else [Num(coefficient)]
    out = head + scalars + chain
    if not out:
        return ONE
    if len(out) == 1:
        return out[0]
    return MatMul(tuple(out))


def cached_bottom_up(e: Expr, attribute: str, compute: Callable[[Expr], T]) -> T:
    """compute(node) for e and every node below it, children first, cached on each node as `attribute`
    (like the hash): `compute` reads its children's values there. No recursion, and a node shared by
    several parents is computed once."""
    stack: list[tuple[Expr, bool]] = [(e, False)]
    while stack:
        node, children_done = stack.pop()
        if attribute in node.__dict__:
            continue
        if not children_done:
            stack.append((node, True))
            stack.extend((child, False) for child in node.children)
            continue
        object.__setattr__(node, attribute, compute(node))
    return e.__dict__[attribute]


def canonical_key(e: Expr) -> tuple[str, bytes]:
    """A total order on expressions, the same in every process: the leftmost variable's name, then a digest
    of the structure."""

    def key(node: Expr) -> tuple[str, bytes]:
        keys = [child.__dict__["_canonical"] for child in node.children]
        fields = [repr(value) for value, default in zip(node._key(), node._skipped_defaults, strict=True)
                  if not isinstance(value, Expr | tuple) and not (default is not _NO_DEFAULT and value == default)]
        digest = blake2b(digest_size=8)
        digest.update("|".join([type(node).__name__, *fields]).encode())
        for _, child_digest in keys:
            digest.update(child_digest)
        leftmost = node.name if isinstance(node, Var) else next((name for name, _ in keys if name), "")
        return leftmost, digest.digest()

    return cached_bottom_up(e, "_canonical", key)


def _split_scalar_prefixes(chain: list[Expr]) -> tuple[list[Expr], list[Expr]]:
    """(units, rest): each 1x1 prefix of a longer chain (a^T x in a^T x y^T) is one scalar, as the parser reads it."""
    units: list[Expr] = []
    while len(chain) > 2 and chain[0].shape[0] == 1:
        k = next((k for k in range(2, len(chain)) if chain[k - 1].shape[1] == 1), None)
        if k is None:
            break
        units.append(MatMul(tuple(chain[:k])))
        chain = chain[k:]
    return units, chain


def neg(e: Expr) -> Expr:
    return mul(Num(Fraction(-1)), e)


def sub(a: Expr, b: Expr) -> Expr:
    return add(a, neg(b))


def transpose(e: Expr) -> Expr:
    """Transpose; absorbed by scalars, symmetric variables, identities and constant fills."""
    if e.is_scalar:
        return e
    own = e.own_transpose()
    return own if own is not None else Transpose(e)


def hadamard(*factors: Expr) -> Expr:
    """Element-wise product, flattened; between scalars it is the ordinary product."""
    flat: list[Expr] = []
    for factor in factors:
        flat.extend(factor.operands_of(Hadamard))
    if all(f.is_scalar for f in flat):
        return mul(*flat)
    if any(is_zero(f) for f in flat):
        return zeros(flat[0].shape)
    if len(flat) == 1:
        return flat[0]
    return Hadamard(tuple(flat))


def power(base: Expr, exponent: Expr) -> Expr:
    if exponent == ONE:
        return base
    p, b = exponent.constant, base.constant
    if p is not None and p.denominator == 1 and b is not None and base.is_scalar and (b != 0 or p > 0) \
            and _small_power(b, int(p)):
        return Num(b ** int(p))
    return Power(base, exponent)


MAX_NUMBER_BITS = 1024  # 2^100000000 stays a power: its digits would take minutes to write


def _small_power(value: Fraction, k: int) -> bool:
    bits = max(abs(value.numerator).bit_length(), value.denominator.bit_length())
    return bits <= 1 or abs(k) * bits <= MAX_NUMBER_BITS


def reciprocal(e: Expr) -> Expr:
    """1 / e for a scalar e; 1 / b^p is b^-p, as the printer writes b^-p after '/'."""
    exponent = e.numeric_exponent
    if exponent is not None and e.is_scalar:
        return power(e.base, Num(-exponent))  # type: ignore[attr-defined]
    return power(e, Num(Fraction(-1)))


def elem_div(numerator: Expr, denominator: Expr) -> Expr:
    """Element-wise division; by a scalar it is a product with the reciprocal."""
    if denominator.is_scalar:
        return mul(numerator, reciprocal(denominator))
    if is_zero(numerator):
        return numerator
    return ElemDiv(numerator, denominator)


def elem_power(base: Expr, exponent: Expr) -> Expr:
    if base.is_scalar:
        return power(base, exponent)
    if exponent == ONE:
        return base
    return ElemPower(base, exponent)


def kron(*factors: Expr) -> Expr:
    """Kronecker product, flattened; a 1 x 1 factor is a scalar multiple (s ⊗ A = s A), zero absorbs."""
    flat: list[Expr] = []
    scalars: list[Expr] = []
    for factor in factors:
        for f in factor.operands_of(Kron):
            (scalars if f.is_scalar else flat).append(f)
    rows = dim_product(*(f.shape[0] for f in flat))
    cols = dim_product(*(f.shape[1] for f in flat))
    if any(is_zero(f) for f in [*flat, *scalars]):
        return zeros((rows, cols))
    if len(flat) > 1:
        flat = [Kron(tuple(flat))]
    return mul(*scalars, *flat)


def commutation(rows: Dim, cols: Dim) -> Expr:
    """K(m, n); for a vector (m or n is 1) it is the identity: vec(a^T) = vec(a)."""
    if rows == 1 or cols == 1:
        return identity(dim_product(rows, cols))
    return Commutation(rows, cols)


def vec(e: Expr) -> Expr:
    """vec(A), the columns of A stacked; a column vector is its own vec, a row vector's is its transpose."""
    if e.shape[1] == 1:
        return e
    if e.shape[0] == 1:
        return transpose(e)
    if isinstance(e, Fill):
        return Fill(e.value, (dim_product(*e.shape), 1))
    return Func("vec", e)


def func(name: str, arg: Expr, axis: int = 0) -> Expr:
    if axis:
        return _along_axis(name, arg, axis)
    if name == "vec":  # its canonical forms, also when a rewrite rebuilds vec(F) over a new F (vec(matrix(1)))
        return vec(arg)
    if FUNCTION_FACTS[name].zero_preserving and is_zero(arg):  # sum(matrix(0)) -> 0, diag(vector(0)) -> matrix(0)
        return zeros(function_shape(name, arg.shape))
    return Func(name, arg)


def _along_axis(name: str, arg: Expr, axis: int) -> Expr:
    """f(U, axis) in canonical form: along the length of a vector it is f of the vector (softmax(u, 1) is softmax(u),
    softmax(r, 2) is softmax(r^T)^T); otherwise the node."""
    rows, cols = arg.shape
    if arg.shape != SCALAR and ((axis == 1 and cols == 1) or (axis == 2 and rows == 1)):
        return func(name, arg) if cols == 1 else transpose(func(name, transpose(arg)))
    return Func(name, arg, axis)


# ---------------------------------------------------------------- traversal


def is_call(*names: str) -> Callable[[Expr], bool]:
    """A predicate: the node is a call of one of these functions."""
    return lambda e: isinstance(e, Func) and e.name in names


def inner(a: Expr, b: Expr) -> Expr:
    """<a, b> = sum(a .* b), written a^T b for column vectors."""
    if a.is_scalar:
        return mul(a, b)
    if is_column(a.shape):
        return mul(transpose(a), b)
    return func("sum", hadamard(a, b))


def walk(e: Expr) -> Iterator[Expr]:
    """Every distinct node once, parents before their children (preorder of first occurrence), without
    recursion: a DAG with shared subexpressions is walked in its own size, not the size of its tree."""
    seen: set[int] = set()
    stack = [e]
    while stack:
        current = stack.pop()
        if id(current) in seen:
            continue
        seen.add(id(current))
        yield current
        stack.extend(child for child in reversed(current.children) if id(child) not in seen)


def postorder(e: Expr, visit: Callable[[Expr], Iterable[Expr]] | None = None) -> list[Expr]:
    """Every distinct node once, each after all of its children (a topological order, leaves first).

    `visit(node)` gives the children to walk, in the order they are walked (all of them, first to last, by
    default); a child it leaves out is not walked.
    """
    order: list[Expr] = []
    done: set[int] = set()
    stack: list[tuple[Expr, bool]] = [(e, False)]
    while stack:
        current, children_done = stack.pop()
        if id(current) in done:
            continue
        if children_done:
            done.add(id(current))
            order.append(current)
            continue
        stack.append((current, True))
        children = current.children if visit is None else tuple(visit(current))
        stack.extend((child, False) for child in reversed(children) if id(child) not in done)
    return order


def depth(e: Expr) -> int:
    """The number of levels of e (a leaf has 1), without recursion."""
    return cached_bottom_up(e, "_depth", lambda node: 1 + max((c.__dict__["_depth"] for c in node.children),
                                                               default=0))


def contains(e: Expr, target: Expr) -> bool:
    return any(sub_expr == target for sub_expr in walk(e))


def contains_differential(e: Expr) -> bool:
    """Whether e holds a dX. Cached on every node it looks at, like the hash: the derivative readers
    ask it of each factor of each term, and a product rule's terms share their factors."""
    return cached_bottom_up(e, "_has_differential", lambda node: isinstance(node, Differential) or any(
        child.__dict__["_has_differential"] for child in node.children))


def variables(e: Expr) -> dict[str, Var]:
    """The variables of an expression by name, in order of first appearance."""
    found: dict[str, Var] = {}
    for sub_expr in walk(e):
        if isinstance(sub_expr, Var):
            found.setdefault(sub_expr.name, sub_expr)
        elif isinstance(sub_expr, Differential):
            found.setdefault(sub_expr.var.name, sub_expr.var)
    return found


def dimensions(exprs: Iterable[Expr]) -> list[str]:
    """The symbolic dimensions used by the expressions, in order of first appearance."""
    seen: dict[str, None] = {}
    for e in exprs:
        for sub_expr in walk(e):
            for dim in (*sub_expr.shape, sub_expr.dim) if isinstance(sub_expr, Size) else sub_expr.shape:
                for name in dim_names(dim):
                    seen.setdefault(name)
    return list(seen)


def with_children(node: Expr, children: tuple[Expr, ...]) -> Expr:
    """The same node over other children of the same shapes, built field by field: unlike `rebuild`, no smart
    constructor runs, so the structure is kept exactly (a name standing for a subexpression stays where it is)."""
    values: list[object] = []
    remaining = iter(children)
    for name in node._field_names:
        value = node.__dict__[name]
        if isinstance(value, Expr):
            value = next(remaining)
        elif isinstance(value, tuple) and value and isinstance(value[0], Expr):
            value = tuple(next(remaining) for _ in value)
        values.append(value)
    return type(node)(*values)


def map_bottom_up(e: Expr, fn: Callable[[Expr], Expr]) -> Expr:
    """Rebuild e with fn applied to every distinct node, children first, without recursion."""
    mapped: dict[int, Expr] = {}
    for node in postorder(e):
        children = node.children
        new_children = tuple(mapped[id(child)] for child in children)
        changed = any(n is not c for n, c in zip(new_children, children, strict=True))
        rebuilt = node.rebuild(new_children) if changed else node
        mapped[id(node)] = fn(rebuilt)
    return mapped[id(e)]


def substitute(e: Expr, mapping: dict[Expr, Expr]) -> Expr:
    return map_bottom_up(e, lambda sub_expr: mapping.get(sub_expr, sub_expr))


# ---------------------------------------------------------------- definitions (programs)

Bindings = tuple[tuple[str, Expr], ...]  # definitions `name = expr`, each referring to earlier ones by name


def fresh_name(base: str, taken: set[str] | frozenset[str]) -> str:
    """`base`, or `base_1`, `base_2`, ...: the first that is not taken."""
    if base not in taken:
        return base
    k = 1
    while f"{base}_{k}" in taken:
        k += 1
    return f"{base}_{k}"


def definition_values(bindings: Bindings) -> dict[str, Expr]:
    """Each definition's value with the earlier definitions substituted, without recursion. Nodes are
    interned, so a definition used many times is one shared node: the values form a DAG as large as the
    definitions (a residual network's h_k, used by every later layer, is not copied)."""
    values: dict[str, Expr] = {}
    for name, expr in bindings:
        values[name] = _with_values(expr, values)
    return values


def inline(bindings: Bindings, e: Expr) -> Expr:
    """e with every defined name replaced by its definition: a DAG, linear in the size of the definitions."""
    return _with_values(e, definition_values(bindings))


def _with_values(e: Expr, values: dict[str, Expr]) -> Expr:
    """e with each variable named in `values` replaced by its value. A value that is a sum stays one term of the
    sums that use it (h_k = h_(k-1) + tanh(W_k h_(k-1))): flattened, each layer's sum would copy all the terms
    of the one before, L^2 / 2 links for L layers."""
    if not values:
        return e
    mapped: dict[int, Expr] = {}
    for node in postorder(e):
        children = node.children
        new_children = tuple(mapped[id(child)] for child in children)
        if isinstance(node, Var):
            mapped[id(node)] = values.get(node.name, node)
        elif all(n is c for n, c in zip(new_children, children, strict=True)):
            mapped[id(node)] = node
        elif isinstance(node, Add):
            mapped[id(node)] = _sum_of_values(children, new_children)
        else:
            mapped[id(node)] = node.rebuild(new_children)
    return mapped[id(e)]


def _sum_of_values(names: tuple[Expr, ...], values: tuple[Expr, ...]) -> Expr:
    """add(*values), except that a sum standing for a name stays one term. It prints as its terms would (a sum in
    a sum takes no parentheses) unless, after the first term, its own first term has a minus sign (`+ -x`):
    then it is flattened, as add does."""
    terms: list[Expr] = []
    for name, value in zip(names, values, strict=True):
        if isinstance(value, Add) and isinstance(name, Var) and not (terms and has_minus_sign(_first_term(value))):
            terms.append(value)
        elif isinstance(value, Add):
            terms.extend(_flat_front(value))
        elif not is_zero(value):
            terms.append(value)
    if not terms:
        return zeros(names[0].shape)
    return terms[0] if len(terms) == 1 else Add(tuple(terms))


def _flat_front(e: Add) -> list[Expr]:
    """The terms of a sum with the sums kept whole at its start flattened, so that its first term is printed first."""
    rests: list[tuple[Expr, ...]] = []
    current: Expr = e
    while isinstance(current, Add):
        rests.append(current.terms[1:])
        current = current.terms[0]
    return [current, *(term for rest in reversed(rests) for term in rest)]


def _first_term(e: Add) -> Expr:
    """The term a sum prints first, through the sums kept whole at its start; cached on each, so that a chain of
    L nested sums is walked once, not once per sum."""
    path: list[Expr] = []
    while isinstance(e, Add) and "_first_term" not in e.__dict__:
        path.append(e)
        e = e.terms[0]
    first = e.__dict__["_first_term"] if isinstance(e, Add) else e
    for node in path:
        object.__setattr__(node, "_first_term", first)
    return first

