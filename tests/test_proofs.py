"""Proofs of networks (issue 16): line by line at high precision, sound both ways, with time limits that a loaded
machine meets many times over."""

from __future__ import annotations

from networks import mlp_program

import matcalc
from matcalc.backends import verify

README_PROGRAM = "h1 = tanh(W1 x); h2 = tanh(W2 h1); L = sum(h2)"
GENEROUS = 600.0  # seconds: the proofs below take about one on a quiet machine


def test_the_readme_program_is_proven_line_by_line():
    d = matcalc.diff(README_PROGRAM, "W1")
    assert verify.proof_method(d.function, d.expr) == "lines"
    report = d.verify(timeout=GENEROUS)
    assert report, str(report)
    assert "to 40 digits" in str(report)


def test_a_polynomial_is_still_proven_exactly():
    d = matcalc.diff("x^T A x", "x")
    assert verify.proof_method(d.function, d.expr) == "exact"
    assert str(d.verify(timeout=GENEROUS)).startswith("verified: all 5 entries match SymPy exactly")


def test_a_wrong_program_derivative_is_refuted_line_by_line():
    wrong = "((W2^T (1 - tanh(W2 tanh(W1 x)).^2)) .* (1 - tanh(W1 x).^3)) x^T"  # .^3 for .^2
    result = matcalc.check(README_PROGRAM, "W1", wrong, timeout=GENEROUS)
    assert not result and "NOT verified" in str(result)


def test_the_printed_program_is_accepted_as_a_candidate():
    d = matcalc.diff(README_PROGRAM, "W1")
    assert matcalc.check(README_PROGRAM, "W1", str(d), timeout=GENEROUS)


def test_a_large_variable_is_checked_along_random_directions():
    program = mlp_program(6).replace("\n", "; ")
    d = matcalc.diff(program, "W1")
    report = d.verify(timeout=GENEROUS)
    assert report and report.directions > 0, str(report)
    assert "derivatives along random directions" in str(report)


def test_a_wrong_derivative_of_a_large_variable_is_refuted_along_directions():
    program = mlp_program(6).replace("\n", "; ")
    d = matcalc.diff(program, "W1")
    wrong = matcalc.parse(f"2 ({d.expr})", where=d.where, shape=d.shape)
    report = verify.verify_derivative(d.function, d.variable, wrong, d._verified_kind, timeout=GENEROUS)
    assert not report and report.mismatches, str(report)


def test_a_point_on_a_kink_never_calls_a_right_answer_wrong():
    expr = "sum(relu(1.0 - v .* (0.5 W1 y)))"
    assert matcalc.check(expr, "v", str(matcalc.diff(expr, "v")), timeout=GENEROUS)


def test_the_exact_method_can_still_be_asked_for():
    d = matcalc.diff("sum(tanh(W x))", "W")
    assert verify.proof_method(d.function, d.expr) == "exact"
    assert d.verify(method="lines", timeout=GENEROUS)
    assert str(d.verify(method="exact", timeout=GENEROUS)).endswith(")")


def test_a_saturated_layer_is_not_misjudged():
    # tanh(20 x) saturates at the positive points: 1 - tanh^2 is about 1e-17 there, a cancellation
    d = matcalc.diff("h = tanh(20 W x); L = sum(tanh(h))", "W")
    assert d.verify(method="lines", timeout=GENEROUS)
    wrong = matcalc.parse(f"1.000001 ({d.expr})", where=d.where, shape=d.shape)
    assert not verify.verify_derivative(d.function, d.variable, wrong, "gradient", timeout=GENEROUS, method="lines")
