"""The input language: what parses, what it means, and the errors for what does not."""

import pytest

import matcalc
from matcalc import DeclarationError, MatcalcError, ParseError, ShapeError
from matcalc.frontend.parse import MAX_NESTING, parse_declarations

MATRIXCALCULUS_ORG_EXAMPLES = [
    "0.5*x'*A*x", "A*exp(x)", "(y.*v)'*x", "norm1(A*x-y)", "norm2(A*x-y)^2",
    "sum(log(exp(-y.*(X*w)) + vector(1)))", "tr(A*X'*B*X*C)", "log(det(inv(X)))", "sin(x)'*y",
]


@pytest.mark.parametrize("text", MATRIXCALCULUS_ORG_EXAMPLES)
def test_matrixcalculus_org_examples_parse(text):
    assert matcalc.parse(text) is not None


def test_a_to_the_b_parses_once_a_and_b_are_declared_scalars():
    assert str(matcalc.parse("a^b", where="a, b: scalar")) == "a^b"


@pytest.mark.parametrize(("spelling", "canonical"), [
    ("x'", "x^T"), ("xᵀ", "x^T"), ("x ⊙ y", "x .* y"), ("x ⊘ y", "x ./ y"), ("X^-1", "inv(X)"),
    ("X^(-1)", "inv(X)"), ("A*x", "A x"), ("2*x", "2 x"), ("x / alpha", "x / alpha"), ("eye x", "x"),
    ("I x", "x"), ("X^{2}", "X^2"), ("x .^ 2", "x.^2"), ("- -x", "x"), ("1.5e1 x", "15 x"), (".5 x", "0.5 x"),
])
def test_operator_spellings_mean_the_same(spelling, canonical):
    assert matcalc.parse(spelling) == matcalc.parse(canonical)


@pytest.mark.parametrize(("name", "shape_kind"), [
    ("A", "matrix"), ("W1", "matrix"), ("Sigma", "matrix"), ("x", "vector"), ("b2", "vector"),
    ("alpha", "scalar"), ("lambda", "scalar"), ("λ", "scalar"), ("alpha_t", "scalar"),
])
def test_default_types(name, shape_kind):
    shape = matcalc.parse(name).shape
    kind = "scalar" if shape == (1, 1) else ("vector" if shape[1] == 1 else "matrix")
    assert kind == shape_kind


def test_dimensions_are_unified_over_the_whole_expression():
    d = matcalc.diff("x^T A x", "x")
    assert d.where["A"].dims == ("n", "n")
    assert d.where["x"].dims == ("n",)


def test_declarations_as_string_and_dict_agree():
    text = parse_declarations("A: symmetric; c: scalar; X: matrix(m, n); y: vector(m)")
    as_dict = parse_declarations({"A": "symmetric", "c": "scalar", "X": "matrix(m, n)", "y": "vector(m)"})
    assert text == as_dict
    assert text["X"].dims == ("m", "n")


def test_declared_symmetric_matrix_equals_its_transpose():
    assert matcalc.parse("A^T x", where="A: symmetric") == matcalc.parse("A x", where="A: symmetric")


def test_declared_dimensions_are_checked():
    with pytest.raises(ShapeError, match="X"):
        matcalc.parse("X y", where="X: matrix(m, n); y: vector(m)")


@pytest.mark.parametrize(("where", "message"), [
    ("A: banana", "unknown kind 'banana'"), ("A: symetric", "did you mean 'symmetric'"),
    ("A: matrix; A: vector", "conflicting declarations of A"), ("I: matrix", "reserved"),
    ("x: vector(1)", "at least 2"), ("A: matrix(n)", "takes 2"), ("A matrix", "syntax error"),
])
def test_bad_declarations_are_clear_errors(where, message):
    with pytest.raises(DeclarationError, match=message):
        matcalc.diff("x^T A x", "x", where=where)


def test_syntax_error_shows_position_caret_and_expectation():
    with pytest.raises(ParseError) as error:
        matcalc.parse("x^T A +")
    message = str(error.value)
    assert "column 8" in message and "^" in message and "expected" in message
    assert error.value.position == 7


def test_unknown_function_suggests_the_nearest():
    with pytest.raises(ParseError, match="did you mean 'sigmoid'"):
        matcalc.parse("sigmod(x)")


def test_deep_nesting_is_a_clear_error_not_a_recursion_error():
    with pytest.raises(ParseError, match="nested deeper"):
        matcalc.parse("(" * 10_000 + "x" + ")" * 10_000)
    with pytest.raises(ParseError, match="nested deeper"):
        matcalc.parse("exp(" * (MAX_NESTING + 5) + "x" + ")" * (MAX_NESTING + 5))


def test_moderate_nesting_is_fine():
    assert matcalc.parse("(" * 50 + "x" + ")" * 50) == matcalc.parse("x")


@pytest.mark.parametrize("text", ["", "   ", "x\x00", "x +", "(x", "x)", "x ^", "__import__('os').system('echo hi')",
                                  "x; y", "A x ≠ b", "lambda: 0", "x @ y"])
def test_bad_text_is_a_parse_error(text):
    with pytest.raises(ParseError):
        matcalc.parse(text)


def test_python_in_the_input_is_never_run(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for text in ["__import__('os').system('touch pwned')", "open('pwned','w')", "exec('x')"]:
        with pytest.raises(MatcalcError):
            matcalc.diff(text, "x")
    assert not (tmp_path / "pwned").exists()


@pytest.mark.parametrize(("text", "names"), [
    ("x y", ["`x`", "`y`"]), ("log(det(x))", ["det", "`x`"]), ("A x + y^T", ["A x", "y^T"]),
    ("x / y", ["`y`", "./"]), ("alpha + x", ["alpha", 'x: scalar']), ("tr(x)", ["tr", "`x`"]),
    ("x^2", ["`x`", ".^"]), ("softmax(X)", ["softmax", "`X`"]), ("x .* y^T", ["element-wise product"]),
])
def test_shape_errors_name_the_operands(text, names):
    with pytest.raises(ShapeError) as error:
        matcalc.parse(text)
    for name in names:
        assert name in str(error.value)


def test_a_number_next_to_a_vector_is_a_constant_vector():
    assert matcalc.parse("1 - x") == matcalc.parse("vector(1) - x")
    assert matcalc.parse("1 ./ x") == matcalc.parse("vector(1) ./ x")


def test_every_function_is_documented_in_the_language_reference():
    from pathlib import Path

    from matcalc.core.functions import FUNCTIONS

    reference = (Path(__file__).resolve().parent.parent / "docs" / "language.md").read_text(encoding="utf-8")
    for name in FUNCTIONS:
        assert f"`{name}`" in reference, name
