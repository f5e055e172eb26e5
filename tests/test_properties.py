"""Property tests on random well-typed expressions (tests/generate.py): the engine is never silently wrong.

For every generated expression and every variable in it, the derivative must match central
finite differences of the function (tests/oracles.py, which never looks at the engine's rules);
for a scalar function of a vector or a scalar, so must the Hessian. A sample is also proven
elementwise with SymPy. Simplification must end, be idempotent and keep the values.

Counts are printed after the run ("matcalc figures"). A failure is shrunk by hypothesis to a
small expression; it then becomes a named regression test in test_regressions.py.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import numpy as np
import pytest
from generate import SCALAR, Case, cases
from hypothesis import assume, given, settings
from oracles import close_to_finite_differences, evaluate_expr, random_values
from tally import TALLY, record_slowest

import matcalc
from matcalc import EvaluationError, ShapeError, UnsupportedError
from matcalc.core.ir import Add, Expr, add, dim_value, mul, num, transpose, variables, walk
from matcalc.render.text import to_text
from matcalc.rules.simplify import is_symmetric, simplify

QUICK = 200  # examples per property in the normal run
LONG = 10_000  # examples per property in the long run (-m slow)
MAGNITUDE = 1e6  # larger values make differences in float64 meaningless: such a point is skipped


def _typed(case: Case) -> Expr:
    return matcalc.parse(case.text, where=case.where)


def _values_at_a_moderate_point(f: Expr, case: Case) -> dict:
    values = random_values([f], seed=0, sizes=case.sizes)
    with np.errstate(all="ignore"):
        value = evaluate_expr(f, values)
    moderate = bool(np.all(np.isfinite(value)) and np.max(np.abs(value), initial=0.0) < MAGNITUDE)
    if not moderate:
        TALLY["random expressions skipped (values overflow)"] += 1
    assume(moderate)
    return values


def _in_scope(error: UnsupportedError) -> bool:
    """A refusal of a form the readers cannot write yet (not a documented limit of the language)."""
    return "row vector" not in str(error)


def assert_prints_back(d: matcalc.Derivative) -> None:
    """The printed derivative parses back to the same tree (docs/language.md), not only to the same values: with
    the documented call, whose shape is a tensor's axes too."""
    reparsed = matcalc.parse(str(d), where=d.where, shape=d.shape)
    TALLY["printed results parsed back to the same tree"] += 1
    assert reparsed == d.expr, f"{d} parses back to {reparsed!r}, not to {d.expr!r}"


def settled_by_sympy(d: matcalc.Derivative) -> bool:
    """Where finite differences disagree at every step, the function may be too steep for them in float64
    (sin(exp(sum(A))) moves by 60 per 1e-6); the exact SymPy proof then decides."""
    TALLY["derivatives settled by SymPy (too steep for finite differences)"] += 1
    return bool(d.verify())


def check_every_derivative(case: Case) -> None:
    f = _typed(case)
    assert matcalc.parse(to_text(f), where=case.where, shape=f.shape) == f, "printing round trip"
    values = _values_at_a_moderate_point(f, case)
    TALLY["random expressions checked against finite differences"] += 1
    for name in case.variables:
        try:
            d = matcalc.diff(case.text, name, where=case.where)
        except UnsupportedError as error:
            TALLY["derivatives refused: in scope, no matrix form yet" if _in_scope(error)
                  else "derivatives out of scope (3rd/4th-order tensors)"] += 1
            continue
        assert_prints_back(d)
        with np.errstate(all="ignore"):
            right = close_to_finite_differences(d, values) or settled_by_sympy(d)
        TALLY["derivatives checked"] += 1
        TALLY["derivatives wrong"] += not right
        if d.form == "vec":  # once refused as 3rd/4th-order tensors (issue 9)
            TALLY["tensor derivatives (3rd/4th order) checked"] += 1
            TALLY["tensor derivatives (3rd/4th order) wrong"] += not right
        assert right, f"d/d{name} of {case} = {d} does not match finite differences"
        check_derivative_of_derivative(case, d, values)
        if f.shape == SCALAR and not d.variable.symmetric:  # w.r.t. a symmetric matrix: refused, documented
            check_hessian(case, name, values)


def check_derivative_of_derivative(case: Case, d: matcalc.Derivative, values: dict) -> None:
    """d.diff(y) for the case's first variable y: a tensor with d's axes, then y's, against finite differences of
    d's own expression (mixed and higher derivatives, any order)."""
    name = case.variables[0]
    if d.order + len([n for n in ir_shape(case, name) if n != 1]) > 4 or d.variable.symmetric:
        return  # beyond the 4th order the finite differences get slow; sym(G) is not d's unconstrained derivative
    try:
        second = d.diff(name)
    except UnsupportedError as error:
        assert _in_scope(error)
        return
    assert_prints_back(second)
    with np.errstate(all="ignore"):
        right = close_to_finite_differences(second, values) or settled_by_sympy(second)
    TALLY["derivatives of derivatives checked"] += 1
    TALLY["derivatives of derivatives wrong"] += not right
    assert right, f"d/d{name} of d/d{d.variable.name} of {case} = {second} does not match finite differences"


def ir_shape(case: Case, name: str) -> tuple:
    return matcalc.core.ir.variables(_typed(case))[name].shape


def check_hessian(case: Case, name: str, values: dict) -> None:
    try:
        h = matcalc.hessian(case.text, name, where=case.where)
    except UnsupportedError as error:
        assert _in_scope(error)
        TALLY["Hessians refused: in scope, no matrix form yet"] += 1
        return
    assert_prints_back(h)
    with np.errstate(all="ignore"):
        right = close_to_finite_differences(h, values) or settled_by_sympy(h)
    TALLY["Hessians checked"] += 1
    TALLY["Hessians wrong"] += not right
    if h.form == "vec":
        TALLY["Hessians w.r.t. a matrix (4th order) checked"] += 1
    assert right, f"Hessian w.r.t. {name} of {case} = {h} does not match finite differences"


def check_simplification(case: Case) -> None:
    f = _typed(case)
    values = _values_at_a_moderate_point(f, case)
    simplified = simplify(f)  # raises RewriteCycleError if the rules do not settle within their cap
    assert simplify(simplified) == simplified, f"simplify is not idempotent on {case}: {simplified}"
    with np.errstate(all="ignore"):
        before, after = evaluate_expr(f, values), evaluate_expr(simplified, values, (f,))
    scale = max(1.0, float(np.max(np.abs(before), initial=0.0)))
    np.testing.assert_allclose(after, before, rtol=1e-9, atol=1e-9 * scale, err_msg=f"simplify({case}) = {simplified}")
    for node in walk(f):  # the guard of the symmetric rules: structurally symmetric is numerically symmetric
        if is_symmetric(node) and not node.is_scalar:
            with np.errstate(all="ignore"):
                m = evaluate_expr(node, values, (f,))
            np.testing.assert_allclose(m, m.T, rtol=1e-9, atol=1e-9 * max(1.0, float(np.max(np.abs(m)))))
    TALLY["random expressions simplified"] += 1


def derivatives(case: Case) -> Iterator[tuple[str, matcalc.Derivative]]:
    """The derivative w.r.t. each variable of the case that has a matrix form."""
    for name in case.variables:
        try:
            yield name, matcalc.diff(case.text, name, where=case.where)
        except UnsupportedError:
            continue


QUICK_PROOF_SECONDS = 10.0  # per derivative in the quick run: the default run stays within minutes
TENSOR_PROOF_SECONDS = 5.0  # a 4th-order tensor of inv(...) has hundreds of entries: finite differences check
# every random tensor, and its exact proof may end undecided here (never wrong); the long run allows the default


def check_sympy_proof(case: Case, tensor_seconds: float | None = TENSOR_PROOF_SECONDS, quick: bool = True) -> None:
    """Each derivative proven exactly. In the quick run a proof that runs out of time (undecided: never called
    right) is tallied, not failed: a random expression can take SymPy 30 s (sign(W) softmax(u) takes 31 s, before
    and after issue 9); finite differences check every one of them, and the long run requires the proofs."""
    for name, d in derivatives(case):
        start = time.perf_counter()
        tensor = d.form == "vec"
        report = d.verify(timeout=tensor_seconds if tensor else (QUICK_PROOF_SECONDS if quick else None))
        record_slowest("slowest verify (ms)", 1000 * (time.perf_counter() - start), f"d/d{name} {case.text}")
        TALLY["derivatives proven with SymPy"] += bool(report)
        if report.undecided and (quick or tensor):
            TALLY["proofs undecided within the time limit (quick run; checked by finite differences)"] += 1
            continue
        assert report, f"d/d{name} of {case} = {d}: {report}"


def perturbations(d: matcalc.Derivative) -> list[tuple[str, Expr]]:
    """Wrong candidates a person could write: a term dropped, a transpose added, a factor 2."""
    wrong = [("a factor 2", mul(num(2), d.expr)), ("a transpose added", transpose(d.expr))]
    if isinstance(d.expr, Add):
        wrong.append(("a term dropped", add(*d.expr.terms[:-1])))
    return wrong


def differs(candidate: Expr, d: matcalc.Derivative, values: dict) -> bool:
    """Whether a candidate, read from its text as check reads it, is another shape or has other values
    (2 x 0, a symmetric S^T and the transpose of matrix(1), which prints as matrix(1), do not)."""
    try:
        candidate = matcalc.parse(to_text(candidate), where=d.where, shape=d.matrix_shape)
    except ShapeError:
        return True
    with np.errstate(all="ignore"):
        try:
            a = evaluate_expr(candidate, values, (d.function, d.expr))
            b = evaluate_expr(d.expr, values, (d.function,))
        except EvaluationError:
            return False
    scale = max(1.0, float(np.max(np.abs(b), initial=0.0)))
    finite = np.all(np.isfinite(a)) and np.all(np.isfinite(b))
    return bool(finite and not np.allclose(a, b, rtol=1e-6, atol=1e-6 * scale))


def check_the_checker(case: Case) -> None:
    """check() says correct for the engine's own printed result and wrong for a perturbed one."""
    f = _typed(case)
    values = random_values([f], seed=1, sizes=case.sizes)
    for name, d in derivatives(case):
        start = time.perf_counter()
        timeout = TENSOR_PROOF_SECONDS if d.form == "vec" else None
        verdict = matcalc.check(case.text, name, str(d), where=case.where, timeout=timeout)
        record_slowest("slowest check (ms)", 1000 * (time.perf_counter() - start), f"d/d{name} {case.text}")
        TALLY["checks of the engine's own result"] += 1
        TALLY["checks of the engine's own result undecided"] += verdict.undecided
        assert verdict or verdict.undecided, f"check rejects its own d/d{name} of {case}: {verdict}"
        for label, candidate in perturbations(d):
            if not differs(candidate, d, values):
                continue
            start = time.perf_counter()
            verdict = matcalc.check(case.text, name, to_text(candidate), where=case.where, timeout=timeout)
            record_slowest("slowest check (ms)", 1000 * (time.perf_counter() - start), f"d/d{name} {case.text}")
            TALLY["perturbed candidates checked"] += 1
            TALLY["perturbed candidates undecided"] += verdict.undecided
            assert not verdict, f"check accepts {label} in d/d{name} of {case}: {to_text(candidate)}"


def _function_values(f: Expr, case: Case) -> dict:
    """Values of the function's variables only: no sizes, nothing a result alone names."""
    values = random_values([f], seed=0, sizes=case.sizes)
    return {name: value for name, value in values.items() if name in variables(f)}


def _results(case: Case) -> Iterator[matcalc.Derivative]:
    """Each derivative of the case, and each one's derivative w.r.t. the case's first variable (d.diff(y))."""
    for _, d in derivatives(case):
        yield d
        if d.variable.symmetric:  # sym(G) is not d's unconstrained derivative: d.diff is not defined on it
            continue
        try:
            yield d.diff(case.variables[0])
        except UnsupportedError as error:
            assert _in_scope(error)


MAX_EVALUATED_ENTRIES = 10**6  # a denser tensor is not evaluated (it is read back all the same)


def check_results_read_back_and_evaluate(case: Case) -> None:
    """Every printed result, a derivative or a derivative of one, parses back with its own where and shape to its
    tree, and evaluates from the values of the function's variables alone (issue 16, section 3)."""
    f = _typed(case)
    values = _function_values(f, case)
    for d in _results(case):
        TALLY["results read back (parse-back property)"] += 1
        assert_prints_back(d)
        entries = int(np.prod([dim_value(dim, case.sizes) for dim in d.matrix_shape]))
        if entries > MAX_EVALUATED_ENTRIES:  # (W ⊗ W ⊗ W) differentiated twice: 256^4 entries, 32 GiB (section 4)
            TALLY["results read back, too large to evaluate densely"] += 1
            continue
        with np.errstate(all="ignore"):
            value = np.asarray(d.evaluate(values))
        assert value.size == entries, f"{d} evaluates to shape {value.shape}"
        TALLY["results read back and evaluated from the function's variables"] += 1


# ---------------------------------------------------------------- the normal run


@settings(max_examples=QUICK)
@given(case=cases())
def test_random_derivatives_match_finite_differences(case: Case):
    check_every_derivative(case)


@settings(max_examples=QUICK)
@given(case=cases())
def test_simplification_ends_is_idempotent_and_keeps_the_values(case: Case):
    check_simplification(case)


@settings(max_examples=40)
@given(case=cases(max_depth=2))
def test_random_derivatives_are_proven_by_sympy(case: Case):
    check_sympy_proof(case)


@settings(max_examples=30)
@given(case=cases(max_depth=2))
def test_check_accepts_the_printed_result_and_rejects_perturbed_ones(case: Case):
    check_the_checker(case)


@settings(max_examples=40)
@given(case=cases(max_depth=2, kron=True))
def test_results_with_kronecker_products_read_back_and_evaluate(case: Case):
    check_results_read_back_and_evaluate(case)


@settings(max_examples=40)
@given(case=cases())
def test_results_read_back_and_evaluate(case: Case):
    check_results_read_back_and_evaluate(case)


@settings(max_examples=60)
@given(case=cases(max_depth=3, axes=True))
def test_random_batch_derivatives_match_finite_differences(case: Case):
    check_every_derivative(case)


@settings(max_examples=40)
@given(case=cases(max_depth=2, axes=True))
def test_results_with_broadcasts_and_axes_read_back_and_evaluate(case: Case):
    check_results_read_back_and_evaluate(case)


# ---------------------------------------------------------------- the long run


@pytest.mark.slow
@settings(max_examples=2_000)
@given(case=cases(max_depth=3, axes=True))
def test_long_run_batch_derivatives_match_finite_differences(case: Case):
    check_every_derivative(case)


@pytest.mark.slow
@settings(max_examples=2_000)
@given(case=cases(max_depth=3, kron=True))
def test_long_run_results_with_kronecker_products_read_back_and_evaluate(case: Case):
    check_results_read_back_and_evaluate(case)


@pytest.mark.slow
@settings(max_examples=LONG)
@given(case=cases())
def test_long_run_random_derivatives_match_finite_differences(case: Case):
    check_every_derivative(case)


@pytest.mark.slow
@settings(max_examples=LONG)
@given(case=cases())
def test_long_run_simplification(case: Case):
    check_simplification(case)


@pytest.mark.slow
@settings(max_examples=300)
@given(case=cases(max_depth=2))
def test_long_run_sympy_proofs(case: Case):
    check_sympy_proof(case, tensor_seconds=None, quick=False)


@pytest.mark.slow
@settings(max_examples=LONG)
@given(case=cases())
def test_long_run_check_accepts_the_printed_result_and_rejects_perturbed_ones(case: Case):
    check_the_checker(case)


# ---------------------------------------------------------------- programs


def _as_program(f: Expr, seed: int) -> str:
    """f as a program: about half of its compound subexpressions lifted into definitions p_1, p_2, ...
    (children first), the output last; the same function, written as a network of named layers."""
    from random import Random

    from matcalc.core import ir
    from matcalc.core.ir import Var
    from matcalc.render.naming import bind_names
    from matcalc.render.text import program_text

    chooser = Random(seed)
    lifted = [node for node in ir.postorder(f) if node.children and node is not f and chooser.random() < 0.5]
    names = {id(node): Var(f"p_{k}", node.shape) for k, node in enumerate(lifted, 1)}
    bindings, body = bind_names(f, names)
    return program_text([*bindings, ("out", body)])


@settings(max_examples=60)
@given(case=cases())
def test_random_programs_gradients_from_one_backward_pass_match_finite_differences(case: Case):
    f = _typed(case)
    assume(f.shape == SCALAR and case.variables)
    values = _values_at_a_moderate_point(f, case)
    program = _as_program(f, len(case.text))
    try:
        gradients = matcalc.grad(program, list(case.variables), where=case.where)
    except UnsupportedError:
        return
    TALLY["random programs differentiated by one backward pass"] += 1
    for name, d in gradients.items():
        assert_prints_back(d)
        with np.errstate(all="ignore"):
            right = close_to_finite_differences(d, values) or settled_by_sympy(d)
        TALLY["program gradients wrong"] += not right
        assert right, f"d/d{name} of the program\n{program}\n= {d} does not match finite differences"
