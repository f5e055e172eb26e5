"""The Jacobian reader: J with t = J dx, for a column vector t linear in the column vector dx.

Forward accumulation from the root of t down the path to dx: at each level the first rule of READING_RULES
that applies either reads the level (J(a .* f) -> diag(a) J(f): its left factor is kept, and the reader goes
on with f), finishes (J(dx) -> I), splits a sum into its terms, or rewrites the level into an equal form one
step closer to a readable one (the rules of rules/jacobian.py). A rule's builder takes (t, n) and returns a
Reading, or None where it does not apply. The strategy (jacobian_from_differential) is a loop over an
explicit stack: no recursion, and a term shared by several sums is read once.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..core import ir
from ..core.errors import UnsupportedError
from ..core.ir import (
    Add,
    Differential,
    ElemDiv,
    Expr,
    Hadamard,
    MatMul,
    Transpose,
    add,
    elem_div,
    func,
    hadamard,
    mul,
    ones,
    transpose,
)
from ..rules.jacobian import diagonal_as_vector, elementwise_split, push_transpose, rewrite_factor, with_child
from ..rules.rule import RuleSet
from .readers import gradient_from_differential


@dataclass(frozen=True)
class Reading:
    """What a reading rule makes of a level t of the path: J(t) = mul(*left, J(next)), or J(t) = mul(*left, *done),
    or J(t) = mul(*left, J(t_1) + J(t_2) + ...) over `terms`."""

    left: tuple[Expr, ...] = ()
    next: Expr | None = None
    done: tuple[Expr, ...] = ()
    terms: tuple[Expr, ...] = ()


READING_RULES = RuleSet("Jacobian reading")
reading = READING_RULES.rule


def _row_gradient(t: Expr, n: ir.Dim) -> Expr:
    """g^T with t = g^T dx, for a scalar t linear in the column vector dx (n x 1)."""
    return transpose(gradient_from_differential(t, (n, 1)))


@reading("free of dx", "J(t) -> 0 for t free of dx", ("A b", "x"), "A: matrix(n, m); b: vector(m); x: vector(n)")
def _free(t: Expr, n: ir.Dim) -> Reading | None:
    return None if ir.contains_differential(t) else Reading(done=(ir.zeros((t.shape[0], n)),))


@reading("the differential", "J(dx) -> I", ("x", "x"), on=(Differential,))
def _the_differential(t: Expr, n: ir.Dim) -> Reading | None:
    return Reading(done=(ir.identity(n),))


@reading("scalar", "J(s) -> (ds/dx)^T, the gradient's transpose, for a 1 x 1 s", ("a^T x", "x"))
def _scalar(t: Expr, n: ir.Dim) -> Reading | None:
    return Reading(done=(_row_gradient(t, n),)) if t.is_scalar else None


@reading("sum", "J(A + B) -> J(A) + J(B)", ("A x + x", "x"), on=(Add,))
def _sum(t: Expr, n: ir.Dim) -> Reading | None:
    return Reading(terms=tuple(term for term in t.children if ir.contains_differential(term)))


@reading("scalar on the path", "J(s r) -> r (ds/dx)^T, r free of dx", ("(a^T x) b", "x"))
def _scalar_on_the_path(t: Expr, n: ir.Dim) -> Reading | None:
    split = _scalar_on_path(t)
    if split is None:
        return None
    s, r = split
    return Reading(done=(r, _row_gradient(s, n)))


@reading("Hadamard product", "J(a .* f) -> diag(a) J(f)", ("a .* (A x)", "x"), on=(Hadamard,))
def _hadamard(t: Expr, n: ir.Dim) -> Reading | None:
    factors = t.children
    position = next(i for i, f in enumerate(factors) if ir.contains_differential(f))
    return Reading(left=(func("diag", hadamard(*factors[:position], *factors[position + 1 :])),),
                   next=factors[position])


@reading("quotient", "J(f ./ b) -> diag(1 ./ b) J(f)", ("(A x) ./ b", "x"), on=(ElemDiv,))
def _quotient(t: Expr, n: ir.Dim) -> Reading | None:
    if ir.contains_differential(t.denominator):  # type: ignore[attr-defined]
        return None
    return Reading(left=(func("diag", elem_div(ones(t.shape), t.denominator)),), next=t.numerator)  # type: ignore


def _chain_parts(t: Expr) -> tuple[list[Expr], list[Expr], int]:
    """(scalars, chain, k) of a product c L F R: chain[k] = F is the factor holding dx (no scalar holds it)."""
    scalars = [f for f in t.children if f.is_scalar]
    chain = [f for f in t.children if not f.is_scalar]
    return scalars, chain, next(i for i, f in enumerate(chain) if ir.contains_differential(f))


@reading("left factors", "J(c L F) -> c L J(F)", ("A (x .* y)", "x"), on=(MatMul,))
def _left_factors(t: Expr, n: ir.Dim) -> Reading | None:
    scalars, chain, k = _chain_parts(t)
    return None if chain[k + 1 :] else Reading(left=(*scalars, *chain[:k]), next=chain[k])


@reading("column times scalars", "J(c L f R) -> c R L J(f), R 1 x 1 free of dx", ("A (x .* y) b^T c", "x"),
         on=(MatMul,))
def _column_times_scalars(t: Expr, n: ir.Dim) -> Reading | None:
    scalars, chain, k = _chain_parts(t)
    right = chain[k + 1 :]
    return Reading(left=(*scalars, mul(*right), *chain[:k]), next=chain[k]) if ir.is_column(chain[k].shape) else None


@reading("diagonal matrix times a vector", "J(L diag(u) r) -> L diag(r) J(u)", ("A diag(x) b", "x"), on=(MatMul,))
def _diagonal_times_a_vector(t: Expr, n: ir.Dim) -> Reading | None:
    scalars, chain, k = _chain_parts(t)
    inner, right = chain[k], chain[k + 1 :]
    if isinstance(inner, ir.Func) and inner.name == "diag" and ir.is_column(inner.arg.shape):
        return Reading(left=(*scalars, *chain[:k], func("diag", mul(*right))), next=inner.arg)
    return None


@reading("product over a sum", "J(L (F1 + F2) R) -> J(L F1 R + L F2 R)", ("A (x y^T + C x z^T) b", "x"), on=(MatMul,))
def _product_over_a_sum(t: Expr, n: ir.Dim) -> Reading | None:
    scalars, chain, k = _chain_parts(t)
    inner, right = chain[k], chain[k + 1 :]
    if not isinstance(inner, Add):
        return None
    return Reading(next=add(*[mul(*scalars, *chain[:k], term, *right) for term in inner.terms]))


@reading("equal form of a factor", "J(L F R) -> J(L F' R), F' = F's form (rules/jacobian.py FACTOR_FORMS)",
         ("A (B .* (x y^T)) b", "x"), on=(MatMul,))
def _equal_form_of_a_factor(t: Expr, n: ir.Dim) -> Reading | None:
    scalars, chain, k = _chain_parts(t)
    rewritten = rewrite_factor(chain[k])
    return Reading(next=mul(*scalars, *chain[:k], rewritten, *chain[k + 1 :])) if rewritten is not None else None


@reading("element-wise product times a vector", "J((B .* G) r) -> J(diag(G diag(r) B^T))",
         ("(B .* (C diag(x) D)) c", "x"), on=(MatMul,))
def _elementwise_times_a_vector(t: Expr, n: ir.Dim) -> Reading | None:
    scalars, chain, k = _chain_parts(t)
    split = elementwise_split(chain[k])
    if split is None:
        return None
    _, g, b = split  # (B .* G) r = diag(G diag(r) B^T), G the factor holding dx
    return Reading(next=mul(*scalars, *chain[:k], func("diag", mul(g, func("diag", mul(*chain[k + 1 :])),
                                                                     transpose(b)))))


@reading("transpose", "J(F^T) -> J(F^T one level down)", ("(x^T A)^T", "x"), on=(Transpose,))
def _transpose(t: Expr, n: ir.Dim) -> Reading | None:
    return Reading(next=push_transpose(t))


@reading("diagonal as a vector", "J(diag(M)) -> J(diag(M) as a vector, rules/jacobian.py DIAGONAL_FORMS)",
         ("diag(x y^T)", "x"), on=("diag",))
def _diagonal_as_a_vector(t: Expr, n: ir.Dim) -> Reading | None:
    as_vector = diagonal_as_vector(t)
    return Reading(next=as_vector) if as_vector is not None else None


def _cannot_write(t: Expr) -> UnsupportedError:
    return UnsupportedError(
        f"cannot write the Jacobian of this expression in matrix form yet (its differential has the term {t}); "
        f"a later version covers it")


def _read(t: Expr, n: ir.Dim, used: list[str] | None) -> tuple[list[Expr], Expr | None, tuple[Expr, ...]]:
    """(left, J, ()) with J the Jacobian of t; or, where the path from t to dx meets a sum, (left, None, its
    terms that hold dx), with the Jacobian of t = mul(*left, J(t_1) + J(t_2) + ...). A loop, no recursion."""
    left: list[Expr] = []  # the Jacobian is mul(*left, J(t))
    while True:
        found = READING_RULES.first_result(t, n)
        if found is None:
            raise _cannot_write(t)
        rule, step = found
        if used is not None and rule.name not in used:
            used.append(rule.name)
        left.extend(step.left)
        if step.done:
            return left, mul(*left, *step.done), ()
        if step.terms:
            return left, None, step.terms
        assert step.next is not None
        t = step.next


def jacobian_from_differential(t: Expr, n: ir.Dim, used: list[str] | None = None) -> Expr:
    """J with t = J dx, for a column vector t linear in the column vector dx (forward accumulation).

    t is read from the root down the path to dx (`_read`). A sum on that path is read term by term:
    J = L (J(t_1) + J(t_2) + ...). The terms wait on an explicit stack, not in a recursion, and the
    Jacobian of each term read is kept, so that a term shared by several sums (a DAG) is read once.
    `used` collects the names of the reading rules applied.
    """
    done: dict[Expr, Expr] = {}
    waiting: dict[Expr, tuple[list[Expr], tuple[Expr, ...]]] = {}  # a sum's term -> (left, its own terms)
    stack: list[tuple[Expr, bool]] = [(t, False)]
    while stack:
        term, terms_read = stack.pop()
        if term in done:
            continue
        if terms_read:
            left, terms = waiting.pop(term)
            done[term] = mul(*left, add(*[done[u] for u in terms]))
            continue
        if term in waiting:  # reading a term led back to itself: the reader would never end
            raise _cannot_write(term)
        left, read, terms = _read(term, n, used)
        if read is not None:
            done[term] = read
            continue
        waiting[term] = (left, terms)
        stack.append((term, True))
        stack.extend((u, False) for u in reversed(terms))
    return done[t]


def _scalar_on_path(t: Expr) -> tuple[Expr, Expr] | None:
    """(s, r) with t = s r: s the topmost scalar on the path from t down to dx, r = t[s := 1], free of dx.

    Every node on the path is linear in its child holding dx, so t = s t[s := 1]. A 1 x 1 block of a
    product's chain counts as a node (y^T dx in x y^T dx). The walk stops at a sum, whose terms are read
    one by one, and at dx. The walk is a loop, and r is rebuilt bottom-up along the recorded path.

    A walk that finds no scalar marks the nodes it went through: the walk from any of them is the rest
    of this one, and the Jacobian reader asks again at each level it reads (linear, not quadratic, in depth).
    """
    path: list[tuple[Expr, int]] = []  # (node, index of its child holding dx)
    node = t
    while not isinstance(node, Add | Differential) and "_no_scalar_on_path" not in node.__dict__:
        children = node.children
        k = next(i for i, child in enumerate(children) if ir.contains_differential(child))
        block = _scalar_block(node, k) if isinstance(node, MatMul) else None
        if block is not None:  # node = s r, with s its scalar factor or 1 x 1 block holding dx
            i, j = block
            s, rest = mul(*children[i:j]), mul(*children[:i], *children[j:])
            for parent, index in reversed(path):
                rest = with_child(parent, index, rest)
            return s, rest
        path.append((node, k))
        node = children[k]
    for node, _ in path:
        object.__setattr__(node, "_no_scalar_on_path", True)
    return None


def _scalar_block(e: MatMul, k: int) -> tuple[int, int] | None:
    """(i, j) with e.factors[i:j] the smallest 1 x 1 part of the product around its factor k, or None.

    A scalar factor is its own block; in the chain, the block runs from the nearest factor with one row
    at or before k to the nearest factor with one column at or after k. A column f that ends the chain
    is left to forward accumulation, L f -> L J(f): x y^T f keeps its chain (x y^T J(f)) instead of
    becoming x (J(f)^T y)^T.
    """
    factors = e.factors
    if factors[k].is_scalar:
        return k, k + 1
    if k == len(factors) - 1 and ir.is_column(factors[k].shape):
        return None
    first_chain = next(i for i, f in enumerate(factors) if not f.is_scalar)
    i = next((i for i in range(k, first_chain - 1, -1) if factors[i].shape[0] == 1), None)
    j = next((j for j in range(k, len(factors)) if factors[j].shape[1] == 1), None)
    if i is None or j is None or (i == first_chain and j == len(factors) - 1):  # the whole chain is not a part
        return None
    return i, j + 1
