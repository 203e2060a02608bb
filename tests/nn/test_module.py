"""Module machinery: registration, tree walks, modes, state dicts, moving, printing, containers."""

from __future__ import annotations

import copy

import numpy as np
import pytest

import tinygrad_attn as ta
from tinygrad_attn import nn


class Block(nn.Module):
    """A custom module: a direct parameter, a buffer of each kind, and children."""

    def __init__(self) -> None:
        super().__init__()
        self.scale = nn.Parameter(ta.ones(3))
        self.register_buffer("steps", ta.zeros(1, dtype=ta.int64))
        self.register_buffer("cache", ta.zeros(2), persistent=False)
        self.fc = nn.Linear(3, 2)
        self.act = nn.ReLU()

    def forward(self, x: ta.Tensor) -> ta.Tensor:
        return self.act(self.fc(x * self.scale))


class Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.block = Block()
        self.head = nn.Sequential(nn.Linear(2, 4), nn.ReLU(), nn.Linear(4, 1, bias=False))

    def forward(self, x: ta.Tensor) -> ta.Tensor:
        return self.head(self.block(x))


# ---- registration ------------------------------------------------------------------------------------------


def test_named_parameters_follow_registration_order_and_dotted_names():
    assert [n for n, _ in Net().named_parameters()] == [
        "block.scale", "block.fc.weight", "block.fc.bias", "head.0.weight", "head.0.bias", "head.2.weight"]


def test_parameters_buffers_children_modules():
    net = Net()
    assert len(list(net.parameters())) == 6
    assert len(list(net.block.parameters(recurse=False))) == 1
    assert [n for n, _ in net.named_buffers()] == ["block.steps", "block.cache"]
    assert [n for n, _ in net.named_children()] == ["block", "head"]
    assert [type(m).__name__ for m in net.children()] == ["Block", "Sequential"]
    assert [n for n, _ in net.named_modules()] == [
        "", "block", "block.fc", "block.act", "head", "head.0", "head.1", "head.2"]
    assert len(list(net.modules())) == 8
    assert net.get_submodule("head.2") is net.head[2]
    with pytest.raises(AttributeError, match="nope"):
        net.get_submodule("head.nope")


def test_absent_bias_is_declared_but_not_yielded():
    lin = nn.Linear(3, 2, bias=False)
    assert lin.bias is None
    assert [n for n, _ in lin.named_parameters()] == ["weight"]
    assert list(lin.state_dict()) == ["weight"]


def test_tied_parameter_appears_once():
    a, b = nn.Linear(3, 3), nn.Linear(3, 3)
    b.weight = a.weight
    seq = nn.Sequential(a, b)
    assert [n for n, _ in seq.named_parameters()] == ["0.weight", "0.bias", "1.bias"]
    assert set(seq.state_dict()) == {"0.weight", "0.bias", "1.weight", "1.bias"}  # as PyTorch: both names


def test_shared_module_appears_once():
    lin = nn.Linear(2, 2)
    seq = nn.Sequential(lin, lin)
    assert len(list(seq.parameters())) == 2
    assert len(list(seq.modules())) == 2


def test_reassignment_moves_between_registries():
    m = nn.Module()
    m.x = nn.Parameter(ta.ones(2))
    m.x = nn.Linear(2, 2)  # a parameter name re-used for a module
    assert "x" not in m._parameters and "x" in m._modules
    m.x = None  # clearing a child keeps the slot
    assert m.x is None and list(m.children()) == []
    del m.x
    with pytest.raises(AttributeError):
        m.x  # noqa: B018


def test_assigning_a_plain_tensor_to_a_parameter_slot_is_an_error():
    lin = nn.Linear(2, 2)
    with pytest.raises(TypeError, match="Parameter"):
        lin.weight = ta.ones(2, 2)
    lin.bias = None
    assert lin.bias is None


def test_buffer_assignment_keeps_it_a_buffer():
    blk = Block()
    blk.steps = ta.ones(1, dtype=ta.int64)
    assert blk.state_dict()["steps"].item() == 1
    with pytest.raises(TypeError, match="buffer"):
        blk.steps = 3


def test_forgetting_super_init_names_the_fix():
    class Bad(nn.Module):
        def __init__(self) -> None:
            self.w = nn.Parameter(ta.ones(2))

    with pytest.raises(AttributeError, match=r"super\(\).__init__\(\)"):
        Bad()


def test_register_errors():
    m = nn.Module()
    with pytest.raises(KeyError):
        m.register_buffer("a.b", ta.ones(1))
    with pytest.raises(KeyError):
        m.register_parameter("train", nn.Parameter(ta.ones(1)))  # would shadow a method
    with pytest.raises(TypeError):
        m.register_parameter("w", ta.ones(1))
    with pytest.raises(TypeError):
        m.add_module("c", "not a module")


def test_call_runs_forward_and_missing_forward_is_explained():
    net = Net()
    assert net(ta.ones(5, 3)).shape == (5, 1)
    with pytest.raises(NotImplementedError, match="forward"):
        nn.Module()(ta.ones(1))


def test_dir_lists_registered_names():
    assert {"scale", "fc", "steps"} <= set(dir(Block()))


# ---- modes, gradients, apply ---------------------------------------------------------------------------------


def test_train_eval_propagate_to_every_submodule():
    net = Net()
    assert net.eval() is net
    assert all(not m.training for m in net.modules())
    net.train()
    assert all(m.training for m in net.modules())
    net.head.train(False)
    assert net.training and not net.head[0].training
    with pytest.raises(ValueError):
        net.train("yes")


def test_zero_grad_to_none_and_in_place():
    net = Net()
    net(ta.ones(2, 3)).sum().backward()
    grads = [p.grad for p in net.parameters()]
    assert all(g is not None for g in grads)
    net.zero_grad(set_to_none=False)
    assert all(p.grad is g and not g.numpy().any() for p, g in zip(net.parameters(), grads))
    net.zero_grad()
    assert all(p.grad is None for p in net.parameters())


def test_requires_grad_freezes_and_unfreezes():
    net = Net()
    net.block.requires_grad_(False)
    assert not any(p.requires_grad for p in net.block.parameters())
    assert all(p.requires_grad for p in net.head.parameters())
    net(ta.ones(2, 3)).sum().backward()
    assert net.block.fc.weight.grad is None and net.head[0].weight.grad is not None


def test_apply_visits_children_before_parents():
    seen = []
    Net().apply(lambda m: seen.append(type(m).__name__))
    assert seen == ["Linear", "ReLU", "Block", "Linear", "ReLU", "Linear", "Sequential", "Net"]


# ---- state dicts -----------------------------------------------------------------------------------------------


def test_state_dict_keys_and_values_share_memory():
    net = Net()
    sd = net.state_dict()
    assert list(sd) == ["block.scale", "block.steps", "block.fc.weight", "block.fc.bias", "head.0.weight",
                        "head.0.bias", "head.2.weight"]  # the non-persistent buffer is left out
    assert not sd["block.fc.weight"].requires_grad
    assert np.shares_memory(sd["block.fc.weight"].data, net.block.fc.weight.data)
    assert net.state_dict(keep_vars=True)["block.fc.weight"] is net.block.fc.weight


def test_load_state_dict_round_trip_gives_same_outputs():
    ta.manual_seed(0)
    a, b = Net(), Net()
    x = ta.randn(4, 3)
    assert not np.allclose(a(x).numpy(), b(x).numpy())
    ids = [id(p) for p in b.parameters()]
    result = b.load_state_dict(a.state_dict())
    assert result.missing_keys == [] and result.unexpected_keys == []
    np.testing.assert_array_equal(a(x).numpy(), b(x).numpy())
    assert [id(p) for p in b.parameters()] == ids  # copied in place: optimizers keep working
    assert not np.shares_memory(a.block.fc.weight.data, b.block.fc.weight.data)


def test_load_state_dict_lists_every_problem_in_one_error():
    net = Net()
    sd = {k: v.numpy().copy() for k, v in net.state_dict().items()}
    del sd["block.fc.bias"], sd["head.2.weight"]
    sd["extra.weight"] = np.zeros(3)
    sd["head.0.weight"] = np.zeros((5, 5))
    with pytest.raises(RuntimeError) as info:
        net.load_state_dict(sd)
    msg = str(info.value)
    for fragment in ('Missing key(s) in state_dict: "block.fc.bias", "head.2.weight"',
                     'Unexpected key(s) in state_dict: "extra.weight"',
                     "size mismatch for head.0.weight: copying a param with shape (5, 5) from checkpoint, the shape "
                     "in current model is (4, 2)"):
        assert fragment in msg
    before = net.block.scale.numpy().copy()
    sd["block.scale"] = np.full(3, 7.0)
    with pytest.raises(RuntimeError):
        net.load_state_dict(sd)
    np.testing.assert_array_equal(net.block.scale.numpy(), before)  # nothing is half-loaded


def test_load_state_dict_non_strict_reports_and_loads_the_rest():
    net = Net()
    sd = {"block.scale": np.full(3, 2.0), "unknown": np.zeros(1)}
    result = net.load_state_dict(sd, strict=False)
    assert result.unexpected_keys == ["unknown"]
    assert "head.2.weight" in result.missing_keys and "block.scale" not in result.missing_keys
    np.testing.assert_array_equal(net.block.scale.numpy(), [2, 2, 2])
    with pytest.raises(RuntimeError, match="size mismatch"):  # shapes are checked even when not strict
        net.load_state_dict({"block.scale": np.zeros(4)}, strict=False)


def test_load_state_dict_casts_to_the_module_dtype_and_bumps_versions():
    lin = nn.Linear(2, 2)
    v = lin.weight._version.value
    lin.load_state_dict({"weight": np.arange(4.0).reshape(2, 2), "bias": np.ones(2)})  # float64 arrays
    assert lin.weight.dtype == ta.float32
    np.testing.assert_array_equal(lin.weight.numpy(), [[0, 1], [2, 3]])
    assert lin.weight._version.value > v


def test_load_state_dict_assign_keeps_given_tensors():
    lin = nn.Linear(2, 2)
    w = ta.ones(2, 2)
    lin.load_state_dict({"weight": w, "bias": ta.zeros(2)}, assign=True)
    assert isinstance(lin.weight, nn.Parameter) and lin.weight.requires_grad
    np.testing.assert_array_equal(lin.weight.numpy(), np.ones((2, 2)))


def test_load_state_dict_accepts_torch_tensors():
    torch = pytest.importorskip("torch")
    tl = torch.nn.Linear(3, 2)
    lin = nn.Linear(3, 2)
    lin.load_state_dict(tl.state_dict())
    np.testing.assert_array_equal(lin.weight.numpy(), tl.weight.detach().numpy())


# ---- moving and converting ------------------------------------------------------------------------------------


def test_to_dtype_is_in_place_and_leaves_integer_buffers():
    net = Net()
    params = list(net.parameters())
    net(ta.ones(2, 3)).sum().backward()
    assert net.to(ta.float64) is net
    assert [id(p) for p in net.parameters()] == [id(p) for p in params]
    assert all(p.dtype == ta.float64 and p.grad.dtype == ta.float64 for p in params)
    assert net.block.steps.dtype == ta.int64 and net.block.cache.dtype == ta.float64
    assert net(ta.ones(2, 3, dtype=ta.float64)).dtype == ta.float64
    net.float()
    assert all(p.dtype == ta.float32 for p in net.parameters())
    net.double()
    assert net.block.fc.weight.dtype == ta.float64
    net.to(ta.ones(1))  # .to(tensor) takes its dtype and device
    assert net.block.fc.weight.dtype == ta.float32
    net.to("cpu").cpu()
    with pytest.raises(TypeError, match="floating"):
        net.to(ta.int32)


def test_to_device(device):
    net = Net().to(device)
    assert all(p.device == device for p in net.parameters())
    assert all(b.device == device for b in net.buffers())
    assert net(ta.ones(2, 3, device=device)).device == device


# ---- copies ------------------------------------------------------------------------------------------------------


def test_deepcopy_gives_independent_parameters_with_equal_values():
    a = Net()
    b = copy.deepcopy(a)
    for (na, pa), (nb, pb) in zip(a.named_parameters(), b.named_parameters()):
        assert na == nb and pa is not pb and isinstance(pb, nn.Parameter) and pb.requires_grad
        np.testing.assert_array_equal(pa.numpy(), pb.numpy())
        assert not np.shares_memory(pa.data, pb.data)
    b.block.scale.data[...] = 5
    assert a.block.scale.numpy()[0] == 1


# ---- printing -----------------------------------------------------------------------------------------------------


def test_repr_prints_the_tree_like_pytorch():
    assert repr(Net()) == (
        "Net(\n"
        "  (block): Block(\n"
        "    (scale): Parameter(shape=(3,), dtype=float32)\n"
        "    (fc): Linear(in_features=3, out_features=2, bias=True)\n"
        "    (act): ReLU()\n"
        "  )\n"
        "  (head): Sequential(\n"
        "    (0): Linear(in_features=2, out_features=4, bias=True)\n"
        "    (1): ReLU()\n"
        "    (2): Linear(in_features=4, out_features=1, bias=False)\n"
        "  )\n"
        ")")


def test_repr_collapses_repeated_layers():
    text = repr(nn.ModuleList([nn.Linear(2, 2) for _ in range(3)] + [nn.ReLU()]))
    assert text == "ModuleList(\n  (0-2): 3 x Linear(in_features=2, out_features=2, bias=True)\n  (3): ReLU()\n)"


def test_repr_matches_torch_for_plain_layers():
    torch = pytest.importorskip("torch")
    for ours, theirs in [(nn.Linear(3, 4), torch.nn.Linear(3, 4)), (nn.ReLU(), torch.nn.ReLU()),
                         (nn.Dropout(0.1), torch.nn.Dropout(0.1)), (nn.GELU(), torch.nn.GELU()),
                         (nn.LayerNorm(8), torch.nn.LayerNorm(8)), (nn.Softmax(-1), torch.nn.Softmax(-1)),
                         (nn.Embedding(5, 3, padding_idx=0), torch.nn.Embedding(5, 3, padding_idx=0)),
                         (nn.Sequential(nn.Linear(1, 2), nn.Tanh()),
                          torch.nn.Sequential(torch.nn.Linear(1, 2), torch.nn.Tanh()))]:
        assert repr(ours) == repr(theirs)


# ---- containers ---------------------------------------------------------------------------------------------------


def test_sequential_indexing_len_iteration():
    layers = [nn.Linear(2, 3), nn.ReLU(), nn.Linear(3, 1)]
    seq = nn.Sequential(*layers)
    assert len(seq) == 3 and list(seq) == layers
    assert seq[0] is layers[0] and seq[-1] is layers[2]
    assert list(seq[1:]) == layers[1:] and isinstance(seq[1:], nn.Sequential)
    with pytest.raises(IndexError, match="out of range"):
        seq[3]  # noqa: B018
    new = nn.Tanh()
    seq[1] = new
    assert seq[1] is new
    seq.append(nn.ReLU())
    assert len(seq) == 4
    x = ta.randn(5, 2)
    expected = layers[2](new(layers[0](x))).relu()
    np.testing.assert_allclose(seq(x).numpy(), expected.numpy(), rtol=1e-6)


def test_sequential_from_ordered_dict():
    from collections import OrderedDict

    seq = nn.Sequential(OrderedDict([("fc", nn.Linear(2, 2)), ("act", nn.ReLU())]))
    assert list(seq.state_dict()) == ["fc.weight", "fc.bias"]
    assert seq[0] is seq.fc


def test_module_list():
    ml = nn.ModuleList([nn.Linear(1, 1)])
    ml.append(nn.ReLU()).extend([nn.Tanh()])
    ml.insert(0, nn.Identity())
    assert [type(m).__name__ for m in ml] == ["Identity", "Linear", "ReLU", "Tanh"]
    assert list(ml.state_dict()) == ["1.weight", "1.bias"]
    assert isinstance(ml[-1], nn.Tanh) and len(ml[1:3]) == 2
    holder = nn.Module()
    holder.layers = ml
    assert [n for n, _ in holder.named_parameters()] == ["layers.1.weight", "layers.1.bias"]


def test_module_dict():
    md = nn.ModuleDict({"enc": nn.Linear(2, 2), "act": nn.ReLU()})
    md["dec"] = nn.Linear(2, 1)
    assert list(md) == ["enc", "act", "dec"] and "dec" in md and len(md) == 3
    assert list(md.state_dict()) == ["enc.weight", "enc.bias", "dec.weight", "dec.bias"]
    assert md.pop("act").__class__ is nn.ReLU
    del md["dec"]
    assert list(md.keys()) == ["enc"]
