"""Each vec (Kronecker) identity of the tensor reader, on one input, against numbers: vec(t(E)) = J vec(E).

t is the differential of the example, linear in dX; E is a random direction substituted for dX and J the
matrix the reader gives (d vec(F) / d vec(X)^T). Both sides are evaluated with NumPy, so a wrong identity (a
swapped Kronecker factor, a missing commutation matrix) shows as different numbers.
"""

from __future__ import annotations

import numpy as np
import pytest
from oracles import uniform_values

import matcalc
from matcalc.backends.interpret import evaluate_numpy
from matcalc.calculus.differential import differential
from matcalc.calculus.readers import VEC_RULES, vec_jacobian
from matcalc.core import ir
from matcalc.core.ir import Differential, Var

SIZES = {"m": 2, "n": 3, "p": 4, "q": 5}


def test_every_vec_identity_has_an_example():
    # each rule carries its example: a function and a variable whose differential's root the rule applies to
    for rule in VEC_RULES:
        text, name = rule.example
        assert name in ir.variables(matcalc.parse(text, where=rule.where)), rule.name


@pytest.mark.parametrize("rule", VEC_RULES, ids=lambda rule: rule.name)
def test_vec_identity_matches_the_linear_map_numerically(rule):
    (text, name), where = rule.example, rule.where
    f = matcalc.parse(text, where=where)
    variable = ir.variables(f)[name]
    df = differential(f, variable)
    used: list[str] = []
    jacobian = vec_jacobian(df, variable, used)
    assert rule.name in used, f"{rule.name} is not used on d({text}) = {df}"
    direction = Var("E", variable.shape)
    along = ir.substitute(df, {Differential(variable): direction})
    names = {**ir.variables(f), "E": direction}
    values = uniform_values(names, SIZES, seed=11)
    lhs, rhs = evaluate_numpy([ir.vec(along), ir.mul(jacobian, ir.vec(direction))], values, names)
    np.testing.assert_allclose(np.asarray(lhs, dtype=float), np.asarray(rhs, dtype=float), rtol=1e-12)


def test_diag_of_a_vector_has_its_own_vec_identity():
    f = matcalc.parse("diag(x)", where="x: vector(n)")
    variable = ir.variables(f)["x"]
    jacobian = vec_jacobian(differential(f, variable), variable)
    (value,) = evaluate_numpy([jacobian], {"n": 3}, {})
    expected = np.zeros((9, 3))
    for i in range(3):
        expected[i + 3 * i, i] = 1.0  # vec(diag(x))[i + n i] = x_i
    np.testing.assert_allclose(value, expected)
