"""The chain rule as Parr & Howard teach it, as derivation steps (`--steps chain`).

Their four steps: (1) introduce intermediate variables, one per operator or function application (for a program,
the user's own definitions); (2) the derivative of each w.r.t. its parameters, the local derivatives; (3) combine
them by the vector chain rule, a product of Jacobians in order (a sum over the parameters holding the variable:
the total derivative); (4) substitute the intermediate variables back and simplify.

Every derivative here is a Jacobian of the vecs, d vec(F) / d vec(X)^T: of a scalar w.r.t. a vector it is the
row (1×n, the transpose of the gradient), of vectors the m×n Jacobian, and where F or X is a matrix a tensor of
order 3 or more in vec form (Kronecker products), so that one product rule holds for all of them. The local
derivatives come from the engine itself (calculus/derive.py), so they are right by construction; each step still
carries its claim (spec.Claim), and the tests check every one against finite differences.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from ..core import ir
from ..core.errors import UnsupportedError
from ..core.ir import Bindings, Expr, Var
from ..rules.simplify import simplify
from . import derive
from .spec import Claim, ClaimKind, DerivativeSpec, Kind, Partial, Step, kind_of

INTERMEDIATES = "1. intermediate variables"
LOCAL = "2. local derivatives"
PRODUCTS = "3. the chain rule: the product of the Jacobians, in order"
RESULT = "4. substitute back and simplify"
RESULT_OVER_NAMES = "4. simplify (the program's own definitions stay by name: nothing to substitute back)"

MAX_INTERMEDIATES = 400  # past this many, the chain method would print pages: it says so instead


def shape_text(shape: ir.Shape) -> str:
    """1×1, n×1, m×n·k: a shape as the notes write it."""
    return f"{shape[0]}×{shape[1]}"


def _vec_size(e: Expr) -> ir.Dim:
    return ir.dim_product(*e.shape)


def is_matrix(e: Expr) -> bool:
    """Neither a scalar nor a vector: its derivatives are written with vec."""
    return not ir.is_vector_shape(e.shape) and not e.is_scalar


def partial(of: str, of_expr: Expr, wrt: Var, total: bool = False) -> Partial:
    return Partial(of, wrt.name, is_matrix(of_expr), is_matrix(wrt), total)


def jacobian_of_vecs(f: Expr, v: Var) -> Expr:
    """d vec(f) / d vec(v)^T by the engine: a scalar's gradient as a row (vec(G)^T), a Jacobian as it is, an
    entrywise derivative as a column (vec(D)), anything larger by the vec reader."""
    kind = kind_of(f, v)
    if kind is Kind.DERIVATIVE:
        d, _ = derive.derivative(f, v, DerivativeSpec(kind))
        return simplify(ir.vec(d))
    if kind is Kind.GRADIENT:
        g, _ = derive.derivative(f, v, DerivativeSpec(kind))
        return simplify(ir.transpose(ir.vec(g)))
    if kind is Kind.JACOBIAN:
        j, _ = derive.derivative(f, v, DerivativeSpec(kind))  # of a row vector, its transpose's: vec(f)'s
        return j
    j, _ = derive.differentiate_vec(f, v)
    return j


def kind_note(f: Expr, v: Expr, j: Expr, elementwise: bool, names: tuple[str, str] = ("F", "X")) -> str:
    """The kind of a local derivative, in the notes' words, with its shape."""
    shape = shape_text(j.shape)
    if f.is_scalar and v.is_scalar:
        return "scalar derivative"
    if f.is_scalar and ir.is_vector_shape(v.shape):
        if ir.is_ones(ir.transpose(j)):
            return f"a row of ones 1^T (sum reduction), {shape}"
        return f"the gradient as a row, its transpose, {shape}"
    if f.is_scalar:
        return f"gradient, written as the row vec(G)^T, {shape}"
    if v.is_scalar:
        return f"derivative w.r.t. a scalar, a column, {shape}"
    if ir.is_vector_shape(f.shape) and ir.is_column(v.shape):
        if isinstance(j, ir.Identity):
            return f"identity Jacobian I, {shape}"
        if elementwise and (ir.is_call("diag")(j) or isinstance(j, ir.Identity) or _scaled_diag(j)):
            return f"diagonal Jacobian (element-wise operator), {shape}"
        return f"Jacobian, {shape}"
    order = len([d for d in f.shape if d != 1]) + len([d for d in v.shape if d != 1])
    which = {3: "a 3rd-order", 4: "a 4th-order"}.get(order, f"an order-{order}")
    against = "w.r.t. a matrix" if is_matrix(v) else "of a matrix"
    return f"{which} tensor ({against}), in vec form: vec(d{names[0]}) = J vec(d{names[1]}), {shape}"


def _scaled_diag(j: Expr) -> bool:
    _, _, chain = ir.split_product(j)
    return len(chain) == 1 and (ir.is_call("diag")(chain[0]) or isinstance(chain[0], ir.Identity))


_ELEMENTWISE = (ir.Hadamard, ir.ElemDiv, ir.ElemPower, ir.Add)


def _is_elementwise(definition: Expr) -> bool:
    from ..core.functions import FUNCTIONS

    if isinstance(definition, _ELEMENTWISE):
        return True
    if isinstance(definition, ir.Func) and not definition.axis:
        spec = FUNCTIONS.get(definition.name)
        return spec is not None and spec.kind == "elementwise"
    return isinstance(definition, ir.MatMul) and sum(1 for f in definition.factors if not f.is_scalar) <= 1


def _absorbed(node: Expr) -> bool:
    """A node written inside its parent's definition, not named: a transpose (w^T) or a negated or scaled single
    factor (-x), which Parr & Howard do not make an intermediate variable of their own."""
    if isinstance(node, ir.Transpose):  # its Jacobian of the vecs is I for a vector: written in its parent
        return True
    if isinstance(node, ir.MatMul):
        _, scalars, chain = ir.split_product(node)
        return not scalars and len(chain) == 1 and (not chain[0].children or _absorbed(chain[0]))
    return False


def _dependent(e: Expr, names: set[str]) -> set[int]:
    """The nodes of e that depend on one of the variables `names` (children first: linear in e)."""
    out: set[int] = set()
    for node in ir.postorder(e):
        if (isinstance(node, Var) and node.name in names) or any(id(c) in out for c in node.children):
            out.add(id(node))
    return out


def binary_products(function: Expr, names: set[str]) -> tuple[Expr, set[int]]:
    """The function with each product of several factors that depend on the variable written as nested binary
    products, as Parr & Howard introduce one intermediate per binary operator: x^T A x is x^T (A x), so that
    u1 = A x and y = x^T u1 (a constant factor stays with the factor after it). Returns it with its dependent
    nodes. The nested products are built as nodes (no normal form runs), one level at a time, without recursion."""
    dependent = _dependent(function, names)
    mapped: dict[int, Expr] = {}
    for node in ir.postorder(function):
        children = tuple(mapped[id(c)] for c in node.children)
        new = ir.with_children(node, children) if any(a is not b for a, b in zip(children, node.children,
                                                                                     strict=True)) else node
        held = [c for c in children if id(c) in dependent or (c is not node and _holds(c, names))]
        if isinstance(node, ir.MatMul | ir.Hadamard) and len(held) > 1:
            groups: list[list[Expr]] = []
            pending: list[Expr] = []
            for child in children:  # each group: the constant factors before a dependent one, then it
                pending.append(child)
                if _holds(child, names):
                    groups.append(pending)
                    pending = []
            groups[-1].extend(pending)
            cls = type(node)
            parts = [g[0] if len(g) == 1 else cls(tuple(g)) for g in groups]
            nested = parts[-1]
            for part in reversed(parts[:-1]):
                nested = cls((part, nested))
            new = nested
        mapped[id(node)] = new
    result = mapped[id(function)]
    return result, _dependent(result, names)


def _holds(e: Expr, names: set[str]) -> bool:
    return any(name in names for name in ir.variables(e))


def intermediates(function: Expr, variables: list[Var], taken: set[str]) -> Bindings:
    """One intermediate variable per operator or function application that depends on a variable, in the order
    they are computed, each defined over the earlier ones; the last is the function itself (named y)."""
    function, dependent = binary_products(function, {v.name for v in variables})
    nodes = ir.postorder(function)
    named = [n for n in nodes if id(n) in dependent and n.children and (not _absorbed(n) or n is function)]
    if len(named) > MAX_INTERMEDIATES:
        raise UnsupportedError(f"the chain method would introduce {len(named)} intermediate variables; it is "
                               f"written for expressions of at most {MAX_INTERMEDIATES} operations (try --steps)")
    used = set(taken)
    output = next((c for c in ("y", "f", "z") if c not in used), None) or ir.fresh_name("y", used)
    used.add(output)
    label: dict[int, Var] = {}
    for n, node in enumerate(named[:-1], start=1):
        name = ir.fresh_name(f"u{n}", used)
        used.add(name)
        label[id(node)] = Var(name, node.shape)
    if named:
        label[id(named[-1])] = Var(output, function.shape)
    mapped: dict[int, Expr] = {}
    bindings: list[tuple[str, Expr]] = []
    for node in nodes:
        children = tuple(mapped[id(c)] for c in node.children)
        own = ir.with_children(node, children) if node.children else node
        if id(node) in label:
            bindings.append((label[id(node)].name, own))
            mapped[id(node)] = label[id(node)]
        else:
            mapped[id(node)] = own
    if not bindings:  # the function is a leaf (x itself)
        bindings.append((output, function))
    return tuple(bindings)


@dataclass(frozen=True)
class _Local:
    name: str  # the intermediate differentiated
    arg: Var  # its parameter
    jacobian: Expr


def _shape_product(factors: list[Expr]) -> str:
    return " times ".join(shape_text(f.shape) for f in factors)


def chain_steps(bindings: Bindings, variables: list[Var], results: dict[str, tuple[Expr, str | Partial]],
                section_prefix: str = "", result_claim: ClaimKind = "result", row: bool = False,
                keep_names: bool = False) -> list[Step]:
    """The chain method's steps over `bindings` (the intermediate variables). `keep_names`: they are a program's own
    definitions, which stay by name in the result (the results are written over them)."""
    """The four steps over `bindings` (intermediate variables, the last being the function), for each variable:
    `results` gives, by variable name, the engine's result and what it is ("gradient", "Jacobian", ...)."""
    prefix = f"{section_prefix}: " if section_prefix else ""
    defined = dict(bindings)
    targets = {v.name: v for v in variables}
    values = ir.definition_values(bindings)
    depends: set[str] = set(targets)
    for name, value in bindings:
        if any(n in depends for n in ir.variables(value)):
            depends.add(name)
    steps: list[Step] = []
    for name, value in bindings:
        steps.append(Step("intermediate", value, section=prefix + INTERMEDIATES, lhs=(name,),
                          note=_value_note(value), claim=Claim("value", values[name])))
    locals_: dict[str, list[_Local]] = {}
    for name, value in bindings:
        if name not in depends:
            continue
        own = Var(name, value.shape)
        for arg_name, arg in ir.variables(value).items():
            if arg_name not in depends:
                continue
            j = jacobian_of_vecs(value, arg)
            # the intermediate's own value by its name: ∂y/∂u = diag(y .* (1 - y)) for y = sigmoid(u)
            j = ir.substitute(j, {value: own}) if value.children else j
            locals_.setdefault(name, []).append(_Local(name, arg, j))
            steps.append(Step("local derivative", j, section=prefix + LOCAL,
                              lhs=(partial(name, value, arg),),
                              note=kind_note(value, arg, j, _is_elementwise(value), (name, arg_name)),
                              claim=Claim("jacobian", value, arg)))
    output_name, output = bindings[-1]
    for variable in variables:
        which = f" (w.r.t. {variable.name})" if len(variables) > 1 else ""
        total: dict[str, Expr] = {variable.name: ir.identity(_vec_size(variable)) if not variable.is_scalar
                                  else ir.ONE}
        for name, value in bindings:
            parts = [local for local in locals_.get(name, []) if local.arg.name in total]
            if not parts:
                continue
            via: list[tuple[Partial, ...]] = []
            products: list[Expr] = []
            shapes: list[str] = []
            for local in parts:
                if local.arg.name == variable.name:
                    via.append((partial(name, value, local.arg),))
                    products.append(local.jacobian)
                    continue
                arg_value = defined[local.arg.name]
                via.append((partial(name, value, local.arg), partial(local.arg.name, arg_value, variable, True)))
                products.append(ir.mul(local.jacobian, total[local.arg.name]))
                shapes.append(_shape_product([local.jacobian, total[local.arg.name]]))
            combined = simplify(ir.add(*products))
            total[name] = combined
            note = shape_text(combined.shape) if not shapes else f"{'; '.join(shapes)} is {shape_text(combined.shape)}"
            steps.append(Step("chain rule", combined, section=prefix + PRODUCTS + which,
                              lhs=(partial(name, value, variable, True),), via=tuple(via) if len(via) > 1 or
                              len(via[0]) > 1 else (), note=note, claim=Claim("jacobian", values[name], variable)))
        final = total.get(output_name)  # None: the function does not depend on the variable
        function = values[output_name]
        result, what = results[variable.name]
        if isinstance(what, Partial):  # a tensor's result: ∂y/∂vec(W)^T, by the function's own name
            what = dataclasses.replace(what, of=output_name, total=True)
        if final is not None and not keep_names:
            substituted = simplify(ir.inline(bindings, final))
            steps.append(Step("substituted back", substituted, section=prefix + RESULT + which,
                              lhs=(partial(output_name, output, variable, True),),
                              note="the intermediate variables replaced by their definitions",
                              claim=Claim("jacobian", function, variable)))
        steps.append(Step("result", result, section=prefix + (RESULT_OVER_NAMES if keep_names else RESULT) + which,
                          lhs=(what,),
                          note=_result_note(output, variable, final is not None, row, keep_names),
                          claim=Claim(result_claim, function, variable)))
    return steps


def _value_note(value: Expr) -> str:
    if value.is_scalar:
        return "scalar"
    if ir.is_vector_shape(value.shape):
        return f"vector, {shape_text(value.shape)}"
    return f"matrix, {shape_text(value.shape)}"


PRINTS = ": as the engine prints it"


def _result_note(output: Expr, variable: Var, depends: bool = True, row: bool = False, keep_names: bool = False) -> str:
    """Where the engine's result comes from; `row`: a scalar's derivative in the Jacobian layout (the row itself);
    `keep_names`: written over the program's own definitions."""
    if not depends:
        return f"the function does not depend on {variable.name}: zero, as the engine prints it"
    if keep_names:
        return _result_note(output, variable, depends, row).replace(PRINTS, f", over the program's own names{PRINTS}")
    if row and ir.is_column(variable.shape):
        return "the row above, in the Jacobian layout: as the engine prints it"
    if row:
        return (f"vec(G)^T above, reshaped like {variable.name} and transposed "
                f"({shape_text((variable.shape[1], variable.shape[0]))}), in the Jacobian layout: as the engine "
                "prints it")
    if output.is_scalar and variable.symmetric and not ir.is_vector_shape(variable.shape):
        return (f"G from vec(G)^T above, and as {variable.name} is symmetric its symmetric part sym(G) = "
                f"(G + G^T)/2: as the engine prints it")
    if output.is_scalar and ir.is_column(variable.shape):
        return (f"the transpose of the row above, shaped like {variable.name} ({shape_text(variable.shape)}): "
                "as the engine prints it")
    if output.is_scalar and not variable.is_scalar:
        return f"vec(G)^T above, reshaped like {variable.name} ({shape_text(variable.shape)}): as the engine prints it"
    return "simplified: as the engine prints it"


def chain_derivation(function: Expr, program: Bindings, variables: list[Var],
                     results: dict[str, tuple[Expr, str | Partial]],
                     taken: set[str], gradient: Expr | None = None, row: bool = False) -> list[Step]:
    """The chain method for a function (or a program: its definitions are the intermediate variables) and each
    variable. For a Hessian, `gradient` is the engine's gradient: the four steps give it, then the chain rule
    applied to the gradient gives the Hessian (`results` holds the Hessian). `row`: the results are a scalar's
    derivative in the Jacobian layout (the gradient transposed)."""
    taken = {*taken, *ir.variables(function), *(name for name, _ in program)}
    if len(program) > MAX_INTERMEDIATES:
        raise UnsupportedError(f"the chain method would multiply the Jacobians of {len(program)} definitions; it is "
                               f"written for programs of at most {MAX_INTERMEDIATES} (try --steps)")
    bindings = program if program else intermediates(function, variables, taken)
    if gradient is None:
        return chain_steps(bindings, variables, results, row=row, keep_names=bool(program))
    (variable,) = variables
    steps = chain_steps(bindings, variables, {variable.name: (gradient, "gradient")}, "the gradient", "gradient")
    taken |= {name for name, _ in bindings}
    second = _renamed(intermediates(gradient, variables, taken), "v", taken)
    return steps + chain_steps(second, variables, results, "the Hessian, the chain rule applied to the gradient g")


def _renamed(bindings: Bindings, letter: str, taken: set[str]) -> Bindings:
    """The intermediate variables of the gradient renamed v1, v2, ..., the last g: apart from the function's."""
    used = set(taken)
    mapping: dict[Expr, Expr] = {}
    out: list[tuple[str, Expr]] = []
    for n, (name, value) in enumerate(bindings, start=1):
        new = ir.fresh_name("g" if n == len(bindings) else f"{letter}{n}", used)
        used.add(new)
        value = ir.substitute(value, mapping) if mapping else value
        mapping[Var(name, value.shape)] = Var(new, value.shape)
        out.append((new, value))
    return tuple(out)
