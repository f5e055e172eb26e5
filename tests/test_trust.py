"""Issue 7, sections 1 and 2: check and verify never call a wrong answer right, and every printed result
parses back to the same expression. One example a test, each checked against numbers."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from generate import declaration_of
from oracles import close_to_finite_differences, evaluate_expr, random_values, refuted

import matcalc
from matcalc.core.ir import dimensions, variables
from matcalc.rules.simplify import simplify


def assert_prints_back(d: matcalc.Derivative) -> None:
    assert matcalc.parse(str(d), where=d.where, shape=d.shape) == d.expr, str(d)


# ---------------------------------------------------------------- 1. check and verify are sound


def test_a_proof_at_one_size_proves_nothing_about_the_size_logdet_of_alpha_I():
    """d logdet(alpha I) / d alpha = n / alpha: 2 / alpha is right at n = 2 only."""
    wrong = matcalc.check("logdet(alpha I)", "alpha", "2 / alpha")
    assert not wrong and not wrong.undecided
    assert "n=3" in str(wrong)
    right = matcalc.check("logdet(alpha I)", "alpha", "n / alpha")
    assert right and "n=2; n=3" in str(right.report)


def test_the_trace_of_alpha_I_is_not_2():
    assert refuted(matcalc.check("tr(alpha I)", "alpha", "2"))
    assert matcalc.check("tr(alpha I)", "alpha", "n")


def test_verify_proves_at_two_different_sizes_for_each_dimension():
    report = matcalc.diff("a^T X b", "X").verify()
    assert report and len(report.sizes) == 2
    first, second = report.sizes
    assert set(first) == set(second) == {"n", "m"}
    assert all(first[d] != second[d] for d in first)  # each dimension at two sizes
    assert first["n"] != first["m"] and second["n"] != second["m"]  # different dimensions, different sizes


def test_the_derivative_of_a_trace_with_I_is_the_size_of_the_dimension():
    d = matcalc.diff("tr(alpha I + A)", "alpha")
    assert str(d) == "n"
    assert d.evaluate({"alpha": 0.5, "A": np.ones((3, 3))}) == pytest.approx(3.0)
    assert matcalc.check("tr(alpha I + A)", "alpha", str(d))  # its own answer
    assert matcalc.check("tr(alpha I + A)", "alpha", "rows(A)")
    assert matcalc.check("tr(alpha I + A)", "alpha", "cols(A)")


def test_a_size_no_variable_carries_is_declared_as_a_dimension():
    d = matcalc.diff("logdet(alpha I)", "alpha")
    assert str(d) == "n / alpha" and d.where["n"].kind == "dim"
    assert_prints_back(d)
    assert d.evaluate({"alpha": 2.0, "n": 5}) == pytest.approx(2.5)


def test_rows_cols_and_size_are_the_sizes_of_an_expressions_dimensions():
    """X and x leave the expression (only their sizes stay): their values still tell the sizes."""
    d = matcalc.diff("alpha (rows(X) + 10 cols(X) + 100 size(X) + 1000 size(x))", "alpha")
    assert str(d) == "n (1 + 100 m) + 10 m + 1000 p"
    value = d.evaluate({"alpha": 1.0, "X": np.ones((2, 3)), "x": np.ones(4)})
    assert value == pytest.approx(2 + 30 + 600 + 4000)


def test_a_declared_dimension_name_is_its_size():
    e = matcalc.parse("n x^T x", where="x: vector(n)")
    assert evaluate_expr(e, {"x": np.array([1.0, 2.0, 3.0])}) == pytest.approx(3 * 14)


def test_a_name_cannot_be_both_a_variable_and_a_dimension():
    with pytest.raises(matcalc.DeclarationError):
        matcalc.parse("n^T x", where="n: vector(m); x: vector(n)")


def test_mean_is_the_sum_over_the_number_of_entries():
    d = matcalc.diff("mean(x .* x)", "x")
    assert str(d) == "2 x / n"
    values = random_values([d.function], seed=2)
    assert close_to_finite_differences(d, values)
    assert d.verify()
    m = matcalc.parse("mean(X)")
    assert evaluate_expr(m, {"X": np.arange(6.0).reshape(2, 3)}) == pytest.approx(2.5)


def test_a_candidate_of_the_wrong_shape_is_wrong_and_says_it_is_the_transpose():
    result = matcalc.check("x^T A x", "x", "x^T (A + A^T)")
    assert not result and not result.undecided
    assert "your candidate is 1×n, the derivative is n×1; your candidate is its transpose" in str(result)


def test_a_candidate_of_the_wrong_shape_exits_3_on_the_command_line():
    run = subprocess.run([sys.executable, "-m", "matcalc", "check", "x^T A x", "x", "x^T (A + A^T)"],
                         capture_output=True, text=True, check=False)
    assert run.returncode == 3, run.stderr
    assert "your candidate is 1×n, the derivative is n×1" in run.stdout


def test_a_jacobian_candidate_in_the_other_layout_is_named_as_such():
    result = matcalc.check("W x + b", "x", "W^T", where="W: matrix(m, n)")
    assert not result and "denominator layout" in str(result)
    assert matcalc.check("W x + b", "x", "W^T", where="W: matrix(m, n)", layout="denominator")


def test_check_of_a_large_sigmoid_expression_decides_instead_of_hanging():
    """It ran over 120 s: the oracle built the function in four symbolic variables and simplified."""
    where = {"A": "matrix(4, 4)", "x": "vector(4)"}
    result = matcalc.check("sigmoid(A * x + sigmoid(x))^T X x", "x", "vector(0)", where=where)
    assert not result and not result.undecided
    d = matcalc.diff("sigmoid(A * x + sigmoid(x))^T X x", "x", where=where)
    assert matcalc.check("sigmoid(A * x + sigmoid(x))^T X x", "x", str(d), where=where)


def test_a_proof_out_of_time_is_undecided_never_verified():
    d = matcalc.hessian("sum(tanh(W tanh(V x)))", "x")
    report = d.verify(timeout=1e-4)
    assert not report and report.undecided and "could not decide within" in str(report)
    verdict = matcalc.check("sum(tanh(W tanh(V x)))", "x", str(d), hessian_of=True, timeout=1e-4)
    assert not verdict and verdict.undecided and str(verdict).startswith("undecided")


def test_a_wrong_candidate_is_never_verified_even_where_values_are_long():
    """The counterexample shows a short value, not a page of nested exponentials."""
    result = matcalc.check("sum(exp(exp(x)))", "x", "exp(exp(x))")
    assert not result
    assert all(len(line) < 200 for line in str(result).splitlines())


# ---------------------------------------------------------------- 2. every printed result parses back


def test_a_fraction_in_a_constant_fill_prints_and_parses_back():
    d = matcalc.diff("sum(x ./ 3)", "x")
    assert str(d) == "vector(1/3)"
    assert_prints_back(d)
    np.testing.assert_allclose(d.evaluate({"x": [1.0, 2.0]}), [1 / 3, 1 / 3])


def test_a_fraction_fill_in_a_sum_keeps_its_keyword():
    e = matcalc.parse("x - vector(1/3)")
    assert str(e) == "x - vector(1/3)" and matcalc.parse(str(e)) == e


def test_a_constant_beyond_float_range_prints_in_scientific_notation():
    d = matcalc.diff("2e308 x", "x")
    assert str(d) == "2e308 I"
    assert_prints_back(d)


def test_scalar_sub_products_come_back_in_one_order():
    where = "a, x: vector(n); b, y: vector(m)"
    assert matcalc.parse("(b^T y) (a^T x) A", where) == matcalc.parse("(a^T x) (b^T y) A", where)
    assert matcalc.parse("(a^T x) b^T y", where) == matcalc.parse("(a^T x) (b^T y)", where)
    d = matcalc.diff("(a^T x) (b^T y) x", "y")
    assert_prints_back(d)
    assert close_to_finite_differences(d, random_values([d.function], seed=3))


def test_a_scalar_chain_beside_a_scalar_sub_product_is_one_of_them():
    """Printed as ... (y^T x) y^T x, read back as two sub-products: a different tree."""
    d = matcalc.diff("(((y^T x) / (1 + (alpha).^2)))^2", "alpha")
    assert_prints_back(d)
    assert close_to_finite_differences(d, random_values([d.function], seed=4))


def test_a_constant_inside_a_function_is_written_with_its_size():
    """logsumexp(vector(0)) printed with no size: the text could not say which n."""
    d = matcalc.diff("logsumexp((u - u)) * (norm2(A))^2", "A")
    assert str(d) == "2 log(n) A"
    assert_prints_back(d)
    assert close_to_finite_differences(d, random_values([d.function], seed=5))


@pytest.mark.parametrize("text", [
    "softmax(vector(3)) + x", "norm2(matrix(-2)) + alpha", "norm1(vector(3)) + alpha", "tr(matrix(2)) + alpha",
    "sum(matrix(2)) + alpha", "det(matrix(2)) + alpha", "inv(I) + X", "inv(2 alpha X)", "exp(vector(0)) + x",
    "sign(vector(-2)) + x", "sin(vector(2)) + x", "sigmoid(0) + alpha", "sum(3 alpha X)", "tr(I) + alpha",
])
def test_a_constant_folded_to_sizes_keeps_its_value(text):
    e = matcalc.parse(text)
    folded = simplify(e)
    assert folded != e
    values = random_values([e, folded], seed=6)
    np.testing.assert_allclose(evaluate_expr(folded, values, (e,)), evaluate_expr(e, values), rtol=1e-12)
    where = [declaration_of(var) for var in variables(folded).values()]
    where += [f"{d}: dim" for d in dimensions([folded]) if d not in " ".join(where)]
    assert matcalc.parse(str(folded), where="; ".join(where), shape=folded.shape) == folded


def test_the_derivative_of_sign_is_proven_zero_away_from_its_kink():
    """SymPy cannot differentiate sign(u); the oracle writes it 2 H(u) - 1 (this once raised RecursionError)."""
    where = "v: vector(m)"
    text = "sign((arcsin((0.5 * cos(v^T))))^T)"
    assert str(matcalc.diff(text, "v", where=where)) == "matrix(0)"
    assert matcalc.check(text, "v", "matrix(0)", where=where)
    assert refuted(matcalc.check(text, "v", "matrix(1)", where=where))


def test_the_derivative_of_relu_is_checked_through_its_step():
    assert matcalc.check("sum(relu(A x))", "x", "A^T step(A x)")
    assert refuted(matcalc.check("sum(relu(A x))", "x", "2 A^T step(A x)"))


def test_a_candidate_constant_whose_size_nothing_fixes_is_an_input_error():
    """tr(I) alone could be any size: it is not the answer n, nor a wrong one; the error says what to write."""
    with pytest.raises(matcalc.ShapeError, match="write the size itself"):
        matcalc.check("tr(alpha I + A)", "alpha", "tr(I)")
    assert matcalc.check("tr(alpha I + A)", "alpha", "tr(I + 0 A)")  # here I has A's size


def test_a_wrong_candidate_with_tiny_values_is_still_wrong():
    """1 - tanh(sum(A) alpha)^2 is about 1e-52 at the points tried: an absolute tolerance called twice it equal."""
    where = "A: matrix(n, n); alpha: scalar"
    d = matcalc.diff("tanh((sum(A) .* alpha))", "A", where=where)
    assert matcalc.check("tanh((sum(A) .* alpha))", "A", str(d), where=where)
    assert refuted(matcalc.check("tanh((sum(A) .* alpha))", "A", f"2 ({d.text(inline=True)})", where=where))


def test_a_derivative_that_vanishes_at_one_point_is_checked_at_another():
    """relu(cos(alpha)) is flat where cos(alpha) < 0: there twice its derivative matched it."""
    assert matcalc.check("(relu(cos(alpha)))^T", "alpha", "-step(cos(alpha)) sin(alpha)")
    assert refuted(matcalc.check("(relu(cos(alpha)))^T", "alpha", "-2 step(cos(alpha)) sin(alpha)"))
    assert refuted(matcalc.check("sum(relu(A x))", "x", "A^T step(A x) + A^T step(-A x)"))


def test_a_point_where_sympy_refuses_a_value_is_skipped_not_an_error():
    """At a signed point det(A) < 0: logdet(A) is complex and SymPy's Heaviside raises ValueError on it."""
    d = matcalc.diff("relu(logdet(A))", "A")
    assert matcalc.check("relu(logdet(A))", "A", str(d))
    assert refuted(matcalc.check("relu(logdet(A))", "A", f"2 ({d.text(inline=True)})"))


def test_a_value_that_cancels_to_a_tiny_number_is_resolved_not_taken_for_zero():
    """sigmoid(u) (1 - sigmoid(u)) at u = -522 is about exp(-522): 1 - 1/(1 + exp(-522)) cancels."""
    where = "A: matrix(n, n); alpha: scalar"
    d = matcalc.diff("sigmoid((tr(A) * (alpha .* alpha)))", "A", where=where)
    assert matcalc.check("sigmoid((tr(A) * (alpha .* alpha)))", "A", str(d), where=where)
    assert refuted(matcalc.check("sigmoid((tr(A) * (alpha .* alpha)))", "A", f"2 ({d.text(inline=True)})", where=where))


def test_an_entry_evalf_resolves_to_few_digits_is_evaluated_again_not_called_wrong():
    """A softmax of entries 350 apart: its derivative entry is 2e-156 after a cancellation, which evalf first
    gave to 31 digits only; compared to 40 digits, the right answer was called wrong."""
    where = "alpha: scalar; x: vector(n)"
    text = "softmax(((x + x) + ((1 + (x).^2)).^alpha))"
    d = matcalc.diff(text, "alpha", where=where)
    assert matcalc.check(text, "alpha", str(d), where=where)
    assert refuted(matcalc.check(text, "alpha", f"2 ({d.text(inline=True)})", where=where))


def test_a_point_where_the_function_is_infinite_proves_nothing():
    """At a singular S, logdet(A S) is -oo along the whole line: its derivative came out 0, and the right
    answer softmax(x) was called wrong."""
    text, where = "((logsumexp(x))^T + logdet((A S)))", "A: matrix(n, n); S: symmetric(n); x: vector(n)"
    assert matcalc.check(text, "x", "softmax(x)", where=where)
    assert refuted(matcalc.check(text, "x", "2 softmax(x)", where=where))
