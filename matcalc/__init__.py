"""matcalc: symbolic matrix calculus with proofs.

    >>> import matcalc
    >>> str(matcalc.diff("x^T A x", "x"))
    '(A + A^T) x'

SymPy and NumPy are imported only by verify() and evaluate() (and SymPy by from_sympy() and to_sympy()).
"""

from .api import CheckResult, Derivative, Step, check, codegen, diff, from_sympy, grad, hessian, parse, to_sympy
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
    "from_sympy",
    "grad",
    "hessian",
    "parse",
    "to_sympy",
]
__version__ = "0.1.0"
