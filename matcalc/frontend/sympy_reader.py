"""SymPy in: a SymPy matrix expression read into the IR, with the shapes of its symbols as declarations (issue 19).

`from_sympy(expr)` reads MatrixSymbol, MatMul, MatAdd, MatPow (integer), Transpose, Inverse, Trace, Determinant,
HadamardProduct, HadamardPower, KroneckerProduct, DiagMatrix, DiagonalOf, Identity, ZeroMatrix, OneMatrix, the
entry [0, 0] of a 1 x 1 product, scalar Symbols, numbers, Add, Mul and Pow, and element-wise functions (`applyfunc`,
or a function of a scalar). Which SymPy function is which function of the language is read off the functions'
own SymPy meanings (core/functions.py FunctionSpec.sympy), so no name is listed twice: exp, log, tanh, sin, ... by
their SymPy class, sqrt as the power 1/2, and those written with other functions (sigmoid 1 / (1 + exp(-u)),
softplus, relu Max(0, u), step, sign, gelu) by matching that meaning as a pattern.

A MatrixSymbol("A", n, n) declares A: matrix(n, n), an n x 1 one a vector, a Symbol a scalar, and a Symbol used in
a shape is a dimension (in the expression it stands for its size). The declarations merge with the user's `where`
(A: symmetric for an n x n A); a conflict is a DeclarationError. What the language cannot say is an
UnsupportedError naming the SymPy part. Nothing is ever sympified from text. The SymPy tree is walked with an
explicit stack (children before parents, each distinct node once), never by recursion over its depth.

SymPy is imported only when a SymPy object is read (`import matcalc` imports no SymPy).
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

from ..core import ir
from ..core.constants import CONSTANTS
from ..core.errors import DeclarationError, UnsupportedError, abbreviate
from ..core.functions import FUNCTIONS
from ..core.ir import Expr
from .parse import _NAME, Declaration, Declarations, _check_dimension_names, _reserved_because, parse_declarations


def is_sympy(value: object) -> bool:
    """Whether `value` is a SymPy object; never imports SymPy (an object of it exists only if it is imported)."""
    sympy = sys.modules.get("sympy")
    return sympy is not None and isinstance(value, sympy.Basic | sympy.MatrixBase)


@dataclass(frozen=True)
class SympyReading:
    """A SymPy expression read: its IR and the declarations of its symbols (merged with the user's)."""

    expr: Expr
    where: Declarations


def sympy_name(symbol: Any) -> str:
    """The name of a SymPy Symbol or MatrixSymbol given as the variable of a derivative."""
    import sympy as sp

    if isinstance(symbol, sp.MatrixSymbol | sp.Symbol) and not isinstance(symbol, sp.Dummy):
        return _checked_name(str(symbol.name), symbol)
    raise UnsupportedError(f"a variable given as a SymPy object must be a Symbol or MatrixSymbol, not the "
                           f"{type(symbol).__name__} `{abbreviate(str(symbol))}`")


def _checked_name(name: str, node: Any) -> str:
    if not _NAME.match(name):
        raise UnsupportedError(f"the SymPy symbol `{abbreviate(name)}` has no name matcalc can print and read back "
                               f"(a letter or _, then letters, digits or _): rename it")
    reason = _reserved_because(name, set())
    if reason:
        raise UnsupportedError(f"the SymPy symbol `{name}` cannot be a variable: '{name}' {reason}; rename it")
    return name


# ---------------------------------------------------------------- the functions of the language, as SymPy writes them


@dataclass(frozen=True)
class _FunctionTable:
    by_class: dict[Any, str]  # sympy.exp -> "exp": a meaning that is one SymPy function of u
    patterns: dict[Any, list[tuple[Any, Any, str]]]  # head class -> (pattern over a Wild, the Wild, name)
    # per pattern: the SymPy functions it holds (1 / (1 + exp(-w)): exp) and how many levels down, so that a node
    # without them is not offered to SymPy's matcher (slow on long sums)
    signatures: dict[Any, tuple[frozenset, int]]


@functools.cache
def _function_table() -> _FunctionTable:
    """Each element-wise function's SymPy meaning (FunctionSpec.sympy, the one place it is written), at a dummy u:
    one SymPy function of u is read by its class; any other form (1 / (1 + exp(-u))) as a pattern."""
    import sympy as sp

    u, w = sp.Dummy("u"), sp.Wild("w")
    by_class: dict[Any, str] = {sp.sign: "sign"}  # SymPy's own sign: matcalc's sign (sign(0) = 0) by another name
    patterns: dict[Any, list[tuple[Any, Any, str]]] = {}
    signatures: dict[Any, tuple[frozenset, int]] = {}
    for name, spec in FUNCTIONS.items():
        if spec.kind != "elementwise" or spec.sympy is None:
            continue
        meaning = spec.sympy(sp, sp.Matrix([[u]]))[0, 0]
        if meaning == sp.sqrt(u):
            continue  # the power 1/2: read by _power
        if isinstance(meaning, sp.Function) and meaning.args == (u,):
            by_class.setdefault(meaning.func, name)
        else:
            pattern = meaning.xreplace({u: w})
            patterns.setdefault(pattern.func, []).append((pattern, w, name))
            signatures[pattern] = (frozenset(_functions_within(pattern, 8)), _levels(pattern))
    return _FunctionTable(by_class, patterns, signatures)


def _functions_within(node: Any, levels: int) -> set[Any]:
    """The classes of the SymPy functions (exp, Heaviside, ...) in the first `levels` levels below `node`."""
    import sympy as sp

    found: set[Any] = set()
    layer = [node]
    for _ in range(levels + 1):
        found.update(n.func for n in layer if isinstance(n, sp.Function | sp.Max | sp.Piecewise))
        layer = [a for n in layer for a in n.args]
    return found


def _levels(node: Any) -> int:
    """How many levels a (small) pattern has."""
    depth, layer = 0, [node]
    while layer:
        layer = [a for n in layer for a in n.args]
        depth += 1
    return depth


def _pattern_call(node: Any) -> tuple[str, Any] | None:
    """(name, argument) when `node` is exactly a function of the language written with others (sigmoid's
    1 / (1 + exp(-u))), checked by rebuilding it: a match is an identity, never a guess."""
    table = _function_table()
    for pattern, wild, name in table.patterns.get(node.func, ()):
        needed, levels = table.signatures[pattern]
        if not needed <= _functions_within(node, levels):
            continue
        try:
            found = node.match(pattern)
        except (TypeError, ValueError, NotImplementedError, AttributeError):  # SymPy's matcher on matrix entries
            found = None
        if found and wild in found and pattern.xreplace({wild: found[wild]}) == node:
            return name, found[wild]
    return None


# ---------------------------------------------------------------- shapes and declarations


def _dim(value: Any, node: Any) -> ir.Dim:
    """A SymPy dimension: a positive whole number, a Symbol (its name), or a product of them."""
    import sympy as sp

    if isinstance(value, int | sp.Integer) and int(value) >= 1:
        return int(value)
    if isinstance(value, sp.Symbol):
        return _checked_name(str(value.name), node)
    if isinstance(value, sp.Pow) and isinstance(value.base, sp.Symbol) and value.exp.is_Integer and value.exp > 0:
        return ir.dim_product(*[_dim(value.base, node)] * int(value.exp))  # n**2: the n n rows of a Kronecker product
    if isinstance(value, sp.Mul) and all(isinstance(f, sp.Symbol | sp.Integer | sp.Pow) for f in value.args):
        return ir.dim_product(*(_dim(f, node) for f in value.args))
    raise UnsupportedError(f"the SymPy {type(node).__name__} `{abbreviate(str(node))}` has the dimension "
                           f"`{abbreviate(str(value))}`, which is not a whole number, a symbol or a product of them")


def _declaration(name: str, shape: ir.Shape, node: Any) -> Declaration:
    rows, cols = shape
    if shape == ir.SCALAR:
        return Declaration(name, "scalar")
    if cols == 1:
        return Declaration(name, "vector", (rows,))
    if rows == 1:
        raise UnsupportedError(f"the SymPy MatrixSymbol `{name}` is a row vector (1×{cols}); matcalc declares "
                               f"column vectors: use MatrixSymbol('{name}', {cols}, 1) and write {name}.T")
    if any(isinstance(d, ir.DimProduct) for d in shape):
        raise UnsupportedError(f"the SymPy MatrixSymbol `{name}` has the shape {rows}×{cols}: a declared dimension "
                               f"is a symbol or a whole number, not a product")
    return Declaration(name, "matrix", (rows, cols))


def _merge(name: str, ours: Declaration, theirs: Declaration | None) -> Declaration:
    """A symbol's declaration from its SymPy shape, with the user's for the same name: the user's kind where it
    refines ours (symmetric, spd), the SymPy dimensions; anything else that differs is a conflict."""
    if theirs is None or theirs == ours:
        return ours
    square = ours.kind == "matrix" and ours.dims[0] == ours.dims[1]
    if theirs.kind in ("symmetric", "spd") and square and theirs.dims in ((), ours.dims[:1]):
        return Declaration(name, theirs.kind, ours.dims[:1])
    if theirs.kind == ours.kind and not theirs.dims:
        return ours
    raise DeclarationError(f"conflicting declarations of {name}: '{theirs}' in where, and '{ours}' from its SymPy "
                           f"shape")


# ---------------------------------------------------------------- reading


def _refused(node: Any, why: str) -> UnsupportedError:
    return UnsupportedError(f"matcalc cannot read the SymPy {type(node).__name__} `{abbreviate(str(node))}`: {why}")


def _add(terms: list[Expr]) -> Expr:
    """A sum of scalar terms (SymPy's Add); inside an element-wise function's body, a scalar beside a matrix is
    spread over its shape (1 + u is vector(1) + u)."""
    shape = next((t.shape for t in terms if not t.is_scalar), ir.SCALAR)
    return ir.add(*(ir.mul(t, ir.ones(shape)) if t.is_scalar and shape != ir.SCALAR else t for t in terms))


def _mul(factors: list[Expr]) -> Expr:
    """A product of scalars (SymPy's Mul); inside an element-wise function's body, matrices multiply entry by
    entry."""
    scalars = [f for f in factors if f.is_scalar]
    matrices = [f for f in factors if not f.is_scalar]
    return ir.mul(*scalars, *([ir.hadamard(*matrices)] if matrices else []))


def _power(node: Any, base: Expr, exponent: Expr) -> Expr:
    """A scalar power (SymPy's Pow); sqrt is the power 1/2; inside an element-wise body, of each entry."""
    if not exponent.is_scalar:
        raise _refused(node, "a power whose exponent is a matrix")
    p = exponent.constant
    if p is not None and abs(p) == Fraction(1, 2):
        root = ir.func("sqrt", base)
        return root if p > 0 else (ir.reciprocal(root) if base.is_scalar else ir.elem_div(ir.ones(base.shape), root))
    if base.is_scalar:
        return ir.power(base, exponent)
    if p is not None and p < 0:
        return ir.elem_div(ir.ones(base.shape), ir.elem_power(base, ir.Num(-p)))
    return ir.elem_power(base, exponent)


def _hadamard(factors: list[Expr], powers: list[Any]) -> Expr:
    """A HadamardProduct; its factors of negative power (B.^-1) divide, as matcalc writes A ./ B."""
    above = [f for f, p in zip(factors, powers, strict=True) if p is None]
    # a factor B.^-k was read as 1 ./ B.^k (_elem_power): its denominator divides
    below = [f.denominator if isinstance(f, ir.ElemDiv) else f for f, p in zip(factors, powers, strict=True)
             if p is not None]
    numerator = ir.hadamard(*above) if above else ir.ones(factors[0].shape)
    return ir.elem_div(numerator, ir.hadamard(*below)) if below else numerator


def _number(node: Any) -> Expr:
    import sympy as sp

    if isinstance(node, sp.Rational):
        return ir.num(Fraction(int(node.p), int(node.q)))
    return ir.num(Fraction(repr(float(node))))  # a Float: its shortest float64 decimal, as it prints


class _Reader:
    """One read of a SymPy expression: the declarations, and the Lambda variables bound to their arguments."""

    def __init__(self, where: Declarations, dims: set[str]) -> None:
        import sympy as sp

        self.sp = sp
        self.where = where
        self.dims = dims
        self.bound: dict[Any, Any] = {}  # a Lambda's variable (a fresh Dummy per call) -> the argument it stands for
        self.table = _table()

    def variable(self, name: str) -> Expr:
        declaration = self.where[name]
        kind, dims = declaration.kind, declaration.dims
        if kind == "scalar":
            return ir.Var(name, ir.SCALAR)
        if kind == "vector":
            return ir.Var(name, (dims[0], 1))
        if kind in ("symmetric", "spd"):
            return ir.Var(name, (dims[0], dims[0]), True, kind == "spd")
        return ir.Var(name, (dims[0], dims[1]))

    def reading(self, node: Any) -> tuple[Callable[[_Reader, Any, list[Expr]], Expr], tuple[Any, ...]]:
        """How `node` is read, and the SymPy nodes it is read from (its children, read first). A node of a kind
        the table does not list is refused here, before its children are read, so that the error names it."""
        sp = self.sp
        call = _pattern_call(node) if node.func in _function_table().patterns else None
        if call is not None:
            return (lambda _, __, args: ir.func(call[0], args[0])), (call[1],)
        build = next((row[1] for row in self.table if isinstance(node, row[0])), None)
        if build is None:
            if isinstance(node, sp.MatrixBase):
                raise _refused(node, "an explicit matrix of entries; matcalc works with symbols: use a MatrixSymbol")
            if getattr(node, "is_number", False) and node.is_real is False:
                raise _refused(node, "a complex number; matcalc's matrices are real")
            if isinstance(node, sp.Sum):
                raise _refused(node, "a sum over indices; SymPy writes the entry (x.T*A*x)[0, 0] out as one when it "
                                     "is multiplied with `*`: write the scalar as Trace(x.T*A*x), which it keeps")
            raise _refused(node, "the language has no such operation")
        if isinstance(node, sp.MatrixSymbol | sp.Identity | sp.ZeroMatrix | sp.OneMatrix | sp.Atom):
            return build, ()
        if isinstance(node, _applyfunc_class()):  # f applied to each entry: its body read with u bound to the argument
            function = node.function if isinstance(node.function, sp.Lambda) else _as_lambda(sp, node.function)
            variable = function.variables[0]
            fresh = sp.Dummy(variable.name)  # one per call: the same Lambda may be applied to two arguments
            self.bound[fresh] = node.expr
            return build, (node.expr, function.expr.xreplace({variable: fresh}))
        if isinstance(node, sp.matrices.expressions.matexpr.MatrixElement):
            return build, (node.parent,)
        return build, tuple(node.args)


def _matrix_power(r: _Reader, node: Any, args: list[Expr]) -> Expr:
    k = args[1].constant
    if k is None or k.denominator != 1:
        raise _refused(node, "a matrix power whose exponent is not a whole number")
    return ir.identity(args[0].shape[0]) if k == 0 else ir.power(args[0], ir.Num(k))


def _product(r: _Reader, node: Any, args: list[Expr]) -> Expr:
    """A MatMul; 1^T M 1 with SymPy's OneMatrix (1^T v for a column v) is sum(M), as to_sympy writes a sum."""
    ones = r.sp.OneMatrix
    first, last = node.args[0], node.args[-1]  # SymPy's own shapes are asked of the ones only (they recurse)
    if len(args) > 1 and isinstance(first, ones) and first.shape[0] == 1 and ir.mul(*args).is_scalar:
        inner = args[1:-1] if len(args) > 2 and isinstance(last, ones) and last.shape[1] == 1 else args[1:]
        middle = ir.mul(*inner)
        if middle.shape[1] == 1 or inner is not args[1:]:
            return ir.func("sum", middle)
    return _recognised(ir.mul(*args))


def _exp_sum(e: Expr) -> Expr | None:
    """u, for sum(exp(u)) of a column u."""
    if ir.is_call("sum")(e) and ir.is_call("exp")(e.arg) and ir.is_column(e.arg.shape):  # type: ignore[attr-defined]
        return e.arg.arg  # type: ignore[attr-defined]
    return None


def _recognised(e: Expr) -> Expr:
    """The functions SymPy has no matrix expression for, in the forms to_sympy writes them: exp(u) / sum(exp(u)) is
    softmax(u), log(sum(exp(u))) is logsumexp(u) (u a column). Any other expression as it is."""
    if isinstance(e, ir.MatMul) and len(e.factors) == 2:
        scale, exps = e.factors
        if isinstance(scale, ir.Power) and scale.exponent == ir.num(-1) and _exp_sum(scale.base) is not None \
                and scale.base.arg is exps:  # type: ignore[attr-defined]
            return ir.func("softmax", _exp_sum(scale.base))  # type: ignore[arg-type]
    if ir.is_call("log")(e) and _exp_sum(e.arg) is not None:  # type: ignore[attr-defined]
        return ir.func("logsumexp", _exp_sum(e.arg))  # type: ignore[arg-type, attr-defined]
    return e


def _entry(r: _Reader, node: Any, args: list[Expr]) -> Expr:
    if args[0].is_scalar and node.i == 0 and node.j == 0:
        return args[0]  # the one entry of a 1 x 1 product (x^T A x) is that scalar
    raise _refused(node, "an entry of a matrix; matcalc differentiates whole matrices (write e_i^T X e_j)")


def _symbol(r: _Reader, node: Any, args: list[Expr]) -> Expr:
    name = str(node.name)
    return ir.size(name) if name in r.dims else r.variable(name)


def _real_number(r: _Reader, node: Any, args: list[Expr]) -> Expr:
    if not node.is_finite or not node.is_real:
        raise _refused(node, "not a finite real number")
    return _number(node)


def _named_constant(r: _Reader, node: Any, args: list[Expr]) -> Expr:
    for name, spec in CONSTANTS.items():
        if spec.sympy(r.sp) == node:
            return ir.Constant(name)
    if node == r.sp.E:
        return ir.func("exp", ir.ONE)
    raise _refused(node, f"a constant the language has no name for (it has {', '.join(CONSTANTS)})")


def _fills(r: _Reader, node: Any, args: list[Expr]) -> Expr:
    shape = (_dim(node.rows, node), _dim(node.cols, node))
    return ir.zeros(shape) if isinstance(node, r.sp.ZeroMatrix) else ir.ones(shape)


def _diagonal(r: _Reader, node: Any, args: list[Expr]) -> Expr:
    if isinstance(node, r.sp.matrices.expressions.diagonal.DiagonalOf) and args[0].shape[0] != args[0].shape[1]:
        raise _refused(node, "the diagonal of a matrix that is not square")
    return ir.func("diag", args[0])


def _function(r: _Reader, node: Any, args: list[Expr]) -> Expr:
    name = _function_table().by_class.get(node.func)
    if name is not None and len(args) == 1:
        return _recognised(ir.func(name, args[0]))
    if isinstance(node, r.sp.core.function.AppliedUndef):
        raise _refused(node, f"an undefined function {node.func}; write the expression it stands for")
    raise _refused(node, f"the language has no function {node.func} (its functions: docs/language.md)")


@functools.cache
def _table() -> tuple[tuple[Any, Callable[[_Reader, Any, list[Expr]], Expr]], ...]:
    """The SymPy node kinds matcalc reads, each with how its IR is built from its children's (first match wins:
    Inverse before MatPow, of which it is a kind)."""
    import sympy as sp
    from sympy.matrices.expressions.diagonal import DiagMatrix, DiagonalOf
    from sympy.matrices.expressions.matexpr import MatrixElement

    return (
        (sp.MatrixSymbol, lambda r, node, args: r.variable(str(node.name))),
        (sp.Identity, lambda r, node, args: ir.identity(_dim(node.rows, node))),
        (sp.ZeroMatrix | sp.OneMatrix, _fills),
        (_applyfunc_class(), lambda r, node, args: args[1]),  # the body, its variable read as the argument
        (MatrixElement, _entry),
        (sp.MatMul, _product),
        (sp.MatAdd, lambda r, node, args: ir.add(*args)),
        (sp.Inverse, lambda r, node, args: ir.func("inv", args[0])),
        (sp.MatPow, _matrix_power),
        (sp.Transpose, lambda r, node, args: ir.transpose(args[0])),
        (sp.Trace, lambda r, node, args: args[0] if args[0].is_scalar else ir.func("tr", args[0])),
        (sp.Determinant, lambda r, node, args: ir.func("det", args[0])),
        (sp.HadamardProduct, lambda r, node, args: _hadamard(args, [_negative_power(r.sp, a) for a in node.args])),
        (sp.HadamardPower, lambda r, node, args: _power(node, *args) if args[0].is_scalar
            else _elem_power(node, *args)),
        (sp.KroneckerProduct, lambda r, node, args: ir.kron(*args)),
        (DiagMatrix | DiagonalOf, _diagonal),
        (sp.Symbol, _symbol),
        (sp.Number, _real_number),
        (sp.NumberSymbol, _named_constant),
        (sp.Add, lambda r, node, args: _add(args)),
        (sp.Mul, lambda r, node, args: _mul(args)),
        (sp.Pow, lambda r, node, args: _power(node, *args)),
        (sp.Function, _function),
    )


def _applyfunc_class() -> type:
    from sympy.matrices.expressions.applyfunc import ElementwiseApplyFunction

    return ElementwiseApplyFunction


def _as_lambda(sp: Any, function: Any) -> Any:
    """applyfunc's function as a Lambda (SymPy keeps a Lambda; a bare class such as sympy.exp is a function)."""
    u = sp.Dummy("u")
    return sp.Lambda(u, function(u))


def _negative_power(sp: Any, factor: Any) -> Any:
    """The positive exponent k of a Hadamard factor B.^-k (which divides), else None."""
    if isinstance(factor, sp.HadamardPower) and factor.exp.is_number and factor.exp.is_negative:
        return factor.exp
    return None


def _elem_power(node: Any, base: Expr, exponent: Expr) -> Expr:
    if not exponent.is_scalar:
        raise _refused(node, "a power whose exponent is a matrix")
    p = exponent.constant
    if p is not None and p < 0:
        return ir.elem_div(ir.ones(base.shape), ir.elem_power(base, ir.Num(-p)))
    return ir.elem_power(base, exponent)


def _symbols(expr: Any) -> tuple[dict[str, tuple[ir.Shape, Any]], set[str]]:
    """Every symbol of `expr` with its shape, and the dimension names, without recursion; a name with two shapes
    (or a matrix and a scalar) is a DeclarationError."""
    import sympy as sp

    shapes: dict[str, tuple[ir.Shape, Any]] = {}
    dims: set[str] = set()
    bound: set[Any] = set()
    seen: set[int] = set()
    stack = [expr]
    while stack:
        node = stack.pop()
        if id(node) in seen:
            continue
        seen.add(id(node))
        if isinstance(node, sp.Lambda):
            bound.update(node.variables)
        if isinstance(node, sp.MatrixSymbol):
            shape = (_dim(node.rows, node), _dim(node.cols, node))
            name = _checked_name(str(node.name), node)
        elif isinstance(node, sp.Symbol) and not isinstance(node, sp.Wild):
            if node in bound or isinstance(node, sp.Dummy):
                continue
            shape, name = ir.SCALAR, _checked_name(str(node.name), node)
        else:
            if isinstance(node, sp.Identity | sp.ZeroMatrix | sp.OneMatrix):
                for d in node.shape:  # Identity(n), OneMatrix(m, n): their dimensions name sizes too
                    dims.update(ir.dim_names(_dim(d, node)))
            if isinstance(node, _applyfunc_class()):
                stack.append(node.expr)
                function = node.function
                if isinstance(function, sp.Lambda):
                    bound.update(function.variables)
                    stack.append(function.expr)
                continue
            stack.extend(node.args)
            continue
        if name in shapes and shapes[name][0] != shape:
            raise DeclarationError(f"the SymPy symbol {name} appears with two shapes: {_text(shapes[name][0])} and "
                                   f"{_text(shape)}")
        shapes.setdefault(name, (shape, node))
        for d in shape:
            dims.update(ir.dim_names(d))
    return shapes, dims


def _text(shape: ir.Shape) -> str:
    return "scalar" if shape == ir.SCALAR else f"{shape[0]}×{shape[1]}"


def from_sympy(expr: Any, where: str | dict | Declarations | None = None) -> SympyReading:
    """The IR of a SymPy expression and the declarations of its symbols, merged with `where`."""
    if not is_sympy(expr):
        raise UnsupportedError(f"from_sympy reads a SymPy expression, not {type(expr).__name__}")
    import sympy as sp

    if isinstance(expr, sp.MatrixBase) or not isinstance(expr, sp.Expr):
        raise _refused(expr, "an explicit matrix of entries; matcalc works with symbols: use a MatrixSymbol"
                       if isinstance(expr, sp.MatrixBase) else "not an expression (an equation, a set, ...)")
    given = parse_declarations(where)
    shapes, dims = _symbols(expr)
    declarations: Declarations = {}
    for name, (shape, node) in shapes.items():
        if name in dims:
            if shape != ir.SCALAR:
                raise DeclarationError(f"the SymPy symbol {name} is a dimension and a {_text(shape)} matrix")
            continue  # a dimension used as a scalar stands for its size
        declarations[name] = _merge(name, _declaration(name, shape, node), given.get(name))
    merged = {**given, **declarations}
    for name in dims:
        if name in given and given[name].kind != "dim":
            raise DeclarationError(f"conflicting declarations of {name}: '{given[name]}' in where, and a dimension "
                                   f"of a SymPy shape")
    _check_dimension_names(merged)
    return SympyReading(_read(expr, _Reader(merged, dims)), merged)


def _read(expr: Any, reader: _Reader) -> Expr:
    """The walk: each node once, after its children, with an explicit stack. Nodes are known by identity, not by
    SymPy's equality, whose hash recurses over the depth (SymPy builds a tree a few hundred levels deep at most)."""
    done: dict[int, Expr] = {}
    stack: list[tuple[Any, tuple[Any, tuple[Any, ...]] | None]] = [(expr, None)]
    while stack:
        node, reading = stack.pop()
        if id(node) in done:
            continue
        if isinstance(node, reader.sp.Dummy) and node in reader.bound:  # a Lambda's variable: its argument's IR
            done[id(node)] = done[id(reader.bound[node])]
            continue
        if reading is None:
            reading = reader.reading(node)
            stack.append((node, reading))
            stack.extend((child, None) for child in reversed(reading[1]) if id(child) not in done)
            continue
        build, children = reading
        done[id(node)] = build(reader, node, [done[id(c)] for c in children])
    return done[id(expr)]
