"""The NCCL backend under ``mpiexec -n <GPUs>`` (one rank per GPU): collectives on GPU tensors and DDP's
gradient buckets on the GPU. Skipped without a CUDA device (CuPy with NCCL)."""

from __future__ import annotations

import numpy as np
import pytest

import tinygrad_attn as ta
from tests.distributed import ranks_program as program
from tests.distributed.launch import require_mpi, run_ranks

pytestmark = pytest.mark.skipif(not ta.cuda.is_available(), reason="no CUDA device: the NCCL backend needs GPUs")


def test_nccl_collectives_and_ddp_on_every_gpu(tmp_path):
    require_mpi()
    import cupy

    world = cupy.cuda.runtime.getDeviceCount()
    done = run_ranks(world, ["-m", "tests.distributed.ranks_program", "nccl", str(tmp_path)], timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    ranks = [dict(np.load(tmp_path / f"rank{r}.npz")) for r in range(world)]
    for dtype in ("float32", "float16", "int64"):
        inputs = np.stack([program.rank_values(r, (3, 5), dtype) for r in range(world)])
        for r, result in enumerate(ranks):
            np.testing.assert_array_equal(result[f"all_reduce_sum_{dtype}"], inputs.astype(np.float64).sum(0)
                                          .astype(dtype), err_msg=f"rank {r}")
            np.testing.assert_array_equal(result[f"all_reduce_max_{dtype}"], inputs.max(0), err_msg=f"rank {r}")
            if dtype != "int64":
                np.testing.assert_allclose(result[f"all_reduce_avg_{dtype}"], inputs.astype(np.float64).mean(0),
                                           rtol=1e-3, err_msg=f"rank {r}")
            np.testing.assert_array_equal(result[f"broadcast_{dtype}"], inputs[-1])
            np.testing.assert_array_equal(result[f"all_gather_{dtype}"], inputs)
    model = program.ddp_model(seed=10)  # rank 0's weights, broadcast by DDP
    x, y = program.ddp_data()
    rows = [np.array_split(np.arange(x.shape[1]), world)[r] for r in range(world)]
    grads: dict[str, list[np.ndarray]] = {}
    for r in range(world):  # each rank's mean loss over its rows; DDP averages the ranks' gradients
        model.zero_grad()
        ta.nn.functional.cross_entropy(model(ta.tensor(x[0, rows[r]])), ta.tensor(y[0, rows[r]])).backward()
        for name, p in model.named_parameters():
            grads.setdefault(name, []).append(p.grad.numpy().copy())
    for result in ranks:
        for name, per_rank in grads.items():
            np.testing.assert_allclose(result[f"grad_{name}"], np.mean(per_rank, axis=0), rtol=1e-4, atol=1e-6)
