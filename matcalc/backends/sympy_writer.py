"""SymPy out: an IR expression as a SymPy matrix expression (MatrixSymbol, MatMul, MatAdd, ...), issue 19.

The proof (verify.py) builds explicit SymPy matrices at concrete sizes; this writes the symbolic expression, with
symbolic sizes: a variable A of shape n x n is MatrixSymbol("A", n, n), a scalar a Symbol, a dimension n the plain
Symbol n (so that `expr.subs(sympy.Symbol("n"), 3)` finds it). It reuses the functions' own SymPy meanings
(core/functions.py FunctionSpec.sympy): an element-wise function's is `a.applyfunc(f)`, which a SymPy matrix
expression has too (an ElementwiseApplyFunction), and the named constants' (core/constants.py). The functions that
SymPy has as matrix expressions are written as them (tr -> Trace, det -> Determinant, inv -> Inverse, diag ->
DiagMatrix / DiagonalOf, ⊗ -> KroneckerProduct, .* -> HadamardProduct, .^ -> HadamardPower); sum, norm1, norm2,
softmax and logsumexp as the products with ones and traces they are. A 1 x 1 matrix expression where SymPy wants a
scalar (x^T A x as a factor) is its trace, Trace(x.T*A*x): its one entry, in a form SymPy's arithmetic keeps.

What SymPy has no matrix expression for (vec, the commutation matrix K(m, n), a softmax along an axis) is an
UnsupportedError naming the part. A variable declared symmetric is written as a plain MatrixSymbol: SymPy's matrix
symbols carry no symmetry (the declaration is in the result's `where`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ..core import ir
from ..core.constants import CONSTANTS
from ..core.errors import UnsupportedError, abbreviate
from ..core.functions import FUNCTIONS
from ..core.ir import Expr
from ..render.text import to_text


def _dim(sp: Any, dim: ir.Dim) -> Any:
    if isinstance(dim, int):
        return sp.Integer(dim)
    if isinstance(dim, ir.DimProduct):
        return sp.Integer(dim.coefficient) * sp.Mul(*(sp.Symbol(f) for f in dim.factors))
    return sp.Symbol(dim)


def _is_matrix(sp: Any, value: Any) -> bool:
    return isinstance(value, sp.MatrixExpr)


def _scalar(sp: Any, value: Any) -> Any:
    """A value where SymPy wants a scalar: a 1 x 1 matrix expression's trace, its one entry. Not MatrixElement(v, 0,
    0), which SymPy's `*` writes out as a Sum over indices; a trace it keeps (and from_sympy reads back as v)."""
    return sp.Trace(value) if _is_matrix(sp, value) else value


def _refused(node: Expr, why: str) -> UnsupportedError:
    return UnsupportedError(f"SymPy cannot express `{abbreviate(to_text(node))}`: {why}")


def _ones_sum(sp: Any, a: Any, shape: ir.Shape) -> Any:
    """sum(A) = 1^T A 1, the one entry of a 1 x 1 product with SymPy's OneMatrix."""
    rows, cols = (_dim(sp, d) for d in shape)
    if shape == ir.SCALAR:
        return _scalar(sp, a)
    left = [] if shape[0] == 1 else [sp.OneMatrix(1, rows)]
    right = [] if shape[1] == 1 else [sp.OneMatrix(cols, 1)]
    return _scalar(sp, sp.MatMul(*left, a, *right))


def _entrywise(sp: Any, name: str, a: Any) -> Any:
    """f applied to each entry, by the function's own SymPy meaning (a.applyfunc(f)); of a scalar, f of it."""
    if _is_matrix(sp, a) and a.shape != (1, 1):
        return FUNCTIONS[name].sympy(sp, a)
    return FUNCTIONS[name].sympy(sp, sp.Matrix([[_scalar(sp, a)]]))[0, 0]


def _softmax(sp: Any, a: Any, shape: ir.Shape) -> Any:
    exps = _entrywise(sp, "exp", a)
    return sp.MatMul(1 / _ones_sum(sp, exps, shape), exps)


def _func(node: ir.Func, args: list[Any], sp: Any) -> Any:
    """A call of a function of the language."""
    from sympy.matrices.expressions.diagonal import DiagMatrix, DiagonalOf

    name, (a,), shape = node.name, args, node.arg.shape
    if node.axis:
        raise _refused(node, f"{name} along an axis (of each column or row) has no SymPy matrix expression")
    if FUNCTIONS[name].kind == "elementwise":
        return _entrywise(sp, name, a)
    if shape == ir.SCALAR and name in ("tr", "det", "inv", "diag", "sum"):
        return _scalar(sp, a) ** (-1) if name == "inv" else _scalar(sp, a)
    writers: dict[str, Callable[[], Any]] = {
        "tr": lambda: sp.Trace(a),
        "det": lambda: sp.Determinant(a),
        "logdet": lambda: sp.log(sp.Determinant(a)),
        "inv": lambda: sp.Inverse(a),
        "sum": lambda: _ones_sum(sp, a, shape),
        "norm1": lambda: _ones_sum(sp, _entrywise(sp, "abs", a), shape),
        # the Euclidean norm of a vector, the Frobenius norm of a matrix: sqrt(tr(A^T A))
        "norm2": lambda: sp.sqrt(_scalar(sp, sp.MatMul(sp.Transpose(a), a)) if shape[1] == 1
                                 else sp.Trace(sp.MatMul(sp.Transpose(a), a))) if shape[0] != 1
        else sp.sqrt(_scalar(sp, sp.MatMul(a, sp.Transpose(a)))),
        "softmax": lambda: _softmax(sp, a, shape),
        "logsumexp": lambda: sp.log(_ones_sum(sp, _entrywise(sp, "exp", a), shape)),
        "diag": lambda: DiagMatrix(a) if 1 in shape else DiagonalOf(a),
    }
    if name not in writers:
        raise _refused(node, f"{name} has no SymPy matrix expression")
    return writers[name]()


def _power(node: ir.Power, args: list[Any], sp: Any) -> Any:
    base, exponent = args
    if node.base.is_scalar:
        return _scalar(sp, base) ** _scalar(sp, exponent)
    k = node.exponent.constant
    if k is None or k.denominator != 1:
        raise _refused(node, "a matrix power whose exponent is not a whole number")
    return sp.MatPow(base, int(k))


def _elem_div(node: ir.ElemDiv, args: list[Any], sp: Any) -> Any:
    numerator, denominator = args
    if node.numerator.is_scalar and node.denominator.is_scalar:
        return _scalar(sp, numerator) / _scalar(sp, denominator)
    reciprocal = sp.HadamardPower(denominator, -1)
    return reciprocal if ir.is_ones(node.numerator) else sp.HadamardProduct(numerator, reciprocal)


def _product(node: ir.MatMul, args: list[Any], sp: Any) -> Any:
    """A product: its scalar factors as scalars (SymPy will not multiply a 1 x 1 matrix into a chain), then the
    matrix chain."""
    scalars = [_scalar(sp, a) for f, a in zip(node.factors, args, strict=True) if f.is_scalar]
    chain = [a for f, a in zip(node.factors, args, strict=True) if not f.is_scalar]
    if not chain:
        return sp.Mul(*scalars)
    # the constructor, not `*`: SymPy's operators call doit(), which would write a 1 x 1 entry out as a Sum
    return sp.MatMul(*scalars, *chain) if len(scalars) + len(chain) > 1 else chain[0]


def _sum(node: ir.Add, args: list[Any], sp: Any) -> Any:
    if node.is_scalar and not all(_is_matrix(sp, a) for a in args):
        return sp.Add(*(_scalar(sp, a) for a in args))
    return sp.MatAdd(*args)


def _hadamard(node: ir.Hadamard, args: list[Any], sp: Any) -> Any:
    if node.is_scalar:
        return sp.Mul(*(_scalar(sp, a) for a in args))
    return sp.HadamardProduct(*args)


def _fill(node: ir.Fill, sp: Any) -> Any:
    rows, cols = (_dim(sp, d) for d in node.fill_shape)
    if node.value == 0:
        return sp.ZeroMatrix(rows, cols)
    ones = sp.OneMatrix(rows, cols)
    return ones if node.value == 1 else sp.Rational(node.value.numerator, node.value.denominator) * ones


def _variable(node: ir.Var, sp: Any) -> Any:
    if node.shape == ir.SCALAR:
        return sp.Symbol(node.name)
    return sp.MatrixSymbol(node.name, *(_dim(sp, d) for d in node.shape))


def _commutation(node: Expr, sp: Any) -> Any:
    raise _refused(node, "SymPy has no commutation matrix K(m, n)")


def _differential(node: Expr, sp: Any) -> Any:
    raise _refused(node, "a differential dX is not an expression SymPy can hold")


_LEAVES: dict[type, Callable[[Any, Any], Any]] = {
    ir.Var: _variable,
    ir.Num: lambda node, sp: sp.Rational(node.value.numerator, node.value.denominator),
    ir.Fill: _fill,
    ir.Identity: lambda node, sp: sp.Identity(_dim(sp, node.size)),
    ir.Constant: lambda node, sp: CONSTANTS[node.name].sympy(sp),
    ir.Size: lambda node, sp: sp.Symbol(node.dim),
    ir.Commutation: _commutation,
    ir.Differential: _differential,
}

_NODES: dict[type, Callable[[Any, list[Any], Any], Any]] = {
    ir.Add: _sum,
    ir.MatMul: _product,
    ir.Transpose: lambda node, args, sp: sp.Transpose(args[0]),
    ir.Hadamard: _hadamard,
    ir.ElemDiv: _elem_div,
    ir.Power: _power,
    ir.ElemPower: lambda node, args, sp: sp.HadamardPower(args[0], _scalar(sp, args[1])),
    ir.Func: _func,
    ir.Kron: lambda node, args, sp: sp.KroneckerProduct(*args),
}


def to_sympy(e: Expr) -> Any:
    """The SymPy matrix expression of `e` (a scalar expression for a scalar), children before parents, without
    recursion over the depth; an UnsupportedError names the first part SymPy cannot express."""
    import sympy as sp

    values: dict[int, Any] = {}
    for node in ir.postorder(e):
        kind = type(node)
        if kind in _LEAVES:
            values[id(node)] = _LEAVES[kind](node, sp)
        else:
            values[id(node)] = _NODES[kind](node, [values[id(child)] for child in node.children], sp)
    return values[id(e)]
