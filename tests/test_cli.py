"""The matcalc command: results on stdout, one clear message on stderr, exit codes 0/2/3/1."""

import json
import os
import subprocess
import sys

import pytest


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "matcalc", *args], capture_output=True, text=True, timeout=120)


def test_the_readme_example():
    result = run("diff", "x^T A x", "x")
    assert result.returncode == 0
    assert result.stdout == "(A + A^T) x\n"


def test_declarations_layout_and_hessian():
    assert run("diff", "x^T A x", "x", "--where", "A: symmetric").stdout == "2 A x\n"
    assert run("diff", "W x + b", "x", "--layout", "denominator").stdout == "W^T\n"
    assert run("diff", "x^T A x", "x", "--hessian").stdout == "A + A^T\n"


def test_verify_and_shapes_and_steps():
    result = run("diff", "x^T A x", "x", "--verify", "--shapes", "--steps")
    assert result.returncode == 0
    assert "A: matrix(n, n)" in result.stdout and "x: vector(n)" in result.stdout
    assert "verified" in result.stdout and "differential:" in result.stdout


def test_json_output():
    payload = json.loads(run("diff", "x^T A x", "x", "--json", "--verify").stdout)
    assert payload["input"] == "x^T A x"
    assert payload["text"] == "(A + A^T) x"
    assert payload["shape"] == ["n", "1"]
    assert payload["where"] == {"x": "vector(n)", "A": "matrix(n, n)"}
    assert payload["latex"].startswith(r"\frac") and payload["verified"] is True


def test_latex_output():
    assert run("diff", "log(det(X))", "X", "--latex").stdout.strip().endswith(r"X^{-\top}")


@pytest.mark.parametrize("args", [
    ("diff", "x^T A )", "x"), ("diff", "x y", "x"), ("diff", "log(det(x))", "x"), ("diff", "expp(x)", "x"),
    ("diff", "x^T A x", "x", "--where", "A: banana"), ("diff", "x", "x", "--hessian"), ("diff", "x", "2x"),
    ("check", "a^T x", "x", "a^T ("), ("diff", "(" * 20_000 + "x" + ")" * 20_000, "x"), ("diff", "x\x01", "x"),
])
def test_user_errors_exit_2_with_one_message_and_no_traceback(args):
    result = run(*args)
    assert result.returncode == 2
    assert result.stdout == ""
    assert result.stderr.startswith("matcalc: error: ")
    assert "Traceback" not in result.stderr


def test_debug_shows_the_traceback():
    result = run("--debug", "diff", "x y", "x")
    assert result.returncode == 2 and "Traceback" in result.stderr


def test_check_exit_codes():
    assert run("check", "a^T x", "x", "a").returncode == 0
    wrong = run("check", "x^T A x", "x", "2 A x")
    assert wrong.returncode == 3 and "counterexample" in wrong.stdout


def test_bad_usage_exits_2():
    assert run("diff", "x").returncode == 2
    assert run("diff", "x", "x", "--layout", "sideways").returncode == 2


def test_help_shows_examples():
    result = run("--help")
    assert result.returncode == 0 and 'matcalc diff "x^T A x" x' in result.stdout
    assert 'matcalc diff "x^T A x" x' in run("diff", "--help").stdout


def test_rules_lists_every_rule():
    from matcalc.calculus.differential import DIFFERENTIAL_RULES, ELEMENTWISE_RULES
    from matcalc.calculus.index_form import INDEX_RULES
    from matcalc.calculus.jacobian import READING_RULES
    from matcalc.calculus.readers import ADJOINT_RULES, VEC_RULES
    from matcalc.rules.jacobian import DIAGONAL_FORMS, FACTOR_FORMS
    from matcalc.rules.simplify import SIMPLIFY_RULES
    from matcalc.rules.stable import STABLE_FORMS

    listing = run("rules").stdout
    for rule in [*DIFFERENTIAL_RULES, *ELEMENTWISE_RULES.values(), *VEC_RULES, *ADJOINT_RULES, *SIMPLIFY_RULES,
                 *READING_RULES, *FACTOR_FORMS, *DIAGONAL_FORMS, *STABLE_FORMS, *INDEX_RULES]:
        assert f"{rule.name} " in listing and rule.statement in listing, rule.name


def _readme_console_examples() -> list[tuple[list[str], list[str]]]:
    """(arguments, expected output lines) for each `$ matcalc ...` line of the README that shows its output."""
    import re
    import shlex
    from pathlib import Path

    text = (Path(__file__).resolve().parent.parent / "README.md").read_text(encoding="utf-8")
    examples = []
    for block in re.findall(r"```console\n(.*?)```", text, re.S):
        lines = block.splitlines()
        for index, line in enumerate(lines):
            if not line.startswith("$ matcalc "):
                continue
            command = shlex.split(line[len("$ matcalc "):], comments=True)
            output = []
            for following in lines[index + 1:]:
                if following.startswith("$ "):
                    break
                output.append(following)
            examples.append((command, output))
    return examples


@pytest.mark.parametrize(("command", "output"), _readme_console_examples(), ids=lambda v: " ".join(v)[:50])
def test_readme_examples_print_what_the_readme_says(command, output):
    result = run(*command)
    assert result.returncode in (0, 3), result.stderr
    printed = result.stdout.splitlines()
    for expected, actual in zip(output, printed, strict=False):
        if expected.endswith("..."):  # an elided tail
            assert actual.startswith(expected[:-3].rstrip())
        else:
            assert actual == expected
    assert len(printed) >= len(output)


MODEL = "h1 = tanh(W1 x)  # the first layer\nh2 = tanh(W2 h1)\nL = sum(h2)\n"
MODEL_GRADIENT = "h1 = tanh(W1 x)\nh2 = tanh(W2 h1)\ng_h1 = W2^T (1 - h2.^2)\n(g_h1 .* (1 - h1.^2)) x^T\n"


def test_a_program_is_read_from_a_file(tmp_path):
    model = tmp_path / "model.mc"
    model.write_text(MODEL, encoding="utf-8")
    result = run("diff", "-f", str(model), "W1")
    assert result.returncode == 0 and result.stdout == MODEL_GRADIENT


def test_a_program_is_read_from_standard_input():
    result = subprocess.run([sys.executable, "-m", "matcalc", "diff", "-f", "-", "W1"], input=MODEL,
                            capture_output=True, text=True)
    assert result.returncode == 0 and result.stdout == MODEL_GRADIENT


def test_several_variables_print_one_program_from_one_backward_pass():
    result = run("diff", MODEL, "W1,W2")
    assert result.returncode == 0
    assert result.stdout.endswith("dL_dW1 = (g_h1 .* (1 - h1.^2)) x^T\ndL_dW2 = u h1^T\n")


def test_a_missing_file_is_a_user_error():
    result = run("diff", "-f", "/nonexistent/model.mc", "W1")
    assert result.returncode == 2 and "cannot read" in result.stderr


def test_a_name_defined_twice_is_a_user_error_with_its_line_and_column():
    result = run("diff", "h = W x\nh = tanh(h)\nL = sum(h)", "W")
    assert result.returncode == 2 and "line 2, column 1" in result.stderr and "defined twice" in result.stderr


def test_check_takes_a_printed_program_as_the_candidate(tmp_path):
    model = tmp_path / "model.mc"
    model.write_text(MODEL, encoding="utf-8")
    # a subprocess proves with the CLI's own 30 s default (conftest's longer limit reaches this process only)
    result = run("check", "-f", str(model), "W1", MODEL_GRADIENT, "--timeout", "600")
    assert result.returncode == 0 and result.stdout.startswith("correct")


def test_inline_prints_one_expression():
    result = run("diff", "sigmoid(W x + b)", "x", "--inline")
    assert result.stdout == "diag(sigmoid(W x + b) .* (1 - sigmoid(W x + b))) W\n"


def test_a_reader_that_stops_early_is_not_an_internal_error(monkeypatch, capsys):
    """matcalc rules | head -1: a closed pipe ends the listing quietly (it was 'internal error: BrokenPipeError')."""
    from matcalc.cli import main

    class ClosedPipe:
        def write(self, text: str) -> int:
            raise BrokenPipeError(32, "Broken pipe")

        def flush(self) -> None:
            pass

    monkeypatch.setattr(sys, "stdout", ClosedPipe())
    assert main(["rules"]) == 0
    assert "internal error" not in capsys.readouterr().err


@pytest.mark.parametrize("unbuffered", ["", "1"])
def test_a_pipe_closed_before_the_json_is_written_ends_silently(unbuffered: str):
    """matcalc diff "x^T A x" x --json | head -3 (issue 16, section 2): with Python's usual block-buffered stdout the
    whole result is written by the flush at exit, which printed "Exception ignored ... BrokenPipeError" (exit 120).
    The reader's end is closed before matcalc writes anything, so the outcome does not depend on timing."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"}
    if unbuffered:
        env["PYTHONUNBUFFERED"] = unbuffered
    process = subprocess.Popen([sys.executable, "-m", "matcalc", "diff", "x^T A x", "x", "--json"],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    assert process.stdout is not None and process.stderr is not None
    process.stdout.close()  # the reader went away
    error = process.stderr.read().decode()
    assert process.wait(timeout=120) == 0
    assert error == ""


def test_check_json_gives_the_verdict_method_entries_and_sizes():
    """matcalc check --json (issue 16, section 1): the verdict as JSON, the exit codes unchanged."""
    result = run("check", "x^T A x", "x", "(A + A^T) x", "--json")
    assert result.returncode == 0, result.stderr
    payload = json.loads(result.stdout)
    assert (payload["verdict"], payload["method"], payload["entries"], payload["exactly"]) == ("correct", "exact", 5, 5)
    assert payload["sizes"] == [{"n": 2}, {"n": 3}] and payload["digits"] is None
    assert payload["message"].startswith("correct: (A + A^T) x equals (A + A^T) x")


def test_check_json_of_a_wrong_candidate_gives_the_counterexample():
    result = run("check", "x^T A x", "x", "2 A x", "--json")
    assert result.returncode == 3
    payload = json.loads(result.stdout)
    assert payload["verdict"] == "wrong" and payload["mismatches"]
    # the counterexample is exact: (A + A^T) x at the point it names, entry by entry
    from fractions import Fraction

    x = [Fraction(row[0]) for row in payload["point"]["x"]]
    a = [[Fraction(v) for v in row] for row in payload["point"]["A"]]
    for mismatch in payload["mismatches"]:
        i = mismatch["entry"][0]
        assert Fraction(mismatch["expected"]) == sum((a[i][k] + a[k][i]) * x[k] for k in range(len(x)))
        assert Fraction(mismatch["got"]) == 2 * sum(a[i][k] * x[k] for k in range(len(x)))


def test_check_json_of_a_wrong_shape_and_of_an_undecided_proof():
    wrong_shape = run("check", "x^T A x", "x", "A", "--json")
    assert wrong_shape.returncode == 3
    assert json.loads(wrong_shape.stdout)["reason"] == "your candidate is n×n, the derivative is n×1"
    undecided = run("check", "x^T A x", "x", "2 A x", "--json", "--timeout", "0.000001")
    assert undecided.returncode == 4
    assert json.loads(undecided.stdout)["verdict"] == "undecided"


class FakeTerminal:
    def __init__(self) -> None:
        self.text = ""

    def write(self, text: str) -> None:
        self.text += text

    def flush(self) -> None:
        pass


def test_the_status_line_waits_a_second_then_rewrites_itself_and_is_erased():
    """The progress display of a long proof (issue 16, section 1), on a fake clock: nothing in the first second,
    then one line rewritten in place (at most every tenth of a second), erased at the end."""
    from matcalc.backends.verify import Progress
    from matcalc.cli import StatusLine

    now = [0.0]
    terminal = FakeTerminal()
    status = StatusLine(terminal, clock=lambda: now[0])
    status(Progress({"n": 2}, 1, 2, step="entries", done=0, total=4))
    assert terminal.text == ""  # a short proof shows nothing
    now[0] = 1.5
    status(Progress({"n": 2}, 1, 2, step="entries", done=1, total=4))
    first = "matcalc: proving: sizes n=2 (1 of 2), point 1: entries 1 of 4"
    assert terminal.text == "\r" + first
    now[0] = 1.55
    status(Progress({"n": 2}, 1, 2, step="entries", done=2, total=4))
    assert terminal.text == "\r" + first  # too soon after the last
    now[0] = 1.7
    status(Progress({"n": 3}, 2, 2))
    second = "matcalc: proving: sizes n=3 (2 of 2), point 1"
    assert terminal.text == "\r" + first + "\r" + second.ljust(len(first))  # the longer line is overwritten
    status.close()
    assert terminal.text.endswith("\r" + " " * len(second) + "\r")


def test_no_progress_is_shown_when_stderr_is_not_a_terminal():
    result = run("check", "h1 = tanh(W1 x); h2 = tanh(W2 h1); L = sum(h2)", "W1",
                 "((W2^T (1 - tanh(W2 tanh(W1 x)).^2)) .* (1 - tanh(W1 x).^2)) x^T", "--timeout", "600")
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stderr == ""


def test_the_status_line_is_used_on_a_terminal_only(monkeypatch):
    from matcalc import cli

    class Terminal(FakeTerminal):
        def isatty(self) -> bool:
            return True

    monkeypatch.setattr(sys, "stderr", Terminal())
    with cli._status_line() as progress:
        assert isinstance(progress, cli.StatusLine)
    monkeypatch.setattr(sys, "stderr", FakeTerminal())  # no isatty: not a terminal
    with cli._status_line() as progress:
        assert progress is None
