"""Deep networks through the engine (issue 8): differentiation, the derivative readers and simplification
visit each distinct node once, without recursing over the depth, and write results whose number of distinct
nodes grows linearly with the depth.

The networks are built with the IR constructors (not parsed), so that these tests depend on the engine only.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

import matcalc
from matcalc.backends.interpret import evaluate_numpy
from matcalc.calculus.backprop import backpropagate
from matcalc.calculus.derive import derivative_from_differential
from matcalc.calculus.differential import differential
from matcalc.core import ir
from matcalc.core.ir import Expr, Var
from matcalc.rules.rule import Rule, RuleSet
from matcalc.rules.simplify import SIMPLIFY_RULES, commutative_key, is_symmetric, simplify
from matcalc.rules.strategy import apply_once, normalize

LINEAR = 4.5  # the largest distinct-node ratio taken as linear growth for 4 times the depth
DEEP = 1_024  # far beyond Python's recursion limit (1,000 frames)


def mlp(depth: int, prefix: str = "") -> tuple[Expr, Var, list[Var]]:
    """sum(tanh(W_{L-1} ... tanh(W1 tanh(W0 x)))): (f, x, [W0, ..., W_{L-1}])."""
    x = Var(f"{prefix}x", ("n", 1))
    weights = [Var(f"{prefix}W{k}", ("n", "n")) for k in range(depth)]
    h: Expr = x
    for w in weights:
        h = ir.func("tanh", ir.mul(w, h))
    return ir.func("sum", h), x, weights


def residual_layers(depth: int, prefix: str = "") -> tuple[Expr, Var, list[Var]]:
    """h_{k+1} = h_k + tanh(W_k h_k), h_0 = x: a DAG, each h_k used twice: (h_L, x, weights)."""
    x = Var(f"{prefix}x", ("n", 1))
    weights = [Var(f"{prefix}W{k}", ("n", "n")) for k in range(depth)]
    h: Expr = x
    for w in weights:
        h = ir.add(h, ir.func("tanh", ir.mul(w, h)))
    return h, x, weights


def residual(depth: int, prefix: str = "") -> tuple[Expr, Var, list[Var]]:
    """sum(h_L) of the residual network."""
    h, x, weights = residual_layers(depth, prefix)
    return ir.func("sum", h), x, weights


def derivative(f: Expr, variable: Var) -> Expr:
    """The pipeline of api._differentiate: differential, identification, simplification."""
    return simplify(derivative_from_differential(differential(f, variable), variable, f.shape))


def distinct_nodes(e: Expr) -> int:
    return sum(1 for _ in ir.walk(e))


# ---------------------------------------------------------------- no recursion over the depth


def test_the_1024_layer_mlp_gradient_wrt_its_innermost_weight_has_no_recursion_error():
    f, _, weights = mlp(DEEP, "a")
    assert ir.depth(f) > 2 * DEEP
    gradient = derivative(f, weights[0])
    assert gradient.shape == weights[0].shape


def test_the_1024_layer_mlp_gradient_wrt_its_input_has_no_recursion_error():
    f, x, _ = mlp(DEEP, "b")
    gradient = derivative(f, x)
    assert gradient.shape == x.shape


def test_the_1024_layer_mlp_jacobian_wrt_its_input_has_no_recursion_error():
    f, x, _ = mlp(DEEP, "c")
    h = f.arg  # the network's output vector
    jacobian = derivative(h, x)
    assert jacobian.shape == ("n", "n")
    assert distinct_nodes(jacobian) < 10 * DEEP


def test_simplify_cancels_1000_nested_logs_of_exps_down_to_the_variable():
    x = Var("x", ("n", 1))
    e: Expr = x
    for _ in range(1_000):
        e = ir.func("log", ir.func("exp", e))
    assert simplify(e) is x


def test_apply_once_rewrites_a_node_1000_levels_down_and_rebuilds_the_path():
    x = Var("x", ("n", 1))
    inner = ir.func("log", ir.func("exp", x))
    e, expected = inner, x
    for _ in range(1_000):
        e, expected = ir.func("tanh", e), ir.func("tanh", expected)
    log_of_exp = next(rule for rule in SIMPLIFY_RULES if rule.name == "log of exp")
    assert apply_once(e, log_of_exp) is expected


def test_symmetry_and_commutative_keys_are_decided_1000_levels_deep():
    s, a, b = Var("S", ("n", "n"), symmetric=True), Var("A", ("n", "n")), Var("B", ("n", "n"))
    symmetric, asymmetric, ab, ba = s, a, ir.add(a, b), ir.add(b, a)
    for _ in range(1_000):
        symmetric, asymmetric = ir.func("tanh", symmetric), ir.func("tanh", asymmetric)
        ab, ba = ir.func("exp", ab), ir.func("exp", ba)
    assert is_symmetric(symmetric)
    assert not is_symmetric(asymmetric)
    assert commutative_key(ab) == commutative_key(ba)


# ---------------------------------------------------------------- results linear in the depth


def test_the_mlp_gradient_has_distinct_nodes_linear_in_depth():
    counts = {}
    for depth in (64, 256):
        f, _, weights = mlp(depth, f"d{depth}")
        counts[depth] = distinct_nodes(derivative(f, weights[0]))
    assert counts[256] / counts[64] <= LINEAR, counts


def test_the_residual_gradient_at_64_layers_has_distinct_nodes_linear_in_depth():
    # h is shared by the sum and by tanh(W h) at every layer: a tree of 2^64 nodes, a DAG of O(64)
    counts = {}
    for depth in (16, 64):
        f, _, weights = residual(depth, f"e{depth}")
        counts[depth] = distinct_nodes(derivative(f, weights[0]))
    assert counts[64] / counts[16] <= LINEAR, counts
    assert counts[64] < 16 * 64, counts


def test_the_residual_jacobian_at_64_layers_reads_each_shared_term_once():
    h, x, _ = residual_layers(64, "g")
    jacobian = derivative(h, x)  # read term by term, the sums of the DAG have 2^64 paths
    assert jacobian.shape == ("n", "n")
    assert distinct_nodes(jacobian) < 16 * 64


def test_the_hessian_of_a_64_layer_mlp_factors_each_layer_in_one_rewrite():
    # the raw Hessian's terms share the forward chain W_k diag(.) ... W0 below each layer: factoring it one
    # factor at a time took O(L^2) rewrites of O(L) each
    f, x, _ = mlp(64, "h")
    gradient = derivative(f, x)
    trace: list[str] = []
    hessian = simplify(derivative_from_differential(differential(gradient, x), x, gradient.shape), trace)
    assert hessian.shape == ("n", "n")
    assert trace.count("common right factor") <= 64
    assert distinct_nodes(hessian) < 16 * 64


def residual_bindings(depth: int, prefix: str = "") -> tuple[ir.Bindings, list[Var]]:
    """The residual network as a program: h_k = h_(k-1) + tanh(W_k h_(k-1)), L = sum(h_L), each h by its name."""
    h: Expr = Var(f"{prefix}x", ("n", 1))
    weights = [Var(f"{prefix}W{k}", ("n", "n")) for k in range(1, depth + 1)]
    bindings: list[tuple[str, Expr]] = []
    for k, w in enumerate(weights, 1):
        bindings.append((f"{prefix}h{k}", ir.add(h, ir.func("tanh", ir.mul(w, h)))))
        h = Var(f"{prefix}h{k}", ("n", 1))
    bindings.append((f"{prefix}L", ir.func("sum", h)))
    return tuple(bindings), weights


def links(e: Expr) -> int:
    """The edges of e's DAG (a shared node's children count once)."""
    return sum(len(node.children) for node in ir.walk(e))


def test_an_inlined_residual_program_and_its_gradient_have_links_linear_in_depth():
    # each h_k is a sum used by the next sum: flattened, the sum of layer k copied the k terms of layer k - 1
    counts = {}
    for depth in (64, 256):
        bindings, weights = residual_bindings(depth, f"i{depth}")
        function = ir.inline(bindings[:-1], bindings[-1][1])
        backward = backpropagate(bindings, [weights[0]], {name for name, _ in bindings})
        gradient = ir.inline((*bindings, *backward.adjoints), backward.gradients[weights[0].name])
        counts[depth] = (links(function), distinct_nodes(gradient), links(gradient))
    for measure in range(3):
        assert counts[256][measure] / counts[64][measure] <= LINEAR, counts


def test_a_sum_kept_whole_when_inlined_prints_as_the_flattened_sum():
    x, y, z = (Var(name, ("n", 1)) for name in ("x", "y", "z"))
    u, v = Var("u", ("n", 1)), Var("v", ("n", 1))
    for value in (ir.add(x, y), ir.sub(y, x), ir.add(ir.neg(x), y)):  # a sum that starts with a minus sign too
        for e in (ir.add(u, z), ir.add(z, u), ir.add(z, u, v), ir.sub(z, u)):
            values = {u: value, v: ir.add(value, z)}
            bindings = (("u", value), ("v", ir.add(u, z)))
            assert str(ir.inline(bindings, e)) == str(ir.substitute(e, values)), (value, e)


# ---------------------------------------------------------------- numerically right


STEP = 1e-6


def random_values(names: list[str], n: int, seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {name: rng.normal(0.0, 0.8, size=(n,) if name.endswith("x") else (n, n)) for name in names}


def finite_differences(f: Expr, values: dict[str, np.ndarray], name: str) -> np.ndarray:
    """Central differences in float64 of f (scalar or vector) with respect to every entry of values[name]."""
    names = ir.variables(f)

    def at(shifted: np.ndarray) -> np.ndarray:
        (value,) = evaluate_numpy([f], {**values, name: shifted}, names)
        return np.asarray(value, dtype=float).reshape(-1)

    base = values[name]
    columns = []
    for index in np.ndindex(base.shape):
        up, down = base.copy(), base.copy()
        up[index] += STEP
        down[index] -= STEP
        columns.append((at(up) - at(down)) / (2 * STEP))
    return np.array(columns).T  # rows: entries of f; columns: entries of the variable, row-major


def value_of(e: Expr, values: dict[str, np.ndarray], context: Expr) -> np.ndarray:
    (value,) = evaluate_numpy([e], values, ir.variables(context))
    return np.asarray(value, dtype=float)


@pytest.mark.parametrize("network", [mlp, residual])
@pytest.mark.parametrize("depth", [3, 4])
def test_the_gradient_wrt_the_innermost_weight_matches_finite_differences(network, depth):
    f, _, weights = network(depth, f"fd{network.__name__}{depth}")
    w0 = weights[0]
    gradient = derivative(f, w0)
    values = random_values(list(ir.variables(f)), 3, seed=depth)
    expected = finite_differences(f, values, w0.name).reshape(3, 3)
    np.testing.assert_allclose(value_of(gradient, values, f), expected, rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize("network", [mlp, residual])
def test_the_gradient_wrt_the_input_matches_finite_differences(network):
    f, x, _ = network(4, f"fx{network.__name__}")
    gradient = derivative(f, x)
    values = random_values(list(ir.variables(f)), 3, seed=7)
    expected = finite_differences(f, values, x.name).reshape(3, 1)
    np.testing.assert_allclose(value_of(gradient, values, f), expected, rtol=1e-6, atol=1e-8)


def test_the_residual_jacobian_wrt_the_input_matches_finite_differences():
    h, x, _ = residual_layers(4, "jr")
    jacobian = derivative(h, x)
    values = random_values(list(ir.variables(h)), 3, seed=11)
    expected = finite_differences(h, values, x.name)
    np.testing.assert_allclose(value_of(jacobian, values, h), expected, rtol=1e-6, atol=1e-8)


def test_the_mlp_hessian_wrt_the_input_matches_finite_differences_of_its_gradient():
    f, x, _ = mlp(3, "hx")
    gradient = derivative(f, x)
    hessian = derivative(gradient, x)
    values = random_values(list(ir.variables(f)), 3, seed=5)
    expected = finite_differences(gradient, values, x.name)
    np.testing.assert_allclose(value_of(hessian, values, f), expected, rtol=1e-6, atol=1e-8)


# ---------------------------------------------------------------- the strategy's dispatch by node type


def _strategy_inputs() -> list[Expr]:
    """Each rule's example, and a residual network's derivative: inputs with nodes of every kind."""
    examples = [matcalc.parse(rule.example, where=rule.where or None) for rule in SIMPLIFY_RULES]
    f, _, weights = residual(3, "on")
    return [*examples, derivative_from_differential(differential(f, weights[0]), weights[0], f.shape)]


def _of_a_head(rule: Rule, node: Expr) -> bool:
    """Whether the node is of one of the rule's heads, read off the heads (not by Rule's own test)."""
    for head in rule.heads:
        if isinstance(head, type) and isinstance(node, head):
            return True
        if isinstance(head, str) and isinstance(node, ir.Func) and node.name == head:
            return True
    return False


def test_every_simplification_rule_declares_heads_and_for_node_offers_exactly_the_rules_of_a_node_head():
    nodes = {node for e in _strategy_inputs() for node in ir.walk(e)}
    for rule in SIMPLIFY_RULES:
        assert rule.heads, f"{rule.name} declares no head"
    for node in nodes:
        expected = [rule.name for rule in SIMPLIFY_RULES if _of_a_head(rule, node)]
        assert [rule.name for rule in SIMPLIFY_RULES.for_node(node)] == expected, node
        for rule in SIMPLIFY_RULES:  # apply_once asks every node: a rule of another head answers None
            if not _of_a_head(rule, node):
                assert rule.apply(node) is None, f"{rule.name} applies to a {type(node).__name__}: {node}"


def test_normalize_calls_a_builder_only_on_nodes_of_its_heads_that_pass_its_guard():
    # builders assume their head (diag's rules read e.arg without asking whether e is a call of diag)
    offered: list[tuple[Rule, Expr]] = []

    def watched(rule: Rule) -> Rule:
        def build(node: Expr) -> Expr | None:
            offered.append((rule, node))
            return rule.build(node)

        return dataclasses.replace(rule, build=build)

    table = RuleSet("watched", [watched(rule) for rule in SIMPLIFY_RULES])
    for e in _strategy_inputs():
        assert normalize(e, table) is simplify(e)
    assert len({rule.name for rule, _ in offered}) == len(SIMPLIFY_RULES)  # every rule was offered some node
    for rule, node in offered:
        assert _of_a_head(rule, node), f"{rule.name} was offered a {type(node).__name__}: {node}"
        assert rule.guard is None or rule.guard(node), f"{rule.name} was offered {node}, which its guard refuses"
