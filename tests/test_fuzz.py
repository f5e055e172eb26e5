"""Bad input never crashes, never hangs, never executes.

Random token soup and mutated real expressions go through the whole pipeline (parse, shapes,
differentiate, simplify, print). The only exception allowed out is a MatcalcError subclass with a
message; every input's time is recorded, and none may take 2 s (a hang, not a speed target:
typical inputs take well under 10 ms; speed itself is measured by benchmarks/).
"""

from __future__ import annotations

import contextlib
import io
import random
import re
import time
from pathlib import Path

import pytest
from generate import random_cases
from hypothesis import given, settings
from hypothesis import strategies as st
from tally import TALLY, record_slowest
from test_cookbook_table import COOKBOOK

import matcalc
from matcalc import MatcalcError
from matcalc.cli import main
from matcalc.core.functions import FUNCTIONS

HANG = 2.0  # seconds
QUICK = 300
LONG = 100_000

TOKENS = [
    *"xyzabAXWSI", "alpha", "beta", "λ", "Σ", "x1", "W2", "eye", "I",
    "0", "1", "2", "0.5", ".5", "1e-3", "3e5", "1e308", "1e999", "99999999999999999999", "-1",
    "+", "-", "*", "/", ".*", "./", "⊙", "⊘", "^", ".^", "'", "ᵀ", "^T", "^-1", "^0", "^2", "^(1/2)",
    "(", ")", "(", ")", "{", "}", ",", ";", ":", " ", " ",
    *FUNCTIONS, "vector", "matrix", "sigmod", "expp", "Tr", "logdet(", "inv(", "diag(",
    "⊗", "kron(", "kron", "vec(", "commutation(", "commutation", "commutation(m, n)", "K",
    "@", "#", "$", "\\", "`", '"', "!", "=", "<", ">", "[", "]", "|", "&", "%", "~", "?",
    "__import__", "'os'", ".system", "lambda", "eval", "exec", "sympify", "open", "import", "print",
    "\x00", "\u200f", "\u202e", "\ufeff", "\u0301", "А", "х", "ｘ", "𝑥", "🙂", "\t", "\n", "\r",
]
WRT = ["x", "y", "A", "X", "W", "alpha", "S", "b", "z", "I", "2x", "x y", "", "é", "λ"]
WHERE = [None, None, None, "A: symmetric", "S: symmetric; alpha: scalar", "X: matrix(m, n); x: vector(n)",
         "A: banana", "x: vector(n); x: matrix", "I: scalar", "A, B: matrix(n, n)", ";;", "x: vector(1)",
         "W: matrix(2, 3)", "A: symmetric(n, m)", "x: vector(n", {"A": "symmetric"}, {"x": 3}]


TENSOR_SEEDS = ["W x + b", "A X B", "X X", "inv(X)", "tanh(W x)", "softmax(W x)", "x x^T", "X^T", "x^T ⊗ I",
                "kron(A, X) vec(X)", "commutation(m, n) vec(X)", "diag(1 - tanh(W x).^2) (x^T ⊗ I)"]


def seed_expressions() -> list[str]:
    return [expr for expr, *_ in COOKBOOK] + TENSOR_SEEDS + [case.text for case in random_cases(seed=7, count=200)]


def token_soup(rng: random.Random) -> str:
    return "".join(rng.choice(TOKENS) for _ in range(rng.randint(1, 14)))


def mutate(text: str, rng: random.Random) -> str:
    """One to three random edits: delete, insert a token, replace a character, duplicate, swap, truncate."""
    for _ in range(rng.randint(1, 3)):
        if not text:
            return token_soup(rng)
        i, j = sorted(rng.randrange(len(text) + 1) for _ in range(2))
        edit = rng.randrange(6)
        if edit == 0:
            text = text[:i] + text[j:]
        elif edit == 1:
            text = text[:i] + rng.choice(TOKENS) + text[i:]
        elif edit == 2 and i < len(text):
            text = text[:i] + chr(rng.choice([rng.randrange(32, 127), rng.randrange(0x80, 0x3000)])) + text[i + 1 :]
        elif edit == 3:
            text = text[:j] + text[i:j] + text[j:]
        elif edit == 4 and j < len(text):
            text = text[:i] + text[j] + text[i + 1 : j] + text[i] + text[j + 1 :]
        else:
            text = text[:j]
    return text


def run_one(text: str, wrt: str, where: str | dict | None, hessian: bool = False, hang: float | None = HANG) -> None:
    """The whole pipeline on one input: a result, or a MatcalcError with a message; never anything else."""
    start = time.perf_counter()
    try:
        d = matcalc.hessian(text, wrt, where=where) if hessian else matcalc.diff(text, wrt, where=where)
        str(d), d.latex()
        TALLY["fuzzed inputs with a result"] += 1
        if d.form == "vec":  # a tensor (issue 9): its other forms, and a derivative of it
            TALLY["fuzzed inputs with a tensor result"] += 1
            d.text(form="differential"), d.text(form="index")
            d.diff(wrt)
    except MatcalcError as error:
        assert str(error).strip(), f"empty message for {text!r}"
    except Exception as error:  # anything else is the bug this test looks for
        TALLY["fuzzed inputs: bad exceptions"] += 1
        raise AssertionError(f"{type(error).__name__} escaped for {text[:200]!r} w.r.t. {wrt!r} where {where!r}") \
            from error
    finally:
        elapsed = time.perf_counter() - start
        TALLY["fuzzed inputs"] += 1
        record_slowest("slowest fuzzed input (ms)", 1000 * elapsed)
    assert hang is None or elapsed < hang, f"{text[:200]!r} took {elapsed:.1f} s"


def fuzz(count: int, seed: int) -> None:
    rng = random.Random(seed)
    seeds = seed_expressions()
    for _ in range(count):
        text = token_soup(rng) if rng.random() < 0.4 else mutate(rng.choice(seeds), rng)
        run_one(text, rng.choice(WRT), rng.choice(WHERE), hessian=rng.random() < 0.1)


# ---------------------------------------------------------------- random inputs


@settings(max_examples=QUICK)
@given(st.lists(st.sampled_from(TOKENS), min_size=1, max_size=14).map("".join), st.sampled_from(WRT))
def test_token_soup_gives_a_result_or_a_clear_error(text, wrt):
    run_one(text, wrt, None)


@settings(max_examples=QUICK)
@given(st.sampled_from(seed_expressions()), st.randoms(use_true_random=False), st.sampled_from(WHERE))
def test_mutated_expressions_give_a_result_or_a_clear_error(text, rng, where):
    run_one(mutate(text, rng), rng.choice(WRT), where)


@settings(max_examples=QUICK)
@given(st.text(max_size=40), st.text(max_size=6))
def test_arbitrary_unicode_gives_a_result_or_a_clear_error(text, wrt):
    run_one(text, wrt, None)


@pytest.mark.slow
def test_long_run_fuzz():
    fuzz(LONG, seed=2026)


# ---------------------------------------------------------------- hostile inputs, one by one


def sum_of_inner_products(size: int) -> str:
    terms, total, i = [], 0, 0
    while total - 3 < size:  # the first term has no " + " before it
        terms.append(f"a{i}^T x")
        total += len(terms[-1]) + 3
        i += 1
    return " + ".join(terms)


HOSTILE = [
    ("10,000 nested parentheses", "(" * 10_000 + "x" + ")" * 10_000),
    ("10,000 nested calls", "exp(" * 10_000 + "x" + ")" * 10_000),
    ("10,000 signs", "-" * 10_000 + "x"),
    ("10,000 transposes", "x" + "'" * 10_000),
    ("10,000 powers", "alpha" + "^2" * 10_000),
    ("a 100 kB sum", sum_of_inner_products(100_000)),
    ("a 100 kB product", "x^T " + " ".join(f"A{i}" for i in range(16_000)) + " x"),
    ("a product of 10,000 copies of one matrix", "x^T " + "A " * 10_000 + "x"),
    ("a product of 1,000 factors holding x", " .* ".join(["sin(x)"] * 1_000)),
    ("100 kB of junk", "x +* " * 20_000),
    ("a matrix power of 10^9", "tr(X^1000000000)"),
    ("a huge number", "1e999999 x"),
    ("a number of 5,000 digits", "9" * 5_000 + " x"),
    ("a constant power of 10^8", "2^100000000 x"),
    ("numbers multiplied past 3,600 digits", " ".join(["1e300"] * 20) + " x"),
    ("NUL bytes", "x\x00^T A x"),
    ("a right-to-left mark", "x^T\u200f A x"),
    ("a right-to-left override", "\u202ex^T A x"),
    ("a byte order mark", "\ufeffx^T A x"),
    ("a Cyrillic A", "x^T А x"),
    ("a fullwidth x", "ｘ^T A x"),
    ("a mathematical italic x", "𝑥^T A 𝑥"),
    ("Python", "__import__('os').system('touch pwned')"),
    ("a lambda", "(lambda: 0)()"),
]


@pytest.mark.parametrize(("name", "text"), HOSTILE, ids=[name for name, _ in HOSTILE])
def test_hostile_input_gives_a_result_or_a_clear_error(name, text, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    start = time.perf_counter()
    run_one(text, "X" if "X" in text else "x", None, hang=None)  # timed by benchmarks/robustness.py, not here
    record_slowest("slowest hostile input (ms)", 1000 * (time.perf_counter() - start))
    assert not (tmp_path / "pwned").exists()


def test_a_100_kB_sum_is_differentiated_in_full():
    text = sum_of_inner_products(100_000)
    d = matcalc.diff(text, "x")
    assert len(text) >= 100_000
    assert len(d.expr.terms) == text.count("+") + 1  # the gradient a0 + a1 + ... keeps every term


@pytest.mark.parametrize("text", ["x^T A x\x00", "x\u200f", "x^T А x", "ｘ"])
def test_invisible_and_confusable_characters_are_syntax_errors_at_their_column(text):
    with pytest.raises(matcalc.ParseError, match="column"):
        matcalc.parse(text)


def test_an_absent_variable_gives_a_zero_of_its_shape():
    d = matcalc.diff("sin(x^T A x)", "W", where="W: matrix(m, n)")
    assert str(d) == "matrix(0)" and d.shape == ("m", "n")


def test_log_det_of_a_vector_is_a_shape_error_naming_det_and_the_vector():
    with pytest.raises(matcalc.ShapeError, match=r"det.*`x`"):
        matcalc.diff("log(det(x))", "x")


def test_conflicting_and_unknown_declarations_are_declaration_errors():
    with pytest.raises(matcalc.DeclarationError, match="banana"):
        matcalc.diff("x^T A x", "x", where="A: banana")
    with pytest.raises(matcalc.DeclarationError):
        matcalc.diff("x^T A x", "x", where="x: vector(n); x: matrix")


def test_no_source_file_evaluates_text():
    """Only the grammar reads user text: no eval, exec, compile, sympify or parse_expr anywhere in matcalc/, but
    the one place that runs generated code (pycode.compile_source), which is built from the IR alone."""
    forbidden = re.compile(r"(?<![\w.])(eval|exec|compile|sympify|parse_expr)\s*\(|\.S\s*\(")
    package = Path(matcalc.__file__).parent
    offenders = [f"{path.name}:{number}" for path in package.rglob("*.py")
                 for number, line in enumerate(path.read_text().splitlines(), 1)
                 if forbidden.search(line.split("#")[0]) and not line.lstrip().startswith("def ")]  # d.compile()
    assert [o for o in offenders if not o.startswith("pycode.py:")] == []
    assert len(offenders) == 1  # exec(compile(source, ...)) in compile_source


def test_generated_code_holds_no_user_text_but_names_and_numbers():
    """A hostile name or number cannot reach the generated code: the grammar admits identifiers only, and the
    code's own text is templates, those names, and float literals."""
    for text in ('x^T A x + 1e308 alpha', "__import__('os').system('true')", "x; import os"):
        try:
            d = matcalc.diff(text, "x")
        except MatcalcError:
            continue
        source = d.to_code("numpy")
        assert "import os" not in source and "__import__" not in source and "system" not in source


# ---------------------------------------------------------------- the command line


@settings(max_examples=100)
@given(st.sampled_from(seed_expressions()), st.randoms(use_true_random=False))
def test_cli_user_errors_exit_2_with_one_message_on_stderr(text, rng):
    args = ["diff", mutate(text, rng), rng.choice(["x", "A", "X", "alpha", "2x"])]
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main(args)
        except SystemExit as exit_:  # argparse: an expression starting with '-' reads as an option
            code = exit_.code
    assert code in (0, 2), (args, err.getvalue())
    if code == 2:
        assert out.getvalue() == ""
        assert "error: " in err.getvalue() and "Traceback" not in err.getvalue()
    else:
        assert err.getvalue() == "" and out.getvalue().strip()
