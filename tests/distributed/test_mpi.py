"""tinygrad_attn.distributed under ``mpiexec -n 2`` on this machine (loopback): collectives on several dtypes
and shapes, DDP training equal to one process with the whole batch, and ranks that hang or die ending the job
in bounded time with a message naming them. Each launch runs many checks (tests/distributed/ranks_program.py)."""

from __future__ import annotations

import time

import numpy as np
import pytest

import tinygrad_attn as ta
from tests.distributed import ranks_program as program
from tests.distributed.launch import require_mpi, run_ranks

WORLD = 2


@pytest.fixture(scope="module")
def ranks(tmp_path_factory: pytest.TempPathFactory) -> list[dict[str, np.ndarray]]:
    require_mpi()
    out = tmp_path_factory.mktemp("ranks")
    done = run_ranks(WORLD, ["-m", "tests.distributed.ranks_program", "collectives", str(out)], timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    return [dict(np.load(out / f"rank{r}.npz")) for r in range(WORLD)]


def test_every_rank_joined_the_world(ranks):
    assert [int(r["world"]) for r in ranks] == [WORLD, WORLD]


@pytest.mark.parametrize("dtype", program.DTYPES)
@pytest.mark.parametrize("shape", program.SHAPES, ids=str)
def test_collectives_give_the_values_of_every_rank(ranks, dtype, shape):
    key = f"{dtype}_{'x'.join(map(str, shape))}"
    inputs = np.stack([program.rank_values(r, shape, dtype) for r in range(WORLD)])
    wide = inputs.astype(np.float64)
    expected = {"sum": wide.sum(0), "max": inputs.max(0), "min": inputs.min(0)}
    if dtype.startswith("float"):
        expected["avg"] = wide.mean(0)
    for r, result in enumerate(ranks):
        for op, value in expected.items():
            got = result[f"all_reduce_{op}_{key}"]
            assert got.dtype == np.dtype(dtype) and got.shape == shape, (op, r)
            np.testing.assert_array_equal(got, value.astype(dtype), err_msg=f"all_reduce {op} on rank {r}")
        np.testing.assert_array_equal(result[f"broadcast_{key}"], inputs[WORLD - 1], err_msg=f"rank {r}")
        np.testing.assert_array_equal(result[f"all_gather_{key}"], inputs, err_msg=f"rank {r}")


def test_object_collectives(ranks):
    assert all(bool(r["objects_ok"]) and bool(r["broadcast_object_ok"]) for r in ranks)


def test_ddp_training_equals_one_process_with_the_whole_batch(ranks):
    model = program.ddp_model(seed=10)  # rank 0's initial weights; rank 1 started from others (seed 11)
    losses = program.ddp_losses(model, rank=0, world=1, sync=False)
    assert [int(r["ddp_buckets"]) for r in ranks] == [3, 3]
    for r, result in enumerate(ranks):
        np.testing.assert_allclose(result["ddp_losses"], losses, rtol=1e-5, err_msg=f"losses of rank {r}")
        for name, value in model.state_dict().items():
            np.testing.assert_allclose(result[f"ddp_weight_{name}"], value.numpy(), rtol=1e-5, atol=1e-6,
                                       err_msg=f"{name} on rank {r}")
    for name in model.state_dict():  # the replicas are identical, not merely close
        np.testing.assert_array_equal(ranks[0][f"ddp_weight_{name}"], ranks[1][f"ddp_weight_{name}"])


def test_translator_ranks_spread_sum_agree_and_share_errors(ranks):
    for result in ranks:
        np.testing.assert_array_equal(result["map"], [0, 10, 20, 30, 40, 50, 60])
        np.testing.assert_array_equal(result["sum"], [3.0, 1.0])
        assert float(result["from_rank0"]) == 7.0
        assert "invalid literal for int() with base 10: 'not a number on rank 0'" in str(result["on_rank0_error"])


def test_translator_engine_gives_the_gradient_of_one_process_with_the_whole_batch(ranks):
    from models.translator.step import accumulate_gradients

    model, batches = program.translator_model(), program.translator_batches()
    loss = accumulate_gradients(model, batches, sum(b.n_tgt_tokens for b in batches), 0.1, ta.device("cpu"))
    for r, result in enumerate(ranks):
        np.testing.assert_allclose(result["engine_loss"], loss.item(), rtol=1e-5, err_msg=f"rank {r}")
        for name, p in model.named_parameters():
            np.testing.assert_allclose(result[f"engine_grad_{name}"], p.grad.numpy(), rtol=1e-4, atol=1e-6,
                                       err_msg=f"{name} on rank {r}")


def test_a_hung_rank_ends_the_job_with_a_message_naming_it():
    require_mpi()
    start = time.monotonic()
    done = run_ranks(WORLD, ["-m", "tests.distributed.ranks_program", "hang", "2"], timeout=60)
    assert done.returncode != 0
    assert time.monotonic() - start < 30
    assert "rank 0 of 2: all_reduce (sum) of 4 float32 values" in done.stderr
    assert "rank(s) 1 did not arrive" in done.stderr


def test_a_killed_rank_ends_the_job_in_bounded_time():
    require_mpi()
    start = time.monotonic()
    done = run_ranks(WORLD, ["-m", "tests.distributed.ranks_program", "die"], timeout=60)
    assert done.returncode != 0
    assert time.monotonic() - start < 30
    assert "signal 9" in (done.stdout + done.stderr).lower() or "did not arrive" in done.stderr


def test_importing_the_package_neither_imports_nor_initialises_mpi():
    import subprocess
    import sys

    code = "import sys, tinygrad_attn; print('mpi4py' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True).stdout.strip() == "False"


def test_without_a_process_group_the_error_says_what_to_call():
    with pytest.raises(RuntimeError, match="call init_process_group"):
        ta.distributed.get_rank()
    with pytest.raises(ValueError, match="unknown backend 'gloo'"):
        ta.distributed.init_process_group("gloo")


def test_launched_world_size_reads_the_launchers_variables():
    from tinygrad_attn.distributed import launched_world_size

    assert launched_world_size({}) == 1
    assert launched_world_size({"PMI_SIZE": "4"}) == 4
    assert launched_world_size({"OMPI_COMM_WORLD_SIZE": "3"}) == 3


def test_the_data_parallel_example_on_two_ranks_prints_the_losses_of_one():
    require_mpi()
    two = run_ranks(WORLD, ["examples/data_parallel.py", "100"], timeout=120)
    one = run_ranks(1, ["examples/data_parallel.py", "100"], timeout=120)
    assert two.returncode == 0 and one.returncode == 0, two.stderr + one.stderr
    assert two.stdout.count("step  100  loss") == 1  # rank 0 alone prints
    assert two.stdout.splitlines()[0] == one.stdout.splitlines()[0]
    assert "training accuracy on 2 rank(s)" in two.stdout


def test_without_mpi4py_the_mpi_tests_skip_locally_and_fail_on_ci(monkeypatch):
    from tests.distributed import launch

    monkeypatch.setattr(launch.dist, "is_available", lambda: False)
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match="mpi4py is not installed"):
        launch.require_mpi()
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="CI installs the \\[mpi\\] extra"):
        launch.require_mpi()
