"""The standalone parser (matcalc/frontend/generated_parser.py) is the grammar's: grammar/matcalc.lark stays the
source of truth, and the generated module must be regenerated (`python -m matcalc.frontend.generate_parser`)
whenever the grammar or a function's name changes."""

from __future__ import annotations

import lark
import pytest

from matcalc.frontend import generate_parser, generated_parser
from matcalc.frontend.parse import grammar_text, parser

# inputs over the whole grammar: sums, signs, products, postfix operators, calls, fills, Kronecker products
EXPRESSIONS = ["x^T A x", "-logdet(X) + tr(A X^T B X C)", "sigmoid(W x + b) .* y ./ z", "A^-1 B'ᵀ ⊗ -C",
               "kron(A, B, C) commutation(m, n) identity(m n)", "vector(1)^T matrix(-2/3) x.^{n - 1}",
               "softmax(x, 1) * 2 / 3 ⊙ u ⊘ v", "(a + b)^(2) # a comment", "max(U, [ ], 1) + min(u)"]
PROGRAMS = ["h = tanh(W1 x); L = sum(tanh(W2 h))", "; u = a .* b ;; v = sum(u) ;"]
DECLARATIONS = ["A: symmetric; X, Y: matrix(m, n); n: dim", "x: vector(3);"]
BAD = ["x^T A (", "exp(x, y)", "A ++ * B", "x $ y", "tr(A) = ", ""]


def test_the_generated_parser_is_built_from_the_current_grammar():
    assert generate_parser.grammar_sha256() == generated_parser.GRAMMAR_SHA256, \
        "the grammar changed: run python -m matcalc.frontend.generate_parser"


@pytest.mark.skipif(lark.__version__ != generated_parser.__version__,
                    reason=f"generated with Lark {generated_parser.__version__}, Lark {lark.__version__} installed")
def test_the_generated_parser_is_what_the_generator_writes():
    assert generate_parser.source() == generate_parser.TARGET.read_text(encoding="utf-8"), \
        "run python -m matcalc.frontend.generate_parser"


def _plain(tree: object) -> object:
    """A tree as nested tuples: rule names and tokens as plain text, with their positions (a Lark built from the
    grammar names its rules with Tokens, one loaded from tables with str; both are str to the typer)."""
    if isinstance(tree, lark.Token | generated_parser.Token):
        return (tree.type, str(tree), tree.start_pos, tree.end_pos)
    if tree is None:  # a [placeholder]
        return None
    meta = getattr(tree.meta, "start_pos", None), getattr(tree.meta, "end_pos", None)
    return (str(tree.data), meta, tuple(_plain(child) for child in tree.children))


def _outcome(parse, text: str, start: str) -> object:
    """The tree, or the kind and position of the syntax error, comparable across the two Larks."""
    try:
        return _plain(parse(text, start=start))
    except (lark.exceptions.UnexpectedInput, generated_parser.UnexpectedInput) as error:
        expected = getattr(error, "expected", None) or getattr(error, "allowed", None) or ()
        return f"{type(error).__name__} at {error.pos_in_stream} expecting {sorted(expected)}"


@pytest.mark.parametrize("program", [False, True], ids=["expressions", "programs"])
def test_the_generated_parser_reads_as_lark_reads_the_grammar(program: bool):
    starts = ["start_program"] if program else ["start_expr", "start_declarations"]
    reference = lark.Lark(grammar_text(), parser="lalr", start=starts, propagate_positions=True,
                          maybe_placeholders=True)
    cases = [(text, "start_program") for text in [*PROGRAMS, *EXPRESSIONS, *BAD]] if program else \
        [(text, "start_expr") for text in [*EXPRESSIONS, *BAD]] + \
        [(text, "start_declarations") for text in DECLARATIONS]
    for text, start in cases:
        assert _outcome(parser(program).parse, text, start) == _outcome(reference.parse, text, start), text
