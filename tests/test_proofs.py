"""Proofs of networks (issue 16): line by line at high precision, sound both ways, with time limits that a loaded
machine meets many times over."""

from __future__ import annotations

import pytest
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


def test_a_softmax_along_an_axis_is_proven_line_by_line_and_sound():
    # one call along an axis is a softmax per column: as many transcendental values as a layer
    d = matcalc.diff("sum(Y .* log(softmax(Z, 1)))", "Z")
    assert verify.proof_method(d.function, d.expr) == "lines"
    assert d.verify(timeout=GENEROUS)
    wrong = matcalc.parse(f"1.000001 ({d.text(inline=True)})", where=d.where, shape=d.shape)
    assert not verify.verify_derivative(d.function, d.variable, wrong, "gradient", timeout=GENEROUS)


def test_a_saturated_layer_is_not_misjudged():
    # tanh(20 x) saturates at the positive points: 1 - tanh^2 is about 1e-17 there, a cancellation
    d = matcalc.diff("h = tanh(20 W x); L = sum(tanh(h))", "W")
    assert d.verify(method="lines", timeout=GENEROUS)
    wrong = matcalc.parse(f"1.000001 ({d.expr})", where=d.where, shape=d.shape)
    assert not verify.verify_derivative(d.function, d.variable, wrong, "gradient", timeout=GENEROUS, method="lines")


def test_a_function_that_cancels_to_zero_has_its_zero_derivative_proven():
    # y^T - y^T is 0 up to the roundings of y: its error is of y's size, not of the (zero) function's
    d = matcalc.diff("log(exp(x)) (y^T - y^T)", "x", where="x: vector(n); y: vector(n)")
    assert str(d) == "matrix(0)"
    assert d.verify(method="lines", timeout=GENEROUS)
    wrong = matcalc.parse("vector(1) y^T", where=d.where, shape=d.shape)
    assert not verify.verify_derivative(d.function, d.variable, wrong, d.kind, timeout=GENEROUS, method="lines")


def test_progress_is_reported_step_by_step_and_changes_nothing():
    """verify(progress=...) (issue 16, section 1): the callback sees each assignment of sizes and how many entries of
    how many are done; the report is the one verify gives without it."""
    d = matcalc.diff("x^T A x", "x")
    seen: list[tuple[dict, int, int, str, int, int]] = []
    report = d.verify(timeout=GENEROUS, progress=lambda p: seen.append(
        (dict(p.sizes), p.assignment, p.assignments, p.step, p.done, p.total)))
    assert str(report) == str(d.verify(timeout=GENEROUS))
    assert {(tuple(sizes.items()), assignment) for sizes, assignment, *_ in seen} == {((("n", 2),), 1),
                                                                                      ((("n", 3),), 2)}
    assert all(assignments == 2 and 0 <= done < max(total, 1) for _, _, assignments, _, done, total in seen)
    assert ("entries", 2, 3) in {(step, done, total) for *_, step, done, total in seen}  # the 3rd entry at n = 3


def test_progress_of_a_line_by_line_proof_names_its_precision():
    d = matcalc.diff(README_PROGRAM, "W1")
    texts: list[str] = []
    assert d.verify(timeout=GENEROUS, progress=lambda p: texts.append(str(p)))
    assert any("60 digits" in text and "directions" in text for text in texts), texts[-3:]
    assert texts[0].startswith("sizes p=2, n=3, m=4 (1 of 2), point 1")


def test_check_reports_progress_too():
    seen: list[str] = []
    assert matcalc.check("x^T A x", "x", "(A + A^T) x", timeout=GENEROUS, progress=lambda p: seen.append(p.step))
    assert "entries" in seen and "comparisons" in seen


def test_a_progress_that_is_not_a_function_is_a_clear_error():
    with pytest.raises(matcalc.UnsupportedError, match="progress must be a function"):
        matcalc.diff("x^T A x", "x").verify(progress="yes")


# ---------------------------------------------------------------- the oracle's forward mode

FORWARD_MODE_CASES = [("tr(A X^T B X C)", "X"), ("log(det(inv(X)))", "X"), ("norm2(V relu(W x) - y)^2", "W"),
                      ("softmax(W x)", "x"), ("sum(X ⊗ X)", "X"), ("x.^3 ./ (1 + x.^2)", "x"), ("det(X) inv(X) a", "X"),
                      ("sum(softmax(Z, 1) .* C)", "Z"), ("X^-2 a", "X"), ("(x^T x)^(3/2)", "x"),
                      # the partials of a meaning on symbols (logsumexp, diag, vec), and norm1's kink along the line
                      ("logsumexp(A x) + sum(diag(x x^T))", "x"), ("norm1(vec(X) - a) + sum(logsumexp(X, 2))", "X")]


@pytest.mark.parametrize(("expr", "var"), FORWARD_MODE_CASES)
def test_forward_mode_over_exact_values_gives_what_sympy_differentiating_along_the_line_gives(expr, var):
    """The oracle's first derivatives (DualBackend: exact values and tangents) equal SymPy's d/dt f(X0 + t E) at 0,
    the method they replaced, entry by entry and exactly, along every direction."""
    import random

    import sympy as sp

    d = matcalc.diff(expr, var)
    sizes = {name: 2 + i for i, name in enumerate(sorted(matcalc.core.ir.dimensions([d.function])))}
    rng = random.Random(1)
    variables = matcalc.core.ir.variables(d.function)
    values = {name: verify._random_matrix(v, matcalc.core.ir.dim_value(v.shape[0], sizes),
                                          matcalc.core.ir.dim_value(v.shape[1], sizes), rng, sp, "positive")
              for name, v in sorted(variables.items())}
    point = values.pop(var)
    deadline = verify._Deadline(600)
    args = (d.function, d.variable, point, values, sizes, deadline, verify.SympyBackend())
    dual, symbolic = verify._DualLines(*args), verify._Lines(*args)
    for c in range(point.rows * point.cols):
        assert (dual.first(c) - symbolic.first(c)).applyfunc(sp.simplify).is_zero_matrix, (expr, c)


def test_the_rational_form_proves_a_sum_of_exponentials_zero_and_not_a_wrong_one():
    import sympy as sp

    e = sp.exp(sp.Rational(3, 2))
    sigmoid = 1 / (1 + 1 / e)  # sigmoid(3/2); its derivative s (1 - s) written as e / (1 + e)^2
    assert verify._rational_form(sigmoid * (1 - sigmoid) - e / (1 + e) ** 2) == 0
    assert verify._rational_form(sigmoid * (1 - sigmoid) - 2 * e / (1 + e) ** 2) != 0


def test_a_sigmoid_layer_is_proven_exactly_and_a_wrong_jacobian_refuted():
    assert "exactly" in str(matcalc.diff("V sigmoid(W x + b)", "W").verify())
    wrong = matcalc.check("V sigmoid(W x + b)", "W", "(x^T ⊗ V)")
    assert not wrong


def test_softmax_is_compiled_for_the_line_by_line_proof_which_proves_and_refutes():
    assert verify._compiled("softmax", 3, 1) is not None  # quadratic in its length: compiled, not SymPy on Floats
    assert verify._compiled("det", 3, 3) is None  # factorial: still SymPy on the numbers
    assert matcalc.diff("y^T log(softmax(W x))", "W").verify()
    assert not matcalc.check("y^T log(softmax(W x))", "W", "y x^T")
