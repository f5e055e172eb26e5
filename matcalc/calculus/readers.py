"""Readers: the derivative taken off a differential df (Magnus & Neudecker's identification).

- scalar f:  df = <G, dX> = sum(G .* dX)  -> the gradient G, by reverse accumulation (ADJOINT_RULES);
- vector f, vector x:  df = J dx  -> the Jacobian J, by the reading rules of jacobian.py;
- more axes:  vec(df) = J vec(dX)  -> J, by the vec identities (VEC_RULES);
- scalar variable:  df = F dα  -> F, by setting dα = 1.
"""

from __future__ import annotations

from collections.abc import Callable

from ..core import ir
from ..core.errors import UnsupportedError
from ..core.ir import (
    Add,
    Differential,
    ElemDiv,
    Expr,
    Func,
    Hadamard,
    MatMul,
    Transpose,
    Var,
    add,
    elem_div,
    func,
    hadamard,
    mul,
    ones,
    transpose,
)
from ..rules.rule import Rule, RuleSet

# ---------------------------------------------------------------- identification


class _NotLinear(AssertionError):
    """A differential that is not linear in dX: a bug in a differential rule."""


def _split_linear_product(e: MatMul) -> tuple[int, Expr]:
    positions = [i for i, f in enumerate(e.factors) if ir.contains_differential(f)]
    if len(positions) != 1:
        raise _NotLinear(f"product with {len(positions)} factors holding the differential: {e}")
    return positions[0], e.factors[positions[0]]




# An adjoint rule's builder: (t, S) -> [(t_i, S_i)], the seeds with <S, t> = sum_i <S_i, t_i> for a node t linear
# in its children t_i that hold dX. Its example: (function, variable), whose differential's root it applies to.
Seeded = list[tuple[Expr, Expr]]


def _product_seeds(t: MatMul, seed: Expr) -> Seeded:
    position, inner = _split_linear_product(t)
    others = t.factors[:position] + t.factors[position + 1 :]
    if inner.is_scalar:  # <S, f M> = f <S, M>
        return [(inner, ir.inner(seed, mul(*others)))]
    chain = [f for f in t.factors if not f.is_scalar]  # <S, c L F R> = <c L^T S R^T, F>
    k = next(i for i, f in enumerate(chain) if f is inner)
    scalars = [f for f in t.factors if f.is_scalar]
    left = [transpose(f) for f in reversed(chain[:k])]
    right = [transpose(f) for f in reversed(chain[k + 1 :])]
    return [(inner, mul(*scalars, *left, seed, *right))]


def _hadamard_seeds(t: Hadamard, seed: Expr) -> Seeded:
    position = next(i for i, f in enumerate(t.factors) if ir.contains_differential(f))
    others = t.factors[:position] + t.factors[position + 1 :]
    return [(t.factors[position], hadamard(seed, *others))]


def _quotient_seeds(t: ElemDiv, seed: Expr) -> Seeded:
    if ir.contains_differential(t.denominator):
        raise _NotLinear(f"differential in a denominator: {t}")
    return [(t.numerator, elem_div(seed, t.denominator))]


def _diag_seeds(t: Func, seed: Expr) -> Seeded:
    arg_shape = t.arg.shape
    if arg_shape == ir.SCALAR:
        return [(t.arg, seed)]
    if arg_shape[0] == 1 and arg_shape[1] != 1:  # a row vector's diag
        return [(t.arg, transpose(func("diag", seed)))]
    return [(t.arg, func("diag", seed))]


def unvec(v: Expr, rows: ir.Dim, cols: ir.Dim) -> Expr:
    """The rows x cols matrix A with vec(A) = v: (vec(I_cols)^T ⊗ I_rows) (I_cols ⊗ v) (Magnus & Neudecker)."""
    if cols == 1:
        return v
    if rows == 1:
        return transpose(v)
    return mul(ir.kron(transpose(ir.vec(ir.identity(cols))), ir.identity(rows)), ir.kron(ir.identity(cols), v))


def kron_vec_permutation(a: ir.Shape, b: ir.Shape) -> Expr:
    """P with vec(A ⊗ B) = P (vec(A) ⊗ vec(B)) for A m x n, B p x q: P = I_n ⊗ K(q, m) ⊗ I_p."""
    (m, n), (p, q) = a, b
    return ir.kron(ir.identity(n), ir.commutation(q, m), ir.identity(p))


def _kron_seeds(t: ir.Kron, seed: Expr) -> Seeded:
    """<S, A ⊗ F ⊗ B> through vec: vec(A ⊗ F ⊗ B) = J vec(F) with J from vec_jacobian's rule, so the seed of F
    is unvec(J^T vec(S))."""
    position = next(i for i, f in enumerate(t.factors) if ir.contains_differential(f))
    inner = t.factors[position]
    jacobian = _kron_jacobian(t, position, ir.identity(ir.dim_product(*inner.shape)))
    return [(inner, unvec(mul(transpose(jacobian), ir.vec(seed)), *inner.shape))]


ADJOINT_RULES = RuleSet("adjoint identities", [
    Rule("sum", "<S, A + B> -> <S, A> + <S, B>", (Add,),
         lambda t, seed: [(term, seed) for term in t.children],
         ("A X + X B", "X"), "A, B, X: matrix(n, n)"),
    Rule("transpose", "<S, A^T> -> <S^T, A>", (Transpose,),
         lambda t, seed: [(t.children[0], transpose(seed))],
         ("X^T", "X"), "X: matrix(m, n)"),
    Rule("product", "<S, c L F R> -> <c L^T S R^T, F>;  <S, f M> -> <<S, M>, f> (f scalar)", (MatMul,),
         _product_seeds,
         ("A X B", "X"), "A: matrix(p, m); X: matrix(m, n); B: matrix(n, q)"),
    Rule("hadamard", "<S, A .* F> -> <S .* A, F>", (Hadamard,),
         _hadamard_seeds,
         ("A .* X", "X"), "A, X: matrix(m, n)"),
    Rule("quotient", "<S, F ./ B> -> <S ./ B, F>", (ElemDiv,),
         _quotient_seeds,
         ("X ./ B", "X"), "B, X: matrix(m, n)"),
    Rule("trace", "<s, tr(F)> -> <s I, F>", ("tr",),
         lambda t, seed: [(t.children[0], mul(seed, ir.identity(t.children[0].shape[0])))],
         ("tr(A X)", "X"), "A, X: matrix(n, n)"),
    Rule("sum of entries", "<s, sum(F)> -> <s 1, F>", ("sum",),
         lambda t, seed: [(t.children[0], mul(seed, ones(t.children[0].shape)))],
         ("sum(A .* X)", "X"), "A, X: matrix(m, n)"),
    Rule("diag", "<S, diag(f)> -> <diag(S), f>;  <s, diag(F)> -> <diag(s), F>", ("diag",),
         _diag_seeds,
         ("diag(A x)", "x"), "A: matrix(n, n); x: vector(n)"),
    Rule("vec", "<s, vec(F)> -> <unvec(s), F>,  unvec(s) = (vec(I)^T ⊗ I) (I ⊗ s)", ("vec",),
         lambda t, seed: [(t.children[0], unvec(seed, *t.children[0].shape))],
         ("vec(A .* X)", "X"), "A, X: matrix(m, n)"),
    Rule("Kronecker product", "<S, A ⊗ F ⊗ B> -> <unvec(J^T vec(S)), F>,  J vec(F) = vec(A ⊗ F ⊗ B)", (ir.Kron,),
         _kron_seeds,
         ("kron(A, X, B)", "X"), "A: matrix(m, n); X: matrix(p, q); B: matrix(n, m)"),
])


def _parents_first(t: Expr) -> list[Expr]:
    """The distinct nodes of t that hold dX, each before all of its children (a reverse topological order).

    The post-order walks the children last to first, so that on a tree its reverse is the preorder, children
    left to right: the readers see terms in the order written.
    """
    order = ir.postorder(t, lambda node: [child for child in reversed(node.children)
                                          if ir.contains_differential(child)])
    order.reverse()
    return order


def adjoints_of_linear(t: Expr, seed: Expr) -> dict[str, list[Expr]]:
    """For t linear in the differentials dX_j: the G_j with sum_j <G_j, dX_j> = <seed, t>, as the list of
    contributions to each G_j (by the variable's name), in the order the terms are written.

    Reverse accumulation: the seeds flow from t down the DAG in reverse topological order, and a node
    shared by several parents sums its seeds before passing them on (micrograd's backward), so the
    work is linear in the number of distinct nodes, not in the number of paths.
    """
    if not ir.contains_differential(t):
        return {}
    pending: dict[int, list[Expr]] = {id(t): [seed]}
    out: dict[str, list[Expr]] = {}
    for node in _parents_first(t):
        seeds = pending.pop(id(node), None)
        if seeds is None:
            continue
        if isinstance(node, Differential):
            out.setdefault(node.var.name, []).extend(seeds)
            continue
        total = seeds[0] if len(seeds) == 1 else add(*seeds)
        rule = ADJOINT_RULES.first(node)
        if rule is None:
            raise _NotLinear(f"no linear rule for {type(node).__name__} {node}")
        for child, child_seed in rule.build(node, total):
            if ir.contains_differential(child):
                pending.setdefault(id(child), []).append(child_seed)
    return out


def gradient_from_differential(df: Expr, variable_shape: ir.Shape) -> Expr:
    """G with df = <G, dX>, for a scalar df."""
    parts = [g for contributions in adjoints_of_linear(df, ir.ONE).values() for g in contributions]
    return add(*parts) if parts else ir.zeros(variable_shape)


# ---------------------------------------------------------------- the vec (Kronecker) reader, any order


# A vec rule's builder: (t, J of a child) -> J_t, with vec(t) = J_t vec(dX) for a node t linear in dX, from the
# J of its child that holds dX (Magnus & Neudecker). Its example: (function, variable), as the adjoint rules'.


def _vec_product(t: MatMul, jacobian_of: Callable[[Expr], Expr]) -> Expr:
    position, inner = _split_linear_product(t)
    others = t.factors[:position] + t.factors[position + 1 :]
    if inner.is_scalar:  # vec(s C) = vec(C) s
        return mul(ir.vec(mul(*others)), jacobian_of(inner))
    scalars = [f for f in t.factors if f.is_scalar]
    chain = [f for f in t.factors if not f.is_scalar]
    k = next(i for i, f in enumerate(chain) if f is inner)
    left = mul(*chain[:k]) if k else ir.identity(inner.shape[0])
    right = transpose(mul(*chain[k + 1 :])) if k + 1 < len(chain) else ir.identity(inner.shape[1])
    return mul(*scalars, ir.kron(right, left), jacobian_of(inner))


def _vec_hadamard(t: Hadamard, jacobian_of: Callable[[Expr], Expr]) -> Expr:
    position = next(i for i, f in enumerate(t.factors) if ir.contains_differential(f))
    others = hadamard(*t.factors[:position], *t.factors[position + 1 :])
    return mul(func("diag", ir.vec(others)), jacobian_of(t.factors[position]))


def _vec_quotient(t: ElemDiv, jacobian_of: Callable[[Expr], Expr]) -> Expr:
    if ir.contains_differential(t.denominator):
        raise _NotLinear(f"differential in a denominator: {t}")
    return mul(func("diag", ir.vec(elem_div(ones(t.shape), t.denominator))), jacobian_of(t.numerator))


def _vec_diag(t: Func, jacobian_of: Callable[[Expr], Expr]) -> Expr:
    arg = t.arg
    if arg.is_scalar:
        return jacobian_of(arg)
    if ir.is_vector_shape(arg.shape):  # vec(diag(v)) = diag(vec(I)) (1 ⊗ I) v
        n = t.shape[0]
        spread = ir.kron(ones((n, 1)), ir.identity(n))
        return mul(func("diag", ir.vec(ir.identity(n))), spread, jacobian_of(arg))
    n = arg.shape[0]  # vec(diag(M)) = (1^T ⊗ I) diag(vec(I)) vec(M)
    gather = ir.kron(ones((1, n)), ir.identity(n))
    return mul(gather, func("diag", ir.vec(ir.identity(n))), jacobian_of(arg))


def _kron_jacobian(t: ir.Kron, position: int, inner_jacobian: Expr) -> Expr:
    """J with vec(A ⊗ F ⊗ B) = J vec(F), F the factor at `position`, from F's J: two steps of
    vec(A ⊗ B) = P (vec(A) ⊗ vec(B)) (kron_vec_permutation), A and B free of dX."""
    factors = t.factors
    inner = factors[position]
    jacobian = inner_jacobian
    current = inner
    if position:  # vec(A ⊗ F) = P (vec(A) ⊗ I) vec(F)
        before = ir.kron(*factors[:position])
        jacobian = mul(kron_vec_permutation(before.shape, current.shape),
                       ir.kron(ir.vec(before), ir.identity(ir.dim_product(*current.shape))), jacobian)
        current = ir.kron(before, current)
    if position + 1 < len(factors):  # vec(G ⊗ B) = P (I ⊗ vec(B)) vec(G)
        after = ir.kron(*factors[position + 1 :])
        jacobian = mul(kron_vec_permutation(current.shape, after.shape),
                       ir.kron(ir.identity(ir.dim_product(*current.shape)), ir.vec(after)), jacobian)
    return jacobian


def _vec_kron(t: ir.Kron, jacobian_of: Callable[[Expr], Expr]) -> Expr:
    position = next(i for i, f in enumerate(t.factors) if ir.contains_differential(f))
    return _kron_jacobian(t, position, jacobian_of(t.factors[position]))


def _vec_sum(t: Expr, jacobian_of: Callable[[Expr], Expr]) -> Expr:
    return add(*(jacobian_of(term) for term in t.children if ir.contains_differential(term)))


VEC_RULES = RuleSet("vec identities", [
    Rule("vec of the differential", "vec(dX) -> I vec(dX)", (Differential,),
         lambda t, jacobian_of: ir.identity(ir.dim_product(*t.shape)),
         ("X", "X"), "X: matrix(m, n)"),
    Rule("vec of a sum", "vec(A + B) -> vec(A) + vec(B)", (Add,),
         _vec_sum,
         ("A X + X B", "X"), "A: matrix(m, m); X: matrix(m, n); B: matrix(n, n)"),
    Rule("vec of a product", "vec(c L F R) -> c (R^T ⊗ L) vec(F);  vec(f C) -> vec(C) f (f scalar)", (MatMul,),
         _vec_product,
         ("alpha A X B", "X"), "A: matrix(p, m); X: matrix(m, n); B: matrix(n, q)"),
    Rule("vec of a transpose", "vec(F^T) -> K(m, n) vec(F)  (F m x n)", (Transpose,),
         lambda t, jacobian_of: mul(ir.commutation(*t.children[0].shape), jacobian_of(t.children[0])),
         ("X^T", "X"), "X: matrix(m, n)"),
    Rule("vec of a Hadamard product", "vec(A .* F) -> diag(vec(A)) vec(F)", (Hadamard,),
         _vec_hadamard,
         ("A .* X", "X"), "A, X: matrix(m, n)"),
    Rule("vec of a quotient", "vec(F ./ B) -> diag(vec(1 ./ B)) vec(F)", (ElemDiv,),
         _vec_quotient,
         ("X ./ B", "X"), "B, X: matrix(m, n)"),
    Rule("vec of a trace", "vec(tr(F)) -> vec(I)^T vec(F)", ("tr",),
         lambda t, jacobian_of: mul(transpose(ir.vec(ir.identity(t.arg.shape[0]))), jacobian_of(t.arg)),
         ("tr(A X)", "X"), "A: matrix(n, m); X: matrix(m, n)"),
    Rule("vec of a sum of entries", "vec(sum(F)) -> vector(1)^T vec(F)", ("sum",),
         lambda t, jacobian_of: mul(ones((1, ir.dim_product(*t.arg.shape))), jacobian_of(t.arg)),
         ("sum(A .* X)", "X"), "A, X: matrix(m, n)"),
    Rule("vec of diag", "vec(diag(f)) -> diag(vec(I)) (vector(1) ⊗ I) f;  "
            "vec(diag(F)) -> (vector(1)^T ⊗ I) diag(vec(I)) vec(F)", ("diag",),
         _vec_diag,
         ("diag(diag(X))", "X"), "X: matrix(n, n)"),
    Rule("vec of vec", "vec(vec(F)) -> vec(F)", ("vec",),
         lambda t, jacobian_of: jacobian_of(t.arg),
         ("vec(A X)", "X"), "A: matrix(p, m); X: matrix(m, n)"),
    Rule("vec of a Kronecker product", "vec(A ⊗ F) -> (I ⊗ K(q, m) ⊗ I) (vec(A) ⊗ I) vec(F);  "
            "vec(F ⊗ B) -> (I ⊗ K(q, m) ⊗ I) (I ⊗ vec(B)) vec(F)", (ir.Kron,),
         _vec_kron,
         ("kron(A, X, B)", "X"), "A: matrix(m, n); X: matrix(p, q); B: matrix(n, m)"),
])


def vec_jacobian(t: Expr, variable: Var, used: list[str] | None = None) -> Expr:
    """J with vec(t) = J vec(dX), for t linear in dX = Differential(variable): the Jacobian of the vecs,
    d vec(F) / d vec(X)^T (numerator layout, column-major vec), whatever the shapes of F and X.

    Forward accumulation over the distinct nodes holding dX, children first: each node's J from its child's by
    the table VEC_RULES (one level each, no recursion). `used` collects the names of the rules applied.
    """
    columns = ir.dim_product(*variable.shape)
    if not ir.contains_differential(t):
        return ir.zeros((ir.dim_product(*t.shape), columns))
    memo: dict[int, Expr] = {}

    def jacobian_of(child: Expr) -> Expr:
        return memo[id(child)]

    for node in ir.postorder(t, lambda n: [c for c in n.children if ir.contains_differential(c)]):
        rule = VEC_RULES.first(node)
        if rule is None:
            raise UnsupportedError(f"cannot write the derivative of the term {node} in Kronecker form yet")
        if used is not None and rule.name not in used:
            used.append(rule.name)
        memo[id(node)] = rule.build(node, jacobian_of)
    return memo[id(t)]
