"""A derivative written for people: its LaTeX equation, its derivation, its JSON record."""

from __future__ import annotations

import re
from typing import Any

from ..calculus.spec import Result, Step
from .text import latex_name, program_latex, program_text, to_latex, to_text


def function_latex(d: Result) -> str:
    if d.program:
        return latex_name(d.program[-1][0])
    return rf"\left({to_latex(d.function)}\right)"


def equation_latex(d: Result, inline: bool = False) -> str:
    """`∂f/∂x = result` (or the vec form's, or the Hessian's), the result named by its definitions unless inline."""
    f = function_latex(d)
    x = to_latex(d.variable)
    if d.form == "vec":
        of = f if d.kind != "hessian" else rf"\nabla_{{{x}}} {f}"
        left = rf"\frac{{\partial \operatorname{{vec}} {of}}}{{\partial \operatorname{{vec}}\left({x}\right)^\top}}"
    elif d.kind == "hessian":
        left = rf"\frac{{\partial^2}}{{\partial {x}\, \partial {x}^\top}} {f}"
    else:
        left = rf"\frac{{\partial}}{{\partial {x}}} {f}"
    if inline or not d.definitions:
        return f"{left} = {to_latex(d.expr)}"
    return program_latex(d.definitions, d.body, left)


def step_text(step: Step) -> str:
    rules = f"   [{', '.join(dict.fromkeys(step.rules))}]" if step.rules else ""
    return f"{step.title}: {to_text(step.expr)}{rules}"


def _latex_words(words: str) -> str:
    """Plain words as LaTeX \\text{...}, escaped; a `^T` (in a title) is set as a math superscript."""
    escapes = {"^T": r"}^\top\text{", "^": r"\^{}", "\\": r"\textbackslash{}", "~": r"\textasciitilde{}"}
    return r"\text{" + re.sub(r"\^T|[&%$#_{}~\\^]", lambda m: escapes.get(m[0], "\\" + m[0]), words) + "}"


def derivation(steps: tuple[Step, ...], latex: bool = False) -> str:
    """The steps, one per line: `title: expression   [rules]`; with `latex`, a LaTeX `aligned` block."""
    if not latex:
        return "\n".join(step_text(step) for step in steps)
    lines = []
    for step in steps:
        rules = rf" \qquad {_latex_words('[' + ', '.join(dict.fromkeys(step.rules)) + ']')}" if step.rules else ""
        lines.append(rf"{_latex_words(step.title + ':')} \quad & {to_latex(step.expr)}{rules}")
    return "\\begin{aligned}\n" + " \\\\\n".join(lines) + "\n\\end{aligned}"


def json_of(d: Result, text: str, where: dict[str, str], forms: dict[str, Any]) -> dict[str, Any]:
    """The JSON record of a derivative (`--json`): input, declarations, shape, each form, definitions, steps."""
    return {
        "function": program_text(d.program) if d.program else to_text(d.function),
        "variable": d.variable.name,
        "where": where,
        "kind": d.kind,
        "layout": d.layout,
        "shape": [str(x) for x in d.shape],
        "order": len(d.split_axes[0]) + len(d.split_axes[1]),
        "form": d.form,
        "text": text,
        "forms": forms,
        "definitions": [{"name": name, "text": to_text(e)} for name, e in d.definitions],
        "result": to_text(d.body),
        "latex": equation_latex(d),
        "steps": [{"title": s.title, "text": to_text(s.expr), "rules": list(dict.fromkeys(s.rules))}
                  for s in d.steps],
    }


def verdict_text(v: Any) -> str:
    """A check's verdict as a sentence, with the counterexample when the candidate is wrong."""
    derivative, candidate = str(v.derivative), to_text(v.candidate)
    program = ""
    if "\n" in derivative:  # a program: its lines after the verdict, not run into the sentence
        derivative, program = "the program below", f"\n{derivative}"
    if len(candidate) > 200:  # a long inlined program: the verdict need not repeat it
        candidate = "your candidate"
    if v.reason:
        return f"wrong: {v.reason}; the derivative is {derivative}{program}"
    if v.report:
        return f"correct: {candidate} equals {derivative} ({v.report}){program}"
    if v.undecided:
        return f"{v.report}: {candidate} against {derivative}{program}"
    return (f"wrong: {candidate} is not the derivative; the derivative is {derivative}{program}\n"
            f"counterexample:\n{v.report}")


def verdict_markdown(v: Any) -> str:
    """Jupyter: the verdict in bold, expressions as code, the counterexample as the report renders it."""
    candidate, derivative = to_text(v.candidate), str(v.derivative)
    if v:
        return f"**correct**: `{candidate}` equals `{derivative}` ({v.report})"
    if v.reason:
        return f"**wrong**: {v.reason}; the derivative is `{derivative}`"
    if v.undecided:
        return f"{v.report._repr_markdown_()}: `{candidate}` against `{derivative}`"
    return (f"**wrong**: `{candidate}` is not the derivative; the derivative is `{derivative}`\n\n"
            f"counterexample:\n\n{v.report._repr_markdown_()}")
