"""The named constants (core/constants.py: pi): each parses as its reserved leaf, prints and parses back, has the
differential 0, evaluates to its float64 value, is proven with its exact SymPy value, and generated code computes
with it; declaring, defining or differentiating with respect to its name is an error that names it."""

from __future__ import annotations

import math

import numpy as np
import pytest
import sympy as sp
from oracles import refuted
from test_codegen import INSTALLED_BACKENDS, generated_value, values_for
from test_derivatives import assert_proven

import matcalc
from matcalc.cli import EXAMPLES
from matcalc.core import ir
from matcalc.core.constants import CONSTANTS

# (expression, variable, its derivative as printed)
CASES = [
    ("pi x", "x", "pi I"),
    ("pi^2 alpha", "alpha", "pi^2"),
    ("x^T x / pi", "x", "2 x / pi"),
    ("sin(pi x)", "x", "pi diag(cos(pi x))"),
    ("sum(exp(-x.^2)) / sqrt(pi)", "x", None),
    ("alpha^pi", "alpha", "pi alpha^(pi - 1)"),
    ("sum(x.^pi)", "x", "pi x.^(pi - 1)"),
    ("tr(pi X A)", "X", "pi A^T"),
    ("pi (x + a)", "x", "pi I"),  # a product needs the space (or *): pi(x + a) would be a call
]


def test_every_constant_is_a_reserved_name_of_the_ir():
    assert set(CONSTANTS) <= ir.RESERVED_NAMES
    for name, spec in CONSTANTS.items():
        assert spec.name == name and spec.meaning and spec.latex


@pytest.mark.parametrize("name", list(CONSTANTS))
def test_a_constant_parses_as_its_leaf_and_prints_as_its_name(name):
    e = matcalc.parse(name)
    assert e == ir.Constant(name) and e.is_scalar
    assert str(e) == name
    assert matcalc.parse(f"2 {name} x") == ir.mul(ir.num(2), ir.Constant(name), ir.Var("x", ("n", 1)))


@pytest.mark.parametrize(("expr", "var", "expected"), CASES, ids=[f"d({e})/d{v}" for e, v, _ in CASES])
def test_derivatives_through_pi_match_finite_differences_and_are_proven(expr, var, expected):
    d = matcalc.diff(expr, var)
    if expected is not None:
        assert str(d) == expected
    assert_proven(d)


@pytest.mark.parametrize(("expr", "var", "expected"), CASES, ids=[f"d({e})/d{v}" for e, v, _ in CASES])
def test_printed_results_through_pi_parse_back_to_the_same_tree(expr, var, expected):
    d = matcalc.diff(expr, var)
    assert matcalc.parse(str(d), where=d.where, shape=d.body.shape) == d.expr
    assert matcalc.parse(expr) == matcalc.parse(str(matcalc.parse(expr)))


def test_the_differential_of_pi_is_zero():
    d = matcalc.diff("pi", "x", where="x: vector")
    assert str(d) == "vector(0)"
    assert "pi" not in str(matcalc.diff("pi + x^T x", "x"))


def test_pi_evaluates_to_float64_pi_and_sympy_proves_with_exact_pi():
    d = matcalc.diff("pi x", "x")
    np.testing.assert_allclose(d.evaluate({"x": np.ones(3)}), math.pi * np.eye(3), rtol=0, atol=0)
    from matcalc.backends.verify import SympyBackend

    assert SympyBackend().named_constant("pi")[0, 0] is sp.pi


def test_a_wrong_candidate_off_by_a_rational_approximation_of_pi_is_caught():
    assert matcalc.check("pi x^T x", "x", "2 pi x")
    assert refuted(matcalc.check("pi x^T x", "x", "2 3.14159 x"))


def test_latex_writes_pi():
    assert matcalc.diff("pi x", "x").latex().endswith(r"= \pi \, I")
    assert r"\sqrt{\pi}" in matcalc.diff("sum(x) / sqrt(pi)", "x").latex()


@pytest.mark.parametrize("backend", INSTALLED_BACKENDS)
@pytest.mark.parametrize(("expr", "var", "expected"), CASES, ids=[f"d({e})/d{v}" for e, v, _ in CASES])
def test_generated_code_through_pi_computes_what_evaluate_computes(backend, expr, var, expected):
    d = matcalc.diff(expr, var)
    assert {"numpy": "np.pi", "jax": "jnp.pi", "torch": "torch.pi"}[backend] in d.to_code(backend) or "pi" not in str(d)
    values = values_for(d)
    np.testing.assert_allclose(generated_value(d, backend, values), d.evaluate(values), rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize(("call", "message"), [
    (lambda: matcalc.diff("pi x", "x", where="pi: scalar"), "'pi' is reserved for the constant pi"),
    (lambda: matcalc.diff("pi x", "x", where={"pi": "scalar"}), "'pi' is reserved for the constant pi"),
    (lambda: matcalc.diff("x", "x", where="pi: dim"), "'pi' is reserved for the constant pi"),
    (lambda: matcalc.diff("pi = 3; pi x", "x"), "'pi' is reserved for the constant pi and cannot be defined"),
    (lambda: matcalc.diff("a = x; pi = a; pi", "x"), "'pi' is reserved for the constant pi and cannot be defined"),
    (lambda: matcalc.diff("pi x", "pi"), "'pi' is a constant, not a variable"),
], ids=["declared", "declared in a dict", "declared a dimension", "defined", "defined later", "differentiated"])
def test_the_name_pi_is_reserved(call, message):
    with pytest.raises(matcalc.MatcalcError, match=message):
        call()


def test_a_declaration_of_pi_is_a_declaration_error_and_a_definition_a_parse_error():
    with pytest.raises(matcalc.DeclarationError):
        matcalc.parse("pi x", where="pi: scalar")
    with pytest.raises(matcalc.ParseError):
        matcalc.diff("pi = 3; pi x", "x")


def test_the_cli_help_lists_every_constant():
    listed = " ".join(EXAMPLES.split())
    assert all(f" {name}." in listed or f" {name} " in listed for name in CONSTANTS)
