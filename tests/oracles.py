"""Independent numeric oracles for the tests: central finite differences in float64.

The oracle evaluates only the *function* (with the NumPy backend); it never looks at the
engine's derivative rules.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from matcalc import Derivative
from matcalc.evaluate import evaluate_numpy, squeeze
from matcalc.ir import Expr, Var, variables
from matcalc.verify import concrete_sizes

STEP = 1e-6


def random_values(exprs: list[Expr], seed: int = 0, sizes: dict[str, int] | None = None) -> dict[str, Any]:
    """Well-conditioned values: entries in [0.5, 1.5], square matrices diagonally dominant (det > 0)."""
    rng = np.random.default_rng(seed)
    found: dict[str, Var] = {}
    for e in exprs:
        found.update(variables(e))
    dims = sizes or concrete_sizes(exprs)
    values: dict[str, Any] = {}
    for name, var in found.items():
        rows, cols = (d if isinstance(d, int) else dims[d] for d in var.shape)
        if var.shape == (1, 1):
            values[name] = float(rng.uniform(0.5, 1.5))
            continue
        a = rng.uniform(0.5, 1.5, size=(rows, cols))
        if var.symmetric:
            a = (a + a.T) / 2
        if rows == cols and var.shape[0] == var.shape[1]:
            a = a + rows * np.eye(rows)
        values[name] = a[:, 0] if var.shape[1] == 1 else a
    return values


def _function_value(f: Expr, values: dict[str, Any]) -> np.ndarray:
    (value,) = evaluate_numpy([f], values, variables(f))
    return value


def evaluate_expr(e: Expr, values: dict[str, Any], context: tuple[Expr, ...] = ()) -> np.ndarray:
    """The NumPy value of any expression, in its natural shape; `context` expressions help bind the sizes."""
    names: dict[str, Var] = {}
    for sized in (e, *context):
        names.update(variables(sized))
    (value,) = evaluate_numpy([e], values, names)
    return squeeze(value, e.shape)


def finite_difference(d: Derivative, values: dict[str, Any]) -> np.ndarray:
    """The derivative by central differences, in the layout Derivative.evaluate returns."""
    var = d.variable
    point = np.array(values[var.name], dtype=float)
    flat = point.reshape(-1)
    columns = []
    for k in range(flat.size):
        up, down = flat.copy(), flat.copy()
        up[k] += STEP
        down[k] -= STEP
        f_up = _value_of(d, values, var.name, up.reshape(point.shape))
        f_down = _value_of(d, values, var.name, down.reshape(point.shape))
        columns.append((f_up - f_down) / (2 * STEP))
    jac = np.stack(columns, axis=-1)  # output entries (flattened) x variable entries
    out_shape = d.function.shape
    if d.kind == "hessian":
        return jac.reshape(()) if var.shape == (1, 1) else jac.reshape(flat.size, flat.size)
    if var.shape == (1, 1):
        return jac.reshape(_natural(out_shape, _function_value(d.function, values).shape))
    if out_shape == (1, 1):
        gradient = jac.reshape(point.shape)
        if var.symmetric:
            gradient = (gradient + gradient.T) / 2
        return gradient
    jacobian = jac.reshape(-1, flat.size)
    return jacobian.T if d.layout == "denominator" else jacobian


def _value_of(d: Derivative, values: dict[str, Any], name: str, point: np.ndarray) -> np.ndarray:
    moved = {**values, name: point}
    if d.kind == "hessian":  # differentiate the exact gradient numerically once more
        from matcalc import diff

        gradient = diff(str(d.function), name, where=dict(d.where))
        return np.asarray(gradient.evaluate(moved), dtype=float).reshape(-1)
    return _function_value(d.function, moved).reshape(-1)


def _natural(shape: tuple, concrete: tuple[int, int]) -> tuple[int, ...]:
    if shape == (1, 1):
        return ()
    if shape[1] == 1 or shape[0] == 1:
        return (concrete[0] * concrete[1],)
    return concrete


def assert_matches_finite_differences(d: Derivative, seed: int = 0, rtol: float = 1e-5, atol: float = 1e-7) -> None:
    values = random_values([d.function, d.expr, d.variable], seed)
    got = np.asarray(d.evaluate(values), dtype=float)
    expected = finite_difference(d, values)
    assert got.shape == expected.shape, f"shape {got.shape} != finite differences {expected.shape}"
    np.testing.assert_allclose(got, expected, rtol=rtol, atol=atol, err_msg=f"d/d{d.variable.name} {d.function}")
