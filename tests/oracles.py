"""Independent numeric oracles for the tests: central finite differences in float64.

The oracle evaluates only the *function* (with the NumPy backend); it never looks at the
engine's derivative rules.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from matcalc import Derivative
from matcalc.backends.interpret import evaluate_numpy, squeeze
from matcalc.backends.verify import concrete_sizes
from matcalc.core.ir import Expr, Func, Power, Var, variables, walk

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
    values.update({dim: size for dim, size in dims.items() if dim not in values})  # sizes no value tells (tr(I))
    return values


def uniform_values(names: dict[str, Var], sizes: dict[str, int], seed: int) -> dict[str, Any]:
    """The given sizes, and for each variable uniform entries in [0.5, 1.5], 2-D, at those sizes (products too)."""
    from matcalc.core.ir import dim_value

    rng = np.random.default_rng(seed)
    values: dict[str, Any] = {**sizes}
    for symbol, var in names.items():
        values[symbol] = rng.uniform(0.5, 1.5, size=tuple(dim_value(d, sizes) for d in var.shape))
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


CONDITION_LIMIT = 1e8


def well_defined(e: Expr, values: dict[str, Any], context: tuple[Expr, ...] = ()) -> bool:
    """Whether e can be trusted in float64 at `values`: finite, and every matrix it inverts far from singular."""
    with np.errstate(all="ignore"):
        try:
            for node in walk(e):
                inverts = (isinstance(node, Func) and node.name in ("inv", "det", "logdet")) or (
                    isinstance(node, Power) and not node.is_scalar)
                if inverts and np.linalg.cond(evaluate_expr(node.children[0], values, (e, *context))) > CONDITION_LIMIT:
                    return False
            return bool(np.all(np.isfinite(evaluate_expr(e, values, context))))
        except np.linalg.LinAlgError:
            return False


def finite_difference(d: Derivative, values: dict[str, Any], step: float = STEP) -> np.ndarray:
    """The derivative by central differences, in the layout Derivative.evaluate returns.

    For a Hessian, the engine's gradient is differentiated numerically (it is itself proven by
    the gradient tests).
    """
    var = d.variable
    point = np.array(values[var.name], dtype=float)
    value_of = _gradient_value if d.kind == "hessian" else _function_value
    of = _exact_gradient(d) if d.kind == "hessian" else d.function
    if d.form == "vec":  # a tensor in vec form: d vec(F) / d vec(X)^T, both vecs column-major
        return _vec_jacobian(of, value_of, values, var.name, step)
    flat = point.reshape(-1)
    columns = []
    for k in range(flat.size):
        up, down = flat.copy(), flat.copy()
        up[k] += step
        down[k] -= step
        f_up = value_of(of, {**values, var.name: up.reshape(point.shape)}).reshape(-1)
        f_down = value_of(of, {**values, var.name: down.reshape(point.shape)}).reshape(-1)
        columns.append((f_up - f_down) / (2 * step))
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
        return gradient.T if d.layout == "jacobian" else gradient  # the Jacobian layout: the gradient's transpose
    jacobian = jac.reshape(-1, flat.size)
    return jacobian.T if d.layout == "denominator" else jacobian


def _vec_jacobian(of: Any, value_of: Any, values: dict[str, Any], name: str, step: float) -> np.ndarray:
    point = np.array(values[name], dtype=float)
    flat = point.reshape(-1, order="F")
    columns = []
    for c in range(flat.size):
        up, down = flat.copy(), flat.copy()
        up[c] += step
        down[c] -= step
        f_up = np.reshape(value_of(of, {**values, name: up.reshape(point.shape, order="F")}), -1, order="F")
        f_down = np.reshape(value_of(of, {**values, name: down.reshape(point.shape, order="F")}), -1, order="F")
        columns.append((f_up - f_down) / (2 * step))
    return np.stack(columns, axis=-1)


def _exact_gradient(d: Derivative) -> Derivative:
    from matcalc import diff

    return diff(str(d.function), d.variable.name, where=dict(d.where), inline=True)


def _gradient_value(gradient: Derivative, values: dict[str, Any]) -> np.ndarray:
    return np.asarray(gradient.evaluate(values), dtype=float)


def _natural(shape: tuple, concrete: tuple[int, int]) -> tuple[int, ...]:
    if shape == (1, 1):
        return ()
    if shape[1] == 1 or shape[0] == 1:
        return (concrete[0] * concrete[1],)
    return concrete


def _engine_value(d: Derivative, values: dict[str, Any]) -> np.ndarray:
    """The engine's derivative in the layout finite_difference gives: a tensor as its vec form."""
    return np.asarray(d.evaluate(values, form="vec") if d.form == "vec" else d.evaluate(values), dtype=float)


def assert_matches_finite_differences(d: Derivative, seed: int = 0, rtol: float = 1e-5, atol: float = 1e-7) -> None:
    values = random_values([d.function, d.expr, d.variable], seed)
    got = _engine_value(d, values)
    expected = finite_difference(d, values)
    assert got.shape == expected.shape, f"shape {got.shape} != finite differences {expected.shape}"
    np.testing.assert_allclose(got, expected, rtol=rtol, atol=atol, err_msg=f"d/d{d.variable.name} {d.function}")


def close_to_finite_differences(d: Derivative, values: dict[str, Any], rtol: float = 1e-5) -> bool:
    """Whether d matches central differences at `values`, up to the truncation and rounding error of the
    differences: each entry within rtol of the largest entry (and of itself). A mismatch at the default
    step is looked at again with larger steps, so that rounding in a steep function is not taken for a
    wrong derivative; a wrong derivative matches at no step.
    """
    got = _engine_value(d, values)
    for step in (STEP, 1e-4, 1e-5, 1e-7):
        expected = finite_difference(d, values, step)
        if got.shape != expected.shape:
            return False
        scale = max(1.0, float(np.max(np.abs(expected), initial=0.0)))
        if np.allclose(got, expected, rtol=rtol, atol=rtol * scale):
            return True
    return False


def refuted(verdict: Any) -> bool:
    """A check's verdict says the candidate is wrong, as decided (not merely out of time: undecided is falsy too)."""
    return not verdict and not verdict.undecided
