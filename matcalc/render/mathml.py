"""MathML of the IR (placeholder)."""
from __future__ import annotations

from typing import Any


def derivative_mathml(d: Any) -> str:
    return ""
