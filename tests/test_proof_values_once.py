"""The exact forward-mode proof computes each value once per point (only the tangents differ by direction), and
the exact comparison tries the rational form first where the difference has transcendental calls: both keep
proving a right derivative and refuting a wrong one, by numbers."""

import sympy as sp

import matcalc
from matcalc.backends import verify


def test_the_values_along_every_direction_are_one_computation_and_the_tangents_still_differ():
    dual = verify.DualBackend()
    point = sp.Matrix([[sp.Rational(1, 2), 2], [3, sp.Rational(-1, 3)]])
    a = dual.fixed(sp.Matrix([[1, 2], [3, 4]]))
    first = dual.matmul(a, verify.Dual(point, sp.Matrix([[1, 0], [0, 0]])))
    second = dual.matmul(a, verify.Dual(point, sp.Matrix([[0, 0], [0, 1]])))
    assert first.value is second.value and first.value == sp.Matrix([[1, 2], [3, 4]]) * point
    assert first.tangent == sp.Matrix([[1, 0], [3, 0]]) and second.tangent == sp.Matrix([[0, 2], [0, 4]])


def test_a_product_of_quadratic_forms_is_proven_exactly_and_a_wrong_gradient_refuted():
    assert "exactly" in str(matcalc.diff("tr(A X^T B X C)", "X").verify())
    right, wrong = "B X C A + B^T X A^T C^T", "B X C A + B X A^T C^T"  # B^T made B
    assert matcalc.check("tr(A X^T B X C)", "X", right) and not matcalc.check("tr(A X^T B X C)", "X", wrong)


def test_the_rational_form_first_still_leaves_an_algebraic_relation_to_expand():
    two = sp.sqrt(2)
    deadline = verify._Deadline(30.0)
    assert verify._compare((1 + two) ** 2 + sp.exp(0 * two), 4 + 2 * two, sp, deadline) == (True, True)
    assert verify._compare(sp.tanh(1) * (1 + two) ** 2, sp.tanh(1) * (3 + 2 * two), sp, deadline) == (True, True)
    assert verify._compare(sp.tanh(1) * (1 + two) ** 2, sp.tanh(1) * (3 + two), sp, deadline)[0] is False


def test_the_exact_inverse_of_tanh_values_is_the_adjugate_over_the_determinant_and_a_singular_one_still_fails():
    import pytest

    m = sp.Matrix([[5 + sp.tanh(sp.Rational(1, 2)), sp.tanh(2)], [sp.tanh(-1), 5 + sp.tanh(3)]])
    inverse = verify.SympyBackend().function("inv", m)
    assert all(abs(sp.N(v, 50)) < sp.Float("1e-45") for v in inverse * m - sp.eye(2))
    with pytest.raises(ValueError):  # det exactly 0: SymPy's own inverse refuses it, as before
        verify.SympyBackend().function("inv", sp.Matrix([[sp.tanh(1), sp.tanh(1)], [2, 2]]))


def test_a_gradient_through_an_inverse_of_tanh_values_is_proven_and_a_wrong_one_refuted():
    f = "a^T inv(5 I + tanh(X)) b"
    d = matcalc.diff(f, "X")
    assert d.verify()
    assert not matcalc.check(f, "X", "-inv(5 I + tanh(X))^T a b^T inv(5 I + tanh(X))^T")  # the 1 - tanh^2 dropped
