"""Deep networks as matcalc input and as NumPy forward passes, for the tests and benchmarks/depth.py.

Layers h_k = tanh(W_k h_{k-1}) from h_0 = x (or h_k = h_{k-1} + tanh(W_k h_{k-1}), residual), loss sum(h_L).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np


def nested_mlp(layers: int) -> str:
    """The tanh network as one nested expression: sum(tanh(WL ... tanh(W1 x)))."""
    text = "x"
    for k in range(1, layers + 1):
        text = f"tanh(W{k} {text})"
    return f"sum({text})"


def mlp_program(layers: int) -> str:
    """The tanh network as a program: h1 = tanh(W1 x), ..., L = sum(hL), one definition per line."""
    return _program(layers, lambda k, h: f"tanh(W{k} {h})")


def residual_program(layers: int) -> str:
    """The residual network as a program: h1 = x + tanh(W1 x), ..., L = sum(hL)."""
    return _program(layers, lambda k, h: f"{h} + tanh(W{k} {h})")


def _program(layers: int, layer: Callable[[int, str], str]) -> str:
    lines = [f"h{k} = {layer(k, f'h{k - 1}' if k > 1 else 'x')}" for k in range(1, layers + 1)]
    return "\n".join([*lines, f"L = sum(h{layers})"])


def network_forward(layers: int, residual: bool = False) -> Callable[[dict], float]:
    """The loss of either network in NumPy, from values by name: an oracle independent of matcalc."""

    def forward(v: dict) -> float:
        h = v["x"]
        for k in range(1, layers + 1):
            step = np.tanh(v[f"W{k}"] @ h)
            h = h + step if residual else step
        return float(np.sum(h))

    return forward
