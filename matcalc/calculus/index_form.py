"""The index form of a derivative: ∂F_ij / ∂X_kl, read entry by entry from the differential dF.

dF is linear in dX, so each entry of dF is a sum over entries of dX: the index form writes that sum with
Kronecker deltas and entries of constant matrices (∂(A X B)_ij / ∂X_kl = A_ik B_lj). It is read bottom-up:
each node of dF that holds dX gets a *template*, its index form in terms of placeholders for its own row and
column indices, built from its children's templates by the first rule of INDEX_RULES written for its kind of node
(no recursion over the depth of dF: ir.postorder). The root's template, with the output's indices i, j and the
variable's k, l, is then simplified term by term by the rules of CONTRACTION_RULES. Nothing is combined across
terms.

A term prints as its coefficient, Σ over what stays summed, its constant 1 x 1 factors, then its deltas and
entries ordered by the first output index they hold (i before j before none; a δ before an entry; else as they
occur): ∂(X X)_ij / ∂X_kl = δ_ik X_lj + X_ik δ_jl.

Indices: the output's are i, j and the variable's k, l; an axis of size 1 has no index, so a vector has one
and a scalar none. Summed indices are p, q, r, ... with an explicit Σ when a sum cannot be contracted.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, replace
from fractions import Fraction
from itertools import count
from typing import NoReturn

from ..core import ir
from ..core.errors import UnsupportedError
from ..core.ir import (
    Add,
    Differential,
    Dim,
    ElemDiv,
    Expr,
    Fill,
    Func,
    Hadamard,
    Identity,
    MatMul,
    Num,
    Transpose,
    Var,
)
from ..rules.rule import RuleSet
from ..rules.simplify import simplify

# An index: a name (i, j, k, l, a summed index once named, or a node's placeholder) or, while the form is built,
# a summed index as a number (fresh numbers never clash, whatever the names used around them).
Index = str | int
ROW, COL = "<row>", "<col>"  # a template's own row and column indices, replaced when its parent uses it


@dataclass(frozen=True)
class Delta:
    """δ_ab: 1 where the two indices are equal, else 0."""

    a: Index
    b: Index

    def indices(self) -> tuple[Index, ...]:
        return (self.a, self.b)

    def slots(self) -> tuple[Index | None, ...]:
        """No slots: a δ's indices are not slots two entries can be merged through."""
        return ()

    def renamed(self, mapping: dict[Index, Index | None]) -> Delta:
        if self.a not in mapping and self.b not in mapping:
            return self
        return Delta(_mapped(self.a, mapping), _mapped(self.b, mapping))


@dataclass(frozen=True)
class Entry:
    """The entry (row, col) of a constant matrix; None for an axis of size 1 (a vector's entry has one index)."""

    expr: Expr
    row: Index | None
    col: Index | None

    def indices(self) -> tuple[Index, ...]:
        return tuple(i for i in (self.row, self.col) if i is not None)

    def slots(self) -> tuple[Index | None, ...]:
        """(row, col): the indices a summed index may join two entries through."""
        return (self.row, self.col)

    def renamed(self, mapping: dict[Index, Index | None]) -> Entry:
        if self.row not in mapping and self.col not in mapping:
            return self
        row = None if self.row is None else mapping.get(self.row, self.row)
        col = None if self.col is None else mapping.get(self.col, self.col)
        return Entry(self.expr, row, col)


Factor = Delta | Entry


@dataclass(frozen=True)
class Term:
    """coefficient · scalars · Σ over `summed` of the product of `factors`. `summed` pairs each summed index with
    the dimension it runs over."""

    coefficient: Fraction
    scalars: tuple[Expr, ...] = ()
    factors: tuple[Factor, ...] = ()
    summed: tuple[tuple[Index, Dim], ...] = ()


# ---------------------------------------------------------------- the rules

# The template of each kind of node that holds dX, from its children's (N is the child holding dX): a RuleSet whose
# builders take (node, templates) and return the node's terms, below; `index_form` applies the first that applies.
# Each example is an (expression, variable) whose index form the rule reads.
INDEX_RULES = RuleSet("index-form rules")
index_rule = INDEX_RULES.rule

# How each term is simplified, in this order, until none applies (`_simplify_term`).
CONTRACTION_RULES: tuple[tuple[str, str], ...] = (
    ("contract", "Σ_p δ_pa E(p) -> E(a)"),
    ("delta of one index", "δ_aa -> 1 (a free), Σ_p δ_pp -> n"),
    ("idempotent delta", "δ_ab δ_ab -> δ_ab"),
    ("empty sum", "Σ_p E -> n E (p not in E)"),
    ("constant entry", "I_ab -> δ_ab, (A^T)_ab -> A_ba, (c 1)_ab -> c, (s A)_ab -> s A_ab, (1 x 1 A) -> A"),
    ("merge", "Σ_p A_ap B_pb -> (A B)_ab, Σ_p A_pa B_pb -> (A^T B)_ab, Σ_p A_ap B_bp -> (A B^T)_ab"),
    ("trace of an entry", "Σ_p A_pp -> tr(A)"),
)

# ---------------------------------------------------------------- terms: substitution, entries, contraction


def _mapped(index: Index, mapping: dict[Index, Index | None]) -> Index:
    new = mapping.get(index, index)
    if new is None:  # a δ's index maps to an axis of size 1 only through a bug in a rule
        raise AssertionError(f"index {index!r} of a δ has no axis")
    return new


def _substitute(term: Term, mapping: dict[Index, Index | None]) -> Term:
    return replace(term, factors=tuple(f.renamed(mapping) for f in term.factors),
                   summed=tuple((mapping.get(s, s), d) for s, d in term.summed))


def _entries(expr: Expr, row: Index | None, col: Index | None) -> tuple[Fraction, list[Expr], list[Factor]]:
    """The factors of the entry (row, col) of a constant: (coefficient, scalars, deltas and entries).

    Normalised so that terms stay small and print plainly: I_ab is δ_ab, (A^T)_ab is A_ba, a fill's entry is a
    number, a product's coefficient and 1 x 1 factors come out, and a 1 x 1 matrix is a scalar factor.
    """
    coefficient, scalars, chain = ir.split_product(simplify(expr))  # X inv(X) is I, so a δ
    scalars = list(scalars)
    if coefficient == 0:
        return Fraction(0), [], []
    if not chain:
        return coefficient, scalars, []
    cuts = [n + 1 for n, f in enumerate(chain[:-1]) if f.shape[1] == 1]
    if cuts:  # an outer product's entry is a product of entries: (u v^T)_ab = u_a v_b, with no sum
        factors: list[Factor] = []
        for n, (start, stop) in enumerate(zip([0, *cuts], [*cuts, len(chain)], strict=True)):
            c, s, f = _entries(ir.mul(*chain[start:stop]), row if n == 0 else None, col if stop == len(chain) else None)
            coefficient *= c
            scalars.extend(s)
            factors.extend(f)
        return coefficient, scalars, factors
    expr = chain[0] if len(chain) == 1 else ir.mul(*chain)
    while isinstance(expr, Transpose):
        expr, row, col = expr.arg, col, row
    if isinstance(expr, Fill):
        return coefficient * expr.value, scalars, []
    if isinstance(expr, Identity):
        return coefficient, scalars, [Delta(row, col)] if row is not None and col is not None else []
    if row is None and col is None:
        return coefficient, [*scalars, expr], []
    return coefficient, scalars, [Entry(expr, row, col)]


def _with(term: Term, coefficient: Fraction = Fraction(1), scalars: list[Expr] | tuple[Expr, ...] = (),
          before: list[Factor] | tuple[Factor, ...] = (), after: list[Factor] | tuple[Factor, ...] = (),
          summed: list[tuple[Index, Dim]] | tuple[tuple[Index, Dim], ...] = ()) -> Term:
    """term times constants: factors placed before and after its own (the order they occur in)."""
    return Term(term.coefficient * coefficient, (*scalars, *term.scalars), (*before, *term.factors, *after),
                (*summed, *term.summed))


def _times_constant(coefficient: Fraction, scalars: list[Expr], e: Expr) -> Fraction:
    """Multiply in a constant scalar: a number into the coefficient, anything else into the scalars."""
    if isinstance(e, Num):
        return coefficient * e.value
    scalars.append(e)
    return coefficient


def _contract(term: Term) -> Term:
    """Contract every δ that holds a summed index, drop δ_aa, and turn a sum over an index nothing holds into
    the size of its dimension (rules "contract" to "empty sum")."""
    summed = dict(term.summed)
    factors = list(term.factors)
    scalars = list(term.scalars)
    coefficient = term.coefficient
    while True:
        found = next((n for n, f in enumerate(factors) if isinstance(f, Delta)
                      and (f.a in summed or f.b in summed or f.a == f.b)), None)
        if found is None:
            break
        delta = factors.pop(found)
        assert isinstance(delta, Delta)
        if delta.a == delta.b:
            if delta.a in summed:  # Σ_p δ_pp = n
                coefficient = _times_constant(coefficient, scalars, ir.size(summed.pop(delta.a)))
            continue
        gone, kept = (delta.a, delta.b) if delta.a in summed else (delta.b, delta.a)
        del summed[gone]
        factors = [f.renamed({gone: kept}) for f in factors]
    held = {i for f in factors for i in f.indices()} if summed else set()
    for index in [s for s in summed if s not in held]:
        coefficient = _times_constant(coefficient, scalars, ir.size(summed.pop(index)))
    kept_factors: list[Factor] = []
    for f in factors:  # δ_ab δ_ab = δ_ab (diag(diag(X)) writes one twice)
        if isinstance(f, Delta) and any(isinstance(g, Delta) and {g.a, g.b} == {f.a, f.b} for g in kept_factors):
            continue
        kept_factors.append(f)
    return Term(coefficient, tuple(scalars), tuple(kept_factors), tuple(summed.items()))


def _merge_once(term: Term) -> Term | None:
    """One summed index held by exactly two entry slots (and no δ) folded into a product or a trace, or None."""
    for index, _ in term.summed:
        places = [(n, slot) for n, f in enumerate(term.factors) for slot, i in enumerate(f.slots()) if i == index]
        if len(places) != 2:  # (entry slots only: a δ has none)
            continue
        (n1, slot1), (n2, slot2) = places
        first, second = term.factors[n1], term.factors[n2]
        assert isinstance(first, Entry) and isinstance(second, Entry)
        if n1 == n2:  # Σ_p A_pp = tr(A)
            coefficient, scalars, factors = Fraction(1), [simplify(ir.func("tr", first.expr))], []
        else:
            if (slot1, slot2) == (0, 1):  # Σ_p A_pa B_bp = (B A)_ba: no transpose needed
                first, second, slot1, slot2 = second, first, 1, 0
            # Σ_p A_ap B_pb = (A B)_ab, reading a transposed factor where p is its row (A) or column (B)
            left = first.expr if slot1 == 1 else ir.transpose(first.expr)
            row = first.row if slot1 == 1 else first.col
            right = second.expr if slot2 == 0 else ir.transpose(second.expr)
            col = second.col if slot2 == 0 else second.row
            coefficient, scalars, factors = _entries(simplify(ir.mul(left, right)), row, col)
        rest = [f for n, f in enumerate(term.factors) if n not in (n1, n2)]
        at = sum(1 for n in range(n1) if n != n2)
        return Term(term.coefficient * coefficient, (*term.scalars, *scalars), (*rest[:at], *factors, *rest[at:]),
                    tuple((s, d) for s, d in term.summed if s != index))
    return None


def _simplify_term(term: Term) -> Term:
    """Contract and merge until nothing changes: a merge may write a δ (A inv(A) = I) to contract."""
    term = _contract(term)
    while (merged := _merge_once(term)) is not None:
        term = _contract(merged)
    return term


# ---------------------------------------------------------------- templates, node by node


class _Templates:
    """The templates of the nodes of dF read so far, and a source of fresh summed indices."""

    def __init__(self, variable: Var) -> None:
        self.variable = variable
        self.templates: dict[int, list[Term]] = {}
        self._numbers: Iterator[int] = count()

    def fresh(self, dim: Dim) -> int | None:
        """A new summed index over `dim`, or None for an axis of size 1."""
        return None if dim == 1 else next(self._numbers)

    def of(self, child: Expr, row: Index | None, col: Index | None) -> list[Term]:
        """The child's terms with its own indices set to (row, col) and its summed indices made fresh: a template
        used twice (a shared node, or tr's two slots) never clashes with itself."""
        terms: list[Term] = []
        for term in self.templates[id(child)]:
            mapping: dict[Index, Index | None] = {ROW: row, COL: col}
            for index, dim in term.summed:
                mapping[index] = self.fresh(dim)
            terms.append(_substitute(term, mapping))
        return terms


def _own(node: Expr) -> tuple[Index | None, Index | None]:
    """A node's placeholders: none for an axis of size 1."""
    rows, cols = node.shape
    return (None if rows == 1 else ROW), (None if cols == 1 else COL)


def _holding(node: Expr, children: tuple[Expr, ...]) -> int:
    """The position of the one child holding dX; dF is linear in dX, so there is exactly one."""
    positions = [n for n, c in enumerate(children) if ir.contains_differential(c)]
    if len(positions) != 1:
        raise UnsupportedError(f"no index form for {node}: it is not linear in the differential")
    return positions[0]


@index_rule("differential", "∂(dX)_ij -> δ_ik δ_jl (an axis of size 1 has no index, and no δ)", ("X", "X"),
            on=(Differential,))
def _differential(node: Differential, t: _Templates) -> list[Term]:
    if node.var is not t.variable:
        raise UnsupportedError(f"no index form for d{node.var.name}: the variable is {t.variable.name}")
    row, col = _own(node)
    pairs = zip((row, col), _variable_indices(node.var.shape), strict=True)
    return [Term(Fraction(1), (), tuple(Delta(a, b) for a, b in pairs if a is not None and b is not None))]


@index_rule("sum", "∂(N1 + N2)_ij -> ∂N1_ij + ∂N2_ij", ("X X", "X"), on=(Add,))
def _sum(node: Add, t: _Templates) -> list[Term]:
    row, col = _own(node)
    terms: list[Term] = []
    for child in node.terms:
        if ir.contains_differential(child):
            terms.extend(t.of(child, row, col))
        elif not ir.is_zero(child):
            raise UnsupportedError(f"no index form for {node}: it is not linear in the differential")
    return terms


def _holds_in_a_scalar(node: MatMul) -> bool:
    """Whether a 1 x 1 factor of the product holds dX (then it commutes: the "scalar product" rule)."""
    return any(factor.is_scalar and ir.contains_differential(factor) for factor in node.factors)


def _factors(node: MatMul) -> tuple[Expr, Fraction, list[Expr], list[Expr]]:
    """(N, c, s, chain): the factor holding dX, the constant 1 x 1 factors as c s, and the other factors in order
    (N among them unless it is 1 x 1). The 1 x 1 factors commute: only the chain's order matters."""
    held = node.factors[_holding(node, node.factors)]
    coefficient, scalars, chain = Fraction(1), [], []
    for factor in node.factors:
        if factor is held and held.is_scalar:
            continue
        if factor.is_scalar:
            coefficient = _times_constant(coefficient, scalars, factor)
        else:
            chain.append(factor)
    return held, coefficient, scalars, chain


@index_rule("product", "∂(c s L N R)_ij -> c s Σ_pq L_ip ∂N_pq R_qj (p = i without L, q = j without R)",
            ("A X B", "X"), on=(MatMul,), guard=lambda node: not _holds_in_a_scalar(node))
def _product(node: MatMul, t: _Templates) -> list[Term]:
    row, col = _own(node)
    held, coefficient, scalars, chain = _factors(node)
    position = chain.index(held)
    left, right = chain[:position], chain[position + 1:]
    p = t.fresh(held.shape[0]) if left else row
    q = t.fresh(held.shape[1]) if right else col
    before = _entries(ir.mul(*left), row, p) if left else (Fraction(1), [], [])
    after = _entries(ir.mul(*right), q, col) if right else (Fraction(1), [], [])
    summed = [(index, dim) for index, dim, own in ((p, held.shape[0], left), (q, held.shape[1], right))
              if own and index is not None]
    return [_with(term, coefficient * before[0] * after[0], [*scalars, *before[1], *after[1]], before[2], after[2],
                  summed) for term in t.of(held, p, q)]


@index_rule("scalar product", "∂(c s N C)_ij -> c s ∂N C_ij (N a 1 x 1 factor holding dX)", ("(x^T x) A", "x"),
            on=(MatMul,), guard=_holds_in_a_scalar)
def _scalar_product(node: MatMul, t: _Templates) -> list[Term]:
    row, col = _own(node)
    held, coefficient, scalars, chain = _factors(node)
    after = _entries(ir.mul(*chain), row, col) if chain else (Fraction(1), [], [])
    return [_with(term, coefficient * after[0], [*scalars, *after[1]], (), after[2]) for term in t.of(held, None, None)]


@index_rule("transpose", "∂(N^T)_ij -> ∂N_ji", ("X^T", "X"), on=(Transpose,))
def _transpose(node: Transpose, t: _Templates) -> list[Term]:
    row, col = _own(node)
    return t.of(node.arg, col, row)


@index_rule("hadamard", "∂(A .* N)_ij -> A_ij ∂N_ij", ("tanh(W x)", "W"), on=(Hadamard,))
def _hadamard(node: Hadamard, t: _Templates) -> list[Term]:
    row, col = _own(node)
    position = _holding(node, node.factors)
    coefficient, scalars, before, after = Fraction(1), [], [], []
    for n, factor in enumerate(node.factors):
        if n == position:
            continue
        c, s, f = _entries(factor, None, None) if factor.is_scalar else _entries(factor, row, col)
        coefficient *= c
        scalars.extend(s)
        (before if n < position else after).extend(f)
    return [_with(term, coefficient, scalars, before, after) for term in t.of(node.factors[position], row, col)]


@index_rule("quotient", "∂(N ./ B)_ij -> (1 ./ B)_ij ∂N_ij", ("X ./ B", "X"), on=(ElemDiv,))
def _quotient(node: ElemDiv, t: _Templates) -> list[Term]:
    if _holding(node, node.children) != 0:
        raise UnsupportedError(f"no index form for {node}: it is not linear in the differential")
    row, col = _own(node)
    # the entry of the expression 1 ./ B, printed as such: (1 ./ B)_ij
    coefficient, scalars, factors = _entries(ir.elem_div(ir.ones(node.denominator.shape), node.denominator), row, col)
    return [_with(term, coefficient, scalars, factors) for term in t.of(node.numerator, row, col)]


@index_rule("trace", "∂tr(N) -> Σ_p ∂N_pp", ("tr(A X)", "X"), on=("tr",))
def _trace(node: Func, t: _Templates) -> list[Term]:
    p = t.fresh(node.arg.shape[0])
    return [_with(term, summed=[(p, node.arg.shape[0])] if p is not None else [])
            for term in t.of(node.arg, p, p)]


@index_rule("sum of entries", "∂sum(N) -> Σ_pq ∂N_pq", ("sum(X .* A)", "X"), on=("sum",))
def _sum_of_entries(node: Func, t: _Templates) -> list[Term]:
    rows, cols = node.arg.shape
    p, q = t.fresh(rows), t.fresh(cols)
    summed = [(index, dim) for index, dim in ((p, rows), (q, cols)) if index is not None]
    return [_with(term, summed=summed) for term in t.of(node.arg, p, q)]


@index_rule("diag of a vector", "∂diag(v)_ij -> δ_ij ∂v_i", ("diag(x)", "x"), on=("diag",),
            guard=lambda node: ir.is_vector_shape(node.arg.shape) or node.is_scalar)
def _diag_of_vector(node: Func, t: _Templates) -> list[Term]:
    row, col = _own(node)
    if row is None or col is None:  # diag of a scalar is itself
        return t.of(node.arg, None, None)
    on_axis = (row, None) if node.arg.shape[1] == 1 else (None, row)
    return [_with(term, before=[Delta(row, col)]) for term in t.of(node.arg, *on_axis)]


@index_rule("diag of a matrix", "∂diag(M)_i -> ∂M_ii", ("diag(X)", "X"), on=("diag",))
def _diag_of_matrix(node: Func, t: _Templates) -> list[Term]:
    row, _ = _own(node)
    return t.of(node.arg, row, row)


def _unsupported(node: Expr) -> NoReturn:
    what = f"{node.name}(...)" if isinstance(node, Func) else type(node).__name__
    raise UnsupportedError(f"no index form for {what} of the differential yet")



# ---------------------------------------------------------------- the result


def _output_indices(shape: ir.Shape) -> tuple[str | None, str | None]:
    return _names(shape, "i", "j")


def _variable_indices(shape: ir.Shape) -> tuple[str | None, str | None]:
    return _names(shape, "k", "l")


def _names(shape: ir.Shape, first: str, second: str) -> tuple[str | None, str | None]:
    """The first axis of size other than 1 gets `first`, a second one `second`: a vector's one index is i (or k)."""
    rows, cols = shape
    if rows == 1:
        return None, (None if cols == 1 else first)
    return first, (None if cols == 1 else second)


SUMMED_NAMES = "pqrstuvwabcdefgh"
_NAME = re.compile(r"[A-Za-z_]\w*\Z")


@dataclass(frozen=True)
class IndexForm:
    """∂F_ij / ∂X_kl = Σ of `terms`. `output` labels F (an expression or a name); `output_indices` and
    `variable_indices` name F's and X's axes (None for an axis of size 1); each term's summed indices carry the
    dimension they run over. render/index.py writes it."""

    output: Expr | str
    output_shape: ir.Shape
    variable: Var
    output_indices: tuple[str | None, str | None]
    variable_indices: tuple[str | None, str | None]
    terms: tuple[Term, ...]


def _ordered(term: Term, output: tuple[str | None, str | None], taken: set[str], as_written: bool = False) -> Term:
    """Factors by the first output index they hold (i, then j, then none), a δ before an entry, else in the order
    they occur (`as_written`: in the order they occur, as the product rule wrote them); summed indices named p, q,
    r, ... in the order they are then read."""
    rank = {name: n for n, name in enumerate(i for i in output if i is not None)}

    def key(item: tuple[int, Factor]) -> tuple[int, int, int]:
        n, f = item
        first = min((rank[i] for i in f.indices() if i in rank), default=len(rank))
        return first, 0 if isinstance(f, Delta) else 1, n

    factors = list(term.factors) if as_written else [f for _, f in sorted(enumerate(term.factors), key=key)]
    numbers = [s for s, _ in term.summed]
    read = [i for f in factors for i in f.indices() if i in numbers]
    order = list(dict.fromkeys([*read, *numbers]))
    names: dict[Index, str] = dict(zip(order, _summed_names(len(order), taken), strict=True))
    mapping: dict[Index, Index | None] = dict(names)
    dims = dict(term.summed)
    coefficient, scalars = term.coefficient, []
    for scalar in term.scalars:  # as the printer will show them: s^(2 - 1) is s
        coefficient = _times_constant(coefficient, scalars, simplify(scalar))
    return Term(coefficient, tuple(scalars), tuple(f.renamed(mapping) for f in factors),
                tuple((names[s], dims[s]) for s in order))


def _summed_names(n: int, taken: set[str]) -> list[str]:
    names = [c for c in SUMMED_NAMES if c not in taken]
    k = 1
    while len(names) < n:  # past the letters: p1, q1, ...
        names.extend(f"{c}{k}" for c in SUMMED_NAMES[:8] if f"{c}{k}" not in taken)
        k += 1
    return names[:n]


def index_form(df: Expr, variable: Var, output: Expr | str, trace: list[str] | None = None,
               contract: bool = True) -> IndexForm:
    """The index form ∂F_ij / ∂X_kl of the derivative whose differential is `df` (linear in d`variable`).

    `output` labels F on the left-hand side: the function's expression, or a name. Raises UnsupportedError for
    what has no index form yet (vec, the Kronecker product) or a df that is not linear in the differential.
    `trace` collects the names of the INDEX_RULES read, node by node, children first. With `contract=False` the
    Kronecker deltas are left where differentiating term by term put them (Σ_p W_ip δ_pk), as the index method
    writes the step before summing them out.
    """
    tidy = _contract if contract else (lambda term: term)
    t = _Templates(variable)
    out_indices = _output_indices(df.shape)  # (row, col) of F: None for an axis of size 1
    root: list[Term] = []
    if ir.contains_differential(df):
        # children first, and only the nodes holding dX: a constant has no template
        for node in ir.postorder(df, lambda n: [c for c in n.children if ir.contains_differential(c)]):
            rule = INDEX_RULES.first(node)
            if rule is None:
                _unsupported(node)
            if trace is not None:
                trace.append(rule.name)
            terms = rule.build(node, t)
            t.templates[id(node)] = [c for c in map(tidy, terms) if c.coefficient != 0]
        root = [_simplify_term(term) if contract else term for term in t.of(df, *out_indices)]
    elif not ir.is_zero(df):
        raise UnsupportedError(f"no index form for {df}: it does not hold the differential")
    # summed names never read as a free index or a variable of the expressions printed
    taken = {"i", "j", "k", "l", *ir.variables(df), *(ir.variables(output) if isinstance(output, Expr) else [output])}
    terms = tuple(_ordered(term, out_indices, taken, not contract) for term in root if term.coefficient != 0)
    return IndexForm(output, df.shape, variable, out_indices, _variable_indices(variable.shape), terms)


# ---------------------------------------------------------------- the entries of a function (the index method's start)


def _term_products(groups: list[list[Term]]) -> list[Term]:
    """The terms of a product of sums: every choice of one term per factor, multiplied (the factors in order)."""
    out = [Term(Fraction(1))]
    for group in groups:
        out = [Term(a.coefficient * b.coefficient, (*a.scalars, *b.scalars), (*a.factors, *b.factors),
                    (*a.summed, *b.summed)) for a in out for b in group]
    return out


def entry_form(function: Expr, variable: Var) -> IndexForm:
    """The entry F_ij of a function as a sum of products of entries (∂ left out: `terms` are F_ij's own), written
    for products, transposes, traces, sums of entries, element-wise products and sums of them; what holds the
    variable inside any other function has no entry form here (UnsupportedError). A subexpression free of the
    variable is one entry ((A + A^T)_pq)."""
    t = _Templates(variable)

    def holds(node: Expr) -> bool:
        return variable.name in ir.variables(node)

    for node in ir.postorder(function, lambda n: [c for c in n.children if holds(c)]):
        row, col = _own(node)
        if node is variable:
            terms = [Term(Fraction(1), (), (Entry(node, row, col),))]
        elif isinstance(node, Transpose):
            terms = t.of(node.arg, col, row)
        elif isinstance(node, Add):
            terms = [term for child in node.terms for term in _entry_terms(t, child, row, col, holds)]
        elif isinstance(node, MatMul):
            coefficient, scalars, chain = ir.split_product(node)
            indices: list[Index | None] = [row]
            summed: list[tuple[Index, Dim]] = []
            for factor in chain[:-1]:
                index = t.fresh(factor.shape[1])
                indices.append(index)
                if index is not None:
                    summed.append((index, factor.shape[1]))
            indices.append(col)
            groups = [_entry_terms(t, s, None, None, holds) for s in scalars]
            groups += [_entry_terms(t, f, indices[n], indices[n + 1], holds) for n, f in enumerate(chain)]
            terms = [_with(term, coefficient, summed=summed) for term in _term_products(groups)]
        elif isinstance(node, Hadamard):
            terms = _term_products([_entry_terms(t, f, None, None, holds) if f.is_scalar
                                    else _entry_terms(t, f, row, col, holds) for f in node.factors])
        elif isinstance(node, Func) and node.name == "tr" and not node.axis:
            p = t.fresh(node.arg.shape[0])
            terms = [_with(term, summed=[(p, node.arg.shape[0])] if p is not None else [])
                     for term in t.of(node.arg, p, p)]
        elif isinstance(node, Func) and node.name == "sum" and not node.axis:
            rows, cols = node.arg.shape
            p, q = t.fresh(rows), t.fresh(cols)
            summed = [(index, dim) for index, dim in ((p, rows), (q, cols)) if index is not None]
            terms = [_with(term, summed=summed) for term in t.of(node.arg, p, q)]
        else:
            what = f"{node.name}(...)" if isinstance(node, Func) else type(node).__name__
            raise UnsupportedError(f"no entry-by-entry form for {what} of {variable.name}: the index method writes "
                                   f"products, transposes, traces and sums")
        t.templates[id(node)] = [c for c in terms if c.coefficient != 0]
    out_indices = _output_indices(function.shape)
    root = t.of(function, *out_indices) if holds(function) else []
    taken = {"i", "j", "k", "l", *ir.variables(function)}
    terms = tuple(_ordered(term, out_indices, taken, True) for term in root if term.coefficient != 0)
    return IndexForm(function, function.shape, variable, out_indices, (None, None), terms)


def _entry_terms(t: _Templates, e: Expr, row: Index | None, col: Index | None, holds: object) -> list[Term]:
    """A factor's terms at (row, col): its template if it holds the variable, else its entry as a constant."""
    if holds(e):  # type: ignore[operator]
        return t.of(e, row, col)
    coefficient, scalars, factors = _entries(e, row, col)
    return [Term(coefficient, tuple(scalars), tuple(factors))] if coefficient != 0 else []
