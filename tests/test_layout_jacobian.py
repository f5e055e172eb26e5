"""The seeds' layout (`layout="jacobian"`, `--layout jacobian`): the derivative of a scalar is its Jacobian, the
transpose of the gradient (Parr & Howard, the Jacobian theory page, Dillon: "the Jacobian with one row"), in
every view; every other kind is as in the numerator layout. Numbers come from central finite differences of the
function alone (tests/oracles.py)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from oracles import finite_difference, random_values

import matcalc
from matcalc import cli
from matcalc.backends.interpret import evaluate_numpy
from matcalc.core import ir


def printed_value(d: matcalc.Derivative, values: dict) -> np.ndarray:
    """The printed result, parsed back with its own declarations and shape and evaluated as the 2-D matrix it
    is (a row stays 1×n): what the text says, not what evaluate() reshapes."""
    parsed = matcalc.parse(d.text(inline=True), where=d.where, shape=d.matrix_shape)
    names = {**ir.variables(d.function), **ir.variables(parsed)}
    (value,) = evaluate_numpy([parsed], values, names)
    return np.asarray(value, dtype=float)


def gradient_by_differences(expr: str, var: str, values: dict, where: str | None = None) -> np.ndarray:
    """The gradient (the variable's shape, 2-D) by central differences of the function."""
    d = matcalc.diff(expr, var, where=where)
    gradient = np.asarray(finite_difference(d, values), dtype=float)
    return gradient.reshape(-1, 1) if gradient.ndim == 1 else gradient


def test_a_scalar_of_a_vector_has_the_row_a_transposed_in_the_jacobian_layout():
    d = matcalc.diff("a^T x", "x", layout="jacobian")
    assert str(d) == "a^T" and d.shape == (1, "n") and d.kind == "gradient" and d.layout == "jacobian"
    values = random_values([d.function])
    row = printed_value(d, values)
    assert row.shape == (1, values["x"].size)
    np.testing.assert_allclose(row, gradient_by_differences("a^T x", "x", values).T, rtol=1e-6, atol=1e-8)


def test_the_quadratic_form_is_x_transposed_times_a_plus_a_transposed():
    d = matcalc.diff("x^T A x", "x", layout="jacobian")
    values = random_values([d.function], seed=3)
    np.testing.assert_allclose(printed_value(d, values), gradient_by_differences("x^T A x", "x", values).T,
                               rtol=1e-6, atol=1e-7)
    assert d.shape == (1, "n")


def test_the_sum_reduction_is_a_row_of_ones():
    d = matcalc.diff("sum(x)", "x", layout="jacobian")
    assert str(d) == "vector(1)^T"
    values = random_values([d.function])
    np.testing.assert_allclose(printed_value(d, values), np.ones((1, values["x"].size)))


def test_a_scalar_of_a_matrix_is_the_transpose_of_the_gradient():
    d = matcalc.diff("tr(A X)", "X", layout="jacobian")  # A n×m, X m×n: the gradient is A^T (m×n), this A (n×m)
    assert str(d) == "A" and d.shape == (d.variable.shape[1], d.variable.shape[0])
    values = random_values([d.function], sizes={"n": 2, "m": 3})
    np.testing.assert_allclose(d.evaluate(values), gradient_by_differences("tr(A X)", "X", values).T,
                               rtol=1e-6, atol=1e-8)


def test_log_det_in_the_jacobian_layout_is_the_inverse():
    d = matcalc.diff("log(det(X))", "X", layout="jacobian")
    assert str(d) == "inv(X)"
    values = random_values([d.function], seed=2)
    np.testing.assert_allclose(d.evaluate(values), gradient_by_differences("log(det(X))", "X", values).T,
                               rtol=1e-6, atol=1e-8)


def test_a_symmetric_variable_keeps_sym_g_which_is_its_own_transpose():
    d = matcalc.diff("a^T S b", "S", where="S: symmetric", layout="jacobian")
    values = random_values([d.function], seed=4)
    expected = gradient_by_differences("a^T S b", "S", values, where="S: symmetric")
    np.testing.assert_allclose(d.evaluate(values), expected.T, rtol=1e-6, atol=1e-8)


def test_a_jacobian_a_derivative_by_a_scalar_and_a_tensor_are_as_in_the_numerator_layout():
    for expr, var in [("W x + b", "x"), ("sigmoid(W x)", "x"), ("alpha x", "alpha"), ("W x", "W")]:
        seeds, numerator = matcalc.diff(expr, var, layout="jacobian"), matcalc.diff(expr, var)
        assert str(seeds) == str(numerator) and seeds.shape == numerator.shape, expr
        values = random_values([seeds.function], seed=5)
        got = seeds.evaluate(values, form="vec") if seeds.form == "vec" else seeds.evaluate(values)
        np.testing.assert_allclose(got, finite_difference(numerator, values), rtol=1e-5, atol=1e-7)


def test_a_programs_gradient_is_transposed_on_its_last_line():
    program = "h = tanh(W1 x); L = sum(tanh(W2 h))"
    d = matcalc.diff(program, "x", layout="jacobian")
    assert d.shape == (1, "m") and str(d).splitlines()[:2] == ["h = tanh(W1 x)", "g_h = W2^T (1 - tanh(W2 h).^2)"]
    assert d.steps[-1].title.startswith("Jacobian layout")
    values = random_values([d.function], seed=6)
    np.testing.assert_allclose(printed_value(d, values), gradient_by_differences(program, "x", values).T,
                               rtol=1e-5, atol=1e-7)
    inline = matcalc.diff(program, "x", layout="jacobian", inline=True)
    np.testing.assert_allclose(printed_value(inline, values), printed_value(d, values), rtol=1e-12)


def test_a_programs_gradient_by_a_matrix_in_the_jacobian_layout():
    program = "h = tanh(W1 x); L = sum(tanh(W2 h))"
    d = matcalc.diff(program, "W1", layout="jacobian")
    values = random_values([d.function], seed=7)
    np.testing.assert_allclose(d.evaluate(values), gradient_by_differences(program, "W1", values).T,
                               rtol=1e-5, atol=1e-7)


def test_the_hessian_is_the_same_in_every_layout():
    assert str(matcalc.hessian("x^T A x", "x")) == "A + A^T"
    verdict = matcalc.check("x^T A x", "x", "A + A^T", layout="jacobian", hessian_of=True)
    assert verdict


def test_verify_proves_the_row():
    assert matcalc.diff("x^T A x", "x", layout="jacobian").verify()
    assert matcalc.diff("tr(A X B)", "X", layout="jacobian").verify()


def test_check_accepts_the_row_in_the_jacobian_layout_and_refutes_a_wrong_one():
    assert matcalc.check("a^T x", "x", "a^T", layout="jacobian")
    verdict = matcalc.check("x^T A x", "x", "2 x^T A", layout="jacobian")
    assert not verdict and not verdict.undecided and verdict.report.mismatches


def test_check_says_a_gradient_is_the_transpose_of_the_jacobian_layouts_row():
    verdict = matcalc.check("a^T x", "x", "a", layout="jacobian")
    assert not verdict and "the gradient" in verdict.reason and "layout='numerator'" in verdict.reason
    assert "Jacobian with one row" in verdict.reason
    assert matcalc.check("a^T x", "x", "a")  # and it is right as the gradient


def test_check_says_a_row_is_the_derivative_in_the_jacobian_layout():
    verdict = matcalc.check("a^T x", "x", "a^T")
    assert not verdict and "layout='jacobian'" in verdict.reason and "(∇f)^T" in verdict.reason
    verdict = matcalc.check("tr(A X)", "X", "A")
    assert not verdict and "layout='jacobian'" in verdict.reason and "n×m for an m×n matrix" in verdict.reason
    assert matcalc.check("tr(A X)", "X", "A", layout="jacobian")


def test_latex_and_json_of_the_row():
    d = matcalc.diff("a^T x", "x", layout="jacobian")
    assert d.latex() == r"\frac{\partial}{\partial x} \left(a^\top \, x\right) = a^\top"
    payload = d.to_json()
    assert payload["layout"] == "jacobian" and payload["shape"] == ["1", "n"] and payload["text"] == "a^T"
    assert payload["kind"] == "gradient"


def test_generated_code_returns_what_evaluate_returns():
    for expr, var in [("x^T A x", "x"), ("tr(A X B)", "X")]:
        d = matcalc.diff(expr, var, layout="jacobian")
        values = random_values([d.function], seed=8, sizes={"n": 2, "m": 3, "p": 4})
        f = d.compile("numpy")
        arguments = {name: value for name, value in values.items() if name in ir.variables(d.function)}
        np.testing.assert_allclose(f(**arguments), d.evaluate(values), rtol=1e-12)
        assert f(**arguments).shape == d.evaluate(values).shape


def test_an_unknown_layout_is_a_clear_error():
    with pytest.raises(matcalc.MatcalcError, match="'jacobian'"):
        matcalc.diff("a^T x", "x", layout="seeds")


def run_cli(capsys: pytest.CaptureFixture, *argv: str) -> tuple[int, str, str]:
    try:
        code = cli.main(list(argv))
    except SystemExit as exit_:
        code = exit_.code
    out, err = capsys.readouterr()
    return code, out, err


def test_the_command_line_takes_layout_jacobian(capsys: pytest.CaptureFixture):
    assert run_cli(capsys, "diff", "a^T x", "x", "--layout", "jacobian") == (0, "a^T\n", "")
    code, out, _ = run_cli(capsys, "diff", "a^T x", "x", "--layout", "jacobian", "--json")
    assert code == 0 and json.loads(out)["shape"] == ["1", "n"]
    code, out, _ = run_cli(capsys, "diff", "a^T x", "x", "--layout", "jacobian", "--latex")
    assert code == 0 and out.strip().endswith(r"= a^\top")
    code, out, _ = run_cli(capsys, "diff", "a^T x", "x", "--layout", "jacobian", "--verify")
    assert code == 0 and out.startswith("a^T\nverified")
    code, out, _ = run_cli(capsys, "diff", "a^T x", "x", "--layout", "jacobian", "--code", "numpy")
    assert code == 0 and "def df_dx(a, x):" in out
    code, out, _ = run_cli(capsys, "check", "a^T x", "x", "a", "--layout", "jacobian")
    assert code == 3 and "--layout numerator" in out
    code, _, err = run_cli(capsys, "diff", "a^T x", "x", "--layout", "seeds")
    assert code == 2 and "jacobian" in err


STACK = "H1 = sigmoid(W1 X + b1); H2 = sigmoid(W2 H1 + b2); L = sum((H2 - Y).^2) / B"
STACK_SHAPES = "X: matrix(d, B); Y: matrix(k, B); W1: matrix(m, d); W2: matrix(k, m); b1: vector(m); b2: vector(k)"


def test_grad_writes_every_gradient_of_one_backward_pass_in_the_jacobian_layout():
    rows = matcalc.grad(STACK, ["W1", "b1"], where=STACK_SHAPES, layout="jacobian")
    assert str(rows).splitlines()[-1] == "dL_db1 = sum(U^T, 1)"
    assert rows["b1"].shape == (1, "m") and rows["W1"].shape == ("d", "m")
    values = random_values([rows["W1"].function], seed=9, sizes={"d": 2, "B": 3, "k": 2, "m": 4})
    for name in ("W1", "b1"):
        np.testing.assert_allclose(printed_value(rows[name], values),
                                   gradient_by_differences(STACK, name, values, where=STACK_SHAPES).T,
                                   rtol=1e-5, atol=1e-7)


def test_the_command_line_writes_several_gradients_in_the_jacobian_layout(capsys: pytest.CaptureFixture):
    code, out, _ = run_cli(capsys, "diff", STACK, "W2,b2", "--where", STACK_SHAPES, "--layout", "jacobian")
    assert code == 0 and out.splitlines()[-1] == "dL_db2 = sum(U^T, 1)"
