"""Every rule of every table, proven on its own against an independent numeric oracle."""

import random

import numpy as np
import pytest
from generate import RandomChooser, derivative_of_an_instance, instantiate
from oracles import (
    assert_matches_finite_differences,
    close_to_finite_differences,
    evaluate_expr,
    random_values,
    well_defined,
)
from tally import TALLY

import matcalc
from matcalc.calculus.differential import DIFFERENTIAL_RULES, ELEMENTWISE_RULES
from matcalc.core.errors import RewriteCycleError
from matcalc.core.functions import ELEMENTWISE
from matcalc.core.ir import Add, Expr, Var
from matcalc.rules.rule import Rule
from matcalc.rules.simplify import SIMPLIFY_RULES, simplify
from matcalc.rules.strategy import apply_once, normalize

# ---------------------------------------------------------------- simplification rules


@pytest.mark.parametrize("rule", SIMPLIFY_RULES, ids=[r.name for r in SIMPLIFY_RULES])
def test_rewrite_rule_fires_on_its_example_and_preserves_values(rule: Rule):
    before = matcalc.parse(rule.example, where=rule.where or None)
    after = apply_once(before, rule)
    assert after is not None, f"{rule.name} does not fire on its example {rule.example}"
    assert after.shape == before.shape
    for seed in range(3):
        values = random_values([before, after], seed=seed)
        np.testing.assert_allclose(evaluate_expr(after, values), evaluate_expr(before, values), rtol=1e-10, atol=1e-12,
                                   err_msg=f"{rule}: {before} -> {after}")


INSTANCES = 12  # random instances of each rule in the normal run
LONG_INSTANCES = 300


def check_rule_on_random_instances(rule: Rule, count: int) -> None:
    """Each variable of the rule's pattern (its example) is replaced by a random expression of its shape
    that keeps the rule's guard (symmetric stays symmetric) and its domain (inv gets an invertible
    matrix); wherever the rule fires, both sides must be equal at random points and sizes."""
    pattern = matcalc.parse(rule.example, where=rule.where or None)
    fired = 0
    for seed in range(count):
        drawn = instantiate(pattern, RandomChooser(random.Random(seed)))
        instance, sizes = drawn.expr, drawn.sizes
        rewritten = apply_once(instance, rule)
        if rewritten is None:
            continue
        values = random_values([instance, rewritten], seed=seed, sizes=sizes)
        if not well_defined(instance, values):
            continue
        fired += 1
        before, after = evaluate_expr(instance, values), evaluate_expr(rewritten, values, (instance,))
        scale = max(1.0, float(np.max(np.abs(before))))
        np.testing.assert_allclose(after, before, rtol=1e-9, atol=1e-9 * scale,
                                   err_msg=f"{rule}: {instance} -> {rewritten} (sizes {sizes})")
    TALLY["random rule instances proven equal"] += fired
    assert fired >= count // 3, f"{rule.name} fired on only {fired} of {count} random instances"


@pytest.mark.parametrize("rule", SIMPLIFY_RULES, ids=[r.name for r in SIMPLIFY_RULES])
def test_rewrite_rule_is_sound_on_random_instances(rule: Rule):
    check_rule_on_random_instances(rule, INSTANCES)
    TALLY[f"rewrite rules proven sound (of {len(SIMPLIFY_RULES)})"] += 1


@pytest.mark.slow
@pytest.mark.parametrize("rule", SIMPLIFY_RULES, ids=[r.name for r in SIMPLIFY_RULES])
def test_long_run_rewrite_rule_is_sound(rule: Rule):
    check_rule_on_random_instances(rule, LONG_INSTANCES)


def test_rule_table_is_data_with_unique_names_and_statements():
    names = [r.name for r in SIMPLIFY_RULES] + [r.name for r in DIFFERENTIAL_RULES]
    assert len(names) == len(set(names))
    for r in [*SIMPLIFY_RULES, *DIFFERENTIAL_RULES]:
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


def check_differential_rule_on_random_instances(rule: Rule, count: int) -> None:
    """The rule's example with every other variable replaced by a random expression: wherever the rule is
    used, the derivative must match finite differences."""
    expr, name = rule.example
    pattern = matcalc.parse(expr)
    checked = 0
    for seed in range(count):
        found = derivative_of_an_instance(pattern, name, seed)
        if found is None:
            continue  # the random part uses the variable's name with another shape
        d, drawn = found
        values = random_values([d.function], seed=seed, sizes=drawn.sizes)
        if rule.name not in d.steps[1].rules or not well_defined(d.function, values):
            continue
        checked += 1
        with np.errstate(all="ignore"):
            assert close_to_finite_differences(d, values), f"{rule.name}: d/d{name} {d.function} = {d}"
    TALLY["random differential rule instances checked"] += checked
    assert checked >= count // 3, f"{rule.name} was used on only {checked} of {count} random instances"


@pytest.mark.parametrize("rule", DIFFERENTIAL_RULES, ids=[r.name for r in DIFFERENTIAL_RULES])
def test_differential_rule_matches_finite_differences_on_random_instances(rule):
    check_differential_rule_on_random_instances(rule, INSTANCES)


@pytest.mark.slow
@pytest.mark.parametrize("rule", DIFFERENTIAL_RULES, ids=[r.name for r in DIFFERENTIAL_RULES])
def test_long_run_differential_rule(rule):
    check_differential_rule_on_random_instances(rule, LONG_INSTANCES)


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
    return matcalc.core.ir.mul(matcalc.core.ir.num(2), e) if isinstance(e, Var) else None


def test_a_cycle_in_the_rules_is_an_error_not_a_hang():
    cyclic = [Rule("swap", "a + b -> b + a", (Add,), _swap_sum, "x + y")]
    with pytest.raises(RewriteCycleError):
        normalize(matcalc.parse("x + y"), cyclic)


def test_a_runaway_rule_stops_at_the_cap():
    runaway = [Rule("grow", "x -> 2 x", (Var,), _grow, "x")]
    with pytest.raises(RewriteCycleError):
        normalize(matcalc.parse("x"), runaway, max_rewrites=50)
