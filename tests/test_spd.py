"""`S: spd`, a symmetric positive definite matrix: declared, printed back, differentiated exactly as a symmetric
matrix, evaluated (logdet and inv) by a Cholesky factorisation, refused where a value is not SPD, and written as
Cholesky code for NumPy, JAX and PyTorch. Each numeric check is against NumPy's own slogdet, inv or solve, or
against central differences along symmetric directions (the space an spd variable lives in)."""

import importlib.util
import subprocess
import sys

import numpy as np
import pytest

import matcalc
from matcalc.backends.interpret import evaluate_numpy
from matcalc.backends.pycode import compile_source
from matcalc.core import ir

HAVE_JAX = importlib.util.find_spec("jax") is not None
HAVE_TORCH = importlib.util.find_spec("torch") is not None
needs_jax = pytest.mark.skipif(not HAVE_JAX, reason="jax is not installed (pip install matcalc-symbolic[jax])")
needs_torch = pytest.mark.skipif(not HAVE_TORCH, reason="torch is not installed (pip install matcalc-symbolic[torch])")

if HAVE_JAX:
    import jax

    jax.config.update("jax_enable_x64", True)  # float64, as evaluate (as tests/test_codegen.py does)


def random_spd(n: int, seed: int) -> np.ndarray:
    m = np.random.default_rng(seed).standard_normal((n, n))
    return m @ m.T + n * np.eye(n)


def random_symmetric(n: int, seed: int) -> np.ndarray:
    m = np.random.default_rng(seed).standard_normal((n, n))
    return (m + m.T) / 2


def evaluate(text: str, values: dict, where: str = "S: spd") -> np.ndarray:
    e = matcalc.parse(text, where=where)
    (value,) = evaluate_numpy([e], values, ir.variables(e))
    return value


def symmetric_difference_quotient(f, S: np.ndarray, E: np.ndarray, h: float = 1e-5) -> float:
    """d/dt f(S + t E) at 0, E symmetric: S + t E stays symmetric (and, for small t, positive definite)."""
    return (f(S + h * E) - f(S - h * E)) / (2 * h)


# ---------------------------------------------------------------- the declaration


def test_spd_declaration_prints_back_as_spd_n():
    d = matcalc.diff("logdet(S) + x^T S x", "S", where="S: spd")
    assert str(d.where["S"]) == "S: spd(n)"
    assert matcalc.parse(str(d), where=d.where, shape=d.shape) == d.expr


def test_spd_n_declares_a_square_symmetric_positive_definite_variable():
    e = matcalc.parse("x^T S x", where="S: spd(m)")
    S = ir.variables(e)["S"]
    assert S.shape == ("m", "m") and S.symmetric and S.positive_definite


def test_spd_takes_one_dimension_at_most():
    with pytest.raises(matcalc.DeclarationError, match="'spd' takes 1 dimension"):
        matcalc.parse("logdet(S)", where="S: spd(m, n)")


def test_spd_of_a_vector_is_a_shape_error():
    with pytest.raises(matcalc.ShapeError):
        matcalc.parse("S x", where="S: spd(m); x: vector(n)")


# ---------------------------------------------------------------- derivatives: those of a symmetric matrix


@pytest.mark.parametrize("function", ["logdet(S)", "tr(inv(S) A)", "logdet(S) + b^T inv(S) b"])
def test_derivative_wrt_spd_is_the_derivative_wrt_symmetric(function):
    spd = matcalc.diff(function, "S", where="S: spd")
    symmetric = matcalc.diff(function, "S", where="S: symmetric")
    assert str(spd) == str(symmetric)


def test_gradient_of_logdet_spd_matches_symmetric_differences():
    S, E = random_spd(4, 0), random_symmetric(4, 1)
    gradient = matcalc.diff("logdet(S)", "S", where="S: spd").evaluate({"S": S})
    expected = symmetric_difference_quotient(lambda s: np.linalg.slogdet(s)[1], S, E)
    assert np.sum(gradient * E) == pytest.approx(expected, rel=1e-7)


def test_gradient_of_trace_inv_spd_times_a_matches_symmetric_differences():
    S, E = random_spd(4, 2), random_symmetric(4, 3)
    A = np.random.default_rng(4).standard_normal((4, 4))
    gradient = matcalc.diff("tr(inv(S) A)", "S", where="S: spd").evaluate({"S": S, "A": A})
    expected = symmetric_difference_quotient(lambda s: np.trace(np.linalg.solve(s, A)), S, E)
    assert np.sum(gradient * E) == pytest.approx(expected, rel=1e-7)
    assert np.allclose(gradient, gradient.T)  # sym(G): the gradient lives on symmetric matrices


def test_spd_derivative_is_proven_by_sympy_on_spd_points():
    assert matcalc.diff("logdet(S) + b^T inv(S) b", "S", where="S: spd").verify()


# ---------------------------------------------------------------- evaluation by Cholesky


def test_logdet_of_spd_equals_slogdet():
    S = random_spd(5, 5)
    assert evaluate("logdet(S)", {"S": S})[0, 0] == pytest.approx(np.linalg.slogdet(S)[1], rel=1e-13)


def test_logdet_of_spd_through_the_api_equals_slogdet():
    S = random_spd(5, 6)
    value = matcalc.diff("alpha logdet(S)", "alpha", where="S: spd").evaluate({"S": S, "alpha": 2.0})
    assert float(value) == pytest.approx(np.linalg.slogdet(S)[1], rel=1e-13)


def test_inv_of_spd_equals_inv_and_is_exactly_symmetric():
    S = random_spd(5, 7)
    value = evaluate("inv(S)", {"S": S})
    np.testing.assert_allclose(value, np.linalg.inv(S), rtol=1e-12, atol=1e-14)
    assert np.array_equal(value, value.T)  # inv(L)^T inv(L): symmetric to the last bit


def test_inv_spd_times_b_equals_solve():
    S, b = random_spd(5, 8), np.arange(1.0, 6.0)
    np.testing.assert_allclose(evaluate("inv(S) b", {"S": S, "b": b})[:, 0], np.linalg.solve(S, b), rtol=1e-12)


def test_inv_spd_times_b_is_evaluated_as_a_cholesky_solve_without_the_inverse(monkeypatch):
    from matcalc.backends.interpret import NumpyBackend

    def no_inverse(self, name, a):
        raise AssertionError("inv(S) b formed the inverse")

    monkeypatch.setattr(NumpyBackend, "spd_function", no_inverse)
    S, b = random_spd(5, 15), np.arange(1.0, 6.0)
    assert evaluate("b^T inv(S) b", {"S": S, "b": b})[0, 0] == pytest.approx(b @ np.linalg.solve(S, b), rel=1e-12)


@pytest.mark.parametrize("text, expected", [
    ("A inv(S)", lambda S, A, b: A @ np.linalg.inv(S)),
    ("inv(S) A inv(S) b", lambda S, A, b: np.linalg.solve(S, A @ np.linalg.solve(S, b))[:, None]),
    ("det(S) inv(S) b", lambda S, A, b: np.linalg.det(S) * np.linalg.solve(S, b)[:, None]),
])
def test_spd_inverse_in_any_place_of_a_product_equals_numpy(text, expected):
    S, A, b = random_spd(4, 16), np.random.default_rng(17).standard_normal((4, 4)), np.arange(1.0, 5.0)
    np.testing.assert_allclose(evaluate(text, {"S": S, "A": A, "b": b}), expected(S, A, b), rtol=1e-11)


def test_logdet_and_inv_of_one_spd_value_share_one_cholesky_factorisation(monkeypatch):
    calls = []
    cholesky = np.linalg.cholesky
    monkeypatch.setattr(np.linalg, "cholesky", lambda a: calls.append(a.shape) or cholesky(a))
    S, A = random_spd(4, 9), np.eye(4)
    value = evaluate("logdet(S) + tr(inv(S) A)", {"S": S, "A": A})
    assert value[0, 0] == pytest.approx(np.linalg.slogdet(S)[1] + np.trace(np.linalg.inv(S)), rel=1e-12)
    assert calls == [(4, 4)]


# ---------------------------------------------------------------- values that are not SPD


@pytest.mark.parametrize("value, problem", [
    (np.array([[2.0, 1.0], [0.0, 2.0]]), "not symmetric"),
    (np.array([[1.0, 2.0], [2.0, 1.0]]), "not positive definite"),  # eigenvalues 3 and -1
    (-np.eye(3), "not positive definite"),
])
def test_a_value_that_is_not_spd_is_an_evaluation_error_naming_it(value, problem):
    d = matcalc.diff("logdet(Sigma)", "Sigma", where="Sigma: spd")
    with pytest.raises(matcalc.EvaluationError, match=f"Sigma is declared spd .*{problem}"):
        d.evaluate({"Sigma": value})


def test_a_non_spd_value_is_refused_when_bound_even_where_logdet_is_not_evaluated():
    d = matcalc.diff("x^T S x", "x", where="S: spd")
    with pytest.raises(matcalc.EvaluationError, match="S is declared spd"):
        d.evaluate({"S": -np.eye(2), "x": np.ones(2)})


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "matcalc", *args], capture_output=True, text=True, timeout=120)


def test_cli_checks_a_derivative_wrt_spd_on_spd_points():
    result = run("check", "logdet(S)", "S", "inv(S)", "--where", "S: spd")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("correct")


def test_cli_bad_spd_declaration_exits_2():
    result = run("diff", "logdet(S)", "S", "--where", "S: spd(m, n)")
    assert result.returncode == 2
    assert "'spd' takes 1 dimension" in result.stderr and "Traceback" not in result.stderr


# ---------------------------------------------------------------- generated code


def value_and_gradient(backend_name: str):
    source = matcalc.codegen("logdet(S) + b^T inv(S) b", ["S", "b"], where="S: spd", backend=backend_name)
    assert "cholesky" in source and "slogdet" not in source and ".inv(" not in source
    return compile_source(source, "value_and_gradients")


def expected_value_and_gradients(S: np.ndarray, b: np.ndarray) -> tuple:
    inverse = np.linalg.inv(S)
    y = inverse @ b
    return np.linalg.slogdet(S)[1] + b @ y, inverse - np.outer(y, y), 2 * y


def check_generated(f, S: np.ndarray, b: np.ndarray, convert=np.asarray) -> None:
    got = [np.asarray(v) for v in f(S=convert(S), b=convert(b))]
    for value, expected in zip(got, expected_value_and_gradients(S, b), strict=True):
        np.testing.assert_allclose(value, expected, rtol=1e-10, atol=1e-12)


def test_generated_numpy_code_of_logdet_spd_gives_slogdet():
    check_generated(value_and_gradient("numpy"), random_spd(4, 10), np.arange(1.0, 5.0))


@needs_jax
def test_generated_jax_code_of_logdet_spd_gives_slogdet_under_jit():
    check_generated(jax.jit(value_and_gradient("jax")), random_spd(4, 11), np.arange(1.0, 5.0))


@needs_torch
def test_generated_torch_code_of_logdet_spd_gives_slogdet():
    import torch

    check_generated(value_and_gradient("torch"), random_spd(4, 12), np.arange(1.0, 5.0),
                    lambda a: torch.as_tensor(a, dtype=torch.float64))


def test_generated_inv_spd_times_b_is_a_cholesky_solve_with_no_inverse_formed():
    source = matcalc.codegen("b^T inv(S) b", ["b"], where="S: spd")
    assert source.count("np.linalg.cholesky(S)") == 1 and "_cho_solve(L_S, b)" in source
    assert "_cho_inverse" not in source  # both uses of inv(S) are solves: no inverse, not even an unused line
    S, b = random_spd(4, 13), np.arange(1.0, 5.0)
    value, gradient = compile_source(source, "value_and_gradients")(S=S, b=b)
    assert float(value) == pytest.approx(b @ np.linalg.solve(S, b), rel=1e-12)
    np.testing.assert_allclose(gradient, 2 * np.linalg.solve(S, b), rtol=1e-12)


def test_generated_cholesky_factor_keeps_clear_of_a_variable_named_like_it():
    source = matcalc.codegen("logdet(S) + sum(L_S)", ["L_S"], where="S: spd; L_S: matrix(n, n)")
    assert "L_S_1 = np.linalg.cholesky(S)" in source
    S = random_spd(3, 14)
    value, _ = compile_source(source, "value_and_gradients")(S=S, L_S=np.ones((3, 3)))
    assert float(value) == pytest.approx(np.linalg.slogdet(S)[1] + 9, rel=1e-12)
