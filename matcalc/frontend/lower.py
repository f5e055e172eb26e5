"""Stage 3: typed syntax tree -> IR, once every dimension is inferred and named.

Pure functions of a `Typed` tree and the dimension naming (`Inference.dimension_naming()`: every unknown's
resolved dimension); the shapes were checked by typecheck, and nothing here unifies or reports a shape.
No walk here recurses over the depth of the tree.
"""

from __future__ import annotations

from collections.abc import Callable

from ..core import ir
from ..core.errors import ParseError
from .parse import SYMMETRIC_KINDS, Declaration, Declarations
from .typed import DimProd, DimTerm, DimVar, SymbolInfo, Typed

# Every unknown dimension's name, number or product of names, as typecheck resolved it.
Naming = dict[DimVar, ir.Dim]

_CHAINS = {"add": ("add", "sub"), "sub": ("add", "sub"), "mul": ("mul",), "hadamard": ("hadamard",)}
# The typed ops whose IR is one smart constructor over the operands' IR (a sub's operands come negated).
_CONSTRUCTORS: dict[str, Callable[..., ir.Expr]] = {
    "add": ir.add, "sub": ir.add, "mul": ir.mul, "hadamard": ir.hadamard, "neg": ir.neg, "ediv": ir.elem_div,
    "power": ir.power, "epower": ir.elem_power, "transpose": ir.transpose, "kron": ir.kron,
}
# Of the IR, in operator levels. No stage recurses over it; deeper input is refused only to fail fast on
# absurd input.
MAX_DEPTH = 10_000


def dimension(term: DimTerm, names: Naming) -> ir.Dim:
    """The IR dimension of a term: a product's factors multiplied out (canonical, so in any order), with an
    explicit stack, since a factor may be a product in turn."""
    if not isinstance(term, DimProd):
        return term if isinstance(term, int) else names[term]
    factors: list[ir.Dim] = []
    stack: list[DimTerm] = [term]
    while stack:
        current = stack.pop()
        if isinstance(current, DimProd):
            stack.extend(current.factors)
        else:
            factors.append(current if isinstance(current, int) else names[current])
    return ir.dim_product(*factors)


def shape(node: Typed, names: Naming) -> ir.Shape:
    return (dimension(node.shape[0], names), dimension(node.shape[1], names))


def _chain(node: Typed, ops: tuple[str, ...]) -> list[tuple[Typed, bool]]:
    """The operands of a chain like (a + b) - c, left to right, each with whether it is subtracted.

    The typed tree pairs operands so that errors can name them; walking the chain without
    recursion keeps a sum of 10,000 terms as shallow as a sum of two.
    """
    operands = []
    while node.op in ops:
        operands.append((node.children[1], node.op == "sub"))
        node = node.children[0]
    operands.append((node, False))
    return operands[::-1]


def _operands(node: Typed) -> list[tuple[Typed, bool]]:
    ops = _CHAINS.get(node.op)
    return _chain(node, ops) if ops else [(child, False) for child in node.children]


def _convert(node: Typed, args: list[ir.Expr], names: Naming) -> ir.Expr:
    """The IR of one typed node, given its operands' IR."""
    op = node.op
    if op == "num":
        return ir.Num(node.payload)  # type: ignore[arg-type]
    if op == "var":
        name, symmetric, positive_definite = node.payload  # type: ignore[misc]
        return ir.Var(name, shape(node, names), symmetric, positive_definite)
    if op == "constant":
        return ir.Constant(node.payload)  # type: ignore[arg-type]
    if op == "identity":
        return ir.identity(dimension(node.shape[0], names))
    if op == "size":
        return ir.size(dimension(node.payload, names))  # type: ignore[arg-type]
    if op == "fill":
        return ir.fill(node.payload, shape(node, names))  # type: ignore[arg-type]
    if op in _CONSTRUCTORS:
        return _CONSTRUCTORS[op](*args)
    if op == "div":
        return ir.mul(args[0], ir.reciprocal(args[1]))
    if op == "call":
        if node.payload == "vec":  # canonical: a column vector is its own vec, a row vector's its transpose
            return ir.vec(args[0])
        return ir.func(node.payload, args[0])  # type: ignore[arg-type]
    if op == "axis_call":
        name, axis = node.payload  # type: ignore[misc]
        return ir.func(name, args[0], axis)
    if op == "spread":  # a broadcast operand: a scalar at every entry, a column in every column, a row in every row
        rows, cols = shape(node, names)
        if node.payload == "entries":
            return ir.mul(args[0], ir.ones((rows, cols)))
        if node.payload == "columns":
            return ir.mul(args[0], ir.transpose(ir.ones((cols, 1))))
        return ir.mul(ir.ones((rows, 1)), args[0])
    if op == "commutation":
        rows, cols = node.payload  # type: ignore[misc]
        return ir.commutation(dimension(rows, names), dimension(cols, names))
    raise AssertionError(f"unknown typed op {op}")


def lower(root: Typed, names: Naming) -> ir.Expr:
    """The IR of a typed tree; `names` is the dimension naming, computed once for a program's statements."""
    # children first, with an explicit stack: a long chain like a ./ b ./ c ... needs no recursion
    done: dict[int, ir.Expr] = {}
    stack: list[tuple[Typed, bool]] = [(root, False)]
    while stack:
        node, ready = stack.pop()
        if id(node) in done:
            continue
        parts = _operands(node)
        if not ready:
            stack.append((node, True))
            stack.extend((child, False) for child, _ in parts)
            continue
        args = [ir.neg(done[id(child)]) if minus else done[id(child)] for child, minus in parts]
        done[id(node)] = _convert(node, args, names)
    result = done[id(root)]
    if ir.depth(result) > MAX_DEPTH:
        raise ParseError(f"the expression is nested deeper than {MAX_DEPTH:,} levels "
                         f"(a chain such as a ./ b ./ c ... counts one level per operator)")
    return result


def declared_symbols(symbols: dict[str, SymbolInfo], names: Naming, dimensions: Declarations) -> Declarations:
    """The inferred type and shape of every symbol, as declarations (for messages and round trips), followed
    by the `dimensions` (declared, or named in commutation(m, n))."""
    out: Declarations = {}
    for name, info in symbols.items():
        dims = [dimension(term, names) for term in info.shape]
        if info.kind == "scalar":
            out[name] = Declaration(name, "scalar")
        elif info.kind == "vector":
            out[name] = Declaration(name, "vector", (dims[0],))
        elif info.kind in SYMMETRIC_KINDS:  # spd(n) prints back as declared
            out[name] = Declaration(name, info.kind, (dims[0],))
        else:
            out[name] = Declaration(name, "matrix", tuple(dims))
    out.update(dimensions)
    return out
