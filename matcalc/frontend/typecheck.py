"""Stage 2: syntax tree -> typed tree (typed.py), inferring every dimension by unification; lower.py then
turns the typed tree and the dimension naming into the IR, and parse_typed / parse_program here do both.

Dimensions are unknowns joined by union-find over the whole expression (in `x^T A x`, A must be
n x n), or over a whole program (in `h = W x; y = A h`, rows(A) = rows(W)). An unknown is never
unified with 1, so scalar-ness is decided by each node's kind, and a mismatch is reported with both
operands' source text and shapes. No walk here recurses over the depth of the syntax tree.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Callable, Generator
from dataclasses import dataclass
from fractions import Fraction
from typing import TYPE_CHECKING, TypeVar

from ..core import ir
from ..core.constants import CONSTANTS
from ..core.errors import MatcalcError, ParseError, ResultShapeError, ShapeError, abbreviate, where_hint
from ..core.functions import FUNCTIONS
from .lower import MAX_DEPTH as MAX_DEPTH  # re-exported: the depth limit of what parse_typed returns
from .lower import Naming, declared_symbols, dimension, lower
from .parse import (
    SYMMETRIC_KINDS,
    Declaration,
    Declarations,
    Statement,
    caret_line,
    dimension_names,
    is_program,
    parse_statements,
    parse_tree,
    resembles_function,
)
from .typed import DimProd, DimTerm, DimVar, SymbolInfo, Typed

if TYPE_CHECKING:
    from .generated_parser import Token, Tree

T = TypeVar("T")
GREEK = frozenset(
    {
        "alpha", "beta", "gamma", "delta", "epsilon", "zeta", "eta", "theta", "iota", "kappa", "lambda",
        "mu", "nu", "xi", "omicron", "pi", "rho", "sigma", "tau", "upsilon", "phi", "chi", "psi", "omega",
    }
)
DIM_NAMES = ("n", "m", "p", "q", "r", "s", "k", "l", "t", "u", "v", "w")


def default_kind(name: str) -> str:
    """A capital letter starts a matrix, a Greek name is a scalar, other lowercase names are vectors."""
    if name[0].isupper():
        return "matrix"
    stem = re.match(r"[A-Za-z\u0370-\u03ff]*", name).group(0)  # type: ignore[union-attr]
    if "\u0370" <= name[0] <= "\u03ff" or stem.lower() in GREEK:
        return "scalar"
    return "vector"


# ---------------------------------------------------------------- dimensions


class Dimensions:
    def __init__(self, reserved_names: set[str]) -> None:
        self.parent: dict[DimVar, DimTerm] = {}
        self.named: dict[str, DimVar] = {}
        self.created: list[DimVar] = []
        self.reserved = reserved_names
        self.avoid: set[str] = set()  # the variables' names, which fresh dimension names must not take

    def fresh(self, name: str | None = None) -> DimVar:
        if name is not None and name in self.named:
            return self.named[name]
        var = DimVar(len(self.created), name)
        self.created.append(var)
        if name is not None:
            self.named[name] = var
        return var

    def find(self, term: DimTerm) -> DimTerm:
        root = term
        while isinstance(root, DimVar) and root in self.parent:
            root = self.parent[root]
        while isinstance(term, DimVar) and term in self.parent:  # path compression: a long program stays linear
            parent = self.parent[term]
            self.parent[term] = root
            term = parent
        return root

    def expand(self, term: DimTerm) -> tuple[int, list[DimVar]]:
        """A dimension as a whole number times unbound roots, its products multiplied out: with an explicit stack,
        since a product's factor may be bound to a product in turn. The roots are in the order of the product's
        structure, outer factor first (that of A in A ⊗ B, of the columns in vec(X)): two products' unknowns are
        paired in that order."""
        coefficient = 1
        roots: list[DimVar] = []
        stack = [term]
        while stack:
            current = self.find(stack.pop())
            if isinstance(current, int):
                coefficient *= current
            elif isinstance(current, DimProd):
                stack.extend(reversed(current.factors))
            else:
                roots.append(current)
        return coefficient, roots

    @staticmethod
    def _normal(coefficient: int, roots: list[DimVar]) -> DimTerm:
        """The simplest term for coefficient × roots: a number, a lone root, or a product."""
        if not roots:
            return coefficient
        if len(roots) == 1 and coefficient == 1:
            return roots[0]
        return DimProd((*roots, *([coefficient] if coefficient != 1 else [])))

    def product(self, *terms: DimTerm) -> DimTerm:
        """The product of dimensions, as simple as the bindings so far allow (n × 1 is n, 2 × 3 is 6)."""
        return self._normal(*self.expand(DimProd(terms)))

    def term(self, dim: ir.Dim) -> DimTerm:
        """The term of an IR dimension (a declared one, an expected shape's): names are named unknowns."""
        if isinstance(dim, int):
            return dim
        if isinstance(dim, ir.DimProduct):
            return self.product(dim.coefficient, *map(self.fresh, dim.factors))
        return self.fresh(dim)

    def _unify_products(self, a: DimTerm, b: DimTerm) -> bool:
        """Unify where one side is a product. Sizes are positive, so a factor on both sides cancels (m p = m q
        means p = q); what remains unifies as usual, and an unnamed unknown alone on one side becomes the
        product on the other. Two products that still differ are taken to differ."""
        coefficient_a, roots_a = self.expand(a)
        coefficient_b, roots_b = self.expand(b)
        rest_b = list(roots_b)
        rest_a = []
        for root in roots_a:
            if any(root is other for other in rest_b):
                rest_b.remove(root)  # identity: DimVar has no __eq__
            else:
                rest_a.append(root)
        left, right = self._normal(coefficient_a, rest_a), self._normal(coefficient_b, rest_b)
        if isinstance(left, DimProd) and isinstance(right, DimProd):
            # Unknowns only, as many on each side: paired in order of appearance, which types vec(X)^T vec(Y)
            # and (A ⊗ B) (C ⊗ D) as meant (X, Y of one shape); a declaration says otherwise when that is wrong.
            # A named factor may meet an unknown too (a n against c c, from (vector(1)^T ⊗ I) diag(vec(I))).
            pairs = self._pairs(rest_a, rest_b) if coefficient_a == coefficient_b else None
            return pairs is not None and all(self.unify(var_a, var_b) for var_a, var_b in pairs)
        if not isinstance(left, DimProd) and not isinstance(right, DimProd):
            return self.unify(left, right)  # neither is a product now: no further recursion
        single, whole = (left, right) if isinstance(right, DimProd) else (right, left)
        if isinstance(single, DimVar) and single.name is None:  # it occurs not in `whole`: common roots cancelled
            self.parent[single] = whole
            return True
        return False

    def _pairs(self, rest_a: list[DimVar], rest_b: list[DimVar]) -> list[tuple[DimVar, DimVar]] | None:
        """How to pair the factors of two products of as many factors, none common: in order of appearance where each
        pair has an unnamed unknown; else each named factor with an unknown of the other side, in order, and the
        unknowns left in order (`I ⊗ A + B ⊗ I`, A n×n and B m×m: n p = m q gives p = m, q = n)."""
        if len(rest_a) != len(rest_b):
            return None
        if all(self._pairable(var_a, var_b) for var_a, var_b in zip(rest_a, rest_b, strict=True)):
            return list(zip(rest_a, rest_b, strict=True))
        named_a, unknown_a = [v for v in rest_a if v.name is not None], [v for v in rest_a if v.name is None]
        named_b, unknown_b = [v for v in rest_b if v.name is not None], [v for v in rest_b if v.name is None]
        if len(named_a) > len(unknown_b) or len(named_b) > len(unknown_a):
            return None
        return [*zip(named_a, unknown_b, strict=False), *zip(unknown_a, named_b, strict=False),
                *zip(unknown_a[len(named_b):], unknown_b[len(named_a):], strict=True)]

    @staticmethod
    def _pairable(a: DimTerm, b: DimTerm) -> bool:
        """Whether two factors of products may be paired: one of them is an unnamed unknown."""
        return any(isinstance(term, DimVar) and term.name is None for term in (a, b))

    def unify(self, a: DimTerm, b: DimTerm) -> bool:
        a, b = self.find(a), self.find(b)
        if a is b or (isinstance(a, int) and a == b):
            return True
        if isinstance(a, DimProd) or isinstance(b, DimProd):
            return self._unify_products(a, b)
        if isinstance(a, int) and isinstance(b, int):
            return False
        if isinstance(a, int):
            a, b = b, a
        assert isinstance(a, DimVar)
        if isinstance(b, int):
            if b == 1:
                return False
            self.parent[a] = b
            return True
        if a.name is not None and b.name is not None:
            return False
        if a.name is not None:  # keep the declared name at the root
            a, b = b, a
        self.parent[a] = b
        return True

    def names(self, avoid: set[str] | frozenset[str] = frozenset()) -> Naming:
        """Resolved dimension of every root: declared name, integer, or a fresh name by first appearance.

        A fresh name is never one in `avoid` (the variables' names): a dimension's name can stand for its size.
        """
        taken = set(self.named) | self.reserved | set(avoid)
        candidates = itertools.chain(DIM_NAMES, (f"n{i}" for i in itertools.count(1)))  # never runs out
        pool = (n for n in candidates if n not in taken)
        out: dict[DimVar, ir.Dim] = {}
        for var in self.created:
            root = self.find(var)
            if isinstance(root, int):
                out[var] = root
            elif isinstance(root, DimVar):
                if root not in out:
                    out[root] = root.name if root.name is not None else next(pool)
                out[var] = out[root]
        for var in self.created:  # bound to products, once every root has its name (a product of names, m·n)
            if var not in out:
                coefficient, roots = self.expand(var)
                out[var] = ir.dim_product(coefficient, *(out[root] for root in roots))
        return out

    def show(self, term: DimTerm) -> str:
        return str(dimension(term, self.names(self.avoid)))


# Literals as large as the exact constants the engine keeps (ir.MAX_CONSTANT_BITS), so that every printed
# result parses back; a value beyond float64's range is an EvaluationError only when evaluated in floats.
MAX_NUMBER_DIGITS = 3_000
MAX_NUMBER_EXPONENT = 3_000


Visit = Generator["Tree", Typed, Typed]  # a visit_* method: yields the subtrees it needs typed, gets their types


class Inference:
    """The types of one expression, or of a program's statements (`defined` are its defined names)."""

    def __init__(self, text: str, declarations: Declarations, defined: frozenset[str] = frozenset()) -> None:
        self.text = text
        self.declarations = declarations
        self.dimension_names = dimension_names(declarations)
        self.dims = Dimensions(self.dimension_names)
        self.symbols: dict[str, SymbolInfo] = {}
        self.definitions: dict[str, tuple[DimTerm, DimTerm]] = {}  # the shape of each name defined so far
        self.annotations: dict[str, tuple[DimTerm, DimTerm]] = {}  # the declared shape of a defined name
        self.implicit_dimensions: list[str] = []  # the dimensions named in commutation(m, n) and declared nowhere
        self.unhinted: set[str] = set()  # names a shape error's hint must not suggest declaring a scalar
        for declaration in declarations.values():  # declared dims are named in declaration order
            if declaration.kind == "dim":
                self.dims.fresh(declaration.name)
            elif declaration.name in defined:
                self.annotations[declaration.name] = self.declared_shape(declaration)
            else:
                self.symbol(declaration.name)
        self.dims.avoid |= defined  # a fresh dimension takes no defined name either

    # ------------------------------------------------------------ messages
    def fmt(self, node: Typed) -> str:
        rows, cols = (self.dims.show(d) for d in node.shape)
        if node.is_scalar:
            return "a scalar"
        if cols == "1":
            return f"a vector ({rows}×1)"
        if rows == "1":
            return f"a row vector (1×{cols})"
        return f"a matrix ({rows}×{cols})"

    # ------------------------------------------------------------ symbols
    def symbol(self, name: str) -> SymbolInfo:
        if name in self.symbols:
            return self.symbols[name]
        self.dims.avoid.add(name)
        declaration = self.declarations.get(name) or Declaration(name, default_kind(name))
        info = SymbolInfo(declaration.kind, self.declared_shape(declaration))
        self.symbols[name] = info
        return info

    def declared_shape(self, declaration: Declaration) -> tuple[DimTerm, DimTerm]:
        dims = [self.dims.term(d) for d in declaration.dims]
        kind = declaration.kind
        if kind == "scalar":
            return (1, 1)
        if kind == "vector":
            return (dims[0] if dims else self.dims.fresh(), 1)
        if kind in SYMMETRIC_KINDS:
            size = dims[0] if dims else self.dims.fresh()
            return (size, size)
        return (dims[0], dims[1]) if dims else (self.dims.fresh(), self.dims.fresh())

    # ------------------------------------------------------------ tree walk
    def source(self, tree: Tree | Token) -> str:
        start, end = _span(tree)
        return self.text[start:end].strip() if start is not None else str(tree)

    def visit(self, tree: Tree | Token) -> Typed:
        """The typed form of a syntax tree, without recursion over its depth.

        A visit_* method of a leaf returns its Typed; one of an inner node is a generator that yields
        each subtree it needs typed, when the recursive walk would have typed it, and is sent back that
        subtree's Typed. An explicit stack of suspended methods stands in for the call stack: children
        are typed before their node is, and every check runs in the order, and every error is the one,
        of a recursive walk.
        """
        stack: list[Visit] = []
        started = self._start(tree)
        result: Typed | None = None
        if isinstance(started, Typed):
            return started
        stack.append(started)
        while stack:
            try:
                child = stack[-1].send(result)  # type: ignore[arg-type]
            except StopIteration as finished:
                stack.pop()
                result = finished.value
                continue
            started = self._start(child)
            if isinstance(started, Typed):
                result = started
            else:
                stack.append(started)
                result = None
        assert result is not None
        return result

    def _start(self, tree: Tree | Token) -> Typed | Visit:
        kind = getattr(tree, "data", None)
        if kind is None:  # a bare token
            raise AssertionError(f"unexpected token {tree!r}")
        return getattr(self, f"visit_{kind}")(tree)

    def visit_number(self, tree: Tree) -> Typed:
        token = tree.children[0]
        return Typed("num", (1, 1), str(token), payload=self.number(token))

    def number(self, token: Token) -> Fraction:
        """The exact value of a number literal; one beyond float64's range is refused, not computed."""
        mantissa, _, exponent = str(token).lower().partition("e")
        if len(mantissa) > MAX_NUMBER_DIGITS or (exponent and abs(int(exponent)) > MAX_NUMBER_EXPONENT) \
                or not ir.fits_exactly(Fraction(str(token))):
            position = token.start_pos or 0
            raise ParseError(f"the number at column {position + 1} is too long or too large: at most "
                             f"{MAX_NUMBER_DIGITS} digits and an exponent within ±{MAX_NUMBER_EXPONENT}\n"
                             f"{caret_line(self.text, position)}", self.text, position)
        return Fraction(str(token))

    def visit_name(self, tree: Tree) -> Typed:
        name = str(tree.children[0])
        if name in self.definitions:  # a defined name stands for its definition, an opaque leaf of its shape
            return Typed("var", self.definitions[name], name, payload=(name, False, False))
        if name in ir.IDENTITY_NAMES and name not in self.declarations:
            size = self.dims.fresh()
            return Typed("identity", (size, size), name)
        if name in CONSTANTS and name not in self.declarations:  # pi: a scalar leaf of its own
            return Typed("constant", (1, 1), name, payload=name)
        if name in self.dimension_names:  # a declared dimension's name stands for its size
            return Typed("size", (1, 1), name, payload=self.dims.fresh(name))
        info = self.symbol(name)
        return Typed("var", info.shape, name, payload=(name, info.kind in SYMMETRIC_KINDS, info.kind == "spd"))

    def visit_fill(self, tree: Tree) -> Typed:
        keyword, number_tree = tree.children
        sign, number, denominator = number_tree.children  # vector(-1/3): an optional sign and quotient
        value = self.number(number) * (-1 if sign is not None and str(sign) == "-" else 1)
        if denominator is not None:
            if self.number(denominator) == 0:
                position = denominator.start_pos or 0
                raise ParseError(f"division by zero in the constant at column {position + 1}\n"
                                 f"{caret_line(self.text, position)}", self.text, position)
            value /= self.number(denominator)
        shape = (self.dims.fresh(), 1) if str(keyword) == "vector" else (self.dims.fresh(), self.dims.fresh())
        return Typed("fill", shape, self.source(tree), payload=value)

    def visit_unary(self, tree: Tree) -> Visit:
        sign, operand = tree.children
        inner = yield operand
        if str(sign) == "+":
            return inner
        return Typed("neg", inner.shape, self.source(tree), [inner])

    def visit_sum(self, tree: Tree) -> Visit:
        items = tree.children
        result = yield items[0]
        for sign, operand in zip(items[1::2], items[2::2], strict=True):
            right = yield operand
            result = self.add(result, right, str(sign), self._join(result, right, str(sign)))
        return result

    def visit_product(self, tree: Tree) -> Visit:
        items = tree.children
        result = yield items[0]
        for tail in items[1:]:
            if tail.data == "explicit":
                operator, operand = tail.children
                right = yield operand
                result = self.multiply(result, right, str(operator), self._join(result, right, str(operator)))
            else:
                right = yield tail.children[0]
                result = self.multiply(result, right, "", self._join(result, right, ""))
        return result

    def visit_postfix(self, tree: Tree) -> Visit:
        items = tree.children
        result = yield items[0]
        start, _ = _span(tree)
        for op in items[1:]:
            _, end = _span(op)
            text = self.text[start:end].strip() if start is not None and end is not None else result.text
            if op.data == "transpose_op":
                result = Typed("transpose", (result.shape[1], result.shape[0]), text, [result])
            elif op.data == "power_op":
                exponent = yield op.children[0]
                result = self.power(result, exponent, text)
            else:
                exponent = yield op.children[0]
                result = self.elem_power(result, exponent, text)
        return result

    def visit_call(self, tree: Tree) -> Visit:
        name_token, *arguments = tree.children
        typed_arguments = []
        for argument in arguments:  # `[]` stands only where parse._check_empty allows it: max(U, [], k)
            typed_arguments.append(EMPTY if getattr(argument, "data", None) == "empty_matrix" else (yield argument))
        return self.call(str(name_token), typed_arguments, self.source(tree))

    def visit_kron(self, tree: Tree) -> Visit:
        """A ⊗ B ⊗ ...: one n-ary node (as ir.kron flattens it), of shape (product of rows, product of cols)."""
        factors = []
        for item in tree.children:
            if getattr(item, "type", None) != "KRON_OP":
                factors.append((yield item))
        return self.kron(factors, self.source(tree))

    def visit_kron_call(self, tree: Tree) -> Visit:
        factors = []
        for item in tree.children[1:]:
            factors.append((yield item))
        return self.kron(factors, self.source(tree))

    def visit_commutation(self, tree: Tree) -> Visit:
        """commutation(m, n): its arguments are sizes; an undeclared bare name there is a dimension's name."""
        _, *arguments = tree.children
        for argument in arguments:
            self._implicit_dimensions(argument)
        sizes = []
        for argument in arguments:
            typed = yield argument
            sizes.append(self.size_term(typed, tree))
        rows, cols = sizes
        size = self.dims.product(rows, cols)
        return Typed("commutation", (size, size), self.source(tree), payload=(rows, cols))

    def visit_sized_identity(self, tree: Tree) -> Visit:
        """identity(m n): the identity matrix of that size; its argument is a size, as commutation's are."""
        _, argument = tree.children
        self._implicit_dimensions(argument)
        size = self.size_term((yield argument), tree)
        return Typed("identity", (size, size), self.source(tree))

    # ------------------------------------------------------------ operators
    @staticmethod
    def _join(left: Typed, right: Typed, operator: str) -> str:
        """The text of `left operator right` for messages, abbreviated so that a long sum costs linear time."""
        middle = f" {operator} " if operator else " "
        return abbreviate(f"{abbreviate(left.text)}{middle}{right.text}")

    def unify_shapes(self, left: Typed, right: Typed, what: str) -> None:
        if not (self.dims.unify(left.shape[0], right.shape[0]) and self.dims.unify(left.shape[1], right.shape[1])):
            raise ShapeError(f"{what} needs operands of the same shape, but `{left.text}` is {self.fmt(left)} "
                             f"and `{right.text}` is {self.fmt(right)}")

    def broadcast(self, scalar: Typed, like: Typed) -> Typed:
        """A number next to a vector or matrix in + - ./ stands for a constant of that shape."""
        return Typed("fill", like.shape, scalar.text, payload=_number_value(scalar))

    def _is_one(self, term: DimTerm) -> bool:
        return self.dims.find(term) == 1

    def broadcast_pair(self, left: Typed, right: Typed, what: str, written: bool = True) -> tuple[Typed, Typed]:
        """The operands of an element-wise operation, broadcast as NumPy does and unified: a scalar stands for
        itself at every entry, a column for itself in every column of a matrix with as many rows, a row for itself
        in every row. A column and a row do not make a matrix: that is refused, as a likely slip. A broadcast the user
        `written` (not one a lowering writes, as in var(X, 1)) must be unambiguous: see _spread."""
        if left.is_scalar != right.is_scalar:
            scalar, other = (left, right) if left.is_scalar else (right, left)
            if written and _number_value(scalar) is None and self._undeclared_vector(other) \
                    and not self._declared_name(scalar):
                name = other.payload[0]  # type: ignore[index]
                verb = {"'+'": "add", "'-'": "subtract"}.get(what, "combine")
                raise ShapeError(
                    f"cannot {verb} `{left.text}` ({self.fmt(left)}) and `{right.text}` ({self.fmt(right)}): `{name}` "
                    f"is a vector only because lowercase names are vectors unless declared; declare which you mean: "
                    f"{where_hint(f'{name}: scalar')}, or {where_hint(f'{name}: vector')} to take `{scalar.text}` at "
                    f"every entry")
            spread = self.broadcast(scalar, other) if _number_value(scalar) is not None else \
                Typed("spread", other.shape, scalar.text, [scalar], payload="entries")
            return (spread, other) if left.is_scalar else (other, spread)
        spread_left, spread_right = left, right
        if not left.is_scalar:
            left_rows, left_cols = map(self._is_one, left.shape)
            right_rows, right_cols = map(self._is_one, right.shape)
            if (left_cols and right_rows) or (left_rows and right_cols):
                raise ShapeError(f"{what} needs operands of the same shape, but `{left.text}` is {self.fmt(left)} and "
                                 f"`{right.text}` is {self.fmt(right)}: a column and a row do not broadcast to a "
                                 f"matrix here; write the outer sum as `u vector(1)^T + vector(1) v^T`")
            if left_cols and not right_cols and not left_rows:
                spread_left = self._spread(left, right, "columns", what, written, True)
            elif right_cols and not left_cols and not right_rows:
                spread_right = self._spread(right, left, "columns", what, written, False)
            elif left_rows and not right_rows and not left_cols:
                spread_left = self._spread(left, right, "rows", what, written, True)
            elif right_rows and not left_rows and not right_cols:
                spread_right = self._spread(right, left, "rows", what, written, False)
        if not (self.dims.unify(spread_left.shape[0], spread_right.shape[0])
                and self.dims.unify(spread_left.shape[1], spread_right.shape[1])):
            spread = spread_left is not left or spread_right is not right
            besides = ", or a column (row) vector beside a matrix with as many rows (columns)" if spread else ""
            raise ShapeError(f"{what} needs operands of the same shape{besides}, but `{left.text}` is {self.fmt(left)} "
                             f"and `{right.text}` is {self.fmt(right)}")
        return spread_left, spread_right

    def _spread(self, small: Typed, large: Typed, along: str, what: str, written: bool, small_first: bool) -> Typed:
        """A column (row) vector standing in every column (row) of `large`. The number of columns (rows) it spreads
        over must be known, declared or a number: where no declaration tells, the matrix may have been meant a
        vector (a name typed by default), and a broadcast would silently read something else."""
        axis = 1 if along == "columns" else 0
        spread_dim = self.dims.find(large.shape[axis])
        if written and isinstance(spread_dim, DimVar) and spread_dim.name is None:
            kind = "column" if along == "columns" else "row"
            example = next((n for n in _variables(large) if self.dims.find(n.shape[axis]) is spread_dim), None)
            sizes = "n, B" if along == "columns" else "B, n"
            declare = f"; e.g. {where_hint(f'{example.payload[0]}: matrix({sizes})')}" if example is not None else ""
            left, right = (small, large) if small_first else (large, small)
            # declaring the spread operand a scalar would only trade this broadcast for another: no such hint
            self.unhinted.update(n.payload[0] for n in _variables(small))  # type: ignore[index]
            raise ShapeError(
                f"{what} needs operands of the same shape, but `{left.text}` is {self.fmt(left)} and `{right.text}` is "
                f"{self.fmt(right)}; to put the {kind} `{small.text}` in every {kind} of `{large.text}`, declare how "
                f"many {along} it has{declare}")
        shape = (small.shape[0], large.shape[1]) if along == "columns" else (large.shape[0], small.shape[1])
        return Typed("spread", shape, small.text, [small], payload=along)

    def _declared_name(self, node: Typed) -> bool:
        return node.op == "var" and node.payload[0] in self.declarations  # type: ignore[index]

    def _undeclared_vector(self, node: Typed) -> bool:
        """A bare name that is a vector only by default (undeclared, lowercase): beside a scalar it may be one too."""
        if node.op != "var":
            return False
        name = node.payload[0]  # type: ignore[index]
        return name not in self.declarations and name not in self.definitions and default_kind(name) == "vector"

    def add(self, left: Typed, right: Typed, sign: str, text: str, written: bool = True) -> Typed:
        left, right = self.broadcast_pair(left, right, "'+'" if sign == "+" else "'-'", written)
        return Typed("add" if sign == "+" else "sub", left.shape, text, [left, right])

    def multiply(self, left: Typed, right: Typed, operator: str, text: str, written: bool = True) -> Typed:
        if operator in ("", "*"):
            if left.is_scalar or right.is_scalar:
                return Typed("mul", right.shape if left.is_scalar else left.shape, text, [left, right])
            if not self.dims.unify(left.shape[1], right.shape[0]):
                raise ShapeError(
                    f"cannot multiply `{left.text}` ({self.fmt(left)}) by `{right.text}` ({self.fmt(right)}): "
                    f"the columns of the left ({self.dims.show(left.shape[1])}) must equal the rows of the "
                    f"right ({self.dims.show(right.shape[0])})")
            return Typed("mul", (left.shape[0], right.shape[1]), text, [left, right])
        if operator == "/":
            if not right.is_scalar:
                raise ShapeError(f"'/' divides by a scalar, but `{right.text}` is {self.fmt(right)}; "
                                 f"use ./ for element-wise division")
            return Typed("div", left.shape, text, [left, right])
        if operator in (".*", "⊙"):
            if left.is_scalar or right.is_scalar:
                return Typed("mul", right.shape if left.is_scalar else left.shape, text, [left, right])
            left, right = self.broadcast_pair(left, right, "element-wise product", written)
            return Typed("hadamard", left.shape, text, [left, right])
        # element-wise division ./ or ⊘
        if right.is_scalar:
            return Typed("div", left.shape, text, [left, right])
        left, right = self.broadcast_pair(left, right, "element-wise division", written)
        return Typed("ediv", left.shape, text, [left, right])

    def power(self, base: Typed, exponent: Typed, text: str) -> Typed:
        if not exponent.is_scalar:
            raise ShapeError(f"an exponent must be a scalar, but `{exponent.text}` is {self.fmt(exponent)}")
        if base.is_scalar:
            return Typed("power", (1, 1), text, [base, exponent])
        if base.shape[1] == 1 or base.shape[0] == 1:
            raise ShapeError(f"`{base.text}` is {self.fmt(base)} and has no matrix power; "
                             f"use .^ for an element-wise power")
        if not self.dims.unify(base.shape[0], base.shape[1]):
            raise ShapeError(f"a matrix power needs a square matrix, but `{base.text}` is {self.fmt(base)}")
        k = _number_value(exponent)
        if k is None or k.denominator != 1:
            raise ShapeError(f"a matrix power needs a whole-number exponent, not `{exponent.text}`; "
                             f"use .^ for an element-wise power")
        if k == -1:
            return Typed("call", base.shape, text, [base], payload="inv")
        if k < 0:
            inverse = Typed("call", base.shape, f"inv({base.text})", [base], payload="inv")
            return Typed("power", base.shape, text, [inverse, Typed("num", (1, 1), str(-k), payload=-k)])
        if k == 0:
            return Typed("identity", base.shape, text)
        return Typed("power", base.shape, text, [base, Typed("num", (1, 1), str(k), payload=k)])

    def kron(self, factors: list[Typed], text: str) -> Typed:
        rows = self.dims.product(*(factor.shape[0] for factor in factors))
        cols = self.dims.product(*(factor.shape[1] for factor in factors))
        return Typed("kron", (rows, cols), text, factors)

    def _implicit_dimensions(self, argument: Tree) -> None:
        """In commutation(m, n) or commutation(m n, p), a bare name that no declaration, definition or earlier
        use makes a variable names a dimension, as if declared `m: dim`: the printed commutation(m, n) of an
        expression whose m and n no other size shows (as in vec(X) for X m x n, where they are shown) parses back."""
        items = [argument]
        if getattr(argument, "data", None) == "product":  # m n, 2 n: the factors of a product, not names in a call
            items = [argument.children[0], *(tail.children[-1] for tail in argument.children[1:])]
        for item in items:
            if getattr(item, "data", None) != "name":
                continue
            name = str(item.children[0])
            if name in self.declarations or name in self.definitions or name in self.symbols \
                    or name in self.dimension_names or name in ir.RESERVED_NAMES:
                continue
            self.dimension_names.add(name)
            self.implicit_dimensions.append(name)
            self.dims.fresh(name)

    def size_term(self, size: Typed, where: Tree) -> DimTerm:
        """The dimension a size expression stands for: sizes (n, rows(X)), whole numbers and their products."""
        factors: list[DimTerm] = []
        stack = [size]
        while stack:
            node = stack.pop()
            value = _number_value(node)
            if node.op == "size":
                factors.append(node.payload)  # type: ignore[arg-type]
            elif node.op == "mul" and node.is_scalar and all(child.is_scalar for child in node.children):
                stack.extend(node.children)
            elif value is not None and value.denominator == 1 and value >= 1:
                factors.append(int(value))
            else:
                what = "a scalar" if node.is_scalar else self.fmt(node)
                raise ShapeError(f"`{self.source(where)}` takes sizes (dimension names such as n, rows(X), whole "
                                 f"numbers, or their products such as `m n`), but `{node.text}` is {what}")
        return self.dims.product(*factors)

    def elem_power(self, base: Typed, exponent: Typed, text: str) -> Typed:
        if not exponent.is_scalar:
            raise ShapeError(f"an exponent must be a scalar, but `{exponent.text}` is {self.fmt(exponent)}")
        return Typed("epower", base.shape, text, [base, exponent])

    def call(self, name: str, args: list[Typed], text: str) -> Typed:
        spec = FUNCTIONS[name]
        args, axis = self.axis_of(name, args, text)
        # an IR call has one argument: a call of more is written with other operations, as is an axis of a function
        # that is not a function of a vector (sum(U, 1)); a function of a vector along an axis is a node of its own
        if spec.lowering is not None and (spec.kind == "lowered" or len(args) > 1 or (axis and spec.kind != "vector")):
            return spec.lowering(_Builder(self, text), args, axis)
        (arg,) = args
        if spec.kind == "lowered":
            return self.lowered_call(name, arg, text)
        if axis:
            shape = ir.axis_result_shape(spec.result, arg.shape, axis)
            return Typed("axis_call", shape, text, [arg], payload=(name, axis))
        if spec.kind == "square":
            if not arg.is_scalar and (arg.shape[0] == 1 or arg.shape[1] == 1):
                raise ShapeError(f"{name} needs a square matrix, but `{arg.text}` is {self.fmt(arg)}")
            if not self.dims.unify(arg.shape[0], arg.shape[1]):
                raise ShapeError(f"{name} needs a square matrix, but `{arg.text}` is {self.fmt(arg)}")
        elif spec.kind == "vector" and (arg.shape[1] != 1 or arg.is_scalar):
            if not arg.is_scalar and not self._is_one(arg.shape[0]):
                called, written, axis_text = name, arg.text, ""
                if spec.axis_after_empty:  # min(U) is written with max: the message quotes the call as written
                    called, _, inside = text.partition("(")
                    written, axis_text = inside[:-1].strip() or arg.text, "[], "
                raise ShapeError(f"{called} of a matrix needs an axis: `{called}({written}, {axis_text}1)` of each "
                                 f"column, `{called}({written}, {axis_text}2)` of each row; `{written}` is "
                                 f"{self.fmt(arg)}")
            raise ShapeError(f"{name} needs a column vector, but `{arg.text}` is {self.fmt(arg)}")
        shape, square = ir.result_shape(spec.result, arg.shape, self.dims.product)
        if square and not self.dims.unify(arg.shape[0], arg.shape[1]):
            raise ShapeError(f"diag of a matrix needs a square matrix, but `{arg.text}` is {self.fmt(arg)}")
        return Typed("call", shape, text, [arg], payload=name)

    def axis_of(self, name: str, args: list[Typed], text: str) -> tuple[list[Typed], int]:
        """The arguments of a call and its axis (0: none), checked against the function's table entry. A function
        with `axis_after_empty` (max, min) is called as MATLAB's: f(u), f(u, v), or f(U, [], axis)."""
        spec = FUNCTIONS[name]
        usage = spec.usage or f"{name}(u)"
        if spec.axis_after_empty:
            if len(args) in (1, 2):
                return args, 0
            if len(args) != 3:
                raise ParseError(f"{name} takes one argument, two, or a matrix, [] and an axis ({usage}), but "
                                 f"`{text}` gives {len(args)}")
            return [args[0]], self.axis_value(args[2], text)
        if len(args) == spec.arguments:
            return args, 0
        if not spec.axes or len(args) != spec.arguments + 1:
            count = f"{spec.arguments} argument{'s' if spec.arguments > 1 else ''}"
            more = " and an optional axis" if spec.axes else ""
            raise ParseError(f"{name} takes {count}{more} ({usage}), but `{text}` gives {len(args)}")
        return args[:-1], self.axis_value(args[-1], text)

    @staticmethod
    def axis_value(argument: Typed, text: str) -> int:
        """The axis a call names: 1 or 2, else a ParseError that states the convention."""
        axis = _number_value(argument)
        if axis not in (1, 2):
            raise ParseError(f"the axis of `{text}` must be 1 or 2, not `{argument.text}`: axis 1 goes down each "
                             f"column (a row of results, one per column), axis 2 along each row (a column of "
                             f"results, one per row), as in MATLAB")
        return int(axis)  # type: ignore[arg-type]

    def lowered_call(self, name: str, arg: Typed, text: str) -> Typed:
        """rows, cols and size are sizes of dimensions."""
        rows = Typed("size", (1, 1), f"rows({arg.text})", payload=arg.shape[0])
        cols = Typed("size", (1, 1), f"cols({arg.text})", payload=arg.shape[1])
        if name == "rows":
            return Typed("size", (1, 1), text, payload=arg.shape[0])
        if name == "cols":
            return Typed("size", (1, 1), text, payload=arg.shape[1])
        entries = Typed("mul", (1, 1), f"size({arg.text})", [rows, cols])
        entries.text = text
        return entries

    # ------------------------------------------------------------ the naming lower reads
    def dimension_naming(self) -> Naming:
        """Every dimension's name, once the whole input is typed."""
        return self.dims.names(self.dims.avoid)

    def dimension_declarations(self) -> Declarations:
        """The dimensions' declarations: the declared ones, then those named in commutation(m, n)."""
        return {**{name: decl for name, decl in self.declarations.items() if decl.kind == "dim"},
                **{name: Declaration(name, "dim") for name in self.implicit_dimensions}}


def _variables(node: Typed) -> list[Typed]:
    """The variables of a typed tree, without recursion."""
    found, stack = [], [node]
    while stack:
        current = stack.pop()
        if current.op == "var":
            found.append(current)
        stack.extend(current.children)
    return found


# MATLAB's `[]`, as the middle argument of max(U, [], k): a placeholder, never an operand (parse._check_empty).
EMPTY = Typed("empty", (1, 1), "[]")


class _Builder:
    """The type checker's operations, as a function's lowering (core/functions.py) writes with them: every node
    carries the call's text, which is what a message about it should quote."""

    def __init__(self, inference: Inference, text: str) -> None:
        self.inference, self.text = inference, text

    def call(self, name: str, *args: Typed, axis: int = 0) -> Typed:
        axis_argument = [Typed("num", (1, 1), str(axis), payload=Fraction(axis))] if axis else []
        if axis and FUNCTIONS[name].axis_after_empty:  # max(U, [], k)
            axis_argument.insert(0, EMPTY)
        return self.inference.call(name, [*args, *axis_argument], self.text)

    def add(self, a: Typed, b: Typed) -> Typed:
        return self.inference.add(a, b, "+", self.text, written=False)

    def sub(self, a: Typed, b: Typed) -> Typed:
        return self.inference.add(a, b, "-", self.text, written=False)

    def neg(self, a: Typed) -> Typed:
        return Typed("neg", a.shape, self.text, [a])

    def mul(self, a: Typed, b: Typed) -> Typed:
        return self.inference.multiply(a, b, "", self.text)

    def div(self, a: Typed, b: Typed) -> Typed:
        return self.inference.multiply(a, b, "/", self.text)

    def hadamard(self, a: Typed, b: Typed) -> Typed:
        return self.inference.multiply(a, b, ".*", self.text, written=False)

    def transpose(self, a: Typed) -> Typed:
        return Typed("transpose", (a.shape[1], a.shape[0]), self.text, [a])

    def number(self, value: int | Fraction) -> Typed:
        return Typed("num", (1, 1), str(value), payload=Fraction(value))

    def ones_column(self) -> Typed:
        return Typed("fill", (self.inference.dims.fresh(), 1), "vector(1)", payload=Fraction(1))

    def size(self, a: Typed, axis: int) -> Typed:
        if axis:
            return Typed("size", (1, 1), self.text, payload=a.shape[axis - 1])
        rows, cols = (Typed("size", (1, 1), self.text, payload=dim) for dim in a.shape)
        return Typed("mul", (1, 1), self.text, [rows, cols])

    @staticmethod
    def is_number(a: Typed) -> bool:
        return _number_value(a) is not None

    def same_shape(self, what: str, a: Typed, b: Typed) -> None:
        self.inference.broadcast_pair(a, b, what)  # as if written: max(u, v) compares what the user wrote

    def require_scalar(self, what: str, a: Typed) -> None:
        if not a.is_scalar:
            raise ShapeError(f"{what} must be a scalar, but `{a.text}` is {self.inference.fmt(a)}")


def _span(tree: Tree | Token) -> tuple[int | None, int | None]:
    if hasattr(tree, "meta"):
        meta = tree.meta
        if getattr(meta, "empty", True):
            return None, None
        return meta.start_pos, meta.end_pos
    return tree.start_pos, tree.end_pos


def _number_value(node: Typed) -> Fraction | None:
    if node.op == "num":
        return node.payload  # type: ignore[return-value]
    if node.op == "neg" and node.children[0].op == "num":
        return -node.children[0].payload  # type: ignore[operator]
    return None


@dataclass(frozen=True)
class Parsed:
    expr: ir.Expr
    symbols: Declarations


def parse_typed(text: str, declarations: Declarations, expected_shape: ir.Shape | None = None,
                extra_symbols: tuple[str, ...] = ()) -> Parsed:
    """Parse and type an expression; `extra_symbols` get typed too (e.g. the variable of a derivative)."""
    tree = parse_tree(text)
    inference, root = _typed_with_hint(text, declarations, frozenset(),
                                       lambda inference: _typed_root(inference, tree, expected_shape))
    for name in extra_symbols:
        inference.symbol(name)
    names = inference.dimension_naming()
    return Parsed(lower(root, names), declared_symbols(inference.symbols, names, inference.dimension_declarations()))


@dataclass(frozen=True)
class ParsedProgram:
    """A program: its definitions in order, the output being the last, each referring to earlier ones by
    name (a leaf ir.Var of the definition's shape); `inline` substitutes them."""

    bindings: tuple[tuple[str, ir.Expr], ...]
    output: str  # the output's name: the last definition's, or "f" (or a fresh "f_1", ...) for a bare expression
    symbols: Declarations  # the inputs (free variables) and declared dimensions, as parse_typed gives them
    is_program: bool  # False for a single expression without definitions


def parse_program(text: str, declarations: Declarations, extra_symbols: tuple[str, ...] = (),
                  expected_shape: ir.Shape | None = None) -> ParsedProgram:
    """Parse and type a program: definitions `name = expr` separated by ';' or newlines, the last
    statement being the output. One inference types the whole program, each definition in order, so
    that a later use unifies with the definition's shape. A single expression (no '=' nor ';') gives
    what parse_typed gives. `extra_symbols` get typed too, except defined names; `expected_shape` is
    the output's.
    """
    if not is_program(text):
        parsed = parse_typed(text, declarations, expected_shape, extra_symbols)
        output = _output_name(set(parsed.symbols) | set(declarations) | set(extra_symbols), parsed.symbols)
        return ParsedProgram(((output, parsed.expr),), output, parsed.symbols, False)
    statements = parse_statements(text, declarations)
    defined = frozenset(statement.name for statement in statements if statement.name is not None)
    inference, roots = _typed_with_hint(text, declarations, defined,
                                        lambda inference: _typed_program(inference, statements, expected_shape))
    for name in extra_symbols:
        if name not in defined:
            inference.symbol(name)
    names = inference.dimension_naming()
    symbols = declared_symbols(inference.symbols, names, inference.dimension_declarations())
    last = statements[-1].name
    output = last if last is not None else _output_name(defined | set(symbols) | set(declarations)
                                                        | set(extra_symbols), symbols)
    bindings = tuple((statement.name or output, lower(root, names))
                     for statement, root in zip(statements, roots, strict=True))
    return ParsedProgram(bindings, output, symbols, bool(defined))


def _output_name(taken: set[str], symbols: Declarations) -> str:
    """"f", or the first of f_1, f_2, ... that names no variable, definition or dimension."""
    return ir.fresh_name("f", taken | dimension_names(symbols))


def inline(program: ParsedProgram) -> ir.Expr:
    """The output with every defined name replaced by its definition (ir.inline): a DAG as large as the program."""
    return ir.definition_values(program.bindings)[program.output]


def _typed_program(inference: Inference, statements: list[Statement], expected_shape: ir.Shape | None) -> list[Typed]:
    """Type each statement in order; a definition's shape is then that of every later use of its name."""
    roots = []
    for statement in statements:
        try:
            root = inference.visit(statement.expr)
        except ShapeError as error:  # name the statement: a shape error carries no position
            what = f"the definition of `{statement.name}`" if statement.name else "the output"
            raise type(error)(f"{error}\n(in {what}, line {statement.line})") from error
        if statement.name is not None:
            inference.definitions[statement.name] = root.shape
            annotation = inference.annotations.get(statement.name)
            if annotation is not None and not all(
                    inference.dims.unify(a, b) for a, b in zip(annotation, root.shape, strict=True)):
                declared = inference.declarations[statement.name]
                raise ShapeError(f"`{statement.name}` is declared '{declared}', but its definition `{root.text}` "
                                 f"is {inference.fmt(root)} (line {statement.line})")
        roots.append(root)
    if expected_shape is not None:
        _unify_expected(inference, roots[-1], expected_shape)
    return roots


def _typed_with_hint(text: str, declarations: Declarations, defined: frozenset[str],
                     typed: Callable[[Inference], T]) -> tuple[Inference, T]:
    """typed(inference) for a fresh inference; a shape error gains hints at the default types."""
    inference = Inference(text, declarations, defined)
    try:
        return inference, typed(inference)
    except ShapeError as error:  # every shape error leaves through here: hint at the default types once
        hint = _default_type_hint(str(error), inference, lambda other: typed(Inference(text, other, defined)))
        if not hint:
            raise
        raise type(error)(f"{error}\n{hint}") from error


def _unify_expected(inference: Inference, root: Typed, expected: ir.Shape) -> None:
    for term, want in zip(root.shape, expected, strict=True):
        target = inference.dims.term(want)
        if not inference.dims.unify(term, target):
            raise ResultShapeError(f"`{root.text}` is {inference.fmt(root)}, but a result of shape "
                                   f"{expected[0]}×{expected[1]} was expected")


def _typed_root(inference: Inference, tree: Tree, expected_shape: ir.Shape | None) -> Typed:
    root = inference.visit(tree)
    if expected_shape is not None:
        _unify_expected(inference, root, expected_shape)
    return root


_QUOTED = re.compile(r"`([^`]*)`")
_SYMBOL = re.compile(r"[A-Za-z_\u0370-\u03ff][A-Za-z0-9_\u0370-\u03ff]*")
_WHY_DEFAULT = {"scalar": "a Greek name", "vector": "a lowercase name", "matrix": "a capital letter"}
# the kinds a name of each default kind most often means instead (a lowercase matrix would be odd advice)
_OTHER_KINDS = {"scalar": ("vector",), "vector": ("scalar",), "matrix": ("vector", "scalar")}
HINTED_NAMES = 8  # names tried per error: each try types the expression once more
HINTED_TEXT = 5_000  # longer inputs are machine-made, and retyping them could cost more than the error is worth


def _default_type_hint(message: str, failed: Inference, retype: Callable[[Declarations], object]) -> str:
    """For names in the message's quoted operands typed by the default rule, not a declaration: the
    declaration that makes the whole expression (or program) type, each tried by typing it again with
    `retype`, so that a hint always fixes the shapes. Greek and lowercase names come first; a capital
    name only when nothing else helps.
    """
    if len(failed.text) > HINTED_TEXT:
        return ""
    quoted = " ".join(_QUOTED.findall(message))
    names = [name for name in dict.fromkeys(_SYMBOL.findall(quoted))
             if name in failed.symbols and name not in failed.declarations and not resembles_function(name)]
    names.sort(key=lambda name: default_kind(name) == "matrix")
    hints = []
    for name in names[:HINTED_NAMES]:
        kind = default_kind(name)
        if kind == "matrix" and hints:
            break
        for other in _OTHER_KINDS[kind]:
            if other == "scalar" and name in failed.unhinted:
                continue
            declarations = {**failed.declarations, name: Declaration(name, other)}
            try:
                retype(declarations)
            except MatcalcError:
                continue
            hints.append(f"`{name}` is a {kind} by default ({_WHY_DEFAULT[kind]}); if it is a {other}, "
                         f"declare it: {where_hint(f'{name}: {other}')}")
            break
    return "\n".join(hints)
