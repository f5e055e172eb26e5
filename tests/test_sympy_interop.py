"""SymPy in and out (issue 19, part 3): matcalc.from_sympy, SymPy expressions and symbols in diff / hessian / check /
grad, and Derivative.to_sympy. Each round trip is checked on the cookbook table, each value against an oracle that
is not matcalc's: SymPy's own evaluation of the expression it was given or written, or central differences."""

from __future__ import annotations

import inspect
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import sympy as sp
from oracles import assert_matches_finite_differences, evaluate_expr, random_values
from sympy.matrices.expressions.matexpr import MatrixElement
from test_cookbook_table import COOKBOOK, IDS

import matcalc
from matcalc.core.functions import FUNCTIONS

n, m = sp.symbols("n m")
A, X, W = (sp.MatrixSymbol(name, n, n) for name in "AXW")
x, b, y = (sp.MatrixSymbol(name, n, 1) for name in "xby")
alpha = sp.Symbol("alpha")


def sympy_value(expr: Any, values: dict[str, Any]) -> np.ndarray:
    """SymPy's own value of a SymPy matrix expression at `values` (arrays and scalars by name, sizes by dimension
    name): the matrix symbols replaced by explicit matrices first (their shapes name the dimensions), then the scalars
    and sizes, then doit."""
    explicit = {s: sp.Matrix(np.asarray(values[s.name], dtype=float).reshape(-1, 1) if np.ndim(values[s.name]) == 1
                             else np.asarray(values[s.name], dtype=float))
                for s in expr.atoms(sp.MatrixSymbol)}
    value = expr.xreplace(explicit)
    value = value.xreplace({s: sp.sympify(values[s.name]) for s in value.free_symbols if s.name in values}).doit()
    if isinstance(value, sp.MatrixExpr):
        value = value.as_explicit()
    matrix = value if isinstance(value, sp.MatrixBase) else sp.Matrix([[value]])
    return np.array(matrix.evalf(), dtype=float)


def sympy_gradient_by_differences(f: Any, wrt: Any, values: dict[str, Any], step: float = 1e-6) -> np.ndarray:
    """Central differences of SymPy's own value of f (a scalar) w.r.t. the matrix symbol `wrt`: no matcalc inside."""
    point = np.asarray(values[wrt.name], dtype=float)
    gradient = np.zeros(point.shape)
    for index in np.ndindex(point.shape):
        shifted = []
        for sign in (1, -1):
            moved = point.copy()
            moved[index] += sign * step
            shifted.append(sympy_value(f, {**values, wrt.name: moved}).item())
        gradient[index] = (shifted[0] - shifted[1]) / (2 * step)
    return gradient


# ---------------------------------------------------------------- the headline: x^T A x from SymPy


def test_from_sympy_xT_A_x_differentiates_to_A_plus_A_transpose_x():
    d = matcalc.diff(x.T * A * x, x)
    assert str(d) == "(A + A^T) x"
    assert_matches_finite_differences(d)


def test_from_sympy_xT_A_x_gradient_equals_sympys_own_central_differences():
    f = x.T * A * x
    d = matcalc.diff(f, x)
    values = random_values([d.function, d.expr], seed=1)
    expected = sympy_gradient_by_differences(f, x, values)
    np.testing.assert_allclose(d.evaluate(values), expected.ravel(), rtol=1e-6)


def test_from_sympy_reads_shapes_as_declarations():
    reading = matcalc.from_sympy(MatrixElement(x.T * A * x, 0, 0) + alpha)
    assert str(reading.expr) == "alpha + x^T A x"  # in SymPy's order of terms
    assert {name: str(decl) for name, decl in reading.where.items()} == {
        "x": "x: vector(n)", "A": "A: matrix(n, n)", "alpha": "alpha: scalar"}


def test_from_sympy_integer_shapes_are_declared_sizes():
    reading = matcalc.from_sympy(sp.MatrixSymbol("B", 3, 2) * sp.MatrixSymbol("v", 2, 1))
    assert str(reading.where["B"]) == "B: matrix(3, 2)"
    assert str(reading.where["v"]) == "v: vector(2)"


def test_from_sympy_merges_where_symmetric_giving_2_A_x():
    d = matcalc.diff(x.T * A * x, x, where="A: symmetric")
    assert str(d) == "2 A x"
    assert_matches_finite_differences(d)


def test_from_sympy_a_dimension_used_as_a_scalar_is_its_size():
    d = matcalc.diff(sp.Trace(alpha * sp.Identity(n) + A), alpha)
    assert str(d) == "n"


def test_hessian_of_a_sympy_quadratic_form_is_A_plus_A_transpose():
    h = matcalc.hessian(x.T * A * x, x)
    assert str(h) == "A + A^T"
    assert_matches_finite_differences(h)


def test_check_takes_sympy_candidates_right_and_wrong():
    assert matcalc.check(x.T * A * x, x, (A + A.T) * x)
    wrong = matcalc.check(x.T * A * x, x, 2 * A * x)
    assert not wrong and "counterexample" in str(wrong)


def test_grad_takes_a_list_of_sympy_symbols():
    gradients = matcalc.grad(x.T * A * x, [x, A])
    assert {name: str(d) for name, d in gradients.items()} == {"x": "(A + A^T) x", "A": "x x^T"}
    assert set(gradients.to_sympy()) == {"x", "A"}


def test_codegen_takes_a_sympy_expression():
    assert "def value_and_gradients(" in matcalc.codegen(x.T * A * x, [x])


def test_a_derivative_differentiates_again_wrt_a_sympy_symbol():
    assert str(matcalc.diff(x.T * A * x, x).diff(x)) == "A + A^T"


# ---------------------------------------------------------------- round trips on the cookbook table


def _round_trip(expr: str, var: str, where: str | None) -> tuple[matcalc.Derivative, matcalc.Derivative]:
    """(the derivative from text, the derivative of text -> IR -> to_sympy -> from_sympy)."""
    d = matcalc.diff(expr, var, where=where)
    return d, matcalc.diff(matcalc.to_sympy(d.function), var, where=where)


@pytest.mark.parametrize(("expr", "var", "where", "cookbook"), COOKBOOK, ids=IDS)
def test_cookbook_function_round_trips_through_sympy_to_the_same_derivative(expr, var, where, cookbook):
    d, again = _round_trip(expr, var, where)
    assert str(again) == str(d)
    values = random_values([d.function], seed=5)
    np.testing.assert_allclose(evaluate_expr(again.function, values), evaluate_expr(d.function, values), rtol=1e-12)


@pytest.mark.parametrize(("expr", "var", "where", "cookbook"), COOKBOOK, ids=IDS)
def test_cookbook_result_round_trips_through_sympy(expr, var, where, cookbook):
    d = matcalc.diff(expr, var, where=where)
    assert matcalc.from_sympy(d.to_sympy(), where=d.where).expr is d.expr


@pytest.mark.parametrize(("expr", "var", "where", "cookbook"), COOKBOOK, ids=IDS)
def test_cookbook_result_to_sympy_evaluates_to_matcalcs_value(expr, var, where, cookbook):
    d = matcalc.diff(expr, var, where=where)
    values = random_values([d.function, d.expr], seed=2)
    ours = np.asarray(d.evaluate(values, form="vec") if d.form == "vec" else d.evaluate(values), dtype=float)
    theirs = sympy_value(d.to_sympy(), values)
    np.testing.assert_allclose(theirs, ours.reshape(theirs.shape), rtol=1e-9, atol=1e-12)


def test_cookbook_round_trip_counts(capsys):
    """How many cookbook entries round-trip (the same derivative from the function read back, and the result read
    back to the same IR), how many read back to the very same IR, and how many are refused with a clear error."""
    counts = {"round trip": 0, "same IR": 0, "refused": 0}
    for expr, var, where, _ in COOKBOOK:
        try:
            d, again = _round_trip(expr, var, where)
            result_back = matcalc.from_sympy(d.to_sympy(), where=d.where).expr
        except matcalc.UnsupportedError:
            counts["refused"] += 1
            continue
        counts["round trip"] += str(again) == str(d) and result_back is d.expr
        counts["same IR"] += again.function is d.function
    with capsys.disabled():
        print(f"\nSymPy round trips on the cookbook table ({len(COOKBOOK)} entries): {counts['round trip']} round-trip "
              f"({counts['same IR']} to the very same IR), {counts['refused']} refused with a clear error")
    assert counts["round trip"] == len(COOKBOOK) and counts["refused"] == 0


def test_the_documented_example_prints_as_documented():
    d = matcalc.diff(x.T * A * x, x)
    assert str(d.to_sympy()) == "(A + A.T)*x"
    r = matcalc.from_sympy(sp.log(sp.det(A)))
    assert (str(r.expr), str(r.where["A"])) == ("log(det(A))", "A: matrix(n, n)")


# ---------------------------------------------------------------- element-wise functions: one table both ways

ELEMENTWISE = [name for name, spec in FUNCTIONS.items() if spec.kind == "elementwise"]


@pytest.mark.parametrize("name", ELEMENTWISE)
def test_every_elementwise_function_round_trips_through_applyfunc(name):
    f = matcalc.parse(f"{name}(W x)")
    written = matcalc.to_sympy(f)
    assert "Lambda" in repr(written)  # an applyfunc of the function's SymPy meaning
    assert matcalc.from_sympy(written).expr is f


@pytest.mark.parametrize("name", ["exp", "tanh", "sigmoid", "softplus", "gelu", "arctan"])
def test_elementwise_function_to_sympy_evaluates_to_matcalcs_value(name):
    f = matcalc.parse(f"{name}(W x)")
    values = random_values([f], seed=4)
    np.testing.assert_allclose(sympy_value(matcalc.to_sympy(f), values).ravel(), np.ravel(evaluate_expr(f, values)),
                               rtol=1e-10)


def test_sympy_applyfunc_with_a_lambda_of_the_entries_reads_as_elementwise_operations():
    reading = matcalc.from_sympy(x.applyfunc(lambda v: alpha * v**2 + 1))
    assert str(reading.expr) == "1 + alpha x.^2"


def test_sympy_functions_of_scalars_read_as_the_languages():
    assert str(matcalc.from_sympy(sp.exp(alpha) + sp.sqrt(alpha) + sp.log(sp.det(X))).expr) == \
        "sqrt(alpha) + exp(alpha) + log(det(X))"  # in SymPy's order of terms


def test_sympy_matrix_operations_read_as_the_languages():
    e = sp.HadamardProduct(X, sp.HadamardPower(A, -1)) + sp.HadamardPower(X, 2) + X**3 + X**-1 + sp.Identity(n) \
        + sp.OneMatrix(n, n)
    assert str(matcalc.from_sympy(e).expr) == "X.^2 + X ./ A + I + inv(X) + X^3 + 1"  # 1: matrix(1), a broadcast
    assert str(matcalc.from_sympy(sp.KroneckerProduct(A, X).T).expr) == "A^T ⊗ X^T"


def test_sympy_entry_or_trace_of_a_1x1_product_is_that_scalar():
    assert str(matcalc.from_sympy(sp.MatMul(sp.sin(MatrixElement(x.T * x, 0, 0)), x)).expr) == "sin(x^T x) x"
    assert str(matcalc.from_sympy(sp.sin(sp.Trace(x.T * x)) * x).expr) == "sin(x^T x) x"


def test_sympy_index_sum_is_refused_with_the_trace_to_write_instead():
    with pytest.raises(matcalc.UnsupportedError, match=r"write the scalar as Trace\(x.T\*A\*x\)"):
        matcalc.from_sympy(sp.sin(MatrixElement(x.T * x, 0, 0)) * x)  # SymPy's * wrote the entry out as a Sum


def test_from_sympy_walks_a_deep_expression_without_recursion():
    from sympy.matrices.expressions.applyfunc import ElementwiseApplyFunction

    e = x
    for _ in range(250):  # by the constructors: SymPy's operators take minutes, and recurse past ~300 levels
        e = ElementwiseApplyFunction(sp.tanh, sp.MatMul(A, e))
    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(len(inspect.stack()) + 150)  # far fewer frames than the 500 levels of the tree
    try:
        reading = matcalc.from_sympy(e)
    finally:
        sys.setrecursionlimit(limit)
    assert str(reading.expr).count("tanh") == 250


# ---------------------------------------------------------------- what cannot be said: clear errors


@pytest.mark.parametrize(("expr", "message"), [
    (x.applyfunc(sp.sinh), "the language has no function sinh"),
    (sp.Function("f")(alpha), "an undefined function f"),
    (x[0, 0], "an entry of a matrix"),
    (sp.I * alpha, "a complex number"),
    (sp.Integral(alpha, alpha), "SymPy Integral"),
    (sp.MatrixSymbol("r", 1, n) * x, "row vector"),
    (sp.MatrixSymbol("exp", n, 1), "'exp' is a function"),
    (sp.MatrixSymbol("I", n, n), "reserved for the identity"),
    (sp.Symbol("a b"), "has no name matcalc can print"),
    (sp.EulerGamma * alpha, "a constant the language has no name for"),
    (sp.MatPow(X, sp.Rational(1, 2)), "not a whole number"),
])
def test_unsupported_sympy_parts_are_named_in_the_error(expr, message):
    with pytest.raises(matcalc.UnsupportedError, match=message.replace("(", r"\(")):
        matcalc.from_sympy(expr)


def test_conflicting_where_and_sympy_shape_is_a_declaration_error():
    with pytest.raises(matcalc.DeclarationError, match="conflicting declarations of A: 'A: matrix\\(m, m\\)' in "
                                                       "where, and 'A: matrix\\(n, n\\)' from its SymPy shape"):
        matcalc.diff(x.T * A * x, x, where="A: matrix(m, m)")


def test_a_name_with_two_sympy_shapes_is_a_declaration_error():
    with pytest.raises(matcalc.DeclarationError, match="two shapes"):
        matcalc.from_sympy(sp.Add(sp.Trace(x.T * x), sp.Symbol("x")))


def test_a_variable_must_be_a_sympy_symbol_not_an_expression():
    with pytest.raises(matcalc.UnsupportedError, match="must be a Symbol or MatrixSymbol"):
        matcalc.diff(x.T * A * x, x.T)


def test_from_sympy_refuses_text():
    with pytest.raises(matcalc.UnsupportedError, match="reads a SymPy expression, not str"):
        matcalc.from_sympy("x^T A x")


@pytest.mark.parametrize(("expr", "var", "message"), [
    ("(x^T A x) B", "A", "vec has no SymPy matrix expression"),
    ("X^T", "X", "SymPy has no commutation matrix"),
])
def test_to_sympy_names_the_part_sympy_cannot_express(expr, var, message):
    with pytest.raises(matcalc.UnsupportedError, match=f"SymPy cannot express .*: {message}"):
        matcalc.diff(expr, var).to_sympy()


def test_to_sympy_of_softmax_along_an_axis_is_refused():
    with pytest.raises(matcalc.UnsupportedError, match="softmax along an axis"):
        matcalc.to_sympy(matcalc.parse("softmax(X, 1)"))


def test_an_explicit_sympy_matrix_is_refused_by_name():
    with pytest.raises(matcalc.UnsupportedError, match="explicit matrix of entries"):
        matcalc.diff(sp.Matrix([[1, 2]]), x)


def test_importing_matcalc_imports_no_sympy_and_no_reader():
    code = ("import sys, matcalc; matcalc.diff('x^T A x', 'x'); "
            "print('sympy' in sys.modules, 'matcalc.frontend.sympy_reader' in sys.modules)")
    root = Path(__file__).resolve().parent.parent
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=root,
                         env={**os.environ, "PYTHONPATH": str(root)}).stdout
    assert out.split() == ["False", "False"]
