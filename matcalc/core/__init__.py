"""The IR and the language's functions: nodes, shapes, interning, traversal; nothing here imports upward."""

from . import functions as _functions  # noqa: F401  (fills ir.FUNCTION_FACTS: every function's shape and zeros)
