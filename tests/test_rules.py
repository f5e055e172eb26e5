"""Every rule of every table, proven on its own against an independent numeric oracle."""

import numpy as np
import pytest
from oracles import assert_matches_finite_differences, evaluate_expr, random_values

import matcalc
from matcalc.differentiate import DIFFERENTIAL_RULES, ELEMENTWISE_RULES
from matcalc.errors import RewriteCycleError
from matcalc.functions import ELEMENTWISE
from matcalc.ir import Add, Expr, Var
from matcalc.rewrite import RewriteRule, apply_once, normalize
from matcalc.simplify import SIMPLIFY_RULES, simplify

# ---------------------------------------------------------------- simplification rules


@pytest.mark.parametrize("rule", SIMPLIFY_RULES, ids=[r.name for r in SIMPLIFY_RULES])
def test_rewrite_rule_fires_on_its_example_and_preserves_values(rule: RewriteRule):
    before = matcalc.parse(rule.example, where=rule.where or None)
    after = apply_once(before, rule)
    assert after is not None, f"{rule.name} does not fire on its example {rule.example}"
    assert after.shape == before.shape
    for seed in range(3):
        values = random_values([before, after], seed=seed)
        np.testing.assert_allclose(evaluate_expr(after, values), evaluate_expr(before, values), rtol=1e-10, atol=1e-12,
                                   err_msg=f"{rule}: {before} -> {after}")


def test_rule_table_is_data_with_unique_names_and_statements():
    names = [r.name for r in SIMPLIFY_RULES] + [r.name for r in DIFFERENTIAL_RULES]
    assert len(names) == len(set(names))
    for r in SIMPLIFY_RULES + DIFFERENTIAL_RULES:
        assert "->" in r.statement, r.name
    assert all(str(r).startswith(r.name) for r in SIMPLIFY_RULES)


def test_simplification_is_idempotent_on_every_rule_example():
    for r in SIMPLIFY_RULES:
        e = simplify(matcalc.parse(r.example, where=r.where or None))
        assert simplify(e) == e, r.name


# ---------------------------------------------------------------- differential rules


@pytest.mark.parametrize("rule", DIFFERENTIAL_RULES, ids=[r.name for r in DIFFERENTIAL_RULES])
def test_differential_rule_matches_finite_differences_and_sympy(rule):
    expr, var = rule.example
    d = matcalc.diff(expr, var)
    assert rule.name in d.steps[1].rules, f"the example of {rule.name} does not use it"
    assert_matches_finite_differences(d)
    report = d.verify()
    assert report, str(report)


def test_every_elementwise_function_has_a_derivative_rule():
    assert set(ELEMENTWISE_RULES) == set(ELEMENTWISE)


@pytest.mark.parametrize("name", sorted(ELEMENTWISE_RULES))
def test_elementwise_derivative_matches_finite_differences_and_sympy(name):
    # arguments in (0.25, 0.75): inside every function's domain, away from kinks at 0
    d = matcalc.diff(f"{name}(0.5 x)", "x")
    assert_matches_finite_differences(d)
    report = d.verify()
    assert report, str(report)


# ---------------------------------------------------------------- the strategy terminates


def _swap_sum(e: Expr) -> Expr | None:
    return Add(tuple(reversed(e.terms))) if isinstance(e, Add) else None


def _grow(e: Expr) -> Expr | None:
    return matcalc.ir.mul(matcalc.ir.num(2), e) if isinstance(e, Var) else None


def test_a_cycle_in_the_rules_is_an_error_not_a_hang():
    cyclic = [RewriteRule("swap", "a + b -> b + a", _swap_sum, "x + y")]
    with pytest.raises(RewriteCycleError):
        normalize(matcalc.parse("x + y"), cyclic)


def test_a_runaway_rule_stops_at_the_cap():
    runaway = [RewriteRule("grow", "x -> 2 x", _grow, "x")]
    with pytest.raises(RewriteCycleError):
        normalize(matcalc.parse("x"), runaway, max_rewrites=50)
