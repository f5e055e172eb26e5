"""The named real constants of the input language (`pi`): one table, read by every stage.

A constant's name is reserved (ir.RESERVED_NAMES: never a variable's, a declaration's or a definition's); the
parser reads it as the scalar leaf ir.Constant(name), whose differential is 0. Each ConstantSpec says what every
stage needs: its float64 value (backends/interpret.py), its exact SymPy value (backends/verify.py), its LaTeX
(render/text.py) and its generated code (backends/pycode.py); the text printer writes the name itself. Adding a
constant (`e`) is one entry here and its tests.

This module imports nothing of matcalc, so that the IR can read the names (no import circle); SymPy is imported
lazily, so its value takes the module as a parameter.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class ConstantSpec:
    name: str
    meaning: str
    value: float  # float64, for NumPy
    sympy: Callable[[Any], Any]  # (sympy module) -> the exact value
    latex: str
    # Generated code: a template per backend ("numpy", "jax", "torch") where {m} is the backend's module (np, jnp,
    # torch); a backend not listed writes {m}.<name>.
    code: dict[str, str] = field(default_factory=dict)


_SPECS = [
    ConstantSpec("pi", "π = 3.14159..., the ratio of a circle's circumference to its diameter", math.pi,
                 lambda sp: sp.pi, r"\pi"),
]

CONSTANTS: dict[str, ConstantSpec] = {spec.name: spec for spec in _SPECS}
