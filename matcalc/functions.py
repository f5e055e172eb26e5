"""The named functions of the input language: one table, read by every stage.

Each stage keeps its own table keyed by these names (derivative rules, NumPy and SymPy
implementations, LaTeX); tests check that every table covers every function here. The functions of
kind "lowered" never reach the IR: the parser writes them with other nodes (`rows(X)` is the size of
a dimension, `mean(u)` is `sum(u) / size(u)`), so no later stage needs a table entry for them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Kind = Literal["elementwise", "scalar_of_matrix", "square", "vector", "diag", "lowered"]


@dataclass(frozen=True)
class FunctionSpec:
    name: str
    kind: Kind
    meaning: str


_SPECS = [
    FunctionSpec("exp", "elementwise", "e^u, entry by entry"),
    FunctionSpec("log", "elementwise", "natural logarithm, entry by entry"),
    FunctionSpec("sin", "elementwise", "sine, entry by entry"),
    FunctionSpec("cos", "elementwise", "cosine, entry by entry"),
    FunctionSpec("tan", "elementwise", "tangent, entry by entry"),
    FunctionSpec("tanh", "elementwise", "hyperbolic tangent, entry by entry"),
    FunctionSpec("sigmoid", "elementwise", "logistic function 1 / (1 + e^-u), entry by entry"),
    FunctionSpec("relu", "elementwise", "max(u, 0), entry by entry"),
    FunctionSpec("softplus", "elementwise", "log(1 + e^u), entry by entry"),
    FunctionSpec("sqrt", "elementwise", "square root, entry by entry"),
    FunctionSpec("abs", "elementwise", "absolute value, entry by entry"),
    FunctionSpec("sign", "elementwise", "-1, 0 or 1, entry by entry"),
    FunctionSpec("step", "elementwise", "Heaviside step: 1 where u > 0, else 0 (the derivative of relu)"),
    FunctionSpec("arcsin", "elementwise", "inverse sine, entry by entry"),
    FunctionSpec("arccos", "elementwise", "inverse cosine, entry by entry"),
    FunctionSpec("arctan", "elementwise", "inverse tangent, entry by entry"),
    FunctionSpec("sum", "scalar_of_matrix", "sum of all entries"),
    FunctionSpec("norm1", "scalar_of_matrix", "sum of absolute values of all entries"),
    FunctionSpec("norm2", "scalar_of_matrix", "Euclidean norm of a vector, Frobenius norm of a matrix"),
    FunctionSpec("tr", "square", "trace of a square matrix (a scalar)"),
    FunctionSpec("det", "square", "determinant of a square matrix (a scalar)"),
    FunctionSpec("logdet", "square", "log(det(X)) of a square matrix (a scalar)"),
    FunctionSpec("inv", "square", "inverse of a square matrix"),
    FunctionSpec("softmax", "vector", "exp(u) / sum(exp(u)) for a vector u"),
    FunctionSpec("logsumexp", "vector", "log(sum(exp(u))) for a vector u (a scalar)"),
    FunctionSpec("diag", "diag", "vector -> diagonal matrix; square matrix -> vector of its diagonal"),
    FunctionSpec("rows", "lowered", "the number of rows (a scalar): the size of that dimension"),
    FunctionSpec("cols", "lowered", "the number of columns (a scalar): the size of that dimension"),
    FunctionSpec("size", "lowered", "the number of entries (a scalar): rows × columns, the length of a vector"),
    FunctionSpec("mean", "lowered", "the mean of all entries: sum(u) / size(u)"),
]

FUNCTIONS: dict[str, FunctionSpec] = {spec.name: spec for spec in _SPECS}
IR_FUNCTIONS: frozenset[str] = frozenset(s.name for s in _SPECS if s.kind != "lowered")  # the names Func nodes hold
ELEMENTWISE: frozenset[str] = frozenset(s.name for s in _SPECS if s.kind == "elementwise")
SCALAR_VALUED: frozenset[str] = frozenset({"sum", "norm1", "norm2", "tr", "det", "logdet", "logsumexp"})
