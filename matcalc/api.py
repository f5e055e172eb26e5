"""The public API: parse, diff, grad, hessian, check, codegen. Composition only; the pipeline, stage by stage:

    frontend (parse, typecheck) -> calculus (differential, readers, derive, backprop; rules simplify)
    -> render (text, LaTeX, names) / backends (interpret, verify, pycode)
"""

from __future__ import annotations

import dataclasses
import functools
import gc
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .calculus import derive
from .calculus.backprop import backpropagate, needed_bindings
from .calculus.spec import Claim, DerivativeSpec, Kind, Layout, Step, check_layout
from .core import ir
from .core.errors import ParseError, ResultShapeError, ShapeError, abbreviate
from .core.ir import Bindings, Expr, Var
from .frontend.parse import Declarations, dimension_names, parse_declarations
from .frontend.typecheck import Parsed, ParsedProgram, parse_program
from .render.naming import name_shared, name_shared_lines
from .render.text import program_text, to_text
from .results import (
    _NAME,
    BlockHessian,
    CheckResult,
    Code,
    Derivative,
    Gradients,
    TensorShape,
    _absent_variable,
    _check_variable_name,
    _flag,
    _progress,
    _shape_text,
    _timeout,
    _variable,
    _with_dimensions,
    _wrt_name,
)
from .rules.simplify import simplify

if TYPE_CHECKING:
    from .frontend.sympy_reader import SympyReading


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
    """The typed IR of an expression, or of a program's output with its definitions inlined (a DAG: nothing is
    copied). `shape` pins the shape of the whole expression: (rows, cols), or a result's `d.shape` (a tensor's axes
    know the 2-D shape of the vec form their result prints in)."""
    return _candidate(text, parse_declarations(where), _checked_shape(shape)).expr


def _checked_shape(shape: object) -> ir.Shape | None:
    """`shape` as the parser takes it, (rows, cols), each a dimension name, a whole number or a product of them;
    anything else is a ShapeError that says what was given."""
    if shape is None:
        return None
    if isinstance(shape, TensorShape):
        return shape.matrix
    if not isinstance(shape, tuple | list) or len(shape) != 2:
        raise ShapeError(f"shape must be a pair (rows, cols), not {abbreviate(repr(shape))}; a tensor derivative's "
                         f"d.shape lists its axes: its printed text has the 2-D shape d.matrix_shape")
    for dim in shape:
        valid = (isinstance(dim, int) and not isinstance(dim, bool) and dim >= 1) or isinstance(dim, ir.DimProduct) \
            or (isinstance(dim, str) and _NAME.match(dim) is not None)
        if not valid:
            raise ShapeError(f"a dimension in shape must be a name, a whole number of at least 1 or a product of "
                             f"them, not {abbreviate(repr(dim))}")
    return (shape[0], shape[1])


def from_sympy(expr: Any, where: str | dict | None = None) -> SympyReading:
    """A SymPy matrix expression (MatrixSymbol, MatMul, MatAdd, MatPow, Transpose, Inverse, Trace, Determinant,
    HadamardProduct, HadamardPower, applyfunc of a function of the language, scalar Symbols, numbers, ...) read into
    matcalc's IR: `.expr` (str() is its text) and `.where`, the declarations of its symbols from their SymPy shapes
    (MatrixSymbol("A", n, n) is A: matrix(n, n), an n x 1 one a vector), merged with `where` (a conflict is a
    DeclarationError). What the language cannot say is an UnsupportedError naming the SymPy part."""
    from .frontend.sympy_reader import from_sympy as read

    return read(expr, where)


def to_sympy(value: Any) -> Any:
    """An expression (from `parse`) or a result (Derivative, Gradients) as SymPy matrix expressions."""
    from .backends.sympy_writer import to_sympy as write

    if isinstance(value, Derivative | Gradients):
        return value.to_sympy()
    if not isinstance(value, Expr):
        raise ParseError(f"to_sympy takes an expression from matcalc.parse or a result, not {type(value).__name__}")
    return write(value)


def is_sympy(value: object) -> bool:
    """Whether `value` is a SymPy object. The reader is imported only when SymPy is (`import matcalc` imports
    neither): without SymPy loaded, nothing can be a SymPy object."""
    if "sympy" not in sys.modules:
        return False
    from .frontend.sympy_reader import is_sympy as of_sympy

    return of_sympy(value)


def _text_input(expr: Any, where: str | dict | None) -> tuple[Any, Any]:
    """A SymPy expression as the text of its IR and its declarations merged with `where` (the pipeline then runs as
    for text, so that it behaves the same); text as it is."""
    if not is_sympy(expr):
        return expr, where
    reading = from_sympy(expr, where)
    return to_text(reading.expr), reading.where


def _wrt_names(wrt: Any) -> Any:
    """Variables given as SymPy symbols, as their names (one, or a list or tuple of them)."""
    if isinstance(wrt, list | tuple):
        return type(wrt)(_wrt_name(w) for w in wrt)
    return _wrt_name(wrt)


@dataclass(frozen=True)
class _Prepared:
    """A parsed function: its definitions (one for a single expression), as one expression, and its symbols."""

    program: ParsedProgram
    function: Expr
    variables: tuple[Var, ...]
    symbols: Declarations

    @property
    def taken(self) -> set[str]:
        """Every name the input uses (symbols, definitions, dimensions): new names avoid them."""
        return {*self.symbols, *(name for name, _ in self.program.bindings), *dimension_names(self.symbols)}


def _prepare(expr: str, wrts: list[str], where: str | dict | None) -> _Prepared:
    for wrt in wrts:
        _check_variable_name(wrt)
    declared = parse_declarations(where)
    program = parse_program(expr, declared, extra_symbols=tuple(wrts))
    defined = {name for name, _ in program.bindings}
    occurring: set[str] = set()  # the inputs the program uses anywhere (a definition the output skips counts)
    for _, value in program.bindings:
        occurring.update(name for name in ir.variables(value) if name not in defined)
    for wrt in wrts:
        if wrt in defined:
            raise ParseError(f"'{wrt}' is defined by the program, not a variable: differentiate w.r.t. an input")
        if wrt not in occurring and (wrt not in declared or declared[wrt].kind == "dim"):
            dimensions = dimension_names(program.symbols) | {
                name for _, value in program.bindings for name in ir.dimensions([value])}
            raise _absent_variable(wrt, occurring, dimensions)
    function = ir.inline(program.bindings[:-1], program.bindings[-1][1])
    present = ir.variables(function)
    variables = tuple(_variable(wrt, program.symbols, present) for wrt in wrts)
    return _Prepared(program, function, variables, program.symbols)


def _derivative(prepared: _Prepared, variable: Var, result: Expr, kind: Kind, layout: Layout,
                steps: list[Step], inline: bool) -> Derivative:
    """A Derivative of a single expression, with the shared subexpressions of its result named unless `inline`."""
    program = prepared.program.bindings if prepared.program.is_program else ()
    # a program's own definitions keep their names in the result (p = softmax(K^T q / alpha))
    given = {value: name for name, value in ir.definition_values(program[:-1]).items()} if program else {}
    bindings, body = ((), result) if inline else name_shared(result, prepared.taken, given=given)
    where = _with_dimensions(prepared.symbols, [prepared.function, result, *(e for _, e in bindings)])
    return Derivative(prepared.function, variable, body, kind, layout, where, tuple(steps), bindings, program,
                      result)


def _backward(prepared: _Prepared, inline: bool, variables: list[Var] | None = None) -> Gradients:
    """Every requested gradient of a program with a scalar output, from one backward pass.

    The gradients share the definitions (forward values and adjoints), their steps and their declarations,
    so that asking for all L weights of an L-layer network costs one pass, not L.
    """
    bindings = prepared.program.bindings
    variables = variables or list(prepared.variables)
    backward = backpropagate(bindings, variables, prepared.taken)
    shared = (*bindings, *backward.adjoints)
    gradients = {variable.name: backward.gradients[variable.name] for variable in variables}
    if not inline:  # what the local derivatives repeat (a layer norm's scale, a GELU's slope) is named once
        printed = {name for name, _ in needed_bindings(shared, list(gradients.values()))}
        shared, bodies = name_shared_lines(shared, list(gradients.values()), prepared.taken, printed)
        gradients = dict(zip(gradients, bodies, strict=True))
    where = _with_dimensions(prepared.symbols, [prepared.function, *(e for _, e in shared), *gradients.values()])
    values = ir.definition_values(bindings)
    steps = tuple([*(Step(f"forward: {n}", e, claim=Claim("value", values[n])) for n, e in bindings),
                   *(Step(f"backward: {n}", e, backward.rules[n], claim=_adjoint_claim(bindings, n, e))
                     for n, e in backward.adjoints)])
    program = bindings if prepared.program.is_program else ()
    out: dict[str, Derivative] = {}
    for variable in variables:
        gradient = gradients[variable.name]
        kind: Kind = "derivative" if variable.is_scalar else "gradient"
        d = Derivative(prepared.function, variable, gradient, kind, "numerator", where,
                       (*steps, Step(f"gradient w.r.t. {variable.name}", backward.gradients[variable.name],
                                     backward.rules[variable.name],
                                     claim=Claim("sym_gradient" if variable.symmetric else "gradient",
                                                 prepared.function, variable))),
                       shared, program)
        if inline:
            d = dataclasses.replace(d, body=d.expr, bindings=(), inline_result=d.expr)
        out[variable.name] = d
    return Gradients(out, prepared.program.output)


def _adjoint_claim(bindings: Bindings, adjoint: str, value: Expr) -> Claim | None:
    """g_h is the gradient of the output w.r.t. h, the definitions after h inlined and h held as a variable."""
    name = adjoint[2:] if adjoint.startswith("g_") else None
    position = next((n for n, (defined, _) in enumerate(bindings) if defined == name), None)
    if position is None:
        return None
    h = Var(name, bindings[position][1].shape)
    later = bindings[position + 1:]
    return Claim("gradient", lambda: ir.inline(later[:-1], later[-1][1]), h) if later else None


@_without_cycle_collection
def diff(expr: str, wrt: str, where: str | dict | None = None, layout: Layout = "numerator",
         inline: bool = False) -> Derivative:
    """The derivative of `expr` (an expression or a program) w.r.t. the variable `wrt`, in cookbook form.

    - scalar w.r.t. scalar, vector or matrix: the gradient, with the variable's shape;
    - vector (m) w.r.t. vector (n): the Jacobian, m x n (numerator layout) or n x m (denominator);
    - with layout="jacobian" (the seeds': Parr & Howard, Dillon), a scalar's derivative is its Jacobian, the
      transpose of the gradient: the 1 x n row w.r.t. a vector, n x m w.r.t. an m x n matrix;
      a row vector has the Jacobian of its transpose;
    - vector or matrix w.r.t. a scalar: the entrywise derivative, with the expression's shape.
    A gradient w.r.t. a symmetric matrix is sym(G) = (G + G^T)/2 (see docs/conventions.md).
    The gradient of a program with a scalar output comes from a backward pass over its definitions.
    The result prints with its shared subexpressions named (one definition per line), or `inline`.
    `expr` may be a SymPy matrix expression (its shapes are declarations, merged with `where`), `wrt` a SymPy symbol.
    """
    expr, where = _text_input(expr, where)
    wrt = _wrt_names(wrt)
    return _diff(_prepare(expr, [wrt], where), check_layout(layout), _flag(inline, "inline"))


def _diff(prepared: _Prepared, layout: Layout, inline: bool, variable: Var | None = None) -> Derivative:
    variable = variable or prepared.variables[0]
    function = prepared.function
    if prepared.program.is_program and function.shape == ir.SCALAR:
        return _in_layout(_backward(prepared, inline, [variable])[variable.name], layout)
    spec = DerivativeSpec.of(function, variable, layout)
    result, steps = derive.derivative(function, variable, spec)
    steps.insert(0, Step("function", function, claim=Claim("value", function)))
    d = _derivative(prepared, variable, result, spec.kind, layout, steps, inline)
    return dataclasses.replace(d, form="vec") if spec.form == "vec" else d


def _in_layout(d: Derivative, layout: Layout) -> Derivative:
    """A program's gradient (from the backward pass, in the variable's shape) in the layout asked for: in the
    Jacobian layout its last line is transposed, the definitions it uses stay as they are."""
    spec = DerivativeSpec(Kind(d.kind), layout, d.variable.symmetric)
    if not spec.transposed:
        return d
    trace: list[str] = []
    body = simplify(ir.transpose(d.body), trace)
    claim = Claim(spec.layout_claim, d.function, d.variable)
    steps = (*d.steps, Step(spec.layout_step, body, tuple(trace), claim=claim))
    if d.inline_result is not None:  # inline: the body is the whole result
        return dataclasses.replace(d, body=body, layout=layout, steps=steps, inline_result=body)
    return dataclasses.replace(d, body=body, layout=layout, steps=steps)


@_without_cycle_collection
def grad(expr: str, wrt: list[str] | tuple[str, ...], where: str | dict | None = None,
         inline: bool = False, layout: Layout = "numerator") -> Gradients:
    """The gradients of a scalar expression or program w.r.t. several variables, by name, from one backward pass;
    with layout="jacobian", each written as the seeds do, the transpose of the gradient (a row for a vector)."""
    layout = check_layout(layout)
    expr, where = _text_input(expr, where)
    gradients = _backward(_prepare_scalar(expr, _wrt_names(wrt), where), _flag(inline, "inline"))
    if layout == "jacobian":
        return Gradients({name: _in_layout(d, layout) for name, d in gradients.items()}, gradients.output)
    return gradients


def _names(wrt: object, what: str) -> list[str]:
    """A list or tuple of variable names, each checked as diff checks its one, without repeats."""
    if not isinstance(wrt, list | tuple):
        raise ParseError(f"{what} takes a list of variable names, e.g. ['W1', 'W2'], not {abbreviate(repr(wrt))}")
    return list(dict.fromkeys(_check_variable_name(name) for name in wrt))


def _prepare_scalar(expr: str, wrt: list[str] | tuple[str, ...], where: str | dict | None,
                    what: str = "grad") -> _Prepared:
    """A scalar function and its variables (each named once), for grad and codegen."""
    if isinstance(wrt, str):
        raise ParseError(f"{what} takes a list of variable names, e.g. ['W1', 'W2']; diff takes one")
    names = _names(wrt, what)
    if not names:
        raise ParseError(f"{what} needs at least one variable")
    prepared = _prepare(expr, names, where)
    if prepared.function.shape != ir.SCALAR:
        shape = prepared.function.shape
        raise ShapeError(f"grad needs a scalar function, but the output has shape {shape[0]}×{shape[1]}; "
                         f"use diff for a Jacobian")
    return prepared


@_without_cycle_collection
def hessian(expr: str, wrt: str | list[str] | tuple[str, ...], where: str | dict | None = None,
            inline: bool = False) -> Derivative | BlockHessian:
    """The Hessian of a scalar expression or program: w.r.t. a vector, the n x n matrix; w.r.t. a scalar, the second
    derivative; w.r.t. a matrix X, d vec(G) / d vec(X)^T (4th order, in vec form). Given a list of variables, the
    block Hessian: a block per pair, each the Jacobian of one gradient w.r.t. the other variable."""
    inline = _flag(inline, "inline")
    expr, where = _text_input(expr, where)
    wrt = _wrt_names(wrt)
    if isinstance(wrt, list | tuple):
        return _block_hessian(expr, _names(wrt, "hessian"), where, inline)
    return _hessian(_prepare(expr, [wrt], where), inline)


def _hessian(prepared: _Prepared, inline: bool, variable: Var | None = None) -> Derivative:
    variable = variable or prepared.variables[0]
    function = prepared.function
    if function.shape != ir.SCALAR:
        raise ShapeError(f"a Hessian needs a scalar expression, but `{to_text(function)}` has shape "
                         f"{function.shape[0]}×{function.shape[1]}")
    result, steps, matrix = derive.hessian(function, variable)
    d = _derivative(prepared, variable, result, Kind.HESSIAN, "numerator", steps, inline)
    return dataclasses.replace(d, form="vec") if matrix else d


def _block_hessian(expr: str, names: list[str], where: str | dict | None, inline: bool) -> BlockHessian:
    if not names:
        raise ParseError("hessian needs at least one variable")
    prepared = _prepare(expr, names, where)
    if prepared.function.shape != ir.SCALAR:
        raise ShapeError(f"a Hessian needs a scalar expression, but `{to_text(prepared.function)}` has shape "
                         f"{_shape_text(prepared.function.shape)}")
    blocks: dict[tuple[str, str], Derivative] = {}
    for variable in prepared.variables:  # the gradient once per variable, each block one differentiation of it
        gradient = _diff(prepared, "numerator", inline, variable)
        for b in names:
            blocks[variable.name, b] = gradient.diff(b)
    return BlockHessian(blocks, names, prepared.program.output)


@_without_cycle_collection
def codegen(expr: str, wrt: list[str] | tuple[str, ...], where: str | dict | None = None, backend: str = "numpy",
            hessian: bool = False, name: str = "value_and_gradients") -> Code:
    """The source of one function returning the value of a scalar expression or program and its gradient w.r.t.
    each variable in `wrt`, sharing the forward pass (one backward pass, as `grad`): (value, grad_1, ...). With
    `hessian`, the Hessian w.r.t. each variable follows (a matrix variable's in vec form, as an n-D array)."""
    from .backends.pycode import Output, function_source, identifier, indented, shapes_doc
    from .backends.pycode import backend as target

    hessian = _flag(hessian, "hessian")
    expr, where = _text_input(expr, where)
    wrt = _wrt_names(wrt)
    if not isinstance(name, str):
        raise ParseError(f"the function's name must be text, not {abbreviate(repr(name))}")
    prepared = _prepare_scalar(expr, wrt, where, "codegen")
    gradients = _backward(prepared, False)
    first = next(iter(gradients.values()))
    value = Var(gradients.output, ir.SCALAR)
    outputs = [Output(value), *(Output(d.body) for d in gradients.values())]
    extra: list[Expr] = []
    if hessian:
        for variable in prepared.variables:
            h = _hessian(prepared, True, variable)
            outputs.append(Output(h.expr, h.shape if h.form == "vec" else None))
            extra.append(h.expr)
    bindings = needed_bindings(first.bindings, [value, *(d.body for d in gradients.values())])
    if not any(n == gradients.output for n, _ in bindings):  # a single expression: its value is the function
        bindings = (*bindings, (gradients.output, first.function))
    defined = {n for n, _ in first.program} if first.program else set()
    in_order = [var for _, value in (first.program or ((gradients.output, first.function),))
                for var in ir.variables(value).values() if var.name not in defined]
    parameters = list({var.name: var for var in reversed(in_order)}.values())[::-1]  # first appearance, in order
    for e in extra:
        for var in ir.variables(e).values():
            if var.name not in {p.name for p in parameters} and var.name not in {n for n, _ in bindings}:
                parameters.append(var)
    names = ", ".join(gradients)
    returned = ["the value", *(f"the gradient w.r.t. {n}" for n in gradients),
                *(f"the Hessian w.r.t. {n}" for n in gradients if hessian)]
    function = (f"the program\n\n{indented(program_text(first.program))}\n\n" if first.program
                else f"{gradients.output} = {to_text(first.function)}, ")
    docstring = (f"The value of {function}and its gradients w.r.t. {names}, from one backward pass.\n\n"
                 f"Returns ({', '.join(returned)}).\n\n" + shapes_doc(parameters, ()).split(" Returns")[0])
    return Code(function_source(identifier(name), docstring, parameters, bindings, outputs, target(backend)))


def _wrong_shape(derivative: Derivative, candidate: Expr) -> str:
    """Why a candidate of another shape is wrong, in words, with the likely mix-up."""
    got, want = candidate.shape, derivative.body.shape
    reason = f"your candidate is {_shape_text(got)}, the derivative is {_shape_text(want)}"
    if got == (want[1], want[0]):
        if derivative.kind == "jacobian":
            other = "numerator" if derivative.layout == "denominator" else "denominator"
            reason += f"; your candidate is its transpose (the {other} layout: check it with layout='{other}')"
        elif derivative.kind == "gradient":
            reason += _gradient_transposed(derivative)
        else:
            reason += "; your candidate is its transpose (a gradient has the shape of its variable)"
    return reason


def _gradient_transposed(derivative: Derivative) -> str:
    """Why the transpose of a scalar's derivative is wrong in this layout, and the layout in which it is right: the
    gradient (the variable's shape) and the Jacobian layout's derivative ∂f/∂x = (∇f)^T are each other's
    transposes, the difference the seeds ask students to check."""
    name = derivative.variable.name
    row = ("the Jacobian with one row" if ir.is_column(derivative.variable.shape)
           else "n×m for an m×n matrix, the transpose of the gradient")
    if derivative.layout == "jacobian":
        return (f"; your candidate is its transpose, the gradient ∇f (shaped like {name}): in the Jacobian layout "
                f"the derivative of a scalar is {row}, ∂f/∂{name} = (∇f)^T (check the gradient with "
                f"layout='numerator')")
    return (f"; your candidate is its transpose (a gradient has the shape of its variable): it is the derivative "
            f"in the Jacobian layout, ∂f/∂{name} = (∇f)^T, {row} as Parr & Howard write it (check it with "
            f"layout='jacobian')")


def _candidate(text: str, where: Declarations, shape: ir.Shape | None) -> Parsed:
    """A candidate derivative, an expression or a program (such as a printed result), as one expression."""
    program = parse_program(text, where, expected_shape=shape)
    return Parsed(ir.inline(program.bindings[:-1], program.bindings[-1][1]), program.symbols)


@_without_cycle_collection
def check(expr: str, wrt: str, candidate: str, where: str | dict | None = None, layout: Layout = "numerator",
          hessian_of: bool = False, timeout: float | None = None, progress: Any = None) -> CheckResult:
    """Check a user's own derivative elementwise with SymPy; gives a counterexample when it is wrong.

    A candidate of the wrong shape is wrong (with the reason), not an input error. Past `timeout` seconds
    the result is falsy and `undecided`. `progress`: as for Derivative.verify (a display of a long proof).
    """
    from .backends.verify import DEFAULT_TIMEOUT, VerificationReport, verify_derivative

    timeout = _timeout(timeout)
    expr, where = _text_input(expr, where)
    wrt = _wrt_names(wrt)
    if is_sympy(candidate):  # read with the function's declarations, so that its symbols keep their shapes
        candidate = to_text(from_sympy(candidate, where).expr)
    derivative = hessian(expr, wrt, where) if _flag(hessian_of, "hessian_of") else diff(expr, wrt, where, layout)
    try:
        parsed = _candidate(candidate, derivative.where, derivative.body.shape)
    except ResultShapeError:
        free = _candidate(candidate, derivative.where, None)
        return CheckResult(derivative, free.expr, VerificationReport(False, [], 0),
                           _wrong_shape(derivative, free.expr))
    unknown = set(ir.variables(parsed.expr)) - set(derivative.where) - {wrt}
    if unknown:
        raise ShapeError(f"the candidate uses {', '.join(sorted(unknown))}, which the expression does not")
    free = [d for d in ir.dimensions([parsed.expr]) if d not in dimension_names(derivative.where)]
    if free:  # tr(I) alone: its I could have any size, so no verdict could be right
        example = next(iter(dimension_names(derivative.where)), "n")
        raise ShapeError(f"the candidate `{candidate}` holds a constant (I, vector(c) or matrix(c)) whose size no "
                         f"variable fixes; write the size itself instead, e.g. `{example}` or `rows(A)` "
                         f"(docs/language.md, Sizes)")
    report = verify_derivative(derivative.function, derivative.variable, parsed.expr, derivative._verified_kind, layout,
                               timeout=DEFAULT_TIMEOUT if timeout is None else timeout, progress=_progress(progress))
    return CheckResult(derivative, parsed.expr, report)
