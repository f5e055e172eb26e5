"""The API's requests, checked before any work: each endpoint's fields (the Python API's parameter names), their
types and values, and the limits on their length. A request that fails is refused with a JSON error (400, or 413
for a text too long) without reaching a worker."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from ..calculus.spec import METHODS

LAYOUTS = ("numerator", "denominator", "jacobian")
KINDS = ("auto", "gradient", "jacobian", "hessian")
BACKENDS = ("numpy", "jax", "torch")
PRODUCTS = (None, "jvp", "vjp")
MAX_VARIABLES = 32


@dataclass(frozen=True)
class Field:
    """One field of a request: the JSON types it may have, whether it is required, the values it may take."""

    types: tuple[type, ...]
    required: bool = False
    choices: tuple[Any, ...] | None = None
    text: bool = False  # counted against the limit on an expression's length


_COMMON = {"expr": Field((str,), required=True, text=True), "wrt": Field((str, list), required=True),
           "where": Field((str, dict, type(None)), text=True)}
_DIFF = {**_COMMON, "kind": Field((str,), choices=KINDS), "layout": Field((str,), choices=LAYOUTS),
         "steps": Field((str,), choices=tuple(METHODS)), "inline": Field((bool,)), "verify": Field((bool,)),
         "stream": Field((bool,))}
SCHEMAS: dict[str, dict[str, Field]] = {
    "diff": _DIFF,
    "verify": _DIFF,
    "check": {**_COMMON, "candidate": Field((str,), required=True, text=True),
              "layout": Field((str,), choices=LAYOUTS), "hessian_of": Field((bool,)),
              "timeout": Field((int, float, type(None))), "stream": Field((bool,))},
    "code": {**_COMMON, "backend": Field((str,), choices=BACKENDS), "kind": Field((str,), choices=("auto", "hessian")),
             "layout": Field((str,), choices=LAYOUTS), "product": Field((str, type(None)), choices=PRODUCTS)},
}


class RequestError(Exception):
    """A request refused before any work: its HTTP status and its JSON error."""

    def __init__(self, status: int, kind: str, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.payload: dict[str, Any] = {"error": {"type": kind, "message": message, "summary": message,
                                                  **({"field": field} if field else {})}}


def _type_names(types: tuple[type, ...]) -> str:
    names = {str: "a string", list: "a list of strings", dict: "an object", bool: "true or false",
             int: "a number", float: "a number", type(None): "null"}
    return " or ".join(dict.fromkeys(names[t] for t in types))


def checked(endpoint: str, body: bytes, max_expr: int) -> dict[str, Any]:
    """The request of `endpoint` read from its body, every field checked; RequestError otherwise."""
    try:
        request = json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as error:
        raise RequestError(400, "BadJSON", f"the body is not JSON: {str(error)[:200]}") from None
    if not isinstance(request, dict):
        raise RequestError(400, "BadRequest", 'the body must be a JSON object, e.g. {"expr": "x^T A x", "wrt": "x"}')
    schema = SCHEMAS[endpoint]
    unknown = sorted(set(request) - set(schema))
    if unknown:
        raise RequestError(400, "UnknownField", f"unknown field {', '.join(map(repr, unknown))[:200]}; "
                           f"/api/{endpoint} takes {', '.join(schema)}", unknown[0][:100])
    for name, field in schema.items():
        if name not in request:
            if field.required:
                raise RequestError(400, "MissingField", f"the field {name!r} is required", name)
            continue
        value = request[name]
        # bool is an int in Python: a number field refuses it, and a bool field refuses 0 and 1
        if not isinstance(value, field.types) or (isinstance(value, bool) and bool not in field.types):
            raise RequestError(400, "WrongType", f"{name!r} must be {_type_names(field.types)}, "
                               f"not {type(value).__name__}", name)
        if field.choices is not None and value not in field.choices:
            shown = ", ".join("null" if c is None else repr(c) for c in field.choices)
            raise RequestError(400, "BadValue", f"{name!r} must be one of {shown}, not {str(value)[:60]!r}", name)
        if field.text:
            _check_length(name, value, max_expr)
    timeout = request.get("timeout")
    if timeout is not None and not (isinstance(timeout, int | float) and 0 < timeout < float("inf")):
        raise RequestError(400, "BadValue", f"'timeout' must be a positive number of seconds, not {timeout}", "timeout")
    wrt = request["wrt"]
    if isinstance(wrt, list):
        if not wrt or len(wrt) > MAX_VARIABLES or not all(isinstance(name, str) and len(name) <= 100 for name in wrt):
            raise RequestError(400, "WrongType", f"'wrt' must be a variable's name or a list of 1 to {MAX_VARIABLES} "
                               "names", "wrt")
    elif len(wrt) > 100 * MAX_VARIABLES:
        raise RequestError(413, "TooLong", "'wrt' is too long", "wrt")
    return request


def _check_length(name: str, value: Any, limit: int) -> None:
    if isinstance(value, dict):
        if not all(isinstance(k, str) and isinstance(v, str) for k, v in value.items()):
            raise RequestError(400, "WrongType", f"{name!r} as an object maps names to types: "
                               '{"A": "symmetric"}', name)
        length = sum(len(k) + len(v) for k, v in value.items())
    else:
        length = len(value) if isinstance(value, str) else 0
    if length > limit:
        raise RequestError(413, "TooLong", f"{name!r} is {length} characters long; this server takes at most {limit}",
                           name)
