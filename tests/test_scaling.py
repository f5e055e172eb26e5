"""Work linear in the input (issue 7), counted rather than timed: timings go in benchmarks/scaling.py.

The counter is the number of nodes that structural equality compares field by field
(`Expr._key`): a dict lookup among colliding hashes, or between equal trees that are distinct
objects, compares node after node, and that is where the quadratic steps of issue 7 spent their
time. Doubling the input must (about) double the count; each example's derivative is also
checked against finite differences, so that the work saved is not work skipped.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest
from oracles import assert_matches_finite_differences, random_values

import matcalc
from matcalc.calculus.differential import MAX_LEIBNIZ_TERMS, differential
from matcalc.core import ir
from matcalc.core.ir import Expr, Power, Var, num

LINEAR = 2.5  # the largest count(2k) / count(k) taken as linear growth


def comparisons(monkeypatch: pytest.MonkeyPatch, run: Callable[[], object]) -> int:
    """How many nodes structural equality compares field by field while `run` runs."""
    count = 0
    key = Expr._key

    def counted(self: Expr) -> tuple:
        nonlocal count
        count += 1
        return key(self)

    with monkeypatch.context() as patch:
        patch.setattr(Expr, "_key", counted)
        run()
    return count


def quotient_chain(k: int, name: str) -> str:
    """The same scalar k times, joined by ./ : a product of k factors that all hold the variable."""
    return " ./ ".join([f"(norm2(vector(3) + ({name} + {name}) .* -{name})^2)"] * k)


def common_factors(k: int, prefix: str) -> str:
    """k pairs a_i^T A_i x + a_i^T B_i x: a gradient with k pairs of terms to factor, (A_i + B_i)^T a_i."""
    return " + ".join(f"{prefix}{i}^T {prefix.upper()}{i} x + {prefix}{i}^T {prefix.upper()}{i}B x" for i in range(k))


def test_a_quotient_chain_twice_as_long_costs_twice_the_comparisons(monkeypatch):
    # x^-1 and x^-2 shared a hash (hash(-1) == hash(-2) in CPython) and the product rule repeats
    # every factor as a distinct copy: both made each lookup compare whole trees
    short = comparisons(monkeypatch, lambda: matcalc.diff(quotient_chain(20, "u"), "u"))
    long = comparisons(monkeypatch, lambda: matcalc.diff(quotient_chain(40, "v"), "v"))
    assert long / short < LINEAR, f"{short:,} comparisons for 20 copies, {long:,} for 40"


def test_a_gradient_with_twice_as_many_common_factors_costs_twice_the_comparisons(monkeypatch):
    # factoring one common factor per rewrite rescanned the whole sum each time
    short = comparisons(monkeypatch, lambda: matcalc.diff(common_factors(20, "p"), "x"))
    long = comparisons(monkeypatch, lambda: matcalc.diff(common_factors(40, "q"), "x"))
    assert long / short < LINEAR, f"{short:,} comparisons for 20 pairs, {long:,} for 40"


def test_the_quotient_chain_derivative_matches_finite_differences():
    d = matcalc.diff(quotient_chain(3, "u"), "u")
    values = random_values([d.function, d.expr], seed=0)
    assert np.max(np.abs(d.evaluate(values))) > 1e-3  # far from 0: the comparison below can fail
    assert_matches_finite_differences(d)


def test_the_factored_gradient_matches_finite_differences():
    d = matcalc.diff(common_factors(4, "p"), "x")
    assert str(d).count("x") == 0 and str(d).count("+") == 7  # (P0 + P0B)^T p0 + ...: every pair factored
    assert_matches_finite_differences(d)


def test_the_hessian_of_nested_softmaxes_matches_finite_differences():
    # its gradient is a sum of hundreds of terms sharing a few factors
    h = matcalc.hessian("logsumexp(softmax(softmax(softmax(x))))", "x")
    assert_matches_finite_differences(h)


def test_minus_one_and_minus_two_hash_apart():
    x = Var("alpha", (1, 1))
    assert hash(num(-1)) != hash(num(-2))
    assert hash(Power(x, num(-1))) != hash(Power(x, num(-2)))


# ---------------------------------------------------------------- products of many factors holding the variable


def links(e: Expr) -> int:
    """The edges of e's DAG: what building and walking it costs (a shared node's children count once)."""
    return sum(len(node.children) for node in ir.walk(e))


def test_a_quotient_chain_twice_as_long_has_a_differential_twice_as_large():
    # the product rule wrote k terms of k factors; equal commuting factors now share one term (c copies: c times)
    sizes = {}
    for k in (500, 1_000):
        f = matcalc.parse(quotient_chain(k, "w"))
        sizes[k] = links(differential(f, Var("w", ("n", 1))))
    assert sizes[1_000] / sizes[500] < LINEAR, sizes


def test_a_hadamard_chain_of_2000_copies_is_differentiated_in_linear_size():
    sizes = {}
    for k in (1_000, 2_000):
        d = matcalc.diff(" .* ".join(["sin(x)"] * k), "x")  # refused before: more than 20,000 factors
        sizes[k] = (links(d.expr), len(str(d)))
    assert sizes[2_000][0] / sizes[1_000][0] < LINEAR and sizes[2_000][1] / sizes[1_000][1] < LINEAR, sizes


def test_a_quotient_chain_of_200_copies_is_no_longer_refused():
    # 200 terms of 200 factors were more than 20,000: the input was refused
    d = matcalc.diff(quotient_chain(200, "u"), "u")
    assert str(d) == "u_1 = 3 - 2 (u .* u)\n1584 (u_1 .* u) / norm2(u_1)^398"
    assert d.verify()


@pytest.mark.parametrize(("text", "wrt"), [
    ("sum(" + " .* ".join(["sin(x)", "cos(x)", "sin(x)"] * 4) + ")", "x"),  # 12 factors, 2 distinct
    (" ".join(["(a^T x)"] * 10) + " A x", "x"),  # 10 equal scalars and a chain factor that does not commute
    (" ./ ".join(["(1 + alpha^2)"] * 12), "alpha"),
    (" .* ".join(["x", "exp(x)"] * 5), "x"),  # a Jacobian: 10 factors, 2 distinct
])
def test_the_product_rule_past_its_term_limit_matches_finite_differences(text, wrt):
    f = matcalc.parse(text)
    variable = ir.variables(f)[wrt]
    product = max((n for n in ir.walk(f) if isinstance(n, ir.MatMul | ir.Hadamard)), key=lambda n: len(n.children))
    ds = tuple(differential(child, variable) for child in product.children)
    assert sum(not ir.is_zero(d) for d in ds) > MAX_LEIBNIZ_TERMS  # the grouped form is the one tested
    assert_matches_finite_differences(matcalc.diff(text, wrt))


def test_mul_appends_a_scalar_to_a_product_of_scalars_as_the_general_product_does():
    rng = np.random.default_rng(0)
    a, b = Var("alpha", ir.SCALAR), Var("beta", ir.SCALAR)
    pool = [a, b, ir.reciprocal(a), ir.power(b, num(-2)), ir.func("sin", a), ir.reciprocal(ir.func("exp", b)),
            num(3), num(-1), ir.mul(a, b), ir.zeros(ir.SCALAR)]
    for _ in range(400):
        factors = [pool[i] for i in rng.integers(0, len(pool), size=int(rng.integers(2, 7)))]
        product = ir.general_mul(*factors)
        unsorted = ir.MatMul((ir.reciprocal(a), a))  # not in normal form (as with_children may build): no shortcut
        for left in (product, unsorted):
            for right in pool:
                if isinstance(left, ir.MatMul):
                    assert ir.mul(left, right) is ir.general_mul(left, right), (left, right)
