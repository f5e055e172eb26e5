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
