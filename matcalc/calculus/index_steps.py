"""The index method of the Jacobian theory page, as derivation steps (`--steps index`).

Write the entry of the function as a sum ((W x)_i = Σ_p W_ip x_p), differentiate it term by term (∂x_p/∂x_k =
δ_pk: Σ_p W_ip δ_pk), sum out the Kronecker deltas (W_ik), and recognise the matrix (J = W). The sums are the
index forms of calculus/index_form.py: the entry form of the function, the index form of its differential before
and after the deltas are contracted. Each step carries its claim (spec.Claim) for the tests.
"""

from __future__ import annotations

from ..core import ir
from ..core.errors import UnsupportedError
from ..core.ir import Expr, Var
from .differential import differential
from .index_form import entry_form, index_form
from .spec import Claim, Step

ENTRY = "1. the entry as a sum"
TERMS = "2. differentiate term by term"
DELTAS = "3. sum out the Kronecker deltas (Σ_p δ_pk E_p = E_k)"
RECOGNISE = "4. recognise the matrix"


def _recognised_note(of: Expr, variable: Var, result: Expr) -> str:
    shape = f"{result.shape[0]}×{result.shape[1]}"
    if of.is_scalar and variable.symmetric and not ir.is_vector_shape(variable.shape):
        return (f"the matrix G of these entries, and as {variable.name} is symmetric its symmetric part sym(G) = "
                f"(G + G^T)/2, {shape}: as the engine prints it")
    return f"the matrix of these entries, {shape}: as the engine prints it"


def _delta_rule(variable: Var) -> str:
    """What differentiating an entry of the variable gives: ∂x_p/∂x_k = δ_pk, ∂W_pq/∂W_kl = δ_pk δ_ql."""
    x = variable.name
    if variable.is_scalar:
        return ""
    if ir.is_vector_shape(variable.shape):
        return f" (∂{x}_p/∂{x}_k = δ_pk)"
    return f" (∂{x}_pq/∂{x}_kl = δ_pk δ_ql)"


def index_steps(of: Expr, variable: Var, result: Expr, what: str, section_prefix: str = "") -> list[Step]:
    """The index method for d`of`/d`variable`, ending in the engine's `result` (a `what`: gradient, Jacobian...).

    Raises UnsupportedError, with the reason, where the derivative has no readable index form (a Kronecker product,
    a function of a matrix the index rules do not write).
    """
    prefix = f"{section_prefix}: " if section_prefix else ""
    df = differential(of, variable)
    try:
        contracted = index_form(df, variable, of)
        raw = index_form(df, variable, of, contract=False)
    except UnsupportedError as error:
        raise UnsupportedError(f"this derivation has no readable index form ({error}); "
                               f"try --steps chain or --steps differential") from None
    steps: list[Step] = []
    try:
        entries = entry_form(of, variable)
    except UnsupportedError:
        entries = None  # a function of an entry (tanh(W x)_i): differentiated from its differential's entries
    if entries is not None:
        steps.append(Step("entry", of, section=prefix + ENTRY, index=entries, claim=Claim("entry", of, variable)))
    steps.append(Step("term by term", df, section=prefix + TERMS + _delta_rule(variable), index=raw,
                      claim=Claim("index", of, variable)))
    steps.append(Step("deltas summed out", df, section=prefix + DELTAS, index=contracted,
                      claim=Claim("index", of, variable)))
    steps.append(Step("recognised", result, section=prefix + RECOGNISE, lhs=(what,),
                      note=_recognised_note(of, variable, result),
                      claim=Claim("result", of, variable)))
    return steps
