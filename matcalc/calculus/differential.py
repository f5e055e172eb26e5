"""The differential: `differential(f, X)` is df, an expression linear in the placeholder dX, by the rules of
DIFFERENTIAL_RULES (product rule, chain rule through every function, ...). Every intermediate differential has
the shape of its node, so no 3rd-order tensor ever appears. The readers (readers.py) take the derivative off it.
"""

from __future__ import annotations

from collections.abc import Callable

from ..core import ir
from ..core.errors import UnsupportedError
from ..core.functions import ELEMENTWISE, FUNCTIONS, FunctionSpec
from ..core.ir import (
    Add,
    Differential,
    ElemDiv,
    ElemPower,
    Expr,
    Fill,
    Func,
    Hadamard,
    Identity,
    MatMul,
    Num,
    Power,
    Transpose,
    Var,
    add,
    elem_div,
    elem_power,
    func,
    hadamard,
    mul,
    neg,
    num,
    power,
    transpose,
)
from ..rules.rule import Rule, RuleSet

# The product rule writes k terms of m factors for a product of m factors, k of which hold the
# variable, so the differential can grow as the square of the input (and a Hessian as the cube).
# Past these limits the result is refused as too large instead of taking minutes.
MAX_DIFFERENTIAL_SIZE = 20_000  # factors written by product rules over several factors holding the variable,
# beyond four times the input's size
MAX_MATRIX_POWER = 64  # d(X^k) has k terms
# Up to this many factors holding the variable, the product rule writes one term per factor (the form every result
# printed so far has); past it, the factors that are one node and commute (scalars, Hadamard factors) share one
# term, c times: k copies of s in s ./ s ./ ... ./ s cost 2 terms, not k terms of k factors.
MAX_LEIBNIZ_TERMS = 8


def _square(u: Expr) -> Expr:
    return elem_power(u, num(2))


# ---------------------------------------------------------------- differential rules


def _commutes(product: Expr, factor: Expr) -> bool:
    """Whether the factor may move anywhere in the product: any factor of A .* B, a 1 x 1 factor of A B."""
    return isinstance(product, Hadamard) or (isinstance(product, MatMul) and factor.is_scalar)


def leibniz_terms(e: Expr, ds: tuple[Expr, ...]) -> list[list[int]]:
    """The terms the product rule writes for the product e with its factors' differentials ds: for each,
    the positions of the factors it differentiates (the first one is written, once per position).

    One term per factor holding the variable, up to MAX_LEIBNIZ_TERMS of them; past that, a factor that
    commutes is one term however many times the same node occurs (the product's DAG, not its tree).
    """
    varying = [i for i, d in enumerate(ds) if not ir.is_zero(d)]
    if len(varying) <= MAX_LEIBNIZ_TERMS:
        return [[i] for i in varying]
    groups: dict[int, list[int]] = {}  # id of a commuting factor, or minus one more than a position
    for i in varying:
        factor = e.children[i]
        groups.setdefault(id(factor) if _commutes(e, factor) else -1 - i, []).append(i)
    return list(groups.values())


def _leibniz(combine: Callable[..., Expr]) -> Callable[[Expr, tuple[Expr, ...]], Expr]:
    """d(f1 f2 ... fk) = sum_i f1 ... dfi ... fk, for a product built by `combine`; c equal commuting
    factors g give one term c (... dg ...)."""

    def rule(e: Expr, ds: tuple[Expr, ...]) -> Expr:
        factors = e.children
        terms = []
        for positions in leibniz_terms(e, ds):
            i = positions[0]
            term = combine(*factors[:i], ds[i], *factors[i + 1 :])
            terms.append(term if len(positions) == 1 else mul(num(len(positions)), term))
        return add(*terms) if terms else ir.zeros(e.shape)

    return rule


def _elem_div_rule(e: ElemDiv, ds: tuple[Expr, ...]) -> Expr:
    d_numerator, d_denominator = ds
    a, b = e.numerator, e.denominator
    return add(elem_div(d_numerator, b), neg(hadamard(elem_div(a, _square(b)), d_denominator)))


def _power_rule(e: Power, ds: tuple[Expr, ...]) -> Expr:
    d_base, d_exponent = ds
    a, p = e.base, e.exponent
    if not a.is_scalar:  # integer power of a square matrix: sum_i X^i dX X^(k-1-i)
        k = int(p.value)  # type: ignore[attr-defined]
        if abs(k) > MAX_MATRIX_POWER:
            raise UnsupportedError(f"the derivative of a matrix power X^{k} has {abs(k)} terms; "
                                   f"matcalc writes at most {MAX_MATRIX_POWER}")
        return add(*[mul(power(a, num(i)) if i else ir.identity(a.shape[0]), d_base,
                         power(a, num(k - 1 - i)) if k - 1 - i else ir.identity(a.shape[0]))
                     for i in range(k)])
    terms = [mul(p, power(a, add(p, num(-1))), d_base)]
    if not ir.is_zero(d_exponent):
        terms.append(mul(e, func("log", a), d_exponent))
    return add(*terms)


def _elem_power_rule(e: ElemPower, ds: tuple[Expr, ...]) -> Expr:
    d_base, d_exponent = ds
    a, p = e.base, e.exponent
    terms = [] if ir.is_zero(d_base) else [mul(p, hadamard(elem_power(a, add(p, num(-1))), d_base))]
    if not ir.is_zero(d_exponent):
        terms.append(mul(d_exponent, hadamard(e, func("log", a))))
    return add(*terms) if terms else ir.zeros(e.shape)


def _rule(name: str, statement: str, head: type, build: Callable[[Expr, tuple[Expr, ...]], Expr],
          example: tuple[str, str]) -> Rule:
    """A differential rule: its builder takes the node and its children's differentials, and returns the node's."""
    return Rule(name, statement, (head,), build, example)


def _function_rule(spec: FunctionSpec, name: str) -> Rule:
    """A function's differential rule, as its FunctionSpec writes it (core/functions.py)."""
    differential_of = spec.differential
    assert differential_of is not None, spec.name
    return Rule(name, spec.derivative, (spec.name,), lambda e, ds: differential_of(e, ds[0]), spec.example)


def _elementwise_rule(e: Func, ds: tuple[Expr, ...]) -> Expr:
    return FUNCTIONS[e.name].differential(e, ds[0])  # type: ignore[misc]


# each element-wise function's rule, as its FunctionSpec gives it (the derivations cite them all as one rule)
ELEMENTWISE_RULES: dict[str, Rule] = {name: _function_rule(FUNCTIONS[name], name) for name in FUNCTIONS
                                      if name in ELEMENTWISE}

DIFFERENTIAL_RULES = RuleSet("differential rules", [
    _rule("sum", "d(A + B) -> dA + dB", Add, lambda e, ds: add(*ds), ("A x + b", "x")),
    _rule("product", "d(A B) -> dA B + A dB", MatMul, _leibniz(mul), ("x^T A x", "x")),
    _rule("transpose", "d(A^T) -> (dA)^T", Transpose, lambda e, ds: transpose(ds[0]), ("a^T X^T b", "X")),
    _rule("hadamard", "d(A .* B) -> dA .* B + A .* dB", Hadamard, _leibniz(hadamard), ("x .* (A x)", "x")),
    _rule("quotient", "d(A ./ B) -> dA ./ B - (A ./ B.^2) .* dB", ElemDiv, _elem_div_rule, ("x ./ (A x)", "x")),
    _rule("power", "d(a^p) -> p a^(p-1) da + a^p log(a) dp;  d(X^k) -> sum_i X^i dX X^(k-1-i)", Power, _power_rule,
          ("(a^T X b)^3 + tr(X^3)", "X")),
    _rule("elementwise power", "d(A.^p) -> p A.^(p-1) .* dA + dp A.^p .* log(A)", ElemPower, _elem_power_rule,
          ("sum(x .^ 3)", "x")),
    Rule("elementwise function", "d f(A) -> f'(A) .* dA (see ELEMENTWISE_RULES)", tuple(sorted(ELEMENTWISE)),
         _elementwise_rule, ("sin(A x)", "x")),
    *(_function_rule(spec, spec.cited_as) for spec in FUNCTIONS.values()
      if spec.differential is not None and spec.name not in ELEMENTWISE),  # one rule per function, from its spec
    _rule("Kronecker product", "d(A ⊗ B) -> dA ⊗ B + A ⊗ dB", ir.Kron, _leibniz(ir.kron), ("sum(kron(x, A x))", "x")),
])


def _leaf_differential(e: Expr, variable: Var) -> Expr | None:
    """Leaves: dX for the variable, 0 for every other leaf."""
    if isinstance(e, Var):
        return Differential(variable) if e.name == variable.name else ir.zeros(e.shape)
    if isinstance(e, Num | Fill | Identity | ir.Size | ir.Commutation | ir.Constant):
        return ir.zeros(e.shape)
    return None


def differential(e: Expr, variable: Var, used: list[str] | None = None) -> Expr:
    """df for f = e: linear in Differential(variable). `used` collects the names of the rules applied.

    One pass over the distinct nodes of e, children first (ir.postorder), each node's differential
    built from its children's: no recursion, and a node shared by several parents is differentiated once.
    """
    memo: dict[int, Expr] = {}  # id of a node of e (alive as long as e) -> its differential
    written = 0
    order = ir.postorder(e)
    budget = max(MAX_DIFFERENTIAL_SIZE, 4 * len(order))  # a long input may write a long result
    for node in order:
        leaf = _leaf_differential(node, variable)
        if leaf is not None:
            memo[id(node)] = leaf
            continue
        child_ds = tuple(memo[id(child)] for child in node.children)
        if all(ir.is_zero(cd) for cd in child_ds):
            memo[id(node)] = ir.zeros(node.shape)
            continue
        if isinstance(node, MatMul | Hadamard):  # the product rule's k terms of m factors
            terms = len(leibniz_terms(node, child_ds))
            if terms > 1:
                written += terms * len(node.children)
        if written > budget:
            raise UnsupportedError(f"the derivative is too large to write: its differential would have more "
                                   f"than {budget:,} factors (a product of many factors "
                                   f"that all hold {variable.name})")
        rule = DIFFERENTIAL_RULES.first(node)
        assert rule is not None, f"no differential rule for {node!r}"
        if used is not None and rule.name not in used:
            used.append(rule.name)
        memo[id(node)] = rule.build(node, child_ds)
    return memo[id(e)]
