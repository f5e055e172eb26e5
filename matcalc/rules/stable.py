"""The numerically stable forms: rewrites that are equal in exact arithmetic and no worse in float64.

NumPy evaluation and generated code evaluate an expression's *evaluation plan*, the expression with these
rules applied (backends/interpret.evaluation_plan); the printed result is never rewritten by them.
"""

from __future__ import annotations

from collections.abc import Callable
from fractions import Fraction

from ..core import ir
from ..core.ir import Add, ElemDiv, Expr, Func, MatMul, Num
from .rule import RuleSet

STABLE_FORMS = RuleSet("stable forms")
stable_form = STABLE_FORMS.rule
MINUS_ONE = Num(Fraction(-1))


def _call(e: Expr, name: str) -> Expr | None:
    """The argument of e when e is name(argument), of the whole argument (no axis)."""
    return e.arg if isinstance(e, Func) and e.name == name and not e.axis else None


def _one_plus_exp(u: Expr) -> list[Expr]:
    """1 + exp(u), in both orders of the sum."""
    one, exp = ir.ones(u.shape), Func("exp", u)
    return [Add((one, exp)), Add((exp, one))]


def _exp_over(e: Expr, denominators: Callable[[Expr], list[Expr]], replace: Callable[[Expr], Expr]) -> Expr | None:
    """exp(u) / D(u) -> replace(u), as exp(u) ./ D(u) or in a product holding exp(u) and D(u)^-1."""
    if isinstance(e, ElemDiv):
        u = _call(e.numerator, "exp")
        return replace(u) if u is not None and e.denominator in denominators(u) else None
    if not isinstance(e, MatMul):
        return None
    # the divisors by their base: one lookup per exp(u) factor keeps the rule linear in the product's length
    reciprocals = {f.base: i for i, f in enumerate(e.factors) if ir.is_reciprocal(f) and f.exponent == MINUS_ONE}
    if not reciprocals:
        return None
    for i, factor in enumerate(e.factors):
        u = _call(factor, "exp")
        j = next((reciprocals[d] for d in denominators(u) if d in reciprocals), None) if u is not None else None
        if j is not None:
            return ir.mul(*[replace(u) if k == i else f for k, f in enumerate(e.factors) if k != j])
    return None


@stable_form("stable one minus sigmoid", "1 - sigmoid(u) -> sigmoid(-u)", "1 - sigmoid(x)", on=(Add,))
def _one_minus_sigmoid(e: Expr) -> Expr | None:
    if not any(ir.is_ones(t) for t in e.children):
        return None
    for i, term in enumerate(e.children):
        if isinstance(term, MatMul) and len(term.factors) == 2 and term.factors[0] == MINUS_ONE:
            u = _call(term.factors[1], "sigmoid")
            if u is not None:
                one = next(k for k, t in enumerate(e.children) if ir.is_ones(t))
                rest = [t for k, t in enumerate(e.children) if k not in (i, one)]
                return ir.add(ir.func("sigmoid", ir.neg(u)), *rest)
    return None


@stable_form("stable log sigmoid", "log(sigmoid(u)) -> -softplus(-u)", "log(sigmoid(x))", on=("log",))
def _log_sigmoid(e: Expr) -> Expr | None:
    u = _call(e.arg, "sigmoid")
    return ir.neg(ir.func("softplus", ir.neg(u))) if u is not None else None


@stable_form("stable softplus", "log(1 + exp(u)) -> softplus(u)", "log(1 + exp(x))", on=("log",))
def _softplus(e: Expr) -> Expr | None:
    inner = e.arg
    if not isinstance(inner, Add) or len(inner.terms) != 2:
        return None
    for term in inner.terms:
        u = _call(term, "exp")
        if u is not None and inner in _one_plus_exp(u):
            return ir.func("softplus", u)
    return None


@stable_form("stable sigmoid", "exp(u) / (1 + exp(u)) -> sigmoid(u)", "exp(x) ./ (1 + exp(x))", on=(ElemDiv, MatMul))
def _sigmoid_of_exp(e: Expr) -> Expr | None:
    return _exp_over(e, _one_plus_exp, lambda u: ir.func("sigmoid", u))


@stable_form("stable softmax", "exp(u) / sum(exp(u)) -> softmax(u)", "exp(x) / sum(exp(x))", on=(ElemDiv, MatMul))
def _softmax_of_exp(e: Expr) -> Expr | None:
    return _exp_over(e, lambda u: [Func("sum", Func("exp", u))], lambda u: ir.func("softmax", u))


@stable_form("stable logsumexp", "log(sum(exp(u))) -> logsumexp(u)", "log(sum(exp(x)))", on=("log",))
def _logsumexp_of_exp(e: Expr) -> Expr | None:
    inner = _call(e.arg, "sum")
    u = _call(inner, "exp") if inner is not None else None
    return ir.func("logsumexp", u) if u is not None else None


@stable_form("stable log softmax", "log(softmax(u)) -> u - logsumexp(u);  "
             "log(softmax(U, 1)) -> U - vector(1) logsumexp(U, 1)", "log(softmax(x))", on=("log",))
def _log_softmax(e: Expr) -> Expr | None:
    inner = e.arg
    if not (isinstance(inner, Func) and inner.name == "softmax"):
        return None
    u, axis = inner.arg, inner.axis
    lse = ir.func("logsumexp", u, axis)
    if axis == 1:  # each column's logsumexp, a row, down its column
        return ir.sub(u, ir.mul(ir.ones((u.shape[0], 1)), lse))
    if axis == 2:
        return ir.sub(u, ir.mul(lse, ir.transpose(ir.ones((u.shape[1], 1)))))
    return ir.sub(u, ir.mul(lse, ir.ones(u.shape)))
