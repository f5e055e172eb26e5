"""Stage 5c (codegen): Python source for NumPy, JAX or PyTorch from results, and the callables it defines.

A result (its named definitions, then its outputs) becomes one function: a keyword parameter per variable,
the sizes read off the inputs, a line per definition and per subexpression used more than once, then the
outputs in the layout of `Derivative.evaluate`. The code never builds what it can apply (docs/codegen.md):

- `diag(v) A` is `v * A` and `A diag(v)` is `A * v.T` (vectors are n x 1 columns inside the function);
- a matrix chain that ends in a vector is multiplied from the right (`x^T A x` never forms `x x^T`);
- `inv(X) B` is `solve(X, B)`;
- of a variable declared spd, the Cholesky factor L = cholesky(S) is computed once: logdet(S) is
  2 sum(log(diag(L))), inv(S) B a Cholesky solve and inv(S) the inverse from L;
- `tr(A B)` is `sum(A * B^T)`;
- the numerically stable forms of evaluate.STABLE_FORMS are applied first, and each function's code is
  its FunctionSpec's (`functions.py`: the stable sigmoid, softplus, softmax, logsumexp).

Only the engine's own IR is written out, never user text: names come from the grammar.
"""

from __future__ import annotations

import keyword
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

from ..calculus.spec import Result, axes_of
from ..core import ir
from ..core.constants import CONSTANTS
from ..core.functions import FUNCTIONS
from ..core.ir import (
    Add,
    Commutation,
    ElemDiv,
    ElemPower,
    Expr,
    Fill,
    Func,
    Hadamard,
    Identity,
    Kron,
    MatMul,
    Num,
    Power,
    Size,
    Transpose,
    Var,
)
from ..render.text import dim_text, to_text
from .interpret import evaluation_plan, of_spd_variable


@dataclass(frozen=True)
class Backend:
    name: str
    module: str  # how the generated code names the array module
    imports: str
    helpers: str  # functions the generated code may call (those it calls are kept)
    asarray: str  # {a}: an input as a float array
    constant: str  # {shape}, {value}: a constant array
    eye: str  # {n}: the identity
    solve: str  # {a}, {b}: inv(a) b
    matrix_power: str  # {a}, {k}
    reduce: str  # {a}, {axis}: the sums along one axis (0: of each column), kept 2-D
    broadcast: str  # {a}, {shape}: a spread array made whole, an array of its own (where a consumer needs it)


# Of a variable declared spd, by its Cholesky factor {L} (a line of its own, computed once), per backend: the
# factor of {a}, logdet, inv, and inv(a) {b}. NumPy has no triangular solve and is not given SciPy: two solves.
CHOLESKY_CODE: dict[str, dict[str, str]] = {
    "numpy": {"factor": "np.linalg.cholesky({a})", "logdet": "2.0 * np.sum(np.log(np.diagonal({L})))",
              "inv": "_cho_inverse({L})", "solve": "_cho_solve({L}, {b})"},
    "jax": {"factor": "jnp.linalg.cholesky({a})", "logdet": "2.0 * jnp.sum(jnp.log(jnp.diagonal({L})))",
            "inv": "_cho_inverse({L})", "solve": "_cho_solve({L}, {b})"},
    "torch": {"factor": "torch.linalg.cholesky({a})", "logdet": "2.0 * torch.sum(torch.log(torch.diagonal({L})))",
              "inv": "torch.cholesky_inverse({L})", "solve": "torch.cholesky_solve({b}, {L})"},
}
CHOLESKY_HELPERS = ("_cho_inverse", "_cho_solve")


def _with_function_helpers(backend_name: str, helpers: dict[str, str]) -> dict[str, str]:
    """The helpers the generated code may call, by name: the nodes' (below), and each function's `_<name>`, which
    its FunctionSpec writes (functions.py: a NumPy softmax, a logdet that is nan off its domain)."""
    found = {f"_{spec.name}": spec.helpers[backend_name] for spec in FUNCTIONS.values() if backend_name in spec.helpers}
    return {**found, **helpers}


_NUMPY_HELPERS = _with_function_helpers("numpy", {
    "_erfc": '''def _erfc(a):
    try:
        from scipy.special import erfc
    except ImportError:  # NumPy has no erfc: math's, entry by entry
        from math import erfc
        return np.vectorize(erfc, otypes=[float])(a)
    return erfc(a)''',
    "_commutation": '''def _commutation(m, n):
    return np.eye(m * n)[[i + m * j for i in range(m) for j in range(n)]]''',
    "_reshape_f": '''def _reshape_f(a, shape):
    return np.reshape(a, shape, order="F")''',
    "_softmax_along": '''def _softmax_along(a, axis):
    e = np.exp(a - np.max(a, axis=axis, keepdims=True))
    return e / np.sum(e, axis=axis, keepdims=True)''',
    "_logsumexp_along": '''def _logsumexp_along(a, axis):
    top = np.max(a, axis=axis, keepdims=True)
    return top + np.log(np.sum(np.exp(a - top), axis=axis, keepdims=True))''',
    "_argmax_mask_along": '''def _argmax_mask_along(a, axis):
    mask = (a == np.max(a, axis=axis, keepdims=True)).astype(a.dtype)
    return mask / np.sum(mask, axis=axis, keepdims=True)''',
    "_cho_inverse": '''def _cho_inverse(factor):
    inverse_factor = np.linalg.solve(factor, np.eye(len(factor)))
    return inverse_factor.T @ inverse_factor''',
    "_cho_solve": '''def _cho_solve(factor, b):
    return np.linalg.solve(factor.T, np.linalg.solve(factor, b))''',
})
_JAX_HELPERS = _with_function_helpers("jax", {
    "_argmax_mask_along": '''def _argmax_mask_along(a, axis):
    mask = (a == jnp.max(a, axis=axis, keepdims=True)).astype(a.dtype)
    return mask / jnp.sum(mask, axis=axis, keepdims=True)''',
    "_commutation": '''def _commutation(m, n):
    return jnp.eye(m * n)[jnp.array([i + m * j for i in range(m) for j in range(n)])]''',
    "_reshape_f": '''def _reshape_f(a, shape):
    return jnp.reshape(a, shape, order="F")''',
    "_cho_inverse": '''def _cho_inverse(factor):
    from jax.scipy.linalg import cho_solve
    return cho_solve((factor, True), jnp.eye(factor.shape[0], dtype=factor.dtype))''',
    "_cho_solve": '''def _cho_solve(factor, b):
    from jax.scipy.linalg import cho_solve
    return cho_solve((factor, True), b)''',
})
_TORCH_HELPERS = _with_function_helpers("torch", {
    "_argmax_mask_along": '''def _argmax_mask_along(a, axis):
    mask = (a == torch.amax(a, dim=axis, keepdim=True)).to(a.dtype)
    return mask / torch.sum(mask, dim=axis, keepdim=True)''',
    "_commutation": '''def _commutation(m, n, like):
    return torch.eye(m * n, dtype=like.dtype, device=like.device)[[i + m * j for i in range(m) for j in range(n)]]''',
    "_reshape_f": '''def _reshape_f(a, shape):
    return a.T.reshape(tuple(reversed(shape))).permute(*reversed(range(len(shape))))''',
})

# A function of a vector along an axis (softmax(U, 1): of each column), per backend: {a} the matrix, {axis} the
# array axis it runs along (0 for each column, 1 for each row); a scalar-valued one keeps that axis (a row or a
# column), as the IR's shape says.
ALONG_AXIS: dict[str, dict[str, str]] = {
    "softmax": {"numpy": "_softmax_along({a}, {axis})", "jax": "jax.nn.softmax({a}, axis={axis})",
                "torch": "torch.softmax({a}, dim={axis})"},
    "logsumexp": {"numpy": "_logsumexp_along({a}, {axis})",
                  "jax": "jax.scipy.special.logsumexp({a}, axis={axis}, keepdims=True)",
                  "torch": "torch.logsumexp({a}, dim={axis}, keepdim=True)"},
    "max": {"numpy": "np.max({a}, axis={axis}, keepdims=True)", "jax": "jnp.max({a}, axis={axis}, keepdims=True)",
            "torch": "torch.amax({a}, dim={axis}, keepdim=True)"},
    "argmax_mask": {"numpy": "_argmax_mask_along({a}, {axis})", "jax": "_argmax_mask_along({a}, {axis})",
                    "torch": "_argmax_mask_along({a}, {axis})"},
}

# 1 + erf(x) as erfc(-x), per backend that writes it so (code_forms: "one plus erf"): no cancellation where erf(x)
# is near -1, as in the normal distribution (1 + erf(u / sqrt(2))) / 2 of gelu far in the negative tail (NumPy's
# gelu is u erfc(-u / sqrt(2)) / 2 for that reason, and so is jax.nn.gelu's).
ONE_PLUS_ERF: dict[str, str] = {"numpy": "_erfc({a})", "jax": "jax.scipy.special.erfc({a})",
                                "torch": "torch.special.erfc({a})"}

BACKENDS: dict[str, Backend] = {
    "numpy": Backend("numpy", "np", "import numpy as np", "\n\n\n".join(_NUMPY_HELPERS.values()),
                     "np.asarray({a}, dtype=float)", "np.full({shape}, {value})", "np.eye({n})",
                     "np.linalg.solve({a}, {b})", "np.linalg.matrix_power({a}, {k})",
                     "{a}.sum({axis}, keepdims=True)", "np.full({shape}, {a})"),
    "jax": Backend("jax", "jnp", "import jax\nimport jax.numpy as jnp\nimport jax.scipy.special",
                   "\n\n\n".join(_JAX_HELPERS.values()), "jnp.asarray({a}, dtype=float)", "jnp.full({shape}, {value})",
                   "jnp.eye({n})", "jnp.linalg.solve({a}, {b})", "jnp.linalg.matrix_power({a}, {k})",
                   "{a}.sum({axis}, keepdims=True)", "jnp.full({shape}, {a})"),
    "torch": Backend("torch", "torch", "import torch", "\n\n\n".join(_TORCH_HELPERS.values()),
                     "_as_tensor({a})", "torch.full({shape}, {value}, dtype=_like.dtype, device=_like.device)",
                     "torch.eye({n}, dtype=_like.dtype, device=_like.device)", "torch.linalg.solve({a}, {b})",
                     "torch.linalg.matrix_power({a}, {k})", "{a}.sum({axis}, keepdim=True)",
                     "{a} * torch.full({shape}, 1.0, dtype=_like.dtype, device=_like.device)"),
}
_HELPER_NAMES = {"numpy": _NUMPY_HELPERS, "jax": _JAX_HELPERS, "torch": _TORCH_HELPERS}


def backend(name: str) -> Backend:
    from ..core.errors import ParseError

    if not isinstance(name, str) or name not in BACKENDS:
        raise ParseError(f"the backend must be one of {', '.join(BACKENDS)}, not {name!r}")
    return BACKENDS[name]


def python_name(name: str) -> str:
    """A variable's name as a Python identifier: a keyword (lambda) gets a trailing underscore."""
    return f"{name}_" if keyword.iskeyword(name) else name


Spread = tuple[bool, bool]
WHOLE: Spread = (False, False)


@dataclass(frozen=True)
class Code:
    """An expression's code, whether it may stand as an operand without parentheses, and which of its axes it
    broadcasts along (`spread`): an array of one row (column) standing for every row (column) of the expression,
    which has more. `b vector(1)^T` is `b` spread along its columns, `matrix(1) X` is X's column sums spread down
    its rows, `vector(c)` the number c spread along both: the consumers that broadcast (+, .*, ./, .^, element-wise
    functions, scalar factors) take it as it is; a product splits at it; any other consumer makes it whole."""

    text: str
    atomic: bool
    spread: Spread = WHOLE

    def operand(self) -> str:
        return self.text if self.atomic else f"({self.text})"


@dataclass(frozen=True)
class _Factor:
    """A factor of a matrix chain as the code multiplies it: its code (never spread), its shape, and its node
    (None for a factor split off a spread one) to recognise diag(v) and inv(X)."""

    code: Code
    shape: ir.Shape
    node: Expr | None


@dataclass(frozen=True)
class _Ones:
    """The p x q matrix of ones, 1_p 1_q^T, in a chain: where a chain splits into sums."""

    rows: ir.Dim
    cols: ir.Dim


def _number(value: Fraction) -> str:
    return repr(float(value))


def _dim(dim: ir.Dim) -> str:
    """A size as Python: the input language's `m n` is `m * n`."""
    return " * ".join(dim_text(dim).split())


def _is_literal(text: str) -> bool:
    return bool(re.fullmatch(r"-?[0-9.]+(e[-+]?[0-9]+)?|-?inf|nan", text))


def _spread_of(shape: ir.Shape, along: Spread) -> Spread:
    """A spread kept only along axes longer than 1 (an axis of one is whole)."""
    return (along[0] and shape[0] != 1, along[1] and shape[1] != 1)


def _joined(shape: ir.Shape, operands: Sequence[tuple[Expr, Code]]) -> Spread:
    """The spread of an element-wise result: along an axis, only where every operand is spread (or of length 1:
    a scalar factor)."""
    def along(axis: int) -> bool:
        return all(code.spread[axis] or node.shape[axis] == 1 for node, code in operands)

    return _spread_of(shape, (along(0), along(1)))


class _Emitter:
    """Code for the nodes of some expressions over one set of names (definitions and shared subexpressions)."""

    def __init__(self, target: Backend) -> None:
        self.backend = target
        self.m = target.module
        self.code: dict[int, Code] = {}
        self.lines: list[str] = []
        self.used_helpers: set[str] = set()
        self.temporaries = 0
        self.keep: list[Expr] = []  # the nodes whose ids key `code`: alive while the emitter is
        self.uses: dict[int, int] = {}
        self.spread_names: dict[str, Spread] = {}  # a definition whose code is spread: its name is too
        self.numbers: set[int] = set()  # the scalar nodes with no variable (sqrt(2), d^-1): Python numbers
        # the names given so far, by the code they name: two nodes written alike compute one value (every name is
        # assigned once), as `vector(1) vector(1)^T H` and `matrix(1) H` do
        self.named: dict[str, Code] = {}
        self.taken: set[str] = set()  # the names the function uses, which a Cholesky factor's must not take
        self.factors: dict[str, str] = {}  # an spd variable's name -> the name of its Cholesky factor
        self.spd_inverses: set[str] = set()  # the temporaries holding an spd inverse, which solves may leave unused
        self.aliases: dict[str, Code] = {}  # a definition whose code is another's name: read as that name
        self.preferred: dict[Expr, str] = {}  # a shared node -> the name of the definition it was (shared_plan)

    def helper(self, name: str) -> str:
        self.used_helpers.add(name)
        return name

    def count_uses(self, exprs: Sequence[Expr]) -> None:
        """How often each node is used, over all the expressions the function computes: a subexpression shared by
        two outputs (1 - h.^2 in two gradients) is computed once too."""
        self.uses: dict[int, int] = {}
        seen: set[int] = set()
        for e in exprs:
            for node in ir.postorder(e):
                if id(node) in seen:
                    continue
                seen.add(id(node))
                self.keep.append(node)
                if isinstance(node, Var):
                    self.taken.add(python_name(node.name))
                for child in node.children:
                    self.uses[id(child)] = self.uses.get(id(child), 0) + 1
            self.uses[id(e)] = self.uses.get(id(e), 0) + 1

    def emit(self, e: Expr, assign_to: str | None = None) -> Code:
        """The code of e, with a line `t_k = ...` for each of its subexpressions used more than once."""
        order = ir.postorder(e)
        uses = self.uses
        for node in order:
            if id(node) in self.code:
                continue
            self.keep.append(node)
            code = self._node(node)
            if code.text in self.named:  # computed already, under a name
                code = self.named[code.text]
            elif node is not e and uses.get(id(node), 0) > 1 and node.children and not _is_name(code.text):
                name = self.preferred.pop(node, None)
                if name is None:
                    self.temporaries += 1
                    name = f"t{self.temporaries}"
                self.lines.append(f"{name} = {code.text}")
                if isinstance(node, Func) and node.name == "inv" and of_spd_variable(node):
                    self.spd_inverses.add(name)
                self.named[code.text] = Code(name, True, code.spread)
                code = self.named[code.text]
            self.code[id(node)] = code
        result = self.code[id(e)]
        if assign_to is not None and _is_name(result.text) and result.text.removesuffix(".T").isidentifier():
            self.aliases[assign_to] = result  # U_1 = s: another name for a value computed already, not a line
            return result
        if assign_to is not None:
            self.lines.append(f"{assign_to} = {result.text}")
            if result.spread != WHOLE:
                self.spread_names[assign_to] = result.spread
            if not _is_name(result.text):
                self.named.setdefault(result.text, Code(assign_to, True, result.spread))
            self.code[id(e)] = Code(assign_to, True, result.spread)
            return self.code[id(e)]
        return result

    def of(self, node: Expr) -> Code:
        return self.code[id(node)]

    def whole(self, node: Expr) -> Code:
        """The code of node as an array of its full shape (a spread one filled out)."""
        return self.made_whole(self.of(node), node.shape)

    def made_whole(self, code: Code, shape: ir.Shape) -> Code:
        """A spread code as an array of `shape` of its own, for a consumer that does not broadcast (a Kronecker
        product, inv, a returned value): np.full broadcasts its fill value; torch's takes a number."""
        if not any(_spread_of(shape, code.spread)):
            return code
        sizes = f"({_dim(shape[0])}, {_dim(shape[1])})"
        if _is_literal(code.text):
            return Code(self.backend.constant.format(shape=sizes, value=code.text), True)
        if self.backend.name == "torch":  # a * ones: a product needs no parentheses before the ones
            factor = f"({code.text})" if _top_level_sum(code.text) else code.text
            return Code(self.backend.broadcast.format(a=factor, shape=sizes), False)
        return Code(self.backend.broadcast.format(a=code.text, shape=sizes), True)

    def reduced(self, code: Code, axis: int) -> str:
        """The sums of an array along one axis (0: of each column, a row; 1: of each row, a column), kept 2-D."""
        return self.backend.reduce.format(a=code.operand(), axis=axis)

    def cholesky(self, template: str, variable: Var, **operands: str) -> str:
        """A CHOLESKY_CODE template over the Cholesky factor of an spd variable; the factor's line, `L_S =
        cholesky(S)`, is written once, before its first use (S is an input: it is known from the start)."""
        codes = CHOLESKY_CODE[self.backend.name]
        factor = self.factors.get(variable.name)
        if factor is None:
            factor = ir.fresh_name(f"L_{python_name(variable.name)}", self.taken)
            self.taken.add(factor)
            self.factors[variable.name] = factor
            self.lines.append(f"{factor} = " + codes["factor"].format(a=self.of(variable).text))
        return codes[template].format(L=factor, **operands)

    # ------------------------------------------------------------ one node from its children's code
    def _node(self, e: Expr) -> Code:
        write = _NODE_CODE.get(type(e))
        if write is None:
            raise TypeError(f"no code for {type(e).__name__}")
        if e.is_scalar and (isinstance(e, (Num, Size, ir.Constant)) or (
                e.children and all(id(child) in self.numbers for child in e.children))):
            self.numbers.add(id(e))
        return write(self, e)

    def _var(self, e: Var) -> Code:
        name = python_name(e.name)
        if name in self.aliases:
            return self.aliases[name]
        return Code(name, True, self.spread_names.get(name, WHOLE))

    def _num(self, e: Num) -> Code:
        text = _number(e.value)
        return Code(text, not text.startswith("-"))

    def _size(self, e: Size) -> Code:
        return Code(e.dim, True)

    def _constant(self, e: ir.Constant) -> Code:
        return Code(CONSTANTS[e.name].code.get(self.backend.name, "{m}." + e.name).format(m=self.m), True)

    def _fill(self, e: Fill) -> Code:
        """vector(c), matrix(c): the number, spread along every axis (made whole only where a consumer needs it)."""
        text = _number(e.value)
        return Code(text, not text.startswith("-"), _spread_of(e.shape, (True, True)))

    def _identity(self, e: Identity) -> Code:
        return Code(self.backend.eye.format(n=_dim(e.size)), True)

    def _commutation(self, e: Commutation) -> Code:
        extra = ", _like" if self.backend.name == "torch" else ""
        return Code(f"{self.helper('_commutation')}({_dim(e.rows)}, {_dim(e.cols)}{extra})", True)

    def _sum(self, e: Add) -> Code:  # a constant term is a number, broadcast (1 - s)
        erfc = self._one_plus_erf(e)
        if erfc is not None:
            return erfc
        codes = [self.of(term) for term in e.terms]
        if all(_is_literal(c.text) for c in codes):  # nothing beside the numbers gives the array its shape
            codes[0] = self.whole(e.terms[0])
        text = codes[0].text
        for code in codes[1:]:
            text += f" - {code.text[1:]}" if code.text.startswith("-") else f" + {code.text}"
        return Code(text, False, _joined(e.shape, list(zip(e.terms, codes, strict=True))))

    def _one_plus_erf(self, e: Add) -> Code | None:
        """1 + erf(x) as erfc(-x) (ONE_PLUS_ERF), where the backend writes it so."""
        template = ONE_PLUS_ERF.get(self.backend.name)
        if template is None or len(e.terms) != 2 or not any(ir.is_ones(t) for t in e.terms):
            return None
        erf = e.terms[1] if ir.is_ones(e.terms[0]) else e.terms[0]
        if not (isinstance(erf, Func) and erf.name == "erf" and not erf.axis) or id(erf.arg) in self.numbers:
            return None
        for helper in _HELPER_NAMES[self.backend.name]:
            if helper + "(" in template:
                self.used_helpers.add(helper)
        arg = self.of(erf.arg)
        return Code(template.format(a=f"-{arg.operand()}"), True, _spread_of(e.shape, arg.spread))

    def _transpose(self, e: Transpose) -> Code:
        code = self.of(e.arg)
        return Code(f"{code.operand()}.T", True, (code.spread[1], code.spread[0]))

    def _hadamard(self, e: Hadamard) -> Code:
        codes = [self.of(f) for f in e.factors]
        return Code(" * ".join(c.operand() for c in codes), False, _joined(e.shape, list(zip(e.factors, codes,
                                                                                             strict=True))))

    def _quotient(self, e: ElemDiv) -> Code:
        operands = [(e.numerator, self.of(e.numerator)), (e.denominator, self.of(e.denominator))]
        return Code(f"{operands[0][1].operand()} / {operands[1][1].operand()}", False, _joined(e.shape, operands))

    def _power(self, e: Power) -> Code:
        if e.base.is_scalar:
            return Code(f"{self.of(e.base).operand()} ** {self._exponent(e.exponent)}", False)
        k = int(e.exponent.value)  # type: ignore[attr-defined]
        return Code(self.backend.matrix_power.format(a=self.whole(e.base).text, k=k), True)

    def _elem_power(self, e: ElemPower) -> Code:
        base = self.of(e.base)
        return Code(f"{base.operand()} ** {self._exponent(e.exponent)}", False, _spread_of(e.shape, base.spread))

    def _kron(self, e: Kron) -> Code:
        # torch.kron views its arguments: a transposed one must be made contiguous first
        arguments = [f"{self.whole(f).operand()}.contiguous()" if self.backend.name == "torch" else self.whole(f).text
                     for f in e.factors]
        text = arguments[0]
        for argument in arguments[1:]:
            text = f"{self.m}.kron({text}, {argument})"
        return Code(text, True)

    def _exponent(self, e: Expr) -> str:
        if isinstance(e, Num) and e.value.denominator == 1:  # x ** 2, not x ** 2.0
            return str(e.value.numerator) if e.value >= 0 else f"({e.value.numerator})"
        return self.of(e).operand()

    def _call(self, e: Func) -> Code:
        m = self.m
        spec = FUNCTIONS[e.name]
        arg = self.of(e.arg)
        # tanh of a broadcast is the broadcast of its tanh (torch's functions take tensors, not numbers)
        if spec.kind == "elementwise" and not _is_literal(arg.text) and not (
                self.backend.name == "torch" and all(_spread_of(e.shape, arg.spread))):
            spread = _spread_of(e.shape, arg.spread)
        else:
            spread = WHOLE
            if e.name == "sum" and any(arg.spread):  # the sum of a broadcast: of what is there, times the copies
                copies = [self._size_code(d) for d, along in zip(e.arg.shape, arg.spread, strict=True) if along]
                total = arg.operand() if _is_literal(arg.text) else f"{m}.sum({arg.text})"
                return Code(" * ".join([*copies, total]), False)
            arg = self.whole(e.arg)
        if e.name == "diag":
            if ir.is_column(e.arg.shape):
                return Code(f"{m}.diag({arg.operand()}[:, 0])", True)
            if e.arg.shape[0] == 1:
                return Code(f"{m}.diag({arg.operand()}[0, :])", True)
            return Code(f"{m}.diag({arg.text})[:, None]", True)
        if e.name == "tr" and isinstance(e.arg, MatMul):  # tr(c A B) = c sum(A .* B^T): no product formed
            coefficient, scalars, chain = ir.split_product(e.arg)
            if len(chain) == 2 and not any(any(self.of(f).spread) for f in chain):
                prefix = "".join(f"{code} * " for code in self._scalar_codes(coefficient, scalars))
                a, c = (self.of(f).operand() for f in chain)
                return Code(f"{prefix}{m}.sum({a} * {c}.T)", not prefix)
        if of_spd_variable(e):
            return Code(self.cholesky(e.name, e.arg), e.name == "inv")  # type: ignore[arg-type]
        if e.axis:
            template = ALONG_AXIS[e.name][self.backend.name].replace("{axis}", str(e.axis - 1))
        else:
            template = spec.code.get(self.backend.name, "{m}." + e.name + "({a})")
        for helper in _HELPER_NAMES[self.backend.name]:
            if helper + "(" in template:
                self.used_helpers.add(helper)
        whole_argument = template.count("{a}") == 1 and ("({a})" in template or "({a}," in template)
        if self.backend.name == "torch" and id(e.arg) in self.numbers:  # torch's functions take tensors only
            arg = Code(f"torch.as_tensor({arg.text}, dtype=_like.dtype, device=_like.device)", True)
        text = template.format(m=m, a=arg.text if whole_argument else arg.operand())
        return Code(text, True, spread)

    def _scalar_codes(self, coefficient: Fraction, scalars: Sequence[Expr]) -> list[str]:
        codes = [] if coefficient == 1 else [_number(coefficient) if coefficient > 0 else f"({_number(coefficient)})"]
        return codes + [self.of(s).operand() for s in scalars]

    def _product(self, e: MatMul) -> Code:
        coefficient, scalars, chain = ir.split_product(e)
        negate = coefficient == -1
        codes = self._scalar_codes(Fraction(1) if negate else coefficient, scalars)
        pieces = self._pieces(chain)
        if any(isinstance(p, _Ones) for p in pieces):  # a product with ones: sums and broadcasts
            sums, numbers, spread = self._split_at_ones(pieces, e)
            codes += numbers
            if sums and e.is_scalar and not sums.startswith(f"{self.m}.sum("):
                sums = f"{_paren(sums)}[0, 0]"  # a 1 x 1 array as a 0-d value
            if sums:
                codes.append(_paren(sums) if codes else sums)
            text = " * ".join(codes) if codes else "1.0"
            atomic = len(codes) == 1 and not negate and _paren(codes[0]) == codes[0]
            return Code(f"-{_paren(text)}" if negate else text, atomic, _spread_of(e.shape, spread))
        factors = [p for p in pieces if isinstance(p, _Factor)]
        if factors:
            chain_code = self._chain(factors)
            if e.is_scalar:  # a 1 x 1 chain (x^T A x) as a 0-d value
                chain_code = f"{_paren(chain_code)}[0, 0]"
            codes.append(chain_code if len(factors) == 1 or e.is_scalar else f"({chain_code})")
        if len(codes) == 1 and len(factors) > 1 and not e.is_scalar:
            codes[0] = codes[0][1:-1]  # a product alone needs no parentheses of its own
        text = " * ".join(codes) if codes else "1.0"
        # -(X.T @ v), not -X.T @ v: Python's unary minus binds first and would copy the whole matrix
        return Code(f"-{_paren(text)}" if negate else text, len(codes) == 1 and not negate and len(factors) <= 1)

    # ------------------------------------------------------------ chains: ones split them into sums
    def _pieces(self, chain: Sequence[Expr]) -> list[_Factor | _Ones | str]:
        """The chain as the code multiplies it: a spread factor is split into its array and the ones it stands
        for (b spread along q columns is b 1_q^T; a number spread along both is that number times 1_p 1_q^T), a
        fill c matrix(1) is c and the ones; a scalar the split leaves is a code of its own (a str)."""
        pieces: list[_Factor | _Ones | str] = []
        for f in chain:
            code = self.of(f)
            rows, cols = f.shape
            spread = _spread_of(f.shape, code.spread)
            if spread == WHOLE:
                pieces.append(_Factor(code, f.shape, f))
            elif spread == (True, True) or (spread[0] and cols == 1) or (spread[1] and rows == 1):
                if code.text != "1.0":
                    pieces.append(code.operand())
                pieces.append(_Ones(rows, cols))
            elif spread[0]:  # one row standing for every row: 1_p r
                pieces += [_Ones(rows, 1), _Factor(Code(code.text, code.atomic), (1, cols), None)]
            else:  # one column standing for every column: c 1_q^T
                pieces += [_Factor(Code(code.text, code.atomic), (rows, 1), None), _Ones(1, cols)]
        return pieces

    def _split_at_ones(self, pieces: list[_Factor | _Ones | str], e: Expr) -> tuple[str, list[str], Spread]:
        """A chain with ones in it, L 1_p 1_q^T M ... R: the row sums of L (a column, L 1), the sum of each inner
        segment (a number, 1^T M 1), the column sums of R (a row, 1^T R), multiplied as broadcasts; an empty end
        leaves the result spread along that axis. Returns (the sums' code, the scalars, the spread)."""
        numbers = [p for p in pieces if isinstance(p, str)]
        segments: list[list[_Factor]] = [[]]
        ones: list[_Ones] = []
        for p in pieces:
            if isinstance(p, _Factor):
                segments[-1].append(p)
            elif isinstance(p, _Ones):
                if not segments[-1] and ones:  # 1_p 1_q^T 1_q 1_s^T: q 1_p 1_s^T
                    if ones[-1].cols != 1:
                        numbers.append(self._size_code(ones[-1].cols))
                    ones[-1] = _Ones(ones[-1].rows, p.cols)
                    continue
                ones.append(p)
                segments.append([])
        first, *inner, last = segments
        sums: list[str] = []
        if e.is_scalar and len(first) == 1 and first[0].shape[0] == 1 and not inner and not last:
            return f"{self.m}.sum({first[0].code.text})", numbers, (True, True)  # x^T 1
        if first:
            sums.append(self._fold_right(first, seed="sum"))
        for segment in inner:
            sums.append(f"{self.m}.sum({self._fold_right(segment, seed='sum')})")
        if last:
            if len(last) == 1 and last[0].shape[1] == 1 and not first and e.is_scalar:
                sums.append(f"{self.m}.sum({last[0].code.text})")  # 1^T u
            else:
                sums.append(self._fold_left(last, seed="sum"))
        return " * ".join(_paren(s) if len(sums) > 1 else s for s in sums), numbers, (not first, not last)

    def _size_code(self, dim: ir.Dim) -> str:
        text = _dim(dim)
        return text if " " not in text else f"({text})"

    def _chain(self, chain: list[_Factor]) -> str:
        """A matrix chain, multiplied from the right when it ends in a vector (else from the left), with each
        diag(v) applied as a scaling and each inv(X) as a solve."""
        if chain[-1].shape[1] == 1 or chain[0].shape[0] != 1:
            return self._fold_right(chain) if chain[-1].shape[1] == 1 else self._fold_left(chain)
        return self._fold_left(chain)

    def _diagonal(self, f: _Factor) -> str | None:
        """The column v of a diag(v) factor, or None."""
        node = f.node
        if isinstance(node, Func) and node.name == "diag" and ir.is_vector_shape(node.arg.shape):
            v = self.whole(node.arg).operand()
            return v if ir.is_column(node.arg.shape) else f"{v}.T"
        return None

    def _inverted(self, f: _Factor) -> Expr | None:
        node = f.node
        return node.arg if isinstance(node, Func) and node.name == "inv" else None

    def _fold_right(self, chain: list[_Factor], seed: str | None = None) -> str:
        """The chain multiplied from the right; with seed "sum", the chain times a ones column (its row sums),
        computed as the row sums of its last factor, then products with a vector."""
        acc: str | None = None
        pending: str | None = None  # a diag(v) at the right end, waiting for a factor to scale
        if seed == "sum":
            last, chain = chain[-1], chain[:-1]
            v = self._diagonal(last)
            inverted = self._inverted(last)
            if v is not None:  # diag(v) 1 = v
                acc = v
            elif inverted is not None:
                ones = self.backend.constant.format(shape=f"({_dim(last.shape[0])}, 1)", value="1.0")
                acc = self.backend.solve.format(a=self.whole(inverted).text, b=ones)
            elif last.shape[1] == 1:  # a column is its own row sums
                acc = last.code.operand()
            else:
                acc = self.reduced(last.code, 1)
        for f in reversed(chain):
            v = self._diagonal(f)
            if acc is None and pending is None and v is not None:
                pending = v
                continue
            if acc is None and pending is not None:
                # F diag(v), or diag(a) diag(b): the diagonal matrix of a .* b
                acc = f"{f.code.operand()} * {pending}.T" if v is None else \
                    f"{self.m}.diag(({v} * {pending})[:, 0])"
                pending = None
                continue
            inverted = self._inverted(f)
            if acc is None:
                acc = f.code.operand()
            elif v is not None:
                acc = f"{v} * {_paren(acc)}"
            elif inverted is not None and of_spd_variable(f.node):
                acc = self.cholesky("solve", inverted, b=acc)  # type: ignore[arg-type]
            elif inverted is not None:
                acc = self.backend.solve.format(a=self.whole(inverted).text, b=acc)
            elif f.shape[1] == 1:  # an outer product: a broadcast, not a matrix product over an axis of 1
                acc = f"{f.code.operand()} * {_paren(acc)}"
            elif isinstance(f.node, Transpose) and self.backend.name == "jax":  # XLA's CPU dot is slow with A^T first
                acc = f"({_paren(acc)}.T @ {self.of(f.node.arg).operand()}).T"
            else:
                acc = f"{f.code.operand()} @ {_paren(acc)}"
        if acc is None:
            return f"{self.m}.diag({pending}[:, 0])"
        return acc

    def _fold_left(self, chain: list[_Factor], seed: str | None = None) -> str:
        """The chain multiplied from the left; with seed "sum", a ones row times the chain (its column sums),
        computed as the column sums of its first factor, then products with a row."""
        acc: str | None = None
        pending: str | None = None  # a diag(v) at the left end, waiting for a factor to scale
        if seed == "sum":
            first, chain = chain[0], chain[1:]
            v = self._diagonal(first)
            if v is not None:  # 1^T diag(v) = v^T
                acc = f"{v}.T"
            elif self._inverted(first) is not None:  # 1^T inv(X) = solve(X^T, 1)^T
                ones = self.backend.constant.format(shape=f"({_dim(first.shape[0])}, 1)", value="1.0")
                acc = f"{self.backend.solve.format(a=self.whole(self._inverted(first)).operand() + '.T', b=ones)}.T"
            elif first.shape[0] == 1:  # a row is its own column sums
                acc = first.code.operand()
            else:
                acc = self.reduced(first.code, 0)
        for f in chain:
            v = self._diagonal(f)
            if acc is None and pending is None and v is not None:
                pending = v
            elif acc is None and pending is not None:
                # diag(v) F, or diag(a) diag(b): the diagonal matrix of a .* b
                acc = f"{pending} * {f.code.operand()}" if v is None else \
                    f"{self.m}.diag(({pending} * {v})[:, 0])"
                pending = None
            elif acc is None:
                acc = f.code.operand()
            elif v is not None:
                acc = f"{_paren(acc)} * {v}.T"
            elif f.shape[0] == 1:  # an outer product: a broadcast
                acc = f"{_paren(acc)} * {f.code.operand()}"
            else:
                acc = f"{_paren(acc)} @ {f.code.operand()}"
        if acc is None:
            return f"{self.m}.diag({pending}[:, 0])"
        return acc


# The code of one node from its children's, by node type.
_NODE_CODE: dict[type, Callable[[_Emitter, Any], Code]] = {
    Var: _Emitter._var,
    Num: _Emitter._num,
    Size: _Emitter._size,
    ir.Constant: _Emitter._constant,
    Fill: _Emitter._fill,
    Identity: _Emitter._identity,
    Commutation: _Emitter._commutation,
    Add: _Emitter._sum,
    MatMul: _Emitter._product,
    Transpose: _Emitter._transpose,
    Hadamard: _Emitter._hadamard,
    ElemDiv: _Emitter._quotient,
    Power: _Emitter._power,
    ElemPower: _Emitter._elem_power,
    Kron: _Emitter._kron,
    Func: _Emitter._call,
}


def _top_level_sum(text: str) -> bool:
    """Whether the text has a + or a binary - outside parentheses (it binds less than a product)."""
    depth = 0
    for index, character in enumerate(text):
        depth += character in "([{"
        depth -= character in ")]}"
        if depth == 0 and text[index:index + 3] in (" + ", " - "):
            return True
    return False


def _is_name(text: str) -> bool:
    """A name, a number, or a name's transpose: nothing worth a line of its own."""
    bare = text[:-2] if text.endswith(".T") else text
    return bare.isidentifier() or bare.replace(".", "").replace("-", "").isdigit()


def _paren(text: str) -> str:
    """Parentheses around a product folded so far, unless it is one name or call (or an operand's sums)."""
    return text if text.replace("_", "").replace(".", "").isalnum() or _one_call(text) or _sums_of_operand(text) \
        else f"({text})"


def _sums_of_operand(text: str) -> bool:
    """Whether the text is `a.sum(k, keepdims=True)` of an operand a (the method binds tightest)."""
    found = re.fullmatch(r"(.+)\.sum\([01], keepdims?=True\)", text)
    return found is not None and _paren(found.group(1)) == found.group(1)


def _one_call(text: str) -> bool:
    """Whether the text is one call f(...), or wholly in parentheses already."""
    if not text.endswith(")") or "(" not in text:
        return False
    depth = 0
    for index, character in enumerate(text):
        depth += character == "("
        depth -= character == ")"
        if depth == 0 and index < len(text) - 1 and character == ")":
            return False
    head = text[: text.index("(")]
    return not head or head.replace("_", "").replace(".", "").isalnum()


# ---------------------------------------------------------------- planning: what the function computes once
#
# The rules of the plan, applied to all of a function's expressions together (the definitions, then the outputs),
# before the emitter counts uses. Each keeps the values exactly (the same operations on the same numbers) and only
# removes work; each is named here, and `shared_plan` cites them in its docstring.
#
# - "definition read as its value": a definition whose value is a name (U_1 = s), or a node computed elsewhere in
#   the function too (U_2 = W1 Z + b1, inside M = W2 gelu(W1 Z + b1) + b2 as well), is replaced by that value
#   wherever it is read, so that one node stands for both and a function of it (gelu(U_2)) is computed once; the
#   value's line keeps the definition's name.
# - "a node and its transpose computed once": where the function holds a node S and, elsewhere, the node its
#   transpose pushed to the leaves is (S^T as the simplifier writes it: (g^T - sum(g^T .* P^T, 2)) .* P^T beside
#   (g - sum(g .* P, 1)) .* P), the later one is written S^T: one T x T array, not two.
# - "gelu by its distribution": gelu(u) -> u .* Phi(u) where the function computes Phi(u) = (1 + erf(u / sqrt(2))) / 2
#   for gelu's derivative too: one erf for the value and the gradient (with ONE_PLUS_ERF, NumPy's Phi is
#   erfc(-u / sqrt(2)) / 2, as its gelu is, so the value keeps its accuracy in the negative tail).


def transposed_form(node: Expr, twins: dict[int, Expr]) -> Expr | None:
    """node^T with the transpose pushed to the leaves, built from its children's (`twins`, by id; computed already,
    children first) as the simplifier writes it, or None where no such form is known. Equal to node^T by the
    identities (A + B)^T = A^T + B^T, (A .* B)^T = A^T .* B^T, (A ./ B)^T, (A.^p)^T = (A^T).^p, (c A B)^T = c B^T A^T,
    f(A)^T = f(A^T) for an element-wise f, and f(A, k)^T = f(A^T, 3 - k) for a function along an axis."""
    if node.is_scalar:
        return node
    if isinstance(node, Transpose):
        return node.arg
    if not node.children:
        return ir.transpose(node)
    if isinstance(node, (Add, Hadamard, ElemDiv, ElemPower)):
        return ir.with_children(node, tuple(twins[id(child)] for child in node.children))
    if isinstance(node, MatMul):
        scalars = [f for f in node.factors if f.is_scalar]
        chain = [twins[id(f)] for f in node.factors if not f.is_scalar]
        return MatMul((*scalars, *reversed(chain)))
    if isinstance(node, Func) and node.axis:
        return Func(node.name, twins[id(node.arg)], 3 - node.axis)
    if isinstance(node, Func) and FUNCTIONS[node.name].kind == "elementwise":
        return Func(node.name, twins[id(node.arg)])
    return None


def shared_plan(bindings: Sequence[tuple[str, Expr]], outputs: Sequence[Expr]) -> tuple[
        list[tuple[str, Expr]], list[Expr], dict[Expr, str]]:
    """The function's definitions and outputs under the plan's rules (above: "definition read as its value", "a
    node and its transpose computed once", "gelu by its distribution"), and the names the values of the definitions
    read as their value keep (by node: interned, so equal is identical). Passes over the distinct nodes of all the
    expressions, children first, without recursion; the structure of every node is kept (ir.with_children: no
    smart constructor reorders it)."""
    exprs = [value for _, value in bindings] + list(outputs)
    holders: dict[int, set[int]] = {}  # a node -> the expressions it occurs in
    for index, e in enumerate(exprs):
        for node in ir.walk(e):
            holders.setdefault(id(node), set()).add(index)
    read_as_value = {name for index, (name, value) in enumerate(bindings)
                     if isinstance(value, Var) or holders[id(value)] - {index}}
    rebuilt: dict[int, Expr] = {}  # an old node's id -> its node in the plan
    twins: dict[int, Expr] = {}  # a planned node's id -> its transposed form (or itself, where none is known)
    present: dict[Expr, Expr] = {}  # the planned nodes so far (interned: equal is identical)
    keep: list[Expr] = []  # alive while the ids above are used
    values: dict[str, Expr] = {}
    preferred: dict[Expr, str] = {}

    def planned(e: Expr) -> Expr:
        for node in ir.postorder(e):
            if id(node) in rebuilt:
                continue
            if isinstance(node, Var) and node.name in values:
                new = values[node.name]
            else:
                children = tuple(rebuilt[id(child)] for child in node.children)
                changed = any(a is not b for a, b in zip(children, node.children, strict=True))
                new = ir.with_children(node, children) if changed else node
                twin = transposed_form(new, twins) if id(new) not in twins else twins[id(new)]
                if twin is not None and twin is not new and new.children and twin in present \
                        and not isinstance(new, Transpose):
                    new = Transpose(twin)  # its transpose is computed already: read it transposed
                    twin = present[twin]
                if id(new) not in twins:
                    twins[id(new)] = twin if twin is not None else Transpose(new)
            keep.append(new)
            present.setdefault(new, new)
            rebuilt[id(node)] = new
        return rebuilt[id(e)]

    planned_bindings: list[tuple[str, Expr]] = []
    for name, value in bindings:
        new = planned(value)
        if name in read_as_value:
            values[name] = new
            if new.children:
                preferred.setdefault(new, python_name(name))
        else:
            planned_bindings.append((name, new))
    planned_outputs = [planned(e) for e in outputs]
    by_distribution = _gelu_by_distribution([value for _, value in planned_bindings] + planned_outputs, present)
    if by_distribution:
        planned_bindings = [(name, _replaced(value, by_distribution)) for name, value in planned_bindings]
        planned_outputs = [_replaced(e, by_distribution) for e in planned_outputs]
        preferred = {_replaced(node, by_distribution): name for node, name in preferred.items()}
    return planned_bindings, planned_outputs, preferred


def _gelu_by_distribution(exprs: Sequence[Expr], present: dict[Expr, Expr]) -> dict[Expr, Expr]:
    """The plan's rule "gelu by its distribution": gelu(u) -> u .* Phi(u) where the function computes Phi(u) =
    (1 + erf(u / sqrt(2))) / 2 too (gelu's derivative holds it: functions.normal_distribution), so that the erf is
    computed once for the value and the gradient."""
    from ..core.functions import normal_distribution

    found: dict[Expr, Expr] = {}
    for e in exprs:
        for node in ir.walk(e):
            if isinstance(node, Func) and node.name == "gelu" and node not in found:
                distribution = normal_distribution(node.arg)
                if distribution in present:
                    found[node] = Hadamard((node.arg, distribution))
    return found


def _replaced(e: Expr, mapping: dict[Expr, Expr]) -> Expr:
    """e with each node of `mapping` replaced, the structure of every other node kept (ir.with_children), children
    first, without recursion."""
    rebuilt: dict[int, Expr] = {}
    for node in ir.postorder(e):
        if node in mapping:
            rebuilt[id(node)] = mapping[node]
            continue
        children = tuple(rebuilt[id(child)] for child in node.children)
        changed = any(a is not b for a, b in zip(children, node.children, strict=True))
        rebuilt[id(node)] = ir.with_children(node, children) if changed else node
    return rebuilt[id(e)]


# ---------------------------------------------------------------- whole functions


@dataclass(frozen=True)
class Output:
    """A value the function returns: an expression, and the shape it is returned in (`axes`: a tensor's axes, in
    vec form; None: the expression's natural shape, a vector 1-D and a scalar 0-d)."""

    expr: Expr
    axes: tuple[ir.Dim, ...] | None = None


def function_source(name: str, docstring: str, parameters: Sequence[Var], bindings: ir.Bindings,
                    outputs: Sequence[Output], target: Backend) -> str:
    """The source of `def name(parameters): ...` (given by keyword or in the order of the docstring's inputs)
    computing the definitions once, then the outputs (a tuple when there are several)."""
    emitter = _Emitter(target)
    body: list[str] = []
    for var in parameters:
        converted = target.asarray.format(a=python_name(var.name))
        if ir.is_vector_shape(var.shape):  # a vector is a column inside the function
            converted += ".reshape(-1, 1)"
        body.append(f"{python_name(var.name)} = {converted}")
    if target.name == "torch" and parameters:
        body.append(f"_like = {python_name(next((v for v in parameters if not v.is_scalar), parameters[0]).name)}")
    sizes_at = len(body)
    planned, planned_outputs, emitter.preferred = shared_plan(
        [(definition, evaluation_plan(value)) for definition, value in bindings],
        [evaluation_plan(output.expr) for output in outputs])
    emitter.count_uses([*(value for _, value in planned), *planned_outputs])
    emitter.taken.update(python_name(definition) for definition, _ in bindings)
    for definition, value in planned:
        emitter.emit(value, assign_to=python_name(definition))
    results = []
    for output, planned_output in zip(outputs, planned_outputs, strict=True):
        code = emitter.made_whole(emitter.emit(planned_output), planned_output.shape).text
        results.append(_returned(code, output, emitter))
    lines = [line for line in emitter.lines if line]
    body += [line for line in lines if not _unused_spd_inverse(line, emitter.spd_inverses, [*lines, *results])]
    written = "\n".join([*body, *results])
    # the Cholesky helpers the text calls: an inverse's code is written for each inv(S), even one then solved
    emitter.used_helpers.update(h for h in CHOLESKY_HELPERS if f"{h}(" in written)
    body[sizes_at:sizes_at] = [line for line in _size_lines(parameters, bindings, outputs)
                               if re.search(rf"\b{line.split(' = ')[0]}\b", written)]
    if len(results) == 1:
        body.append(f"return {results[0]}")
    else:
        body.append("return (" + ", ".join(results) + ")")
    helpers = [_HELPER_NAMES[target.name][h] for h in sorted(emitter.used_helpers)]
    if target.name == "torch":
        helpers.insert(0, '''def _as_tensor(a):
    a = torch.as_tensor(a)
    return a if a.is_floating_point() else a.to(torch.get_default_dtype())''')
    signature = ", ".join([*(python_name(v.name) for v in parameters), *_free_sizes(parameters, bindings, outputs)])
    doc = docstring.replace('"""', "'''").replace("\\", "\\\\")
    lines = [target.imports, "", "", *(f"{h}\n\n" for h in helpers),
             f"def {name}({signature}):",
             *_indent([f'"""{doc}"""', *body])]
    return "\n".join(lines).replace("\n\n\n\n", "\n\n\n") + "\n"


def _unused_spd_inverse(line: str, inverses: set[str], lines: list[str]) -> bool:
    """`t1 = _cho_inverse(L_S)` where every use of inv(S) became a Cholesky solve: an O(n^3) line nothing reads."""
    name = line.split(" = ", 1)[0]
    return name in inverses and not any(re.search(rf"\b{name}\b", other) for other in lines if other is not line)


def _indent(lines: list[str]) -> list[str]:
    return ["    " + line if line else "" for text in lines for line in text.split("\n")]


def _returned(code: str, output: Output, emitter: _Emitter) -> str:
    """An output in the layout of Derivative.evaluate."""
    shape = output.expr.shape
    if output.axes is not None:  # a tensor in vec form: its n-D array
        sizes = ", ".join(_dim(d) for d in output.axes or ())
        return f"{emitter.helper('_reshape_f')}({code}, ({sizes},))"
    if shape == ir.SCALAR:
        module = emitter.m
        if module == "torch":  # a constant (pi ** 2) would be torch's default float32: the inputs' dtype, as a fill's
            return f"torch.as_tensor({code}, dtype=_like.dtype, device=_like.device)"
        return f"{module}.asarray({code})"
    if ir.is_vector_shape(shape):
        return f"{_paren(code)}.reshape(-1)"
    return code


def _carriers(parameters: Sequence[Var]) -> dict[str, str]:
    """Each dimension name -> the code reading its size off an input."""
    found: dict[str, str] = {}
    for var in parameters:
        for axis, dim in enumerate(var.shape):
            if isinstance(dim, str):
                found.setdefault(dim, f"{python_name(var.name)}.shape[{axis}]")
    return found


def _dimensions(bindings: ir.Bindings, outputs: Sequence[Output]) -> list[str]:
    exprs = [*(value for _, value in bindings), *(o.expr for o in outputs)]
    names = ir.dimensions(exprs)
    for o in outputs:
        for dim in o.axes or ():
            names += [n for n in ir.dim_names(dim) if n not in names]
    return names


def _size_lines(parameters: Sequence[Var], bindings: ir.Bindings, outputs: Sequence[Output]) -> list[str]:
    carriers = _carriers(parameters)
    return [f"{dim} = {carriers[dim]}" for dim in _dimensions(bindings, outputs) if dim in carriers]


def _free_sizes(parameters: Sequence[Var], bindings: ir.Bindings, outputs: Sequence[Output]) -> list[str]:
    """Dimensions no input carries (the n of tr(alpha I)): keyword parameters of their own."""
    carriers = _carriers(parameters)
    return [dim for dim in _dimensions(bindings, outputs) if dim not in carriers]


def compile_source(source: str, name: str) -> Any:
    """The function a generated source defines. The source is the engine's own output (no user text reaches
    it: names come from the grammar), run in a fresh namespace."""
    namespace: dict[str, Any] = {}
    exec(compile(source, f"<matcalc {name}>", "exec"), namespace)
    return namespace[name]


# ---------------------------------------------------------------- a derivative as a function


def indented(text: str) -> str:
    return "\n".join("    " + line for line in text.split("\n"))


def identifier(name: str) -> str:
    return re.sub(r"\W", "_", name)


def parameters_of(function: Expr, result: Expr, variable: Var) -> list[Var]:
    """The inputs of generated code: the function's variables (in their order of appearance), then any other the
    result holds, and the variable."""
    found = {**ir.variables(function), **ir.variables(result)}
    found.setdefault(variable.name, variable)
    return list(found.values())


def shapes_doc(parameters: list[Var], returned: tuple) -> str:
    def shape(var: Var) -> str:
        axes = axes_of(var.shape)
        return "a scalar" if not axes else f"({', '.join(map(str, axes))}{',' if len(axes) == 1 else ''})"

    inputs = ", ".join(f"{v.name}: {shape(v)}" for v in parameters)
    out = "a scalar" if not returned else f"({', '.join(map(str, returned))}{',' if len(returned) == 1 else ''})"
    return f"Inputs: {inputs}. Returns {out}."


def derivative_source(d: Result, text: str, name: str, target: Backend) -> str:
    """The function computing derivative `d` (printed as `text`): a parameter per variable, a line per definition,
    returning what `evaluate` returns (a tensor as its n-D array)."""
    parameters = parameters_of(d.function, d.expr, d.variable)
    axes = (*d.split_axes[0], *d.split_axes[1]) if d.form == "vec" else None
    docstring = (f"The {d.kind} of {to_text(d.function)} w.r.t. {d.variable.name}:\n\n" + indented(text)
                 + "\n\n" + shapes_doc(parameters, d.shape if axes else axes_of(d.body.shape)))
    return function_source(name, docstring, parameters, d.definitions, [Output(d.body, axes)], target)


def product_source(d: Result, name: str, product: str, direction: Var, result: Expr, target: Backend) -> str:
    """The JVP (dF at a direction) or the VJP (the adjoint of dF at a cotangent) of `d` as a function: `result`,
    linear in `direction`, never the tensor."""
    of, variable = d.of, d.variable
    if product == "jvp":
        what = f"applied to the direction {direction.name} (a JVP: d({to_text(of)}) at d{variable.name} = " \
               f"{direction.name})"
    else:
        what = f"transposed, applied to the cotangent {direction.name} of the output's shape (a VJP)"
    parameters = list({v.name: v for v in [*parameters_of(of, result, variable), direction]}.values())
    docstring = (f"The {d.kind} of {to_text(d.function)} w.r.t. {variable.name}, {what}:\n\n"
                 + indented(to_text(result)) + "\n\n" + shapes_doc(parameters, axes_of(result.shape)))
    return function_source(name, docstring, parameters, (), [Output(result)], target)
