"""matcalc: symbolic matrix calculus with proofs.

    >>> import matcalc
    >>> str(matcalc.diff("x^T A x", "x"))
    '(A + A^T) x'

SymPy and NumPy are imported only by verify() and evaluate().
"""

from .api import CheckResult, Derivative, Step, check, codegen, diff, grad, hessian, parse
from .core.errors import (
    DeclarationError,
    EvaluationError,
    MatcalcError,
    ParseError,
    ShapeError,
    UnsupportedError,
)

__all__ = [
    "CheckResult",
    "DeclarationError",
    "Derivative",
    "EvaluationError",
    "MatcalcError",
    "ParseError",
    "ShapeError",
    "Step",
    "UnsupportedError",
    "check",
    "codegen",
    "diff",
    "grad",
    "hessian",
    "parse",
]
__version__ = "0.1.0"
