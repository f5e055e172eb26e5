"""Record what matcalc prints today, for the replay test (tests/test_replay.py): run before a refactor.

    python tests/record_replay.py          # writes tests/replay/recorded.jsonl.gz

The inputs are gathered from the code and docs as they stand (README and docs examples, every rule's example,
the cookbook and derivative tables, the benchmark inputs, hostile inputs, seeded random expressions of
tests/generate.py), and each call is stored with its output, so the replay does not depend on where those
tables live afterwards.
"""

from __future__ import annotations

import gzip
import json
import re
import shlex
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(ROOT / "benchmarks"))

from replay import RECORD, key, run  # noqa: E402

import matcalc  # noqa: E402

RANDOM_SEEDS = (1, 2, 3)
RANDOM_PER_SEED = 400
ALL_VIEWS = ("text", "inline", "latex", "json", "steps", "shape", "parse_back", "code:numpy")
RICH_VIEWS = ("steps_latex", "code:jax", "code:torch", "index", "differential", "code:numpy:jvp", "code:numpy:vjp")


def _variables(expr: str, where: str | None) -> list[str]:
    try:
        parsed = matcalc.parse(expr, where=where)
    except matcalc.MatcalcError:
        return []
    from matcalc.core import ir

    return sorted(ir.variables(parsed))


def _console_commands(text: str) -> list[list[str]]:
    commands = []
    for line in text.splitlines():
        line = line.strip()
        if not line.startswith("$ matcalc"):
            continue
        try:
            lexer = shlex.shlex(line[2:], posix=True, punctuation_chars=False)
            lexer.whitespace_split = True
            lexer.commenters = "#"
            argv = list(lexer)
        except ValueError:
            continue
        if "|" in argv or "-f" in argv or "serve" in argv:
            continue
        commands.append(argv[1:])
    return commands


_PY_CALL = re.compile(r"matcalc\.(diff|hessian)\(\s*\"([^\"]+)\"\s*,\s*\"([^\"]+)\"(?:\s*,\s*where=\"([^\"]+)\")?")


def doc_inputs() -> tuple[list[list[str]], list[tuple[str, str, str | None, str]]]:
    commands, calls = [], []
    for path in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        text = path.read_text(encoding="utf-8")
        commands += _console_commands(text)
        calls += [(m[2], m[3], m[4], m[1]) for m in _PY_CALL.finditer(text)]
    return commands, calls


def rule_inputs() -> list[tuple[str, str | None]]:
    """Each rule's example (expression, declarations), from the tables as they stand today."""
    from matcalc.backends import interpret as evaluate
    from matcalc.calculus import differential as differentiate
    from matcalc.rules import simplify

    found: list[tuple[str, str | None]] = []
    for rule in [*simplify.SIMPLIFY_RULES, *getattr(evaluate, "STABLE_FORMS", ())]:
        found.append((rule.example, rule.where or None))
    for rule in differentiate.DIFFERENTIAL_RULES:
        found.append((rule.example[0], None))
    return found


def table_inputs() -> list[tuple[str, str, str | None]]:
    import test_cookbook_table
    import test_derivatives
    import test_tensors

    rows = [(e, v, w) for e, v, w, _ in test_cookbook_table.COOKBOOK]
    rows += [(e, v, None) for e, v, _ in test_derivatives.SEEDS]
    rows += [(e, v, "a, b: scalar" if e == "a^b" else ("S: symmetric" if "S" in e else None))
             for e, v, _ in test_derivatives.ML]
    rows += [(e, v, None) for e, v, _ in test_tensors.CASES]
    import tensors as tensor_benchmark

    rows += [(e, v, None) for e, v, _ in tensor_benchmark.CASES]
    return rows


def program_inputs() -> list[tuple[str, str]]:
    import networks
    import test_programs

    programs = [test_programs.SOFTMAX_CROSS_ENTROPY, test_programs.DILLON_STACK,
                "h1 = tanh(W1 x)\nh2 = tanh(W2 h1)\nL = sum(h2)"]
    programs += [networks.mlp_program(k) for k in (1, 3, 8)] + [networks.residual_program(k) for k in (2, 5)]
    programs += [networks.nested_mlp(k) for k in (2, 6)]
    return [(p, v) for p in programs for v in _program_variables(p)]


def _program_variables(program: str) -> list[str]:
    defined = set(re.findall(r"^\s*([A-Za-z_]\w*)\s*=", program, re.M))
    names = set(re.findall(r"[A-Za-z_]\w*", re.sub(r"#[^\n]*", "", program)))
    functions = {"tanh", "sum", "log", "softmax", "norm2", "sigmoid", "relu", "exp"}
    return sorted(names - defined - functions)


def hostile_inputs() -> list[tuple[str, str, str | None]]:
    import test_fuzz

    rows = [(text, wrt, None) for _, text in test_fuzz.HOSTILE for wrt in ("x", "X")]
    rows += [(text, "X", None) for text in test_fuzz.TENSOR_SEEDS]
    for text, where in [("x^T A x", "A: matrix(m, n)"), ("A B", None), ("x +", None), ("tr(x)", None),
                        ("sum(x", None), ("inv(x)", None), ("x^T A x", "A: vector"), ("W x + b", "b: scalar"),
                        ("σ(W x + b)", None), ("tr(A pinv(X))", None), ("det(x)", None)]:
        rows.append((text, "x", where))
        rows.append((text, "X", where))
    return rows


def random_inputs() -> list[tuple[str, str, str | None]]:
    from generate import random_cases

    rows = []
    for seed in RANDOM_SEEDS:
        for case in random_cases(seed, RANDOM_PER_SEED):
            rows += [(case.text, v, case.where) for v in case.variables]
    return rows


def calls() -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    commands, doc_calls = doc_inputs()
    out += [{"op": "cli", "argv": argv} for argv in commands]
    out += [{"op": "cli", "argv": ["rules"]}, {"op": "cli", "argv": []}, {"op": "cli", "argv": ["diff", "x +", "x"]},
            {"op": "cli", "argv": ["diff", "x^T A x", "x", "--json"]},
            {"op": "cli", "argv": ["diff", "x^T A x", "x", "--steps", "--latex"]},
            {"op": "cli", "argv": ["diff", "A B", "A"]},
            {"op": "cli", "argv": ["diff", "tr(X)", "X", "--form", "index"]}]

    def diffs(expr: str, wrt: str, where: str | None, views: tuple[str, ...]) -> None:
        for view in views:
            out.append({"op": "diff", "expr": expr, "wrt": wrt, "where": where, "view": view})

    for expr, wrt, where, op in doc_calls:
        if op == "diff":
            diffs(expr, wrt, where, ALL_VIEWS + RICH_VIEWS)
        else:
            out.append({"op": "hessian", "expr": expr, "wrt": wrt, "where": where, "view": "text"})
    for expr, wrt, where in table_inputs():
        diffs(expr, wrt, where, ALL_VIEWS + RICH_VIEWS + ("vec",))
        out.append({"op": "diff", "expr": expr, "wrt": wrt, "where": where, "layout": "denominator", "view": "text"})
        out.append({"op": "hessian", "expr": expr, "wrt": wrt, "where": where, "view": "text"})
        out.append({"op": "hessian", "expr": expr, "wrt": wrt, "where": where, "view": "latex"})
        for other in _variables(expr, where):
            out.append({"op": "diff", "expr": expr, "wrt": wrt, "where": where, "view": f"diff:{other}"})
    for expr, where in rule_inputs():
        out.append({"op": "parse", "expr": expr, "where": where})
        for wrt in _variables(expr, where):
            diffs(expr, wrt, where, ALL_VIEWS)
            out.append({"op": "hessian", "expr": expr, "wrt": wrt, "where": where, "view": "text"})
    for program, wrt in program_inputs():
        diffs(program, wrt, None, ("text", "inline", "latex", "json", "steps", "code:numpy"))
    for program in {p for p, _ in program_inputs()}:
        names = _program_variables(program)
        out.append({"op": "grad", "expr": program, "wrt": names})
        out.append({"op": "codegen", "expr": program, "wrt": names, "backend": "numpy"})
        out.append({"op": "codegen", "expr": program, "wrt": names, "backend": "jax"})
    for expr, wrt, where in hostile_inputs():
        diffs(expr, wrt, where, ("text",))
    for i, (expr, wrt, where) in enumerate(random_inputs()):
        diffs(expr, wrt, where, ALL_VIEWS + (RICH_VIEWS if i % 10 == 0 else ()))
        out.append({"op": "hessian", "expr": expr, "wrt": wrt, "where": where, "view": "text"})
        if i % 25 == 0:
            d = run({"op": "diff", "expr": expr, "wrt": wrt, "where": where, "view": "inline"})
            if not d.startswith(("error:", "internal:")):
                out.append({"op": "check", "expr": expr, "wrt": wrt, "where": where, "candidate": d, "timeout": 120.0})
    unique: dict[str, dict[str, Any]] = {}
    for call in out:
        unique.setdefault(key(call), call)
    return list(unique.values())


def main() -> None:
    started = time.perf_counter()
    todo = calls()
    RECORD.parent.mkdir(exist_ok=True)
    with gzip.open(RECORD, "wt", encoding="utf-8") as stream:
        for i, call in enumerate(todo):
            stream.write(json.dumps({"call": call, "output": run(call)}, ensure_ascii=False, sort_keys=True) + "\n")
            if i % 1000 == 0:
                print(f"{i} of {len(todo)} calls, {time.perf_counter() - started:.0f} s", file=sys.stderr)
    print(f"recorded {len(todo)} calls in {time.perf_counter() - started:.0f} s to {RECORD}")


if __name__ == "__main__":
    main()
