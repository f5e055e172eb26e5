"""Common-subexpression naming for printing: a result as definitions plus a body.

A subexpression that would be printed more than once and is more than a few tokens long gets a name
(`s = sigmoid(W x + b)`), and every use refers to it, so that a result whose DAG is linear in size
prints in linear size. Names follow what the node is (the first letter of its function, upper case for
a matrix) and avoid every name the input uses.
"""

from __future__ import annotations

from ..core import ir
from ..core.ir import Bindings, Expr, Func, Var, fresh_name
from .text import shared_across, shared_subexpressions

MIN_NAMED_SIZE = 5  # printed tokens: `X^T X` stays inline, `softmax(W x)` is named


def _base_name(e: Expr) -> str:
    """The first letter of the node's function (u otherwise), upper case for a matrix; never I (the identity)."""
    letter = e.name[0] if isinstance(e, Func) else "u"
    rows, cols = e.shape
    name = letter.upper() if rows != 1 and cols != 1 else letter
    return "U" if name in ir.RESERVED_NAMES else name


def name_shared(e: Expr, taken: set[str], min_size: int = MIN_NAMED_SIZE,
                given: dict[Expr, str] | None = None) -> tuple[Bindings, Expr]:
    """(definitions, body): e with each repeated subexpression named, definitions before their uses.

    `given` names subexpressions in advance (a program's own definitions, by their inlined values): each
    that occurs in e keeps its name, however often it occurs.
    """
    given = given or {}
    order = ir.postorder(e)
    used = set(taken) | set(given.values())
    names: dict[int, Var] = {id(node): Var(given[node], node.shape) for node in order
                             if node is not e and node in given}
    for node in shared_subexpressions(e, min_size):
        if id(node) not in names:
            name = fresh_name(_base_name(node), used)
            used.add(name)
            names[id(node)] = Var(name, node.shape)
    return bind_names(e, names, order)


def bind_names(e: Expr, names: dict[int, Var], order: list[Expr] | None = None) -> tuple[Bindings, Expr]:
    """(definitions, body): e with each node named in `names` (by id) replaced by its name, each name defined
    as its node over the names below it, children first. A name stands exactly where its node stood
    (ir.with_children): no smart constructor reruns over the nodes above it."""
    if not names:
        return (), e
    order = ir.postorder(e) if order is None else order
    form: dict[int, Expr] = {}  # each node with its named children referred to by name
    for node in order:
        children = node.children
        new_children = tuple(names.get(id(child)) or form[id(child)] for child in children)
        changed = any(new is not old for new, old in zip(new_children, children, strict=True))
        form[id(node)] = ir.with_children(node, new_children) if changed else node
    bindings = tuple((names[id(node)].name, form[id(node)]) for node in order if id(node) in names)
    return bindings, form[id(e)]


def name_shared_lines(lines: Bindings, results: list[Expr], taken: set[str], printed: set[str] | None = None,
                      min_size: int = MIN_NAMED_SIZE) -> tuple[Bindings, list[Expr]]:
    """(lines, results) of a listing (a program's definitions and adjoints, each over the names before it, then the
    results it computes) with each subexpression that would be printed more than once over all of them named
    once, in a line of its own before its first use; a line's value met again later is that line's name. Only the
    lines named in `printed` (all by default) count and change: the others (a loss the gradients do not use) are
    kept as they are.

    A backward pass writes the local derivative of a definition in terms of the definition's value (a layer norm's
    centred input and its scale, a GELU's derivative in three gradients): named, each prints once.
    """
    shown = [(name, value) for name, value in lines if printed is None or name in printed]
    roots = [value for _, value in shown] + list(results)
    fresh = shared_across(roots, min_size, frozenset(value for _, value in shown))
    used = set(taken) | {name for name, _ in lines}
    names: dict[int, Var] = {}
    for node in fresh:
        name = fresh_name(_base_name(node), used)
        used.add(name)
        names[id(node)] = Var(name, node.shape)
    fresh_names = {var.name for var in names.values()}
    defined: set[str] = set()
    known = dict(names)  # the fresh names, and the values of the lines written so far by their lines' names
    out: list[tuple[str, Expr]] = []

    def written(e: Expr, line: bool) -> Expr:
        own = known.pop(id(e), None) if line else None  # a line's own value is written out, not referred to
        definitions, body = bind_names(e, known)
        if own is not None:
            known[id(e)] = own
        for name, value in definitions:
            if name in fresh_names and name not in defined:
                defined.add(name)
                out.append((name, value))
        return names.get(id(e), body) if not line else body  # a result another line uses is its name

    for name, value in lines:
        if printed is not None and name not in printed:
            out.append((name, value))
            continue
        out.append((name, written(value, True)))
        known.setdefault(id(value), Var(name, value.shape))  # the first line with this value names it
    bodies = [written(result, False) for result in results]
    return tuple(out), bodies
