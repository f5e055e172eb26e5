"""A derivative written for people: its LaTeX equation, its derivation, its JSON record."""

from __future__ import annotations

import re
from typing import Any

from ..calculus.spec import Partial, Result, Step
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


# symbols the notes write in words, set in math mode inside \text{...}
_MATH_IN_WORDS = {"×": r"}\times\text{", "∂": r"}\partial\text{", "δ": r"}\delta\text{", "Σ": r"}\Sigma\text{",
                  "⊗": r"}\otimes\text{", "·": r"}\cdot\text{"}


def _latex_words(words: str) -> str:
    """Plain words as LaTeX \\text{...}, escaped; a `^T` (in a title) is set as a math superscript."""
    escapes = {"^T": r"}^\top\text{", "^": r"\^{}", "\\": r"\textbackslash{}", "~": r"\textasciitilde{}",
               **_MATH_IN_WORDS}
    return r"\text{" + re.sub(r"\^T|[&%$#_{}~\\^×∂δΣ⊗·]", lambda m: escapes.get(m[0], "\\" + m[0]), words) + "}"


def _partial_text(p: Partial) -> str:
    of = f"vec({p.of})" if p.of_vec else p.of
    wrt = f"vec({p.wrt})^T" if p.wrt_vec else p.wrt
    d = "d" if p.total else "∂"
    return f"{d}{of}/{d}{wrt}"


def _partial_latex(p: Partial) -> str:
    of = rf"\operatorname{{vec}}\left({latex_name(p.of)}\right)" if p.of_vec else latex_name(p.of)
    wrt = rf"\operatorname{{vec}}\left({latex_name(p.wrt)}\right)^\top" if p.wrt_vec else latex_name(p.wrt)
    d = r"\mathrm{d}" if p.total else r"\partial"
    return rf"\frac{{{d} {of}}}{{{d} {wrt}}}"


def _side(parts: tuple[Partial | str, ...], latex: bool, name: bool) -> str:
    """A left-hand side: derivatives by their symbols, a name as a name (u1), words as words (gradient)."""
    out = []
    for part in parts:
        if isinstance(part, Partial):
            out.append(_partial_latex(part) if latex else _partial_text(part))
        elif latex:
            out.append(latex_name(part) if name else _latex_words(part))
        else:
            out.append(part)
    return " ".join(out)


def _via(step: Step, latex: bool) -> str:
    """The chain rule's sum of products of derivatives, by their symbols: ∂y/∂u2 ∂u2/∂w + ..."""
    return " + ".join(_side(product, latex, False) for product in step.via)


def method_step_text(step: Step) -> str:
    """A line of a method: `  lhs = (via =) expression   (note)`, or an index sum."""
    note = f"   ({step.note})" if step.note else ""
    if step.index is not None:
        from .index import entry_text, index_text

        entry = step.claim is not None and step.claim.how == "entry"
        return f"  {entry_text(step.index) if entry else index_text(step.index)}{note}"
    via = f"{_via(step, False)} = " if step.via else ""
    return f"  {_side(step.lhs, False, True)} = {via}{to_text(step.expr)}{note}"


def method_step_latex(step: Step) -> str:
    note = rf" \qquad {_latex_words('(' + step.note + ')')}" if step.note else ""
    if step.index is not None:
        from .index import entry_latex, index_latex

        sums = entry_latex(step.index) if step.claim and step.claim.how == "entry" else index_latex(step.index)
        left, right = sums.split(" = ", 1)
        return rf"{left} &= {right}{note}"
    via = f"{_via(step, True)} = " if step.via else ""
    return rf"{_side(step.lhs, True, step.title == 'intermediate')} &= {via}{to_latex(step.expr)}{note}"


def derivation(steps: tuple[Step, ...], latex: bool = False) -> str:
    """The steps, one per line: `title: expression   [rules]`, or a method's lines under their section headings;
    with `latex`, a LaTeX `aligned` block."""
    lines: list[str] = []
    section = ""
    for step in steps:
        if step.section and step.section != section:
            section = step.section
            lines.append(rf"& {_latex_words(section)}" if latex else f"{section}:")
        if step.section:
            lines.append(method_step_latex(step) if latex else method_step_text(step))
        elif latex:
            rules = rf" \qquad {_latex_words('[' + ', '.join(dict.fromkeys(step.rules)) + ']')}" if step.rules else ""
            lines.append(rf"{_latex_words(step.title + ':')} \quad & {to_latex(step.expr)}{rules}")
        else:
            lines.append(step_text(step))
    if not latex:
        return "\n".join(lines)
    return "\\begin{aligned}\n" + " \\\\\n".join(lines) + "\n\\end{aligned}"


def step_json(step: Step) -> dict[str, Any]:
    """A step as JSON: title, text and rules; a method's step also its section, its line as printed and its note."""
    out: dict[str, Any] = {"title": step.title, "text": to_text(step.expr), "rules": list(dict.fromkeys(step.rules))}
    if step.section:
        out.update(section=step.section, line=method_step_text(step).strip(), note=step.note)
    return out


def json_of(d: Result, text: str, where: dict[str, str], forms: dict[str, Any],
            steps: tuple[Step, ...] | None = None) -> dict[str, Any]:
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
        "steps": [step_json(s) for s in (d.steps if steps is None else steps)],
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
