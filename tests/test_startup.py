"""A plain `matcalc diff` imports only what it uses (issue 19, part 4): not SymPy, NumPy or Lark, nor the stages of
the options it was not given. What the command costs in time is benchmarks/startup.py's to measure, not a test's."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

# imported by verify/evaluate/codegen, Lark itself (the standalone parser needs neither regex nor logging), and the
# stages of --form index, --code and vector Jacobians
HEAVY = ("sympy", "numpy", "mpmath", "lark", "regex", "logging", "matcalc.backends.verify",
         "matcalc.backends.interpret", "matcalc.backends.pycode", "matcalc.calculus.index_form", "matcalc.render.index",
         "matcalc.calculus.jacobian")

_PROBE = """
import contextlib, io, json, sys
import matcalc.cli
with contextlib.redirect_stdout(io.StringIO()) as printed:
    code = matcalc.cli.main(sys.argv[1:])
print(json.dumps([code, printed.getvalue().strip(), sorted(m for m in {heavy!r} if m in sys.modules)]))
"""


def _imported_by(*argv: str) -> tuple[int, str, list[str]]:
    """(exit code, what it printed, the heavy modules loaded) of `matcalc ARGV` run in a fresh interpreter."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, "-c", _PROBE.format(heavy=HEAVY), *argv], env=env, capture_output=True,
                          text=True, check=True, timeout=120)
    code, printed, loaded = json.loads(done.stdout)
    return code, printed, loaded


def test_a_plain_diff_imports_neither_sympy_nor_numpy_nor_lark():
    assert _imported_by("diff", "x^T A x", "x") == (0, "(A + A^T) x", [])


@pytest.mark.parametrize(("argv", "loaded"), [
    (("diff", "x^T A x", "x", "--form", "index"), ["matcalc.calculus.index_form", "matcalc.render.index"]),
    (("diff", "W x", "x"), ["matcalc.calculus.jacobian"]),
], ids=["index-form", "jacobian"])
def test_an_option_loads_its_own_stage_only(argv: tuple[str, ...], loaded: list[str]):
    # the probe sees a lazy import when one happens: the plain diff's empty list above is not an accident
    code, _, imported = _imported_by(*argv)
    assert (code, imported) == (0, loaded)
