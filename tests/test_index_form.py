"""The index form ∂F_ij / ∂X_kl of a derivative, cookbook style: one identity, one input, one checked answer.

Each answer is printed text checked as a string, and proven numerically: the index form is summed over every
assignment of its indices (sizes 2 and 3) at random values and compared with central finite differences of F.
"""

from __future__ import annotations

import itertools
from typing import Any

import numpy as np
import pytest
from oracles import random_values

import matcalc
from matcalc.backends.interpret import evaluate_numpy
from matcalc.calculus.differential import differential
from matcalc.calculus.index_form import INDEX_RULES, Delta, IndexForm, index_form
from matcalc.core import ir
from matcalc.core.errors import UnsupportedError
from matcalc.render.index import index_latex, index_text
from matcalc.rules.rule import Rule

STEP = 1e-6


def form_of(text: str, name: str, where: str | dict[str, str] | None = None,
            trace: list[str] | None = None) -> tuple[ir.Expr, IndexForm]:
    f = matcalc.parse(text, where)
    variable = ir.variables(f)[name]
    return f, index_form(differential(f, variable), variable, f, trace)


def _value(e: ir.Expr, values: dict[str, Any], names: dict[str, ir.Var]) -> np.ndarray:
    """e at `values` as a 2-D array (a vector is a column, a scalar 1 x 1)."""
    (value,) = evaluate_numpy([e], values, names)
    return np.asarray(value, dtype=float).reshape(_size(e.shape[0], values), _size(e.shape[1], values))


def _size(dim: ir.Dim, values: dict[str, Any]) -> int:
    return ir.dim_value(dim, {k: v for k, v in values.items() if isinstance(v, int)})


def index_tensor(form: IndexForm, f: ir.Expr, values: dict[str, Any]) -> np.ndarray:
    """T[i, j, k, l] by the index form: each term summed over all assignments of its indices (a size-1 axis is 0)."""
    names = ir.variables(f)
    (rows, cols), (var_rows, var_cols) = form.output_shape, form.variable.shape
    tensor = np.zeros([_size(d, values) for d in (rows, cols, var_rows, var_cols)])
    free = [(name, axis, dim) for name, axis, dim in zip((*form.output_indices, *form.variable_indices), range(4),
                                                          (rows, cols, var_rows, var_cols), strict=True) if name]
    for term in form.terms:
        scale = float(term.coefficient) * np.prod([_value(s, values, names)[0, 0] for s in term.scalars])
        entries = [None if isinstance(factor, Delta) else _value(factor.expr, values, names) for factor in term.factors]
        indices = [(name, dim) for name, _, dim in free] + list(term.summed)
        for assignment in itertools.product(*(range(_size(dim, values)) for _, dim in indices)):
            at = dict(zip((name for name, _ in indices), assignment, strict=True))
            value = scale
            for factor, entry in zip(term.factors, entries, strict=True):
                if isinstance(factor, Delta):
                    value *= at[factor.a] == at[factor.b]
                else:
                    value *= entry[at.get(factor.row, 0), at.get(factor.col, 0)]
            position = [0, 0, 0, 0]
            for name, axis, _ in free:
                position[axis] = at[name]
            tensor[tuple(position)] += value
    return tensor


def finite_differences(f: ir.Expr, variable: ir.Var, values: dict[str, Any]) -> np.ndarray:
    """T[i, j, k, l] = (F(X + h E_kl) - F(X - h E_kl)) / 2h, with F evaluated by the NumPy backend."""
    names = ir.variables(f)
    point = np.array(values[variable.name], dtype=float)
    matrix = point.reshape(_size(variable.shape[0], values), _size(variable.shape[1], values))
    out = _value(f, values, names)
    tensor = np.zeros((*out.shape, *matrix.shape))
    for row, col in itertools.product(range(matrix.shape[0]), range(matrix.shape[1])):
        up, down = matrix.copy(), matrix.copy()
        up[row, col] += STEP
        down[row, col] -= STEP
        f_up = _value(f, {**values, variable.name: up.reshape(point.shape)}, names)
        f_down = _value(f, {**values, variable.name: down.reshape(point.shape)}, names)
        tensor[:, :, row, col] = (f_up - f_down) / (2 * STEP)
    return tensor


def assert_index_form(text: str, name: str, expected: str, where: str | dict[str, str] | None = None,
                      zero: bool = False) -> IndexForm:
    """The index form prints as `expected` and equals finite differences of F at random values (not all zero,
    unless the derivative is: then the proof is that the terms cancel)."""
    f, form = form_of(text, name, where)
    assert index_text(form) == expected
    assert_equals_finite_differences(f, form, zero)
    return form


def assert_equals_finite_differences(f: ir.Expr, form: IndexForm, zero: bool = False) -> None:
    sizes = {dim: 2 + n % 2 for n, dim in enumerate(ir.dimensions([f]))}
    values = random_values([f], seed=1, sizes=sizes)
    numeric = finite_differences(f, form.variable, values)
    assert zero or np.abs(numeric).max() > 1e-3  # a proof, not 0 = 0
    np.testing.assert_allclose(index_tensor(form, f, values), numeric, rtol=1e-6, atol=1e-8)


# ---------------------------------------------------------------- products


def test_a_matrix_times_a_vector_has_a_delta_on_the_rows():
    """d(W x) = dW x: ∂(W x)_i / ∂W_kl = δ_ik x_l."""
    assert_index_form("W x", "W", "∂(W x)_i / ∂W_kl = δ_ik x_l")


def test_the_inverse():
    """d inv(X) = -inv(X) dX inv(X): the two inverses take one index each of X."""
    assert_index_form("inv(X)", "X", "∂inv(X)_ij / ∂X_kl = -inv(X)_ik inv(X)_lj")


def test_a_matrix_between_two_constants():
    """d(A X B) = A dX B: ∂(A X B)_ij / ∂X_kl = A_ik B_lj."""
    assert_index_form("A X B", "X", "∂(A X B)_ij / ∂X_kl = A_ik B_lj")


def test_a_transposed_matrix_between_two_constants():
    """d(A X^T B) = A dX^T B: the transpose swaps k and l."""
    assert_index_form("A X^T B", "X", "∂(A X^T B)_ij / ∂X_kl = A_il B_kj")


def test_the_square_of_a_matrix_has_two_terms():
    """d(X X) = dX X + X dX."""
    assert_index_form("X X", "X", "∂(X X)_ij / ∂X_kl = δ_ik X_lj + X_ik δ_jl")


def test_an_outer_product():
    """d(x x^T) = dx x^T + x dx^T: a vector has one index."""
    assert_index_form("x x^T", "x", "∂(x x^T)_ij / ∂x_k = δ_ik x_j + x_i δ_jk")


def test_a_row_vector_output_has_one_index():
    """d(x^T A) = dx^T A: ∂(x^T A)_i / ∂x_k = A_ki."""
    assert_index_form("x^T A", "x", "∂(x^T A)_i / ∂x_k = A_ki")


def test_a_constant_product_that_is_the_identity_is_a_delta():
    """X inv(X) = I: its derivative dX inv(X) - X inv(X) dX inv(X) reads δ_ik in both terms (which cancel)."""
    assert_index_form("X inv(X)", "X", "∂(X inv(X))_ij / ∂X_kl = δ_ik inv(X)_lj - δ_ik inv(X)_lj", zero=True)


def test_an_outer_product_of_constants_splits_into_entries():
    """softmax: d s = s .* dx - s s^T dx, and (s s^T)_ik is s_i s_k."""
    assert_index_form("softmax(x)", "x", "∂softmax(x)_i / ∂x_k = δ_ik softmax(x)_i - softmax(x)_i softmax(x)_k")


def test_a_derivative_by_a_scalar():
    """d(s A) = ds A: a scalar variable has no index."""
    assert_index_form("s A", "s", "∂(s A)_ij / ∂s = A_ij", {"s": "scalar"})


def test_a_scalar_power():
    """d(s^2) = 2 s ds: no index on either side."""
    assert_index_form("s^2", "s", "∂(s^2) / ∂s = 2 s", {"s": "scalar"})


def test_a_scalar_factor_holding_the_variable_times_a_matrix():
    """d((x^T x) A) = (dx^T x + x^T dx) A: ∂s C_ij for each term."""
    assert_index_form("(x^T x) A", "x", "∂((x^T x) A)_ij / ∂x_k = A_ij x_k + A_ij x_k")


# ---------------------------------------------------------------- element-wise


def test_an_elementwise_function_of_a_product():
    """d tanh(W x) = (1 - tanh(W x).^2) .* (dW x)."""
    assert_index_form("tanh(W x)", "W", "∂tanh(W x)_i / ∂W_kl = δ_ik (1 - tanh(W x).^2)_i x_l")


def test_an_elementwise_quotient():
    """d(X ./ B) = dX ./ B: the entry of 1 ./ B."""
    assert_index_form("X ./ B", "X", "∂(X ./ B)_ij / ∂X_kl = δ_ik (1 ./ B)_ij δ_jl")


def test_the_transpose():
    """d(X^T) = dX^T: ∂(X^T)_ij / ∂X_kl = δ_il δ_jk."""
    assert_index_form("X^T", "X", "∂(X^T)_ij / ∂X_kl = δ_il δ_jk")


def test_diag_of_a_vector():
    """d diag(x) = diag(dx): δ_ij ∂x_i."""
    assert_index_form("diag(x)", "x", "∂diag(x)_ij / ∂x_k = δ_ij δ_ik")


def test_diag_of_a_matrix():
    """d diag(X) = diag(dX): ∂X_ii."""
    assert_index_form("diag(X)", "X", "∂diag(X)_i / ∂X_kl = δ_ik δ_il")


# ---------------------------------------------------------------- scalar functions of matrices


def test_the_trace_of_a_product():
    """d tr(A X) = tr(A dX): ∂tr(A X) / ∂X_kl = A_lk."""
    assert_index_form("tr(A X)", "X", "∂tr(A X) / ∂X_kl = A_lk")


def test_the_trace_of_a_product_of_three_merges_the_constants():
    """tr(A dX B) = Σ_p A_pk B_lp = (B A)_lk."""
    assert_index_form("tr(A X B)", "X", "∂tr(A X B) / ∂X_kl = (B A)_lk")


def test_the_trace():
    """d tr(X) = tr(dX): δ_kl."""
    assert_index_form("tr(X)", "X", "∂tr(X) / ∂X_kl = δ_kl")


def test_the_determinant_keeps_its_scalar_factor():
    """d det(X) = det(X) tr(inv(X) dX): a constant 1 x 1 factor prints as itself."""
    assert_index_form("det(X)", "X", "∂det(X) / ∂X_kl = det(X) inv(X)_lk")


def test_a_quadratic_form():
    """d(x^T A x) = dx^T A x + x^T A dx: the sums merge into products."""
    assert_index_form("x^T A x", "x", "∂(x^T A x) / ∂x_k = (A x)_k + (x^T A)_k")


def test_the_sum_of_an_elementwise_product():
    """d sum(X .* A) = sum(dX .* A): A_kl."""
    assert_index_form("sum(X .* A)", "X", "∂sum(X .* A) / ∂X_kl = A_kl")


def test_a_sum_that_cannot_be_contracted_stays_explicit():
    """sum(dx x^T + x dx^T): Σ_p x_p, twice."""
    assert_index_form("sum(x x^T)", "x", "∂sum(x x^T) / ∂x_k = Σ_p x_p + Σ_p x_p")


def test_summed_indices_do_not_clash_with_a_variable_named_p():
    """The variable is called p, so the summed index is q."""
    assert_index_form("sum(p p^T)", "p", "∂sum(p p^T) / ∂p_k = Σ_q p_q + Σ_q p_q")


# ---------------------------------------------------------------- LaTeX, zero, unsupported, depth


def test_latex_of_a_matrix_times_a_vector():
    _, form = form_of("W x", "W")
    assert index_latex(form) == r"\frac{\partial \left(W \, x\right)_{i}}{\partial W_{kl}} = \delta_{ik} x_{l}"


def test_latex_of_the_inverse_parenthesises_entries():
    _, form = form_of("inv(X)", "X")
    assert index_latex(form) == (r"\frac{\partial \left(X^{-1}\right)_{ij}}{\partial X_{kl}} = "
                            r"-\left(X^{-1}\right)_{ik} \left(X^{-1}\right)_{lj}")


def test_latex_of_an_explicit_sum():
    _, form = form_of("sum(x x^T)", "x")
    assert index_latex(form).endswith(r"= \sum_{p} x_{p} + \sum_{p} x_{p}")


def test_a_zero_differential_reads_zero():
    x = ir.Var("X", ("n", "m"))
    assert index_text(index_form(ir.zeros(x.shape), x, "F")) == "∂F_ij / ∂X_kl = 0"


def test_vec_and_the_kronecker_product_have_no_index_form_yet():
    x, a = ir.Var("X", ("n", "m")), ir.Var("A", ("p", "q"))
    with pytest.raises(UnsupportedError, match="no index form"):
        index_form(ir.func("vec", ir.Differential(x)), x, "vec(X)")
    with pytest.raises(UnsupportedError, match="no index form"):
        index_form(ir.kron(a, ir.Differential(x)), x, "A ⊗ X")


def test_a_differential_deeper_than_the_recursion_limit():
    """((X ./ B) ./ B) ... 1,200 levels: read node by node, never by recursion."""
    x, b = ir.Var("X", ("n", "m")), ir.Var("B", ("n", "m"))
    e: ir.Expr = x
    for _ in range(1200):
        e = ir.elem_div(e, b)
    form = index_form(differential(e, x), x, "F")
    assert index_text(form).count("(1 ./ B)_ij") == 1200


@pytest.mark.parametrize("rule", INDEX_RULES, ids=lambda rule: rule.name)
def test_each_index_rule_is_read_on_its_example_and_the_form_equals_finite_differences(rule: Rule):
    """The rules are data: each states what it does, names the kinds of node it is for, and its example's index
    form reads it and is proven against numbers."""
    assert "->" in rule.statement and rule.heads
    expression, variable = rule.example
    read: list[str] = []
    f, form = form_of(expression, variable, trace=read)
    assert rule.name in read, f"{rule.name} is not read on its example {expression}: {read}"
    assert_equals_finite_differences(f, form)
