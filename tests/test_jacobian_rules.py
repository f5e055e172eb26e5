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
from oracles import assert_matches_finite_differences, evaluate_expr, random_values

import matcalc
from matcalc.calculus.differential import differential
from matcalc.calculus.jacobian import READING_RULES, jacobian_from_differential
from matcalc.core import ir
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
