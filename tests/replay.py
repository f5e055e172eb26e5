"""Replaying recorded behaviour: each call is data (a dict of public-API arguments), run by `run`.

The record (`tests/replay/recorded.jsonl.gz`, written by `tests/record_replay.py` before a refactor) holds each
call with what the code printed then. `run` uses only the public API (`matcalc.diff`, `hessian`, `grad`,
`check`, `codegen`, `parse`, the `Derivative` methods and the CLI's `main`), so the record survives any move of
the modules behind it. A call that raised prints the error's class and message, which are behaviour too.
"""

from __future__ import annotations

import contextlib
import functools
import gzip
import io
import json
import re
from pathlib import Path
from typing import Any

import matcalc
from matcalc import cli

RECORD = Path(__file__).resolve().parent / "replay" / "recorded.jsonl.gz"
ACCEPTED = Path(__file__).resolve().parent / "replay" / "accepted.json"


def _error_text(error: BaseException) -> str:
    kind = "error" if isinstance(error, matcalc.MatcalcError) else "internal"
    return f"{kind}: {type(error).__name__}: {error}"


@functools.lru_cache(maxsize=4096)
def _diff(expr: str, wrt: str, where: str | None, layout: str, inline: bool) -> Any:
    try:
        return matcalc.diff(expr, wrt, where=where, layout=layout, inline=inline)  # type: ignore[arg-type]
    except Exception as error:
        return error


@functools.lru_cache(maxsize=4096)
def _hessian(expr: str, wrt: str, where: str | None) -> Any:
    try:
        return matcalc.hessian(expr, wrt.split(",") if "," in wrt else wrt, where=where)
    except Exception as error:
        return error


def _json_without_steps(d: Any) -> str:
    data = d.to_json()
    data.pop("steps", None)  # steps are recorded apart ("steps"), so a renamed rule shows as one difference
    return json.dumps(data, ensure_ascii=False, sort_keys=True)


def _view(d: Any, view: str) -> str:
    """One printed view of a derivative (or block Hessian)."""
    if view == "text":
        return str(d)
    if view == "inline":
        return d.text(inline=True)
    if view == "latex":
        return d.latex()
    if view == "json":
        return _json_without_steps(d)
    if view == "steps":
        return d.derivation()
    if view == "steps_latex":
        return d.derivation(latex=True)
    if view in ("vec", "index", "differential"):
        return d.text(form=view)
    if view.startswith("code:"):
        backend, _, product = view[5:].partition(":")
        return d.to_code(backend, product=product or None)
    if view.startswith("diff:"):
        return str(d.diff(view[5:]))
    if view == "shape":
        return repr((d.kind, tuple(str(x) for x in d.shape), d.form))
    if view == "parse_back":
        parsed = matcalc.parse(str(d.text(inline=True)), where=d.where, shape=d.matrix_shape)
        return "same" if parsed == d.expr else f"differs: {parsed!r}"
    raise ValueError(f"unknown view {view!r}")


def _run(call: dict[str, Any]) -> str:
    op = call["op"]
    if op == "cli":
        out, err = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                code = cli.main(call["argv"])
            except SystemExit as exit_:
                code = exit_.code
        return f"exit {code}\n--- stdout\n{out.getvalue()}--- stderr\n{err.getvalue()}"
    if op == "parse":
        return str(matcalc.parse(call["expr"], where=call.get("where")))
    if op == "grad":
        g = matcalc.grad(call["expr"], call["wrt"], where=call.get("where"), inline=call.get("inline", False))
        return str(g)
    if op == "codegen":
        return matcalc.codegen(call["expr"], call["wrt"], where=call.get("where"), backend=call["backend"],
                               hessian=call.get("hessian", False))
    if op == "check":
        result = matcalc.check(call["expr"], call["wrt"], call["candidate"], where=call.get("where"),
                               layout=call.get("layout", "numerator"), timeout=call.get("timeout", 120.0))
        return f"{bool(result)}\n{result}"
    if op == "diff":
        d = _diff(call["expr"], call["wrt"], call.get("where"), call.get("layout", "numerator"),
                  call.get("inline", False))
    elif op == "hessian":
        d = _hessian(call["expr"], call["wrt"], call.get("where"))
    else:
        raise ValueError(f"unknown op {op!r}")
    if isinstance(d, BaseException):
        return _error_text(d)
    return _view(d, call["view"])


def run(call: dict[str, Any]) -> str:
    """What the code prints for `call` now: its output, or the class and message of what it raised."""
    try:
        return _run(call)
    except Exception as error:
        return _error_text(error)


def load_record() -> list[dict[str, Any]]:
    with gzip.open(RECORD, "rt", encoding="utf-8") as stream:
        return [json.loads(line) for line in stream]


def load_accepted() -> dict[str, dict[str, str]]:
    """Recorded differences that a change justified: call key -> {"output": the new output, "why": ...}."""
    if not ACCEPTED.exists():
        return {}
    return json.loads(ACCEPTED.read_text(encoding="utf-8"))


# How many entries a proof settled exactly depends on the machine's speed: each exact proof has a time budget
# (verify.PROOF_SECONDS), past which the entry counts as equal to 40 digits. That part of a verdict is not
# compared; the verdict itself (verified, how many entries, the sizes) is.
_PROOF_STRENGTH = re.compile(r"match SymPy (exactly|to 40 digits|\(\d+ exactly, \d+ to 40 digits\))")


def comparable(output: str) -> str:
    """An output as the replay compares it: without what depends on the machine's speed."""
    return _PROOF_STRENGTH.sub("match SymPy (exactly or to 40 digits)", output)


def key(call: dict[str, Any]) -> str:
    return json.dumps(call, ensure_ascii=False, sort_keys=True)
