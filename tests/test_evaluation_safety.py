"""`evaluate` is numerically safe (issue 7, section 3): stable forms far in the tails, the adjugate where a
matrix is singular, constants and values outside float64, values that break their declarations.

Oracles: mpmath at 50 digits for the tails, SymPy's exact adjugate, central finite differences, hand values.
"""

from __future__ import annotations

import random
from fractions import Fraction

import mpmath
import numpy as np
import pytest
import sympy
from oracles import finite_difference

import matcalc
from matcalc import EvaluationError
from matcalc.backends.interpret import NumpyBackend, bind_values, evaluate_numpy, interpret, squeeze
from matcalc.backends.verify import SympyBackend, concrete_sizes
from matcalc.core.ir import variables
from matcalc.rules.stable import STABLE_FORMS
from matcalc.rules.strategy import normalize

DIGITS = 1000  # enough that 1 - sigmoid(700) = e^-700 / (1 + e^-700) keeps 50 digits


def exact(fn, *points):
    """fn (an mpmath function of mpf numbers) at each point, rounded to float64."""
    with mpmath.workdps(DIGITS):
        return np.array([float(fn(mpmath.mpf(p))) for p in points])


def mp_sigmoid(u):
    return 1 / (1 + mpmath.exp(-u))


def mp_softplus(u):
    return mpmath.log(1 + mpmath.exp(u))


def value_of(text: str, values: dict, planned: bool = True) -> np.ndarray:
    """The NumPy value of an expression, through its evaluation plan or (planned=False) as written."""
    e = matcalc.parse(text)
    if planned:
        (value,) = evaluate_numpy([e], values, variables(e))
    else:
        arrays, sizes = bind_values(values, variables(e))
        with np.errstate(all="ignore"):
            value = interpret(e, arrays, sizes, NumpyBackend())
    return squeeze(value, e.shape)


def naive(d: matcalc.Derivative, values: dict) -> np.ndarray:
    """The derivative's value as written, without the evaluation plan: what evaluate gave before."""
    arrays, sizes = bind_values(values, {**variables(d.expr), d.variable.name: d.variable})
    with np.errstate(all="ignore"):
        return squeeze(interpret(d.expr, arrays, sizes, NumpyBackend()), d.expr.shape)


# ---------------------------------------------------------------- 1. stable forms: the brief's examples


def test_log_softplus_derivative_is_one_far_in_the_left_tail():
    d = matcalc.diff("log(softplus(alpha))", "alpha")
    assert str(d) == "sigmoid(alpha) / softplus(alpha)"
    expected = exact(lambda u: mp_sigmoid(u) / mp_softplus(u), -40.0)[0]
    assert 0.5 * (1 + np.tanh(0.5 * -40.0)) == 0.0  # the former sigmoid, 0.5 (1 + tanh(a/2)), gave 0 / 4e-18
    np.testing.assert_allclose(d.evaluate({"alpha": -40.0}), expected, rtol=1e-12)
    assert abs(expected - 1.0) < 1e-12


def test_log_sigmoid_squared_derivative_is_finite_far_in_the_left_tail():
    d = matcalc.diff("log(sigmoid(alpha))^2", "alpha")
    assert str(d) == "2 log(sigmoid(alpha)) (1 - sigmoid(alpha))"
    points = (-40.0, -800.0, 800.0, 3.0)
    expected = exact(lambda u: 2 * mpmath.log(mp_sigmoid(u)) * (1 - mp_sigmoid(u)), *points)
    got = np.array([d.evaluate({"alpha": p}) for p in points])
    np.testing.assert_allclose(got, expected, rtol=1e-10, atol=1e-300)
    np.testing.assert_allclose(got[:2], [-80.0, -1600.0], rtol=1e-10)


def test_sigmoid_keeps_its_digits_far_in_both_tails():
    points = [-40.0, -700.0, -1.5, 0.0, 2.0, 40.0, 700.0]
    got = value_of("sigmoid(x)", {"x": points})
    np.testing.assert_allclose(got, exact(mp_sigmoid, *points), rtol=1e-14)
    d = matcalc.diff("softplus(alpha)", "alpha")  # the derivative is sigmoid(alpha)
    np.testing.assert_allclose(d.evaluate({"alpha": -700.0}), exact(mp_sigmoid, -700.0)[0], rtol=1e-14)


def derivative_of(fn, *points):
    """d fn / du at each point (mpmath differentiates fn numerically at DIGITS digits), rounded to float64."""
    return exact(lambda u: mpmath.diff(fn, u), *points)


def test_arcsin_of_tanh_has_the_textbook_derivative_and_keeps_its_digits_in_both_tails():
    """diff("arcsin(tanh(alpha))", "alpha") printed `u / sqrt(u)` and was nan at 20 (issue 16, section 4): it is
    sech(alpha), 4.1e-9 at 20."""
    d = matcalc.diff("arcsin(tanh(alpha))", "alpha")
    assert str(d) == "sqrt(1 - tanh(alpha)^2)"
    points = (20.0, 38.0, -20.0, 800.0, 0.5)
    expected = derivative_of(lambda u: mpmath.asin(mpmath.tanh(u)), *points)
    assert float(naive(d, {"alpha": 20.0})) == 0.0  # as written: 1 - tanh(20)^2 is 1 - 1 in float64
    got = np.array([d.evaluate({"alpha": p}) for p in points])
    np.testing.assert_allclose(got, expected, rtol=1e-12, atol=1e-300)
    np.testing.assert_allclose(got[0], 4.122307244877116e-09, rtol=1e-12)


def test_arcsin_of_sigmoid_plus_alpha_has_derivative_one_far_in_the_tail():
    """arcsin(sigmoid(alpha)) + alpha gave inf at 38 and nan at 800 (issue 16, section 4): the derivative is 1 there."""
    d = matcalc.diff("arcsin(sigmoid(alpha)) + alpha", "alpha")
    points = (38.0, 800.0, -800.0, 3.0)
    expected = derivative_of(lambda u: mpmath.asin(mp_sigmoid(u)) + u, *points)
    got = np.array([d.evaluate({"alpha": p}) for p in points])
    np.testing.assert_allclose(got, expected, rtol=1e-12)
    np.testing.assert_allclose(got[:3], 1.0, rtol=1e-8)


def test_arccos_of_sigmoid_of_a_vector_keeps_its_digits_entry_by_entry():
    d = matcalc.diff("sum(arccos(sigmoid(x)))", "x")
    points = [38.0, 800.0, -800.0, 20.0, 0.25]
    expected = derivative_of(lambda u: mpmath.acos(mp_sigmoid(u)), *points)
    # at 800 the true -1.4e-174 is sqrt(sigmoid(-800)) and sigmoid(-800) = 5e-348 is below float64's range: 0 there
    np.testing.assert_allclose(d.evaluate({"x": points}), expected, rtol=1e-12, atol=1e-170)
    assert not np.isfinite(naive(d, {"x": points})[1])  # as written: 0 / 0 at 800


def test_the_generated_code_of_arcsin_of_tanh_keeps_its_digits_too():
    code = matcalc.diff("arcsin(tanh(alpha))", "alpha").to_code("numpy")
    namespace: dict = {}
    exec(code, namespace)  # matcalc's own generated code
    function = next(v for k, v in namespace.items() if k.startswith("df_"))
    np.testing.assert_allclose(float(function(alpha=20.0)), derivative_of(
        lambda u: mpmath.asin(mpmath.tanh(u)), 20.0)[0], rtol=1e-12)


# ---------------------------------------------------------------- 1. each stable form is sound ...


def _random_point(e, rng: random.Random) -> tuple[dict, dict]:
    """Moderate rational values (in [-3, 3]) for e's variables: as SymPy matrices and as floats."""
    sizes = concrete_sizes([e])
    exact_values, floats = {}, {}
    for name, var in variables(e).items():
        rows, cols = (d if isinstance(d, int) else sizes[d] for d in var.shape)
        entries = [[Fraction(rng.randint(-30, 30), 10) for _ in range(cols)] for _ in range(rows)]
        exact_values[name] = sympy.Matrix(rows, cols, lambda i, j, m=entries: sympy.Rational(m[i][j]))
        floats[name] = np.array(entries, dtype=float)
    return exact_values, floats, sizes


@pytest.mark.parametrize("rule", STABLE_FORMS, ids=lambda r: r.name)
def test_each_stable_form_fires_on_its_example_and_keeps_its_value(rule):
    """The rule's right side (NumPy) equals its left side (SymPy, exactly, then to 30 digits) at moderate points."""
    lhs = matcalc.parse(rule.example, where=rule.where or None)
    trace: list[str] = []
    rhs = normalize(lhs, [rule], trace)
    assert trace == [rule.name], f"{rule} does not fire on {rule.example}"
    rng = random.Random(7)
    for _ in range(5):
        exact_values, floats, sizes = _random_point(lhs, rng)
        expected = interpret(lhs, exact_values, sizes, SympyBackend()).evalf(30)
        got = interpret(rhs, floats, sizes, NumpyBackend())
        np.testing.assert_allclose(got, np.array(expected.tolist(), dtype=float), rtol=1e-13, atol=1e-15)


# ---------------------------------------------------------------- ... and gains digits far in a tail


def test_one_minus_sigmoid_keeps_its_digits_in_the_right_tail():
    d = matcalc.diff("log(sigmoid(alpha))", "alpha")
    assert str(d) == "1 - sigmoid(alpha)"
    for point in (40.0, 700.0):
        expected = exact(lambda u: 1 - mp_sigmoid(u), point)[0]
        assert float(naive(d, {"alpha": point})) == 0.0
        np.testing.assert_allclose(d.evaluate({"alpha": point}), expected, rtol=1e-13)


def test_log_sigmoid_is_finite_in_the_left_tail():
    points = [-40.0, -800.0]
    expected = exact(lambda u: mpmath.log(mp_sigmoid(u)), *points)
    assert value_of("log(sigmoid(x))", {"x": points}, planned=False)[1] == -np.inf
    np.testing.assert_allclose(value_of("log(sigmoid(x))", {"x": points}), expected, rtol=1e-14)


def test_log_of_one_plus_exp_is_softplus_in_both_tails():
    points = [-40.0, 800.0]
    expected = exact(mp_softplus, *points)  # 4.2e-18 and 800
    assert list(value_of("log(1 + exp(x))", {"x": points}, planned=False)) == [0.0, np.inf]
    np.testing.assert_allclose(value_of("log(1 + exp(x))", {"x": points}), expected, rtol=1e-14)


def test_exp_over_one_plus_exp_is_sigmoid_in_the_right_tail():
    d = matcalc.diff("log(1 + exp(alpha))", "alpha")
    assert str(d) == "exp(alpha) / (1 + exp(alpha))"
    assert np.isnan(naive(d, {"alpha": 800.0}))  # inf / inf
    for point in (800.0, -40.0):
        np.testing.assert_allclose(d.evaluate({"alpha": point}), exact(mp_sigmoid, point)[0], rtol=1e-14)


def test_exp_over_the_sum_of_exp_is_softmax_far_out():
    d = matcalc.diff("log(sum(exp(x)))", "x")
    assert str(d) == "exp(x) / sum(exp(x))"
    x = [800.0, 799.0, -5.0]
    expected = np.array([exact(lambda u, k=k: mpmath.exp(x[k]) / sum(mpmath.exp(v) for v in x), 0)[0]
                         for k in range(3)])
    assert np.isnan(naive(d, {"x": x})[0])  # inf / inf
    np.testing.assert_allclose(d.evaluate({"x": x}), expected, rtol=1e-14)


def test_log_of_the_sum_of_exp_is_logsumexp_far_out():
    for x in ([800.0, 799.0], [-800.0, -801.0]):
        expected = exact(lambda u, x=x: mpmath.log(sum(mpmath.exp(mpmath.mpf(v)) for v in x)), 0)[0]
        assert np.isinf(value_of("log(sum(exp(x)))", {"x": x}, planned=False))
        np.testing.assert_allclose(value_of("log(sum(exp(x)))", {"x": x}), expected, rtol=1e-15)


def test_log_of_softmax_is_finite_far_out():
    x = [0.0, -800.0, 1.0]
    expected = exact(lambda u: u - mpmath.log(sum(mpmath.exp(mpmath.mpf(v)) for v in x)), *x)
    assert value_of("log(softmax(x))", {"x": x}, planned=False)[1] == -np.inf
    np.testing.assert_allclose(value_of("log(softmax(x))", {"x": x}), expected, rtol=1e-14)


def test_logsumexp_and_softmax_of_an_overflowed_entry_are_their_limits():
    """exp(800) is inf in float64: logsumexp is then inf (right: e^800 overflows), softmax puts all mass on it."""
    x = [800.0, 0.0]
    assert value_of("logsumexp(exp(x))", {"x": x}) == np.inf
    np.testing.assert_array_equal(value_of("softmax(exp(x))", {"x": x}), [1.0, 0.0])


def test_stable_forms_change_neither_the_printed_result_nor_the_sympy_proof():
    d = matcalc.diff("sum(log(sigmoid(x)))", "x")
    assert str(d) == "1 - sigmoid(x)"
    assert d.verify()
    values = {"x": [0.3, -1.2]}
    np.testing.assert_allclose(d.evaluate(values), finite_difference(d, values), rtol=1e-7)


# ---------------------------------------------------------------- 2. det(X) inv(X) by the adjugate


def test_gradient_of_det_of_a_rank_deficient_product_is_zero_not_an_error():
    """W V is 4x4 of rank 2: det(W V) W^T inv(W V)^T is det(W V) W^T adj(W V)^T / det(W V) = 0."""
    d = matcalc.diff("det(W V)", "V", where="W: matrix(4, 2); V: matrix(2, 4)")
    assert str(d) == "det(W V) W^T inv(W V)^T"
    for seed in (3, 7, 13):  # points where inv(W V) raised numpy's LinAlgError
        rng = np.random.default_rng(seed)
        values = {"W": rng.normal(size=(4, 2)), "V": rng.normal(size=(2, 4))}
        got = d.evaluate(values)
        np.testing.assert_allclose(got, np.zeros((2, 4)), atol=1e-12)
        np.testing.assert_allclose(got, finite_difference(d, values), atol=1e-9)


def test_adjugate_equals_det_times_inverse_on_an_invertible_matrix():
    x = np.random.default_rng(0).normal(size=(5, 5))
    np.testing.assert_allclose(NumpyBackend().adjugate(x), np.linalg.det(x) * np.linalg.inv(x), rtol=1e-10)
    m = sympy.Matrix([[2, -1, 3], [sympy.Rational(1, 2), 4, 0], [1, 1, -2]])
    assert SympyBackend().adjugate(m) == m.det() * m.inv()


def test_adjugate_of_a_rank_deficient_matrix_is_exact_and_matches_finite_differences():
    """For rank n-1 the adjugate is nonzero (rank 1): the gradient of det is adj(X)^T, not 0 and not an error."""
    rows = [[2, -1, 3, 1], [1, 4, 0, -2], [0, 1, -1, 5]]
    rows.append([a + 2 * b - c for a, b, c in zip(*rows, strict=True)])  # last row: a combination of the others
    x = np.array(rows, dtype=float)
    assert np.linalg.matrix_rank(x) == 3
    adjugate = np.array(sympy.Matrix(rows).adjugate().tolist(), dtype=float)
    assert np.abs(adjugate).max() > 1
    np.testing.assert_allclose(NumpyBackend().adjugate(x), adjugate, rtol=1e-10, atol=1e-10)
    d = matcalc.diff("det(X)", "X")
    assert str(d) == "det(X) inv(X)^T"
    assert d.verify()  # SymPy reads det(X) inv(X)^T through its own adjugate
    np.testing.assert_allclose(d.evaluate({"X": x}), adjugate.T, rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(d.evaluate({"X": x}), finite_difference(d, {"X": x}), rtol=1e-6, atol=1e-6)


def test_a_power_of_det_times_the_inverse_uses_the_adjugate():
    d = matcalc.diff("det(X)^3", "X")
    assert str(d) == "3 det(X)^3 inv(X)^T"
    x = np.array([[1.0, 2.0, 0.5], [2.0, 4.0, 1.0], [0.0, 1.0, 3.0]])  # singular: row 2 = 2 row 1
    np.testing.assert_allclose(d.evaluate({"X": x}), np.zeros((3, 3)), atol=1e-12)
    y = x + np.eye(3)
    np.testing.assert_allclose(d.evaluate({"X": y}), finite_difference(d, {"X": y}), rtol=1e-6)


def test_inverting_a_singular_matrix_is_an_evaluation_error_naming_it():
    d = matcalc.diff("log(det(X))", "X")
    with pytest.raises(EvaluationError, match=r"the matrix X is singular"):
        d.evaluate({"X": [[1.0, 2.0], [2.0, 4.0]]})
    d = matcalc.diff("log(det(W V))", "V", where="W: matrix(4, 2); V: matrix(2, 4)")
    w = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0], [0.0, 1.0]])  # rows 3 and 4 of W V repeat rows 1 and 2
    with pytest.raises(EvaluationError, match=r"inv\(W V\).*the matrix W V is singular"):
        d.evaluate({"W": w, "V": np.arange(8.0).reshape(2, 4)})


def test_a_negative_power_of_a_singular_matrix_is_an_evaluation_error_naming_it():
    assert str(matcalc.parse("X^-2")) == "inv(X)^2"
    with pytest.raises(EvaluationError, match=r"inv\(X\): the matrix X is singular"):
        value_of("X^-2", {"X": [[1.0, 2.0], [2.0, 4.0]]})


# ---------------------------------------------------------------- 3. constants beyond float64


def test_a_constant_beyond_float_range_is_an_evaluation_error_naming_its_size():
    d = matcalc.diff("1e308 (x^T x)", "x")
    assert d.expr.factors[0].value == 2 * 10**308  # the engine doubled the literal exactly
    with pytest.raises(EvaluationError, match=r"constant of about 2\.0e308 .* beyond the range of float64"):
        d.evaluate({"x": [1.0, 2.0]})


# ---------------------------------------------------------------- 4. values that break a declaration


def test_a_non_symmetric_value_for_a_symmetric_matrix_is_refused():
    d = matcalc.diff("x^T A x", "x", where="A: symmetric")
    with pytest.raises(EvaluationError, match=r"A is declared symmetric.*\|A - A\^T\| is 1 "):
        d.evaluate({"x": [1, 2], "A": [[1, 2], [3, 4]]})


def test_a_symmetric_value_with_rounding_noise_is_accepted():
    d = matcalc.diff("x^T A x", "x", where="A: symmetric")
    got = d.evaluate({"x": [1, 2], "A": [[1, 2], [2 + 1e-14, 4]]})
    np.testing.assert_allclose(got, [10.0, 20.0])  # 2 A x by hand


@pytest.mark.parametrize(("name", "value"), [
    ("x", np.ones((2, 2))),        # a vector given as a matrix
    ("A", np.ones(2)),             # a matrix given as a vector
    ("A", np.ones((2, 2, 1))),     # three axes
])
def test_a_value_with_the_wrong_number_of_axes_is_refused(name, value):
    values = {"x": np.ones(2), "A": np.ones((2, 2)), name: value}
    with pytest.raises(EvaluationError, match=rf"^{name} is a (vector|matrix)"):
        matcalc.diff("x^T A x", "x").evaluate(values)


def test_a_scalar_given_an_array_is_refused():
    with pytest.raises(EvaluationError, match="alpha is a scalar"):
        matcalc.diff("alpha x", "x").evaluate({"alpha": [1.0, 2.0], "x": [1.0, 2.0]})


def test_a_value_that_contradicts_a_declared_size_is_refused():
    d = matcalc.diff("x^T x", "x", where="x: vector(3)")
    with pytest.raises(EvaluationError, match="x must have size 3"):
        d.evaluate({"x": [1.0, 2.0]})
    np.testing.assert_allclose(d.evaluate({"x": [1.0, 2.0, 3.0]}), [2.0, 4.0, 6.0])


@pytest.mark.parametrize(("bad", "said"), [(np.nan, "nan"), (np.inf, "infinite"), (-np.inf, "infinite")])
def test_non_finite_values_are_refused_naming_the_variable(bad, said):
    with pytest.raises(EvaluationError, match=rf"the value of A holds .*{said}"):
        matcalc.diff("x^T A x", "x").evaluate({"x": [1.0, 2.0], "A": [[1.0, bad], [0.0, 1.0]]})


@pytest.mark.parametrize(("value", "said"), [
    ("abc", "is text"),
    ("1.5", "is text"),
    ([1.0, "a"], "not a number"),
    ([[1.0, 2.0], [3.0]], "not a number"),
    (None, "not a number"),
    ({"a": 1}, "not a number"),
    (object(), "not a number"),
    (1 + 2j, "complex"),
    (np.array([1 + 1j, 2]), "complex"),
    (10**400, "beyond the range of float64"),
    ([], "is empty"),
])
def test_values_that_are_not_real_numbers_are_refused(value, said):
    with pytest.raises(EvaluationError, match=rf"the value of x .*{said}"):
        matcalc.diff("x^T x", "x").evaluate({"x": value})


def test_values_must_be_a_mapping_and_every_name_needs_one():
    d = matcalc.diff("x^T A x", "x")
    with pytest.raises(EvaluationError, match="values must be a dict"):
        d.evaluate([("x", [1.0, 2.0])])
    with pytest.raises(EvaluationError, match="missing values for x, A"):
        d.evaluate({})


def test_numpy_raise_mode_gives_inf_not_a_floating_point_error():
    d = matcalc.diff("exp(alpha)", "alpha")
    assert float(mpmath.exp(800)) == np.inf  # the exact value overflows float64
    with np.errstate(all="raise"):
        assert d.evaluate({"alpha": 800.0}) == np.inf


# ---------------------------------------------------------------- 5. symbols that simplification removed


def test_a_symbol_that_simplification_removed_still_binds_its_size():
    d = matcalc.diff("alpha A^0", "alpha")
    assert str(d) == "I"
    np.testing.assert_array_equal(d.evaluate({"alpha": 2.0, "A": np.eye(3)}), np.eye(3))


def test_a_removed_symbol_is_optional_but_checked_when_given():
    d = matcalc.diff("x^T A^0 x", "x")
    assert str(d) == "2 x"
    np.testing.assert_allclose(d.evaluate({"x": [1.0, 2.0]}), [2.0, 4.0])
    with pytest.raises(EvaluationError, match="the sizes do not fit: x gives n = 2, but A has shape"):
        d.evaluate({"x": [1.0, 2.0], "A": np.eye(3)})
    with pytest.raises(EvaluationError, match="the value of A holds nan"):
        d.evaluate({"x": [1.0, 2.0], "A": [[1.0, np.nan], [0.0, 1.0]]})
    with pytest.raises(EvaluationError, match="cannot tell the size n"):
        matcalc.diff("alpha A^0", "alpha").evaluate({"alpha": 2.0})
