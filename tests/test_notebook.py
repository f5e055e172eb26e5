"""docs/tutorial.ipynb runs in a real Jupyter kernel (nbclient + ipykernel, the `test` extra): no cell raises, and
what each result displays is rich (a derivative, gradients and a block Hessian as LaTeX, derivations, check and
verify reports and code as Markdown). The committed notebook holds the cells docs/make_tutorial_notebook.py
writes, so the two cannot drift apart."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "docs"))
import make_tutorial_notebook as maker  # noqa: E402


def committed() -> nbformat.NotebookNode:
    return nbformat.read(maker.NOTEBOOK, as_version=4)


def test_the_committed_notebook_holds_the_cells_the_script_writes():
    nb = committed()
    assert [(c.cell_type, c.source) for c in nb.cells] == [(kind, source) for kind, source in maker.CELLS]
    nbformat.validate(nb)


def test_the_notebook_runs_in_a_jupyter_kernel_and_every_result_renders():
    nb = maker.notebook()
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    maker.execute(nb, ROOT, env)  # raises CellExecutionError, naming the cell, if any cell fails
    shown: dict[str, set[str]] = {}
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        assert not any(output.output_type == "error" for output in cell.outputs), cell.source
        for output in cell.outputs:
            if output.output_type == "execute_result":
                shown[cell.source.splitlines()[-1]] = set(output.data)
    assert "text/latex" in shown["d"]  # a Derivative: its equation
    assert "text/latex" in shown["gradients"]  # grad: an aligned block
    assert "text/markdown" in shown["d.derivation()"]  # not the escaped repr of a str
    assert "text/latex" in shown["d.derivation(latex=True)"]
    assert "text/markdown" in shown["d.verify()"]
    assert "text/markdown" in shown['matcalc.check("a^T x", "x", "a^T")']
    assert "text/markdown" in shown['d.to_code("numpy")']
    hessian = next(data for last, data in shown.items() if last.startswith("matcalc.hessian(") and "[" in last)
    assert "text/latex" in hessian
