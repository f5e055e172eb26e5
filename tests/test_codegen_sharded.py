"""Generated JAX code on JAX's own distribution (issue 17 §3): the value-and-gradients function of the transformer
block (benchmarks/batches.py) runs under jax.jit with its batch axis, the columns of X and C, sharded over 8
devices, and gives the numbers it gives on one device. JAX fixes its devices when it is first imported, so the run
is a subprocess with XLA_FLAGS=--xla_force_host_platform_device_count=8 (8 host CPU devices: no accelerator
needed). PyTorch code runs unchanged on CUDA tensors where CUDA is present."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import matcalc

ROOT = Path(__file__).resolve().parent.parent
HAVE_JAX = importlib.util.find_spec("jax") is not None
HAVE_TORCH = importlib.util.find_spec("torch") is not None

SHARDED_RUN = r"""
import json
import sys

import numpy as np
import jax
from jax.sharding import Mesh, NamedSharding, PartitionSpec

jax.config.update("jax_enable_x64", True)
sys.path.insert(0, sys.argv[1])
from batches import BLOCK, WEIGHTS, WHERE, block_values

import matcalc
from matcalc.backends.pycode import compile_source

f = compile_source(matcalc.codegen(BLOCK, WEIGHTS, where=WHERE, backend="jax"), "value_and_gradients")
values = block_values(16, 64, seed=7)  # T = 64 columns, 8 per device

mesh = Mesh(np.array(jax.devices()), ("batch",))
by_column = NamedSharding(mesh, PartitionSpec(None, "batch"))  # data parallel: each device holds 8 columns
everywhere = NamedSharding(mesh, PartitionSpec())  # the weights, replicated
sharded = {name: jax.device_put(value, by_column if name in ("X", "C") else everywhere)
           for name, value in values.items()}
on_one = {name: jax.device_put(value, jax.devices()[0]) for name, value in values.items()}

run = jax.jit(f)
many = run(**sharded)
one = run(**on_one)
print(json.dumps({
    "devices": len(jax.devices()),
    "x_devices": len(sharded["X"].sharding.device_set),
    "x_shard_shape": list(sharded["X"].addressable_shards[0].data.shape),
    "output_devices": len(many[1].sharding.device_set),
    "largest_difference": max(float(np.max(np.abs(np.asarray(a) - np.asarray(b)))) for a, b in zip(many, one)),
    "largest_value": max(float(np.max(np.abs(np.asarray(b)))) for b in one),
    "one": [np.asarray(b).tolist() for b in one[:2]],
}))
"""


def sharded_run() -> dict:
    env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=8", "JAX_PLATFORMS": "cpu",
           "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run([sys.executable, "-c", SHARDED_RUN, str(ROOT / "benchmarks")], env=env,
                          capture_output=True, text=True, timeout=1800, check=False)  # a hang, not a speed limit
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.skipif(not HAVE_JAX, reason="jax is not installed (pip install matcalc-symbolic[jax])")
def test_the_transformer_block_sharded_over_8_devices_by_its_columns_gives_the_numbers_of_one_device():
    result = sharded_run()
    assert result["devices"] == 8 and result["x_devices"] == 8
    assert result["x_shard_shape"] == [16, 8]  # each device holds 8 of the 64 columns
    assert result["largest_difference"] <= 1e-12 * max(1.0, result["largest_value"])
    # and one device's numbers are the block's: its value, and the gradient w.r.t. Wq by finite differences
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from batches import BLOCK, WEIGHTS, WHERE, block_values

    from matcalc.backends.pycode import compile_source

    values = block_values(16, 64, seed=7)
    numpy_block = compile_source(matcalc.codegen(BLOCK, WEIGHTS, where=WHERE), "value_and_gradients")
    assert np.isclose(result["one"][0], numpy_block(**values)[0], rtol=1e-12)
    step, index = 1e-6, (3, 5)
    up, down = values["Wq"].copy(), values["Wq"].copy()
    up[index] += step
    down[index] -= step
    numeric = (numpy_block(**{**values, "Wq": up})[0] - numpy_block(**{**values, "Wq": down})[0]) / (2 * step)
    assert np.isclose(result["one"][1][index[0]][index[1]], numeric, rtol=1e-6, atol=1e-9)


@pytest.mark.skipif(not HAVE_TORCH, reason="torch is not installed (pip install matcalc-symbolic[torch])")
def test_generated_torch_code_runs_unchanged_on_cuda_tensors():
    import torch

    if not torch.cuda.is_available():
        pytest.skip("no CUDA device here")
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from batches import BLOCK, WEIGHTS, WHERE, block_values

    from matcalc.backends.pycode import compile_source

    f = compile_source(matcalc.codegen(BLOCK, WEIGHTS, where=WHERE, backend="torch"), "value_and_gradients")
    values = block_values(16, 12, seed=8)
    on_cpu = f(**{k: torch.as_tensor(v) for k, v in values.items()})
    on_cuda = f(**{k: torch.as_tensor(v, device="cuda") for k, v in values.items()})
    for a, b in zip(on_cpu, on_cuda, strict=True):
        assert b.device.type == "cuda"
        np.testing.assert_allclose(b.cpu().numpy(), a.numpy(), rtol=1e-9, atol=1e-12)
