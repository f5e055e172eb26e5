"""The three derivation methods (`--steps differential|chain|index`, issue 18): every step is a true equation.

Each step carries its claim (spec.Claim): a value, a Jacobian of the vecs, a gradient, a differential, an index sum.
`assert_every_step_true` evaluates each step at random values and compares it with central finite differences
(float64) of the function the claim names, or for an index sum, evaluates the sum entry by entry (its own
evaluator, below: δ's, entries and Σ's looped over) against the same differences.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import subprocess
import sys
from typing import Any

import numpy as np
import pytest
from oracles import _vec_jacobian as central_vec_jacobian
from oracles import close_to_finite_differences, random_values
from test_first_contact import braces_balance

import matcalc
from matcalc import Derivative
from matcalc.backends.interpret import evaluate_numpy
from matcalc.calculus.index_form import Delta, IndexForm
from matcalc.calculus.spec import Step
from matcalc.core import ir
from matcalc.core.errors import MatcalcError, UnsupportedError
from matcalc.core.ir import Expr, Var

STEP = 1e-6

# ---------------------------------------------------------------- the checker


def _sizes(values: dict[str, Any]) -> dict[str, int]:
    return {k: v for k, v in values.items() if isinstance(v, int) and not isinstance(v, bool)}


def _dims(shape: ir.Shape, values: dict[str, Any]) -> tuple[int, int]:
    sizes = _sizes(values)
    return ir.dim_value(shape[0], sizes), ir.dim_value(shape[1], sizes)


def value_2d(e: Expr, values: dict[str, Any]) -> np.ndarray:
    """e at `values`, as the 2-D array of its shape (a vector n×1, a scalar 1×1)."""
    names = ir.variables(e)
    given = {k: v for k, v in values.items() if k in names or isinstance(v, int)}
    (value,) = evaluate_numpy([e], given, names)
    return np.asarray(value, dtype=float).reshape(_dims(e.shape, values), order="F")


def _natural(array: np.ndarray, var: Var) -> Any:
    """A 2-D value as the values dict holds a variable: a float, a 1-D vector or a matrix."""
    if var.shape == ir.SCALAR:
        return float(array[0, 0])
    if var.shape[1] == 1:
        return array[:, 0].copy()
    return array


def vec_jacobian(of: Expr, wrt: Var, values: dict[str, Any], step: float = STEP) -> np.ndarray:
    """d vec(of) / d vec(wrt)^T by central differences (both vecs column-major)."""
    return central_vec_jacobian(of, value_2d, values, wrt.name, step)


def index_value(form: IndexForm, values: dict[str, Any], entry: bool) -> np.ndarray:
    """An index sum evaluated entry by entry: the tensor T[i, j, k, l] (axes of size 1 left out) as the 2-D matrix
    of the vecs (rows: the output's indices, columns: the variable's, both column-major); for an entry form, vec(F)."""
    sizes = _sizes(values)
    out_dims = [ir.dim_value(d, sizes) for d, i in zip(form.output_shape, form.output_indices, strict=True)
                if i is not None]
    var_dims = [] if entry else [ir.dim_value(d, sizes) for d, i in zip(form.variable.shape,
                                                                         form.variable_indices, strict=True)
                                 if i is not None]
    free = [i for i in form.output_indices if i is not None] + \
        ([] if entry else [i for i in form.variable_indices if i is not None])
    dims = out_dims + var_dims
    cache: dict[Expr, np.ndarray] = {}

    def matrix(e: Expr) -> np.ndarray:
        if e not in cache:
            cache[e] = value_2d(e, values)
        return cache[e]

    tensor = np.zeros(dims or [1])
    for at in itertools.product(*(range(n) for n in dims)):
        index = dict(zip(free, at, strict=True))
        total = 0.0
        for term in form.terms:
            summed = [(name, ir.dim_value(dim, sizes)) for name, dim in term.summed]
            base = float(term.coefficient) * float(np.prod([matrix(s)[0, 0] for s in term.scalars]))
            for inner in itertools.product(*(range(n) for _, n in summed)):
                where = {**index, **dict(zip([name for name, _ in summed], inner, strict=True))}
                product = base
                for factor in term.factors:
                    if isinstance(factor, Delta):
                        product *= float(where[factor.a] == where[factor.b])
                    else:
                        m = matrix(factor.expr)
                        product *= m[where[factor.row] if factor.row is not None else 0,
                                     where[factor.col] if factor.col is not None else 0]
                total += product
        tensor[at if dims else 0] = total
    rows = int(np.prod(out_dims)) if out_dims else 1
    return tensor.reshape(rows, -1, order="F")


def _close(got: np.ndarray, expected: np.ndarray, what: str) -> None:
    assert got.shape == expected.shape, f"{what}: shape {got.shape} != {expected.shape}"
    scale = max(1.0, float(np.max(np.abs(expected), initial=0.0)))
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5 * scale, err_msg=what)


def assert_every_step_true(steps: tuple[Step, ...], derivatives: list[Derivative], seed: int = 0) -> int:
    """Check each step's claim at random values; returns how many steps were checked (every one that claims)."""
    first = derivatives[0]
    inputs = random_values([first.function, *(d.expr for d in derivatives), *(d.variable for d in derivatives)],
                           seed)
    values = dict(inputs)
    for name, e in first.bindings:  # the forward values and adjoints the steps name
        values[name] = _natural(value_2d(ir.inline(first.bindings, Var(name, e.shape)), inputs), Var(name, e.shape))
    by_variable = {d.variable.name: d for d in derivatives}
    checked = 0
    for step in steps:
        claim = step.claim
        what = f"{step.section or ''} {step.title}: {step}"[:400]
        if claim is None:
            continue
        checked += 1
        if claim.how == "value":
            expected = value_2d(claim.of, values)
            if step.lhs and isinstance(step.lhs[0], str):
                values[step.lhs[0]] = _natural(expected, Var(step.lhs[0], claim.of.shape))
            _close(value_2d(step.expr, values), expected, what)
        elif claim.how in ("jacobian", "jacobian_T"):
            expected = vec_jacobian(claim.of, claim.wrt, values)
            got = value_2d(step.expr, values)
            if claim.how == "jacobian_T":
                got = got.T
            if claim.wrt.is_scalar and step.expr.shape == claim.of.shape:  # the entrywise derivative, F's shape
                got = got.reshape(-1, 1, order="F")
            _close(got, expected, what)
        elif claim.how in ("gradient", "gradient_T", "sym_gradient"):
            row = vec_jacobian(claim.of, claim.wrt, values)
            expected = row.reshape(_dims(claim.wrt.shape, values), order="F")
            if claim.how == "sym_gradient":
                expected = (expected + expected.T) / 2
            got = value_2d(step.expr, values)
            _close(got.T if claim.how == "gradient_T" else got, expected, what)
        elif claim.how == "differential":
            rng = np.random.default_rng(seed + 1)
            direction = Var("direction_of_the_test", claim.wrt.shape)
            d_values = {**values, direction.name: _natural(rng.uniform(-1, 1, _dims(claim.wrt.shape, values)),
                                                           claim.wrt)}
            got = value_2d(ir.substitute(step.expr, {ir.Differential(claim.wrt): direction}), d_values)
            jacobian = vec_jacobian(claim.of, claim.wrt, values)
            moved = np.asarray(d_values[direction.name], dtype=float).reshape(-1, 1, order="F")
            expected = (jacobian @ moved).reshape(_dims(claim.of.shape, values), order="F")
            _close(got, expected, what)
        elif claim.how == "result":
            d = by_variable[claim.wrt.name]
            # the engine's own result (over the program's names, where it was a program)
            _close(value_2d(step.expr, values), value_2d(d.expr, values), what)
            assert close_to_finite_differences(d, inputs), what
        elif claim.how == "entry":
            _close(index_value(step.index, values, entry=True), value_2d(claim.of, values).reshape(-1, 1, order="F"),
                   what)
        elif claim.how == "index":
            _close(index_value(step.index, values, entry=False), vec_jacobian(claim.of, claim.wrt, values), what)
        else:
            raise AssertionError(f"unknown claim {claim.how}")
    return checked


# ---------------------------------------------------------------- every step of every method is true

SINGLE = [  # (expression, variable, where, hessian)
    ("max(0, w^T x + b)", "w", "b: scalar", False),  # Parr & Howard's neuron
    ("W x + b", "W", None, False),  # the linear layer w.r.t. its weights: a 3rd-order tensor
    ("W x + b", "x", None, False),
    ("a^T x", "x", None, False),
    ("w .* x", "w", None, False),  # an element-wise operator: a diagonal Jacobian
    ("sum(x)", "x", None, False),  # the sum reduction: a row of ones
    ("sigmoid(W x + b)", "x", None, False),
    ("x^T A x", "x", None, False),
    ("tr(A X)", "X", None, False),
    ("W x", "x", None, False),
    ("softmax(W x)", "W", None, False),
    ("log(det(X))", "X", None, False),
    ("exp(alpha x)", "alpha", None, False),  # w.r.t. a scalar: the entrywise derivative
    ("x^T A x", "x", None, True),  # the Hessian: the chain rule applied to the gradient
    ("sum(exp(A x))", "x", None, True),
    ("tr(X^T A X)", "X", None, True),  # a Hessian w.r.t. a matrix, 4th order
    ("sum(tanh(W x))", "W", None, False),
    ("W x + b", "x", None, "denominator"),
    ("a^T x", "x", None, "jacobian"),  # the seeds' layout: the 1×n row, the gradient's transpose
    ("tr(A X)", "X", None, "jacobian"),
    ("tr(A S)", "S", "S: symmetric", False),  # w.r.t. a symmetric matrix: sym(G) at the end
    ("a^T b", "x", "x: vector", False),  # a function free of the variable: zero
]

PROGRAMS = [  # (program, variables)
    ("h1 = tanh(W1 x + b1); h2 = W2 h1 + b2; L = sum(h2 .* h2) / 2", ["W1", "W2"]),  # a two-layer network
    ("h1 = sigmoid(W1 x + b1); h2 = sigmoid(W2 h1 + b2); L = sum(h2)", ["W1", "b1", "W2"]),  # Dillon's stack
    ("h = tanh(W1 x); L = sum(tanh(W2 h))", ["W1", "W2"]),
]

INDEXED = ["max(0, w^T x + b)", "W x", "a^T x", "x^T A x", "tr(A X)", "W x + b", "sum(tanh(W x))", "w .* x"]


def _single(expr: str, var: str, where: str | None, hessian: bool | str) -> Derivative:
    if hessian is True:
        return matcalc.hessian(expr, var, where=where)
    if hessian in ("denominator", "jacobian"):
        return matcalc.diff(expr, var, where=where, layout=hessian)
    return matcalc.diff(expr, var, where=where)


@pytest.mark.parametrize("method", ["differential", "chain"])
@pytest.mark.parametrize(("expr", "var", "where", "hessian"), SINGLE)
def test_every_step_is_true_at_random_values(expr, var, where, hessian, method):
    d = _single(expr, var, where, hessian)
    steps = d.method_steps(method)
    assert all(step.claim is not None for step in steps)  # every step states something checkable
    assert assert_every_step_true(steps, [d]) == len(steps)
    assert steps[-1].expr is d.expr or method == "differential"  # the chain method ends in the engine's result


@pytest.mark.parametrize(("expr", "var", "where", "hessian"), [case for case in SINGLE if case[0] in INDEXED])
def test_every_index_step_is_true_at_random_values(expr, var, where, hessian):
    d = _single(expr, var, where, hessian)
    steps = d.method_steps("index")
    assert assert_every_step_true(steps, [d]) == len(steps)
    assert steps[-1].expr is d.expr


@pytest.mark.parametrize("method", ["differential", "chain", "index"])
@pytest.mark.parametrize(("program", "variables"), PROGRAMS)
def test_every_step_of_a_network_is_true(program, variables, method):
    gradients = matcalc.grad(program, variables)
    derivatives = list(gradients.values())
    steps = gradients.method_steps(method)
    assert assert_every_step_true(steps, derivatives) == len(steps)


def test_a_network_in_the_jacobian_layout_ends_in_the_gradient_transposed():
    d = matcalc.diff("h1 = tanh(W1 x + b1); L = sum(h1 .* h1)", "W1", layout="jacobian")
    assert d.steps[-1].claim is not None and d.steps[-1].claim.how == "gradient_T"
    assert assert_every_step_true(d.steps, [d]) == sum(step.claim is not None for step in d.steps)


def test_a_wrong_step_is_caught_by_the_checker():
    # the checker is not vacuous: a local derivative made wrong (diag(x) replaced by diag(w)) is refuted
    d = matcalc.diff("w .* x", "w")
    steps = list(d.method_steps("chain"))
    n = next(i for i, s in enumerate(steps) if s.title == "local derivative")
    steps[n] = dataclasses.replace(steps[n], expr=ir.func("diag", Var("w", (steps[n].expr.shape[0], 1))))
    with pytest.raises(AssertionError):
        assert_every_step_true(tuple(steps), [d])


# ---------------------------------------------------------------- the examples, as a student writes them


def test_the_neuron_by_the_chain_rule_has_parr_and_howards_four_steps():
    text = matcalc.diff("max(0, w^T x + b)", "w", where="b: scalar").derivation("chain")
    assert text.splitlines() == [
        "1. intermediate variables:",
        "  u1 = w^T x   (scalar)",
        "  u2 = u1 + b   (scalar)",
        "  y = relu(u2)   (scalar)",
        "2. local derivatives:",
        "  ∂u1/∂w = x^T   (the gradient as a row, its transpose, 1×n)",
        "  ∂u2/∂u1 = 1   (scalar derivative)",
        "  ∂y/∂u2 = step(u2)   (scalar derivative)",
        "3. the chain rule: the product of the Jacobians, in order:",
        "  du1/dw = x^T   (1×n)",
        "  du2/dw = ∂u2/∂u1 du1/dw = x^T   (1×1 times 1×n is 1×n)",
        "  dy/dw = ∂y/∂u2 du2/dw = step(u2) x^T   (1×1 times 1×n is 1×n)",
        "4. substitute back and simplify:",
        "  dy/dw = step(w^T x + b) x^T   (the intermediate variables replaced by their definitions)",
        "  gradient = step(w^T x + b) x   (the transpose of the row above, shaped like w (n×1): as the engine "
        "prints it)",
    ]


def test_an_element_wise_product_has_a_diagonal_jacobian():
    text = matcalc.diff("w .* x", "w").derivation("chain")
    assert "∂y/∂w = diag(x)   (diagonal Jacobian (element-wise operator), n×n)" in text
    assert text.endswith("Jacobian = diag(x)   (simplified: as the engine prints it)")


def test_the_sum_reduction_is_a_row_of_ones():
    text = matcalc.diff("sum(x)", "x").derivation("chain")
    assert "∂y/∂x = vector(1)^T   (a row of ones 1^T (sum reduction), 1×n)" in text
    assert text.endswith("gradient = vector(1)   (the transpose of the row above, shaped like x (n×1): as the "
                         "engine prints it)")


def test_the_linear_layer_wrt_its_weights_is_a_tensor_in_vec_form():
    text = matcalc.diff("W x + b", "W").derivation("chain")
    assert "∂vec(u1)/∂vec(W)^T" not in text  # W x is a vector: its vec is itself
    assert "∂u1/∂vec(W)^T = x^T ⊗ I   (a 3rd-order tensor (w.r.t. a matrix), in vec form: vec(du1) = J vec(dW), " \
           "n×m·n)" in text
    assert "∂y/∂u1 = I   (identity Jacobian I, n×n)" in text
    assert "dy/dvec(W)^T = ∂y/∂u1 du1/dvec(W)^T = x^T ⊗ I   (n×n times n×m·n is n×m·n)" in text
    assert text.endswith("dy/dvec(W)^T = x^T ⊗ I   (simplified: as the engine prints it)")


def test_a_jacobian_of_a_layer_multiplies_a_diagonal_by_the_weights():
    text = matcalc.diff("sigmoid(W x + b)", "x").derivation("chain")
    assert "∂y/∂u2 = diag(y .* (1 - y))   (diagonal Jacobian (element-wise operator), n×n)" in text
    assert "dy/dx = ∂y/∂u2 du2/dx = diag(y .* (1 - y)) W   (n×n times n×m is n×m)" in text


def test_a_two_layer_network_uses_the_programs_own_definitions_as_intermediates():
    gradients = matcalc.grad("h1 = tanh(W1 x + b1); h2 = W2 h1 + b2; L = sum(h2 .* h2) / 2", ["W1", "W2"])
    text = gradients.derivation("chain")
    assert "  h1 = tanh(W1 x + b1)   (vector, n×1)" in text and "u1" not in text
    assert "dL/dvec(W1)^T = ∂L/∂h2 dh2/dvec(W1)^T = h2^T W2 diag(1 - h1.^2) (x^T ⊗ I)   (1×p times p×m·n is " \
           "1×m·n)" in text
    assert text.count("2. local derivatives:") == 1  # shared by both gradients
    assert "4. simplify (the program's own definitions stay by name: nothing to substitute back) (w.r.t. W2):" in text


def test_dillons_stack_of_sigmoid_layers_multiplies_diagonal_jacobians_in_order():
    gradients = matcalc.grad("h1 = sigmoid(W1 x + b1); h2 = sigmoid(W2 h1 + b2); L = sum(h2)", ["W1"])
    text = gradients.derivation("chain")
    assert "∂h2/∂h1 = diag(h2 .* (1 - h2)) W2" in text
    assert "∂L/∂h2 = vector(1)^T   (a row of ones 1^T (sum reduction), 1×p)" in text
    # the program's names stay in the result: substituted back, each layer would be written out inside the next
    assert "  gradient = ((W2^T (h2 .* (1 - h2))) .* h1 .* (1 - h1)) x^T   (" in text
    assert "sigmoid(W2 sigmoid" not in text


def test_a_variable_used_twice_sums_over_its_paths_the_total_derivative():
    text = matcalc.diff("x^T A x", "x").derivation("chain")
    assert "  u1 = A x   (vector, n×1)\n  y = x^T u1   (scalar)" in text  # one intermediate per binary product
    assert "dy/dx = ∂y/∂x + ∂y/∂u1 du1/dx = u1^T + x^T A   (1×n times n×n is 1×n)" in text


def test_a_hessian_is_the_chain_rule_applied_to_the_gradient():
    text = matcalc.hessian("x^T A x", "x").derivation("chain")
    assert "the gradient: 4. substitute back and simplify:" in text
    assert "the Hessian, the chain rule applied to the gradient g: 1. intermediate variables:" in text
    assert text.endswith("Hessian = A + A^T   (simplified: as the engine prints it)")


@pytest.mark.parametrize(("expr", "var", "lines"), [
    ("W x", "x", ["(W x)_i = Σ_p W_ip x_p", "∂(W x)_i / ∂x_k = Σ_p W_ip δ_pk", "∂(W x)_i / ∂x_k = W_ik",
                  "Jacobian = W"]),
    ("a^T x", "x", ["(a^T x) = Σ_p a_p x_p", "∂(a^T x) / ∂x_k = Σ_p a_p δ_pk", "∂(a^T x) / ∂x_k = a_k",
                    "gradient = a"]),
    ("x^T A x", "x", ["(x^T A x) = Σ_pq x_p A_pq x_q", "∂(x^T A x) / ∂x_k = Σ_p δ_pk (A x)_p + Σ_p (x^T A)_p δ_pk",
                      "∂(x^T A x) / ∂x_k = (A x)_k + (x^T A)_k", "gradient = (A + A^T) x"]),
    ("tr(A X)", "X", ["tr(A X) = Σ_pq A_pq X_qp", "∂tr(A X) / ∂X_kl = Σ_pq A_pq δ_qk δ_pl",
                      "∂tr(A X) / ∂X_kl = A_lk", "gradient = A^T"]),
])
def test_the_index_method_sums_out_the_kronecker_deltas_and_ends_in_the_engines_result(expr, var, lines):
    d = matcalc.diff(expr, var)
    printed = [line.strip().split("   (")[0] for line in d.derivation("index").splitlines() if line.startswith("  ")]
    assert printed == lines
    assert printed[-1].split(" = ", 1)[1] == str(d)


def test_a_derivation_without_a_readable_index_form_says_so():
    d = matcalc.diff("inv(X) ⊗ X", "X")
    with pytest.raises(UnsupportedError, match="no readable index form"):
        d.derivation("index")


def test_an_unknown_method_is_a_clear_error():
    with pytest.raises(MatcalcError, match="differential, chain, index"):
        matcalc.diff("W x", "x").derivation("backwards")


def test_differential_is_the_default_and_derivation_of_true_is_still_latex():
    d = matcalc.diff("tr(A X B)", "X")
    assert d.derivation() == d.derivation("differential")
    assert d.derivation(True) == d.derivation(latex=True)  # the old positional latex flag


def test_several_variables_print_the_shared_steps_once():
    gradients = matcalc.grad("h = tanh(W1 x); L = sum(tanh(W2 h))", ["W1", "W2"])
    text = gradients.derivation()
    assert text.count("forward: h: tanh(W1 x)") == 1 and text.count("backward: g_h:") == 1
    assert text.splitlines()[-2:] == ["gradient w.r.t. W1: (g_h .* (1 - h.^2)) x^T   [product, elementwise function]",
                                      "gradient w.r.t. W2: (1 - tanh(W2 h).^2) h^T   [product, elementwise "
                                      "function, sum of entries]"]


# ---------------------------------------------------------------- LaTeX and JSON

LATEX_CASES = [("max(0, w^T x + b)", "w", "b: scalar"), ("W x + b", "W", None), ("x^T A x", "x", None),
               ("tr(A X)", "X", None), ("sigmoid(W x + b)", "x", None)]


@pytest.mark.parametrize("method", ["differential", "chain", "index"])
@pytest.mark.parametrize(("expr", "var", "where"), LATEX_CASES)
def test_every_method_gives_a_well_formed_latex_aligned_block(expr, var, where, method):
    latex = matcalc.diff(expr, var, where=where).derivation(method, latex=True)
    assert latex.startswith("\\begin{aligned}\n") and latex.endswith("\n\\end{aligned}")
    assert braces_balance(latex), latex
    body = latex.splitlines()[1:-1]
    assert all(line.count("&") == 1 for line in body), latex  # one alignment point a line
    assert all(line.endswith(" \\\\") for line in body[:-1])
    for symbol in ("×", "∂", "δ", "Σ", "⊗"):  # set in math mode, never left in \text
        assert symbol not in latex, latex


@pytest.mark.parametrize("method", ["differential", "chain", "index"])
def test_the_latex_of_a_network_and_of_a_hessian_is_well_formed(method):
    for latex in (matcalc.grad("h1 = sigmoid(W1 x + b1); L = sum(h1)", ["W1", "b1"]).derivation(method, latex=True),
                  matcalc.hessian("x^T A x", "x").derivation(method, latex=True)):
        assert braces_balance(latex) and latex.startswith("\\begin{aligned}"), latex
        assert all(line.count("&") == 1 for line in latex.splitlines()[1:-1]), latex


def test_steps_method_on_the_command_line():
    def run(*argv: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "matcalc", *argv], capture_output=True, text=True, check=False)

    d = matcalc.diff("W x", "x")
    assert run("diff", "W x", "x", "--steps", "index").stdout == f"{d.derivation('index')}\nW\n"
    assert run("diff", "--steps", "W x", "x").stdout == f"{d.derivation()}\nW\n"  # bare --steps takes no EXPR
    assert run("diff", "W x", "x", "--steps=chain", "--latex").stdout.startswith("\\begin{aligned}")
    wrong = run("diff", "W x", "x", "--steps", "chian")
    assert wrong.returncode == 2 and "invalid choice: 'chian'" in wrong.stderr and "Traceback" not in wrong.stderr
    payload = json.loads(run("diff", "a^T x", "x", "--steps", "index", "--json").stdout)
    assert payload["steps"][-1]["line"] == "gradient = a   (the matrix of these entries, n×1: as the engine prints it)"
    assert payload["steps"][0]["section"] == "1. the entry as a sum"
    no_index = run("diff", "inv(X) ⊗ X", "X", "--steps", "index")
    assert no_index.returncode == 2 and "no readable index form" in no_index.stderr
