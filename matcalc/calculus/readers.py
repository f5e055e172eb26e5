"""Readers: the derivative taken off a differential df (Magnus & Neudecker's identification).

- scalar f:  df = <G, dX> = sum(G .* dX)  -> the gradient G, by reverse accumulation (ADJOINT_RULES);
- vector f, vector x:  df = J dx  -> the Jacobian J, by forward accumulation;
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
    Num,
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


def _product_seeds(t: Expr, seed: Expr) -> Seeded:
    assert isinstance(t, MatMul)
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


def _hadamard_seeds(t: Expr, seed: Expr) -> Seeded:
    assert isinstance(t, Hadamard)
    position = next(i for i, f in enumerate(t.factors) if ir.contains_differential(f))
    others = t.factors[:position] + t.factors[position + 1 :]
    return [(t.factors[position], hadamard(seed, *others))]


def _quotient_seeds(t: Expr, seed: Expr) -> Seeded:
    assert isinstance(t, ElemDiv)
    if ir.contains_differential(t.denominator):
        raise _NotLinear(f"differential in a denominator: {t}")
    return [(t.numerator, elem_div(seed, t.denominator))]


def _diag_seeds(t: Expr, seed: Expr) -> Seeded:
    assert isinstance(t, Func)
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


def _kron_seeds(t: Expr, seed: Expr) -> Seeded:
    """<S, A ⊗ F ⊗ B> through vec: vec(A ⊗ F ⊗ B) = J vec(F) with J from vec_jacobian's rule, so the seed of F
    is unvec(J^T vec(S))."""
    assert isinstance(t, ir.Kron)
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


def _row_gradient(t: Expr, n: ir.Dim) -> Expr:
    """g^T with t = g^T dx, for a scalar t linear in the column vector dx (n x 1)."""
    return transpose(gradient_from_differential(t, (n, 1)))


def jacobian_from_differential(t: Expr, n: ir.Dim) -> Expr:
    """J with t = J dx, for a column vector t linear in the column vector dx (forward accumulation).

    t is read from the root down the path to dx (`_read`). A sum on that path is read term by term:
    J = L (J(t_1) + J(t_2) + ...). The terms wait on an explicit stack, not in a recursion, and the
    Jacobian of each term read is kept, so that a term shared by several sums (a DAG) is read once.
    """
    done: dict[Expr, Expr] = {}
    waiting: dict[Expr, tuple[list[Expr], list[Expr]]] = {}  # a sum's term -> (left, its own terms)
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
        left, read, terms = _read(term, n)
        if read is not None:
            done[term] = read
            continue
        waiting[term] = (left, terms)
        stack.append((term, True))
        stack.extend((u, False) for u in reversed(terms))
    return done[t]


def _read(t: Expr, n: ir.Dim) -> tuple[list[Expr], Expr | None, list[Expr]]:
    """(left, J, []) with J the Jacobian of t; or, where the path from t to dx meets a sum, (left, None,
    its terms that hold dx), with the Jacobian of t = mul(*left, J(t_1) + J(t_2) + ...).

    A scalar s on the path gives t = s r with r free of dx (`_scalar_on_path`), so J = r (ds/dx)^T from
    the gradient reader. Otherwise each step either reads one level (a .* f -> diag(a) J(f), L f -> L J(f)),
    whose left factor is kept in `left`, or rewrites t into an equal form closer to a readable one (a
    transpose pushed down, a product distributed over a sum, diag(M) as a vector). A loop, no recursion.
    """
    left: list[Expr] = []  # the Jacobian is mul(*left, J(t))
    while True:
        if not ir.contains_differential(t):
            return left, mul(*left, ir.zeros((t.shape[0], n))), []
        if isinstance(t, Differential):
            return left, mul(*left, ir.identity(n)), []
        if t.is_scalar:
            return left, mul(*left, _row_gradient(t, n)), []
        if isinstance(t, Add):
            return left, None, [term for term in t.terms if ir.contains_differential(term)]
        split = _scalar_on_path(t)
        if split is not None:  # t = s r -> r (ds/dx)^T
            s, r = split
            return left, mul(*left, r, _row_gradient(s, n)), []
        if isinstance(t, Hadamard):  # a .* f -> diag(a) J(f)
            position = next(i for i, f in enumerate(t.factors) if ir.contains_differential(f))
            left.append(func("diag", hadamard(*t.factors[:position], *t.factors[position + 1 :])))
            t = t.factors[position]
        elif isinstance(t, ElemDiv) and not ir.contains_differential(t.denominator):  # f ./ b -> diag(1 ./ b) J(f)
            left.append(func("diag", elem_div(ones(t.shape), t.denominator)))
            t = t.numerator
        elif isinstance(t, MatMul):
            t = _product_step(t, left)
        elif isinstance(t, Transpose):
            t = _push_transpose(t)
        elif isinstance(t, Func) and t.name == "diag" and not ir.is_vector_shape(t.arg.shape) \
                and (as_vector := _diagonal_as_vector(t.arg)) is not None:
            t = as_vector
        else:
            raise _cannot_write(t)


def _cannot_write(t: Expr) -> UnsupportedError:
    return UnsupportedError(
        f"cannot write the Jacobian of this expression in matrix form yet (its differential has the term {t}); "
        f"a later version covers it")


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
                rest = _with_child(parent, index, rest)
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


def _product_step(t: MatMul, left: list[Expr]) -> Expr:
    """One step of the Jacobian reader on a column product c L F R with F holding dx (no scalar holds dx).

    c L F -> c L J(F), and c L diag(u) r = c L diag(r) u, both recorded in `left`. A sum F is distributed,
    any other F is rewritten into an equal form (`_rewrite_factor`), and an element-wise product F = B .* G
    otherwise leaves the chain as a diagonal: (B .* G) r = diag(G diag(r) B^T). Returns the next term to read.
    """
    scalars = [f for f in t.factors if f.is_scalar]
    chain = [f for f in t.factors if not f.is_scalar]
    k = next(i for i, f in enumerate(chain) if ir.contains_differential(f))
    inner, right = chain[k], chain[k + 1 :]
    if not right:  # c L F -> c L J(F)
        left.extend([*scalars, *chain[:k]])
        return inner
    if ir.is_column(inner.shape):  # c L f (R), with R 1 x 1 blocks free of dx: a scalar coefficient
        left.extend([*scalars, mul(*right), *chain[:k]])
        return inner
    if isinstance(inner, Func) and inner.name == "diag" and ir.is_column(inner.arg.shape):  # L diag(u) r = L diag(r) u
        left.extend([*scalars, *chain[:k], func("diag", mul(*right))])
        return inner.arg
    if isinstance(inner, Add):  # L (F1 + F2) R -> L F1 R + L F2 R
        return add(*[mul(*scalars, *chain[:k], term, *right) for term in inner.terms])
    rewritten = _rewrite_factor(inner)
    if rewritten is not None:
        return mul(*scalars, *chain[:k], rewritten, *right)
    if isinstance(inner, Hadamard | ElemDiv) and (split := _elementwise_split(inner)) is not None:
        _, g, b = split  # (B .* G) r = diag(G diag(r) B^T), G the factor holding dx
        return mul(*scalars, *chain[:k], func("diag", mul(g, func("diag", mul(*right)), transpose(b))))
    raise _cannot_write(t)


def _rewrite_factor(f: Expr) -> Expr | None:
    """An equal form of a matrix f holding dx, one step closer to diag(u) or to a product, or None.

    (L F R)^T = R^T F^T L^T (one level);  diag(u^T) = diag(u);  B .* diag(u) = diag(diag(B) .* u);
    M .* (A + B) = M .* A + M .* B;  M .* (a b^T) = diag(a) M diag(b);  B .* F^T with the transpose pushed;
    a diagonal matrix at either end of a product leaves an element-wise product (as it scales rows or
    columns): B .* (diag(u) R) = diag(u) (B .* R),  B .* (R diag(u)) = (B .* R) diag(u).
    """
    if isinstance(f, Transpose):
        return _push_transpose(f)
    if isinstance(f, Func) and f.name == "diag" and ir.is_vector_shape(f.arg.shape):  # a row vector's diag
        return func("diag", transpose(f.arg))
    if not isinstance(f, Hadamard | ElemDiv) or (split := _elementwise_split(f)) is None:
        return None
    u = _diagonal_factor(f)
    if u is not None:
        return func("diag", u)
    expanded = _distribute_over_sum(f)
    if expanded is not None:
        return expanded
    outer = _outer_product_in(f)
    if outer is not None:
        m, a, b = outer
        return mul(func("diag", a), m, func("diag", b))
    index, g, _ = split
    if isinstance(g, Transpose):
        return _with_child(f, index, _push_transpose(g))
    if isinstance(g, MatMul):
        coefficient, scalars, chain = ir.split_product(g)
        scale = [Num(coefficient), *scalars]
        if len(chain) > 1 and (u := _diagonal_factor(chain[0])) is not None:
            return mul(func("diag", u), _with_child(f, index, mul(*scale, *chain[1:])))
        if len(chain) > 1 and (u := _diagonal_factor(chain[-1])) is not None:
            return mul(_with_child(f, index, mul(*scale, *chain[:-1])), func("diag", u))
    return None


def _elementwise_split(f: Hadamard | ElemDiv) -> tuple[int, Expr, Expr] | None:
    """(index, G, B) with f = B .* G and G = f.children[index] the child holding dx; for G ./ D, B = 1 ./ D."""
    if isinstance(f, ElemDiv):
        if ir.contains_differential(f.denominator):
            return None
        return 0, f.numerator, elem_div(ones(f.shape), f.denominator)
    index = next(i for i, g in enumerate(f.factors) if ir.contains_differential(g))
    return index, f.factors[index], hadamard(*f.factors[:index], *f.factors[index + 1 :])


def _with_child(e: Expr, index: int, child: Expr) -> Expr:
    """e with its child at `index` replaced, rebuilt through the smart constructors."""
    return e.rebuild((*e.children[:index], child, *e.children[index + 1 :]))


def _diagonal_as_vector(m: Expr) -> Expr | None:
    """diag(M) of a square M holding dx, rewritten one level down as a vector expression, or None.

    diag(A + B) = diag(A) + diag(B);  diag(diag(u)) = u;  diag(M^T) = diag(M);
    diag(A .* B) = diag(A) .* diag(B);  diag(A ./ B) = diag(A) ./ diag(B);  diag(c F) = c diag(F);
    diag(P u v^T Q) = (P u) .* (Q^T v);  diag(P diag(u) Q) = (P .* Q^T) u;  for any other factor F
    holding dx, diag(P F Q) is distributed over a sum F or reads F in an equal form (`_rewrite_factor`),
    and an element-wise product at an end leaves: diag(P (B .* G)) = diag((P .* B^T) G), and likewise.
    A factor free of dx stays as diag(B). A scalar holding dx is taken by the Jacobian reader first.
    """
    if isinstance(m, Add):
        return add(*[func("diag", term) for term in m.terms])
    if isinstance(m, Func) and m.name == "diag" and ir.is_vector_shape(m.arg.shape):
        return m.arg if ir.is_column(m.arg.shape) else transpose(m.arg)
    if isinstance(m, Transpose):
        return func("diag", m.arg)
    if isinstance(m, Hadamard):
        return hadamard(*[func("diag", f) for f in m.factors])
    if isinstance(m, ElemDiv) and not ir.contains_differential(m.denominator):
        return elem_div(func("diag", m.numerator), func("diag", m.denominator))
    if not isinstance(m, MatMul):
        return None
    outer = _is_outer(m)  # an outer product: P u v^T Q = a b^T, whose diagonal is a .* b
    if outer is not None:
        return hadamard(*outer)
    coefficient, scalars, chain = ir.split_product(m)
    scale = [Num(coefficient), *scalars]
    k = next((i for i, f in enumerate(chain) if ir.contains_differential(f)), None)
    if k is None or any(ir.contains_differential(s) for s in scalars):
        return None
    p, inner, q = chain[:k], chain[k], chain[k + 1 :]
    if not p and not q:
        return mul(*scale, func("diag", inner))
    if isinstance(inner, Add):
        return add(*[func("diag", mul(*scale, *p, term, *q)) for term in inner.terms])
    u = inner.arg if isinstance(inner, Func) and inner.name == "diag" and ir.is_column(inner.arg.shape) else None
    if u is None:
        rewritten = _rewrite_factor(inner)
        if rewritten is not None:
            return func("diag", mul(*scale, *p, rewritten, *q))
        if isinstance(inner, Hadamard | ElemDiv) and (split := _elementwise_split(inner)) is not None \
                and not (p and q):  # diag(P (B .* G)) = diag((P .* B^T) G),  diag((B .* G) Q) = diag(G (Q .* B^T))
            _, g, b = split
            if q:
                return func("diag", mul(*scale, g, hadamard(mul(*q), transpose(b))))
            return func("diag", mul(*scale, hadamard(mul(*p), transpose(b)), g))
        return None
    if not p or not q:  # diag(diag(u) Q) = diag(Q) .* u
        return hadamard(mul(*scale, func("diag", mul(*(p or q)))), u)
    return mul(*scale, hadamard(mul(*p), transpose(mul(*q))), u)


def _distribute_over_sum(e: Hadamard | ElemDiv) -> Expr | None:
    """M .* (A + B) -> M .* A + M .* B, and (A + B) ./ D -> A ./ D + B ./ D, for the sum holding dx."""
    if isinstance(e, ElemDiv):
        if isinstance(e.numerator, Add) and not ir.contains_differential(e.denominator):
            return add(*[elem_div(term, e.denominator) for term in e.numerator.terms])
        return None
    for index, factor in enumerate(e.factors):
        if isinstance(factor, Add) and ir.contains_differential(factor):
            others = [g for i, g in enumerate(e.factors) if i != index]
            return add(*[hadamard(*others, term) for term in factor.terms])
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
        split = _is_outer(e.numerator)
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
        split = _is_outer(factor)
        if split is not None:
            others = [g for i, g in enumerate(e.factors) if i != index]
            if not any(ir.contains_differential(g) for g in others):
                return hadamard(*others), *split
    return None


def _is_outer(e: Expr) -> tuple[Expr, Expr] | None:
    """(a, b) with e = a b^T: a product whose chain passes through a 1 x 1 inner dimension."""
    if not isinstance(e, MatMul):
        return None
    coefficient, scalars, chain = ir.split_product(e)
    for i in range(1, len(chain)):
        if ir.chain_shape(chain[:i])[1] == 1:
            return mul(Num(coefficient), *scalars, *chain[:i]), transpose(mul(*chain[i:]))
    return None


def _diagonal_factor(f: Expr) -> Expr | None:
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


def _push_transpose(e: Expr) -> Expr:
    """e^T with the transpose moved one level down, for the Jacobian reader."""
    if isinstance(e, Transpose):
        inner = e.arg
        if isinstance(inner, MatMul):
            return mul(*[transpose(f) for f in reversed(inner.factors)])
        if isinstance(inner, Add):
            return add(*[transpose(t) for t in inner.terms])
        if isinstance(inner, Hadamard):
            return hadamard(*[transpose(f) for f in inner.factors])
        if isinstance(inner, ElemDiv):
            return elem_div(transpose(inner.numerator), transpose(inner.denominator))
        if isinstance(inner, Func) and inner.name == "diag" and ir.is_vector_shape(inner.arg.shape):
            return inner  # a diagonal matrix is symmetric (the diagonal of a matrix is a column: not here)
        raise UnsupportedError(f"cannot write the Jacobian in matrix form yet: transposed term {e}")
    return transpose(e)


# ---------------------------------------------------------------- the vec (Kronecker) reader, any order


# A vec rule's builder: (t, J of a child) -> J_t, with vec(t) = J_t vec(dX) for a node t linear in dX, from the
# J of its child that holds dX (Magnus & Neudecker). Its example: (function, variable), as the adjoint rules'.


def _vec_product(t: Expr, jacobian_of: Callable[[Expr], Expr]) -> Expr:
    assert isinstance(t, MatMul)
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


def _vec_hadamard(t: Expr, jacobian_of: Callable[[Expr], Expr]) -> Expr:
    assert isinstance(t, Hadamard)
    position = next(i for i, f in enumerate(t.factors) if ir.contains_differential(f))
    others = hadamard(*t.factors[:position], *t.factors[position + 1 :])
    return mul(func("diag", ir.vec(others)), jacobian_of(t.factors[position]))


def _vec_quotient(t: Expr, jacobian_of: Callable[[Expr], Expr]) -> Expr:
    assert isinstance(t, ElemDiv)
    if ir.contains_differential(t.denominator):
        raise _NotLinear(f"differential in a denominator: {t}")
    return mul(func("diag", ir.vec(elem_div(ones(t.shape), t.denominator))), jacobian_of(t.numerator))


def _vec_diag(t: Expr, jacobian_of: Callable[[Expr], Expr]) -> Expr:
    assert isinstance(t, Func)
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


def _kron_jacobian(t: Expr, position: int, inner_jacobian: Expr) -> Expr:
    """J with vec(A ⊗ F ⊗ B) = J vec(F), F the factor at `position`, from F's J: two steps of
    vec(A ⊗ B) = P (vec(A) ⊗ vec(B)) (kron_vec_permutation), A and B free of dX."""
    assert isinstance(t, ir.Kron)
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


def _vec_kron(t: Expr, jacobian_of: Callable[[Expr], Expr]) -> Expr:
    assert isinstance(t, ir.Kron)
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


def derivative_from_differential(df: Expr, variable: Var, output_shape: ir.Shape) -> Expr:
    """Read the derivative off df, for every case whose result is a scalar, vector or matrix."""
    if variable.is_scalar:  # df = F dα -> F
        return ir.substitute(df, {Differential(variable): ir.ONE})
    if output_shape == ir.SCALAR:
        return gradient_from_differential(df, variable.shape)
    if ir.is_column(variable.shape) and ir.is_column(output_shape):
        return jacobian_from_differential(df, variable.shape[0])
    if ir.is_column(variable.shape) and ir.is_column((output_shape[1], output_shape[0])):
        # a row vector has the Jacobian of its transpose (docs/conventions.md): d(f^T) = (df)^T = J dx
        return jacobian_from_differential(transpose(df), variable.shape[0])
    raise AssertionError("unsupported derivative shapes must be rejected before identification")
