"""The results the API returns: records that print, render, evaluate, prove and generate code by delegating to
the rooms (render, backends, calculus). api.py composes the pipeline that makes them."""

from __future__ import annotations

import difflib
import functools
import re
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal, get_args

from .calculus import derive
from .calculus.backprop import needed_bindings
from .calculus.differential import differential
from .calculus.spec import Axes, Claim, DerivativeSpec, Kind, Layout, Partial, Step, axes_of, check_method, kind_of
from .core import ir
from .core.errors import MatcalcError, ParseError, UnsupportedError, where_hint
from .core.ir import Bindings, Expr, Var, fresh_name
from .frontend.parse import SYMMETRIC_KINDS, Declaration, Declarations, dimension_names
from .frontend.typecheck import default_kind
from .render import derivative as render
from .render.naming import name_shared
from .render.text import (
    PLAIN,
    SIZED,
    SIZED_IN_KRONECKER,
    SIZED_IN_KRONECKER_AND_CONSTANTS,
    latex_name,
    program_text,
    to_latex,
    to_text,
)
from .rules.simplify import simplify

Form = Literal["matrix", "vec", "index", "differential"]
Product = Literal["jvp", "vjp"] | None
_NAME = re.compile(r"[A-Za-z_\u0370-\u03ff][A-Za-z0-9_\u0370-\u03ff]*\Z")
FORMS: tuple[str, ...] = get_args(Form)


def _one_of(value: object, allowed: tuple[str, ...], what: str) -> None:
    """A keyword argument that names one of a few choices (or None): anything else is a ParseError, not the
    TypeError of a comparison with an array or of an unhashable dict key."""
    if value is not None and not (isinstance(value, str) and value in allowed):
        raise ParseError(f"{what} must be one of {', '.join(map(repr, allowed))}, not {value!r}"[:300])


MAX_TIMEOUT = 10**7  # seconds (116 days): inf, or an int past float64's range, means no limit


def _flag(value: object, what: str) -> bool:
    """A yes/no keyword argument: True or False (or 0 and 1), not an array whose truth is ambiguous."""
    if not isinstance(value, bool | int):
        raise ParseError(f"{what} must be True or False, not {value!r}"[:300])
    return bool(value)


def _timeout(value: object) -> float | None:
    """A time limit in seconds, or None for the default."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or value != value:  # nan is not equal to itself
        raise ParseError(f"timeout must be a number of seconds, not {value!r}"[:300])
    return float(min(value, MAX_TIMEOUT))  # longer is no limit in practice, and an OS timer takes it


class TensorShape(tuple):
    """A tensor result's axes, output first (`d.shape`, docs/conventions.md), that also knows the 2-D shape its text
    is printed in, d vec(F) / d vec(X)^T (`matrix`): so `parse(str(d), where=d.where, shape=d.shape)` reads the vec
    form back. It is equal to the tuple of its axes."""

    matrix: ir.Shape

    def __new__(cls, axes: tuple, matrix: ir.Shape) -> TensorShape:
        self = super().__new__(cls, axes)
        self.matrix = matrix
        return self

    def __getnewargs__(self) -> tuple:  # copy and pickle keep the matrix shape
        return tuple(self), self.matrix


@dataclass(frozen=True)
class Derivative:
    """A derivative in matrix notation: print it, render it, evaluate it, prove it.

    `body` is the result in terms of named definitions: the forward values of a program and its adjoints
    `g_h`, or a single expression's repeated subexpressions. `bindings` may hold more definitions than the
    body uses (the gradients of one backward pass share them all); `definitions` are those it uses, and
    `expr` is the result as one expression (a DAG: nothing is copied), computed when first asked for.
    """

    function: Expr
    variable: Var
    body: Expr
    kind: Kind
    layout: Layout
    where: Declarations
    steps: tuple[Step, ...]
    bindings: Bindings = ()
    program: Bindings = ()  # the function as the program it was given as, when it was one
    inline_result: Expr | None = None  # `expr`, when it is known already
    # "vec": the result is the Jacobian of the vecs, d vec(F) / d vec(X)^T (a tensor of order 3 or more, or a
    # Hessian w.r.t. a matrix); "matrix": the cookbook's matrix (gradient, Jacobian, Hessian of a vector)
    form: Literal["matrix", "vec"] = "matrix"
    axes: tuple[Axes, Axes] | None = None  # (output's axes, variable's axes) of the tensor; None: from the shapes

    @functools.cached_property
    def definitions(self) -> Bindings:
        return needed_bindings(self.bindings, [self.body]) if self.bindings else ()

    @functools.cached_property
    def expr(self) -> Expr:
        if self.inline_result is not None:
            return self.inline_result
        return ir.inline(self.definitions, self.body)

    @property
    def split_axes(self) -> tuple[Axes, Axes]:
        """(the output's axes, the variable's axes): the tensor ∂F/∂X has them all, output first; an axis of size 1
        (a vector's second, a scalar's both) is not an axis."""
        if self.axes is not None:
            return self.axes
        if self.kind == "hessian":
            return axes_of(self.variable.shape), axes_of(self.variable.shape)
        return axes_of(self.function.shape), axes_of(self.variable.shape)

    @property
    def shape(self) -> ir.Shape | Axes:
        """A matrix result's 2-D shape (a vector's is (n, 1)); a tensor's axes, output first (docs/conventions.md)."""
        if self.form == "matrix":
            return self.body.shape
        output, variable = self.split_axes
        return TensorShape((*output, *variable), self.body.shape)

    @property
    def matrix_shape(self) -> ir.Shape:
        """The 2-D shape of the printed result: for a tensor, that of its vec form d vec(F) / d vec(X)^T."""
        return self.body.shape

    @property
    def order(self) -> int:
        """The number of axes of the derivative as a tensor: 0 for a scalar, 2 for a Jacobian, 4 for a matrix
        w.r.t. a matrix."""
        output, variable = self.split_axes
        return len(output) + len(variable)

    @functools.cached_property
    def of(self) -> Expr:
        """The expression differentiated in the last step: the function, or the gradient for a Hessian."""
        if self.kind == "hessian":
            return derive.gradient(self.function, self.variable)[0]  # as hessian() computed it
        return self.function

    def __str__(self) -> str:
        return self.text()

    def text(self, inline: bool = False, form: Form | None = None) -> str:
        """The result in the input language: named (one line per definition, then the result) or inline.

        `form`: "vec" or "matrix" (the default: the form the result is held in; a tensor is held in vec form), or
        "differential" (`d(F) = ...`, linear in dX) or "index" (`∂F_ij / ∂X_kl = ...`).
        """
        _one_of(form, FORMS, "form")
        if form == "differential":
            return f"d({to_text(self.of)}) = {to_text(self.differential_form)}"
        if form == "index":
            return self._index_written(latex=False)
        return self._inline_text if inline or not self.definitions else self._named_text

    @functools.cached_property
    def _inline_text(self) -> str:
        return self._printed(True)

    @functools.cached_property
    def _named_text(self) -> str:
        return self._printed(False)

    def _printed(self, inline: bool) -> str:
        """The text that parses back to this result's expression with its own where and shape: plain, or with the
        sizes of the identities that nothing in the text tells (a Kronecker factor's: `identity(n) ⊗ matrix(1)`)."""
        def written(sized: int) -> str:
            return to_text(self.expr, sized) if inline else program_text(self.definitions, self.body, sized)

        plain = written(PLAIN)
        # Only a Kronecker product or a vec leaves a size open (elsewhere a neighbour tells it): the text of any other
        # result reads back as it is, and is not parsed again to make sure (a deep network's would take seconds).
        roots = [self.expr] if inline else [self.body, *(value for _, value in self.definitions)]
        if not any(isinstance(node, ir.Kron | ir.Commutation) or _is_vec(node) for root in roots
                   for node in ir.walk(root)) or self._reads_back(plain):
            return plain
        for sized in (SIZED_IN_KRONECKER, SIZED_IN_KRONECKER_AND_CONSTANTS, SIZED):
            text = written(sized)
            if self._reads_back(text):
                return text
        return plain

    def _reads_back(self, text: str) -> bool:
        from .frontend.typecheck import parse_program

        try:
            program = parse_program(text, self.where, expected_shape=self.body.shape)
        except MatcalcError:
            return False
        return ir.inline(program.bindings[:-1], program.bindings[-1][1]) == self.expr

    @functools.cached_property
    def differential_form(self) -> Expr:
        """dF, linear in dX: the compact form the engine derives first; apply it to any direction dX."""
        return simplify(differential(self.of, self.variable))

    def _index_written(self, latex: bool) -> str:
        # the index form's reader and printer load only when it is asked for: they stay off the start-up path
        from .calculus.index_form import index_form
        from .render.index import index_latex, index_text

        written = index_form(differential(self.of, self.variable), self.variable, self.of)
        return index_latex(written) if latex else index_text(written)

    def latex(self, inline: bool = False, form: Form | None = None) -> str:
        _one_of(form, FORMS, "form")
        if form == "differential":
            return rf"\mathrm{{d}}\left({to_latex(self.of)}\right) = {to_latex(self.differential_form)}"
        if form == "index":
            return self._index_written(latex=True)
        return render.equation_latex(self, inline)

    def _forms_json(self) -> dict[str, Any]:
        """The three forms (the held one, index, differential), each as text and LaTeX; an index form that cannot
        be written (a Kronecker product in the function) is null."""
        forms: dict[str, Any] = {self.form: {"text": self.text(), "latex": self.latex()}}
        if sum(1 for _ in ir.walk(self.of)) > MAX_FORMS_SIZE:  # a deep network: the written forms would be huge
            return {**forms, "index": None, "differential": None}
        for form in ("index", "differential"):
            try:
                forms[form] = {"text": self.text(form=form), "latex": self.latex(form=form)}  # type: ignore[arg-type]
            except UnsupportedError:
                forms[form] = None
        return forms

    def __repr__(self) -> str:
        # the result in the input language: the REPL shows Derivative('(A + A^T) x'), not the IR
        return f"{type(self).__name__}({str(self)!r})"

    def _repr_latex_(self) -> str:
        return f"$${self.latex()}$$"

    def derivation(self, method: str = "differential", latex: bool = False) -> str:
        """The derivation by `method`, one step per line; with `latex`, a LaTeX `aligned` block.

        "differential" (the default): matcalc's own, `title: expression   [rules]` (the differential, the
        identification, the simplification, with the rules' names); "chain": Parr & Howard's four steps (intermediate
        variables, local derivatives, the product of the Jacobians in order, substituted back); "index": the index
        method (the entry as a sum, term by term with Kronecker deltas, summed out, the matrix recognised).
        """
        if isinstance(method, bool):  # derivation(True), as latex was once the first parameter
            method, latex = "differential", method
        return Derivation(render.derivation(self.method_steps(method), latex), latex, check_method(method))

    def method_steps(self, method: str = "differential") -> tuple[Step, ...]:
        """The steps of a derivation method (see `derivation`); each carries its claim (spec.Claim)."""
        method = check_method(method)
        if method == "differential":
            return self.steps
        if method == "chain":
            return tuple(chain_method([self]))
        return tuple(index_method(self))

    def evaluate(self, values: dict[str, Any], form: Literal["tensor", "vec"] = "tensor") -> Any:
        """NumPy value at `values` (name -> array; a scalar as a float): an array with the output's axes, then the
        variable's (`self.shape`); with form="vec", the Jacobian of the vecs d vec(F) / d vec(X)^T (column-major)."""
        from .backends.interpret import arrange, evaluate_numpy

        names = {**ir.variables(self.function), **ir.variables(self.expr)}
        names.setdefault(self.variable.name, self.variable)
        # Symbols that simplification removed (A in alpha A^0 -> I) may still be given: they bind sizes.
        # _variable looks in an expression first: the bare variable, which holds none of them, so each costs O(1).
        others = {name: _variable(name, self.where, self.variable) for name, declaration in self.where.items()
                  if name not in names and declaration.kind != "dim"}
        sizes: dict[str, int] = {}
        (value,) = evaluate_numpy([self.expr], values, names, optional=others, symmetric=True, sizes_out=sizes)
        return arrange(value, self, sizes, form)

    def verify(self, seed: int = 0, timeout: float | None = None,
               method: Literal["auto", "exact", "lines"] = "auto", progress: Any = None) -> Any:
        """Elementwise proof with SymPy at two sizes; the report is truthy when every entry matches.

        Past `timeout` seconds (default verify.DEFAULT_TIMEOUT) the report is falsy and says "undecided".
        `method`: "exact" proves each entry with exact SymPy values; "lines" evaluates the function line by line
        at high precision (fast on networks, to 40 digits); "auto" (the default) picks by the expression
        (verify.proof_method). `progress`, a function of one verify.Progress record, is called at each step of the
        proof (which sizes, how many entries of how many): for a progress display; nothing is shown without it.
        """
        from .backends.verify import DEFAULT_TIMEOUT, verify_derivative

        timeout = _timeout(timeout)
        if isinstance(seed, bool) or not isinstance(seed, int):
            raise ParseError(f"seed must be a whole number, not {seed!r}"[:300])
        if method not in ("auto", "exact", "lines"):
            raise UnsupportedError(f"method must be 'auto', 'exact' or 'lines', not {method!r}")
        return verify_derivative(self.function, self.variable, self.expr, self._verified_kind, self.layout, seed,
                                 DEFAULT_TIMEOUT if timeout is None else timeout,
                                 None if method == "auto" else method, _progress(progress))

    @property
    def _verified_kind(self) -> str:
        """The kind verify checks against: the Jacobian of the vecs for a tensor held in vec form."""
        return "tensor" if self.form == "vec" and self.kind != "hessian" else self.kind

    def to_code(self, backend: str = "numpy", name: str | None = None, product: Product = None) -> str:
        """The source of a Python function computing this derivative with NumPy, JAX or PyTorch: a parameter per
        variable (by keyword), a line per definition and shared subexpression; it returns what `evaluate` returns
        (a tensor as its n-D array). Only running it needs the backend.

        `product="jvp"` computes the derivative applied to a direction dX instead (a parameter named after the
        variable: dW), `product="vjp"` its transpose applied to a cotangent G of the output's shape: neither builds
        the tensor. For a Hessian, "jvp" is the Hessian-vector product.
        """
        from .backends import pycode

        _one_of(product, ("jvp", "vjp"), "product")
        if name is not None and not isinstance(name, str):
            raise ParseError(f"the function's name must be text, not {name!r}")
        name = name or self._code_name(product)
        target = pycode.backend(backend)
        if product is None:
            return Code(pycode.derivative_source(self, str(self), name, target))
        taken = {*self.where, *ir.variables(self.of), *dimension_names(self.where)}
        direction, result = derive.linear_map(self.of, self.variable, product, taken)
        return Code(pycode.product_source(self, name, product, direction, result, target))

    def compile(self, backend: str = "numpy", product: Product = None) -> Callable[..., Any]:
        """The function of `to_code(backend, product=...)`, ready to call: f(X=..., y=...)."""
        from .backends.pycode import compile_source

        name = self._code_name(product)
        return compile_source(self.to_code(backend, name, product), name)

    def _code_name(self, product: Product) -> str:
        from .backends.pycode import identifier

        base = f"d{identifier(self._output_name())}_d{self.variable.name}"
        return f"{base}_{product}" if product else base

    def _output_name(self) -> str:
        return self.program[-1][0] if self.program else "f"

    def diff(self, wrt: str) -> Derivative:
        """This derivative differentiated again w.r.t. `wrt` (a mixed or higher derivative): a tensor with this one's
        axes, then wrt's. Held as a matrix while it has two axes or fewer, else in vec form."""
        variable = _variable(_check_variable_name(_wrt_name(wrt)), self.where, {**ir.variables(self.function),
                                                                    **ir.variables(self.expr)})
        function = self.expr
        output = (*self.split_axes[0], *self.split_axes[1]) if self.form == "vec" else axes_of(function.shape)
        kind = kind_of(function, variable)
        if self.form == "vec" or len(output) + len(axes_of(variable.shape)) > 2:
            kind = Kind.TENSOR
        result, steps = derive.derivative(function, variable, DerivativeSpec(kind))
        steps.insert(0, Step(f"the derivative w.r.t. {self.variable.name}", function, claim=Claim("value", function)))
        taken = {*self.where, *(name for name, _ in self.bindings), *dimension_names(self.where)}
        bindings, body = name_shared(result, taken)
        where = _with_dimensions(self.where, [function, result])
        return Derivative(function, variable, body, kind, "numerator", where, tuple(steps), bindings, (), result,
                          "vec" if kind == "tensor" else "matrix", (output, axes_of(variable.shape)))


    def to_sympy(self) -> Any:
        """The result as a SymPy matrix expression (MatrixSymbol, MatMul, MatAdd, Trace, ...; a scalar expression for a
        scalar), its named parts written in. A part SymPy has no matrix expression for (vec, the commutation matrix)
        is an UnsupportedError naming it. For a tensor, the matrix of its vec form d vec(F) / d vec(X)^T."""
        from .backends.sympy_writer import to_sympy

        return to_sympy(self.expr)

    def to_json(self, method: str = "differential") -> dict[str, Any]:
        """The JSON record (`--json`); its "steps" are those of the derivation `method` (`--steps METHOD`)."""
        where = {name: str(decl).split(": ", 1)[1] for name, decl in self.where.items()}
        return render.json_of(self, str(self), where, self._forms_json(), self.method_steps(method))


_is_vec = ir.is_call("vec")


def _result_label(d: Derivative) -> str | Partial:
    """What the last step of a method names the engine's result."""
    if d.form == "vec" and d.kind != "hessian":
        output = d.program[-1][0] if d.program else "F"
        return Partial(output, d.variable.name, not ir.is_vector_shape(d.function.shape), not
                       ir.is_vector_shape(d.variable.shape))
    if d.kind == "jacobian" and d.layout == "denominator":
        return "Jacobian in denominator layout (the transpose)"
    if d.kind == "gradient" and d.layout == "jacobian":
        return "Jacobian (the gradient transposed)"
    return {"gradient": "gradient", "jacobian": "Jacobian", "hessian": "Hessian", "derivative": "derivative",
            "tensor": "derivative"}[d.kind]


def _in_program_names(d: Derivative) -> Expr:
    """The result as one expression, but over the program's own names where it was a program: the user's
    definitions are the chain method's intermediate variables, and substituting them back would write each
    layer out again inside the next."""
    if not d.program:
        return d.expr
    own = {name for name, _ in d.program}
    return ir.inline(tuple(b for b in d.definitions if b[0] not in own), d.body)


def chain_method(derivatives: list[Derivative]) -> list[Step]:
    """Parr & Howard's chain rule for one derivative, or for the gradients of one program (shared steps once)."""
    from .calculus.chain_steps import chain_derivation

    first = derivatives[0]
    taken = {*first.where, *dimension_names(first.where)}
    results = {d.variable.name: (_in_program_names(d), _result_label(d)) for d in derivatives}
    variables = [d.variable for d in derivatives]
    gradient = first.of if first.kind == "hessian" else None
    row = first.kind == "gradient" and first.layout == "jacobian"
    return chain_derivation(first.function, first.program, variables, results, taken, gradient, row)


def index_method(d: Derivative, prefix: str = "") -> list[Step]:
    """The index method; for a Hessian, of the gradient."""
    from .calculus.index_steps import index_steps

    label = _result_label(d)
    return index_steps(d.of, d.variable, d.expr, label if isinstance(label, str) else "J", prefix)


# The headings of a derivation's Markdown in a notebook, by its method (`Derivation.method`); None: matcalc's own.
METHOD_HEADINGS: dict[str | None, str] = {
    None: "Derivation",
    "differential": "Derivation: differentials, then identification",
    "chain": "Derivation: the vector chain rule (Parr & Howard's four steps)",
    "index": "Derivation: the index method (entry by entry, Kronecker deltas summed out)",
}


class Derivation(str):
    """A derivation, as `Derivative.derivation` returns it: the text itself (a str, so that printing, comparing,
    splitting and writing it keep working), which also renders in a notebook: a LaTeX derivation (`latex=True`,
    an `aligned` block) as displayed math, a text one as Markdown, a heading naming its method above its lines in
    a code block (never escaped as a string's repr is)."""

    latex: bool
    method: str | None

    def __new__(cls, text: str, latex: bool = False, method: str | None = None) -> Derivation:
        self = super().__new__(cls, text)
        self.latex = bool(latex)
        self.method = method
        return self

    def __getnewargs__(self) -> tuple:  # copy and pickle keep the kind of text
        return str(self), self.latex, self.method

    @property
    def heading(self) -> str:
        return METHOD_HEADINGS.get(self.method, f"Derivation: {self.method}")

    def _repr_latex_(self) -> str | None:
        return f"$${self}$$" if self.latex else None  # None: IPython then takes the Markdown

    def _repr_markdown_(self) -> str | None:
        if self.latex:  # the math itself, under its heading (a front end that prefers Markdown shows this)
            return f"#### {self.heading}\n\n$$\n{self}\n$$"
        return f"#### {self.heading}\n\n```text\n{self}\n```"

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:
        """IPython's terminal: the lines, as print shows them, not the escaped repr of a string."""
        printer.text(str(self))


class Code(str):
    """Generated source (`to_code`): the text itself, which a notebook shows as a highlighted Python block."""

    def _repr_markdown_(self) -> str:
        return f"```python\n{self}```"

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:
        printer.text(str(self))

MAX_FORMS_SIZE = 400  # distinct nodes of the function past which to_json leaves out the index and differential forms


def _variable(name: str, symbols: Declarations, parsed: Expr | dict[str, Var]) -> Var:
    """The variable `name` as the expression has it (`parsed`: the expression, or its variables), else as declared."""
    if not isinstance(name, str) or not _NAME.match(name):
        raise ParseError(f"not a variable name: {name!r}")
    present = parsed if isinstance(parsed, dict) else ir.variables(parsed)
    found = present.get(name)
    if found is not None:
        return found
    declaration = symbols.get(name)  # typed by parse_typed(extra_symbols=...)
    if declaration is None or declaration.kind == "dim":
        raise _absent_variable(name, set(present), dimension_names(symbols))
    dims = declaration.dims
    if declaration.kind == "scalar":
        shape: ir.Shape = ir.SCALAR
    elif declaration.kind == "vector":
        shape = (dims[0], 1)
    else:
        shape = (dims[0], dims[-1])
    return Var(name, shape, declaration.kind in SYMMETRIC_KINDS, declaration.kind == "spd")


def _with_dimensions(where: Declarations, exprs: list[Expr]) -> Declarations:
    """`where` and a `n: dim` declaration for every dimension the expressions use that no declaration
    names (the size of an I in tr(alpha I)), so that a result's text parses back with `where`."""
    named = dimension_names(where)
    missing = {d: Declaration(d, "dim") for d in ir.dimensions(exprs) if d not in named}
    return {**where, **missing} if missing else where


def _absent_variable(name: str, occurring: set[str], dimensions: set[str]) -> ParseError:
    """A derivative w.r.t. a name the function does not use, nor `where` declares: most likely a typo (w1 for W1),
    whose derivative would be a silent zero. The zero is the answer only for a declared variable."""
    if name in dimensions:
        return ParseError(f"'{name}' is a dimension (it stands for a size), not a variable of the expression")
    by_case = [other for other in sorted(occurring) if other.lower() == name.lower()]
    close = by_case or difflib.get_close_matches(name, sorted(occurring), n=1)
    if close:
        hint = f"; did you mean {close[0]}?"
    elif occurring:
        hint = f"; its variables are {', '.join(sorted(occurring))}"
    else:
        hint = " (it has no variables)"
    declaration = where_hint(f"{name}: {default_kind(name)}")
    return ParseError(f"'{name}' does not occur in the expression{hint}\n(a derivative w.r.t. a variable it does "
                      f"not use is zero: declare the variable to get that zero, {declaration})")


def _wrt_name(wrt: object) -> object:
    """A variable given as a SymPy Symbol or MatrixSymbol: its name; anything else as it is (checked by
    _check_variable_name)."""
    if "sympy" not in sys.modules or isinstance(wrt, str):  # no SymPy object without SymPy loaded
        return wrt
    from .frontend.sympy_reader import is_sympy, sympy_name

    return sympy_name(wrt) if is_sympy(wrt) else wrt


def _check_variable_name(wrt: object) -> str:
    if not isinstance(wrt, str) or not _NAME.match(wrt):
        raise ParseError(f"not a variable name: {wrt!r}")
    if wrt in ir.IDENTITY_NAMES:
        raise ParseError(f"'{wrt}' is the identity matrix, not a variable")
    if wrt in ir.RESERVED_NAMES:
        raise ParseError(f"'{wrt}' is a constant, not a variable")
    return wrt


class Gradients(dict):
    """The gradients of one backward pass, by variable name; prints as one program: the definitions they
    use, once, then a line `dL_dW = ...` per variable (L the output's name)."""

    def __init__(self, derivatives: dict[str, Derivative], output: str) -> None:
        super().__init__(derivatives)
        self.output = output

    def lines(self) -> tuple[Bindings, list[tuple[str, Expr]]]:
        """(the definitions the gradients use, once; each gradient's line `dL_dW = ...`)."""
        first = next(iter(self.values()))
        bodies = [d.body for d in self.values()]
        taken = {*first.where, *(name for name, _ in first.bindings)}
        results = []
        for name, d in self.items():
            label = fresh_name(f"d{self.output}_d{name}", taken)
            taken.add(label)
            results.append((label, d.body))
        return needed_bindings(first.bindings, bodies), results

    def __str__(self) -> str:
        definitions, results = self.lines()
        return program_text((*definitions, *results))

    def to_sympy(self) -> dict[str, Any]:
        """Each gradient as a SymPy matrix expression (Derivative.to_sympy), by variable name."""
        return {name: d.to_sympy() for name, d in self.items()}

    def latex(self) -> str:
        """An `aligned` block: a row per definition, then one per gradient, labelled ∂L/∂W."""
        definitions, results = self.lines()
        rows = [rf"{latex_name(name)} &= {to_latex(value)}" for name, value in definitions]
        rows += [rf"{_partial(self.output, name)} &= {to_latex(body)}" for name, (_, body) in zip(self, results,
                                                                                                  strict=True)]
        return "\\begin{aligned}\n" + " \\\\\n".join(rows) + "\n\\end{aligned}"

    def _repr_latex_(self) -> str:
        return f"$${self.latex()}$$"

    def method_steps(self, method: str = "differential") -> tuple[Step, ...]:
        """The derivation of every gradient, what they share written once: the forward and backward steps of the one
        backward pass (differential), the intermediate variables and local derivatives (chain); the index method
        is per variable."""
        method = check_method(method)
        derivatives = list(self.values())
        if method == "chain":
            return tuple(chain_method(derivatives))
        if method == "index":
            return tuple(step for d in derivatives for step in index_method(d, f"w.r.t. {d.variable.name}"))
        shared = derivatives[0].steps[:-1]  # each gradient's steps are the shared ones, then its own line
        return (*shared, *(d.steps[-1] for d in derivatives))

    def derivation(self, method: str = "differential", latex: bool = False) -> str:
        """The steps of `method` (see Derivative.derivation), shared steps once; with `latex`, an aligned block."""
        return render.derivation(self.method_steps(method), latex)


class BlockHessian(dict):
    """The Hessian of a scalar w.r.t. several variables: block (a, b) is d vec(grad_a f) / d vec(b)^T (a Derivative),
    for every pair. Prints the blocks a <= b (in the order given; block (b, a) is the transpose of (a, b));
    evaluates to the whole symmetric matrix over the vecs of the variables, in that order."""

    def __init__(self, blocks: dict[tuple[str, str], Derivative], names: list[str], output: str) -> None:
        super().__init__(blocks)
        self.names = names
        self.output = output

    def _upper(self) -> list[tuple[str, Derivative]]:
        return [(f"d2{self.output}_d{a}_d{b}", self[a, b])
                for i, a in enumerate(self.names) for b in self.names[i:]]

    def __str__(self) -> str:
        return "\n".join(f"{label} = {d.text(inline=True)}" for label, d in self._upper())

    def latex(self) -> str:
        """An `aligned` block, a row per block on and above the diagonal, labelled ∂²f/∂a ∂b^T."""
        rows = [rf"{self._label(a, b)} &= {to_latex(self[a, b].expr)}"
                for i, a in enumerate(self.names) for b in self.names[i:]]
        return "\\begin{aligned}\n" + " \\\\\n".join(rows) + "\n\\end{aligned}"

    def _label(self, a: str, b: str) -> str:
        """∂²f / ∂a ∂b^T of block (a, b), d vec(grad_a f) / d vec(b)^T: a matrix variable as its vec."""
        def axis(name: str, transposed: bool) -> str:
            variable = self[a, b].variable if name == b else self[a, a].variable
            x = latex_name(name)
            if variable.is_scalar:
                return x
            if not ir.is_column(variable.shape):
                x = rf"\operatorname{{vec}}\left({x}\right)"
            return rf"{x}^\top" if transposed else x

        f = latex_name(self.output)
        if a == b and self[a, a].variable.is_scalar:
            return rf"\frac{{\partial^2 {f}}}{{\partial {axis(a, False)}^2}}"
        return rf"\frac{{\partial^2 {f}}}{{\partial {axis(a, False)} \, \partial {axis(b, True)}}}"

    def _repr_latex_(self) -> str:
        return f"$${self.latex()}$$"

    def evaluate(self, values: dict[str, Any]) -> Any:
        import numpy as np

        return np.block([[self[a, b].evaluate(values, form="vec") for b in self.names] for a in self.names])

    def verify(self, seed: int = 0, timeout: float | None = None, progress: Any = None) -> bool:
        """Each block proven (the blocks below the diagonal too): truthy when all are."""
        return all(d.verify(seed, timeout, progress=progress) for d in self.values())


@dataclass(frozen=True)
class CheckResult:
    """The verdict on a user's candidate derivative; truthy only when it is proven right.

    `reason` says why a candidate is wrong before any entry is compared (its shape); `report` is the
    entrywise verification, which may also be undecided (a time limit): undecided is never truthy.
    """

    derivative: Derivative
    candidate: Expr
    report: Any
    reason: str = ""

    def __bool__(self) -> bool:
        return not self.reason and bool(self.report)

    @property
    def undecided(self) -> bool:
        return not self.reason and bool(getattr(self.report, "undecided", ""))

    def __str__(self) -> str:
        return render.verdict_text(self)

    def __repr__(self) -> str:
        # the verdict itself, as print() shows it: what a person wants to read in the REPL
        return str(self)

    def _repr_markdown_(self) -> str:
        """Jupyter: the verdict in bold, expressions as code, the counterexample as the report renders it."""
        return render.verdict_markdown(self)

    @property
    def verdict(self) -> str:
        """"correct", "wrong" or "undecided" (the time limit ran out, or no point where the values are defined)."""
        return "correct" if self else "undecided" if self.undecided else "wrong"

    def to_json(self) -> dict[str, Any]:
        """The verdict as JSON values (`matcalc check --json`): the verdict, the variable, the candidate and the
        derivative as text, the reason of a wrong shape, the report's method, entries, digits, sizes and
        counterexample (VerificationReport.to_json), and the message print() shows."""
        return {"verdict": self.verdict, "variable": self.derivative.variable.name,
                "candidate": to_text(self.candidate), "derivative": str(self.derivative),
                "reason": self.reason or None, **self.report.to_json(), "message": str(self)}


def _partial(output: str, variable: str) -> str:
    """∂L/∂W in LaTeX, the label of a gradient."""
    return rf"\frac{{\partial {latex_name(output)}}}{{\partial {latex_name(variable)}}}"


def _progress(progress: Any) -> Any:
    """A progress callback as given (None: no display), refused cleanly when it cannot be called."""
    if progress is not None and not callable(progress):
        raise UnsupportedError(f"progress must be a function of one argument or None, not {progress!r}"[:300])
    return progress


def _shape_text(shape: ir.Shape) -> str:
    return f"{shape[0]}×{shape[1]}"
