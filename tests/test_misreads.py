"""Nothing is silently misread, and no input gets a foreign exception (issue 16, sections 2 and 4).

- A name written right before '(' is a call: `σ(W x + b)` was σ times (W x + b), `tr(A pinv(X))` A times pinv
  times X. An unknown function is a syntax error at its column with the function meant; a product takes a space
  or `*`.
- A derivative w.r.t. a name the input does not use is an error with did-you-mean (w1 for W1), unless `where`
  declares it: then the zero is the answer.
- A hint speaks the caller's language: `where="theta: vector"` in Python, `--where "theta: vector"` on the CLI.
- Hostile arguments to every entry point (parse, diff, grad, hessian, check, codegen, evaluate) raise matcalc
  errors only; a result too large to hold is refused, naming its size, before anything is allocated.
"""

from __future__ import annotations

import math
import random
import re
import subprocess
import sys
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
from oracles import assert_matches_finite_differences
from test_cookbook_table import COOKBOOK

import matcalc
from matcalc import MatcalcError
from matcalc.core.errors import EvaluationError, ParseError, ShapeError
from matcalc.core.functions import FUNCTIONS


def error_of(call: Callable[[], Any], kind: type[MatcalcError] = MatcalcError) -> MatcalcError:
    with pytest.raises(kind) as caught:
        call()
    return caught.value


def cli(*argv: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "matcalc", *argv], capture_output=True, text=True, timeout=120,
                          check=False)


# ---------------------------------------------------------------- a name right before '(' is a call


def test_sigma_before_a_parenthesis_is_an_unknown_function_suggesting_sigmoid():
    error = error_of(lambda: matcalc.diff("σ(W x + b)", "x"), ParseError)
    assert str(error).splitlines() == ["syntax error at column 1: unknown function 'σ'; did you mean 'sigmoid'?",
                                       "  σ(W x + b)", "  ^"]
    assert error.position == 0


def test_trace_before_a_parenthesis_suggests_tr():
    assert "unknown function 'trace'; did you mean 'tr'?" in str(error_of(lambda: matcalc.parse("trace(X)")))


@pytest.mark.parametrize("name", ["pinv", "adj", "sqrtm", "nuclear"])
def test_a_missing_matrix_function_after_a_name_is_not_a_function_yet_and_never_a_declaration(name):
    text = f"tr(A {name}(X))"
    error = error_of(lambda: matcalc.diff(text, "X"), ParseError)
    first, line, caret = str(error).splitlines()
    assert first.startswith("syntax error at column 6: ") and "is not a function of the language yet" in first
    assert (line, caret) == (f"  {text}", "       ^")
    assert "declare" not in str(error) and "scalar" not in str(error)


def test_a_function_like_name_written_as_a_product_gets_no_declaration_hint():
    """`pinv (X)` with a space is a product; declaring pinv a scalar would give a silently different function."""
    error = error_of(lambda: matcalc.diff("tr(A pinv (X))", "X"), ShapeError)
    assert "pinv: scalar" not in str(error) and "declare" not in str(error)


def test_a_variable_right_before_a_parenthesis_is_refused_with_the_product_spelled_out():
    error = error_of(lambda: matcalc.diff("x^T A(x + b)", "x"), ParseError)
    assert str(error).splitlines()[0] == ("syntax error at column 5: 'A' is not a function, and a name right before "
                                          "'(' is a call; for a product, write `A (x + b)` or `A*(x + b)`")


@pytest.mark.parametrize("text", ["x^T A (x + b)", "x^T A*(x + b)"])
def test_a_product_with_a_space_or_a_star_stays_a_product(text):
    d = matcalc.diff(text, "x")
    assert str(d) == "A (x + b) + A^T x"
    assert_matches_finite_differences(d)


def test_pi_before_a_parenthesis_is_refused_like_any_name():
    assert "write `pi (x + a)` or `pi*(x + a)`" in str(error_of(lambda: matcalc.parse("pi(x + a)"), ParseError))
    d = matcalc.diff("a^T pi (x + a)", "x")
    assert str(d) == "pi a"
    assert_matches_finite_differences(d)


def test_a_name_in_an_exponent_right_before_a_parenthesis_is_refused():
    """a^b(c) read b as the exponent and then multiplied by c."""
    error = error_of(lambda: matcalc.parse("a^b(c) x"), ParseError)
    assert error.position == 2


def test_a_call_of_a_name_in_a_program_names_its_line():
    error = error_of(lambda: matcalc.diff("h = tanh(W1 x)\nL = sum(σ(h))", "W1"), ParseError)
    assert str(error).startswith("syntax error at line 2, column 9: unknown function 'σ'; did you mean 'sigmoid'?")


def test_a_name_before_a_parenthesis_in_a_comment_is_only_a_comment():
    assert str(matcalc.diff("x  # σ(x) would be a call", "x")) == "I"


def test_printed_results_never_write_a_name_right_before_a_parenthesis():
    """The printer writes a product with a space, so every printed result still parses back."""
    called = re.compile(r"(?<![\w\u0370-\u03ff])([A-Za-z_\u0370-\u03ff][\w\u0370-\u03ff]*)\(")
    allowed = {*FUNCTIONS, "vector", "matrix", "kron", "commutation", "identity"}
    for expr, wrt, *_ in COOKBOOK:
        d = matcalc.diff(expr, wrt)
        for text in (str(d), d.text(inline=True)):
            assert set(called.findall(text)) <= allowed, (expr, text)


# ---------------------------------------------------------------- derivatives w.r.t. a name the input does not use


def test_a_derivative_wrt_a_misspelled_variable_suggests_the_one_in_the_program():
    error = error_of(lambda: matcalc.diff("h1 = tanh(W1 x); L = sum(h1)", "w1"), ParseError)
    assert str(error).splitlines()[0] == "'w1' does not occur in the expression; did you mean W1?"


def test_the_command_says_did_you_mean_for_a_misspelled_variable_and_exits_2():
    result = cli("diff", "h1 = tanh(W1 x); L = sum(h1)", "w1")
    assert (result.returncode, result.stdout) == (2, "")
    assert "did you mean W1?" in result.stderr and '--where "w1: vector"' in result.stderr


def test_a_declared_variable_the_expression_does_not_use_has_the_zero_derivative():
    d = matcalc.diff("a^T y", "x", where="x: vector(3)")
    assert str(d) == "vector(0)"
    values = {"a": np.arange(1.0, 4.0), "y": np.ones(3), "x": np.ones(3)}
    np.testing.assert_array_equal(d.evaluate(values), np.zeros(3))
    assert_matches_finite_differences(d)


def test_grad_wrt_one_name_the_program_does_not_use_is_an_error():
    error = error_of(lambda: matcalc.grad("h = W1 x; L = sum(h)", ["W1", "W2"]), ParseError)
    assert str(error).startswith("'W2' does not occur in the expression; its variables are W1, x")


def test_an_input_used_only_by_a_definition_the_output_skips_has_the_zero_derivative():
    d = matcalc.diff("h = W x; L = sum(b)", "W")
    assert str(d) == "matrix(0)"


def test_a_second_derivative_wrt_a_name_neither_derivative_uses_is_a_clear_error():
    """It was a KeyError."""
    error = error_of(lambda: matcalc.diff("x^T x", "x").diff("zz"), ParseError)
    assert str(error).startswith("'zz' does not occur in the expression; its variables are x")


def test_a_dimension_is_not_a_variable_to_differentiate_by():
    error = error_of(lambda: matcalc.diff("tr(alpha I + X)", "n", where="X: matrix(n, n)"), ParseError)
    assert str(error) == "'n' is a dimension (it stands for a size), not a variable of the expression"


# ---------------------------------------------------------------- hints in the caller's language


def test_a_hint_raised_in_python_names_the_where_argument():
    error = error_of(lambda: matcalc.diff("norm2(X theta - y)^2", "theta"), ShapeError)
    assert str(error).splitlines()[-1].endswith('declare it: where="theta: vector"')
    d = matcalc.diff("norm2(X theta - y)^2", "theta", where="theta: vector")  # following it works
    assert_matches_finite_differences(d)


def test_the_command_gives_the_same_hint_as_its_option():
    result = cli("diff", "norm2(X theta - y)^2", "theta")
    assert result.stderr.splitlines()[-1].endswith('declare it: --where "theta: vector"')


def test_the_check_verdict_names_the_layout_option_on_the_command_line():
    assert "check it with layout='denominator'" in str(matcalc.check("W x", "x", "W^T"))
    result = cli("check", "W x", "x", "W^T")
    assert result.returncode == 3 and "check it with --layout denominator" in result.stdout


def test_the_command_line_leaves_the_quoted_input_as_written():
    from matcalc.core.errors import for_cli

    message = 'syntax error at column 1: unexpected character \'"\'\n  where="x"\n  ^'
    assert for_cli(message) == message


# ---------------------------------------------------------------- no foreign exception


@pytest.mark.parametrize("shape", [("n",), ("n", "m", "p"), ("n", "m", "p", "q"), 3, "n", ("n", 0), ("n", "a b"),
                                   ("n", True), ("n", None), ("n", 1.5)])
def test_parse_refuses_a_shape_that_is_not_a_pair_of_dimensions(shape):
    error = error_of(lambda: matcalc.parse("x", shape=shape), ShapeError)
    assert "shape" in str(error)


def test_parse_takes_a_derivatives_matrix_shape():
    d = matcalc.diff("W x + b", "W")
    assert matcalc.parse(d.text(inline=True), where=d.where, shape=d.matrix_shape) == d.expr


@pytest.mark.parametrize("call", [matcalc.diff, matcalc.hessian])
def test_a_variable_that_is_not_a_name_is_refused_by_diff_and_hessian_alike(call):
    assert str(error_of(lambda: call("x^T x", 1.5), ParseError)) == "not a variable name: 1.5"


@pytest.mark.parametrize("wrt", [5, [[1]], None])
def test_grad_refuses_variables_that_are_not_a_list_of_names(wrt):
    error_of(lambda: matcalc.grad("x^T x", wrt), ParseError)


def test_codegen_refuses_a_function_name_that_is_not_text():
    assert "name must be text" in str(error_of(lambda: matcalc.codegen("x^T x", ["x"], name=3), ParseError))


@pytest.mark.parametrize("timeout", [[1], math.nan, "1", True])
def test_check_refuses_a_timeout_that_is_not_a_number(timeout):
    error_of(lambda: matcalc.check("x^T x", "x", "2 x", timeout=timeout), ParseError)


def test_a_huge_whole_number_timeout_is_no_limit():
    assert matcalc.check("x^T x", "x", "2 x", timeout=10**400)


def test_a_flag_whose_truth_is_ambiguous_is_refused():
    """inline=np.ones(2) raised NumPy's "truth value of an array is ambiguous"."""
    error_of(lambda: matcalc.diff("x^T x", "x", inline=np.ones(2)), ParseError)


def test_evaluating_an_identity_too_large_to_hold_is_refused_naming_its_size():
    """d x / d x of a 10^6-vector is a 10^6 x 10^6 identity (7.3 TiB): refused before it is allocated."""
    error = error_of(lambda: matcalc.diff("x", "x").evaluate({"x": np.ones(10**6)}), EvaluationError)
    assert "1,000,000×1,000,000" in str(error) and "7.3 TiB" in str(error)


def test_evaluating_an_outer_product_too_large_to_hold_is_refused():
    error_of(lambda: matcalc.diff("(a^T x) x", "x").evaluate({"a": np.ones(10**5), "x": np.ones(10**5)}),
             EvaluationError)


def test_a_structured_result_that_fits_evaluates_as_before():
    d = matcalc.diff("W x + b", "x")
    w = np.arange(6.0).reshape(2, 3)
    np.testing.assert_array_equal(d.evaluate({"W": w, "x": np.ones(3), "b": np.ones(2)}), w)
    np.testing.assert_array_equal(matcalc.diff("x", "x").evaluate({"x": np.ones(300)}), np.eye(300))


# The fuzz: each call an entry point with arguments drawn from plausible and hostile values.
EXPRS = ["x^T A x", "W x + b", "sum(tanh(W x))", "tr(X)", "h = W x; L = sum(h)", "alpha x", "x", "2", "σ(x)",
         "a(b)", "", "x +", "logdet(X)", "x^T x", "sum(W)", "alpha^2", "X ⊗ X", "\x00"]
NAMES = ["x", "X", "W", "alpha", "b", "A", "h", "n", "I", "pi", "w", "x y", "", "2x", "é", "W,b"]
ODD = [None, 0, 1, -1, 1.5, math.nan, math.inf, True, 10**400, b"x", [], (), [1], [None], [["x"]], {}, {1: 2},
       {"x": 3}, object(), np.float64(1.0), np.array([1.0]), np.ones((2, 2)), slice(1), 1j, "\ud800"]
WHERE = [None, "A: symmetric", "x: vector(3)", "X: matrix(2, 2)", "alpha: scalar", "A: banana", {"A": "symmetric"},
         {"x": 3}, "x: vector(n); x: matrix", ";;"]
ARRAYS = [np.ones(3), np.ones((3, 1)), np.ones((2, 2)), np.eye(3), np.ones(0), np.ones((2, 3, 4)), np.array([math.nan]),
          np.array(["a"]), np.array([1 + 1j]), np.array([None]), 2.0, -1, "x", None, [1, 2, 3], [[1, 2], [3, 4]],
          np.ones(30_000), True, math.inf, np.ones((1, 1))]


def _pick(rng: random.Random, plausible: list) -> Any:
    return rng.choice(plausible) if rng.random() < 0.75 else rng.choice(ODD)


@pytest.fixture(scope="module")
def derivatives() -> list[Any]:
    return [matcalc.diff(e, v) for e, v in [("x^T A x", "x"), ("W x + b", "W"), ("x", "x"), ("logdet(X)", "X"),
                                            ("alpha x", "alpha")]] + [matcalc.hessian("x^T A x", "x")]


def _entry_call(rng: random.Random, derivatives: list[Any]) -> tuple[str, Callable[[], Any]]:
    """One call of a public entry point, described, with arguments drawn by rng."""
    expr, name, where = _pick(rng, EXPRS), _pick(rng, NAMES), _pick(rng, WHERE)
    names = rng.choice([[name], [name, _pick(rng, NAMES)], name, _pick(rng, [("W", "b")])])
    entry = rng.randrange(9)
    if entry == 0:
        shape = rng.choice([None, ("n", 1), (2, 2), ("n",), ("n", "m", "p"), 3, ("n", 0), _pick(rng, [None])])
        return f"parse({expr!r}, {where!r}, {shape!r})", lambda: matcalc.parse(expr, where=where, shape=shape)
    if entry == 1:
        layout = _pick(rng, ["numerator", "denominator", "banana"])
        return (f"diff({expr!r}, {name!r}, {where!r}, {layout!r})",
                lambda: str(matcalc.diff(expr, name, where=where, layout=layout, inline=_pick(rng, [False]))))
    if entry == 2:
        return f"grad({expr!r}, {names!r}, {where!r})", lambda: str(matcalc.grad(expr, names, where=where))
    if entry == 3:
        return f"hessian({expr!r}, {names!r}, {where!r})", lambda: str(matcalc.hessian(expr, names, where=where))
    if entry == 4:
        candidate, timeout = _pick(rng, ["2 x", "A + A^T", "x", "I", "W^T", "(", "σ(x)"]), _pick(rng, [1.0, 5.0])
        layout = _pick(rng, ["numerator", "denominator"])
        return (f"check({expr!r}, {name!r}, {candidate!r}, {where!r}, {layout!r}, timeout={timeout!r})",
                lambda: bool(matcalc.check(expr, name, candidate, where=where, layout=layout, timeout=timeout)))
    if entry == 5:
        backend, fname = _pick(rng, ["numpy", "jax", "torch", "fortran"]), _pick(rng, ["f", "value", "1x", "class"])
        return (f"codegen({expr!r}, {names!r}, {where!r}, {backend!r}, name={fname!r})",
                lambda: matcalc.codegen(expr, names, where=where, backend=backend, name=fname,
                                        hessian=_pick(rng, [False, True])))
    d = rng.choice(derivatives)
    if entry == 6:
        given = {n: rng.choice(ARRAYS) for n in ["x", "A", "W", "b", "X", "alpha", "n"] if rng.random() < 0.7}
        values = rng.choice([given, _pick(rng, [{}])])
        form = _pick(rng, ["tensor", "vec", "matrix"])
        return f"{d!r}.evaluate({values!r}, {form!r})", lambda: d.evaluate(values, form=form)
    if entry == 7:
        return f"{d!r}.diff({name!r})", lambda: str(d.diff(name))
    backend, product, form = _pick(rng, ["numpy", "jax", "c"]), _pick(rng, [None, "jvp", "vjp"]), \
        _pick(rng, [None, "vec", "index", "differential", "matrix"])
    return (f"{d!r}.to_code({backend!r}, product={product!r}) / text(form={form!r})",
            lambda: (d.to_code(backend, product=product), d.text(form=form), d.latex(form=form)))


def foreign_exceptions(count: int, seed: int, derivatives: list[Any]) -> list[str]:
    """The calls, of `count` drawn, that raised anything but a matcalc error (with what they raised)."""
    rng = random.Random(seed)
    foreign = []
    for _ in range(count):
        described, call = _entry_call(rng, derivatives)
        try:
            call()
        except MatcalcError as error:
            assert str(error).strip(), f"empty message from {described}"
        except Exception as error:  # the bug this test looks for
            foreign.append(f"{type(error).__name__}: {error} from {described}"[:400])
    return foreign


def test_hostile_arguments_to_every_entry_point_raise_only_matcalc_errors(derivatives):
    foreign = foreign_exceptions(300, seed=16, derivatives=derivatives)
    assert not foreign, f"{len(foreign)} foreign exceptions:\n" + "\n".join(foreign[:20])


@pytest.mark.slow
def test_a_long_run_of_hostile_arguments_raises_only_matcalc_errors(derivatives):
    foreign = foreign_exceptions(100_000, seed=2026, derivatives=derivatives)
    assert not foreign, f"{len(foreign)} foreign exceptions:\n" + "\n".join(foreign[:20])
