"""functions.FUNCTIONS is the one description of each function: every stage's meaning of it is there,
complete, and its NumPy meaning (what evaluate computes) agrees with its SymPy meaning (what verify
proves against) at random points."""

import random
import re
from fractions import Fraction

import numpy as np
import pytest
import sympy as sp

from matcalc.cli import EXAMPLES
from matcalc.core.functions import FUNCTIONS, IR_FUNCTIONS, FunctionSpec
from matcalc.core.ir import function_shape
from matcalc.frontend.parse import grammar_text, parse_tree

SPECS = list(FUNCTIONS.values())
IR_SPECS = [spec for spec in SPECS if spec.kind != "lowered"]


def test_each_function_of_the_ir_is_complete():
    assert {spec.name for spec in IR_SPECS} == IR_FUNCTIONS
    for spec in IR_SPECS:
        assert callable(spec.numpy), spec.name
        assert callable(spec.sympy), spec.name
        assert spec.latex and spec.latex.count("#") <= 1, spec.name
        assert spec.meaning, spec.name
    for spec in SPECS:
        if spec.kind == "lowered":  # written with other nodes by the parser: no meaning of its own
            assert spec.numpy is None and spec.sympy is None and not spec.latex, spec.name
            assert not spec.zero_preserving, spec.name
        if spec.kind == "elementwise":
            assert spec.result == "same", spec.name


def _entry(rng: random.Random, spec: FunctionSpec) -> Fraction:
    """A random exact entry inside the function's domain, away from kinks at 0."""
    if spec.name in ("log", "sqrt"):
        return Fraction(rng.randint(1, 400), 100)
    if spec.name in ("arcsin", "arccos", "tan"):
        value = Fraction(rng.randint(1, 95), 100)
    else:
        value = Fraction(rng.randint(1, 300), 100)
    return value if rng.random() < 0.5 else -value


def _arguments(rng: random.Random, spec: FunctionSpec) -> list[list[list[Fraction]]]:
    """Arguments of every shape the function takes: square matrices with a positive determinant for the
    square functions (well conditioned: 3 I plus entries below 1), column vectors for softmax."""

    def matrix(rows: int, cols: int) -> list[list[Fraction]]:
        return [[_entry(rng, spec) for _ in range(cols)] for _ in range(rows)]

    if spec.kind == "square":
        size = 3
        small = [[Fraction(rng.randint(-90, 90), 100) for _ in range(size)] for _ in range(size)]
        return [[[small[i][j] + (3 if i == j else 0) for j in range(size)] for i in range(size)], [[Fraction(5, 2)]]]
    if spec.kind == "vector":
        return [matrix(4, 1), matrix(1, 1)]
    if spec.kind == "diag":
        return [matrix(3, 1), matrix(1, 3), matrix(3, 3), matrix(1, 1)]
    return [matrix(2, 3), matrix(3, 1), matrix(1, 1)]


@pytest.mark.parametrize("spec", IR_SPECS, ids=[spec.name for spec in IR_SPECS])
def test_numpy_and_sympy_meanings_agree_at_random_points(spec: FunctionSpec):
    rng = random.Random(f"spec-{spec.name}")
    for _ in range(3):
        for argument in _arguments(rng, spec):
            exact = sp.Matrix([[sp.Rational(v.numerator, v.denominator) for v in row] for row in argument])
            floats = np.array([[float(v) for v in row] for row in argument])
            got = spec.numpy(np, floats)
            expected = spec.sympy(sp, exact)
            shape = (len(argument), len(argument[0]))
            assert got.shape == expected.shape == function_shape(spec.name, shape), (spec.name, shape)
            expected_floats = np.array(expected.evalf(30).tolist(), dtype=float)
            np.testing.assert_allclose(got, expected_floats, rtol=1e-12, atol=1e-14, err_msg=spec.name)


@pytest.mark.parametrize("spec", [s for s in IR_SPECS if s.zero_preserving], ids=lambda spec: spec.name)
def test_zero_preserving_functions_map_zero_to_zero(spec: FunctionSpec):
    shapes = {"square": [(3, 3), (1, 1)], "vector": [(3, 1), (1, 1)], "diag": [(3, 1), (1, 3), (3, 3), (1, 1)]}
    for shape in shapes.get(spec.kind, [(2, 3), (3, 1), (1, 1)]):
        assert not np.any(spec.numpy(np, np.zeros(shape))), (spec.name, shape)
        assert spec.sympy(sp, sp.zeros(*shape)).is_zero_matrix, (spec.name, shape)


def test_the_grammar_reads_the_names_of_the_spec():
    text = grammar_text()
    assert "%FUNCTION_NAMES%" not in text
    func = re.search(r"^FUNC\.2: /\((.*?)\)\(", text, re.MULTILINE)
    assert func is not None and set(func.group(1).split("|")) == set(FUNCTIONS)
    for name in FUNCTIONS:  # each name is read as a call, not as a name juxtaposed with (x)
        assert parse_tree(f"{name}(x)").data == "call", name
        assert parse_tree(f"{name}x").data == "name", name


def test_the_cli_help_lists_every_function():
    listed = re.search(r"functions (.*?), sizes (.*?) \(", " ".join(EXAMPLES.split()))
    assert listed is not None
    assert sorted(listed.group(1).split() + listed.group(2).split()) == sorted(FUNCTIONS)


def test_each_helper_of_generated_code_is_its_functions_own():
    for spec in IR_SPECS:
        for backend, source in spec.helpers.items():
            assert backend in ("numpy", "jax", "torch"), spec.name
            assert source.startswith(f"def _{spec.name}(a):\n"), spec.name
        for backend, template in spec.code.items():  # a helper the code calls is the spec's, for that backend
            called = set(re.findall(r"\b(_\w+)\(", template))
            assert called <= ({f"_{spec.name}"} if backend in spec.helpers else set()), (spec.name, backend)
