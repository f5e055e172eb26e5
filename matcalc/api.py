"""The public API: parse, diff, hessian, check. The pipeline, stage by stage:

    parse (parse.py) -> shapes (shapes.py) -> differentiate (differentiate.py)
    -> simplify (simplify.py) -> print / evaluate / verify (printing.py, evaluate.py, verify.py)
"""

from __future__ import annotations

import functools
import gc
import re
from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction
from typing import Any, Literal

from . import ir
from .differentiate import derivative_from_differential, differential
from .errors import ParseError, ShapeError, UnsupportedError
from .ir import Expr, Var
from .parsing import Declarations, parse_declarations
from .printing import to_latex, to_text
from .shapes import parse_typed
from .simplify import simplify

Layout = Literal["numerator", "denominator"]
Kind = Literal["derivative", "gradient", "jacobian", "hessian"]
_NAME = re.compile(r"[A-Za-z_\u0370-\u03ff][A-Za-z0-9_\u0370-\u03ff]*\Z")


@dataclass(frozen=True)
class Step:
    """One step of a derivation: what was done, the rules used, and the expression obtained."""

    title: str
    expr: Expr
    rules: tuple[str, ...] = ()

    def __str__(self) -> str:
        rules = f"   [{', '.join(dict.fromkeys(self.rules))}]" if self.rules else ""
        return f"{self.title}: {to_text(self.expr)}{rules}"


@dataclass(frozen=True)
class Derivative:
    """A derivative in matrix notation: print it, render it, evaluate it, prove it."""

    function: Expr
    variable: Var
    expr: Expr
    kind: Kind
    layout: Layout
    where: Declarations
    steps: tuple[Step, ...]

    @property
    def shape(self) -> ir.Shape:
        return self.expr.shape

    def __str__(self) -> str:
        return to_text(self.expr)

    def latex(self) -> str:
        f = to_latex(self.function)
        x = to_latex(self.variable)
        if self.kind == "hessian":
            left = rf"\frac{{\partial^2}}{{\partial {x}\, \partial {x}^\top}} \left({f}\right)"
        else:
            left = rf"\frac{{\partial}}{{\partial {x}}} \left({f}\right)"
        return f"{left} = {to_latex(self.expr)}"

    def _repr_latex_(self) -> str:
        return f"$${self.latex()}$$"

    def derivation(self) -> str:
        return "\n".join(str(step) for step in self.steps)

    def evaluate(self, values: dict[str, Any]) -> Any:
        """NumPy value at `values` (name -> array; a scalar as a float): output axes, then the variable's."""
        from .evaluate import evaluate_numpy, squeeze

        names = {**ir.variables(self.function), **ir.variables(self.expr)}
        names.setdefault(self.variable.name, self.variable)
        (value,) = evaluate_numpy([self.expr], values, names)
        return squeeze(value, self.expr.shape)

    def verify(self, seed: int = 0) -> Any:
        """Elementwise proof with SymPy; the report is truthy when every entry matches."""
        from .verify import verify_derivative

        return verify_derivative(self.function, self.variable, self.expr, self.kind, self.layout, seed)

    def to_json(self) -> dict[str, Any]:
        return {
            "function": to_text(self.function),
            "variable": self.variable.name,
            "where": {name: str(decl).split(": ", 1)[1] for name, decl in self.where.items()},
            "kind": self.kind,
            "layout": self.layout,
            "shape": [str(d) for d in self.shape],
            "text": str(self),
            "latex": self.latex(),
            "steps": [{"title": s.title, "text": to_text(s.expr), "rules": list(dict.fromkeys(s.rules))}
                      for s in self.steps],
        }


def _without_cycle_collection(entry: Callable) -> Callable:
    """Run an entry point with the cycle collector paused.

    The IR is immutable and acyclic, so reference counting frees it; the collector would only rescan
    the growing set of live nodes, which makes a 100 kB input quadratic instead of linear.
    """

    @functools.wraps(entry)
    def run(*args: Any, **kwargs: Any) -> Any:
        if not gc.isenabled():
            return entry(*args, **kwargs)
        gc.disable()
        try:
            return entry(*args, **kwargs)
        finally:
            gc.enable()

    return run


@_without_cycle_collection
def parse(text: str, where: str | dict | None = None, shape: ir.Shape | None = None) -> Expr:
    """The typed IR of an expression. `shape` pins the shape of the whole expression."""
    return parse_typed(text, parse_declarations(where), expected_shape=shape).expr


def _variable(name: str, symbols: Declarations, parsed_expr: Expr) -> Var:
    if not isinstance(name, str) or not _NAME.match(name):
        raise ParseError(f"not a variable name: {name!r}")
    found = ir.variables(parsed_expr).get(name)
    if found is not None:
        return found
    declaration = symbols[name]  # typed by parse_typed(extra_symbols=...)
    dims = declaration.dims
    if declaration.kind == "scalar":
        shape: ir.Shape = ir.SCALAR
    elif declaration.kind == "vector":
        shape = (dims[0], 1)
    else:
        shape = (dims[0], dims[-1])
    return Var(name, shape, declaration.kind == "symmetric")


def _kind(function: Expr, variable: Var) -> Kind:
    out, var = function.shape, variable.shape
    if var == ir.SCALAR:
        return "derivative"
    if out == ir.SCALAR:
        return "gradient"
    if ir.is_vector_shape(out) and ir.is_column(var):  # a row vector has the Jacobian of its transpose
        return "jacobian"
    what = "matrix" if not ir.is_vector_shape(out) else ("row vector" if out[0] == 1 else "vector")
    wrt = "matrix" if not ir.is_vector_shape(var) else "vector"
    order = "4th" if what == "matrix" and wrt == "matrix" else "3rd"
    raise UnsupportedError(f"the derivative of a {what} w.r.t. a {wrt} is a {order}-order tensor: "
                           f"not supported yet (scalar, vector and matrix results are)")


def _prepare(expr: str, wrt: str, where: str | dict | None) -> tuple[Expr, Var, Declarations]:
    if not isinstance(wrt, str) or not _NAME.match(wrt):
        raise ParseError(f"not a variable name: {wrt!r}")
    if wrt in ("I", "eye"):
        raise ParseError(f"'{wrt}' is the identity matrix, not a variable")
    parsed = parse_typed(expr, parse_declarations(where), extra_symbols=(wrt,))
    return parsed.expr, _variable(wrt, parsed.symbols, parsed.expr), parsed.symbols


def _differentiate(function: Expr, variable: Var, symmetric_gradient: bool = False) -> tuple[Expr, list[Step]]:
    used: list[str] = []
    df = differential(function, variable, used)
    steps = [Step("differential", df, tuple(used))]
    raw = derivative_from_differential(df, variable, function.shape)
    steps.append(Step("identified", raw, ("identification theorem",)))
    if symmetric_gradient:  # sym(G) before simplifying, so that G and G^T meet as like terms
        raw = ir.mul(ir.Num(Fraction(1, 2)), ir.add(raw, ir.transpose(raw)))
        steps.append(Step("symmetric gradient sym(G) = (G + G^T)/2", raw))
    trace: list[str] = []
    result = simplify(raw, trace)
    steps.append(Step("simplified", result, tuple(trace)))
    return result, steps


@_without_cycle_collection
def diff(expr: str, wrt: str, where: str | dict | None = None, layout: Layout = "numerator") -> Derivative:
    """The derivative of `expr` w.r.t. the variable `wrt`, simplified to cookbook form.

    - scalar w.r.t. scalar, vector or matrix: the gradient, with the variable's shape;
    - vector (m) w.r.t. vector (n): the Jacobian, m x n (numerator layout) or n x m (denominator);
      a row vector has the Jacobian of its transpose;
    - vector or matrix w.r.t. a scalar: the entrywise derivative, with the expression's shape.
    A gradient w.r.t. a symmetric matrix is sym(G) = (G + G^T)/2 (see docs/conventions.md).
    """
    if layout not in ("numerator", "denominator"):
        raise ParseError(f"layout must be 'numerator' or 'denominator', not {layout!r}")
    function, variable, symbols = _prepare(expr, wrt, where)
    kind = _kind(function, variable)
    result, steps = _differentiate(function, variable, variable.symmetric and kind == "gradient")
    steps.insert(0, Step("function", function))
    if layout == "denominator" and kind == "jacobian":
        trace: list[str] = []
        result = simplify(ir.transpose(result), trace)
        steps.append(Step("denominator layout (transpose)", result, tuple(trace)))
    return Derivative(function, variable, result, kind, layout, symbols, tuple(steps))


@_without_cycle_collection
def hessian(expr: str, wrt: str, where: str | dict | None = None) -> Derivative:
    """The Hessian of a scalar expression w.r.t. a vector (or the 2nd derivative w.r.t. a scalar)."""
    function, variable, symbols = _prepare(expr, wrt, where)
    if function.shape != ir.SCALAR:
        raise ShapeError(f"a Hessian needs a scalar expression, but `{to_text(function)}` has shape "
                         f"{function.shape[0]}×{function.shape[1]}")
    if not (variable.is_scalar or ir.is_column(variable.shape)):
        raise UnsupportedError("the Hessian w.r.t. a matrix is a 4th-order tensor: not supported yet")
    gradient, steps = _differentiate(function, variable)
    steps = [Step("function", function), *[Step(f"gradient, {s.title}", s.expr, s.rules) for s in steps]]
    result, second = _differentiate(gradient, variable)
    steps += [Step(f"Hessian, {s.title}", s.expr, s.rules) for s in second]
    return Derivative(function, variable, result, "hessian", "numerator", symbols, tuple(steps))


@dataclass(frozen=True)
class CheckResult:
    """The verdict on a user's candidate derivative; truthy when it is right."""

    derivative: Derivative
    candidate: Expr
    report: Any

    def __bool__(self) -> bool:
        return bool(self.report)

    def __str__(self) -> str:
        if self.report:
            return f"correct: {to_text(self.candidate)} equals {self.derivative} ({self.report})"
        return (f"wrong: {to_text(self.candidate)} is not the derivative; the derivative is {self.derivative}\n"
                f"counterexample:\n{self.report}")


@_without_cycle_collection
def check(expr: str, wrt: str, candidate: str, where: str | dict | None = None, layout: Layout = "numerator",
          hessian_of: bool = False) -> CheckResult:
    """Check a user's own derivative elementwise with SymPy; gives a counterexample when it is wrong."""
    from .verify import verify_derivative

    derivative = hessian(expr, wrt, where) if hessian_of else diff(expr, wrt, where, layout)
    parsed = parse_typed(candidate, derivative.where, expected_shape=derivative.shape)
    unknown = set(ir.variables(parsed.expr)) - set(derivative.where) - {wrt}
    if unknown:
        raise ShapeError(f"the candidate uses {', '.join(sorted(unknown))}, which the expression does not")
    report = verify_derivative(derivative.function, derivative.variable, parsed.expr, derivative.kind, layout)
    return CheckResult(derivative, parsed.expr, report)
