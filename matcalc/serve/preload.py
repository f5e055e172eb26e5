"""Imported by the workers' fork server before it forks any of them: matcalc, NumPy and SymPy loaded and the first
calls made (the parser's tables, a proof), once, so that every worker, the first ones and each one that replaces
a killed worker, starts warm: no request pays for an import."""

from __future__ import annotations

from . import jobs

jobs.run("verify", {"expr": "a^T X b", "wrt": "X"}, 5.0)
jobs.run("code", {"expr": "x^T A x", "wrt": "x"}, 5.0)
