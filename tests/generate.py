"""Random well-typed expressions over the whole input language, written as input text.

Every choice is drawn from a `Chooser`, so one generator serves two masters: hypothesis (which
shrinks a failure to a small expression) and a seeded `random.Random` (for long loops and for
instantiating rules). Sub-expressions are built for a requested shape, so every output is well
typed by construction; arguments of functions with a restricted domain are built to stay inside
it at the points the oracles sample (variables in [0.5, 1.5], square ones diagonally dominant):

- log, sqrt, ./ and fractional powers get a positive argument (exp, softplus, 1 + u.^2, ...);
- arcsin, arccos and tan get an argument in (-1/2, 1/2);
- inv, det and logdet get a well-conditioned matrix with det > 0.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

from hypothesis import strategies as st

from matcalc.core.ir import ElemDiv, Expr, Func, Power, Var

T = TypeVar("T")
Dim = str | int  # a dimension symbol, or 1
Shape = tuple[Dim, Dim]
SCALAR: Shape = (1, 1)

# unbounded element-wise functions, and those needing a restricted argument
FREE_FUNCTIONS = ("exp", "sin", "cos", "tanh", "sigmoid", "relu", "softplus", "abs", "sign", "step", "arctan",
                  "erf", "gelu")
POSITIVE_FUNCTIONS = ("log", "sqrt")
HALF_FUNCTIONS = ("arcsin", "arccos", "tan")
BOUNDED_FUNCTIONS = ("tanh", "sin", "cos")


class Chooser(Protocol):
    def choice(self, options: Sequence[T]) -> T: ...

    def integer(self, low: int, high: int) -> int: ...


@dataclass
class RandomChooser:
    rng: random.Random

    def choice(self, options: Sequence[T]) -> T:
        return options[self.rng.randrange(len(options))]

    def integer(self, low: int, high: int) -> int:
        return self.rng.randint(low, high)


@dataclass
class HypothesisChooser:
    draw: Callable

    def choice(self, options: Sequence[T]) -> T:
        return self.draw(st.sampled_from(options))

    def integer(self, low: int, high: int) -> int:
        return self.draw(st.integers(low, high))


# ---------------------------------------------------------------- variables


def _leaf_names(dims: Sequence[str]) -> dict[tuple[Shape, bool], list[str]]:
    """Variable names per (shape, symmetric): a few of each, so that variables repeat."""
    vectors = [("x", "y", "z"), ("u", "v"), ("a", "c")]  # never a dimension name (n, m, p, ...)
    squares = [("A", "B"), ("C", "D"), ("E", "F")]
    symmetric = ["S", "T", "R"]
    names: dict[tuple[Shape, bool], list[str]] = {(SCALAR, False): ["alpha", "beta"]}
    for i, d in enumerate(dims):
        names[((d, 1), False)] = list(vectors[i])
        names[((d, d), False)] = list(squares[i])
        names[((d, d), True)] = [symmetric[i]]
        for j, e in enumerate(dims):
            if i != j:
                names[((d, e), False)] = [f"W{i}{j}" if (i, j) != (1, 0) else "W"]
    return names


def declaration_of(var: Var) -> str:
    return _declaration(var.name, var.shape, var.symmetric)


def _declaration(name: str, shape: Shape, symmetric: bool) -> str:
    rows, cols = shape
    if shape == SCALAR:
        return f"{name}: scalar"
    if symmetric:
        return f"{name}: symmetric({rows})"
    if cols == 1:
        return f"{name}: vector({rows})"
    return f"{name}: matrix({rows}, {cols})"


@dataclass(frozen=True)
class Case:
    """A generated expression, its declarations, and the variables in it."""

    text: str
    where: str
    variables: tuple[str, ...]
    sizes: dict[str, int] = field(default_factory=dict, compare=False)

    def __str__(self) -> str:
        return f"{self.text}   where {self.where}"


# ---------------------------------------------------------------- the generator


class ExpressionGenerator:
    """Random well-typed expressions of a requested shape, over dimension symbols `dims`."""

    def __init__(self, chooser: Chooser, dims: Sequence[str] = ("n", "m"), max_depth: int = 4,
                 kron: bool = False, axes: bool = False) -> None:
        self.choose = chooser
        self.dims = tuple(dims)
        self.max_depth = max_depth
        self.kron = kron  # also Kronecker products and vecs (whose sizes are products: m n)
        self.axes = axes  # also broadcasts, reductions and softmax along an axis, max/min/leaky_relu/elu
        self.leaves = _leaf_names(self.dims)
        self.used: dict[str, tuple[Shape, bool]] = {}

    # --- entry points

    def case(self, shape: Shape | None = None) -> Case:
        self.used = {}
        if shape is None:  # mostly scalars and vectors: matrix-valued results are in scope only w.r.t. scalars
            shape = self.choose.choice([SCALAR, SCALAR, SCALAR, *[(d, 1) for d in self.dims], (self.dims[0],) * 2])
        text = self.expr(shape, self.max_depth)
        return self._finish(text)

    def _finish(self, text: str) -> Case:
        sizes = {d: self.choose.integer(2, 4) for d in self.dims}
        return Case(text, self.declarations(), tuple(sorted(self.used)), sizes)

    def declarations(self) -> str:
        """The declarations of every variable used since the last case began."""
        return "; ".join(_declaration(name, shape, sym) for name, (shape, sym) in sorted(self.used.items()))

    def _shapes(self, column_only: bool = False) -> list[Shape]:
        dims: list[Dim] = [1, *self.dims]
        shapes = [(r, c) for r in dims for c in dims]
        return [s for s in shapes if not column_only or s[1] == 1 or s[0] != 1]

    # --- building blocks

    def leaf(self, shape: Shape, symmetric: bool = False) -> str:
        rows, cols = shape
        if rows == 1 and cols != 1:  # a row vector: the transpose of a column
            return f"{self.leaf((cols, 1))}^T"
        name = self.choose.choice(self.leaves[(shape, symmetric)])
        self.used[name] = (shape, symmetric)
        return name

    def number(self) -> str:
        return self.choose.choice(["2", "3", "0.5", "1.5", "-1"])

    def expr(self, shape: Shape, depth: int) -> str:
        """Any expression of this shape."""
        if depth <= 0:
            return self.leaf(shape)
        makers = self._makers(shape)
        return self.choose.choice(makers)(shape, depth - 1)

    def _makers(self, shape: Shape) -> list[Callable[[Shape, int], str]]:
        rows, cols = shape
        makers: list[Callable[[Shape, int], str]] = [
            lambda s, d: self.leaf(s),
            self._sum, self._product, self._transpose, self._scaled, self._hadamard, self._quotient,
            self._elementwise, self._restricted_elementwise, self._elem_power,
        ]
        if shape == SCALAR:
            makers += [self._scalar_of_matrix, self._square_scalar, self._logsumexp, self._scalar_power,
                       self._number, self._divided]
            if self.kron:
                makers += [self._kron_scalar, self._kron_scalar, self._kron_quadratic, self._kron_trace]
        elif self.kron and (rows == cols or cols == 1):
            makers += [self._kron_unvec]
        elif rows == cols:
            makers += [self._inverse, self._matrix_power, self._diag_matrix, self._identity, self._symmetric_leaf]
        elif cols == 1:
            makers += [self._softmax, self._diag_vector, self._divided]
        if self.axes:
            makers += [self._two_argument, self._two_argument]
            if rows == 1 and cols != 1:
                makers += [self._reduced_down_columns] * 3
            elif cols == 1 and rows != 1:
                makers += [self._reduced_along_rows] * 3
            elif rows != 1 and cols != 1:
                makers += [self._softmax_along, self._broadcast, self._broadcast, self._broadcast]
            elif shape == SCALAR:
                makers += [self._sum_of_axis_result, self._largest_entry]
        return makers

    # --- batches and axes (issue 17)

    def _reduced_down_columns(self, shape: Shape, depth: int) -> str:
        """A row: a reduction of each column of a matrix."""
        rows = self.choose.choice(self.dims)
        return self._reduced(self.expr((rows, shape[1]), depth), 1)

    def _reduced_along_rows(self, shape: Shape, depth: int) -> str:
        cols = self.choose.choice(self.dims)
        return self._reduced(self.expr((shape[0], cols), depth), 2)

    def _reduced(self, matrix: str, axis: int) -> str:
        """A reduction of each column (axis 1) or row (axis 2); max and min in MATLAB's form, max(U, [], k)."""
        name = self.choose.choice(["sum", "mean", "logsumexp", "norm2", "var", "max", "min"])
        return f"{name}({matrix}, [], {axis})" if name in ("max", "min") else f"{name}({matrix}, {axis})"

    def _largest_entry(self, shape: Shape, depth: int) -> str:
        """max(u) or min(u) of a vector: its largest (smallest) entry."""
        name = self.choose.choice(["max", "min"])
        return f"{name}({self.expr((self.choose.choice(self.dims), 1), depth)})"

    def _softmax_along(self, shape: Shape, depth: int) -> str:
        return f"softmax({self.expr(shape, depth)}, {self.choose.choice(['1', '2'])})"

    def _broadcast(self, shape: Shape, depth: int) -> str:
        """A matrix with a column, a row or a scalar spread over it."""
        rows, cols = shape
        small = self.choose.choice([(rows, 1), (1, cols), SCALAR])
        operator = self.choose.choice(["+", "-", ".*", "./"])
        if small == SCALAR and operator in (".*", "./"):
            operator = "+"  # a scalar times a matrix is no broadcast
        matrix = self.expr(shape, depth)
        part = max(depth - 1, 0)
        spread = self.positive(small, part) if operator == "./" else self.expr(small, part)
        return f"({matrix} {operator} {spread})"

    def _two_argument(self, shape: Shape, depth: int) -> str:
        name = self.choose.choice(["max", "min", "leaky_relu", "elu"])
        if name == "leaky_relu":
            return f"leaky_relu({self.expr(shape, depth)}, 0.1)"
        if name == "elu":
            return f"elu({self.expr(shape, depth)})"
        first = self.expr(shape, depth)
        other = self.number() if self.choose.choice([True, False]) else self.expr(shape, max(depth - 1, 0))
        return f"{name}({first}, {other})"

    def _sum_of_axis_result(self, shape: Shape, depth: int) -> str:
        rows, cols = self.dims[0], self.dims[-1]
        return f"sum({self.expr((rows, cols), depth)} .* {self.leaf((rows, cols))})"

    # --- makers (each builds an expression of `shape` from parts of depth `depth`)

    def _sum(self, shape: Shape, depth: int) -> str:
        sign = self.choose.choice(["+", "-"])
        return f"({self.expr(shape, depth)} {sign} {self.expr(shape, depth)})"

    def _product(self, shape: Shape, depth: int) -> str:
        inner: Dim = self.choose.choice([1, *self.dims])
        rows, cols = shape
        if inner == 1 and rows == 1 and cols == 1:
            inner = self.dims[0]
        return f"({self.expr((rows, inner), depth)} {self.expr((inner, cols), depth)})"

    def _transpose(self, shape: Shape, depth: int) -> str:
        return f"({self.expr((shape[1], shape[0]), depth)})^T"

    def _scaled(self, shape: Shape, depth: int) -> str:
        scale = self.number() if self.choose.choice([True, False]) else self.expr(SCALAR, depth)
        return f"({scale} * {self.expr(shape, depth)})"

    def _hadamard(self, shape: Shape, depth: int) -> str:
        return f"({self.expr(shape, depth)} .* {self.expr(shape, depth)})"

    def _quotient(self, shape: Shape, depth: int) -> str:
        return f"({self.expr(shape, depth)} ./ {self.positive(shape, depth)})"

    def _divided(self, shape: Shape, depth: int) -> str:
        return f"({self.expr(shape, depth)} / {self.positive(SCALAR, depth)})"

    def _elementwise(self, shape: Shape, depth: int) -> str:
        return f"{self.choose.choice(FREE_FUNCTIONS)}({self.expr(shape, depth)})"

    def _restricted_elementwise(self, shape: Shape, depth: int) -> str:
        name = self.choose.choice(POSITIVE_FUNCTIONS + HALF_FUNCTIONS)
        if name in POSITIVE_FUNCTIONS:
            return f"{name}({self.positive(shape, depth)})"
        return f"{name}({self.half(shape, depth)})"

    def _elem_power(self, shape: Shape, depth: int) -> str:
        exponent = self.choose.choice(["2", "3", "0.5", "-1", "alpha"])
        if exponent in ("2", "3"):
            return f"({self.expr(shape, depth)}).^{exponent}"
        if exponent == "alpha":
            self.used["alpha"] = (SCALAR, False)
        return f"({self.positive(shape, depth)}).^{exponent}"

    def _scalar_of_matrix(self, shape: Shape, depth: int) -> str:
        name = self.choose.choice(["sum", "norm1", "norm2"])
        inner = self.choose.choice(self._shapes(column_only=True))
        return f"{name}({self.expr(inner, depth)})"

    def _square_scalar(self, shape: Shape, depth: int) -> str:
        name = self.choose.choice(["tr", "det", "logdet"])
        dim = self.choose.choice(self.dims)
        if name == "tr":
            return f"tr({self.expr((dim, dim), depth)})"
        return f"{name}({self.well_conditioned(dim, depth)})"

    def _logsumexp(self, shape: Shape, depth: int) -> str:
        return f"logsumexp({self.expr((self.choose.choice(self.dims), 1), depth)})"

    def _scalar_power(self, shape: Shape, depth: int) -> str:
        exponent = self.choose.choice(["2", "3", "-1", "0.5", "beta"])
        if exponent in ("2", "3"):
            return f"({self.expr(SCALAR, depth)})^{exponent}"
        if exponent == "beta":
            self.used["beta"] = (SCALAR, False)
        return f"({self.positive(SCALAR, depth)})^{exponent}"

    def _number(self, shape: Shape, depth: int) -> str:
        return self.choose.choice(["2", "3", "0.5", "1.5", "-1", "pi"])  # a number, or a named constant

    def _inverse(self, shape: Shape, depth: int) -> str:
        return f"inv({self.well_conditioned(shape[0], depth)})"

    def _matrix_power(self, shape: Shape, depth: int) -> str:
        exponent = self.choose.choice(["2", "3", "-1"])
        if exponent == "-1":
            return f"({self.well_conditioned(shape[0], depth)})^-1"
        return f"({self.expr(shape, depth)})^{exponent}"

    def _diag_matrix(self, shape: Shape, depth: int) -> str:
        return f"diag({self.expr((shape[0], 1), depth)})"

    def _identity(self, shape: Shape, depth: int) -> str:
        return f"({self.number()} * I + {self.expr(shape, depth)})"

    def _symmetric_leaf(self, shape: Shape, depth: int) -> str:
        return self.leaf(shape, symmetric=True)

    def _softmax(self, shape: Shape, depth: int) -> str:
        return f"softmax({self.expr(shape, depth)})"

    def _diag_vector(self, shape: Shape, depth: int) -> str:
        return f"diag({self.expr((shape[0], shape[0]), depth)})"

    # --- Kronecker products and vecs (kron=True): their sizes are products, so they stand inside a scalar, or are
    # brought back to a shape of the generator's through vec

    def _kron_factors(self, depth: int, square: bool = False) -> str:
        """A Kronecker product of two or three random operands (nested: an operand may be one in parentheses)."""
        count = self.choose.choice([2, 2, 3])
        parts = []
        for _ in range(count):
            rows: Dim = self.choose.choice([1, *self.dims]) if not square else self.choose.choice(self.dims)
            cols: Dim = rows if square else self.choose.choice([1, *self.dims])
            parts.append(self.expr((rows, cols), depth))
        return " ⊗ ".join(parts)

    def _kron_scalar(self, shape: Shape, depth: int) -> str:
        """sum, norm2 or an element-wise function of a Kronecker product, summed."""
        name = self.choose.choice(["sum", "norm2", "sum_tanh"])
        inner = self._kron_factors(depth)
        return f"sum(tanh({inner}))" if name == "sum_tanh" else f"{name}({inner})"

    def _kron_trace(self, shape: Shape, depth: int) -> str:
        """tr((A ⊗ B) (C ⊗ D)), or tr of one Kronecker product of square operands."""
        a, b = self.choose.choice(self.dims), self.choose.choice(self.dims)
        left = f"{self.expr((a, a), depth)} ⊗ {self.expr((b, b), depth)}"
        if self.choose.choice([True, False]):
            return f"tr({left})"
        return f"tr(({left}) ({self.expr((a, a), depth)} ⊗ {self.expr((b, b), depth)}))"

    def _kron_quadratic(self, shape: Shape, depth: int) -> str:
        """vec(E)^T (B ⊗ A) vec(F): vec(E)^T vec(A F B^T)."""
        p, q, r, s = (self.choose.choice(self.dims) for _ in range(4))
        e, f = self.expr((p, q), depth), self.expr((r, s), depth)
        b, a = self.expr((q, s), depth), self.expr((p, r), depth)
        return f"vec({e})^T ({b} ⊗ {a}) vec({f})"

    def _kron_unvec(self, shape: Shape, depth: int) -> str:
        """A vector or square matrix through a Kronecker product of vectors: (u ⊗ v)^T (w ⊗ z) times it."""
        d, e = self.choose.choice(self.dims), self.choose.choice(self.dims)
        u, v = self.expr((d, 1), depth), self.expr((e, 1), depth)
        w, z = self.expr((d, 1), depth), self.expr((e, 1), depth)
        return f"((({u} ⊗ {v})^T ({w} ⊗ {z})) {self.expr(shape, depth)})"

    # --- arguments that stay in a function's domain

    def positive(self, shape: Shape, depth: int) -> str:
        """Entries > 0 at every sampled point."""
        inner = max(depth - 1, 0)
        form = self.choose.choice(["exp", "softplus", "sigmoid", "square", "product", "sum"])
        if form == "square":
            return f"(1 + ({self.expr(shape, inner)}).^2)"  # the number 1 takes the shape
        if form == "product" and depth > 0:
            return f"({self.positive(shape, inner)} .* {self.positive(shape, inner)})"
        if form == "sum" and depth > 0:
            return f"({self.positive(shape, inner)} + {self.positive(shape, inner)})"
        name = form if form in ("exp", "softplus", "sigmoid") else "exp"
        return f"{name}({self.expr(shape, inner)})"

    def half(self, shape: Shape, depth: int) -> str:
        """Entries in (-1/2, 1/2)."""
        return f"(0.5 * {self.choose.choice(BOUNDED_FUNCTIONS)}({self.expr(shape, max(depth - 1, 0))}))"

    def symmetric(self, dim: Dim, depth: int) -> str:
        """A structurally symmetric matrix."""
        inner = max(depth - 1, 0)
        form = self.choose.choice(["leaf", "plus", "gram", "diag"])
        if form == "leaf":
            return self.leaf((dim, dim), symmetric=True)
        if form == "plus":
            m = self.expr((dim, dim), inner)
            return f"({m} + ({m})^T)"
        if form == "gram":
            other: Dim = self.choose.choice([1, *self.dims])
            m = self.expr((other, dim), inner)
            return f"(({m})^T {m})"
        return f"diag({self.expr((dim, 1), inner)})"

    def well_conditioned(self, dim: Dim, depth: int) -> str:
        """A square matrix with det > 0, far from singular (diagonally dominant or positive definite)."""
        inner = max(depth - 1, 0)
        form = self.choose.choice(["leaf", "bounded", "gram", "transpose", "product", "inverse"])
        if form == "leaf" or depth <= 0:
            return self.leaf((dim, dim), symmetric=self.choose.choice([False, True]))
        if form == "bounded":
            return f"(5 * I + {self.choose.choice(BOUNDED_FUNCTIONS)}({self.expr((dim, dim), inner)}))"
        if form == "gram":
            other: Dim = self.choose.choice([1, *self.dims])
            m = self.expr((other, dim), inner)
            return f"(I + ({m})^T {m})"
        if form == "transpose":
            return f"({self.well_conditioned(dim, inner)})^T"
        if form == "product":
            return f"({self.well_conditioned(dim, inner)} {self.well_conditioned(dim, inner)})"
        return f"inv({self.well_conditioned(dim, inner)})"


@st.composite
def cases(draw: Callable, max_depth: int = 3, kron: bool = False, axes: bool = False) -> Case:
    """A hypothesis strategy of random well-typed expressions (column-shaped or matrix-shaped); with `kron`, Kronecker
    products and vecs among them; with `axes`, broadcasts and operations along an axis."""
    return ExpressionGenerator(HypothesisChooser(draw), max_depth=max_depth, kron=kron, axes=axes).case()


def random_cases(seed: int, count: int, max_depth: int = 3, kron: bool = False) -> list[Case]:
    generator = ExpressionGenerator(RandomChooser(random.Random(seed)), max_depth=max_depth, kron=kron)
    return [generator.case() for _ in range(count)]


# ---------------------------------------------------------------- instances of a rule


def argument_domains(e: Expr, inherited: str = "any", found: dict[Var, str] | None = None) -> dict[Var, str]:
    """For each variable of e, the domain its instances must keep: "conditioned" under inv, det and logdet,
    "positive" under log, sqrt, a divisor or the base of a scalar power, else "any"."""
    found = {} if found is None else found
    if isinstance(e, Var):
        if found.get(e, "any") == "any":
            found[e] = inherited
        return found
    for child in e.children:
        domain = inherited
        if isinstance(e, Func) and e.name in ("inv", "det", "logdet"):
            domain = "conditioned"
        elif (isinstance(e, Func) and e.name in ("log", "sqrt")) or (isinstance(e, ElemDiv) and child is e.denominator):
            domain = "positive"
        elif isinstance(e, Power) and child is e.base:
            domain = "positive" if e.base.is_scalar else "conditioned"
        argument_domains(child, domain, found)
    return found


@dataclass(frozen=True)
class Instance:
    expr: Expr
    where: str  # the declarations of the variables of the random sub-expressions
    names: frozenset[str]  # those variables
    sizes: dict[str, int]


def instantiate(pattern: Expr, chooser: Chooser, max_depth: int = 2, keep: frozenset[str] = frozenset()) -> Instance:
    """`pattern` with each variable (but those in `keep`) replaced by a random expression of its shape that
    keeps its domain (a symmetric expression for a symmetric variable), and random sizes for its dimensions."""
    from matcalc import parse
    from matcalc.core.ir import dimensions, substitute

    dims = dimensions([pattern]) or ["n"]
    generator = ExpressionGenerator(chooser, dims=dims, max_depth=max_depth)
    texts: dict[Var, str] = {}
    for var, domain in argument_domains(pattern).items():
        rows, cols = var.shape
        if var.name in keep:
            continue
        if var.symmetric:
            texts[var] = generator.symmetric(rows, max_depth)
        elif domain == "conditioned" and rows == cols and rows != 1:
            texts[var] = generator.well_conditioned(rows, max_depth)
        elif domain == "positive" or (domain == "conditioned" and var.shape == SCALAR):  # alpha in inv(alpha X)
            texts[var] = generator.positive(var.shape, max_depth)
        else:
            texts[var] = generator.expr(var.shape, max_depth)
    where = generator.declarations() or None
    mapping: dict[Expr, Expr] = {var: parse(text, where=where, shape=var.shape) for var, text in texts.items()}
    sizes = {d: chooser.integer(2, 4) for d in dims}
    return Instance(substitute(pattern, mapping), where or "", frozenset(generator.used), sizes)


def derivative_of_an_instance(pattern: Expr, name: str, seed: int,
                              refusals: tuple[type[Exception], ...] = ()) -> tuple[Any, Instance] | None:
    """The derivative w.r.t. `name` of `pattern` with every other variable replaced by a random expression (seeded),
    and the instance; None where the random part uses the name with another shape (or `diff` raises one of
    `refusals`)."""
    import matcalc
    from matcalc.core.ir import variables
    from matcalc.render.text import to_text

    drawn = instantiate(pattern, RandomChooser(random.Random(seed)), keep=frozenset({name}))
    declared = drawn.where if name in drawn.names else "; ".join(
        filter(None, [drawn.where, declaration_of(variables(pattern)[name])]))
    try:
        return matcalc.diff(to_text(drawn.expr), name, where=declared), drawn
    except (matcalc.DeclarationError, matcalc.ShapeError, *refusals):
        return None
