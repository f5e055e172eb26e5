"""Gradients of programs by reverse accumulation over their definitions (backpropagation).

A program is a list of definitions `name = expr`, each expression referring to earlier definitions
by name (an opaque leaf `Var(name, shape)`), the last one being the scalar output. The backward pass
walks the definitions in reverse order. Each definition h = f(u, W, ...) with adjoint G = dL/dh
passes to each of its inputs u the gradient of <G, f> w.r.t. u, read off the differential of f by
the same adjoint identities as a single expression (differentiate.adjoints_of_linear). An input used
by several definitions sums what each passes it, so a residual network's h_k, used twice per layer,
costs two local gradients, not one per path. A non-trivial adjoint is named (`g_h = ...`) and later
definitions refer to it by that name, so every line stays the size of one definition and the whole
gradient is linear in the size of the program.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..core import ir
from ..core.ir import Bindings, Expr, Var, fresh_name
from ..rules.simplify import simplify
from .differential import differential
from .readers import adjoints_of_linear
from .spec import DerivativeSpec, Kind


@dataclass(frozen=True)
class Backward:
    """The result of one backward pass: named adjoints and, for each variable, its gradient.

    `adjoints` are definitions `g_h = ...` in the order they are computed (the output first); the
    gradients and adjoints refer to forward definitions and to earlier adjoints by name.
    """

    adjoints: Bindings
    gradients: dict[str, Expr]
    # the differential rules behind each adjoint and each gradient, by its name (g_h, or the variable's)
    rules: dict[str, tuple[str, ...]] = field(default_factory=dict)


def _is_leaf(e: Expr) -> bool:
    return not e.children


def dependents(bindings: Bindings, targets: set[str]) -> set[str]:
    """The defined names whose value depends on one of `targets` (through earlier definitions)."""
    depends: set[str] = set(targets)
    for name, expr in bindings:
        if any(v in depends for v in ir.variables(expr)):
            depends.add(name)
    return depends - targets


def backpropagate(bindings: Bindings, targets: list[Var], taken: set[str]) -> Backward:
    """Gradients of the scalar output (the last definition) w.r.t. each target, in one backward pass.

    A target declared symmetric gets sym(G) = (G + G^T)/2, as for a single expression. `taken` holds every
    name the program uses; adjoint names avoid them.
    """
    output_name, output = bindings[-1]
    if output.shape != ir.SCALAR:
        raise ValueError("backpropagation needs a scalar output")
    target_names = {t.name for t in targets}
    varying = dependents(bindings, target_names)
    wanted = varying | target_names
    contributions: dict[str, list[Expr]] = {output_name: [ir.ONE]}
    adjoints: list[tuple[str, Expr]] = []
    used_names = set(taken)
    rules: dict[str, list[str]] = {}  # input name -> the rules its local gradients used
    named_rules: dict[str, tuple[str, ...]] = {}
    for name, expr in reversed(bindings):
        parts = contributions.pop(name, None)
        if parts is None or (name not in varying and name != output_name):
            continue
        total = simplify(ir.add(*parts))
        if _is_leaf(total) or name == output_name:
            seed = total
        else:
            adjoint_name = fresh_name(f"g_{name}", used_names)
            used_names.add(adjoint_name)
            adjoints.append((adjoint_name, total))
            named_rules[adjoint_name] = tuple(dict.fromkeys(rules.get(name, [])))
            seed = Var(adjoint_name, total.shape)
        for input_name, variable in ir.variables(expr).items():
            if input_name not in wanted:
                continue
            # the definition's own value by its name: d tanh(u) = (1 - h.^2) .* du for h = tanh(u)
            df = ir.substitute(differential(expr, variable, rules.setdefault(input_name, [])),
                               {expr: Var(name, expr.shape)})
            for contribution in adjoints_of_linear(df, seed).get(input_name, []):
                contributions.setdefault(input_name, []).append(contribution)
    gradients: dict[str, Expr] = {}
    for target in targets:
        parts = contributions.get(target.name)
        gradient = ir.add(*parts) if parts else ir.zeros(target.shape)
        gradient = DerivativeSpec(Kind.GRADIENT, symmetric=target.symmetric).sym(gradient)
        gradients[target.name] = simplify(gradient)
        named_rules[target.name] = tuple(dict.fromkeys(rules.get(target.name, [])))
    return Backward(tuple(adjoints), gradients, named_rules)


def needed_bindings(bindings: Bindings, roots: list[Expr]) -> Bindings:
    """The definitions the roots refer to, directly or through other definitions, in program order."""
    defined = dict(bindings)
    needed: set[str] = set()
    stack = [name for root in roots for name in ir.variables(root) if name in defined]
    while stack:
        name = stack.pop()
        if name in needed:
            continue
        needed.add(name)
        stack.extend(n for n in ir.variables(defined[name]) if n in defined and n not in needed)
    return tuple((name, expr) for name, expr in bindings if name in needed)
