"""Stage 4: simplification to Matrix Cookbook form, by the rule table SIMPLIFY_RULES.

Every rule is one-directional and none expands a product over a sum, so the rules terminate:
each either removes nodes, moves a transpose towards the leaves, or merges sum terms.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from fractions import Fraction
from typing import TypeVar

from ..core import ir
from ..core.functions import ELEMENTWISE
from ..core.ir import (
    Add,
    ElemDiv,
    ElemPower,
    Expr,
    Fill,
    Func,
    Hadamard,
    Identity,
    Kron,
    MatMul,
    Num,
    Power,
    Transpose,
    Var,
    add,
    elem_div,
    func,
    hadamard,
    mul,
    num,
    power,
    transpose,
)
from .rule import RuleSet, arg_is
from .strategy import normalize

T = TypeVar("T")
SIMPLIFY_RULES = RuleSet("simplification rules")
rule = SIMPLIFY_RULES.rule


# ---------------------------------------------------------------- helpers


def _cached_on(e: Expr, attribute: str, compute: Callable[[Expr], T]) -> T:
    """compute(e), cached on the node as `attribute` (like its hash): for a pure function of one node,
    which the rules of a product, or of every sum a term is shared by, ask again and again."""
    cached = e.__dict__.get(attribute)
    if cached is None:
        cached = compute(e)
        object.__setattr__(e, attribute, cached)
    return cached


def _product_parts(e: Expr) -> tuple[Fraction, tuple[Expr, ...], tuple[Expr, ...]]:
    """ir.split_product(e) as tuples, cached on the node."""
    cached = e.__dict__.get("_product_parts")
    if cached is None:
        coefficient, scalars, chain = ir.split_product(e)
        cached = (coefficient, tuple(scalars), tuple(chain))
        object.__setattr__(e, "_product_parts", cached)
    return cached


def _split_product(e: Expr) -> tuple[Fraction, list[Expr], list[Expr]]:
    """ir.split_product(e), from the cache of _product_parts."""
    coefficient, scalars, chain = _product_parts(e)
    return coefficient, list(scalars), list(chain)


def _chain_rewrite(e: Expr, pair_rule: Callable[[Expr, Expr], list[Expr] | None]) -> Expr | None:
    """Apply pair_rule(left, right) -> list | None to the first adjacent pair of a product's chain."""
    coefficient, scalars, chain = _split_product(e)
    for i in range(len(chain) - 1):
        replacement = pair_rule(chain[i], chain[i + 1])
        if replacement is not None:
            new_chain = chain[:i] + list(replacement) + chain[i + 2 :]
            return mul(Num(coefficient), *scalars, *new_chain)
    return None


# the calls the rules look for below the node they are offered (the node itself is matched by the rule's heads)
_is_inverse, _is_diag, _is_exp = ir.is_call("inv"), ir.is_call("diag"), ir.is_call("exp")


def _is_inv_of(e: Expr, x: Expr) -> bool:
    return _is_inverse(e) and e.arg == x


_STRUCTURES: dict[tuple, int] = {}  # the structure of a node, over its children's keys -> its key
_FRESH_KEYS = itertools.count()
MAX_INTERNED = 1_000_000
_generation = 0  # advanced when _STRUCTURES is cleared: a key cached on a node in an older one is recomputed


def _cached(node: Expr, attribute: str) -> object:
    """A value cached on the node in the current generation of keys, or None."""
    cached = node.__dict__.get(attribute)
    return cached[1] if cached is not None and cached[0] == _generation else None


def commutative_key(e: Expr) -> int:
    """A number equal for expressions that differ only in the order of commutative operands.

    Keys are hash-consed integers, so comparing or sorting them costs O(1) however deep the
    expression. A key is never reused: when the table is cleared, an expression only gets a new
    key, so two keys are equal only for equal expressions. Each node's key is cached on it (like
    its hash) and computed from its children's, children first, without recursion.
    """
    cached = e.__dict__.get("_commutative_key")
    if cached is not None and cached[0] == _generation:
        return cached[1]
    stack: list[tuple[Expr, bool]] = [(e, False)]
    while stack:
        node, children_done = stack.pop()
        if _cached(node, "_commutative_key") is not None:
            continue
        if not children_done:
            stack.append((node, True))
            stack.extend((child, False) for child in node.children if _cached(child, "_commutative_key") is None)
            continue
        object.__setattr__(node, "_commutative_key", (_generation, _key_of_structure(node)))
    return e.__dict__["_commutative_key"][1]


def _key(child: Expr) -> int:
    """The key cached on a node, of any generation: keys are never reused."""
    return child.__dict__["_commutative_key"][1]


def _product_structure(e: Expr) -> tuple:
    coefficient, scalars, chain = _product_parts(e)
    return ("·", coefficient, tuple(sorted(map(_key, scalars))), tuple(map(_key, chain)))


# What a node's key is interned by, for the kinds of node with commutative operands (their keys as a sorted
# multiset; a product's scalars commute, its chain does not) and for calls (their name); any other node is its
# type and its children's keys in order, and a leaf is itself.
_STRUCTURE_OF: dict[type, Callable[[Expr], tuple]] = {
    Hadamard: lambda e: ("⊙", tuple(sorted(map(_key, e.factors)))),
    Add: lambda e: ("+", tuple(sorted(map(_key, e.terms)))),
    MatMul: _product_structure,
    Func: lambda e: ("Func", e.name, (_key(e.arg),)) if not e.axis else ("Func", e.name, (_key(e.arg),), e.axis),
}


def _key_of_structure(e: Expr) -> int:
    """The key of a node whose children all have theirs."""
    global _generation
    structure_of = _STRUCTURE_OF.get(type(e))
    if structure_of is not None:
        structure = structure_of(e)
    elif e.children:
        structure = (type(e).__name__, None, tuple(map(_key, e.children)))
    else:
        structure = ("leaf", e)
    if len(_STRUCTURES) > MAX_INTERNED:
        _STRUCTURES.clear()
        _generation += 1
    found = _STRUCTURES.get(structure)
    if found is None:
        found = _STRUCTURES[structure] = next(_FRESH_KEYS)
    return found


def _coefficient_and_body(term: Expr) -> tuple[Fraction, Expr]:
    """(c, T) with term = c T, cached on the term: a term shared by many sums is split once."""
    return _cached_on(term, "_coefficient_and_body", _split_coefficient)


def _split_coefficient(term: Expr) -> tuple[Fraction, Expr]:
    coefficient, scalars, chain = _product_parts(term)
    if not scalars and not chain:
        return coefficient, ir.ONE
    return coefficient, mul(*scalars, *chain)


# ---------------------------------------------------------------- transposes


@rule("transpose of a product", "(A B)^T -> B^T A^T", "(A B)^T", on=(Transpose,), guard=arg_is(MatMul))
def _transpose_product(e: Transpose) -> Expr:
    return mul(*[transpose(f) for f in reversed(e.arg.factors)])


@rule("transpose of a sum", "(A + B)^T -> A^T + B^T", "(A + B)^T", on=(Transpose,), guard=arg_is(Add))
def _transpose_sum(e: Transpose) -> Expr:
    return add(*[transpose(t) for t in e.arg.terms])


@rule("transpose of a Hadamard product", "(A .* B)^T -> A^T .* B^T", "(X .* Y)^T", on=(Transpose,),
      guard=arg_is(Hadamard))
def _transpose_hadamard(e: Transpose) -> Expr:
    return hadamard(*[transpose(f) for f in e.arg.factors])


@rule("transpose of an element-wise quotient", "(A ./ B)^T -> A^T ./ B^T", "(X ./ Y)^T", on=(Transpose,),
      guard=arg_is(ElemDiv))
def _transpose_quotient(e: Transpose) -> Expr:
    return elem_div(transpose(e.arg.numerator), transpose(e.arg.denominator))


@rule("transpose of a diagonal matrix", "diag(v)^T -> diag(v)", "diag(x)^T", on=(Transpose,), guard=arg_is("diag"))
def _transpose_diag(e: Transpose) -> Expr | None:
    return e.arg if ir.is_vector_shape(e.arg.arg.shape) else None


@rule("inverse of a transpose", "inv(A^T) -> inv(A)^T", "inv(X^T)", on=("inv",), guard=arg_is(Transpose))
def _inverse_transpose(e: Func) -> Expr:
    return transpose(func("inv", e.arg.arg))


def is_symmetric(e: Expr) -> bool:
    """Structurally symmetric: S (declared), I, diag(v), X^T X, A S A^T, A + A^T, inv/powers of those.

    Decided children first with an explicit stack (inv(inv(...)) or tanh(tanh(...)) may be deep), and
    cached on each node decided, so that asking again, of it or of a parent, costs O(1).
    """
    stack = [e]
    while stack:
        node = stack[-1]
        if _cached(node, "_symmetric") is not None:
            stack.pop()
            continue
        decided = _symmetry(node)
        if isinstance(decided, bool):
            object.__setattr__(node, "_symmetric", (_generation, decided))
            stack.pop()
        else:
            stack.extend(decided)
    return _cached(e, "_symmetric")  # type: ignore[return-value]


def _symmetry(e: Expr) -> bool | list[Expr]:
    """Whether e is structurally symmetric, from the symmetry of its children cached on them; or the
    children whose symmetry decides it and is not known yet. One level: no recursion."""
    symmetry = _SYMMETRY.get(type(e))
    return False if symmetry is None else symmetry(e)


_KEEP_SYMMETRY = frozenset({"inv", *ELEMENTWISE})  # f(S) is symmetric for a symmetric S: inv(S), exp(S), ...


def _call_symmetry(e: Func) -> bool | list[Expr]:
    if e.name == "diag":
        return ir.is_vector_shape(e.arg.shape)
    return _all_symmetric([e.arg]) if e.name in _KEEP_SYMMETRY else False


def _sum_symmetry(e: Add) -> bool | list[Expr]:
    """A + A^T pairs up; the terms left over must each be symmetric."""
    keys = {commutative_key(t) for t in e.terms}
    return _all_symmetric([t for t in e.terms if commutative_key(_pushed_transpose(t)) not in keys])


def _product_symmetry(e: MatMul) -> bool | list[Expr]:
    """A S A^T: the chain reads the same transposed from either end, and its middle factor is symmetric."""
    _, _, chain = _product_parts(e)
    if not chain or chain[0].shape[0] != chain[-1].shape[1]:
        return False
    k = len(chain)
    mirrored = (commutative_key(chain[i]) == commutative_key(_pushed_transpose(chain[k - 1 - i]))
                for i in range(k // 2))
    if not all(mirrored):
        return False
    return True if k % 2 == 0 else _all_symmetric([chain[k // 2]])


# Whether a node of each kind is symmetric, from its own data or its children's symmetry (any other kind: not
# structurally symmetric).
_SYMMETRY: dict[type, Callable[..., bool | list[Expr]]] = {
    Var: lambda e: e.symmetric,
    Identity: lambda e: True,
    Fill: lambda e: e.shape[0] == e.shape[1],
    Func: _call_symmetry,
    Power: lambda e: _all_symmetric([e.base]),
    ElemPower: lambda e: _all_symmetric([e.base]),
    Hadamard: lambda e: _all_symmetric(e.factors),
    Kron: lambda e: _all_symmetric(e.factors),
    Add: _sum_symmetry,
    MatMul: _product_symmetry,
}


def _all_symmetric(children: list[Expr] | tuple[Expr, ...]) -> bool | list[Expr]:
    """Whether all the children are symmetric, or those not known yet (when none is known not to be)."""
    unknown = []
    for child in children:
        known = _cached(child, "_symmetric")
        if known is False:
            return False
        if known is None:
            unknown.append(child)
    return unknown or True


def _pushed_transpose(e: Expr) -> Expr:
    """e^T with the transpose moved into products and sums (for symmetry tests only)."""
    t = transpose(e)
    for pusher in (_transpose_product, _transpose_sum):
        pushed = pusher.apply(t)  # None where t is not a transpose of a product (a sum)
        if pushed is not None:
            return pushed
    return t


@rule("transpose of a symmetric matrix", "M^T -> M for a symmetric M (S, X^T X, inv(X^T X), A + A^T, ...)",
      "inv(X^T X)^T", on=(Transpose,))
def _transpose_symmetric(e: Transpose) -> Expr | None:
    return e.arg if is_symmetric(e.arg) else None


@rule("transpose of a power", "(X^k)^T -> (X^T)^k", "(X^2)^T", on=(Transpose,), guard=arg_is(Power))
def _transpose_power(e: Transpose) -> Expr:
    return power(transpose(e.arg.base), e.arg.exponent)


# ---------------------------------------------------------------- inverses and products


@rule("inverse of an inverse", "inv(inv(A)) -> A", "inv(inv(X))", on=("inv",), guard=arg_is("inv"))
def _inverse_inverse(e: Func) -> Expr:
    return e.arg.arg


@rule("inverse cancels", "A inv(A) -> I;  inv(A) A -> I", "X inv(X) Y", on=(MatMul,))
def _inverse_cancels(e: MatMul) -> Expr | None:
    def pair(left: Expr, right: Expr) -> list[Expr] | None:
        if _is_inv_of(right, left) or _is_inv_of(left, right):
            return [ir.identity(left.shape[0])]
        if isinstance(left, Transpose) and isinstance(right, Transpose) and \
                (_is_inv_of(right.arg, left.arg) or _is_inv_of(left.arg, right.arg)):
            return [ir.identity(left.shape[0])]
        return None

    return _chain_rewrite(e, pair)


def _signed_power(f: Expr) -> tuple[Expr, int, bool] | None:
    """(X, k, transposed) with f = X^k (inv(X)^|k| or inv(X^|k|) for k < 0), or its transpose; None if f is not
    a whole power of a square matrix."""
    transposed = isinstance(f, Transpose)
    if transposed:
        f = f.arg
    sign = 1
    if _is_inverse(f):
        sign, f = -1, f.arg
    k = 1
    if isinstance(f, Power):
        exponent = f.numeric_exponent
        if exponent is None or exponent.denominator != 1:
            return None
        k, f = int(exponent), f.base
        if sign == 1 and _is_inverse(f):
            sign, f = -1, f.arg
    if isinstance(f, Transpose) and not transposed:  # (X^T)^k
        transposed, f = True, f.arg
    if f.shape[0] != f.shape[1] or f.is_scalar:
        return None
    return f, sign * k, transposed


@rule("inverse cancels a power", "inv(X^p) X^q -> inv(X^(p - q));  X^p inv(X)^q -> X^(p - q)",
      "inv(X^3) X^2", on=(MatMul,))
def _inverse_cancels_power(e: MatMul) -> Expr | None:
    def pair(left: Expr, right: Expr) -> list[Expr] | None:
        a, b = _signed_power(left), _signed_power(right)
        if a is None or b is None or a[0] != b[0] or a[2] != b[2] or a[1] * b[1] >= 0:
            return None
        base, k, transposed = a[0], a[1] + b[1], a[2]
        if k == 0:
            return [ir.identity(base.shape[0])]
        merged = power(base, num(k)) if k > 0 else func("inv", power(base, num(-k)))
        return [transpose(merged) if transposed else merged]

    return _chain_rewrite(e, pair)


@rule("product of diagonal matrices", "diag(a) diag(b) -> diag(a .* b)", "diag(x) diag(y)", on=(MatMul,))
def _diag_product(e: MatMul) -> Expr | None:
    def pair(left: Expr, right: Expr) -> list[Expr] | None:
        if all(_is_diag(f) and ir.is_column(f.arg.shape) for f in (left, right)):
            return [func("diag", hadamard(left.arg, right.arg))]
        return None

    return _chain_rewrite(e, pair)


def _base_and_exponent(f: Expr) -> tuple[Expr, Expr]:
    """(b, p) with f = b^p: a power's, or (f, 1)."""
    return (f.base, f.exponent) if isinstance(f, Power) else (f, ir.ONE)


@rule("repeated factor", "A A -> A^2;  A^p A^q -> A^(p + q)", "X X Y", on=(MatMul,))
def _repeated_factor(e: MatMul) -> Expr | None:
    # every run of one base is merged in a single pass, so that A A ... A (k times) costs O(k), not O(k^2)
    coefficient, scalars, chain = _split_product(e)
    merged: list[Expr] = []
    for factor in chain:
        if merged:
            (a, p), (b, q) = _base_and_exponent(merged[-1]), _base_and_exponent(factor)
            if a == b and a.shape[0] == a.shape[1] and p.constant is not None and q.constant is not None:
                merged[-1] = power(a, num(p.constant + q.constant))
                continue
        merged.append(factor)
    if len(merged) == len(chain):
        return None
    return mul(Num(coefficient), *scalars, *merged)


@rule("transposed quotient times its divisor", "b^T (a ./ b) -> sum(a);  (a ./ b)^T b -> sum(a)",
      "y^T (x ./ y)", on=(MatMul,))
def _quotient_inner_product(e: MatMul) -> Expr | None:
    def pair(left: Expr, right: Expr) -> list[Expr] | None:
        if isinstance(right, ElemDiv) and ir.is_column(right.shape) and left == transpose(right.denominator):
            return [func("sum", right.numerator)]
        if isinstance(left, ElemDiv) and ir.is_column(right.shape) and left.denominator == transpose(right):
            return [func("sum", transpose(left.numerator))]
        return None

    return _chain_rewrite(e, pair)


@rule("diagonal matrix times a vector", "diag(a) b -> a .* b;  vector(1)^T diag(a) -> a^T",
      "diag(x) y + (vector(1)^T diag(x))^T", on=(MatMul,))
def _diag_times_vector(e: MatMul) -> Expr | None:
    def pair(left: Expr, right: Expr) -> list[Expr] | None:
        if _is_diag(left) and ir.is_column(left.arg.shape) and ir.is_column(right.shape):
            return [hadamard(left.arg, right)]
        if _is_diag(right) and ir.is_column(right.arg.shape) and right.arg.shape[0] != 1 and ir.is_ones(left) \
                and left.shape[0] == 1:  # the column sums of a diagonal matrix: its diagonal (b^T diag(a) would grow)
            return [transpose(right.arg)]
        return None

    return _chain_rewrite(e, pair)


@rule("diagonal of an outer product", "diag(a b^T) -> a .* b", "diag(x y^T)", on=("diag",), guard=arg_is(MatMul))
def _diag_outer(e: Func) -> Expr | None:
    if not ir.is_vector_shape(e.arg.shape):
        coefficient, scalars, chain = _split_product(e.arg)
        if len(chain) == 2 and ir.is_column(chain[0].shape) and chain[1].shape[0] == 1:
            return mul(Num(coefficient), *scalars, hadamard(chain[0], transpose(chain[1])))
    return None


@rule("diagonal of a diagonal matrix", "diag(diag(v)) -> v for a vector v", "diag(diag(x))", on=("diag",),
      guard=arg_is("diag"))
def _diag_diag(e: Func) -> Expr | None:
    return e.arg.arg if ir.is_column(e.arg.arg.shape) else None


@rule("scalars out of diag", "diag(c A) -> c diag(A);  diag(a (b^T c)) -> (b^T c) diag(a)", "diag(2 alpha x)",
      on=("diag",), guard=arg_is(MatMul))
def _diag_scalars_out(e: Func) -> Expr | None:
    coefficient, scalars, chain = _split_product(e.arg)
    if ir.is_column(e.arg.shape):  # a vector's chain may end in a 1 x 1 block (vector(1) x^T y): a scalar too
        tail = next((j for j in range(1, len(chain)) if chain[j - 1].shape[1] == 1), None)
        if tail is not None:
            scalars, chain = [*scalars, mul(*chain[tail:])], chain[:tail]
    if chain and (coefficient != 1 or scalars):
        return mul(Num(coefficient), *scalars, func("diag", mul(*chain)))
    return None


@rule("diagonal of ones", "diag(vector(1)) -> I", "diag(vector(1)) A", on=("diag",))
def _diag_ones(e: Func) -> Expr | None:
    if ir.is_ones(e.arg) and ir.is_column(e.arg.shape):
        return ir.identity(e.arg.shape[0])
    return None


@rule("ones times a vector", "vector(1)^T a -> sum(a);  a^T vector(1) -> sum(a)", "vector(1)^T x", on=(MatMul,))
def _ones_times_vector(e: MatMul) -> Expr | None:
    coefficient, scalars, chain = _split_product(e)
    if len(chain) != 2 or e.shape != ir.SCALAR:
        return None
    left, right = chain
    if ir.is_ones(left):
        return mul(Num(coefficient), *scalars, func("sum", right))
    if ir.is_ones(right):
        return mul(Num(coefficient), *scalars, func("sum", transpose(left)))
    return None


@rule("product of constants", "matrix(a) matrix(b) -> k a b matrix(1), k the inner size;  "
      "vector(1) vector(1)^T -> matrix(1) alone", "matrix(2) matrix(1) x", on=(MatMul,))
def _product_of_fills(e: MatMul) -> Expr | None:
    """Two constant fills side by side multiply out: each entry of the product sums k products of the constants. An
    outer product of ones beside other factors stays: vector(1) (vector(1)^T U) is U's column sums spread down, which
    the printer writes vector(1) sum(U, 1)."""
    coefficient, scalars, chain = _split_product(e)
    for i in range(len(chain) - 1):
        left, right = chain[i], chain[i + 1]
        if isinstance(left, Fill) and isinstance(right, Fill) and (left.shape[1] != 1 or len(chain) == 2):
            inner = left.shape[1]
            merged = mul(Num(left.value * right.value), ir.size(inner), ir.ones((left.shape[0], right.shape[1])))
            return mul(Num(coefficient), *scalars, *chain[:i], merged, *chain[i + 2:])
    return None


@rule("element-wise function of a broadcast", "f(a vector(1)^T) -> f(a) vector(1)^T;  (a vector(1)^T).^k -> "
      "a.^k vector(1)^T;  c ./ (a vector(1)^T) -> (c ./ a) vector(1)^T (also of a row or a scalar spread)",
      "exp(x vector(1)^T) + log(1 ./ (vector(1) x^T))", where="x: vector(n)",
      on=(*sorted(ELEMENTWISE), ElemPower, ElemDiv))
def _elementwise_of_broadcast(e: Expr) -> Expr | None:
    """An element-wise function takes each entry alone, so it commutes with repeating them: the function is computed
    on the vector, not on every column of the matrix."""
    if isinstance(e, Func):
        parts = ir.spread_parts(e.arg)
        return ir.respread(func(e.name, parts[0]), *parts[1:]) if parts is not None else None
    if isinstance(e, ElemPower):
        parts = ir.spread_parts(e.base)
        return ir.respread(ir.elem_power(parts[0], e.exponent), *parts[1:]) if parts is not None else None
    numerator = e.numerator  # type: ignore[attr-defined]
    parts = ir.spread_parts(e.denominator)  # type: ignore[attr-defined]
    if parts is None or not isinstance(numerator, Fill):
        return None
    core, ones, how = parts
    if how == "entries":
        return None  # c ./ (alpha matrix(1)) is (c / alpha) matrix(1), another rule's
    return ir.respread(ir.elem_div(ir.fill(numerator.value, core.shape), core), ones, how)


@rule("Hadamard product of broadcasts", "(a vector(1)^T) .* (b vector(1)^T) -> (a .* b) vector(1)^T;  "
      "(vector(1) r) .* (vector(1) s) -> vector(1) (r .* s)", "(x vector(1)^T) .* (y vector(1)^T)",
      where="x, y: vector(n)", on=(Hadamard,))
def _hadamard_of_broadcasts(e: Hadamard) -> Expr | None:
    """Columns (rows) repeated alike multiply column by column: the product is taken once, then repeated."""
    spreads = [ir.spread_parts(f) for f in e.factors]
    for first in spreads:
        if first is None or first[2] == "entries":
            continue
        alike = [j for j, other in enumerate(spreads) if other is not None and other[1:] == first[1:]]
        if len(alike) > 1:
            product = ir.respread(hadamard(*(spreads[j][0] for j in alike)), *first[1:])  # type: ignore[index]
            rest = [f for j, f in enumerate(e.factors) if j not in alike]
            return hadamard(product, *rest) if rest else product
    return None


@rule("sums of a softmax", "vector(1)^T softmax(U, 1) -> vector(1)^T;  softmax(U, 2) vector(1) -> vector(1);  "
      "vector(1)^T softmax(u) -> 1", "vector(1)^T softmax(X, 1) Y", on=(MatMul,))
def _sums_of_softmax(e: MatMul) -> Expr | None:
    """Each column (row) of a softmax along it sums to 1."""
    coefficient, scalars, chain = _split_product(e)
    for i in range(len(chain) - 1):
        left, right = chain[i], chain[i + 1]
        if ir.is_ones(left) and left.shape[0] == 1 and isinstance(right, Func) and right.name == "softmax" \
                and right.axis in (0, 1):
            merged = ir.ones((1, right.shape[1]))
        elif ir.is_ones(right) and right.shape[1] == 1 and isinstance(left, Func) and left.name == "softmax" \
                and left.axis == 2:
            merged = ir.ones((left.shape[0], 1))
        else:
            continue
        return mul(Num(coefficient), *scalars, *chain[:i], merged, *chain[i + 2:])
    return None


@rule("collect scalar powers", "a^p a^q -> a^(p + q)", "alpha^2 alpha^3 x", on=(MatMul,))
def _collect_powers(e: MatMul) -> Expr | None:
    coefficient, scalars, chain = _split_product(e)
    bases: dict[Expr, list[Expr]] = {}
    for s in scalars:
        base, exponent = _base_and_exponent(s)
        bases.setdefault(base, []).append(exponent)
    if all(len(exponents) == 1 for exponents in bases.values()):
        return None
    merged = [power(base, add(*exponents)) for base, exponents in bases.items()]
    merged = [m for m in merged if m.numeric_exponent != 0]
    return mul(Num(coefficient), *merged, *chain)


@rule("power of a power", "(a^p)^q -> a^(p q) for a whole number q", "(alpha^2)^3", on=(Power,))
def _power_of_power(e: Power) -> Expr | None:
    exponent = e.numeric_exponent
    if isinstance(e.base, Power) and e.is_scalar and exponent is not None and exponent.denominator == 1:
        return power(e.base.base, mul(e.base.exponent, e.exponent))
    return None


@rule("power of a scalar product", "(c a)^k -> c^k a^k for a whole number k", "(2 alpha)^-1 x", on=(Power,))
def _power_of_product(e: Power) -> Expr | None:
    exponent = e.numeric_exponent
    if e.is_scalar and isinstance(e.base, MatMul) and exponent is not None and exponent.denominator == 1:
        coefficient, scalars, chain = _split_product(e.base)
        parts = [*scalars, mul(*chain)] if chain else scalars
        if len(parts) + (coefficient != 1) < 2:
            return None
        return mul(power(Num(coefficient), e.exponent), *[power(s, e.exponent) for s in parts])
    return None


@rule("zeroth power", "a^0 -> 1", "alpha^0 x", on=(Power,))
def _zeroth_power(e: Power) -> Expr | None:
    if e.exponent == ir.ZERO and e.is_scalar:
        return ir.ONE
    return None


@rule("sum of numbers", "2 + 3 -> 5 (also in constant fills)", "x + 1 + 2", on=(Add,))
def _fold_constants(e: Add) -> Expr | None:
    constants = [t.constant for t in e.terms if t.constant is not None]
    if len(constants) < 2:
        return None
    total = sum(constants, Fraction(0))
    others = [t for t in e.terms if t.constant is None]
    return add(*others, ir.fill(total, e.shape)) if others else ir.fill(total, e.shape)


@rule("trace of a scalar", "tr(a) -> a", "tr(x^T y)", on=("tr", "det"))
def _trace_scalar(e: Func) -> Expr | None:
    return e.arg if e.arg.is_scalar else None


@rule("log of exp", "log(exp(u)) -> u", "log(exp(x))", on=("log",), guard=arg_is("exp"))
def _log_exp(e: Func) -> Expr:
    return e.arg.arg


# ---------------------------------------------------------------- constants and sizes
# A constant whose size the output does not carry (tr(I), logsumexp(vector(0))) is written with the size of
# its dimension instead, so that the printed result says what it means and parses back to the same tree.


def _entries(shape: ir.Shape) -> Expr:
    """The number of entries of a shape, as an expression in the sizes of its dimensions."""
    return mul(ir.size(shape[0]), ir.size(shape[1]))


@rule("scalars out of a trace or sum", "tr(c A) -> c tr(A);  sum(c A) -> c sum(A)", "tr(alpha A) + sum(beta x)",
      on=("tr", "sum"), guard=arg_is(MatMul))
def _trace_sum_scalars_out(e: Func) -> Expr | None:
    coefficient, scalars, chain = _split_product(e.arg)
    if chain and (coefficient != 1 or scalars):
        return mul(Num(coefficient), *scalars, func(e.name, mul(*chain)))
    return None


@rule("trace or sum of a constant", "tr(I) -> n;  sum(I) -> n;  tr(matrix(c)) -> c n;  sum(matrix(c)) -> c m n",
      "tr(I) + sum(vector(2)) + x^T x", on=("tr", "sum"), guard=arg_is(Identity, Fill))
def _trace_sum_constant(e: Func) -> Expr:
    if isinstance(e.arg, Identity):
        return ir.size(e.arg.size)
    count = ir.size(e.arg.shape[0]) if e.name == "tr" else _entries(e.arg.shape)
    return mul(Num(e.arg.value), count)


@rule("trace or sum of a sum with a constant term",
      "tr(A + c I) -> tr(A) + c rows(A);  sum(a + c vector(1)) -> sum(a) + c rows(a)",
      "tr(A + alpha I) + sum(x - sum(x) vector(1) / rows(x))", on=("tr", "sum"), guard=arg_is(Add))
def _trace_sum_constant_terms(e: Func) -> Expr | None:
    # the constant terms (a scalar multiple of I or of a fill) leave the trace or sum, where they are a number of
    # entries: so the sum of a centred vector, sum(x - sum(x) vector(1) / n), is sum(x) - sum(x) = 0
    constant, rest = [], []
    for term in e.arg.terms:
        coefficient, scalars, chain = _split_product(term)
        if len(chain) == 1 and isinstance(chain[0], Identity | Fill):
            constant.append(mul(Num(coefficient), *scalars, func(e.name, chain[0])))
        else:
            rest.append(term)
    if not constant:
        return None
    return add(func(e.name, add(*rest)), *constant) if rest else add(*constant)


def _is_centred(c: Expr) -> bool:
    """c = a - sum(a) vector(1) / n, a column with its mean taken out (mean(a) is sum(a) / n): sum(c) = 0."""
    if not (isinstance(c, Add) and ir.is_column(c.shape)):
        return False
    for i, term in enumerate(c.terms):
        rest = add(*c.terms[:i], *c.terms[i + 1 :])
        mean_out = mul(Num(-1), func("sum", rest), ir.reciprocal(ir.size(c.shape[0])), ir.ones(c.shape))
        if term == mean_out:
            return True
    return False


@rule("sum of a sum with a centred term", "sum(a + s (x - sum(x) vector(1) / rows(x))) -> sum(a)",
      "sum(y + alpha (x - sum(x) vector(1) / rows(x)))", on=("sum",), guard=arg_is(Add))
def _sum_centred_terms(e: Func) -> Expr | None:
    # a scalar multiple of a centred vector adds nothing to a sum: the layer norm's gradient sums such terms
    kept = [t for t in e.arg.terms if not (len(chain := _product_parts(t)[2]) == 1 and _is_centred(chain[0]))]
    if len(kept) == len(e.arg.terms):
        return None
    return func("sum", add(*kept)) if kept else ir.ZERO


@rule("inverse of a scaled matrix", "inv(c A) -> inv(A) / c;  inv(I) -> I", "inv(alpha X)", on=("inv",))
def _inverse_scaled(e: Func) -> Expr | None:
    if isinstance(e.arg, Identity):
        return e.arg
    if isinstance(e.arg, MatMul):
        coefficient, scalars, chain = _split_product(e.arg)
        if chain and (coefficient != 1 or scalars):
            return mul(Num(1 / coefficient), *[ir.reciprocal(s) for s in scalars], func("inv", mul(*chain)))
    return None


@rule("determinant of a constant", "det(I) -> 1;  logdet(I) -> 0;  det(matrix(c)) -> 0", "det(I) + logdet(I) x^T x",
      on=("det", "logdet"), guard=arg_is(Identity, Fill))
def _determinant_constant(e: Func) -> Expr | None:
    if isinstance(e.arg, Identity):
        return ir.ONE if e.name == "det" else ir.ZERO
    if e.name == "det":  # of a fill: rank 1, and every size is at least 2
        return ir.ZERO
    return None


@rule("determinant of a power", "det(X^k) -> det(X)^k for a whole number k", "det(X^2)", on=("det",),
      guard=arg_is(Power))
def _determinant_power(e: Func) -> Expr | None:
    exponent = e.arg.numeric_exponent
    if exponent is not None and exponent.denominator == 1:
        return power(func("det", e.arg.base), e.arg.exponent)
    return None


# f of a constant vector of n entries c, per entry of the result (a scalar for a reduction), from c and n; where
# the function has an axis, each column (axis 1) or row (axis 2) is such a vector, and the result is this value at
# every entry of the call's shape
_OF_A_CONSTANT: dict[str, Callable[[Fraction, ir.Dim], Expr]] = {
    "logsumexp": lambda c, n: add(Num(c), func("log", ir.size(n))),
    "softmax": lambda c, n: ir.reciprocal(ir.size(n)),
    "max": lambda c, n: Num(c),
    "argmax_mask": lambda c, n: ir.reciprocal(ir.size(n)),  # every entry ties for the max: an equal share
}
_OF_A_CONSTANT_MATRIX: dict[str, Callable[[Fraction, ir.Shape], Expr]] = {
    "norm2": lambda c, shape: mul(Num(abs(c)), func("sqrt", _entries(shape))),
    "norm1": lambda c, shape: mul(Num(abs(c)), _entries(shape)),
}


@rule("functions of a constant vector",
      "logsumexp(vector(c)) -> c + log(n);  softmax(vector(c)) -> vector(1) / n;  max(vector(c)) -> c;  "
      "argmax_mask(vector(c)) -> vector(1) / n;  along an axis, of each column (row): logsumexp(matrix(c), 1) -> "
      "(c + log(m)) vector(1)^T, softmax(matrix(c), 2) -> matrix(1) / n, ...;  norm2(matrix(c)) -> |c| sqrt(m n);  "
      "norm1(matrix(c)) -> |c| m n",
      "logsumexp(vector(1)) + x^T x", on=(*_OF_A_CONSTANT, *_OF_A_CONSTANT_MATRIX), guard=arg_is(Fill))
def _functions_of_constant(e: Func) -> Expr | None:
    c, shape = e.arg.value, e.arg.shape
    if e.name in _OF_A_CONSTANT_MATRIX:
        return _OF_A_CONSTANT_MATRIX[e.name](c, shape) if not e.axis else None
    entries = shape[1] if e.axis == 2 else shape[0]  # a vector's entries, or those of each column (row)
    value = _OF_A_CONSTANT[e.name](c, entries)
    return value if e.is_scalar else mul(value, ir.ones(e.shape))


_EXACT_VALUES: dict[tuple[str, Fraction], Fraction] = {
    ("exp", Fraction(0)): Fraction(1), ("log", Fraction(1)): Fraction(0), ("cos", Fraction(0)): Fraction(1),
    ("sigmoid", Fraction(0)): Fraction(1, 2),
}


def _exact_value(name: str, value: Fraction) -> Fraction | None:
    """f(c) for a number c where it is rational: functions with kinks, and a few special points."""
    if name in ("abs", "relu", "sign", "step"):
        return {"abs": abs(value), "relu": max(value, Fraction(0)), "sign": Fraction((value > 0) - (value < 0)),
                "step": Fraction(int(value > 0))}[name]
    return _EXACT_VALUES.get((name, value))


@rule("element-wise function of a constant", "f(vector(c)) -> f(c) vector(1);  exp(0) -> 1, sign(-2) -> -1, ...",
      "exp(vector(0)) + sin(vector(2)) + x", on=tuple(sorted(ELEMENTWISE)), guard=arg_is(Num, Fill))
def _elementwise_of_constant(e: Func) -> Expr | None:
    exact = _exact_value(e.name, e.arg.value)
    if exact is not None:
        return ir.fill(exact, e.shape)
    if isinstance(e.arg, Fill):
        return mul(func(e.name, Num(e.arg.value)), ir.ones(e.shape))
    return None


# ---------------------------------------------------------------- element-wise forms


@rule("Hadamard product with a constant", "A .* vector(c) -> c A", "x .* vector(2)", on=(Hadamard,))
def _hadamard_constant(e: Hadamard) -> Expr | None:
    constants = [f for f in e.factors if isinstance(f, Fill)]
    if not constants:
        return None
    rest = [f for f in e.factors if not isinstance(f, Fill)]
    scale = Fraction(1)
    for c in constants:
        scale *= c.value
    return mul(Num(scale), hadamard(*rest)) if rest else ir.fill(scale, e.shape)


@rule("division by a constant", "A ./ vector(c) -> (1/c) A", "x ./ vector(2)", on=(ElemDiv,))
def _divide_constant(e: ElemDiv) -> Expr | None:
    value = e.denominator.constant  # a fill: a scalar divisor is a product with its reciprocal
    if value:
        return mul(Num(1 / value), e.numerator)
    return None


@rule("scalars out of a Hadamard product", "(c A) .* B -> c (A .* B)", "(2 alpha x) .* y", on=(Hadamard,))
def _hadamard_scalars_out(e: Hadamard) -> Expr | None:
    pulled: list[Expr] = []
    factors = []
    for f in e.factors:
        coefficient, scalars, chain = _split_product(f)
        if isinstance(f, MatMul) and chain and (coefficient != 1 or scalars):
            pulled += [Num(coefficient), *scalars]
            factors.append(mul(*chain))
        else:
            factors.append(f)
    return mul(*pulled, hadamard(*factors)) if pulled else None


@rule("scalars out of an element-wise quotient", "(c A) ./ (d B) -> (c/d) (A ./ B)", "(2 x) ./ (alpha y)",
      on=(ElemDiv,))
def _quotient_scalars_out(e: ElemDiv) -> Expr | None:
    top_c, top_s, top_chain = _split_product(e.numerator)
    bottom_c, bottom_s, bottom_chain = _split_product(e.denominator)
    pull_top = isinstance(e.numerator, MatMul) and top_chain and (top_c != 1 or top_s)
    pull_bottom = isinstance(e.denominator, MatMul) and bottom_chain and (bottom_c != 1 or bottom_s)
    if not (pull_top or pull_bottom):
        return None
    numerator = mul(*top_chain) if pull_top else e.numerator
    denominator = mul(*bottom_chain) if pull_bottom else e.denominator
    scalars: list[Expr] = []
    if pull_top:
        scalars += [Num(top_c), *top_s]
    if pull_bottom:
        scalars += [Num(1 / bottom_c), *[ir.reciprocal(s) for s in bottom_s]]
    return mul(*scalars, elem_div(numerator, denominator))


@rule("quotient cancels", "(a ./ b) .* b -> a", "(x ./ y) .* y", on=(Hadamard,))
def _quotient_cancels(e: Hadamard) -> Expr | None:
    for i, f in enumerate(e.factors):
        if isinstance(f, ElemDiv) and f.denominator in e.factors:
            rest = list(e.factors[:i] + e.factors[i + 1 :])
            rest.remove(f.denominator)
            return hadamard(f.numerator, *rest)
    return None


def _cancels_against(term: Expr, divisor: Expr) -> bool:
    """The term is c (a ./ divisor) for a numeric c: times divisor, entry by entry, it cancels."""
    _, scalars, chain = ir.split_product(term)
    inner = chain[0] if len(chain) == 1 and not scalars else term
    return isinstance(inner, ElemDiv) and inner.denominator == divisor


@rule("quotient cancels in a sum", "(a ./ b + c) .* b -> a + c .* b", "(x ./ y + z) .* y", on=(Hadamard,))
def _quotient_cancels_in_a_sum(e: Hadamard) -> Expr | None:
    """A Hadamard factor that divides a term of a sum beside it distributes over the sum: that term cancels (the
    gradient of a cross-entropy through a softmax, S .* (sum(Y, 1) - Y ./ S), is S .* sum(Y, 1) - Y)."""
    for i, f in enumerate(e.factors):
        if not isinstance(f, Add):
            continue
        for divisor in e.factors:
            if divisor is not f and any(_cancels_against(t, divisor) for t in f.terms):
                rest = list(e.factors[:i] + e.factors[i + 1 :])
                return add(*(hadamard(t, *rest) for t in f.terms))
    return None


@rule("constant over a divisor", "c (vector(v) ./ B) -> vector(c v) ./ B", "2 (1 ./ x)", on=(MatMul,))
def _constant_quotient(e: MatMul) -> Expr | None:
    quotient = e.factors[-1]
    if len(e.factors) == 2 and e.coefficient != 1 and isinstance(quotient, ElemDiv) \
            and quotient.numerator.constant is not None:
        return elem_div(ir.fill(e.coefficient * quotient.numerator.constant, quotient.shape), quotient.denominator)
    return None


@rule("product with a reciprocal", "A .* (1 ./ B) -> A ./ B", "x .* (1 ./ y)", on=(Hadamard,))
def _times_reciprocal(e: Hadamard) -> Expr | None:
    for i, f in enumerate(e.factors):
        if isinstance(f, ElemDiv) and ir.is_ones(f.numerator):
            rest = e.factors[:i] + e.factors[i + 1 :]
            return elem_div(hadamard(*rest), f.denominator)
    return None


# ---------------------------------------------------------------- common factors of element-wise quotients
# A Hadamard product is read as a multiset of whole powers (b.^k counts b k times), so that the factors a quotient's
# numerator and denominator share cancel, whatever their order or grouping: x ./ x.^2 -> 1 ./ x (the derivative of
# log(x.^2)), (s .* u .* u) ./ (s .* u) -> u (the ICA gradient), X ./ (X ./ Y) -> Y. Each rewrite removes nodes.


def _quotient_powers(e: Expr) -> tuple[list[list], list[list]]:
    """e as a quotient of Hadamard products of whole powers: ([[base, k], ...] above, [[base, k], ...] below).

    Quotients and Hadamard products are opened (a Hadamard product only at the power 1, so that (a .* b).^3 stays
    one base), b.^k with a whole k >= 2 counts b k times, and (a ./ b).^k puts a^k above and b^k below. An
    explicit stack: nested quotients are not a recursion.
    """
    top: list[list] = []
    bottom: list[list] = []
    stack: list[tuple[Expr, int, bool]] = [(e, 1, True)]
    while stack:
        node, k, above = stack.pop()
        p = node.exponent.constant if isinstance(node, ElemPower) else None
        if isinstance(node, ElemDiv):
            stack += [(node.denominator, k, not above), (node.numerator, k, above)]
        elif isinstance(node, Hadamard) and k == 1:
            stack += [(f, k, above) for f in reversed(node.factors)]
        elif p is not None and p.denominator == 1 and p > 1:
            stack.append((node.base, k * int(p), above))
        else:
            (top if above else bottom).append([node, k])
    return top, bottom


def _cancel_powers(top: list[list], bottom: list[list]) -> bool:
    """Cancel the bases top and bottom share (by commutative key), in place; whether anything cancelled."""
    cancelled = False
    for b in bottom:
        for t in top:
            if t[1] and b[1] and commutative_key(t[0]) == commutative_key(b[0]):
                k = min(t[1], b[1])
                t[1] -= k
                b[1] -= k
                cancelled = True
    return cancelled


def _hadamard_of_powers(factors: list[list]) -> list[Expr]:
    return [base if k == 1 else ir.elem_power(base, num(k)) for base, k in factors if k]


def _cancelled_quotient(e: Expr, whole: bool = False) -> Expr | None:
    """e with the factors its numerator and denominator share cancelled, as one quotient; None if none cancel (or,
    if `whole`, if not all of the denominator cancels)."""
    top, bottom = _quotient_powers(e)
    if not _cancel_powers(top, bottom) or (whole and any(k for _, k in bottom)):
        return None
    if isinstance(e, ElemDiv) and isinstance(e.numerator, Var) and e.numerator == e.denominator:
        return None  # x ./ x is left as written: vector(1) would print longer
    above, below = _hadamard_of_powers(top), _hadamard_of_powers(bottom)
    numerator = hadamard(*above) if above else ir.ones(e.shape)
    return elem_div(numerator, hadamard(*below)) if below else numerator


@rule("common factors of a quotient", "(a .* b) ./ (a .* c) -> b ./ c;  x ./ x.^3 -> 1 ./ x.^2;  a ./ (a ./ b) -> b;  "
      "(x ./ y).^2 ./ x -> x ./ y.^2", "(x .* y) ./ (x .* z)", on=(ElemDiv,))
def _quotient_common_factors(e: ElemDiv) -> Expr | None:
    return _cancelled_quotient(e)


@rule("Hadamard factors cancel a divisor", "(a ./ (b .* c)) .* b .* c -> a;  (a ./ b.^2) .* b .* b -> a",
      "(x ./ (y .* z)) .* y .* z", on=(Hadamard,))
def _hadamard_cancels_divisor(e: Hadamard) -> Expr | None:
    # only where the whole divisor cancels: a factor spent on part of one divisor may be the one that would cancel
    # another divisor whole, once the products of diagonal matrices have gathered them
    if not any(isinstance(f, ElemDiv) for f in e.factors):
        return None  # no divisor to cancel
    return _cancelled_quotient(e, whole=True)


def quotient_by_square_root(e: Expr) -> Expr | None:
    """u / sqrt(u) -> sqrt(u), for a factor u above and sqrt(u) below: in an element-wise quotient (Hadamard factors on
    either side), a Hadamard product with a quotient, or a product of scalars (sqrt(u)^-1, or the reciprocal of a
    product holding sqrt(u)). Equal
    wherever the left side is defined (u > 0); shared by the stable forms, where it removes a 0 / 0 in a tail."""
    if isinstance(e, ElemDiv):
        above, below = list(e.numerator.operands_of(Hadamard)), list(e.denominator.operands_of(Hadamard))
        for i, u in enumerate(above):
            root = Func("sqrt", u) if u.shape == e.shape else None
            if root is not None and root in below:
                below.remove(root)
                numerator = hadamard(*above[:i], root, *above[i + 1:])
                return elem_div(numerator, hadamard(*below)) if below else numerator
        return None
    if isinstance(e, Hadamard):  # u .* (a ./ (sqrt(u) .* b)) -> sqrt(u) .* (a ./ b)
        for j, quotient in enumerate(e.factors):
            if not isinstance(quotient, ElemDiv):
                continue
            below = list(quotient.denominator.operands_of(Hadamard))
            for i, u in enumerate(e.factors):
                root = Func("sqrt", u) if i != j else None
                if root is not None and root in below:
                    below.remove(root)
                    rest = elem_div(quotient.numerator, hadamard(*below)) if below else quotient.numerator
                    return hadamard(*[root if k == i else rest if k == j else f for k, f in enumerate(e.factors)])
        return None
    if not isinstance(e, MatMul):
        return None
    scalars = {f for f in e.factors if f.is_scalar and not isinstance(f, Num)}
    for j, f in enumerate(e.factors):
        if not (ir.is_reciprocal(f) and f.numeric_exponent == -1):
            continue
        inner = list(f.base.operands_of(MatMul))  # type: ignore[attr-defined]
        for k, root in enumerate(inner):
            if ir.is_call("sqrt")(root) and root.arg in scalars:  # type: ignore[attr-defined]
                i = e.factors.index(root.arg)  # type: ignore[attr-defined]
                rest = inner[:k] + inner[k + 1:]
                factors = [root if n == i else g for n, g in enumerate(e.factors)]
                factors[j] = ir.reciprocal(ir.mul(*rest)) if rest else num(1)
                return ir.mul(*factors)
    return None


@rule("quotient by a square root", "u ./ sqrt(u) -> sqrt(u);  alpha / sqrt(alpha) -> sqrt(alpha);  "
      "(u .* v) ./ (sqrt(u) .* w) -> (sqrt(u) .* v) ./ w;  u .* (v ./ sqrt(u)) -> sqrt(u) .* v", "x ./ sqrt(x)",
      on=(ElemDiv, Hadamard, MatMul))
def _quotient_by_square_root(e: Expr) -> Expr | None:
    # not in a term of a differential: there the quotient stays whole for the identities that read it
    # (sqrt(u)^T ((u .* dx) ./ sqrt(u)) -> u^T dx, by the transposed quotient times its divisor)
    return None if ir.contains_differential(e) else quotient_by_square_root(e)


@rule("Hadamard product of vecs that cancel", "vec(A ./ B) .* vec(B) -> vec(A)", "vec(X ./ Y) .* vec(Y)",
      where="X, Y: matrix(m, n)", on=(Hadamard,))
def _hadamard_of_vecs(e: Hadamard) -> Expr | None:
    # vec(A) .* vec(B) = vec(A .* B), taken only where A .* B cancels: a shared vec(A) stays one named factor
    vecs = [f for f in e.factors if ir.is_call("vec")(f)]
    shapes = {f.arg.shape for f in vecs}
    if len(vecs) < 2 or len(shapes) != 1:
        return None
    cancelled = _cancelled_quotient(hadamard(*(f.arg for f in vecs)), whole=True)
    if cancelled is None:
        return None
    return hadamard(*[f for f in e.factors if f not in vecs], func("vec", cancelled))


@rule("Hadamard product of identities", "I .* I -> I", "(I .* I) A", where="A: matrix(n, n)", on=(Hadamard,))
def _hadamard_identities(e: Hadamard) -> Expr | None:
    identities = [f for f in e.factors if isinstance(f, Identity)]
    if len(identities) < 2:
        return None
    return hadamard(*[f for f in e.factors if not isinstance(f, Identity)], identities[0])


@rule("sum of a Hadamard product with the identity", "sum(I .* X) -> tr(X)", "sum(I .* X)", on=("sum",),
      guard=arg_is(Hadamard))
def _sum_hadamard_identity(e: Func) -> Expr | None:
    # sum(I .* X) adds the diagonal entries of X; with more factors, sum(I .* X .* Y) = tr(X .* Y)
    factors = list(e.arg.factors)
    for i, f in enumerate(factors):
        if isinstance(f, Identity):
            return func("tr", hadamard(*factors[:i], *factors[i + 1 :]))
    return None


def _is_exp_plus_one(denominator: Expr, u: Expr) -> bool:
    return isinstance(denominator, Add) and len(denominator.terms) == 2 and \
        func("exp", u) in denominator.terms and any(ir.is_ones(t) for t in denominator.terms)


@rule("logistic sigmoid", "exp(u) ./ (exp(u) + 1) -> sigmoid(u)", "exp(x) ./ (exp(x) + 1)", on=(ElemDiv, MatMul))
def _sigmoid(e: ElemDiv | MatMul) -> Expr | None:
    if isinstance(e, MatMul):  # the scalar form exp(u) (exp(u) + 1)^-1
        for index, f in enumerate(e.factors):
            if _is_exp(f):
                reciprocal = ir.reciprocal(add(f, ir.ONE))
                if reciprocal in e.factors:  # by position: equal factors may be one shared object
                    rest = [g for i, g in enumerate(e.factors) if i != index and g != reciprocal]
                    return mul(*rest, func("sigmoid", f.arg))
        return None
    if _is_exp(e.numerator) and _is_exp_plus_one(e.denominator, e.numerator.arg):
        return func("sigmoid", e.numerator.arg)
    return None


@rule("sum of a Hadamard product", "sum(a .* b) -> a^T b for vectors", "sum(x .* y)", on=("sum",),
      guard=arg_is(Hadamard))
def _sum_hadamard(e: Func) -> Expr | None:
    if not ir.is_column(e.arg.shape):
        return None
    first, *rest = e.arg.factors
    return mul(transpose(first), hadamard(*rest))


# ---------------------------------------------------------------- sums


@rule("like terms", "c1 T + c2 T -> (c1 + c2) T", "A x + 2 A x", on=(Add,))
def _like_terms(e: Add) -> Expr | None:
    parts = [_coefficient_and_body(term) for term in e.terms]
    keys = [commutative_key(body) for _, body in parts]
    if len(set(keys)) == len(keys):
        return None
    groups: dict[object, list] = {}
    for (coefficient, body), key in zip(parts, keys, strict=True):
        groups.setdefault(key, [Fraction(0), body])[0] += coefficient
    return add(*[mul(Num(c), body) for c, body in groups.values()])


@rule("like terms across a scaled sum", "A - B - (A - C) -> C - B;  2 (A + B) - 2 A -> 2 B", "a - p - (a - q)",
      on=(Add,))
def _like_terms_across_a_sum(e: Add) -> Expr | None:
    """A term c (B1 + B2 + ...), c a number, is opened into the sum only where one of its terms c Bi is a like term
    of another term of the sum, so that the like terms merge: never a product over a sum for its own sake (the
    rule then removes at least one term, so it terminates; after it, like terms)."""
    bodies = [commutative_key(_coefficient_and_body(t)[1]) for t in e.terms]
    for i, term in enumerate(e.terms):
        if not isinstance(term, MatMul):
            continue
        coefficient, scalars, chain = _split_product(term)
        inner = [*scalars, *chain]
        if len(inner) != 1 or not isinstance(inner[0], Add) or inner[0].is_scalar:
            # a number times a sum of vectors or matrices only: a product over a sum is not opened, nor a scalar
            # sum (in a long scalar expression it is often a shared, named part, which opening would print twice)
            continue
        opened = [mul(Num(coefficient), t) for t in inner[0].terms]
        others = set(bodies[:i] + bodies[i + 1 :])
        # a number alone is not worth opening a sum for (-1 - (1 - s)): the sum may be a shared, named part
        if any(t.constant is None and commutative_key(_coefficient_and_body(t)[1]) in others for t in opened):
            opened_sum = add(*e.terms[:i], *opened, *e.terms[i + 1 :])
            merged = _like_terms.build(opened_sum) if isinstance(opened_sum, Add) else None
            return _positive_first(merged) if merged is not None else None
    return None


def _positive_first(e: Expr) -> Expr:
    """A sum whose first term is negated leads with its first term that is not: -p + q -> q - p (one sign fewer)."""
    if not isinstance(e, Add) or not ir.has_minus_sign(e.terms[0]):
        return e
    for j, term in enumerate(e.terms):
        if not ir.has_minus_sign(term):
            return Add((term, *e.terms[:j], *e.terms[j + 1 :]))
    return e


def _factor_side(e: Add, side: int) -> Expr | None:
    """Factor the outermost chain factor (side -1: last, 0: first) shared by two or more terms.

    Every such group is factored in one pass, in the order of the terms, as rewriting one group at a
    time would: a sum of T terms with G groups then costs O(T), not G rewrites that each rescan the
    T terms (issue 7: the Hessian of nested softmaxes has sums of hundreds of terms). On the right, a
    group takes the whole run of last factors its terms share, as factoring one at a time would once
    the sum left in front is simplified in turn (A F G + B F G -> (A F + B F) G -> (A + B) F G), but in
    one rewrite: terms sharing runs of k factors (the Hessian of a k-layer network) cost O(k), not k
    rewrites of O(k) each. (On the left, the rest of a chain may start with a 1 x 1 block, which becomes
    a scalar and changes what the next step sees: one factor at a time.)
    """
    groups: dict[object, list[int]] = {}
    for index, term in enumerate(e.terms):
        chain = _product_parts(term)[2]
        if chain and (side == -1 or len(chain) > 1):
            groups.setdefault(commutative_key(chain[side]), []).append(index)
    terms: list[Expr | None] = list(e.terms)
    factored = False
    for shared in groups.values():
        if len(shared) < 2:
            continue
        chains = [_product_parts(e.terms[index])[2] for index in shared]
        common = _shared_run(chains) if side == -1 else 1
        remainders = []
        for index in shared:
            coefficient, scalars, chain = _split_product(e.terms[index])
            rest = chain[: len(chain) - common] if side == -1 else chain[1:]
            remainders.append((coefficient, scalars, rest))
        if all(not rest for _, _, rest in remainders):
            pieces = [mul(Num(c), *s) for c, s, _ in remainders]
        elif any(not rest for _, _, rest in remainders):
            break  # A x + x -> (A + I) x is no simpler; and, as before, the groups after it wait
        else:
            pieces = [mul(Num(c), *s, *rest) for c, s, rest in remainders]
        if side == -1:
            terms[shared[0]] = mul(add(*pieces), *chains[0][len(chains[0]) - common :])
        else:
            terms[shared[0]] = mul(chains[0][0], add(*pieces))
        for index in shared[1:]:
            terms[index] = None
        factored = True
    return add(*[t for t in terms if t is not None]) if factored else None


def _shared_run(chains: list[tuple[Expr, ...]]) -> int:
    """How many last factors chains that share their last one all share (by commutative key), as far as
    factoring them one at a time would take them: a step is taken where every rest in front still has two
    factors or more, so that the sum of the rests is a sum of those very products (a rest of one factor
    would be a sum flattened into it, a constant fill, ...)."""
    common = 1
    while min(len(chain) for chain in chains) - common >= 2:
        key = commutative_key(chains[0][-(common + 1)])
        if any(commutative_key(chain[-(common + 1)]) != key for chain in chains[1:]):
            break
        common += 1
    return common


@rule("common right factor", "A C + B C -> (A + B) C", "A x + B x", on=(Add,))
def _factor_right(e: Add) -> Expr | None:
    return _factor_side(e, -1)


@rule("common left factor", "A B + A C -> A (B + C)", "A x + A y", on=(Add,))
def _factor_left(e: Add) -> Expr | None:
    return _factor_side(e, 0)


@rule("common scalar factor", "c A - c B + D -> c (A - B) + D", "2 A x - 2 B y + z", on=(Add,))
def _common_scalar(e: Add) -> Expr | None:
    candidates = [_cached_on(t, "_common_candidates", _common_candidates) for t in e.terms]
    holders: dict[Expr, list[int]] = {}  # factor -> the terms holding it: one pass, not one per term
    for j, held in enumerate(candidates):
        for common in held:
            holders.setdefault(common, []).append(j)
    for index, held in enumerate(candidates):
        for common in held:
            group = holders[common]
            if len(group) < 2 or group[0] != index:
                continue
            rest = []
            for j in group:
                c, s, chain = _split_product(e.terms[j])
                if isinstance(common, Num):
                    rest.append(mul(Num(c / common.value), *s, *chain))
                else:
                    remaining = list(s)
                    remaining.remove(common)
                    rest.append(mul(Num(c), *remaining, *chain))
            if any(r == ir.ONE for r in rest) and len(group) == len(e.terms) and not isinstance(common, Num):
                continue  # s + s A -> s (1 + A) is no shorter
            factored = mul(common, add(*rest))
            return add(factored, *[t for j, t in enumerate(e.terms) if j not in group])
    return None


def _common_candidates(term: Expr) -> tuple[Expr, ...]:
    """The factors `common scalar factor` may take out of a term: |c| (unless 1), then its scalars."""
    coefficient, scalars, _ = _product_parts(term)
    return ((Num(abs(coefficient)),) if abs(coefficient) != 1 else ()) + tuple(dict.fromkeys(scalars))


# ---------------------------------------------------------------- Kronecker products (Magnus & Neudecker, ch. 2)


@rule("transpose of a Kronecker product", "(A ⊗ B)^T -> A^T ⊗ B^T", "(A ⊗ B)^T", where="A, B: matrix(m, n)",
      on=(Transpose,), guard=arg_is(Kron))
def _transpose_kron(e: Transpose) -> Expr:
    return ir.kron(*map(transpose, e.arg.factors))


@rule("inverse of a Kronecker product", "inv(A ⊗ B) -> inv(A) ⊗ inv(B)", "inv(X ⊗ Y)", where="X, Y: matrix(n, n)",
      on=("inv",), guard=arg_is(Kron))
def _inverse_kron(e: Func) -> Expr | None:
    if all(f.shape[0] == f.shape[1] for f in e.arg.factors):
        return ir.kron(*(func("inv", f) for f in e.arg.factors))
    return None


def _square(e: Expr) -> bool:
    return e.shape[0] == e.shape[1]


@rule("trace of a Kronecker product", "tr(A ⊗ B) -> tr(A) tr(B)", "tr(X ⊗ Y)", where="X: matrix(n, n); Y: matrix(m, m)",
      on=("tr",), guard=arg_is(Kron))
def _trace_kron(e: Func) -> Expr | None:
    if all(map(_square, e.arg.factors)):
        return mul(*(func("tr", f) for f in e.arg.factors))
    return None


@rule("scalars out of a Kronecker product", "(c A) ⊗ B -> c (A ⊗ B)", "(2 alpha A) ⊗ B", where="A, B: matrix(m, n)",
      on=(Kron,))
def _kron_scalars_out(e: Kron) -> Expr | None:
    if not any(isinstance(f, MatMul) and f.factors[0].is_scalar for f in e.factors):
        return None
    scalars: list[Expr] = []
    bare: list[Expr] = []
    for factor in e.factors:
        coefficient, factor_scalars, chain = _split_product(factor)
        scalars += [Num(coefficient), *factor_scalars]
        bare.append(mul(*chain))
    return mul(*scalars, ir.kron(*bare))


@rule("Kronecker product of identities", "I ⊗ I -> I", "A ⊗ I ⊗ I", where="A: matrix(n, n)", on=(Kron,))
def _kron_identities(e: Kron) -> Expr | None:
    factors = list(e.factors)
    for i in range(len(factors) - 1):
        if isinstance(factors[i], Identity) and isinstance(factors[i + 1], Identity):
            merged = ir.identity(ir.dim_product(factors[i].size, factors[i + 1].size))
            return ir.kron(*factors[:i], merged, *factors[i + 2 :])
    return None


def _mixed_product(left: Expr, right: Expr) -> list[Expr] | None:
    if not (isinstance(left, Kron) and isinstance(right, Kron) and len(left.factors) == len(right.factors)):
        return None
    pairs = list(zip(left.factors, right.factors, strict=True))
    if any(a.shape[1] != c.shape[0] for a, c in pairs):
        return None
    return [ir.kron(*(mul(a, c) for a, c in pairs))]


@rule("mixed product", "(A ⊗ B) (C ⊗ D) -> (A C) ⊗ (B D)", "(A ⊗ B) (C ⊗ D)", where="A, B, C, D: matrix(n, n)",
      on=(MatMul,))
def _kron_mixed_product(e: MatMul) -> Expr | None:
    if sum(isinstance(f, Kron) for f in e.factors) < 2:
        return None  # the usual product: no pair to look at
    return _chain_rewrite(e, _mixed_product)


def _factor_kron(e: Add, side: int) -> Expr | None:
    """Terms c_i (A_i ⊗ C) sharing the factor C on one side (side -1: last, 0: first) -> (sum c_i A_i) ⊗ C."""
    if sum(isinstance(t, Kron) or (isinstance(t, MatMul) and isinstance(t.factors[-1], Kron))
                                     for t in e.terms) < 2:
        return None  # the usual sum: fewer than two Kronecker terms
    groups: dict[int, list[int]] = {}
    for index, term in enumerate(e.terms):
        chain = _product_parts(term)[2]
        if len(chain) == 1 and isinstance(chain[0], Kron):
            groups.setdefault(commutative_key(chain[0].factors[side]), []).append(index)
    for shared in groups.values():
        if len(shared) < 2:
            continue
        rests = []
        for index in shared:
            coefficient, scalars, (kron_product,) = _split_product(e.terms[index])
            rest = kron_product.factors[:-1] if side == -1 else kron_product.factors[1:]
            rests.append(mul(Num(coefficient), *scalars, ir.kron(*rest)))
        if len({r.shape for r in rests}) != 1:
            continue
        common = _product_parts(e.terms[shared[0]])[2][0].factors[side]
        combined = ir.kron(add(*rests), common) if side == -1 else ir.kron(common, add(*rests))
        return add(combined, *[t for j, t in enumerate(e.terms) if j not in shared])
    return None


@rule("common right Kronecker factor", "A ⊗ C + B ⊗ C -> (A + B) ⊗ C", "A ⊗ X + B ⊗ X", where="A, B, X: matrix(n, n)",
      on=(Add,))
def _kron_factor_right(e: Add) -> Expr | None:
    return _factor_kron(e, -1)


@rule("common left Kronecker factor", "A ⊗ B + A ⊗ C -> A ⊗ (B + C)", "I ⊗ A + I ⊗ A^T", where="A: matrix(n, n)",
      on=(Add,))
def _kron_factor_left(e: Add) -> Expr | None:
    return _factor_kron(e, 0)


@rule("Kronecker product with a vector", "a^T ⊗ B -> B (a^T ⊗ I);  a ⊗ B -> (a ⊗ I) B",
      "x^T ⊗ (A + B)", where="A, B: matrix(n, n); x: vector(m)", on=(Kron,))
def _kron_vector_out(e: Kron) -> Expr | None:
    """The matrix factor moves out of a Kronecker product with a vector, so that the linear layer's Jacobian
    x^T ⊗ I stands alone (the chain rule's form: (diag(s) - s s^T) (x^T ⊗ I), not a sum of two Kronecker forms)."""
    if len(e.factors) != 2 or isinstance(e.factors[1], Identity):
        return None
    vector, matrix = e.factors
    if vector.shape[0] == 1 and vector.shape[1] != 1:
        return mul(matrix, ir.kron(vector, ir.identity(matrix.shape[1])))
    if ir.is_column(vector.shape):
        return mul(ir.kron(vector, ir.identity(matrix.shape[0])), matrix)
    return None


def _is_vec_of(e: Expr, kind: type) -> bool:
    return ir.is_call("vec")(e) and isinstance(e.arg, kind)


def _vec_of_product_identity(left: Expr, right: Expr) -> list[Expr] | None:
    if not (isinstance(left, Kron) and len(left.factors) == 3 and _is_vec_of(right, Identity)):
        return None
    a, k, b = left.factors
    if isinstance(a, Identity) and isinstance(k, ir.Commutation) and isinstance(b, Identity) \
            and (k.rows, k.cols) == (a.size, b.size) and right.arg.size == ir.dim_product(a.size, b.size):
        return [ir.kron(func("vec", a), func("vec", b))]
    return None


@rule("vec of an identity of a product size", "(I ⊗ K(n, m) ⊗ I) vec(identity(m n)) -> vec(I) ⊗ vec(I)",
      "(identity(n) ⊗ commutation(n, m) ⊗ identity(m)) vec(identity(m n))", on=(MatMul,))
def _vec_identity_product(e: MatMul) -> Expr | None:
    # vec(I_n ⊗ I_m) = (I ⊗ K(m, n) ⊗ I) (vec(I_n) ⊗ vec(I_m)), and K(m, n)^T = K(n, m): the vec reader's own identity
    # read backwards, where it removes the permutation
    if not any(isinstance(f, ir.Commutation) for g in e.factors if isinstance(g, Kron) for f in g.factors):
        return None
    return _chain_rewrite(e, _vec_of_product_identity)


@rule("inner product of vecs", "vec(A)^T vec(B) -> tr(A^T B)", "vec(X)^T vec(Y)", where="X, Y: matrix(m, n)",
      on=(MatMul,))
def _vec_inner_product(e: MatMul) -> Expr | None:
    def pair(left: Expr, right: Expr) -> list[Expr] | None:
        if isinstance(left, Transpose) and ir.is_call("vec")(left.arg) and ir.is_call("vec")(right) \
                and left.arg.arg.shape == right.arg.shape:
            return [func("tr", mul(transpose(left.arg.arg), right.arg))]
        return None

    return _chain_rewrite(e, pair)


def _unvec_of_vec(left: Expr, right: Expr) -> list[Expr] | None:
    if not (isinstance(left, Kron) and isinstance(right, Kron) and len(left.factors) == 2 == len(right.factors)):
        return None
    (row, eye), (eye_k, column) = left.factors, right.factors
    if not (isinstance(row, Transpose) and _is_vec_of(row.arg, Identity) and isinstance(eye, Identity)
            and isinstance(eye_k, Identity) and ir.is_call("vec")(column)):
        return None
    b = column.arg
    if row.arg.arg.size == eye_k.size and b.shape == (eye.size, eye_k.size):
        return [b]
    return None


@rule("unvec of a vec", "(vec(I)^T ⊗ I) (I ⊗ vec(B)) -> B", "(vec(identity(k))^T ⊗ identity(n)) (identity(k) ⊗ vec(B))",
      where="B: matrix(n, k)", on=(MatMul,))
def _unvec_vec(e: MatMul) -> Expr | None:
    # (vec(I)^T ⊗ I) (I ⊗ s) is the matrix whose vec is s (the adjoint of vec reads its seed back this way)
    if sum(isinstance(f, Kron) for f in e.factors) < 2:
        return None
    return _chain_rewrite(e, _unvec_of_vec)


@rule("trace of a transpose", "tr(A^T) -> tr(A)", "tr(X^T)", on=("tr",), guard=arg_is(Transpose))
def _trace_transpose(e: Func) -> Expr:
    return func("tr", e.arg.arg)


@rule("vec of an outer product", "vec(a b^T) -> b ⊗ a", "vec(x y^T)", on=("vec",), guard=arg_is(MatMul))
def _vec_outer(e: Func) -> Expr | None:
    coefficient, scalars, chain = _split_product(e.arg)
    if len(chain) == 2 and ir.is_column(chain[0].shape) and chain[1].shape[0] == 1:
        return mul(Num(coefficient), *scalars, ir.kron(transpose(chain[1]), chain[0]))
    return None


def simplify(e: Expr, trace: list[str] | None = None) -> Expr:
    """The cookbook form of e. `trace` collects the names of the rules applied, in order."""
    return normalize(e, SIMPLIFY_RULES, trace)
