"""Stage 3: differentiate by matrix differentials, then identify the derivative.

1. `differential(f, X)`: df, an expression linear in the placeholder dX, by the rules of
   DIFFERENTIAL_RULES (product rule, chain rule through every function, ...). Every
   intermediate differential has the shape of its node, so no 3rd-order tensor ever appears.
2. Identification (Magnus & Neudecker) reads the derivative off df:
   - scalar f:  df = <G, dX> = sum(G .* dX)  -> the gradient G, by reverse accumulation;
   - vector f, vector x:  df = J dx  -> the Jacobian J, by forward accumulation;
   - scalar variable:  df = F dα  -> F, by setting dα = 1.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from . import ir
from .errors import UnsupportedError
from .functions import ELEMENTWISE
from .ir import (
    Add,
    Differential,
    ElemDiv,
    ElemPower,
    Expr,
    Fill,
    Func,
    Hadamard,
    Identity,
    MatMul,
    Num,
    Power,
    Transpose,
    Var,
    add,
    elem_div,
    elem_power,
    func,
    hadamard,
    mul,
    neg,
    num,
    ones,
    power,
    reciprocal,
    sub,
    transpose,
)

# The product rule writes k terms of m factors for a product of m factors, k of which hold the
# variable, so the differential can grow as the square of the input (and a Hessian as the cube).
# Past these limits the result is refused as too large instead of taking minutes.
MAX_DIFFERENTIAL_SIZE = 20_000  # factors written by product rules over several factors holding the variable,
# beyond four times the input's size
MAX_MATRIX_POWER = 64  # d(X^k) has k terms

# ---------------------------------------------------------------- element-wise derivatives


@dataclass(frozen=True)
class ElementwiseRule:
    name: str
    statement: str
    differential: Callable[[Expr, Expr], Expr]  # (u, du) -> d f(u)


def _square(u: Expr) -> Expr:
    return elem_power(u, num(2))


def _one_minus(u: Expr) -> Expr:
    return sub(ones(u.shape), u)


ELEMENTWISE_RULES: dict[str, ElementwiseRule] = {
    rule.name: rule
    for rule in [
        ElementwiseRule("exp", "d exp(u) -> exp(u) .* du", lambda u, du: hadamard(func("exp", u), du)),
        ElementwiseRule("log", "d log(u) -> du ./ u", lambda u, du: elem_div(du, u)),
        ElementwiseRule("sin", "d sin(u) -> cos(u) .* du", lambda u, du: hadamard(func("cos", u), du)),
        ElementwiseRule("cos", "d cos(u) -> -sin(u) .* du", lambda u, du: neg(hadamard(func("sin", u), du))),
        ElementwiseRule("tan", "d tan(u) -> du ./ cos(u).^2", lambda u, du: elem_div(du, _square(func("cos", u)))),
        ElementwiseRule("tanh", "d tanh(u) -> (1 - tanh(u).^2) .* du",
                        lambda u, du: hadamard(_one_minus(_square(func("tanh", u))), du)),
        ElementwiseRule("sigmoid", "d sigmoid(u) -> sigmoid(u) .* (1 - sigmoid(u)) .* du",
                        lambda u, du: hadamard(func("sigmoid", u), _one_minus(func("sigmoid", u)), du)),
        ElementwiseRule("relu", "d relu(u) -> step(u) .* du", lambda u, du: hadamard(func("step", u), du)),
        ElementwiseRule("softplus", "d softplus(u) -> sigmoid(u) .* du",
                        lambda u, du: hadamard(func("sigmoid", u), du)),
        ElementwiseRule("sqrt", "d sqrt(u) -> du ./ (2 sqrt(u))",
                        lambda u, du: elem_div(du, mul(num(2), func("sqrt", u)))),
        ElementwiseRule("abs", "d abs(u) -> sign(u) .* du", lambda u, du: hadamard(func("sign", u), du)),
        ElementwiseRule("sign", "d sign(u) -> 0 (almost everywhere)", lambda u, du: ir.zeros(u.shape)),
        ElementwiseRule("step", "d step(u) -> 0 (almost everywhere)", lambda u, du: ir.zeros(u.shape)),
        ElementwiseRule("arcsin", "d arcsin(u) -> du ./ sqrt(1 - u.^2)",
                        lambda u, du: elem_div(du, func("sqrt", _one_minus(_square(u))))),
        ElementwiseRule("arccos", "d arccos(u) -> -du ./ sqrt(1 - u.^2)",
                        lambda u, du: neg(elem_div(du, func("sqrt", _one_minus(_square(u)))))),
        ElementwiseRule("arctan", "d arctan(u) -> du ./ (1 + u.^2)",
                        lambda u, du: elem_div(du, add(ones(u.shape), _square(u)))),
    ]
}

# ---------------------------------------------------------------- differential rules


@dataclass(frozen=True)
class DifferentialRule:
    """d(node) from the node and the differentials of its children (cookbook, section 2)."""

    name: str
    statement: str
    applies: Callable[[Expr], bool]
    rule: Callable[[Expr, tuple[Expr, ...]], Expr]
    example: tuple[str, str]  # (expression, variable) whose derivative uses the rule


def _is_func(*names: str) -> Callable[[Expr], bool]:
    return lambda e: isinstance(e, Func) and e.name in names


def _leibniz(combine: Callable[..., Expr]) -> Callable[[Expr, tuple[Expr, ...]], Expr]:
    """d(f1 f2 ... fk) = sum_i f1 ... dfi ... fk, for a product built by `combine`."""

    def rule(e: Expr, ds: tuple[Expr, ...]) -> Expr:
        factors = e.children
        terms = [combine(*factors[:i], d, *factors[i + 1 :]) for i, d in enumerate(ds) if not ir.is_zero(d)]
        return add(*terms) if terms else ir.zeros(e.shape)

    return rule


def _elem_div_rule(e: Expr, ds: tuple[Expr, ...]) -> Expr:
    assert isinstance(e, ElemDiv)
    d_numerator, d_denominator = ds
    a, b = e.numerator, e.denominator
    return add(elem_div(d_numerator, b), neg(hadamard(elem_div(a, _square(b)), d_denominator)))


def _power_rule(e: Expr, ds: tuple[Expr, ...]) -> Expr:
    assert isinstance(e, Power)
    d_base, d_exponent = ds
    a, p = e.base, e.exponent
    if not a.is_scalar:  # integer power of a square matrix: sum_i X^i dX X^(k-1-i)
        k = int(p.value)  # type: ignore[attr-defined]
        if abs(k) > MAX_MATRIX_POWER:
            raise UnsupportedError(f"the derivative of a matrix power X^{k} has {abs(k)} terms; "
                                   f"matcalc writes at most {MAX_MATRIX_POWER}")
        return add(*[mul(power(a, num(i)) if i else ir.identity(a.shape[0]), d_base,
                         power(a, num(k - 1 - i)) if k - 1 - i else ir.identity(a.shape[0]))
                     for i in range(k)])
    terms = [mul(p, power(a, add(p, num(-1))), d_base)]
    if not ir.is_zero(d_exponent):
        terms.append(mul(e, func("log", a), d_exponent))
    return add(*terms)


def _elem_power_rule(e: Expr, ds: tuple[Expr, ...]) -> Expr:
    assert isinstance(e, ElemPower)
    d_base, d_exponent = ds
    a, p = e.base, e.exponent
    terms = [] if ir.is_zero(d_base) else [mul(p, hadamard(elem_power(a, add(p, num(-1))), d_base))]
    if not ir.is_zero(d_exponent):
        terms.append(mul(d_exponent, hadamard(e, func("log", a))))
    return add(*terms) if terms else ir.zeros(e.shape)


def _elementwise_rule(e: Expr, ds: tuple[Expr, ...]) -> Expr:
    assert isinstance(e, Func)
    return ELEMENTWISE_RULES[e.name].differential(e.arg, ds[0])


def _det_rule(e: Expr, ds: tuple[Expr, ...]) -> Expr:
    assert isinstance(e, Func)
    return mul(e, func("tr", mul(func("inv", e.arg), ds[0])))


def _logdet_rule(e: Expr, ds: tuple[Expr, ...]) -> Expr:
    assert isinstance(e, Func)
    return func("tr", mul(func("inv", e.arg), ds[0]))


def _inv_rule(e: Expr, ds: tuple[Expr, ...]) -> Expr:
    return neg(mul(e, ds[0], e))


def _norm2_rule(e: Expr, ds: tuple[Expr, ...]) -> Expr:
    assert isinstance(e, Func)
    u, du = e.arg, ds[0]
    return mul(_inner(u, du), reciprocal(e))


def _norm1_rule(e: Expr, ds: tuple[Expr, ...]) -> Expr:
    assert isinstance(e, Func)
    return _inner(func("sign", e.arg), ds[0])


def _softmax_rule(e: Expr, ds: tuple[Expr, ...]) -> Expr:
    du = ds[0]
    return sub(hadamard(e, du), mul(e, transpose(e), du))


def _logsumexp_rule(e: Expr, ds: tuple[Expr, ...]) -> Expr:
    assert isinstance(e, Func)
    return mul(transpose(func("softmax", e.arg)), ds[0])


def _inner(a: Expr, b: Expr) -> Expr:
    """<a, b> = sum(a .* b), written a^T b for column vectors."""
    if a.is_scalar:
        return mul(a, b)
    if ir.is_column(a.shape):
        return mul(transpose(a), b)
    return func("sum", hadamard(a, b))


DIFFERENTIAL_RULES: list[DifferentialRule] = [
    DifferentialRule("sum", "d(A + B) -> dA + dB", lambda e: isinstance(e, Add), lambda e, ds: add(*ds),
                     ("A x + b", "x")),
    DifferentialRule("product", "d(A B) -> dA B + A dB", lambda e: isinstance(e, MatMul), _leibniz(mul),
                     ("x^T A x", "x")),
    DifferentialRule("transpose", "d(A^T) -> (dA)^T", lambda e: isinstance(e, Transpose),
                     lambda e, ds: transpose(ds[0]),
                     ("a^T X^T b", "X")),
    DifferentialRule("hadamard", "d(A .* B) -> dA .* B + A .* dB", lambda e: isinstance(e, Hadamard),
                     _leibniz(hadamard),
                     ("x .* (A x)", "x")),
    DifferentialRule("quotient", "d(A ./ B) -> dA ./ B - (A ./ B.^2) .* dB", lambda e: isinstance(e, ElemDiv),
                     _elem_div_rule,
                     ("x ./ (A x)", "x")),
    DifferentialRule("power", "d(a^p) -> p a^(p-1) da + a^p log(a) dp;  d(X^k) -> sum_i X^i dX X^(k-1-i)",
                     lambda e: isinstance(e, Power), _power_rule,
                     ("(a^T X b)^3 + tr(X^3)", "X")),
    DifferentialRule("elementwise power", "d(A.^p) -> p A.^(p-1) .* dA + dp A.^p .* log(A)",
                     lambda e: isinstance(e, ElemPower), _elem_power_rule,
                     ("sum(x .^ 3)", "x")),
    DifferentialRule("elementwise function", "d f(A) -> f'(A) .* dA (see ELEMENTWISE_RULES)",
                     lambda e: isinstance(e, Func) and e.name in ELEMENTWISE, _elementwise_rule,
                     ("sin(A x)", "x")),
    DifferentialRule("trace", "d tr(A) -> tr(dA)", _is_func("tr"), lambda e, ds: func("tr", ds[0]),
                     ("tr(A X)", "X")),
    DifferentialRule("sum of entries", "d sum(A) -> sum(dA)", _is_func("sum"), lambda e, ds: func("sum", ds[0]),
                     ("sum(X)", "X")),
    DifferentialRule("determinant", "d det(X) -> det(X) tr(inv(X) dX)", _is_func("det"), _det_rule,
                     ("det(X)", "X")),
    DifferentialRule("log-determinant", "d logdet(X) -> tr(inv(X) dX)", _is_func("logdet"), _logdet_rule,
                     ("logdet(X)", "X")),
    DifferentialRule("inverse", "d inv(X) -> -inv(X) dX inv(X)", _is_func("inv"), _inv_rule,
                     ("a^T inv(X) b", "X")),
    DifferentialRule("diag", "d diag(A) -> diag(dA)", _is_func("diag"), lambda e, ds: func("diag", ds[0]),
                     ("a^T diag(x) b", "x")),
    DifferentialRule("norm2", "d norm2(A) -> <A, dA> / norm2(A)", _is_func("norm2"), _norm2_rule,
                     ("norm2(A x - b)", "x")),
    DifferentialRule("norm1", "d norm1(A) -> <sign(A), dA>", _is_func("norm1"), _norm1_rule,
                     ("norm1(X)", "X")),
    DifferentialRule("softmax", "d softmax(u) -> s .* du - s s^T du,  s = softmax(u)", _is_func("softmax"),
                     _softmax_rule,
                     ("softmax(W x)", "x")),
    DifferentialRule("logsumexp", "d logsumexp(u) -> softmax(u)^T du", _is_func("logsumexp"), _logsumexp_rule,
                     ("logsumexp(W x)", "W")),
]


def _leaf_differential(e: Expr, variable: Var) -> Expr | None:
    """Leaves: dX for the variable, 0 for every other leaf."""
    if isinstance(e, Var):
        return Differential(variable) if e.name == variable.name else ir.zeros(e.shape)
    if isinstance(e, Num | Fill | Identity | ir.Size):
        return ir.zeros(e.shape)
    return None


def differential(e: Expr, variable: Var, used: list[str] | None = None) -> Expr:
    """df for f = e: linear in Differential(variable). `used` collects the names of the rules applied."""
    memo: dict[Expr, Expr] = {}
    written = 0
    budget = max(MAX_DIFFERENTIAL_SIZE, 4 * sum(1 for _ in ir.walk(e)))  # a long input may write a long result

    def d(node: Expr) -> Expr:
        nonlocal written
        if node in memo:
            return memo[node]
        leaf = _leaf_differential(node, variable)
        if leaf is not None:
            memo[node] = leaf
            return leaf
        child_ds = tuple(d(child) for child in node.children)
        if all(ir.is_zero(cd) for cd in child_ds):
            result = ir.zeros(node.shape)
        else:
            varying = sum(not ir.is_zero(cd) for cd in child_ds)
            if varying > 1 and isinstance(node, MatMul | Hadamard):  # the product rule's k terms of m factors
                written += varying * len(node.children)
            if written > budget:
                raise UnsupportedError(f"the derivative is too large to write: its differential would have more "
                                       f"than {budget:,} factors (a product of many factors "
                                       f"that all hold {variable.name})")
            rule = next(r for r in DIFFERENTIAL_RULES if r.applies(node))
            if used is not None and rule.name not in used:
                used.append(rule.name)
            result = rule.rule(node, child_ds)
        memo[node] = result
        return result

    return d(e)


# ---------------------------------------------------------------- identification


class _NotLinear(AssertionError):
    """A differential that is not linear in dX: a bug in a differential rule."""


def _split_linear_product(e: MatMul) -> tuple[int, Expr]:
    positions = [i for i, f in enumerate(e.factors) if ir.contains_differential(f)]
    if len(positions) != 1:
        raise _NotLinear(f"product with {len(positions)} factors holding the differential: {e}")
    return positions[0], e.factors[positions[0]]


def gradient_of_linear(t: Expr, seed: Expr, out: list[Expr]) -> None:
    """Append to `out` the G_i with sum_i <G_i, dX> = <seed, t>, for t linear in dX (reverse accumulation)."""
    if not ir.contains_differential(t):
        return
    if isinstance(t, Differential):
        out.append(seed)
    elif isinstance(t, Add):
        for term in t.terms:
            gradient_of_linear(term, seed, out)
    elif isinstance(t, Transpose):  # <S, A^T> = <S^T, A>
        gradient_of_linear(t.arg, transpose(seed), out)
    elif isinstance(t, MatMul):
        position, inner = _split_linear_product(t)
        others = t.factors[:position] + t.factors[position + 1 :]
        if inner.is_scalar:  # <S, f M> = f <S, M>
            gradient_of_linear(inner, _inner(seed, mul(*others)), out)
        else:  # <S, c L F R> = <c L^T S R^T, F>
            chain = [f for f in t.factors if not f.is_scalar]
            k = next(i for i, f in enumerate(chain) if f is inner)
            scalars = [f for f in t.factors if f.is_scalar]
            left = [transpose(f) for f in reversed(chain[:k])]
            right = [transpose(f) for f in reversed(chain[k + 1 :])]
            gradient_of_linear(inner, mul(*scalars, *left, seed, *right), out)
    elif isinstance(t, Hadamard):  # <S, A .* F> = <S .* A, F>
        position = next(i for i, f in enumerate(t.factors) if ir.contains_differential(f))
        others = t.factors[:position] + t.factors[position + 1 :]
        gradient_of_linear(t.factors[position], hadamard(seed, *others), out)
    elif isinstance(t, ElemDiv):  # <S, F ./ B> = <S ./ B, F>
        if ir.contains_differential(t.denominator):
            raise _NotLinear(f"differential in a denominator: {t}")
        gradient_of_linear(t.numerator, elem_div(seed, t.denominator), out)
    elif isinstance(t, Func) and t.name == "tr":  # <s, tr(F)> = <s I, F>
        gradient_of_linear(t.arg, mul(seed, ir.identity(t.arg.shape[0])), out)
    elif isinstance(t, Func) and t.name == "sum":  # <s, sum(F)> = <s 1, F>
        gradient_of_linear(t.arg, mul(seed, ones(t.arg.shape)), out)
    elif isinstance(t, Func) and t.name == "diag":
        arg_shape = t.arg.shape
        if arg_shape == ir.SCALAR:
            gradient_of_linear(t.arg, seed, out)
        elif ir.is_column(arg_shape):  # <S, diag(f)> = <diag(S), f>
            gradient_of_linear(t.arg, func("diag", seed), out)
        elif arg_shape[0] == 1:
            gradient_of_linear(t.arg, transpose(func("diag", seed)), out)
        else:  # <s, diag(F)> = <diag(s), F>
            gradient_of_linear(t.arg, func("diag", seed), out)
    else:
        raise _NotLinear(f"no linear rule for {type(t).__name__} {t}")


def gradient_from_differential(df: Expr, variable_shape: ir.Shape) -> Expr:
    """G with df = <G, dX>, for a scalar df."""
    parts: list[Expr] = []
    gradient_of_linear(df, ir.ONE, parts)
    return add(*parts) if parts else ir.zeros(variable_shape)


def _row_gradient(t: Expr, n: ir.Dim) -> Expr:
    """g^T with t = g^T dx, for a scalar t linear in the column vector dx (n x 1)."""
    return transpose(gradient_from_differential(t, (n, 1)))


def jacobian_from_differential(t: Expr, n: ir.Dim) -> Expr:
    """J with t = J dx, for a column vector t linear in the column vector dx (forward accumulation)."""
    if not ir.contains_differential(t):
        return ir.zeros((t.shape[0], n))
    if isinstance(t, Differential):
        return ir.identity(n)
    if t.is_scalar:
        return _row_gradient(t, n)
    if isinstance(t, Add):
        return add(*[jacobian_from_differential(term, n) for term in t.terms if ir.contains_differential(term)])
    if isinstance(t, MatMul):
        position, inner = _split_linear_product(t)
        others = t.factors[:position] + t.factors[position + 1 :]
        if inner.is_scalar:  # f M -> M (df/dx)^T
            return mul(mul(*others), _row_gradient(inner, n))
        chain = [f for f in t.factors if not f.is_scalar]
        k = next(i for i, f in enumerate(chain) if f is inner)
        scalars = [f for f in t.factors if f.is_scalar]
        left, right = chain[:k], chain[k + 1 :]
        if not right:  # c L F -> c L J(F)
            return mul(*scalars, *left, jacobian_from_differential(inner, n))
        if ir.chain_shape([inner, *right]) == ir.SCALAR:  # c L (F R) with F R a scalar
            return mul(*scalars, *left, _row_gradient(mul(inner, *right), n))
        if ir.chain_shape([*left, inner]) == ir.SCALAR:  # c (L F) R with L F a scalar
            return mul(*scalars, *right, _row_gradient(mul(*left, inner), n))
        if ir.chain_shape(right) == ir.SCALAR:  # c L F (R) with R a scalar -> c R L J(F)
            return mul(*scalars, mul(*right), *left, jacobian_from_differential(inner, n))
        if left and ir.chain_shape(left) == ir.SCALAR:  # c (L) F R with L a scalar -> c L J(F R)
            return mul(*scalars, mul(*left), jacobian_from_differential(mul(inner, *right), n))
        if isinstance(inner, Func) and inner.name == "diag" and ir.is_column(inner.arg.shape) \
                and ir.is_column(ir.chain_shape(right)):  # L diag(f) r = L diag(r) f
            return mul(*scalars, *left, func("diag", mul(*right)), jacobian_from_differential(inner.arg, n))
        if isinstance(inner, Hadamard | ElemDiv) and (u := _diagonal_factor(inner)) is not None:
            # L (B .* diag(u)) R = L diag(diag(B) .* u) R
            return jacobian_from_differential(mul(*scalars, *left, func("diag", u), *right), n)
        if isinstance(inner, Hadamard | ElemDiv) and (expanded := _distribute_over_sum(inner)) is not None:
            return jacobian_from_differential(mul(*scalars, *left, expanded, *right), n)
        outer = _outer_product_in(inner) if ir.is_column(ir.chain_shape(right)) else None
        if outer is not None:  # L (M .* (a b^T)) r = L (a .* (M (b .* r))) = L diag(a) M diag(r) b
            m, a, b = outer
            r = mul(*right)
            if ir.contains_differential(a):
                return mul(*scalars, *left, func("diag", mul(m, hadamard(b, r))), jacobian_from_differential(a, n))
            return mul(*scalars, *left, func("diag", a), m, func("diag", r), jacobian_from_differential(b, n))
        if isinstance(inner, Add):  # L (F1 + F2) R -> L F1 R + L F2 R
            return add(*[jacobian_from_differential(mul(*scalars, *left, term, *right), n)
                         for term in inner.terms if ir.contains_differential(term)])
        if isinstance(inner, Transpose):
            return jacobian_from_differential(mul(*scalars, *left, _push_transpose(inner), *right), n)
    if isinstance(t, Hadamard):  # a .* f -> diag(a) J(f)
        position = next(i for i, f in enumerate(t.factors) if ir.contains_differential(f))
        others = t.factors[:position] + t.factors[position + 1 :]
        return mul(func("diag", hadamard(*others)), jacobian_from_differential(t.factors[position], n))
    if isinstance(t, ElemDiv) and not ir.contains_differential(t.denominator):  # f ./ b -> diag(1 ./ b) J(f)
        return mul(func("diag", elem_div(ones(t.shape), t.denominator)),
                   jacobian_from_differential(t.numerator, n))
    if isinstance(t, Transpose):
        return jacobian_from_differential(_push_transpose(t), n)
    if isinstance(t, Func) and t.name == "diag" and not ir.is_vector_shape(t.arg.shape):
        as_vector = _diagonal_as_vector(t.arg)
        if as_vector is not None:
            return jacobian_from_differential(as_vector, n)
    raise UnsupportedError(
        f"cannot write the Jacobian of this expression in matrix form yet (its differential has the term {t}); "
        f"a later version covers it")


def _diagonal_as_vector(m: Expr) -> Expr | None:
    """diag(M) of a square M linear in dx, as a vector expression the Jacobian reader can read, or None.

    diag(A + B) = diag(A) + diag(B);  diag(diag(u)) = u;  diag(M^T) = diag(M);
    diag(A .* B) = diag(A) .* diag(B);  diag(A ./ B) = diag(A) ./ diag(B);
    diag(P u v^T Q) = (P u) .* (Q^T v);  diag(P diag(u) Q) = (P .* Q^T) u.
    A factor free of dx may stay as diag(B); a factor holding dx must reduce.
    """
    if not ir.contains_differential(m):
        return func("diag", m)
    if isinstance(m, Add):
        parts = [_diagonal_as_vector(term) for term in m.terms]
        return None if any(p is None for p in parts) else add(*parts)  # type: ignore[arg-type]
    if isinstance(m, Func) and m.name == "diag" and ir.is_column(m.arg.shape):
        return m.arg
    if isinstance(m, Transpose):
        return _diagonal_as_vector(m.arg)
    if isinstance(m, Hadamard):
        parts = [_diagonal_as_vector(f) for f in m.factors]
        return None if any(p is None for p in parts) else hadamard(*parts)  # type: ignore[arg-type]
    if isinstance(m, ElemDiv) and not ir.contains_differential(m.denominator):
        numerator = _diagonal_as_vector(m.numerator)
        return None if numerator is None else elem_div(numerator, func("diag", m.denominator))
    if isinstance(m, MatMul):
        coefficient, scalars, chain = ir.split_product(m)
        scale = [Num(coefficient), *scalars]
        if len(chain) == 1:
            inner = _diagonal_as_vector(chain[0])
            return None if inner is None else mul(*scale, inner)
        outer = _is_outer(m)  # an outer product: P u v^T Q = a b^T, whose diagonal is a .* b
        if outer is not None:
            return hadamard(*outer)
        for k, factor in enumerate(chain):  # a diagonal matrix holding dx: P diag(u) Q
            u = _diagonal_factor(factor)
            if u is not None and ir.contains_differential(u):
                left, right = chain[:k], chain[k + 1 :]
                if not left and not right:
                    return mul(*scale, u)
                if not left or not right:
                    other = mul(*(left or right))
                    return None if ir.contains_differential(other) else hadamard(mul(*scale, func("diag", other)), u)
                outer = hadamard(mul(*left), transpose(mul(*right)))
                return None if ir.contains_differential(outer) else mul(*scale, outer, u)
    return None


def _distribute_over_sum(e: Hadamard | ElemDiv) -> Expr | None:
    """M .* (A + B) -> M .* A + M .* B, and (A + B) ./ D -> A ./ D + B ./ D, for the sum holding dx."""
    if isinstance(e, ElemDiv):
        if isinstance(e.numerator, Add) and not ir.contains_differential(e.denominator):
            return add(*[elem_div(term, e.denominator) for term in e.numerator.terms])
        return None
    for index, factor in enumerate(e.factors):
        if isinstance(factor, Add) and ir.contains_differential(factor):
            others = [g for i, g in enumerate(e.factors) if i != index]
            return add(*[hadamard(*others, term) for term in factor.terms])
    return None


def _outer_product_in(e: Expr) -> tuple[Expr, Expr, Expr] | None:
    """(M, a, b) with e = M .* (a b^T), for an element-wise product or quotient holding one outer product."""
    if isinstance(e, ElemDiv) and not ir.contains_differential(e.denominator):
        split = _is_outer(e.numerator)
        found = (ones(e.shape), *split) if split is not None else _outer_product_in(e.numerator)
        if found is None:
            return None
        m, a, b = found
        return elem_div(m, e.denominator), a, b
    if not isinstance(e, Hadamard):
        return None
    for index, factor in enumerate(e.factors):
        split = _is_outer(factor)
        if split is not None:
            others = [g for i, g in enumerate(e.factors) if i != index]
            if not any(ir.contains_differential(g) for g in others):
                return hadamard(*others), *split
    return None


def _is_outer(e: Expr) -> tuple[Expr, Expr] | None:
    """(a, b) with e = a b^T: a product whose chain passes through a 1 x 1 inner dimension."""
    if not isinstance(e, MatMul):
        return None
    coefficient, scalars, chain = ir.split_product(e)
    for i in range(1, len(chain)):
        if ir.chain_shape(chain[:i])[1] == 1:
            return mul(Num(coefficient), *scalars, *chain[:i]), transpose(mul(*chain[i:]))
    return None


def _diagonal_factor(f: Expr) -> Expr | None:
    """u with f = diag(u): diag(u) itself, B .* diag(u) = diag(diag(B) .* u), diag(u) ./ B = diag(u ./ diag(B))."""
    if isinstance(f, Func) and f.name == "diag" and ir.is_column(f.arg.shape):
        return f.arg
    if isinstance(f, ElemDiv) and not ir.contains_differential(f.denominator):
        u = _diagonal_factor(f.numerator)
        return None if u is None else elem_div(u, func("diag", f.denominator))
    if isinstance(f, Hadamard):
        for index, factor in enumerate(f.factors):
            u = _diagonal_factor(factor)
            if u is not None:
                others = [func("diag", g) for i, g in enumerate(f.factors) if i != index]
                return hadamard(u, *others)
    return None


def _push_transpose(e: Expr) -> Expr:
    """e^T with the transpose moved one level down, for the Jacobian reader."""
    if isinstance(e, Transpose):
        inner = e.arg
        if isinstance(inner, MatMul):
            return mul(*[transpose(f) for f in reversed(inner.factors)])
        if isinstance(inner, Add):
            return add(*[transpose(t) for t in inner.terms])
        if isinstance(inner, Hadamard):
            return hadamard(*[transpose(f) for f in inner.factors])
        if isinstance(inner, ElemDiv):
            return elem_div(transpose(inner.numerator), transpose(inner.denominator))
        if isinstance(inner, Func) and inner.name == "diag":
            return inner
        raise UnsupportedError(f"cannot write the Jacobian in matrix form yet: transposed term {e}")
    return transpose(e)


def derivative_from_differential(df: Expr, variable: Var, output_shape: ir.Shape) -> Expr:
    """Read the derivative off df, for every case whose result is a scalar, vector or matrix."""
    if variable.is_scalar:  # df = F dα -> F
        return ir.substitute(df, {Differential(variable): ir.ONE})
    if output_shape == ir.SCALAR:
        return gradient_from_differential(df, variable.shape)
    if ir.is_column(output_shape) and ir.is_column(variable.shape):
        return jacobian_from_differential(df, variable.shape[0])
    raise AssertionError("unsupported derivative shapes must be rejected before identification")
