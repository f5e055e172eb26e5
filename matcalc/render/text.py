"""Stage 5a: IR -> text in the input language (round-trips through the parser) and LaTeX.

Precedence follows the grammar: a sum holds signed terms; a product (juxtaposition, .*, ./)
is left-associative and holds postfix operands; postfix operators (^T, ^k, .^k) bind tightest.

No printer recurses over the depth of an expression (issue 8: a network of any depth prints), and a
program of named intermediates prints with `program_text` / `program_latex`; `shared_subexpressions`
says which subexpressions are worth naming.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from fractions import Fraction
from typing import Any

from ..core import ir
from ..core.constants import CONSTANTS
from ..core.functions import FUNCTIONS
from ..core.ir import (
    Add,
    Commutation,
    Constant,
    Differential,
    ElemDiv,
    ElemPower,
    Expr,
    Fill,
    Func,
    Hadamard,
    Identity,
    Kron,
    MatMul,
    Num,
    Power,
    Size,
    Transpose,
    Var,
    has_minus_sign,
    is_reciprocal,
    neg,
    power,
)

# ---------------------------------------------------------------- numbers


SCIENTIFIC_DIGITS = 21  # integers this long, and decimals this small, print as mantissa e exponent


def _scientific(value: Fraction) -> str | None:
    """m e k (2e308, 1.5e-30) for a decimal with few significant digits and a large or small exponent."""
    numerator, exponent = abs(value.numerator), 0
    denominator = value.denominator
    while denominator % 10 == 0:
        denominator //= 10
        exponent -= 1
    if denominator != 1:  # a power of 2 or 5 left in the denominator: scale up to a power of ten
        for prime, other in ((2, 5), (5, 2)):
            while denominator % prime == 0:
                denominator //= prime
                numerator *= other
                exponent -= 1
        if denominator != 1:
            return None
    while numerator and numerator % 10 == 0:
        numerator //= 10
        exponent += 1
    digits = str(numerator)
    if len(digits) > 17 or -SCIENTIFIC_DIGITS < exponent + len(digits) <= SCIENTIFIC_DIGITS:
        return None
    mantissa = digits[0] + ("." + digits[1:] if len(digits) > 1 else "")
    return f"{'-' if value < 0 else ''}{mantissa}e{exponent + len(digits) - 1}"


def number_text(value: Fraction) -> str:
    """A finite decimal when there is one (0.5, 2, 1e-06, 2e308), else p/q."""
    scientific = _scientific(value)
    if scientific is not None:
        return scientific
    if value.denominator == 1:
        return str(value.numerator)
    denominator = value.denominator
    twos = fives = 0
    while denominator % 2 == 0:
        denominator //= 2
        twos += 1
    while denominator % 5 == 0:
        denominator //= 5
        fives += 1
    if denominator == 1:
        digits = max(twos, fives)
        text = f"{float(value):.{digits}f}" if digits <= 15 else repr(float(value))
        if Fraction(text) == value:
            return text.rstrip("0").rstrip(".") if "." in text else text
    return f"{value.numerator}/{value.denominator}"


def _is_atom_number(value: Fraction) -> bool:
    return value >= 0 and "/" not in number_text(value)


# ---------------------------------------------------------------- rendering without recursion
#
# Each printer gives a node's *template*: the pieces of its text, each a literal string or a node
# standing for that node's whole text (a child, or a node the printer derives from one: the negated
# term after ' - ', the divisor after ' / '). A template depends on the node alone, never on its
# children's texts, so templates are built from a worklist over the distinct nodes, and the text is
# then written out with an explicit stack: no recursion over the depth, and the work is linear in
# the text written (no string is copied into its parent's, level after level).

Piece = str | Expr  # a literal, or the whole text of a node


def _render(root: Expr, template: Callable[[Expr], list[Piece]]) -> str:
    if not root.children:
        return "".join(template(root))
    # keyed by id: every node here is held by the template that names it (or is the root), so it stays alive
    templates: dict[int, list[Piece]] = {}
    pending = [root]
    while pending:
        node = pending.pop()
        if id(node) in templates:
            continue
        pieces = templates[id(node)] = template(node)
        for index, piece in enumerate(pieces):
            if type(piece) is str:
                continue
            if not piece.children:  # a leaf's template is its text: written in place
                pieces[index] = template(piece)[0]
            elif id(piece) not in templates:
                pending.append(piece)
    out: list[str] = []
    stack = [iter(templates[id(root)])]
    while stack:
        for piece in stack[-1]:
            if type(piece) is str:
                out.append(piece)
            else:  # go down into the node's text, then on with this one's
                stack.append(iter(templates[id(piece)]))
                break
        else:
            stack.pop()
    return "".join(out)


def _joined(separator: str, parts: Iterable[list[Piece]]) -> list[Piece]:
    pieces: list[Piece] = []
    for index, part in enumerate(parts):
        if index:
            pieces.append(separator)
        pieces.extend(part)
    return pieces


# ---------------------------------------------------------------- text


# How tightly each kind of node's text binds: an ATOM may be the base of a postfix operator (^T, ^2) without
# parentheses, a POSTFIX node an operand of juxtaposition (A B) or of .* and ./; any other node takes parentheses
# there. A number binds as an atom when it prints as one (2, not -2 or 1/2); a fill as an atom unless it is a
# row, vector(c)^T.
ATOM, POSTFIX, LOOSE = 2, 1, 0
_BINDING: dict[type, int] = {
    Var: ATOM, Constant: ATOM, Size: ATOM, Identity: ATOM, Commutation: ATOM, Func: ATOM, Differential: ATOM,
    Transpose: POSTFIX, Power: POSTFIX, ElemPower: POSTFIX,
    Add: LOOSE, MatMul: LOOSE, Hadamard: LOOSE, ElemDiv: LOOSE, Kron: LOOSE,
}


def _binding(e: Expr) -> int:
    value = e.constant
    if value is None:
        if isinstance(e, MatMul) and len(e.factors) == 2 and len(_sums_along_axes(list(e.factors))) == 1:
            return ATOM  # vector(1)^T U, written sum(U, 1): a call
        return _BINDING[type(e)]
    if e.is_scalar:
        return ATOM if _is_atom_number(value) else LOOSE
    return POSTFIX if e.shape[0] == 1 else ATOM


def _is_postfix_level(e: Expr) -> bool:
    """Printable as an operand of juxtaposition without parentheses."""
    return _binding(e) >= POSTFIX


def _is_atom_level(e: Expr) -> bool:
    """Printable as the base of a postfix operator without parentheses."""
    return _binding(e) == ATOM


def _paren(e: Expr) -> list[Piece]:
    return ["(", e, ")"]


def _join_terms(e: Add, render: Callable[[Expr], list[Piece]], paren: Callable[[Expr], list[Piece]]) -> list[Piece]:
    """a + b - c: every term after the first with its sign pulled out; a - (b + c) keeps its parentheses."""
    pieces = render(e.terms[0])
    for term in e.terms[1:]:
        if not has_minus_sign(term):
            pieces += [" + ", *render(term)]
            continue
        negated = neg(term)
        pieces += [" - ", *(paren(negated) if isinstance(negated, Add) else render(negated))]
    return pieces


def _fill_text(e: Fill, bare: bool) -> str:
    if bare:
        return number_text(e.value)
    keyword = "matrix" if e.shape[0] != 1 and e.shape[1] != 1 else "vector"
    text = f"{keyword}({number_text(e.value)})"
    return text + "^T" if e.shape[0] == 1 else text


# How many identities print their size, `identity(n)`, rather than `I`: a neighbour in a product, sum or Hadamard
# product tells a plain I's size, but a Kronecker product's factor or vec's argument has none (m n is the product
# of which sizes?), and a constant of unknown size (matrix(1)) inside them neither: SIZED writes the sizes of every
# identity and constant. The caller that can parse takes the first level whose text reads back as the expression
# (results.py).
PLAIN, SIZED_IN_KRONECKER, SIZED_IN_KRONECKER_AND_CONSTANTS, SIZED = 0, 1, 2, 3


def to_text(e: Expr, sized: int = PLAIN) -> str:
    """e in the input language: the parser reads it back as e. No recursion over the depth of e. `sized`: which
    identities print their size (PLAIN: those of a product size only)."""
    return _render(e, _text if sized == PLAIN else _TEXT_TEMPLATES[sized])  # _text looked up now (tests count it)


ir.TEXT_PRINTER[0] = to_text


def _split_divisors(e: MatMul) -> tuple[list[Expr], list[Expr]]:
    """The factors printed before '/', and the reciprocal scalars printed after it (when anything is before)."""
    divisors = [f for f in e.factors if is_reciprocal(f)]
    factors = [f for f in e.factors if not is_reciprocal(f)]
    if not factors:
        return list(e.factors), []
    return factors, divisors


def _divisor(e: Expr) -> Expr:
    """b^-k -> b^k, the expression written after '/'."""
    exponent = e.numeric_exponent
    assert exponent is not None
    return power(e.base, Num(-exponent))  # type: ignore[attr-defined]


def _operand(e: Expr, bare_fill: bool = False) -> list[Piece]:
    """An operand of a product-level operator."""
    if bare_fill and e.constant is not None:
        text = number_text(e.constant)
        return [text if _is_atom_number(e.value) else f"({text})"]
    return [e] if _is_postfix_level(e) else _paren(e)


def _base(e: Expr) -> list[Piece]:
    return [e] if _is_atom_level(e) else _paren(e)


def _exponent(e: Expr) -> list[Piece]:
    if e.constant is not None:
        text = number_text(e.constant)
        return [text if "/" not in text else f"({text})"]
    if isinstance(e, Var | Constant):
        return [e.name]
    return _paren(e)


def _kron_operand_takes_parentheses(e: Expr) -> bool:
    """An operand of ⊗, which binds less tightly than a product: a sum, a Kronecker product (it is kept flat) and a
    negated product take parentheses."""
    return isinstance(e, Add | Kron) or has_minus_sign(e)


def _kron_operand(e: Expr) -> list[Piece]:
    return _paren(e) if _kron_operand_takes_parentheses(e) else [e]


def dim_text(dim: ir.Dim) -> str:
    """A dimension as the input language writes a size: n, 3, or a product m n."""
    if isinstance(dim, ir.DimProduct):
        return " ".join([*([str(dim.coefficient)] if dim.coefficient != 1 else []), *dim.factors])
    return str(dim)


def _term(t: Expr) -> list[Piece]:
    """A term of a sum: a constant term prints as a bare number where the parser broadcasts it back (1 - x),
    else as vector(1/3)."""
    value = t.constant  # a number prints as itself either way
    return [number_text(value)] if value is not None and _is_atom_number(abs(value)) else [t]


# ---------------------------------------------------------------- broadcasts and sums along an axis, as written
# The parser writes `X + b` (b a column beside a matrix) as X + b vector(1)^T, `X - mean(X, 1)` with vector(1) r,
# and `sum(U, 1)` as vector(1)^T U (frontend/typecheck.py); the printer writes them back so, which parses to the
# same tree. A broadcast prints bare only beside an operand of the full shape that is no broadcast: that operand
# tells the parser the shape to spread to.


def _is_ones_fill(e: Expr) -> bool:
    return isinstance(e, Fill) and e.value == 1


def _is_matrix(shape: ir.Shape) -> bool:
    return shape[0] != 1 and shape[1] != 1


def _spread_core(e: Expr) -> Expr | None:
    """The operand a broadcast spreads: b of b vector(1)^T, r of vector(1) r, alpha of alpha vector(1); else None."""
    parts = ir.spread_parts(e)
    return parts[0] if parts is not None else None


def _unspread(operands: Sequence[Expr], scalars: bool = True) -> list[Expr]:
    """The operands of a sum or an element-wise product as written: a broadcast bare after an operand of the full
    shape that is no broadcast. The parser reads the operands left to right, so that operand has set the shape to
    spread to by then; of two operands (a quotient), either side may be the broadcast one."""
    cores = [_spread_core(operand) for operand in operands]
    if not scalars:  # a scalar beside .* scales: alpha .* X is alpha X, not a broadcast
        cores = [core if core is None or not core.is_scalar else None for core in cores]
    # beside an identity or a constant, the broadcast stays explicit: I - u vector(1)^T reads better than I - u
    full = [core is None and operand.shape == operands[0].shape and operand.constant is None
            and not isinstance(operand, Identity) for operand, core in zip(operands, cores, strict=True)]
    if len(operands) == 2 and any(full):
        return [operand if core is None else core for operand, core in zip(operands, cores, strict=True)]
    written, seen_full = [], False
    for operand, core, is_full in zip(operands, cores, full, strict=True):
        written.append(core if core is not None and seen_full else operand)
        seen_full = seen_full or is_full
    return written


def _sums_along_axes(factors: list[Expr]) -> list[list[Piece]]:
    """The factors of a product as written: vector(1)^T U is sum(U, 1), U vector(1) sum(U, 2), for a matrix U."""
    out: list[list[Piece]] = []
    i = 0
    while i < len(factors):
        factor = factors[i]
        after = factors[i + 1] if i + 1 < len(factors) else None
        if after is not None and _is_ones_fill(factor) and factor.shape[0] == 1 and _is_matrix(after.shape):
            out.append(["sum(", after, ", 1)"])
            i += 2
        elif after is not None and _is_ones_fill(after) and after.shape[1] == 1 and _is_matrix(factor.shape):
            out.append(["sum(", factor, ", 2)"])
            i += 2
        else:
            out.append(_operand(factor))
            i += 1
    return out


def _text_of_product(e: MatMul) -> list[Piece]:
    factors, divisors = _split_divisors(e)
    prefix = ""
    if isinstance(factors[0], Num):
        coefficient = factors.pop(0).value
        if not factors:
            prefix = number_text(coefficient)
        elif coefficient == -1:
            prefix = "-"
            # -(a .* b) prints as -a .* b: unary minus applies to the whole product
            if len(factors) == 1 and isinstance(factors[0], Hadamard | ElemDiv) and not divisors:
                return [prefix, factors[0]]
        elif coefficient < 0:
            prefix = f"-{number_text(-coefficient)} "
        else:
            prefix = f"{number_text(coefficient)} "
    pieces: list[Piece] = [prefix, *_joined(" ", _sums_along_axes(factors))]
    for d in divisors:
        pieces += [" / ", *_operand(_divisor(d))]
    return pieces


def _text_of_sum(e: Add) -> list[Piece]:
    written: dict[Expr, list[Piece]] = {}  # each term, and each subtracted term negated (as _join_terms asks)
    for term, shown in zip(e.terms, _unspread(e.terms), strict=True):
        if shown is not term:  # a spread sum keeps its parentheses: A + (x + y) spreads x + y, A + x + y each
            written[term] = _paren(shown) if isinstance(shown, Add) else _term(shown)
            negated = neg(shown)
            written[neg(term)] = _paren(negated) if isinstance(negated, Add) else _term(negated)
    return _join_terms(e, lambda term: written.get(term) or _term(term), _paren)


def _text_of_quotient(e: ElemDiv) -> list[Piece]:
    numerator, denominator = _unspread([e.numerator, e.denominator])
    if denominator.is_scalar and not e.denominator.is_scalar:  # X ./ alpha divides by a scalar: no broadcast
        denominator = e.denominator
    return [*_operand(numerator, bare_fill=True), " ./ ", *_operand(denominator)]


# The template of each kind of node's text, by node type (the node classes are final: no subclass to look up).
_TEXT: dict[type, Callable[[Any], list[Piece]]] = {
    Var: lambda e: [e.name],
    Constant: lambda e: [e.name],
    Size: lambda e: [e.dim],
    Num: lambda e: [number_text(e.value)],
    Fill: lambda e: [_fill_text(e, bare=False)],
    # an identity of a product size, which no neighbour may tell, is explicit
    Identity: lambda e: [f"identity({dim_text(e.size)})"] if isinstance(e.size, ir.DimProduct) else ["I"],
    Differential: lambda e: [f"d{e.var.name}" if len(e.var.name) == 1 else f"d({e.var.name})"],
    Add: _text_of_sum,
    MatMul: _text_of_product,
    Hadamard: lambda e: _joined(" .* ", map(_operand, _unspread(e.factors, scalars=False))),
    ElemDiv: _text_of_quotient,
    Transpose: lambda e: [*_base(e.arg), "^T"],
    Power: lambda e: [*_base(e.base), "^", *_exponent(e.exponent)],
    ElemPower: lambda e: [*_base(e.base), ".^", *_exponent(e.exponent)],
    Func: lambda e: [f"{e.name}(", e.arg, _axis_text(e)],
    Kron: lambda e: _joined(" ⊗ ", map(_kron_operand, e.factors)),
    Commutation: lambda e: [f"commutation({dim_text(e.rows)}, {dim_text(e.cols)})"],
}


def _axis_text(e: Func) -> str:
    """The end of a call: its axis as the input writes it (softmax(U, 1); max(U, [], 1), MATLAB's), or none."""
    if not e.axis:
        return ")"
    return f", [], {e.axis})" if FUNCTIONS[e.name].axis_after_empty else f", {e.axis})"


def _text(e: Expr) -> list[Piece]:
    """The template of e's text."""
    template = _TEXT.get(type(e))
    if template is None:
        raise TypeError(f"cannot print {type(e).__name__}")
    return template(e)


def _sized_identity(e: Expr) -> str:
    return f"identity({dim_text(e.size)})"  # type: ignore[attr-defined]


def _text_sized_in_kronecker(e: Expr) -> list[Piece]:
    """The template of e's text, where an identity that is a Kronecker factor or vec's argument prints its size."""
    if isinstance(e, Kron):
        return _joined(" ⊗ ", ([_sized_identity(f)] if isinstance(f, Identity) else _kron_operand(f)
                               for f in e.factors))
    if isinstance(e, Func) and e.name == "vec" and isinstance(e.arg, Identity):
        return [f"vec({_sized_identity(e.arg)})"]
    return _text(e)


def _sized_fill(e: Fill) -> str:
    """A constant vector or matrix with its size: between identities of its rows and columns, which the product
    absorbs (`(identity(m) matrix(1) identity(n n))` reads back as the m×n·n matrix(1))."""
    rows, cols = e.shape
    left = f"identity({dim_text(rows)}) " if rows != 1 else ""
    right = f" identity({dim_text(cols)})" if cols != 1 else ""
    return f"({left}{_fill_text(e, bare=False)}{right})"


def _text_sized(e: Expr) -> list[Piece]:
    """The template of e's text, where every identity and every constant vector or matrix prints its size."""
    if isinstance(e, Identity):
        return [_sized_identity(e)]
    if isinstance(e, Fill):
        return [_sized_fill(e)]
    return _text(e)


def _text_sized_in_kronecker_and_constants(e: Expr) -> list[Piece]:
    """The template of e's text, where an identity that is a Kronecker factor or vec's argument, and every constant
    vector or matrix, prints its size."""
    return [_sized_fill(e)] if isinstance(e, Fill) else _text_sized_in_kronecker(e)


_TEXT_TEMPLATES: dict[int, Callable[[Expr], list[Piece]]] = {
    PLAIN: _text, SIZED_IN_KRONECKER: _text_sized_in_kronecker,
    SIZED_IN_KRONECKER_AND_CONSTANTS: _text_sized_in_kronecker_and_constants, SIZED: _text_sized}


# ---------------------------------------------------------------- LaTeX

_GREEK_LATEX = {
    "α": "alpha", "β": "beta", "γ": "gamma", "δ": "delta", "ε": "epsilon", "ζ": "zeta", "η": "eta",
    "θ": "theta", "ι": "iota", "κ": "kappa", "λ": "lambda", "μ": "mu", "ν": "nu", "ξ": "xi",
    "π": "pi", "ρ": "rho", "σ": "sigma", "τ": "tau", "υ": "upsilon", "φ": "phi", "χ": "chi",
    "ψ": "psi", "ω": "omega", "Σ": "Sigma", "Λ": "Lambda", "Ω": "Omega", "Δ": "Delta", "Γ": "Gamma",
    "Θ": "Theta", "Φ": "Phi", "Ψ": "Psi", "Π": "Pi", "Ξ": "Xi",
}
_GREEK_WORDS = set(_GREEK_LATEX.values()) - {"omicron"}

def latex_name(name: str) -> str:
    stem = name.rstrip("0123456789")
    digits = name[len(stem):]
    if "_" in stem:
        stem, _, sub = stem.partition("_")
        digits = sub + digits
    if stem in _GREEK_LATEX:
        stem = "\\" + _GREEK_LATEX[stem]
    elif stem in _GREEK_WORDS:
        stem = "\\" + stem
    elif len(stem) > 1:
        stem = rf"\mathit{{{stem}}}"
    return f"{stem}_{{{digits}}}" if digits else stem


def _latex_number(value: Fraction) -> str:
    if value.denominator != 1 and "/" in number_text(value):
        sign = "-" if value < 0 else ""
        return rf"{sign}\frac{{{abs(value.numerator)}}}{{{value.denominator}}}"
    return number_text(value)


def to_latex(e: Expr) -> str:
    """e in LaTeX. No recursion over the depth of e."""
    return _render(e, _latex)


def _latex_paren(e: Expr) -> list[Piece]:
    return [r"\left(", e, r"\right)"]


def _latex_operand(e: Expr) -> list[Piece]:
    """An operand of juxtaposition, ⊙ or ⊘: a compound node that binds loosely, or a negative constant, takes
    parentheses (LaTeX writes 1/2 as a fraction, which needs none)."""
    value = e.constant
    loose = value < 0 if value is not None else _binding(e) == LOOSE
    return _latex_paren(e) if loose else [e]


_LATEX_ATOMS = frozenset({Var, Constant, Size, Identity, Commutation})  # the base of ^ as they are


def _latex_base(e: Expr) -> list[Piece]:
    value = e.constant
    if type(e) in _LATEX_ATOMS or (value is not None and value >= 0 and e.is_scalar):
        return [e]
    template = FUNCTIONS[e.name].latex if isinstance(e, Func) else ""
    if "#" in template and not template.startswith("#"):  # norms, abs, sqrt have their own brackets
        return [e]  # a postfix template (inv: X^{-1}) is not: (X^{-1})^{2}, never X^{-1}^{2}
    return _latex_paren(e)


def _latex_of_fill(e: Fill) -> list[Piece]:
    # the coefficient stands apart from the bold 1, so that 2·1 never reads as "21"
    if e.value in (0, 1):
        body = rf"\mathbf{{{e.value}}}"
    elif e.value == -1:
        body = r"-\mathbf{1}"
    else:
        body = rf"{_latex_number(e.value)} \cdot \mathbf{{1}}"
    return [body + r"^\top" if e.shape[0] == 1 else body]


def _latex_of_product(e: MatMul) -> list[Piece]:
    factors, divisors = _split_divisors(e)
    prefix = ""
    if isinstance(factors[0], Num) and len(factors) > 1:
        coefficient = factors.pop(0).value
        prefix = "-" if coefficient == -1 else (_latex_number(coefficient) + " " if coefficient != 1 else "")
    body: list[Piece]
    if prefix == "-" and len(factors) == 1 and isinstance(factors[0], Hadamard | ElemDiv):
        body = [factors[0]]  # -a ⊙ b: the sign applies to the whole product
    else:
        body = _joined(r" \, ", map(_latex_operand, factors))
    if divisors:
        body = [r"\frac{", *body, "}{", *_joined(r" \, ", (_latex_operand(_divisor(d)) for d in divisors)), "}"]
    return [prefix, *body]


_is_inverse = ir.is_call("inv")


def _latex_of_transpose(e: Transpose) -> list[Piece]:
    if _is_inverse(e.arg):
        return [*_latex_base(e.arg.arg), r"^{-\top}"]
    return [*_latex_base(e.arg), r"^\top"]


def _latex_of_call(e: Func) -> list[Piece]:
    latex = FUNCTIONS[e.name].latex
    if e.axis:  # of each column or row: the axis as a second argument, as the input writes it
        empty = r"[\,], " if FUNCTIONS[e.name].axis_after_empty else ""
        return [rf"{latex}\left(", e.arg, rf", {empty}{e.axis}\right)"]
    if "#" not in latex:
        return [rf"{latex}\left(", e.arg, r"\right)"]
    before, after = latex.split("#")
    if not before:  # postfix, as inv: X^{-1}
        return [*_latex_base(e.arg), after]
    return [before, e.arg, after]


# The template of each kind of node's LaTeX, by node type.
_LATEX: dict[type, Callable[[Any], list[Piece]]] = {
    Var: lambda e: [latex_name(e.name)],
    Constant: lambda e: [CONSTANTS[e.name].latex],
    Size: lambda e: [latex_name(e.dim)],
    Num: lambda e: [_latex_number(e.value)],
    Fill: _latex_of_fill,
    Identity: lambda e: [rf"I_{{{_latex_dim(e.size)}}}"] if isinstance(e.size, ir.DimProduct) else ["I"],
    Differential: lambda e: [rf"\mathrm{{d}}{latex_name(e.var.name)}"],
    Add: lambda e: _join_terms(e, lambda term: [term], _latex_paren),
    MatMul: _latex_of_product,
    Hadamard: lambda e: _joined(r" \odot ", map(_latex_operand, e.factors)),
    ElemDiv: lambda e: [*_latex_operand(e.numerator), r" \oslash ", *_latex_operand(e.denominator)],
    Transpose: _latex_of_transpose,
    Power: lambda e: [*_latex_base(e.base), "^{", e.exponent, "}"],
    ElemPower: lambda e: [*_latex_base(e.base), r"^{\circ ", e.exponent, "}"],
    Func: _latex_of_call,
    Kron: lambda e: _joined(r" \otimes ", (_latex_paren(f) if _kron_operand_takes_parentheses(f) else [f]
                                            for f in e.factors)),
    Commutation: lambda e: [rf"K_{{{_latex_dim(e.rows)},{_latex_dim(e.cols)}}}"],
}


def _latex(e: Expr) -> list[Piece]:
    """The template of e's LaTeX."""
    template = _LATEX.get(type(e))
    if template is None:
        raise TypeError(f"cannot render {type(e).__name__}")
    return template(e)


def _latex_dim(dim: ir.Dim) -> str:
    return " ".join(latex_name(part) if not part.isdigit() else part for part in dim_text(dim).split())


# ---------------------------------------------------------------- programs: named intermediates


def program_text(bindings: Sequence[tuple[str, Expr]], output: Expr | None = None, sized: int = PLAIN) -> str:
    """A program in the input language: one line `name = text` per binding, then the output's text, if any."""
    lines = [f"{name} = {to_text(value, sized)}" for name, value in bindings]
    if output is not None:
        lines.append(to_text(output, sized))
    return "\n".join(lines)


def program_latex(bindings: Sequence[tuple[str, Expr]], output: Expr | None = None, label: str = "") -> str:
    r"""A program in LaTeX: an `aligned` block with one row `name &= latex` per binding, then the output's row
    (`label &= latex`, or `& latex` without a label, aligned with the right-hand sides), if any; rows are
    separated by `\\`."""
    rows = [rf"{latex_name(name)} &= {to_latex(value)}" for name, value in bindings]
    if output is not None:
        rows.append(f"{label} &= {to_latex(output)}" if label else f"& {to_latex(output)}")
    return "\\begin{aligned}\n" + " \\\\\n".join(rows) + "\n\\end{aligned}"


_PLACEHOLDER = "\x00shared"  # the name of a stand-in variable, never a user's


def _own_tokens(node: Expr) -> int:
    """About how many tokens a node adds to the text beside its children's: a leaf or an operator one, a call
    three (name and parentheses), a juxtaposed product none between its factors."""
    if isinstance(node, Func):
        return 3
    if isinstance(node, MatMul):
        return 0
    if isinstance(node, Add | Hadamard):
        return len(node.children) - 1
    return 1


def shared_subexpressions(e: Expr, min_size: int = 5) -> list[Expr]:
    """The distinct subexpressions of e worth naming: each would be printed more than once inline, is at
    least `min_size` tokens long (`softmax(W x)` is five, `X^T X` three), and can be replaced by a variable
    of its shape without changing how
    its parents print. Children come first, so that a binding only uses earlier ones.

    Occurrences are counted in the tree e prints as, without expanding it (a DAG of depth L may stand for
    2^L occurrences): down a topological order, each occurrence of a parent adds one occurrence of each
    child, in Python ints. A node that is named is printed once, in its binding: below it, it counts once.

    To name them, go down the list mapping each node, as rebuilt over the names given before it
    (`ir.substitute(node, names)`, which is also its binding's value), to its name: substitute matches
    nodes as it rebuilds them, so a later node is found by that value, not by itself.
    """
    return shared_across([e], min_size)


def shared_across(roots: Sequence[Expr], min_size: int = 5, named_already: frozenset[Expr] = frozenset()) -> list[Expr]:
    """shared_subexpressions of several expressions printed together (the lines of a listing), each root printed
    once: a subexpression printed more than once over all of them is worth naming. The nodes `named_already` (the
    values of earlier lines, referred to by their line's name) are printed once, and are not returned."""
    order: list[Expr] = []  # children first over all roots: each root's postorder, without the nodes seen before
    seen: set[int] = set()
    for root in roots:
        for node in ir.postorder(root):
            if id(node) not in seen:
                seen.add(id(node))
                order.append(node)
    tree_size: dict[Expr, int] = {}
    parents: dict[Expr, list[Expr]] = {}  # the distinct parents of each node
    for node in order:
        tree_size[node] = _own_tokens(node) + sum(tree_size[child] for child in node.children)
        for child in dict.fromkeys(node.children):
            parents.setdefault(child, []).append(node)
    occurrences: dict[Expr, int] = {}
    for root in roots:
        occurrences[root] = occurrences.get(root, 0) + 1
    named: set[Expr] = set()
    for node in reversed(order):  # parents first: every parent's count is complete
        count = occurrences[node]
        if node in named_already:
            count = 1
        elif count > 1 and tree_size[node] >= min_size and _nameable(node, parents.get(node, [])):
            named.add(node)
            count = 1
        for child in node.children:
            occurrences[child] = occurrences.get(child, 0) + count
    return [node for node in order if node in named]


def _nameable(node: Expr, parents: list[Expr]) -> bool:
    """Whether a variable of node's shape can stand for it: each parent keeps its structure and prints the
    variable where it printed node."""
    if not node.children or (isinstance(node, Transpose) and not node.arg.children):
        return False  # a leaf, x^T: as short as a name
    for parent in parents:
        if isinstance(parent, Add) and has_minus_sign(node):
            return False  # printed as ' - ' and its negation
        if isinstance(parent, MatMul) and is_reciprocal(node):
            return False  # printed as its base after ' / '
        if isinstance(parent, MatMul) and isinstance(node, MatMul) and not _keeps_structure(parent, node):
            return False
    return True


def _keeps_structure(parent: MatMul, node: MatMul) -> bool:
    """Whether the product `parent` keeps its factors in place when a variable stands for its scalar
    sub-product `node` (a^T x). Elsewhere the smart constructors treat a variable as they treat the node it
    replaces, but a sub-product has places of its own in a product: after the plain scalars, and unfolded
    into the chain when it is the only one left ((a^T x) (y^T z) with a^T x named is t y^T z)."""
    placeholder = Var(_PLACEHOLDER, node.shape)
    children = tuple(placeholder if child is node else child for child in parent.children)
    rebuilt = parent.rebuild(children)
    return type(rebuilt) is MatMul and rebuilt.children == children
