"""Write docs/tutorial.ipynb, the notebook of docs/tutorial.md: the seeds' examples, each derivative shown (as
LaTeX), derived, checked and turned into code.

    python docs/make_tutorial_notebook.py            # writes the notebook, executed, with its outputs
    python docs/make_tutorial_notebook.py --no-run   # without outputs

tests/test_notebook.py checks that the committed notebook holds these cells and runs it in a Jupyter kernel.
"""

from __future__ import annotations

import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
NOTEBOOK = HERE / "tutorial.ipynb"

# (kind, source): the cells, in order. Markdown cells explain; code cells show, check and generate.
CELLS: list[tuple[str, str]] = [
    ("markdown", """\
# The matrix calculus of deep learning, with matcalc

This notebook follows the three texts matcalc started from: Parr & Howard's *The Matrix Calculus You Need For
Deep Learning*, a theory page on the Jacobian (the linear layer and `a^T x` by the index method), and Dillon's
*Calculus for Deep Learning* (a stack of layers on a batch). Each derivative is shown, derived, proven
(`verify`, `check`) and turned into code. The same path in prose: `docs/tutorial.md`.

matcalc writes the Jacobian of a vector f (m) w.r.t. a vector x (n) as the m×n matrix, a row per output
(numerator layout, as Parr & Howard). The derivative of a scalar is by default the gradient, shaped like the
variable; `layout="jacobian"` writes it as the seeds do, the Jacobian with one row (the transpose of the
gradient)."""),
    ("code", """\
import numpy as np
import matcalc

rng = np.random.default_rng(0)"""),
    ("markdown", """\
## 1. Element-wise binary operators

For `y = f(w) ○ g(x)` with ○ element-wise, the Jacobian is diagonal: output i depends on the i-th inputs only."""),
    ("code", """\
d = matcalc.diff("w .* x", "x")
d"""),
    ("code", """\
d.derivation()"""),
    ("code", """\
d.derivation(latex=True)"""),
    ("code", """\
d.verify()"""),
    ("code", """\
def jacobian_by_differences(f, x, h=1e-6):
    \"\"\"Column k: (f(x + h e_k) - f(x - h e_k)) / 2h, the m×n Jacobian.\"\"\"
    return np.stack([(f(x + h * e) - f(x - h * e)) / (2 * h) for e in np.eye(x.size)], axis=1)

w, x = rng.normal(size=4), rng.normal(size=4)
J = d.evaluate({"w": w, "x": x})
assert np.allclose(J, jacobian_by_differences(lambda x: w * x, x))
assert np.allclose(d.compile("numpy")(w=w, x=x), J)
J"""),
    ("code", """\
[str(matcalc.diff(f, "x")) for f in ["w + x", "w - x", "x ./ w", "w ./ x"]]"""),
    ("markdown", """\
## 2. The sum reduction

The gradient of `sum(x)` is a vector of ones; the seeds write it as the row of ones."""),
    ("code", """\
matcalc.diff("sum(x)", "x", layout="jacobian")"""),
    ("code", """\
matcalc.check("sum(w .* x)", "x", "w^T", layout="jacobian")"""),
    ("code", """\
matcalc.check("sum(w .* x)", "x", "w", layout="jacobian")  # the gradient: right, but in the other layout"""),
    ("markdown", """\
## 3. The neuron: max(0, w^T x + b)

An affine function and a rectified linear unit; `b` is a scalar (declared: a lowercase name is a vector by
default). The derivative of `max(0, u)` is the unit step."""),
    ("code", """\
neuron = "max(0, w^T x + b)"
d = matcalc.diff(neuron, "w", where="b: scalar")
d"""),
    ("code", """\
d.derivation()"""),
    ("code", """\
matcalc.diff(neuron, "w", where="b: scalar", layout="jacobian")"""),
    ("code", """\
matcalc.check(neuron, "w", "step(w^T x + b) x^T", where="b: scalar")"""),
    ("code", """\
w, x, b = rng.normal(size=3), rng.normal(size=3), 0.5
assert np.allclose(d.evaluate({"w": w, "x": x, "b": b}), float(w @ x + b > 0) * x)
d.to_code("numpy")"""),
    ("markdown", """\
## 4. The neuron's loss over a batch

N examples as the rows of `X`, targets `y`: the mean squared error. Its gradients w.r.t. `w` and `b` come from
one backward pass."""),
    ("code", """\
loss = "sum((y - max(0, X w + b)).^2) / N"
where = "X: matrix(N, d); b: scalar"
gradients = matcalc.grad(loss, ["w", "b"], where=where)
gradients"""),
    ("code", """\
gradients["w"].verify()"""),
    ("code", """\
X, y, w, b = rng.normal(size=(6, 3)), rng.normal(size=6), rng.normal(size=3), 0.1

def mse(w):
    return np.sum((y - np.maximum(0, X @ w + b)) ** 2) / len(y)

h = 1e-6
by_differences = np.array([(mse(w + h * e) - mse(w - h * e)) / (2 * h) for e in np.eye(3)])
grad_w = matcalc.diff(loss, "w", where=where).compile("numpy")
assert np.allclose(grad_w(X=X, w=w, b=b, y=y), by_differences, atol=1e-6)
matcalc.codegen(loss, ["w", "b"], where=where)"""),
    ("markdown", """\
## 5. The linear layer: y = W x, by the index method

`(W x)_i = Σ_j W_ij x_j`, so `∂(W x)_i / ∂x_k = Σ_j W_ij δ_jk = W_ik`: the Kronecker delta sums out and the
Jacobian is `W`. `form="index"` shows the entry the matrix is made of."""),
    ("code", """\
d = matcalc.diff("W x", "x")
d"""),
    ("code", """\
from IPython.display import Math

print(d.text(form="index"))
Math(d.latex(form="index"))  # a LaTeX string, displayed as math"""),
    ("code", """\
matcalc.check("W x", "x", "W")"""),
    ("code", """\
[matcalc.diff(f, v).text(form="index") for f, v in [("x^T A x", "x"), ("tr(A X)", "X"), ("W x", "W")]]"""),
    ("code", """\
matcalc.diff("W x", "W")  # three axes: the vec form d vec(W x) / d vec(W)^T"""),
    ("markdown", """\
## 6. a^T x: a gradient, or a row

`∂(a^T x)/∂x_j = a_j`: the gradient is `a`; "the derivative is the Jacobian matrix with one row, which is the
transpose of the gradient", `a^T`. `check` tells them apart."""),
    ("code", """\
matcalc.diff("a^T x", "x"), matcalc.diff("a^T x", "x", layout="jacobian")"""),
    ("code", """\
matcalc.diff("a^T x", "x", layout="jacobian")"""),
    ("code", """\
matcalc.check("a^T x", "x", "a^T")"""),
    ("code", """\
matcalc.check("a^T x", "x", "a^T", layout="jacobian")"""),
    ("markdown", """\
## 7. Dillon's stack of layers, on a batch

A batch is a matrix, one example per column (`X: matrix(d, B)`); a bias is added to every column. The network
is a program, its definitions the layers and its last line the loss; all the gradients come from one backward
pass."""),
    ("code", """\
network = "H1 = sigmoid(W1 X + b1); H2 = sigmoid(W2 H1 + b2); L = sum((H2 - Y).^2) / B"
shapes = "X: matrix(d, B); Y: matrix(k, B); W1: matrix(m, d); W2: matrix(k, m); b1: vector(m); b2: vector(k)"
gradients = matcalc.grad(network, ["W1", "W2", "b1", "b2"], where=shapes)
gradients"""),
    ("code", """\
gradients["W1"].derivation(latex=True)"""),
    ("code", """\
gradients["b2"].verify()"""),
    ("code", """\
source = matcalc.codegen(network, ["W1", "W2", "b1", "b2"], where=shapes)
namespace = {}
exec(source, namespace)
value_and_gradients = namespace["value_and_gradients"]
sig = lambda z: 1 / (1 + np.exp(-z))
values = {"X": rng.normal(size=(3, 5)), "Y": rng.normal(size=(2, 5)), "W1": rng.normal(size=(4, 3)),
          "W2": rng.normal(size=(2, 4)), "b1": rng.normal(size=4), "b2": rng.normal(size=2)}

def loss(W1):
    H1 = sig(W1 @ values["X"] + values["b1"][:, None])
    H2 = sig(values["W2"] @ H1 + values["b2"][:, None])
    return np.sum((H2 - values["Y"]) ** 2) / values["X"].shape[1]

value, dW1, dW2, db1, db2 = value_and_gradients(**values)
h, by_differences = 1e-6, np.zeros_like(dW1)
for i, j in np.ndindex(*dW1.shape):
    E = np.zeros_like(dW1)
    E[i, j] = h
    by_differences[i, j] = (loss(values["W1"] + E) - loss(values["W1"] - E)) / (2 * h)
assert np.isclose(value, loss(values["W1"])) and np.allclose(dW1, by_differences, atol=1e-7)
source"""),
    ("markdown", """\
## The Hessian, block by block

The Hessian of a scalar w.r.t. several variables is a block per pair; a matrix variable is written by its vec."""),
    ("code", """\
matcalc.hessian("x^T A y + sum(exp(y)) + alpha^2 tr(X)", ["x", "y", "alpha", "X"])"""),
    ("code", """\
matcalc.hessian("x^T A x", "x").verify()"""),
]


def notebook():  # -> nbformat.NotebookNode
    import nbformat

    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.metadata["language_info"] = {"name": "python"}
    for number, (kind, source) in enumerate(CELLS):
        cell = nbformat.v4.new_markdown_cell(source) if kind == "markdown" else nbformat.v4.new_code_cell(source)
        cell["id"] = f"cell-{number}"  # stable ids: the file changes only where a cell does
        nb.cells.append(cell)
    return nb


def execute(nb, cwd: Path, env: dict | None = None, timeout: int = 600):
    """Run every cell in a fresh Jupyter kernel (nbclient + ipykernel); a cell that raises raises here."""
    from nbclient import NotebookClient

    client = NotebookClient(nb, timeout=timeout, kernel_name="python3", resources={"metadata": {"path": str(cwd)}})
    return client.execute(env=env) if env is not None else client.execute()


def main(argv: list[str]) -> None:
    import os

    import nbformat

    nb = notebook()
    if "--no-run" not in argv:
        root = HERE.parent  # this checkout's matcalc, whatever is installed
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(root), os.environ.get("PYTHONPATH", "")])}
        execute(nb, root, env)
        for cell in nb.cells:
            cell.get("metadata", {}).pop("execution", None)  # no timestamps: the file stays the same on a rerun
    nbformat.write(nb, NOTEBOOK)
    print(f"wrote {NOTEBOOK}")


if __name__ == "__main__":
    main(sys.argv[1:])
