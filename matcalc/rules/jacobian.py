"""Equal forms for the Jacobian reader (calculus/jacobian.py), applied only inside it.

The reader reads J off t = J dx one level at a time; where a level cannot be read as it stands, one of these
rules rewrites it into an equal form one step closer to a readable one (diag(u), a product, a sum). Each
rule is one-directional, named, and carries an example (a function and its variable) whose Jacobian uses it.
Their builders take the node and return its new form, or None where the rule does not apply; "holding dx"
means containing the differential.

- FACTOR_FORMS: a matrix factor F holding dx inside a product c L F R;
- DIAGONAL_FORMS: diag(M) of a square M holding dx, rewritten as a vector expression;
- TRANSPOSE_FORMS: a transpose moved one level down (the simplifier's own rules).
"""

from __future__ import annotations

from collections.abc import Callable

from ..core import ir
from ..core.errors import UnsupportedError
from ..core.ir import (
    Add,
    ElemDiv,
    Expr,
    Func,
    Hadamard,
    MatMul,
    Num,
    Transpose,
    add,
    elem_div,
    func,
    hadamard,
    mul,
    ones,
    transpose,
)
from .rule import Head, RuleSet, arg_is
from .simplify import SIMPLIFY_RULES

TRANSPOSE_FORMS = RuleSet("transposes pushed down", [SIMPLIFY_RULES.named(name) for name in (
    "transpose of a product", "transpose of a sum", "transpose of a Hadamard product",
    "transpose of an element-wise quotient", "transpose of a diagonal matrix")])


def push_transpose(e: Expr) -> Expr:
    """e = F^T with the transpose moved one level down; an UnsupportedError where no rule moves it."""
    found = TRANSPOSE_FORMS.first_result(e)
    if found is not None:
        return found[1]
    raise UnsupportedError(f"cannot write the Jacobian in matrix form yet: transposed term {e}")


# ---------------------------------------------------------------- helpers


def elementwise_split(f: Expr) -> tuple[int, Expr, Expr] | None:
    """(index, G, B) with f = B .* G and G = f.children[index] the child holding dx; for G ./ D, B = 1 ./ D."""
    if isinstance(f, ElemDiv):
        if ir.contains_differential(f.denominator):
            return None
        return 0, f.numerator, elem_div(ones(f.shape), f.denominator)
    if not isinstance(f, Hadamard):
        return None
    index = next(i for i, g in enumerate(f.factors) if ir.contains_differential(g))
    return index, f.factors[index], hadamard(*f.factors[:index], *f.factors[index + 1 :])


def with_child(e: Expr, index: int, child: Expr) -> Expr:
    """e with its child at `index` replaced, rebuilt through the smart constructors."""
    return e.rebuild((*e.children[:index], child, *e.children[index + 1 :]))


def is_outer(e: Expr) -> tuple[Expr, Expr] | None:
    """(a, b) with e = a b^T: a product whose chain passes through a 1 x 1 inner dimension."""
    if not isinstance(e, MatMul):
        return None
    coefficient, scalars, chain = ir.split_product(e)
    for i in range(1, len(chain)):
        if ir.chain_shape(chain[:i])[1] == 1:
            return mul(Num(coefficient), *scalars, *chain[:i]), transpose(mul(*chain[i:]))
    return None


def _outer_product_in(e: Expr) -> tuple[Expr, Expr, Expr] | None:
    """(M, a, b) with e = M .* (a b^T), for an element-wise product or quotient holding one outer product.

    Through quotients: (a b^T) ./ D = (1 ./ D) .* (a b^T), and (M .* (a b^T)) ./ D = (M ./ D) .* (a b^T);
    a chain of quotients is followed down in a loop, and its divisors applied to M on the way back up.
    """
    divisors: list[Expr] = []
    found: tuple[Expr, Expr, Expr] | None = None
    while isinstance(e, ElemDiv) and not ir.contains_differential(e.denominator):
        divisors.append(e.denominator)
        split = is_outer(e.numerator)
        if split is not None:
            found = (ones(e.shape), *split)
            break
        e = e.numerator
    else:
        found = _outer_product_in_hadamard(e)
    if found is None:
        return None
    m, a, b = found
    for divisor in reversed(divisors):
        m = elem_div(m, divisor)
    return m, a, b


def _outer_product_in_hadamard(e: Expr) -> tuple[Expr, Expr, Expr] | None:
    """(M, a, b) with e = M .* (a b^T), for an element-wise product with a factor a b^T, M free of dx."""
    if not isinstance(e, Hadamard):
        return None
    for index, factor in enumerate(e.factors):
        split = is_outer(factor)
        if split is not None:
            others = [g for i, g in enumerate(e.factors) if i != index]
            if not any(ir.contains_differential(g) for g in others):
                return hadamard(*others), *split
    return None


def diagonal_factor(f: Expr) -> Expr | None:
    """u with f = diag(u): diag(u) itself or transposed, B .* diag(u) = diag(diag(B) .* u),
    diag(u) ./ B = diag(u ./ diag(B)).

    A search down transposes, numerators and the factors of element-wise products, in order, for
    the first diag(u) of a column u: an explicit stack, each entry with the step that led to it, so
    that u is carried back up the path once found. A node met again was searched without success.
    """
    seen: set[int] = set()
    stack: list[tuple[Expr, tuple | None]] = [(f, None)]  # (node, path: (step, the path above it) or None)
    while stack:
        node, path = stack.pop()
        if id(node) in seen:
            continue
        seen.add(id(node))
        if isinstance(node, Func) and node.name == "diag" and ir.is_column(node.arg.shape):
            u = node.arg
            while path is not None:
                (kind, others), path = path
                u = elem_div(u, func("diag", others)) if kind == "quotient" else \
                    hadamard(u, *[func("diag", g) for g in others])
            return u
        if isinstance(node, Transpose):  # a diagonal matrix is its own transpose
            stack.append((node.arg, path))
        elif isinstance(node, ElemDiv) and not ir.contains_differential(node.denominator):
            stack.append((node.numerator, (("quotient", node.denominator), path)))
        elif isinstance(node, Hadamard):
            factors = node.factors
            stack.extend((factors[index], (("hadamard", factors[:index] + factors[index + 1 :]), path))
                         for index in range(len(factors) - 1, -1, -1))
    return None


def first_form(table: RuleSet, e: Expr) -> Expr | None:
    """The form the first rule of the table that applies gives e, or None."""
    found = table.first_result(e)
    return found[1] if found is not None else None


# ---------------------------------------------------------------- a factor F holding dx in c L F R

FACTOR_FORMS = RuleSet("equal forms of a factor holding dx")
factor_form = FACTOR_FORMS.rule
ELEMENTWISE = (Hadamard, ElemDiv)


@factor_form("transposed factor", "(L F R)^T -> R^T F^T L^T (one level)", ("A (B .* (x y^T))^T c", "x"),
             on=(Transpose,))
def _transposed_factor(f: Expr) -> Expr | None:
    return push_transpose(f)


@factor_form("diag of a row vector", "diag(u^T) -> diag(u)", ("A diag(x^T) b", "x"), on=("diag",))
def _diag_of_a_row(f: Expr) -> Expr | None:
    return func("diag", transpose(f.arg)) if ir.is_vector_shape(f.arg.shape) else None  # type: ignore[attr-defined]


@factor_form("diagonal factor", "B .* diag(u) -> diag(diag(B) .* u);  diag(u) ./ B -> diag(u ./ diag(B))",
             ("A (B .* diag(x)) b", "x"), on=ELEMENTWISE)
def _diagonal_factor_form(f: Expr) -> Expr | None:
    if elementwise_split(f) is None:
        return None
    u = diagonal_factor(f)
    return func("diag", u) if u is not None else None


@factor_form("element-wise product over a sum", "M .* (A + B) -> M .* A + M .* B;  (A + B) ./ D -> A ./ D + B ./ D",
             ("A (B .* (x y^T + x z^T)) c", "x"), on=ELEMENTWISE)
def _distribute_over_sum(e: Expr) -> Expr | None:
    if isinstance(e, ElemDiv):
        if isinstance(e.numerator, Add) and not ir.contains_differential(e.denominator):
            return add(*[elem_div(term, e.denominator) for term in e.numerator.terms])
        return None
    for index, factor in enumerate(e.children):
        if isinstance(factor, Add) and ir.contains_differential(factor):
            others = [g for i, g in enumerate(e.children) if i != index]
            return add(*[hadamard(*others, term) for term in factor.terms])
    return None


@factor_form("element-wise product with an outer product", "M .* (a b^T) -> diag(a) M diag(b)",
             ("A (B .* (x y^T)) b", "x"), on=ELEMENTWISE)
def _outer_product_form(f: Expr) -> Expr | None:
    if elementwise_split(f) is None:
        return None
    outer = _outer_product_in(f)
    if outer is None:
        return None
    m, a, b = outer
    return mul(func("diag", a), m, func("diag", b))


@factor_form("transpose in an element-wise product", "B .* F^T -> B .* (F^T one level down)",
             ("A (B .* (C x y^T)^T) b", "x"), "A, B, C: matrix(n, n); b, x, y: vector(n)", on=ELEMENTWISE)
def _transpose_inside(f: Expr) -> Expr | None:
    split = elementwise_split(f)
    if split is None or not isinstance(split[1], Transpose):
        return None
    return with_child(f, split[0], push_transpose(split[1]))


@factor_form("diagonal matrix at an end, in an element-wise product",
             "B .* (diag(u) R) -> diag(u) (B .* R);  B .* (R diag(u)) -> (B .* R) diag(u)",
             ("A (B .* (diag(x) C)) b", "x"), on=ELEMENTWISE)
def _diagonal_at_an_end(f: Expr) -> Expr | None:
    split = elementwise_split(f)
    if split is None or not isinstance(split[1], MatMul):
        return None
    index, g, _ = split
    coefficient, scalars, chain = ir.split_product(g)
    scale = [Num(coefficient), *scalars]
    if len(chain) > 1 and (u := diagonal_factor(chain[0])) is not None:
        return mul(func("diag", u), with_child(f, index, mul(*scale, *chain[1:])))
    if len(chain) > 1 and (u := diagonal_factor(chain[-1])) is not None:
        return mul(with_child(f, index, mul(*scale, *chain[:-1])), func("diag", u))
    return None


def rewrite_factor(f: Expr) -> Expr | None:
    """An equal form of a matrix factor f holding dx, one step closer to diag(u) or to a product, or None."""
    return first_form(FACTOR_FORMS, f)


# ---------------------------------------------------------------- diag(M) of a square M holding dx, as a vector

DIAGONAL_FORMS = RuleSet("diagonals as vectors")
diagonal_form = DIAGONAL_FORMS.rule


def _square_argument(e: Expr) -> Expr | None:
    """M for e = diag(M) with M a square matrix (not the diag of a vector)."""
    return None if ir.is_vector_shape(e.arg.shape) else e.arg  # type: ignore[attr-defined]


def _square(*kinds: Head) -> Callable[[Expr], bool]:
    """A guard: e = diag(M) of a square M of one of these kinds (as arg_is reads them)."""
    of_kind = arg_is(*kinds)
    return lambda e: not ir.is_vector_shape(e.arg.shape) and of_kind(e)  # type: ignore[attr-defined]


@diagonal_form("diagonal of a sum", "diag(A + B) -> diag(A) + diag(B)", ("diag(x y^T + x z^T)", "x"), on=("diag",),
               guard=_square(Add))
def _diagonal_of_a_sum(e: Expr) -> Expr | None:
    return add(*[func("diag", term) for term in e.arg.children])  # type: ignore[attr-defined]


@diagonal_form("diagonal of a diagonal matrix", "diag(diag(u)) -> u;  diag(diag(u^T)) -> u",
               ("diag(diag(x) + X)", "x"), on=("diag",), guard=_square("diag"))
def _diagonal_of_diag(e: Expr) -> Expr | None:
    u = e.arg.arg  # type: ignore[attr-defined]
    if ir.is_vector_shape(u.shape):
        return u if ir.is_column(u.shape) else transpose(u)
    return None


@diagonal_form("diagonal of a transpose", "diag(M^T) -> diag(M)", ("diag((A .* (x y^T))^T)", "x"), on=("diag",),
               guard=_square(Transpose))
def _diagonal_of_a_transpose(e: Expr) -> Expr | None:
    return func("diag", e.arg.arg)  # type: ignore[attr-defined]


@diagonal_form("diagonal of an element-wise product", "diag(A .* B) -> diag(A) .* diag(B)",
               ("diag(A .* (x y^T))", "x"), on=("diag",), guard=_square(Hadamard))
def _diagonal_of_a_hadamard(e: Expr) -> Expr | None:
    return hadamard(*[func("diag", f) for f in e.arg.children])  # type: ignore[attr-defined]


@diagonal_form("diagonal of an element-wise quotient", "diag(A ./ B) -> diag(A) ./ diag(B)",
               ("diag((x y^T) ./ A)", "x"), on=("diag",), guard=_square(ElemDiv))
def _diagonal_of_a_quotient(e: Expr) -> Expr | None:
    m = e.arg  # type: ignore[attr-defined]
    if ir.contains_differential(m.denominator):
        return None
    return elem_div(func("diag", m.numerator), func("diag", m.denominator))


@diagonal_form("diagonal of an outer product", "diag(P u v^T Q) -> (P u) .* (Q^T v)", ("diag(x y^T)", "x"),
               on=("diag",), guard=_square(MatMul))
def _diagonal_of_an_outer_product(e: Expr) -> Expr | None:
    outer = is_outer(e.arg)  # type: ignore[attr-defined]
    return hadamard(*outer) if outer is not None else None


def _product_parts(e: Expr) -> tuple[list[Expr], list[Expr], Expr, list[Expr]] | None:
    """(scale, P, F, Q) for e = diag(c P F Q), F the one factor of the chain holding dx (no scalar holds dx)."""
    m = _square_argument(e)
    if not isinstance(m, MatMul):
        return None
    coefficient, scalars, chain = ir.split_product(m)
    k = next((i for i, f in enumerate(chain) if ir.contains_differential(f)), None)
    if k is None or any(ir.contains_differential(s) for s in scalars):
        return None
    return [Num(coefficient), *scalars], chain[:k], chain[k], chain[k + 1 :]


def _diag_vector(f: Expr) -> Expr | None:
    return f.arg if isinstance(f, Func) and f.name == "diag" and ir.is_column(f.arg.shape) else None


@diagonal_form("scalars out of a diagonal", "diag(c F) -> c diag(F)", ("diag(alpha (A .* (x y^T)))", "x"), on=("diag",))
def _scalars_out_of_a_diagonal(e: Expr) -> Expr | None:
    parts = _product_parts(e)
    if parts is None or parts[1] or parts[3]:
        return None
    scale, _, inner, _ = parts
    return mul(*scale, func("diag", inner))


@diagonal_form("diagonal of a product over a sum", "diag(P (A + B) Q) -> diag(P A Q) + diag(P B Q)",
               ("diag(A (x y^T + x z^T) C)", "x"), on=("diag",))
def _diagonal_over_a_sum(e: Expr) -> Expr | None:
    parts = _product_parts(e)
    if parts is None or not (parts[1] or parts[3]) or not isinstance(parts[2], Add):
        return None
    scale, p, inner, q = parts
    return add(*[func("diag", mul(*scale, *p, term, *q)) for term in inner.terms])


@diagonal_form("diagonal of a product with an equal form of its factor", "diag(P F Q) -> diag(P F' Q), F' = F's form",
               ("diag(A (B .* (x y^T)) C)", "x"), on=("diag",))
def _diagonal_of_a_rewritten_factor(e: Expr) -> Expr | None:
    parts = _product_parts(e)
    if parts is None or not (parts[1] or parts[3]) or _diag_vector(parts[2]) is not None:
        return None
    scale, p, inner, q = parts
    rewritten = rewrite_factor(inner)
    return func("diag", mul(*scale, *p, rewritten, *q)) if rewritten is not None else None


@diagonal_form("element-wise product at an end of a diagonal",
               "diag(P (B .* G)) -> diag((P .* B^T) G);  diag((B .* G) Q) -> diag(G (Q .* B^T))",
               ("diag(A (B .* (C diag(x) D)))", "x"), on=("diag",))
def _elementwise_at_an_end(e: Expr) -> Expr | None:
    parts = _product_parts(e)
    if parts is None or not (parts[1] or parts[3]) or (parts[1] and parts[3]):
        return None
    scale, p, inner, q = parts  # tried after the rules before it (an equal form of F first): no need to ask again
    split = elementwise_split(inner)
    if split is None:
        return None
    _, g, b = split
    if q:
        return func("diag", mul(*scale, g, hadamard(mul(*q), transpose(b))))
    return func("diag", mul(*scale, hadamard(mul(*p), transpose(b)), g))


@diagonal_form("diagonal of a product through a diagonal matrix",
               "diag(diag(u) Q) -> diag(Q) .* u;  diag(P diag(u) Q) -> (P .* Q^T) u",
               ("diag(A diag(x) B)", "x"), on=("diag",))
def _diagonal_through_diag(e: Expr) -> Expr | None:
    parts = _product_parts(e)
    if parts is None or not (parts[1] or parts[3]):
        return None
    scale, p, inner, q = parts
    u = _diag_vector(inner)
    if u is None:
        return None
    if not p or not q:
        return hadamard(mul(*scale, func("diag", mul(*(p or q)))), u)
    return mul(*scale, hadamard(mul(*p), transpose(mul(*q))), u)


def diagonal_as_vector(e: Expr) -> Expr | None:
    """e = diag(M) of a square M holding dx, rewritten one level down as a vector expression, or None."""
    return first_form(DIAGONAL_FORMS, e)
