"""Derivatives of a typed function: the differential, a reader, the conventions of the spec, simplification.

Each function returns the result with the steps that led to it (the derivation `--steps` shows).
"""

from __future__ import annotations

import dataclasses

from ..core import ir
from ..core.errors import ParseError, UnsupportedError
from ..core.ir import Differential, Expr, Var
from ..rules.simplify import simplify
from .differential import differential
from .readers import adjoints_of_linear, gradient_from_differential, vec_jacobian
from .spec import Claim, ClaimKind, DerivativeSpec, Kind, Step

# what the matrix a derivative's steps identify is, by its kind (spec.Claim)
_CLAIMS: dict[Kind, ClaimKind] = {Kind.GRADIENT: "gradient", Kind.JACOBIAN: "jacobian", Kind.DERIVATIVE: "jacobian"}


def derivative_from_differential(df: Expr, variable: Var, output_shape: ir.Shape) -> Expr:
    """Read the derivative off df, for every case whose result is a scalar, vector or matrix: substitution for a
    scalar variable, reverse accumulation for a scalar function, the Jacobian reader for vectors."""
    if variable.is_scalar:  # df = F dα -> F
        return ir.substitute(df, {Differential(variable): ir.ONE})
    if output_shape == ir.SCALAR:
        return gradient_from_differential(df, variable.shape)
    # the Jacobian reader (and its equal forms, rules/jacobian.py) loads for a vector function only: start-up
    from .jacobian import jacobian_from_differential

    if ir.is_column(variable.shape) and ir.is_column(output_shape):
        return jacobian_from_differential(df, variable.shape[0])
    if ir.is_column(variable.shape) and ir.is_column((output_shape[1], output_shape[0])):
        # a row vector has the Jacobian of its transpose (docs/conventions.md): d(f^T) = (df)^T = J dx
        return jacobian_from_differential(ir.transpose(df), variable.shape[0])
    raise AssertionError("unsupported derivative shapes must be rejected before identification")


def differentiate_vec(function: Expr, variable: Var) -> tuple[Expr, list[Step]]:
    """d vec(F) / d vec(X)^T by the vec reader (Kronecker form), simplified, with its steps."""
    used: list[str] = []
    df = differential(function, variable, used)
    read: list[str] = []
    raw = vec_jacobian(df, variable, read)
    trace: list[str] = []
    result = simplify(raw, trace)
    steps = [Step("differential", df, tuple(used), claim=Claim("differential", function, variable)),
             Step("identified: vec(dF) = J vec(dX)", raw, tuple(read), claim=Claim("jacobian", function, variable))]
    _add_simplified(steps, raw, result, trace, Claim("jacobian", function, variable))
    return result, steps


def _add_simplified(steps: list[Step], raw: Expr, result: Expr, trace: list[str], claim: Claim) -> None:
    """The simplified result as the last step: a line of its own only where simplifying changed something (each
    line of a derivation once)."""
    if trace or result is not raw:  # nodes are interned: an unchanged result is the same node
        steps.append(Step("simplified", result, tuple(trace), claim=claim))


def differentiate_matrix(function: Expr, variable: Var, spec: DerivativeSpec) -> tuple[Expr, list[Step]]:
    """The cookbook's matrix (gradient, Jacobian, derivative w.r.t. a scalar) in the spec's layout, with sym(G)."""
    used: list[str] = []
    df = differential(function, variable, used)
    steps = [Step("differential", df, tuple(used), claim=Claim("differential", function, variable))]
    claim = Claim(_CLAIMS[spec.kind], function, variable)
    try:
        raw = derivative_from_differential(df, variable, function.shape)
        steps.append(Step("identified", raw, ("identification theorem",), claim=claim))
    except UnsupportedError:
        if not (ir.is_vector_shape(function.shape) and ir.is_column(variable.shape)):
            raise
        # a Jacobian the matrix reader cannot write (dx ⊗ x): the vec reader's J, as vec of a vector is the
        # vector (of a row vector, its transpose: the Jacobian of the transpose, as for every row vector)
        read: list[str] = []
        raw = vec_jacobian(df, variable, read)
        steps.append(Step("identified: vec(dF) = J vec(dX)", raw, tuple(read), claim=claim))
    if spec.symmetric_gradient:
        raw = spec.sym(raw)
        claim = Claim("sym_gradient", function, variable)
        steps.append(Step("symmetric gradient sym(G) = (G + G^T)/2", raw, claim=claim))
    trace: list[str] = []
    result = simplify(raw, trace)
    _add_simplified(steps, raw, result, trace, claim)
    if spec.transposed:
        trace = []
        result = simplify(ir.transpose(result), trace)
        steps.append(Step(spec.layout_step, result, tuple(trace), claim=Claim(spec.layout_claim, function, variable)))
    return result, steps


def derivative(function: Expr, variable: Var, spec: DerivativeSpec) -> tuple[Expr, list[Step]]:
    """The derivative the spec asks for: a matrix, or a tensor in vec form."""
    if spec.kind is Kind.TENSOR:
        return differentiate_vec(function, variable)
    return differentiate_matrix(function, variable, spec)


def gradient(function: Expr, variable: Var) -> tuple[Expr, list[Step]]:
    """The gradient as the Hessian differentiates it: without sym(G), in numerator layout."""
    return differentiate_matrix(function, variable, DerivativeSpec(Kind.GRADIENT))


def hessian(function: Expr, variable: Var) -> tuple[Expr, list[Step], bool]:
    """The Hessian of a scalar function: (result, steps, in vec form); w.r.t. a matrix, d vec(G) / d vec(X)^T."""
    matrix = not (variable.is_scalar or ir.is_column(variable.shape))  # 4th order: d vec(G) / d vec(X)^T
    if matrix and variable.symmetric:
        raise UnsupportedError(f"the Hessian w.r.t. the symmetric matrix {variable.name} is not supported yet: "
                               f"its gradient sym(G) lives on symmetric matrices, and its derivative would need "
                               f"the duplication matrix (docs/conventions.md)")
    first, steps = gradient(function, variable)
    steps = [Step("function", function, claim=Claim("value", function)),
             *[dataclasses.replace(s, title=f"gradient, {s.title}") for s in steps]]
    result, second = differentiate_vec(first, variable) if matrix else gradient(first, variable)
    # the Hessian is the Jacobian of the gradient (what `gradient` reads off a vector's differential)
    steps += [dataclasses.replace(s, title=f"Hessian, {s.title}", claim=dataclasses.replace(s.claim, how="jacobian")
                                  if s.claim is not None and s.claim.how == "gradient" else s.claim) for s in second]
    return result, steps, matrix


def linear_map(of: Expr, variable: Var, product: str, taken: set[str]) -> tuple[Var, Expr]:
    """The derivative as a linear map, never the tensor: "jvp", dF at a direction dX (the differential with
    dX := the direction); "vjp", the adjoint of dF at a cotangent G of the output's shape (the gradient reader
    seeded with G). Returns (the direction or cotangent, the map's value)."""
    df = differential(of, variable)
    if product == "jvp":
        direction = Var(ir.fresh_name(f"d{variable.name}", taken), variable.shape)
        return direction, simplify(ir.substitute(df, {ir.Differential(variable): direction}))
    if product == "vjp":
        cotangent = Var(ir.fresh_name("G", taken), of.shape)
        parts = adjoints_of_linear(df, cotangent).get(variable.name, [])
        return cotangent, simplify(ir.add(*parts)) if parts else ir.zeros(variable.shape)
    raise ParseError(f"product must be 'jvp' or 'vjp', not {product!r}")
