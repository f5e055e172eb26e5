"""First contact (issue 7, section 6): what a newcomer types first just works, and what comes back reads well.

Each printed derivative is parsed back and compared by value with central finite differences of the
function (tests/oracles.py), so a test proves the numbers, not only the text.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
from oracles import assert_matches_finite_differences, evaluate_expr, finite_difference, random_values
from test_cli import run

import matcalc
from matcalc.render.text import to_latex


def assert_printed_derivative_is_right(printed: str, expr: str, wrt: str, where: str | None = None) -> None:
    """`printed` (what the command wrote) is the derivative of `expr`: its values match finite differences."""
    d = matcalc.diff(expr, wrt, where=where)
    result = matcalc.parse(printed, where=d.where, shape=d.matrix_shape)
    values = random_values([d.function, result, d.variable], seed=1)
    np.testing.assert_allclose(evaluate_expr(result, values, (d.function,)), finite_difference(d, values),
                               rtol=1e-5, atol=1e-7)


def braces_balance(latex: str) -> bool:
    depth = 0
    for character in latex.replace(r"\{", "").replace(r"\}", ""):
        depth += {"{": 1, "}": -1}.get(character, 0)
        if depth < 0:
            return False
    return depth == 0 and latex.count(r"\left") == latex.count(r"\right")


# ---------------------------------------------------------------- 1. a leading minus on the command line


def test_an_expression_starting_with_a_minus_needs_no_double_dash():
    result = run("diff", "-logdet(X)", "X")
    assert (result.returncode, result.stdout, result.stderr) == (0, "-inv(X)^T\n", "")
    assert_printed_derivative_is_right(result.stdout.strip(), "-logdet(X)", "X")


def test_an_expression_starting_with_a_minus_before_an_option():
    result = run("diff", "-logdet(X)", "X", "--verify")
    assert result.returncode == 0
    printed, verdict = result.stdout.splitlines()
    assert printed == "-inv(X)^T" and verdict.startswith("verified: all 13 entries match")
    assert_printed_derivative_is_right(printed, "-logdet(X)", "X")


def test_an_expression_starting_with_a_minus_after_an_option():
    result = run("diff", "--verify", "-x^T x", "x")
    assert result.returncode == 0
    printed, verdict = result.stdout.splitlines()
    assert printed == "-2 x" and verdict.startswith("verified:")
    assert_printed_derivative_is_right(printed, "-x^T x", "x")


def test_a_candidate_starting_with_a_minus_is_checked():
    right = run("check", "-a^T x", "x", "-a")
    assert right.returncode == 0 and right.stdout.startswith("correct: -a equals -a")
    assert_printed_derivative_is_right("-a", "-a^T x", "x")
    wrong = run("check", "-a^T x", "x", "a")
    assert wrong.returncode == 3 and "the derivative is -a" in wrong.stdout


def test_a_double_dash_still_works_and_no_longer_swallows_later_options():
    result = run("diff", "--", "-logdet(X)", "X", "--verify")
    assert result.returncode == 0 and result.stdout.splitlines()[0] == "-inv(X)^T"
    assert "verified:" in result.stdout


def test_option_values_in_both_forms_and_abbreviated_options_still_work():
    for args in (["--where", "A: symmetric"], ["--where=A: symmetric"], ["--wh", "A: symmetric", "--verif"]):
        result = run("diff", "-x^T A x", "x", *args)
        assert result.returncode == 0, result.stderr
        assert result.stdout.splitlines()[0] == "-2 A x"
    assert_printed_derivative_is_right("-2 A x", "-x^T A x", "x", "A: symmetric")


def test_help_works_after_an_expression_starting_with_a_minus():
    result = run("diff", "-x", "x", "-h")
    assert result.returncode == 0 and result.stdout.startswith("usage: matcalc diff")


def test_an_unknown_option_is_an_argparse_error():
    result = run("diff", "--frobnicate", "-x", "x")
    assert result.returncode == 2 and "unrecognized arguments: --frobnicate" in result.stderr


def test_the_pre_pass_moves_options_first_and_positionals_after_a_double_dash():
    from matcalc.cli import _options_first, _parser

    parser, commands = _parser()
    argv = ["--debug", "diff", "-x^T A x", "--where", "A: symmetric", "x", "--layout=denominator", "--verify"]
    assert _options_first(argv, parser, commands) == [
        "--debug", "diff", "--where=A: symmetric", "--layout=denominator", "--verify", "--", "-x^T A x", "x"]
    assert _options_first(["diff", "--where"], parser, commands) == ["diff", "--where"]  # argparse says it is missing
    assert _options_first(["frobnicate", "-x"], parser, commands) == ["frobnicate", "-x"]  # argparse says unknown


# ---------------------------------------------------------------- 2. --version and a bare `matcalc`


def test_version_prints_the_package_version():
    result = run("--version")
    assert (result.returncode, result.stdout) == (0, f"matcalc {matcalc.__version__}\n")
    assert result.stdout == "matcalc 0.1.0\n"


def test_the_package_version_is_the_one_in_pyproject():
    pyproject = Path(__file__).resolve().parent.parent / "pyproject.toml"
    version = re.search(r'^version = "([^"]+)"$', pyproject.read_text(encoding="utf-8"), re.M)  # no tomllib on 3.10
    assert version[1] == matcalc.__version__


def test_a_bare_matcalc_prints_the_help_and_exits_0():
    result = run()
    assert result.returncode == 0 and result.stderr == ""
    assert result.stdout.startswith("usage: matcalc") and 'matcalc diff "x^T A x" x' in result.stdout


def test_a_command_with_missing_arguments_still_exits_2_with_argparses_message():
    for args in (("diff", "x"), ("diff", "-x"), ("check", "a^T x", "x")):
        result = run(*args)
        assert result.returncode == 2 and "the following arguments are required" in result.stderr


# ---------------------------------------------------------------- 3. the REPL and notebooks


def test_a_derivative_shows_its_result_in_the_repl():
    d = matcalc.diff("x^T A x", "x")
    assert repr(d) == "Derivative('(A + A^T) x')"
    shown = re.fullmatch(r"Derivative\('(.*)'\)", repr(d))[1]
    assert matcalc.parse(shown, where=d.where, shape=d.shape) == d.expr
    assert repr(matcalc.hessian("x^T A x", "x")) == "Derivative('A + A^T')"


def test_a_check_result_shows_its_verdict_in_the_repl():
    right = matcalc.check("a^T x", "x", "a")
    assert repr(right) == str(right) == \
        "correct: a equals a (verified: all 5 entries match SymPy exactly (sizes n=2; n=3))"
    wrong = matcalc.check("x^T A x", "x", "2 A x")
    assert repr(wrong) == str(wrong) and repr(wrong).startswith("wrong: 2 A x is not the derivative")
    assert "counterexample:" in repr(wrong) and len(repr(wrong)) < 1000


def test_a_verification_report_shows_its_text_in_the_repl():
    report = matcalc.diff("x^T A x", "x").verify()
    assert repr(report) == str(report) == "verified: all 5 entries match SymPy exactly (sizes n=2; n=3)"


def test_notebooks_render_check_and_verification_reports_as_markdown():
    right = matcalc.check("a^T x", "x", "a")
    assert right._repr_markdown_() == f"**correct**: `a` equals `a` ({right.report})"
    wrong = matcalc.check("x .* y", "x", "diag(x)")
    markdown = wrong._repr_markdown_()
    assert markdown.startswith("**wrong**: `diag(x)` is not the derivative; the derivative is `diag(y)`")
    assert "**NOT verified**: " in markdown and markdown.count("```") == 2  # the differing entries as a code block
    assert "entry (0, 0)" in markdown.split("```")[1]
    report = matcalc.diff("x^T A x", "x").verify()
    assert report._repr_markdown_() == "**verified**: all 5 entries match SymPy exactly (sizes n=2; n=3)"


# ---------------------------------------------------------------- 4. a hint when a default type breaks the shapes


def test_a_greek_vector_gets_a_hint_with_its_declaration():
    with pytest.raises(matcalc.ShapeError) as error:
        matcalc.diff("norm2(X theta - y)^2", "theta")
    first, *hints = str(error.value).splitlines()
    assert first.startswith("'-' needs operands of the same shape")
    assert hints == ['`theta` is a scalar by default (a Greek name); if it is a vector, declare it: '
                     'where="theta: vector"']  # Python's syntax in Python; the command says --where


def test_with_the_suggested_declaration_least_squares_works_and_gives_the_right_numbers():
    result = run("diff", "norm2(X theta - y)^2", "theta", "--where", "theta: vector")
    assert (result.returncode, result.stdout) == (0, "2 X^T (X theta - y)\n")
    assert_printed_derivative_is_right("2 X^T (X theta - y)", "norm2(X theta - y)^2", "theta", "theta: vector")
    assert_matches_finite_differences(matcalc.diff("norm2(X theta - y)^2", "theta", where="theta: vector"))


def test_the_command_shows_the_hint_and_exits_2():
    result = run("diff", "norm2(X theta - y)^2", "theta")
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr.splitlines()[1] == ('`theta` is a scalar by default (a Greek name); if it is a vector, '
                                             'declare it: --where "theta: vector"')


def test_a_lowercase_scalar_gets_a_hint_and_the_declaration_gives_the_right_numbers():
    with pytest.raises(matcalc.ShapeError, match=r'`c` is a vector by default \(a lowercase name\); if it is a '
                                                 r'scalar, declare it: where="c: scalar"'):
        matcalc.diff("x^T A x + c", "x")
    assert_matches_finite_differences(matcalc.diff("x^T A x + c", "x", where="c: scalar"))


def test_a_capital_name_gets_a_hint_only_when_no_lowercase_name_helps():
    with pytest.raises(matcalc.ShapeError) as error:
        matcalc.diff("A + x", "x")
    assert str(error.value).splitlines()[1:] == [
        '`A` is a matrix by default (a capital letter); if it is a vector, declare it: where="A: vector"']
    assert_matches_finite_differences(matcalc.diff("A + x", "x", where="A: vector"))


def test_a_declared_name_gets_no_hint():
    with pytest.raises(matcalc.ShapeError) as error:
        matcalc.diff("norm2(X theta - y)^2", "theta", where="X: matrix; theta: scalar; y: vector")
    assert "\n" not in str(error.value)


def test_no_hint_when_no_single_declaration_fixes_the_shapes():
    with pytest.raises(matcalc.ShapeError) as error:
        matcalc.diff("x y z", "x")  # x, y or z alone as a scalar still leaves two vectors side by side
    assert "by default" not in str(error.value)


def test_a_long_machine_made_input_gets_no_hint_so_that_its_error_stays_fast():
    from matcalc.frontend.typecheck import HINTED_TEXT

    text = " + ".join(f"a{i}^T x" for i in range(HINTED_TEXT // 8)) + " + c"
    assert len(text) > HINTED_TEXT
    with pytest.raises(matcalc.ShapeError) as error:
        matcalc.diff(text, "x")
    assert "cannot add" in str(error.value) and "by default" not in str(error.value)


# ---------------------------------------------------------------- 5. constant fills in LaTeX


@pytest.mark.parametrize(("text", "latex"), [
    ("matrix(2) .* X", r"2 \cdot \mathbf{1} \odot X"),
    ("matrix(-1) .* X", r"\left(-\mathbf{1}\right) \odot X"),
    ("matrix(-0.5) .* X", r"\left(-0.5 \cdot \mathbf{1}\right) \odot X"),
    ("x - vector(0.5)", r"x - 0.5 \cdot \mathbf{1}"),
    ("x + vector(-1)", r"x - \mathbf{1}"),
    ("x + 1", r"x + \mathbf{1}"),
    ("vector(2)^T x", r"2 \cdot \mathbf{1}^\top \, x"),
    ("vector(-1)^T x", r"\left(-\mathbf{1}^\top\right) \, x"),
])
def test_a_constant_fill_cannot_be_misread_in_latex(text, latex):
    assert to_latex(matcalc.parse(text)) == latex


def test_the_gradient_of_sum_of_2_times_x_renders_as_2_cdot_1():
    d = matcalc.diff("sum(matrix(2) .* X)", "X")
    assert d.latex().endswith(r"= 2 \cdot \mathbf{1}") and braces_balance(d.latex())
    assert_matches_finite_differences(d)


def test_a_zero_derivative_renders_as_a_bold_zero():
    d = matcalc.diff("a^T y", "x", where="x: vector")  # declared: the zero is the answer
    assert d.latex().endswith(r"= \mathbf{0}")
    assert_matches_finite_differences(d)


# ---------------------------------------------------------------- 6. the derivation in LaTeX


@pytest.mark.parametrize("d", [
    matcalc.diff("x^T A x", "x"),
    matcalc.diff("tr(A S)", "S", where="S: symmetric"),
    matcalc.diff("W x + b", "x", layout="denominator"),
    matcalc.hessian("sum(log(exp(-y .* (X w)) + vector(1)))", "w"),
], ids=["quadratic", "symmetric", "denominator", "logistic-hessian"])
def test_the_derivation_in_latex_is_an_aligned_block_with_every_step(d):
    latex = d.derivation(latex=True)
    lines = latex.splitlines()
    assert lines[0] == r"\begin{aligned}" and lines[-1] == r"\end{aligned}"
    steps = lines[1:-1]
    assert len(steps) == len(d.steps) and braces_balance(latex)
    for line, step in zip(steps, d.steps, strict=True):
        assert line.count("&") == 1 and line.endswith(r" \\") == (step is not d.steps[-1])
        assert f"& {to_latex(step.expr)}" in line
        for rule in step.rules:
            assert rule in line.split(r"\qquad \text{[")[1]


def test_a_title_with_a_transpose_leaves_text_mode_for_the_superscript():
    latex = matcalc.diff("tr(A S)", "S", where="S: symmetric").derivation(latex=True)
    assert r"\text{symmetric gradient sym(G) = (G + G}^\top\text{)/2:}" in latex


def test_steps_with_latex_on_the_command_line_print_the_aligned_block():
    result = run("diff", "tr(A X B)", "X", "--steps", "--latex")
    d = matcalc.diff("tr(A X B)", "X")
    assert result.returncode == 0
    assert result.stdout == f"{d.derivation(latex=True)}\n{d.latex()}\n"
    assert "differential: " not in result.stdout  # no plain-text steps
    assert_printed_derivative_is_right(str(d), "tr(A X B)", "X")
