"""What one API request computes, run inside a worker process: the request's fields (checked by `requests`)
in, (HTTP status, JSON payload) out. The replies carry the fields of the CLI's `--json`. Every failure becomes a
JSON error here: a MatcalcError is the user's (422), a RecursionError or MemoryError an input too large (413),
anything else a bug of matcalc's (500), never a traceback."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .. import api
from ..core.errors import MatcalcError, ParseError, ShapeError

Reply = tuple[int, dict[str, Any]]
Progress = Callable[[Any], None] | None  # called with each verify.Progress record of a proof (a live display)


def error_payload(error: BaseException, kind: str | None = None) -> dict[str, Any]:
    """A MatcalcError as JSON: its type, its whole message (as the CLI prints it, hints in the Python API's form:
    where="..."), and for a syntax error the parts the page shows apart: the summary line, the quoted input with
    its caret, the hint after it, and the 0-based position in the text."""
    message = str(error)
    lines = message.split("\n")
    payload: dict[str, Any] = {"type": kind or type(error).__name__, "message": message, "summary": lines[0]}
    quoted = [index for index, line in enumerate(lines) if index and line.startswith("  ")]
    if quoted:  # the input under a caret, as the CLI shows it; what follows it is the hint
        payload["caret"] = "\n".join(lines[quoted[0]:quoted[-1] + 1])
        payload["hint"] = "\n".join(lines[quoted[-1] + 1:]) or None
    if isinstance(error, ParseError) and error.position is not None:
        payload["position"] = error.position
    return {"error": payload}


def _one_or_many(wrt: str | list[str]) -> list[str]:
    """The variables: a list, or a name, or names with commas as the CLI takes them (W1,W2)."""
    return [name.strip() for name in wrt.split(",")] if isinstance(wrt, str) else list(wrt)


def _derivative_payload(expr: str, d: Any, steps: str, verify: bool, timeout: float,
                        progress: Progress = None) -> dict[str, Any]:
    from ..render.mathml import derivative_mathml

    payload = {"input": expr, **d.to_json(steps)}
    payload["mathml"] = derivative_mathml(d)  # the equation typeset, for the page
    if d.program:
        payload["graph"] = _graph(d.program, d.definitions, [(f"d{d.program[-1][0]}/d{d.variable.name}", d.body)])
    if verify:
        report = d.verify(timeout=timeout, progress=progress)
        payload["verified"] = bool(report)
        payload["verification"] = str(report)
        payload["undecided"] = bool(report.undecided)
    return payload


def _graph(program: Any, definitions: Any, results: Any) -> str:
    """The program's computation graph, forward and backward, as SVG (render/graph.py)."""
    from ..render.graph import computation_graph, graph_svg

    return graph_svg(computation_graph(program, definitions, results))


_KIND_WORDS = {"gradient": "a gradient", "jacobian": "a Jacobian", "hessian": "a Hessian",
               "derivative": "an entrywise derivative", "tensor": "a tensor (in vec form)"}


def diff(request: dict[str, Any], timeout: float, progress: Progress = None) -> Reply:
    """POST /api/diff (and /api/verify): the derivative, as `matcalc diff --json [--steps METHOD] [--verify]`."""
    expr, where, kind = request["expr"], request.get("where"), request.get("kind", "auto")
    layout, steps, inline = request.get("layout", "numerator"), request.get("steps", "differential"), \
        request.get("inline", False)
    verify = request.get("verify", False)
    names = _one_or_many(request["wrt"])
    if len(names) > 1:
        if kind == "hessian":
            blocks = api.hessian(expr, names, where, inline=inline)
            payload: dict[str, Any] = {"input": expr, "variables": names, "kind": "hessian", "text": str(blocks),
                                       "latex": blocks.latex()}
            if verify:
                verified = blocks.verify(timeout=timeout, progress=progress)
                payload["verified"] = bool(verified)
            return 200, payload
        gradients = api.grad(expr, names, where, inline=inline, layout=layout)
        from ..render.mathml import gradients_mathml

        first = next(iter(gradients.values()))
        definitions, results = gradients.lines()
        return 200, {"input": expr, "variables": names, "kind": "gradient", "text": str(gradients),
                     "mathml": gradients_mathml(definitions, list(gradients.values())),
                     **({"graph": _graph(first.program, definitions, results)} if first.program else {}),
                     "latex": gradients.latex(),
                     "steps": _steps_json(gradients, steps),
                     "gradients": {name: _derivative_payload(expr, d, steps, verify, timeout, progress)
                                   for name, d in gradients.items()}}
    if kind == "hessian":
        d = api.hessian(expr, names[0], where, inline=inline)
    else:
        d = api.diff(expr, names[0], where, layout, inline=inline)
        if kind in ("gradient", "jacobian") and d.kind != kind:
            raise ShapeError(f"the derivative w.r.t. {names[0]} is {_KIND_WORDS.get(d.kind, d.kind)}, not "
                             f"{_KIND_WORDS[kind]}; ask for kind \"auto\"")
    return 200, _derivative_payload(expr, d, steps, verify, timeout, progress)


def _steps_json(gradients: Any, method: str) -> list[dict[str, Any]]:
    """The shared derivation of several gradients, as the JSON steps of one derivative."""
    from ..render.derivative import step_json

    return [step_json(step) for step in gradients.method_steps(method)]


def check(request: dict[str, Any], timeout: float, progress: Progress = None) -> Reply:
    """POST /api/check: the verdict on the user's own derivative, as `matcalc check --json`."""
    result = api.check(request["expr"], request["wrt"], request["candidate"], request.get("where"),
                       request.get("layout", "numerator"), hessian_of=request.get("hessian_of", False),
                       timeout=min(timeout, request.get("timeout") or timeout), progress=progress)
    return 200, {"input": request["expr"], **result.to_json()}


def code(request: dict[str, Any], timeout: float, progress: Progress = None) -> Reply:
    """POST /api/code: a Python function computing the derivative (`matcalc diff --code BACKEND`), or with several
    variables the value and every gradient from one backward pass (`matcalc codegen`)."""
    expr, where, backend = request["expr"], request.get("where"), request.get("backend", "numpy")
    names = _one_or_many(request["wrt"])
    hessian = request.get("kind", "auto") == "hessian"
    if len(names) > 1:
        source = api.codegen(expr, names, where, backend=backend, hessian=hessian)
    elif hessian:
        source = api.hessian(expr, names[0], where).to_code(backend, product=request.get("product"))
    else:
        d = api.diff(expr, names[0], where, request.get("layout", "numerator"))
        source = d.to_code(backend, product=request.get("product"))
    return 200, {"input": expr, "variables": names, "backend": backend, "code": str(source)}


def verify(request: dict[str, Any], timeout: float, progress: Progress = None) -> Reply:
    """POST /api/verify: /api/diff's reply, proven."""
    return diff({**request, "verify": True}, timeout, progress)


ENDPOINTS = {"diff": diff, "verify": verify, "check": check, "code": code}


def run(endpoint: str, request: dict[str, Any], timeout: float, progress: Progress = None) -> Reply:
    """One request, whatever happens: a reply, never an exception. `progress` sees each step of its proofs."""
    request = {name: value for name, value in request.items() if name != "stream"}  # how the reply travels
    try:
        return ENDPOINTS[endpoint](request, timeout, progress)
    except MatcalcError as error:
        return 422, error_payload(error)
    except (RecursionError, MemoryError) as error:
        message = "the input is too large to handle (it needs too much memory or nesting)"
        return 413, {"error": {"type": "TooLarge", "message": message, "summary": message,
                               "detail": type(error).__name__}}
    except Exception as error:  # a bug of matcalc's, never the user's fault: said without a traceback
        message = f"internal error: {type(error).__name__}: {str(error)[:300]}; please report the request"
        return 500, {"error": {"type": "InternalError", "message": message, "summary": message}}
