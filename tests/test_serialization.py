"""Checkpoints (``ta.save`` / ``ta.load``): round trips of nested structures and dtypes, the file format
(a plain safetensors file, names kept, no pickle), truncated and corrupt files, atomic writes that survive a
crash mid-save, and resuming training of a module + optimizer exactly."""

import json
import os
import pickle
import struct
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import tinygrad_attn as ta
from tinygrad_attn import serialization
from tinygrad_attn.serialization import CheckpointError

safetensors = pytest.importorskip("safetensors")
from safetensors.numpy import load_file, save_file  # noqa: E402

DTYPES = [np.float16, np.float32, np.float64, np.int64, np.int32, np.int8, np.uint8, np.bool_]


def assert_same(a, b):
    """Structural equality with types: tensors equal in dtype, shape and bits; tuples stay tuples."""
    assert type(a) is type(b), (a, b)
    if isinstance(a, ta.Tensor):
        assert a.dtype == b.dtype and a.shape == b.shape and a.requires_grad == b.requires_grad
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    elif isinstance(a, (np.ndarray, np.generic)):
        assert a.dtype == b.dtype and a.shape == b.shape
        np.testing.assert_array_equal(a, b)
    elif isinstance(a, dict):
        assert list(a) == list(b) and all(type(x) is type(y) for x, y in zip(a, b))
        for k in a:
            assert_same(a[k], b[k])
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b)
        for x, y in zip(a, b):
            assert_same(x, y)
    elif isinstance(a, float) and np.isnan(a):
        assert np.isnan(b)
    else:
        assert a == b


def roundtrip(obj, path):
    ta.save(obj, path)
    return ta.load(path)


# ---------------------------------------------------------------------------------------------------------
# Round trips
# ---------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
def test_tensor_dtypes_and_shapes_round_trip(dtype, tmp_path):
    rng = np.random.default_rng(0)
    obj = {f"s{i}": ta.from_numpy((rng.standard_normal(shape) * 50).astype(dtype))
           for i, shape in enumerate([(), (0,), (3,), (2, 3, 4), (0, 5)])}
    assert_same(roundtrip(obj, tmp_path / "t.safetensors"), obj)


def test_special_float_values_round_trip_bit_for_bit(tmp_path):
    values = np.array([0.0, -0.0, np.inf, -np.inf, np.nan, 1e-45, 3.4028235e38], np.float32)
    out = roundtrip({"x": ta.from_numpy(values)}, tmp_path / "f.safetensors")["x"].numpy()
    assert out.tobytes() == values.tobytes()


def test_non_contiguous_tensors_are_stored_by_value(tmp_path):
    base = np.arange(24, dtype=np.float32).reshape(4, 6)
    obj = {"t": ta.from_numpy(base.T), "s": ta.from_numpy(base[::2, 1::3])}
    out = roundtrip(obj, tmp_path / "v.safetensors")
    np.testing.assert_array_equal(out["t"].numpy(), base.T)
    np.testing.assert_array_equal(out["s"].numpy(), base[::2, 1::3])


def test_nested_structure_of_an_optimizer_checkpoint_round_trips(tmp_path):
    obj = {
        "model": {"layers.0.self_attn.in_proj_weight": ta.randn(6, 2), "layers.0.norm1.bias": ta.zeros(2)},
        "optimizer": {
            "state": {0: {"step": 7, "exp_avg": ta.randn(6, 2)}, 3: {"momentum_buffer": None}},
            "param_groups": [{"lr": 1e-3, "betas": (0.9, 0.98), "amsgrad": False, "params": [0, 1, 2, 3]}],
        },
        "epoch": 3, "best": float("inf"), "loss": float("nan"), "name": "run-1", "none": None,
        "mixed keys": {1: "int", 1.5: "float", "1": "str", False: "bool", None: "none"},
        "big": 2**100, "empty": {}, "empty list": [], "empty tuple": (), "nested": [(1, [2, (3,)]), {"a": [None]}],
        "numpy": np.arange(5, dtype=np.int16), "scalar": np.float32(2.5), "grad": ta.ones(2, requires_grad=True),
    }
    out = roundtrip(obj, tmp_path / "o.safetensors")
    assert_same(out, obj)
    assert out["grad"].requires_grad and out["grad"].is_leaf


scalars = st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats() | st.text(max_size=8)
arrays = st.builds(lambda n, d: ta.from_numpy(np.arange(n).astype(d)), st.integers(0, 4), st.sampled_from(DTYPES))
keys = st.none() | st.booleans() | st.integers(-5, 5) | st.text(max_size=6)
structures = st.recursive(
    scalars | arrays,
    lambda inner: st.lists(inner, max_size=3) | st.lists(inner, max_size=3).map(tuple)
    | st.dictionaries(keys, inner, max_size=3),
    max_leaves=12,
)


@given(structures)
def test_any_nesting_round_trips(tmp_path_factory, obj):
    path = tmp_path_factory.mktemp("h") / "x.safetensors"
    assert_same(roundtrip(obj, path), obj)


def test_colliding_dotted_paths_keep_both_tensors(tmp_path):
    obj = {"a.b": ta.ones(2), "a": {"b": ta.zeros(3)}}
    assert_same(roundtrip(obj, tmp_path / "c.safetensors"), obj)


def test_shared_tensors_are_stored_under_each_name(tmp_path):
    w = ta.randn(3, 2)
    out = roundtrip({"encoder.embed.weight": w, "generator.weight": w}, tmp_path / "tied.safetensors")
    np.testing.assert_array_equal(out["encoder.embed.weight"].numpy(), out["generator.weight"].numpy())


def test_accepts_str_and_pathlike_and_relative_paths(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    ta.save({"x": ta.ones(1)}, "rel.safetensors")
    ta.save({"x": ta.ones(1)}, Path("p.safetensors"))
    assert ta.load("rel.safetensors")["x"].item() == 1.0
    assert ta.load(str(tmp_path / "p.safetensors"))["x"].item() == 1.0


def test_save_into_a_missing_directory_says_so(tmp_path):
    with pytest.raises(FileNotFoundError, match="directory .*nowhere.* does not exist"):
        ta.save({"x": ta.ones(1)}, tmp_path / "nowhere" / "x.safetensors")


def test_save_overwrites_an_existing_checkpoint(tmp_path):
    path = tmp_path / "ck.safetensors"
    ta.save({"v": 1}, path)
    ta.save({"v": 2}, path)
    assert ta.load(path) == {"v": 2}
    assert os.listdir(tmp_path) == ["ck.safetensors"]


# ---------------------------------------------------------------------------------------------------------
# The file: plain safetensors, names kept, no pickle
# ---------------------------------------------------------------------------------------------------------


def test_file_is_plain_safetensors_with_the_names_kept(tmp_path):
    sd = {"layers.0.self_attn.in_proj_weight": ta.randn(6, 2), "layers.0.linear1.bias": ta.randn(4)}
    path = tmp_path / "m.safetensors"
    ta.save(sd, path)
    raw = path.read_bytes()
    (n,) = struct.unpack("<Q", raw[:8])  # safetensors: u64 header size, then a JSON header
    header = json.loads(raw[8:8 + n])
    structure = json.loads(header["__metadata__"]["tinygrad_attn"])
    assert structure["format"] == "tinygrad_attn.checkpoint" and structure["version"] == 1
    arrays = load_file(path)  # any safetensors reader sees the tensors under their names
    assert set(arrays) == set(sd)
    for k in sd:
        np.testing.assert_array_equal(arrays[k], sd[k].numpy())


def test_file_written_by_torch_loads_as_a_flat_dict(tmp_path):
    torch = pytest.importorskip("torch")
    from safetensors.torch import save_file as torch_save_file

    weights = {"linear.weight": torch.randn(3, 2), "mask": torch.tensor([True, False])}
    torch_save_file(weights, tmp_path / "torch.safetensors")
    out = ta.load(tmp_path / "torch.safetensors")
    assert set(out) == set(weights)
    np.testing.assert_array_equal(out["linear.weight"].numpy(), weights["linear.weight"].numpy())
    assert out["mask"].dtype == np.bool_


def test_torch_reads_what_we_write(tmp_path):
    torch = pytest.importorskip("torch")
    from safetensors.torch import load_file as torch_load_file

    sd = {"encoder.layers.0.norm1.weight": ta.randn(4), "tokens": ta.tensor([1, 2, 3])}
    ta.save(sd, tmp_path / "ours.safetensors")
    theirs = torch_load_file(tmp_path / "ours.safetensors")
    assert theirs["tokens"].dtype == torch.int64
    name = "encoder.layers.0.norm1.weight"
    np.testing.assert_array_equal(theirs[name].numpy(), sd[name].numpy())


def test_serialization_never_uses_pickle(tmp_path, monkeypatch):
    source = Path(serialization.__file__).read_text()
    assert "pickle" not in source.replace("never pickle", "").replace("unlike pickle", "")
    assert not hasattr(serialization, "pickle")

    def refuse(*args, **kwargs):
        raise AssertionError("pickle was used")

    for name in ("dump", "dumps", "load", "loads", "Pickler", "Unpickler"):
        monkeypatch.setattr(pickle, name, refuse)
    obj = {"w": ta.randn(2, 2), "meta": {"step": 1, "betas": (0.9, 0.98)}}
    assert_same(roundtrip(obj, tmp_path / "np.safetensors"), obj)


def test_metadata_is_data_not_code(tmp_path):
    """A hand-made file whose structure names a Python object loads as an error, never as an import."""
    evil = json.dumps({"format": "tinygrad_attn.checkpoint", "version": 1, "root": {"$object": "os.system"}})
    save_file({}, tmp_path / "evil.safetensors", metadata={"tinygrad_attn": evil})
    with pytest.raises(CheckpointError, match="unknown node type"):
        ta.load(tmp_path / "evil.safetensors")


def test_unsupported_objects_raise_clear_errors(tmp_path):
    with pytest.raises(TypeError, match=r"cannot store a set at 'a\.b'"):
        ta.save({"a": {"b": {1, 2}}}, tmp_path / "x.safetensors")
    with pytest.raises(TypeError, match="dict key"):
        ta.save({(1, 2): 3}, tmp_path / "x.safetensors")
    with pytest.raises(TypeError, match="dtype object"):
        ta.save({"o": np.array([None])}, tmp_path / "x.safetensors")

    class HasState:
        def state_dict(self):
            return {}

    with pytest.raises(TypeError, match=r"save its state_dict\(\) instead"):
        ta.save(HasState(), tmp_path / "x.safetensors")
    assert not list(tmp_path.iterdir())


def test_missing_safetensors_gives_install_hint(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "safetensors", None)
    monkeypatch.setitem(sys.modules, "safetensors.numpy", None)
    with pytest.raises(ImportError, match=r"pip install 'tinygrad_attn\[io\]'"):
        ta.save({"x": ta.ones(1)}, tmp_path / "x.safetensors")
    with pytest.raises(ImportError, match="safetensors"):
        ta.load(tmp_path / "x.safetensors")


# ---------------------------------------------------------------------------------------------------------
# Truncated and corrupt files
# ---------------------------------------------------------------------------------------------------------


@pytest.fixture
def checkpoint(tmp_path):
    path = tmp_path / "good.safetensors"
    ta.save({"w": ta.from_numpy(np.arange(64, dtype=np.float32)), "step": 5}, path)
    return path


@pytest.mark.parametrize("keep", [0, 3, 8, 9, 40, -200, -1])
def test_truncated_file_raises_clear_error_naming_the_path(checkpoint, keep):
    raw = checkpoint.read_bytes()
    bad = checkpoint.with_name("bad.safetensors")
    bad.write_bytes(raw[:keep] if keep >= 0 else raw[:len(raw) + keep])
    with pytest.raises(CheckpointError, match=r"bad\.safetensors.*(truncated or corrupt|corrupt)"):
        ta.load(bad)


def test_flipped_bit_in_tensor_data_is_caught_by_the_checksum(checkpoint):
    raw = bytearray(checkpoint.read_bytes())
    raw[-10] ^= 0x04  # inside the float32 data of "w"
    checkpoint.write_bytes(bytes(raw))
    with pytest.raises(CheckpointError, match=r"good\.safetensors.*tensor 'w'.*checksum"):
        ta.load(checkpoint)


def test_corrupt_header_raises_clear_error(checkpoint):
    raw = bytearray(checkpoint.read_bytes())
    raw[12] = ord("#")  # breaks the JSON header
    checkpoint.write_bytes(bytes(raw))
    with pytest.raises(CheckpointError, match=r"good\.safetensors"):
        ta.load(checkpoint)


def test_corrupt_structure_json_raises_clear_error(tmp_path):
    save_file({"w": np.zeros(2, np.float32)}, tmp_path / "s.safetensors", metadata={"tinygrad_attn": "{not json"})
    with pytest.raises(CheckpointError, match=r"s\.safetensors.*corrupt"):
        ta.load(tmp_path / "s.safetensors")
    ref = json.dumps({"format": "tinygrad_attn.checkpoint", "version": 1, "root": {"$tensor": "gone", "crc32": 0}})
    save_file({"w": np.zeros(2, np.float32)}, tmp_path / "m.safetensors", metadata={"tinygrad_attn": ref})
    with pytest.raises(CheckpointError, match="tensor 'gone'.*does not hold"):
        ta.load(tmp_path / "m.safetensors")


def test_garbage_and_missing_files(tmp_path):
    (tmp_path / "junk.safetensors").write_bytes(os.urandom(1000))
    with pytest.raises(CheckpointError, match="junk.safetensors"):
        ta.load(tmp_path / "junk.safetensors")
    with pytest.raises(FileNotFoundError, match="nope.safetensors"):
        ta.load(tmp_path / "nope.safetensors")


# ---------------------------------------------------------------------------------------------------------
# Atomic writes
# ---------------------------------------------------------------------------------------------------------


def _previous_is_intact(path, tmp_path):
    assert ta.load(path)["step"] == 5
    assert sorted(os.listdir(tmp_path)) == [path.name], "a temporary file was left behind"


def test_crash_before_rename_keeps_previous_checkpoint(checkpoint, tmp_path, monkeypatch):
    def crash(src, dst):
        raise OSError("simulated crash in os.replace")

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(OSError, match="simulated crash"):
        ta.save({"w": ta.zeros(64), "step": 6}, checkpoint)
    monkeypatch.undo()
    _previous_is_intact(checkpoint, tmp_path)


def test_crash_while_writing_keeps_previous_checkpoint(checkpoint, tmp_path, monkeypatch):
    def half_write(tensors, filename, metadata=None):
        with open(filename, "wb") as f:
            f.write(b"\x10\x00\x00\x00\x00\x00\x00\x00{\"w\":")  # a torn, partial file
        raise KeyboardInterrupt  # e.g. Ctrl-C in the middle of the write

    monkeypatch.setattr(safetensors.numpy, "save_file", half_write)
    with pytest.raises(KeyboardInterrupt):
        ta.save({"w": ta.zeros(64), "step": 6}, checkpoint)
    monkeypatch.undo()
    _previous_is_intact(checkpoint, tmp_path)


def test_crash_during_fsync_keeps_previous_checkpoint(checkpoint, tmp_path, monkeypatch):
    def crash(fd):
        raise OSError("simulated I/O error")

    monkeypatch.setattr(os, "fsync", crash)
    with pytest.raises(OSError, match="simulated I/O error"):
        ta.save({"w": ta.zeros(64), "step": 6}, checkpoint)
    monkeypatch.undo()
    _previous_is_intact(checkpoint, tmp_path)


def test_process_killed_mid_save_leaves_previous_checkpoint_loadable(checkpoint):
    """A real hard exit (no cleanup runs) between writing the temporary file and renaming it."""
    script = textwrap.dedent(f"""
        import os
        import tinygrad_attn as ta
        os.replace = lambda src, dst: os._exit(9)
        ta.save({{"w": ta.zeros(64), "step": 6}}, {str(checkpoint)!r})
    """)
    root = Path(__file__).resolve().parents[1]
    proc = subprocess.run([sys.executable, "-c", script], cwd=root, capture_output=True, timeout=60,
                          env={**os.environ, "PYTHONPATH": str(root)})
    assert proc.returncode == 9, proc.stderr.decode()
    assert ta.load(checkpoint)["step"] == 5
    leftovers = [p for p in checkpoint.parent.iterdir() if p != checkpoint]
    assert all(p.name.startswith(".good.safetensors.") and p.name.endswith(".tmp") for p in leftovers)


# ---------------------------------------------------------------------------------------------------------
# Devices
# ---------------------------------------------------------------------------------------------------------


def test_saved_on_a_device_loads_on_the_cpu_and_back(device, tmp_path):
    x = ta.randn(3, 4, device=device)
    ta.save({"x": x}, tmp_path / "d.safetensors")
    on_cpu = ta.load(tmp_path / "d.safetensors")["x"]
    assert on_cpu.device == "cpu"
    np.testing.assert_array_equal(on_cpu.numpy(), x.numpy())
    there = ta.load(tmp_path / "d.safetensors", device=device)["x"]
    assert there.device == device
    np.testing.assert_array_equal(there.numpy(), x.numpy())


def test_loading_onto_an_unavailable_device_says_so(tmp_path):
    if ta.cuda.is_available():
        pytest.skip("CUDA is available here")
    ta.save({"x": ta.ones(1)}, tmp_path / "x.safetensors")
    with pytest.raises(RuntimeError, match="'cuda' is not available"):
        ta.load(tmp_path / "x.safetensors", device="cuda")


# ---------------------------------------------------------------------------------------------------------
# Resuming training: module + optimizer, N steps, save, load into fresh objects, M more == N + M straight
# ---------------------------------------------------------------------------------------------------------


def _mlp_module():
    module = pytest.importorskip("tinygrad_attn.nn.module")
    from tinygrad_attn.nn.parameter import Parameter

    class MLP(module.Module):
        def __init__(self, seed):
            super().__init__()
            rng = np.random.default_rng(seed)
            self.layers = module.ModuleList([module.Module(), module.Module()])
            self.layers[0].weight = Parameter(rng.normal(0, 0.5, (3, 16)).astype(np.float32))
            self.layers[0].bias = Parameter(np.zeros(16, np.float32))
            self.layers[1].weight = Parameter(rng.normal(0, 0.25, (16, 1)).astype(np.float32))

        def forward(self, x):
            return (x @ self.layers[0].weight + self.layers[0].bias).tanh() @ self.layers[1].weight

    return MLP


@pytest.mark.parametrize("make_opt", [
    lambda p: ta.optim.Adam(p, lr=0.01, amsgrad=True),
    lambda p: ta.optim.AdamW(p, lr=0.01, weight_decay=0.1),
    lambda p: ta.optim.SGD(p, lr=0.1, momentum=0.9, nesterov=True),
], ids=["Adam", "AdamW", "SGD"])
def test_resume_module_and_optimizer_equals_uninterrupted(make_opt, tmp_path):
    MLP = _mlp_module()
    rng = np.random.default_rng(7)
    x = ta.tensor(rng.uniform(-1, 1, (64, 3)).astype(np.float32))
    y = ta.tensor(np.sin(3 * x.numpy()[:, :1]))

    def train(model, opt, sched, steps):
        for _ in range(steps):
            opt.zero_grad()
            ((model(x) - y) ** 2).mean().backward()
            opt.step()
            sched.step()

    def fresh(seed):
        model = MLP(seed)
        opt = make_opt(model.parameters())
        return model, opt, ta.optim.lr_scheduler.LinearWarmupCosineDecay(opt, warmup_steps=3, total_steps=20)

    straight = fresh(0)
    train(*straight, 12)

    model, opt, sched = fresh(0)
    train(model, opt, sched, 5)
    ta.save({"model": model.state_dict(), "optimizer": opt.state_dict(), "scheduler": sched.state_dict()},
            tmp_path / "run.safetensors")
    ckpt = ta.load(tmp_path / "run.safetensors")
    assert list(ckpt["model"]) == ["layers.0.weight", "layers.0.bias", "layers.1.weight"]

    model2, opt2, sched2 = fresh(1)  # different initial weights: everything must come from the checkpoint
    model2.load_state_dict(ckpt["model"])
    opt2.load_state_dict(ckpt["optimizer"])
    sched2.load_state_dict(ckpt["scheduler"])
    train(model2, opt2, sched2, 7)
    for (name, a), (_, b) in zip(model2.state_dict().items(), straight[0].state_dict().items()):
        np.testing.assert_array_equal(a.numpy(), b.numpy(), err_msg=name)
