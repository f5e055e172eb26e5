"""The index form ∂F_ij / ∂X_kl (calculus/index_form.py) written as text and LaTeX."""

from __future__ import annotations

import re

from ..calculus.index_form import Delta, Index, IndexForm, Term
from ..core import ir
from ..core.ir import Expr, Func, Num, Var
from .text import latex_name, number_text, to_latex, to_text

_NAME = re.compile(r"[A-Za-z_]\w*\Z")


def _is_call(text: str) -> bool:
    """name(...), the parenthesis opened after the name closing at the very end: inv(X), not tr(A) + tr(B)."""
    match = re.match(r"[A-Za-z_]\w*\(", text)
    if not match or not text.endswith(")"):
        return False
    depth = 0
    for position in range(match.end() - 1, len(text)):
        depth += {"(": 1, ")": -1}.get(text[position], 0)
        if depth == 0:
            return position == len(text) - 1
    return False


def _label_text(e: Expr | str) -> str:
    """A matrix's name before its indices: bare for a name or a call, else in parentheses."""
    text = e if isinstance(e, str) else to_text(e)
    return text if _NAME.match(text) or _is_call(text) else f"({text})"


def _label_latex(e: Expr | str) -> str:
    """A matrix's name before its indices in LaTeX: bare for a single symbol, else in parentheses."""
    if isinstance(e, str):
        if _NAME.match(e):
            e = Var(e, ir.SCALAR)
        else:
            return rf"\left({e}\right)"
    if isinstance(e, Var):
        symbol = latex_name(e.name)
        return f"{{{symbol}}}" if "_" in symbol else symbol  # x_{1} takes its indices as {x_{1}}_{ij}
    return rf"\left({to_latex(e)}\right)"


_BARE_SCALARS = (Var, ir.Constant, Func, ir.Size, ir.Power)  # written without parentheses before indices


def _scalar_text(e: Expr) -> str:
    """A constant 1 x 1 factor as itself (det(X)), in parentheses when it is a sum or a product (x^T y)."""
    return to_text(e) if isinstance(e, _BARE_SCALARS) else f"({to_text(e)})"


def _scalar_latex(e: Expr) -> str:
    return to_latex(e) if isinstance(e, _BARE_SCALARS) else rf"\left({to_latex(e)}\right)"


def _subscript(indices: tuple[Index | None, ...]) -> str:
    names = [str(i) for i in indices if i is not None]
    return ("," if any(len(n) > 1 for n in names) else "").join(names)


def _left(form: IndexForm, latex: bool) -> tuple[str, str]:
    out, var = _subscript(form.output_indices), _subscript(form.variable_indices)
    if latex:
        name = _label_latex(form.variable)
        return (_label_latex(form.output) + (f"_{{{out}}}" if out else ""),
                name + (f"_{{{var}}}" if var else ""))
    return _label_text(form.output) + (f"_{out}" if out else ""), form.variable.name + (f"_{var}" if var else "")



def index_text(form: IndexForm) -> str:
    """∂F_ij / ∂X_kl = ... in the input language's letters."""
    output, variable = _left(form, latex=False)
    return f"∂{output} / ∂{variable} = {_right(form, latex=False)}"


def entry_text(form: IndexForm) -> str:
    """F_ij = Σ ... : the entry of a function as a sum (index_form.entry_form)."""
    output, _ = _left(form, latex=False)
    return f"{output} = {_right(form, latex=False)}"


def entry_latex(form: IndexForm) -> str:
    output, _ = _left(form, latex=True)
    return f"{output} = {_right(form, latex=True)}"


def index_latex(form: IndexForm) -> str:
    output, variable = _left(form, latex=True)
    return rf"\frac{{\partial {output}}}{{\partial {variable}}} = {_right(form, latex=True)}"


def _right(form: IndexForm, latex: bool) -> str:
    if not form.terms:
        return "0"
    out = ""
    for n, term in enumerate(form.terms):
        body = _term_latex(term) if latex else _term_text(term)
        if n == 0:
            out = f"-{body}" if term.coefficient < 0 else body
        else:
            out += f" - {body}" if term.coefficient < 0 else f" + {body}"
    return out


def _term_text(term: Term) -> str:
    """The term without its sign."""
    pieces: list[str] = []
    magnitude = abs(term.coefficient)
    if magnitude != 1:
        pieces.append(number_text(magnitude))
    if term.summed:
        pieces.append("Σ_" + _subscript(tuple(s for s, _ in term.summed)))
    pieces.extend(_scalar_text(s) for s in term.scalars)
    for f in term.factors:
        if isinstance(f, Delta):
            pieces.append(f"δ_{_subscript((f.a, f.b))}")
        else:
            pieces.append(f"{_label_text(f.expr)}_{_subscript((f.row, f.col))}")
    return " ".join(pieces) or "1"


def _term_latex(term: Term) -> str:
    pieces: list[str] = []
    magnitude = abs(term.coefficient)
    if magnitude != 1:
        pieces.append(to_latex(Num(magnitude)))
    if term.summed:
        pieces.append(rf"\sum_{{{_subscript(tuple(s for s, _ in term.summed))}}}")
    pieces.extend(_scalar_latex(s) for s in term.scalars)
    for f in term.factors:
        if isinstance(f, Delta):
            pieces.append(rf"\delta_{{{_subscript((f.a, f.b))}}}")
        else:
            pieces.append(f"{_label_latex(f.expr)}_{{{_subscript((f.row, f.col))}}}")
    return " ".join(pieces) or "1"
