"""Each adjoint identity of the gradient reader, on one input, against numbers: <S, t(E)> = sum_j <G_j, E>.

t is the differential of the example at a random point, linear in dX; E is a random direction substituted for
dX, S a random seed of t's shape, and G the adjoint the reader gives for dX. Both sides are evaluated with
NumPy, so a wrong identity (a missing transpose, a seed sent to the wrong child) shows as different numbers.
"""

from __future__ import annotations

import numpy as np
import pytest
from oracles import uniform_values

import matcalc
from matcalc.backends.interpret import evaluate_numpy
from matcalc.calculus.differential import differential
from matcalc.calculus.readers import ADJOINT_RULES, adjoints_of_linear
from matcalc.core import ir
from matcalc.core.ir import Differential, Var

SIZES = {"m": 2, "n": 3, "p": 4, "q": 5}


def test_every_adjoint_identity_has_an_example():
    # each rule carries its example: a function and a variable whose differential's root the rule applies to
    for rule in ADJOINT_RULES:
        text, name = rule.example
        assert name in ir.variables(matcalc.parse(text, where=rule.where)), rule.name


@pytest.mark.parametrize("rule", ADJOINT_RULES, ids=lambda rule: rule.name)
def test_adjoint_identity_matches_the_inner_product_numerically(rule):
    (text, name), where = rule.example, rule.where
    f = matcalc.parse(text, where=where)
    variable = ir.variables(f)[name]
    df = differential(f, variable)
    assert rule.applies(df), f"{rule.name} does not apply at the root of d({text}) = {df}"
    seed = Var("S", df.shape)
    gradient = ir.add(*adjoints_of_linear(df, seed)[name])
    direction = Var("E", variable.shape)
    along = ir.substitute(df, {Differential(variable): direction})
    names = {**ir.variables(f), "S": seed, "E": direction}
    values = uniform_values(names, SIZES, seed=7)
    left = ir.func("sum", ir.hadamard(seed, along)) if not along.is_scalar else ir.mul(seed, along)
    right = ir.func("sum", ir.hadamard(gradient, direction)) if not direction.is_scalar else ir.mul(gradient, direction)
    lhs, rhs = evaluate_numpy([left, right], values, names)
    np.testing.assert_allclose(np.asarray(lhs, dtype=float), np.asarray(rhs, dtype=float), rtol=1e-12)
