"""Each rule of the Jacobian reader, on one input, against numbers.

The reading rules (calculus/jacobian.py) read J off t = J dx one level at a time; the equal forms
(rules/jacobian.py) rewrite a level the reader cannot read as it stands. For each rule, its example's
Jacobian uses it (a reading rule is named among those the reader applied; an equal form fires on a node of
the example's differential), and the Jacobian matches central finite differences. The equal forms are also
checked on their own: at every node of the differential where one fires, both sides have equal values with
a random direction put for dx.
"""

from __future__ import annotations

import numpy as np
import pytest
from generate import derivative_of_an_instance
from oracles import (
    assert_matches_finite_differences,
    close_to_finite_differences,
    evaluate_expr,
    random_values,
    well_defined,
)
from tally import TALLY

import matcalc
from matcalc.calculus.differential import differential
from matcalc.calculus.jacobian import READING_RULES, jacobian_from_differential
from matcalc.core import ir
from matcalc.core.errors import UnsupportedError
from matcalc.core.ir import Differential, Var
from matcalc.rules.jacobian import DIAGONAL_FORMS, FACTOR_FORMS


def _example(rule):
    text, name = rule.example
    f = matcalc.parse(text, where=rule.where or None)
    # a function free of its variable (the rule "free of dx") still names it in the declarations: a column
    variable = ir.variables(f).get(name) or Var(name, (f.shape[0], 1))
    return text, name, f, variable


@pytest.mark.parametrize("rule", READING_RULES, ids=lambda rule: rule.name)
def test_reading_rule_is_used_on_its_example_and_the_jacobian_matches_finite_differences(rule):
    text, name, f, variable = _example(rule)
    used: list[str] = []
    jacobian_from_differential(differential(f, variable), variable.shape[0], used)
    assert rule.name in used, f"{rule.name} is not used on {text}: {used}"
    if name in ir.variables(f):
        assert_matches_finite_differences(matcalc.diff(text, name, where=rule.where or None))


@pytest.mark.parametrize("rule", [*FACTOR_FORMS, *DIAGONAL_FORMS], ids=lambda rule: rule.name)
def test_equal_form_fires_on_its_example_keeps_values_and_the_jacobian_matches(rule):
    text, name, f, variable = _example(rule)
    df = differential(f, variable)
    direction = Var("E", variable.shape)
    fired = 0
    for node in ir.walk(df):
        if not ir.contains_differential(node):  # the forms are written for the nodes holding dx
            continue
        out = rule.apply(node)
        if out is None:
            continue
        fired += 1
        before, after = (ir.substitute(side, {Differential(variable): direction}) for side in (node, out))
        for seed in range(2):
            values = random_values([f, before, after], seed=seed)
            np.testing.assert_allclose(evaluate_expr(after, values), evaluate_expr(before, values), rtol=1e-10,
                                       atol=1e-12, err_msg=f"{rule}: {node} -> {out}")
    assert fired, f"{rule.name} does not fire on the differential of {text}: {df}"
    used: list[str] = []
    jacobian_from_differential(df, variable.shape[0], used)  # the reader gets through the example
    assert_matches_finite_differences(matcalc.diff(text, name, where=rule.where or None))


def test_every_rule_of_the_reader_is_named_once():
    names = [rule.name for rule in [*READING_RULES, *FACTOR_FORMS, *DIAGONAL_FORMS]]
    assert len(names) == len(set(names))


# ---------------------------------------------------------------- random instances

INSTANCES = 12


def _fires_in(rule, df) -> bool:
    """Whether an equal form fires at a node of df that holds dx (where the reader asks it)."""
    return any(rule.apply(node) is not None for node in ir.walk(df) if ir.contains_differential(node))


def check_jacobian_rule_on_random_instances(rule, count: int) -> int:
    """The rule's example with every other variable replaced by a random expression of its shape: wherever the
    reader uses the rule, the Jacobian must match central finite differences."""
    text, name = rule.example
    pattern = matcalc.parse(text, where=rule.where or None)
    if name not in ir.variables(pattern):
        return 0
    reading = rule in list(READING_RULES)
    checked = 0
    for seed in range(count):
        found = derivative_of_an_instance(pattern, name, seed, refusals=(UnsupportedError,))
        if found is None:
            continue  # the random part uses the name with another shape, or leaves the reader's reach
        d, drawn = found
        f = d.function
        variable = ir.variables(f).get(name)
        if variable is None or not ir.is_column(f.shape) or not ir.is_column(variable.shape):
            continue
        df = differential(f, variable)
        used: list[str] = []
        jacobian_from_differential(df, variable.shape[0], used)
        if not (rule.name in used if reading else _fires_in(rule, df)):
            continue
        values = random_values([f], seed=seed, sizes=drawn.sizes)
        if not well_defined(f, values):
            continue
        checked += 1
        with np.errstate(all="ignore"):
            assert close_to_finite_differences(d, values), f"{rule.name}: d/d{name} {f} = {d}"
    return checked


@pytest.mark.parametrize("rule", [*READING_RULES, *FACTOR_FORMS, *DIAGONAL_FORMS], ids=lambda rule: rule.name)
def test_jacobian_rule_matches_finite_differences_on_random_instances(rule):
    checked = check_jacobian_rule_on_random_instances(rule, INSTANCES)
    TALLY["random Jacobian-reader rule instances checked"] += checked
    if rule.name not in ONLY_ON_THEIR_EXAMPLE:
        assert checked >= INSTANCES // 3, f"{rule.name} was used on only {checked} of {INSTANCES} random instances"


# The reader meets these only where diff does not send it: a function free of its variable, a 1 x 1 function
# (read by the gradient reader); their examples call the reader directly (above).
ONLY_ON_THEIR_EXAMPLE = {"free of dx", "scalar"}
