"""The statement `matcalc rules` prints for a rule is checked against numbers, so that it cannot drift from the code.

Each clause `lhs -> rhs` of a rewrite rule's statement (simplification and stable forms) that reads as two
expressions of the language is parsed with the rule's declarations (plus the statements' convention: c, d, k, p, q
are scalars): both sides must have one shape and equal values at random points, and the rule itself, applied to
the left side, must give the right side's values. Each clause `d f -> rhs` of a differential rule is checked the
same way against a central finite difference of f along a random direction E put for dA (dX, du, ...).
"""

from __future__ import annotations

import re

import numpy as np
import pytest
from oracles import evaluate_expr, random_values, well_defined
from tally import TALLY

import matcalc
from matcalc.calculus.differential import DIFFERENTIAL_RULES, ELEMENTWISE_RULES
from matcalc.core import ir
from matcalc.core.errors import MatcalcError
from matcalc.rules.rule import Rule
from matcalc.rules.simplify import SIMPLIFY_RULES
from matcalc.rules.stable import STABLE_FORMS
from matcalc.rules.strategy import apply_once

CONVENTIONS = ("", "c, d, c1, c2, s: scalar", "a, c, d, c1, c2, s: scalar")  # tried in turn
QUALIFIER = re.compile(r"\s+(for\s.*|\((also|f scalar|F m x n|almost)[^)]*\))$")
MIN_CHECKED = {"rewrite": 40, "differential": 25}  # the clauses that read as expressions today (fewer is a regression)


def _clauses(rule: Rule) -> list[tuple[str, str]]:
    out = []
    for clause in rule.statement.split(";"):
        if clause.count("->") != 1:
            continue
        lhs, rhs = (side.strip() for side in clause.split("->"))
        out.append((lhs, QUALIFIER.sub("", rhs).strip()))
    return out


def _declaration(var: ir.Var) -> str:
    rows, cols = var.shape
    if var.shape == ir.SCALAR:
        return f"{var.name}: scalar"
    if var.symmetric:
        return f"{var.name}: symmetric({rows})"
    return f"{var.name}: vector({rows})" if cols == 1 else f"{var.name}: matrix({rows}, {cols})"


def _parse_both(lhs: str, rhs: str, where: str,
                directions: dict[str, str] | None = None) -> tuple[ir.Expr, ir.Expr] | None:
    """Both sides with one set of declarations: the right side's names take the shapes the left side gave them
    (a direction E_A the shape of A)."""
    for convention in CONVENTIONS:
        declarations = "; ".join(filter(None, [where, convention]))
        try:
            left = matcalc.parse(lhs, where=declarations or None)
            found = ir.variables(left)
            shared = [_declaration(var) for var in found.values()]
            shared += [_declaration(ir.Var(e, found[name].shape)) for name, e in (directions or {}).items()
                       if name in found]
            right = matcalc.parse(rhs, where="; ".join([declarations, *shared]).strip("; "))
        except (MatcalcError, ValueError):
            continue
        if left.shape == right.shape:
            return left, right
    return None


def _close(a: np.ndarray, b: np.ndarray) -> bool:
    return bool(np.allclose(a, b, rtol=1e-7, atol=1e-9 * max(1.0, float(np.max(np.abs(a))))))


def check_rewrite_statement(rule: Rule) -> int:
    checked = 0
    for lhs, rhs in _clauses(rule):
        parsed = _parse_both(lhs, rhs, rule.where)
        if parsed is None:
            continue
        left, right = parsed
        rewritten = apply_once(left, rule)
        for seed in range(2):
            values = random_values([left, right], seed=seed)
            if not well_defined(left, values):
                continue
            before = evaluate_expr(left, values)
            assert _close(evaluate_expr(right, values), before), f"{rule.name}: `{lhs} -> {rhs}` is not true"
            if rewritten is not None:
                assert _close(evaluate_expr(rewritten, values, (left,)), before), f"{rule}: {left} -> {rewritten}"
        checked += 1
    return checked


def check_differential_statement(rule: Rule) -> int:
    checked = 0
    for lhs, rhs in _clauses(rule):
        if not lhs.startswith("d"):
            continue
        function = lhs[1:].strip()
        differentials = sorted(set(re.findall(r"\bd([A-Za-z])\b", rhs)))
        if not differentials:
            continue
        directions = {name: f"E{name}" for name in differentials}
        along = re.sub(r"\bd([A-Za-z])\b", lambda m, named=directions: named[m.group(1)], rhs)
        parsed = _parse_both(function, along, "", directions)
        if parsed is None:
            continue
        f, linear = parsed
        names = ir.variables(f)
        if not all(name in names for name in directions):
            continue
        for seed in range(2):
            values = random_values([f, linear], seed=seed)
            step = 1e-6
            plus, minus = dict(values), dict(values)
            for name, direction in directions.items():
                plus[name] = values[name] + step * values[direction]
                minus[name] = values[name] - step * values[direction]
            if not (well_defined(f, plus) and well_defined(f, minus)):
                continue
            central = (evaluate_expr(f, plus) - evaluate_expr(f, minus)) / (2 * step)
            got = evaluate_expr(linear, values)
            assert np.allclose(got, central, rtol=1e-5, atol=1e-6), f"{rule.name}: `{lhs} -> {rhs}` is not true"
        checked += 1
    return checked


@pytest.mark.parametrize("rule", [*SIMPLIFY_RULES, *STABLE_FORMS], ids=lambda r: r.name)
def test_rewrite_rule_statement_is_true_and_is_what_the_rule_does(rule):
    TALLY["rule statements checked against numbers"] += check_rewrite_statement(rule)


@pytest.mark.parametrize("rule", [*DIFFERENTIAL_RULES, *ELEMENTWISE_RULES.values()], ids=lambda r: r.name)
def test_differential_rule_statement_matches_finite_differences(rule):
    TALLY["rule statements checked against numbers"] += check_differential_statement(rule)


def test_most_statements_are_checked():
    rewrite = sum(check_rewrite_statement(rule) for rule in [*SIMPLIFY_RULES, *STABLE_FORMS])
    differential = sum(check_differential_statement(rule)
                       for rule in [*DIFFERENTIAL_RULES, *ELEMENTWISE_RULES.values()])
    assert rewrite >= MIN_CHECKED["rewrite"], rewrite
    assert differential >= MIN_CHECKED["differential"], differential


def test_a_false_statement_is_caught():
    wrong = Rule("wrong", "(A B)^T -> A^T B^T", (ir.Transpose,), lambda e: None, "(A B)^T", "A, B: matrix(n, n)")
    with pytest.raises(AssertionError, match="is not true"):
        check_rewrite_statement(wrong)
    wrong_differential = Rule("wrong", "d inv(X) -> inv(X) dX inv(X)", ("inv",), lambda e, ds: None)
    with pytest.raises(AssertionError, match="is not true"):
        check_differential_statement(wrong_differential)
