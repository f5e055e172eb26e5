"""What a derivative is, decided once: its kind, layout, form and axes, and the two conventions applied to it.

The conventions (docs/conventions.md) are decided here and nowhere else:
- a gradient w.r.t. a symmetric matrix is sym(G) = (G + G^T)/2 (`symmetric_gradient`, `sym`);
- the denominator layout is the transpose of a Jacobian, the Jacobian layout (the seeds': Parr & Howard, Dillon)
  the transpose of a gradient, the 1×n row ∂f/∂x = ∇f^T (`transposed`, `layout_step`).
The engine (derive, backprop), the proof (backends/verify) and the printers ask a DerivativeSpec.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum
from fractions import Fraction
from typing import Any, Literal, Protocol

from ..core import ir
from ..core.errors import ParseError, UnsupportedError
from ..core.ir import Expr, Var

Layout = Literal["numerator", "denominator", "jacobian"]
LAYOUTS: tuple[str, ...] = ("numerator", "denominator", "jacobian")
Axes = tuple[ir.Dim, ...]


class Kind(str, Enum):
    """What a derivative is; a str, so it prints, compares and serialises as its name ("gradient")."""

    DERIVATIVE = "derivative"  # w.r.t. a scalar: the entrywise derivative, with the function's shape
    GRADIENT = "gradient"  # of a scalar: the variable's shape
    JACOBIAN = "jacobian"  # of a vector w.r.t. a vector: m x n (numerator layout)
    HESSIAN = "hessian"
    TENSOR = "tensor"  # three axes or more: held in vec form, d vec(F) / d vec(X)^T

    __str__ = str.__str__
    __format__ = str.__format__
    __repr__ = str.__repr__  # 'gradient', as the plain strings it replaces


Form = Literal["matrix", "vec"]


METHODS = ("differential", "chain", "index")  # the derivation methods (`--steps METHOD`); the first is the default


def check_method(method: object) -> str:
    """A derivation method's name, or a clear error naming the three."""
    if not isinstance(method, str) or method not in METHODS:
        raise ParseError(f"the derivation method must be one of {', '.join(METHODS)}, not {method!r}"[:300])
    return method


@dataclass(frozen=True)
class Partial:
    """∂of/∂wrt written with names (∂y/∂u2); `of_vec`/`wrt_vec` write vec(F) and vec(X)^T where a side is a
    matrix, so that the local derivative is the 2-D Jacobian of the vecs (a 3rd-order tensor in vec form)."""

    of: str
    wrt: str
    of_vec: bool = False
    wrt_vec: bool = False
    total: bool = False  # the total derivative (dy/dx, through every path), as Parr & Howard write it


# How a step's claim is checked (tests/test_derivation_methods.py evaluates every step so):
# "value": expr = of (a definition); "jacobian": expr = d vec(of) / d vec(wrt)^T (rows: the entries of vec(of));
# "jacobian_T": its transpose (the denominator layout); "gradient": expr = the gradient of the scalar `of`, shaped
# like wrt; "gradient_T": its transpose (the Jacobian layout); "sym_gradient": its symmetric part (G + G^T)/2;
# "differential": expr = d(of) in the direction d(wrt) (expr holds the Differential); "result": expr is the result
# in the derivative's own convention; "entry": the index sum `index` is the entry F_ij of `of`;
# "index": the index sum is ∂F_ij/∂X_kl.
ClaimKind = Literal["value", "jacobian", "jacobian_T", "gradient", "gradient_T", "sym_gradient", "differential",
                    "result", "entry", "index"]


@dataclass(frozen=True)
class Claim:
    """What a step states, in numbers: `expr` (or the step's index sum) equals `how` of `of` w.r.t. `wrt`. `of` is
    written over the inputs and the intermediate variables before it; those are the function's own values."""

    how: ClaimKind
    # `of`, or how to build it when a check asks (an adjoint's claim inlines the rest of the program: built for
    # every line of a deep network, the claims alone would cost time quadratic in its depth)
    stated: Expr | Callable[[], Expr]
    wrt: Var | None = None

    @functools.cached_property
    def of(self) -> Expr:
        return self.stated if isinstance(self.stated, Expr) else self.stated()


@dataclass(frozen=True)
class Step:
    """One step of a derivation: what was done, the rules used, and the expression obtained.

    The chain and index methods also say where the step belongs (`section`, a heading), its left-hand side (`lhs`:
    a name or a derivative; `via`: the chain rule's sum of products of local derivatives), a note (its kind and
    shapes), an index sum (`index`, an index_form.IndexForm, printed instead of expr) and the claim it makes.
    """

    title: str
    expr: Expr
    rules: tuple[str, ...] = ()
    section: str = ""
    lhs: tuple[Partial | str, ...] = ()
    via: tuple[tuple[Partial, ...], ...] = ()
    note: str = ""
    index: Any = None
    claim: Claim | None = None


def axes_of(shape: ir.Shape) -> Axes:
    """A 2-D shape's axes as a tensor's: a column or row vector has one, a scalar none."""
    return tuple(d for d in shape if d != 1)


def kind_of(function: Expr, variable: Var) -> Kind:
    """What the derivative is: a matrix the cookbook writes (up to two axes), else a tensor held in vec form."""
    out, var = function.shape, variable.shape
    if var == ir.SCALAR:
        return Kind.DERIVATIVE
    if out == ir.SCALAR:
        return Kind.GRADIENT
    if ir.is_vector_shape(out) and ir.is_column(var):  # a row vector has the Jacobian of its transpose
        return Kind.JACOBIAN
    return Kind.TENSOR


def check_layout(layout: object) -> Layout:
    if not isinstance(layout, str) or layout not in LAYOUTS:
        raise ParseError(f"layout must be 'numerator', 'denominator' or 'jacobian', not {layout!r}"[:300])
    return layout  # type: ignore[return-value]


@dataclass(frozen=True)
class DerivativeSpec:
    """The derivative asked for: its kind, layout and whether the variable is a symmetric matrix."""

    kind: Kind
    layout: Layout = "numerator"
    symmetric: bool = False

    @classmethod
    def of(cls, function: Expr, variable: Var, layout: Layout = "numerator") -> DerivativeSpec:
        kind = kind_of(function, variable)
        if kind is Kind.TENSOR and layout == "denominator":
            raise UnsupportedError("the denominator layout is defined for the Jacobian of a vector; a tensor has "
                                   "the output's axes first (docs/conventions.md)")
        return cls(kind, layout, variable.symmetric)

    @property
    def form(self) -> Form:
        return "vec" if self.kind is Kind.TENSOR else "matrix"

    @property
    def symmetric_gradient(self) -> bool:
        """The gradient of a scalar w.r.t. a symmetric matrix is sym(G), the gradient on symmetric matrices."""
        return self.symmetric and self.kind is Kind.GRADIENT

    @property
    def transposed(self) -> bool:
        """The denominator layout writes a Jacobian transposed (n x m); the Jacobian layout writes a gradient
        transposed, as the Jacobian of a scalar: the 1×n row w.r.t. a vector, n×m w.r.t. an m×n matrix (so that
        df = (∂f/∂x) dx, and df = tr((∂f/∂X) dX)). Every other kind is the same in all three layouts."""
        if self.layout == "denominator":
            return self.kind is Kind.JACOBIAN
        return self.layout == "jacobian" and self.kind is Kind.GRADIENT

    @property
    def layout_step(self) -> str:
        """The title of the derivation's step that writes the result in its layout (when `transposed`)."""
        if self.layout == "jacobian":
            return "Jacobian layout (a row: the transpose of the gradient)"
        return "denominator layout (transpose)"

    @property
    def layout_claim(self) -> ClaimKind:
        """What the layout step's expression is: the Jacobian transposed (denominator), or the gradient transposed
        (the Jacobian layout's row)."""
        return "gradient_T" if self.layout == "jacobian" else "jacobian_T"

    def sym(self, gradient: Expr) -> Expr:
        """sym(G) = (G + G^T)/2 where it applies, before simplifying, so that G and G^T meet as like terms."""
        if not self.symmetric_gradient:
            return gradient
        return symmetric_part(gradient)


def symmetric_part(e: Expr) -> Expr:
    """(E + E^T)/2."""
    return ir.mul(ir.Num(Fraction(1, 2)), ir.add(e, ir.transpose(e)))


class Result(Protocol):
    """What the printers and backends read of a derivative (api.Derivative is one)."""

    function: Expr
    variable: Var
    body: Expr
    kind: Kind
    layout: Layout
    form: Form
    bindings: ir.Bindings
    program: ir.Bindings
    steps: tuple[Step, ...]

    @property
    def expr(self) -> Expr: ...

    @property
    def definitions(self) -> ir.Bindings: ...

    @property
    def of(self) -> Expr: ...

    @property
    def split_axes(self) -> tuple[Axes, Axes]: ...

    @property
    def shape(self) -> ir.Shape | Axes: ...
