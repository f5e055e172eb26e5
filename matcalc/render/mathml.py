"""IR -> presentation MathML, which browsers render natively: the page of `matcalc serve` shows a result typeset
with nothing shipped to render it. The same layout as the LaTeX of `text.py` (its precedence and parentheses, its
divisors after a fraction bar, its named shared parts), written with the same non-recursive renderer: each node's
template is a list of pieces, literal markup or a node standing for its whole MathML, and every node renders as
exactly one element (an <mrow> when it has several parts), so a node can be the base of <msup>."""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from fractions import Fraction
from html import escape
from typing import Any

from ..calculus.spec import Result
from ..core import ir
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
)
from .text import (
    LOOSE,
    Piece,
    _binding,
    _divisor,
    _join_terms,
    _kron_operand_takes_parentheses,
    _render,
    _split_divisors,
    dim_text,
    number_text,
)

_GREEK = {"alpha": "α", "beta": "β", "gamma": "γ", "delta": "δ", "epsilon": "ε", "zeta": "ζ", "eta": "η",
          "theta": "θ", "iota": "ι", "kappa": "κ", "lambda": "λ", "mu": "μ", "nu": "ν", "xi": "ξ", "pi": "π",
          "rho": "ρ", "sigma": "σ", "tau": "τ", "upsilon": "υ", "phi": "φ", "chi": "χ", "psi": "ψ", "omega": "ω",
          "Sigma": "Σ", "Lambda": "Λ", "Omega": "Ω", "Delta": "Δ", "Gamma": "Γ", "Theta": "Θ", "Phi": "Φ",
          "Psi": "Ψ", "Pi": "Π", "Xi": "Ξ"}
TRANSPOSE = "<mo>⊤</mo>"
TIMES = "<mo>&#x2062;</mo>"  # invisible times: juxtaposition
APPLY = "<mo>&#x2061;</mo>"  # function application


def name_mathml(name: str) -> str:
    """A name as LaTeX's latex_name writes it: W1 as W with subscript 1, theta as θ, a longer name upright."""
    stem = name.rstrip("0123456789")
    digits = name[len(stem):]
    if "_" in stem:
        stem, _, sub = stem.partition("_")
        digits = sub + digits
    stem = _GREEK.get(stem, stem)
    base = f"<mi>{escape(stem)}</mi>"
    return f"<msub>{base}<mi>{escape(digits)}</mi></msub>" if digits else base


def _number(value: Fraction) -> str:
    if value.denominator != 1 and "/" in number_text(value):
        fraction = f"<mfrac><mn>{abs(value.numerator)}</mn><mn>{value.denominator}</mn></mfrac>"
        return f"<mrow><mo>−</mo>{fraction}</mrow>" if value < 0 else fraction
    text = number_text(value)
    return f"<mrow><mo>−</mo><mn>{escape(text[1:])}</mn></mrow>" if text.startswith("-") else f"<mn>{escape(text)}</mn>"


def _row(pieces: list[Piece]) -> list[Piece]:
    return ["<mrow>", *pieces, "</mrow>"]


def _paren(e: Expr) -> list[Piece]:
    return ["<mrow><mo>(</mo>", e, "<mo>)</mo></mrow>"]


def _operand(e: Expr) -> list[Piece]:
    value = e.constant
    loose = value < 0 if value is not None else _binding(e) == LOOSE
    return _paren(e) if loose else [e]


_ATOMS = (Var, Constant, Size, Identity, Commutation)


def _base(e: Expr) -> list[Piece]:
    value = e.constant
    if isinstance(e, _ATOMS) or (value is not None and value >= 0 and e.is_scalar):
        return [e]
    if isinstance(e, Func) and e.name in _BRACKETED:
        return [e]
    return _paren(e)


def _joined(separator: str, parts: Sequence[list[Piece]]) -> list[Piece]:
    pieces: list[Piece] = []
    for index, part in enumerate(parts):
        if index:
            pieces.append(separator)
        pieces.extend(part)
    return pieces


def _fill(e: Fill) -> list[Piece]:
    one = '<mn mathvariant="bold">1</mn>'
    if e.value in (0, 1):
        body = f'<mn mathvariant="bold">{e.value}</mn>'
    elif e.value == -1:
        body = f"<mrow><mo>−</mo>{one}</mrow>"
    else:
        body = f"<mrow>{_number(e.value)}<mo>·</mo>{one}</mrow>"
    return [f"<msup>{body}{TRANSPOSE}</msup>" if e.shape[0] == 1 else body]


def _product(e: MatMul) -> list[Piece]:
    factors, divisors = _split_divisors(e)
    prefix: list[Piece] = []
    if isinstance(factors[0], Num) and len(factors) > 1:
        coefficient = factors.pop(0).value
        if coefficient == -1:
            prefix = ["<mo>−</mo>"]
        elif coefficient != 1:
            prefix = [_number(coefficient), TIMES]
    body = _joined(TIMES, [_operand(f) for f in factors])
    if divisors:
        below = _joined(TIMES, [_operand(_divisor(d)) for d in divisors])
        body = ["<mfrac>", *_row(body), *_row(below), "</mfrac>"]
    return _row([*prefix, *body])


_is_inverse = ir.is_call("inv")


def _transpose(e: Transpose) -> list[Piece]:
    if _is_inverse(e.arg):
        return ["<msup>", *_base(e.arg.arg), "<mrow><mo>−</mo><mo>⊤</mo></mrow></msup>"]
    return ["<msup>", *_base(e.arg), f"{TRANSPOSE}</msup>"]


def _function_name(name: str) -> str:
    """The name a function is written with, read off its LaTeX (\\operatorname{relu}, \\tanh, \\sigma)."""
    latex = FUNCTIONS[name].latex
    words = re.findall(r"\\operatorname\{(\w+)\}|\\(\w+)", latex)
    text = " ".join(a or b for a, b in words) or name
    return " ".join(_GREEK.get(word, word) for word in text.split())


# functions written with brackets of their own, not name(argument)
_BRACKETED: dict[str, Callable[[Expr], list[Piece]]] = {
    "sqrt": lambda e: ["<msqrt>", e.arg, "</msqrt>"],
    "abs": lambda e: ["<mrow><mo>|</mo>", e.arg, "<mo>|</mo></mrow>"],
    "norm1": lambda e: ["<msub><mrow><mo>‖</mo>", e.arg, "<mo>‖</mo></mrow><mn>1</mn></msub>"],
    "norm2": lambda e: ["<msub><mrow><mo>‖</mo>", e.arg, "<mo>‖</mo></mrow><mn>2</mn></msub>"],
    "inv": lambda e: ["<msup>", *_base(e.arg), "<mrow><mo>−</mo><mn>1</mn></mrow></msup>"],
}


def _call(e: Func) -> list[Piece]:
    special = _BRACKETED.get(e.name)
    if special is not None and not e.axis:
        return special(e)
    name = f"<mi>{escape(_function_name(e.name))}</mi>"
    axis = [f"<mo>,</mo><mn>{e.axis}</mn>"] if e.axis else []
    return _row([name, APPLY, "<mo>(</mo>", e.arg, *axis, "<mo>)</mo>"])


def _dim(dim: ir.Dim) -> str:
    parts = [f"<mn>{p}</mn>" if p.isdigit() else name_mathml(p) for p in dim_text(dim).split()]
    return parts[0] if len(parts) == 1 else "<mrow>" + TIMES.join(parts) + "</mrow>"


def _add(e: Add) -> list[Piece]:
    pieces = _join_terms(e, lambda term: [term], _paren)
    return _row(["<mo>+</mo>" if p == " + " else "<mo>−</mo>" if p == " - " else p for p in pieces])


_MATHML: dict[type, Callable[[Any], list[Piece]]] = {
    Var: lambda e: [name_mathml(e.name)],
    Constant: lambda e: [f"<mi>{escape(_GREEK.get(e.name, e.name))}</mi>"],
    Size: lambda e: [name_mathml(e.dim)],
    Num: lambda e: [_number(e.value)],
    Fill: _fill,
    Identity: lambda e: [f"<msub><mi>I</mi>{_dim(e.size)}</msub>"] if isinstance(e.size, ir.DimProduct) else
    ["<mi>I</mi>"],
    Differential: lambda e: [f'<mrow><mi mathvariant="normal">d</mi>{name_mathml(e.var.name)}</mrow>'],
    Add: _add,
    MatMul: _product,
    Hadamard: lambda e: _row(_joined("<mo>⊙</mo>", [_operand(f) for f in e.factors])),
    ElemDiv: lambda e: _row([*_operand(e.numerator), "<mo>⊘</mo>", *_operand(e.denominator)]),
    Transpose: _transpose,
    Power: lambda e: ["<msup>", *_base(e.base), e.exponent, "</msup>"],
    ElemPower: lambda e: ["<msup>", *_base(e.base), "<mrow><mo>∘</mo>", e.exponent, "</mrow></msup>"],
    Func: _call,
    Kron: lambda e: _row(_joined("<mo>⊗</mo>", [_paren(f) if _kron_operand_takes_parentheses(f) else [f]
                                                for f in e.factors])),
    Commutation: lambda e: [f"<msub><mi>K</mi><mrow>{_dim(e.rows)}<mo>,</mo>{_dim(e.cols)}</mrow></msub>"],
}


def _template(e: Expr) -> list[Piece]:
    template = _MATHML.get(type(e))
    if template is None:
        raise TypeError(f"cannot render {type(e).__name__}")
    return template(e)


def to_mathml(e: Expr) -> str:
    """e as one MathML element (no <math> around it). No recursion over the depth of e."""
    return _render(e, _template)


def _left(d: Result) -> str:
    """∂f/∂x, the vec form's ∂vec F/∂vec(X)^T or the Hessian's ∂²f/∂x∂x^T, as the LaTeX equation writes it."""
    f = name_mathml(d.program[-1][0]) if d.program else f"<mrow><mo>(</mo>{to_mathml(d.function)}<mo>)</mo></mrow>"
    x = to_mathml(d.variable)
    x_t = f"<msup>{x}{TRANSPOSE}</msup>"
    if d.form == "vec":
        of = f if d.kind != "hessian" else f"<mrow><msub><mo>∇</mo>{x}</msub>{f}</mrow>"
        top = f"<mrow><mo>∂</mo><mi>vec</mi>{APPLY}{of}</mrow>"
        vec_x = f"<msup><mrow><mo>(</mo>{x}<mo>)</mo></mrow>{TRANSPOSE}</msup>"
        bottom = f"<mrow><mo>∂</mo><mi>vec</mi>{APPLY}{vec_x}</mrow>"
        return f"<mfrac>{top}{bottom}</mfrac>"
    if d.kind == "hessian":
        return (f"<mrow><mfrac><msup><mo>∂</mo><mn>2</mn></msup><mrow><mo>∂</mo>{x}<mo>∂</mo>{x_t}</mrow></mfrac>"
                f"{f}</mrow>")
    return f"<mrow><mfrac><mo>∂</mo><mrow><mo>∂</mo>{x}</mrow></mfrac>{f}</mrow>"


def derivative_mathml(d: Result, inline: bool = False) -> str:
    """A derivative's equation as a block <math>: `∂f/∂x = result`, after a row `name = value` per shared part it
    names (a table aligned on '='), unless `inline`."""
    rows = [] if inline else [(name_mathml(name), to_mathml(value)) for name, value in d.definitions]
    rows.append((_left(d), to_mathml(d.expr if inline or not d.definitions else d.body)))
    return _equations(rows)


def gradients_mathml(definitions: Sequence[tuple[str, Expr]], derivatives: Sequence[Result]) -> str:
    """The gradients of one backward pass as one block <math>: the definitions they share, once, then a row
    `∂L/∂W = ...` per variable."""
    rows = [(name_mathml(name), to_mathml(value)) for name, value in definitions]
    rows += [(_left(d), to_mathml(d.body)) for d in derivatives]
    return _equations(rows)


def _equations(rows: list[tuple[str, str]]) -> str:
    if len(rows) == 1:
        body = f"<mrow>{rows[0][0]}<mo>=</mo>{rows[0][1]}</mrow>"
    else:
        body = '<mtable columnalign="right left" displaystyle="true">' + "".join(
            f"<mtr><mtd>{left}</mtd><mtd><mrow><mo>=</mo>{right}</mrow></mtd></mtr>" for left, right in rows) \
            + "</mtable>"
    return f'<math xmlns="http://www.w3.org/1998/Math/MathML" display="block">{body}</math>'
