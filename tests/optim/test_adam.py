"""Adam and AdamW: updates against the formulas computed by hand in NumPy (bias correction, L2 and decoupled
weight decay, amsgrad), per-parameter step counts, PyTorch parity, bit-exact resume from a state dict (also
through ``ta.save``/``ta.load``), in-place updates without allocations, errors, and a toy MLP."""

import tracemalloc

import numpy as np
import pytest

import tinygrad_attn as ta
from tinygrad_attn.nn.parameter import Parameter

from .toy import mlp_params, regression_data, train

CONFIGS = [
    ("Adam", dict(lr=0.01)),
    ("Adam", dict(lr=0.01, betas=(0.8, 0.9), eps=1e-6)),
    ("Adam", dict(lr=0.01, weight_decay=0.1)),
    ("Adam", dict(lr=0.01, amsgrad=True)),
    ("Adam", dict(lr=0.01, weight_decay=0.05, amsgrad=True, maximize=True)),
    ("AdamW", dict(lr=0.01)),
    ("AdamW", dict(lr=0.01, weight_decay=0.3, amsgrad=True)),
    ("AdamW", dict(lr=0.02, betas=(0.5, 0.6), weight_decay=0.1, maximize=True)),
]
IDS = [f"{name}-" + ",".join(f"{k}={v}" for k, v in cfg.items()) for name, cfg in CONFIGS]


def adam_reference(theta, grads, lr, betas=(0.9, 0.999), eps=1e-8, weight_decay=None, amsgrad=False,
                   maximize=False, decoupled=False):
    """Adam / AdamW as written in the papers (with PyTorch's placement of eps), in float64."""
    if weight_decay is None:
        weight_decay = 1e-2 if decoupled else 0.0
    b1, b2 = betas
    theta = np.array(theta, np.float64)
    m = v = vmax = np.zeros_like(theta)
    for t, g in enumerate(grads, start=1):
        g = -g.astype(np.float64) if maximize else g.astype(np.float64)
        if decoupled:
            theta = theta * (1 - lr * weight_decay)
        else:
            g = g + weight_decay * theta
        m = b1 * m + (1 - b1) * g
        v = b2 * v + (1 - b2) * g * g
        vmax = np.maximum(vmax, v)
        m_hat = m / (1 - b1**t)
        v_hat = (vmax if amsgrad else v) / (1 - b2**t)
        theta = theta - lr * m_hat / (np.sqrt(v_hat) + eps)
    return theta


def make(name, params, **cfg):
    return getattr(ta.optim, name)(params, **cfg)


def run_steps(opt, p, grads):
    for g in grads:
        p.grad = ta.tensor(g)
        opt.step()


@pytest.mark.parametrize("name, cfg", CONFIGS, ids=IDS)
def test_updates_match_the_formula(name, cfg):
    rng = np.random.default_rng(1)
    theta0 = rng.standard_normal((4, 5)).astype(np.float32)
    # gradients that shrink, so that amsgrad's max differs from v
    grads = [(rng.standard_normal((4, 5)) * 2.0**-k).astype(np.float32) for k in range(6)]
    p = Parameter(theta0.copy())
    opt = make(name, [p], **cfg)
    run_steps(opt, p, grads)
    expected = adam_reference(theta0, grads, decoupled=name == "AdamW", **cfg)
    np.testing.assert_allclose(p.numpy(), expected, rtol=1e-5, atol=1e-6)
    assert p.dtype == np.float32
    assert all(opt.state[p][k].dtype == np.float32 for k in opt.state[p] if k != "step")
    assert opt.state[p]["step"] == len(grads)


def test_first_step_moves_every_coordinate_by_lr():
    """Bias correction makes the first step ±lr·g/(|g| + eps·...) ≈ ±lr, whatever the gradient's scale."""
    p = Parameter(np.zeros(4, np.float32))
    opt = ta.optim.Adam([p], lr=0.1)
    p.grad = ta.tensor(np.array([1e-3, -5.0, 200.0, -0.5], np.float32))
    opt.step()
    np.testing.assert_allclose(p.numpy(), [-0.1, 0.1, -0.1, 0.1], rtol=1e-4)


def test_adamw_decay_is_decoupled_from_the_gradient():
    """With a zero gradient, Adam's L2 decay becomes a normalised step of size lr, AdamW's a shrink by lr·wd."""
    pa, pw = Parameter(np.full(3, 2.0, np.float32)), Parameter(np.full(3, 2.0, np.float32))
    adam, adamw = ta.optim.Adam([pa], lr=0.1, weight_decay=0.5), ta.optim.AdamW([pw], lr=0.1, weight_decay=0.5)
    pa.grad, pw.grad = ta.zeros(3), ta.zeros(3)
    adam.step()
    adamw.step()
    np.testing.assert_allclose(pa.numpy(), 2.0 - 0.1, rtol=1e-6)
    np.testing.assert_allclose(pw.numpy(), 2.0 * (1 - 0.1 * 0.5), rtol=1e-6)
    assert ta.optim.AdamW([pw]).defaults["weight_decay"] == 1e-2


def test_step_counts_are_per_parameter():
    a, b = Parameter(np.zeros(2, np.float32)), Parameter(np.zeros(2, np.float32))
    opt = ta.optim.Adam([a, b], lr=0.1)
    for k in range(5):
        a.grad = ta.ones(2)
        b.grad = ta.ones(2) if k % 2 == 0 else None
        opt.step()
    assert opt.state[a]["step"] == 5 and opt.state[b]["step"] == 3
    grads_b = [np.ones(2, np.float32)] * 3
    np.testing.assert_allclose(b.numpy(), adam_reference(np.zeros(2), grads_b, lr=0.1), rtol=1e-5)


def test_param_groups_with_different_lrs():
    rng = np.random.default_rng(4)
    t0 = [rng.standard_normal(3).astype(np.float32) for _ in range(2)]
    grads = [[rng.standard_normal(3).astype(np.float32) for _ in range(2)] for _ in range(4)]
    a, b = Parameter(t0[0].copy()), Parameter(t0[1].copy())
    opt = ta.optim.Adam([{"params": [a]}, {"params": [b], "lr": 0.3, "betas": (0.5, 0.9)}], lr=0.01)
    for ga, gb in grads:
        a.grad, b.grad = ta.tensor(ga), ta.tensor(gb)
        opt.step()
    np.testing.assert_allclose(a.numpy(), adam_reference(t0[0], [g[0] for g in grads], lr=0.01), rtol=1e-5)
    np.testing.assert_allclose(b.numpy(), adam_reference(t0[1], [g[1] for g in grads], lr=0.3, betas=(0.5, 0.9)),
                               rtol=1e-5)


def test_float64_and_float16_parameters_keep_their_dtype():
    """Float64 state for a float64 parameter; float32 state (and master copy) for a float16 one."""
    for dtype, state_dtype in ((np.float64, np.float64), (np.float16, np.float32)):
        p = Parameter(np.ones(3, dtype))
        opt = ta.optim.Adam([p], lr=0.1, eps=1e-3)
        p.grad = ta.tensor(np.ones(3, dtype))
        opt.step()
        assert p.dtype == dtype
        assert opt.state[p]["exp_avg"].dtype == state_dtype and opt.state[p]["exp_avg_sq"].dtype == state_dtype
        assert ("master_param" in opt.state[p]) == (dtype == np.float16)
        np.testing.assert_allclose(p.numpy().astype(np.float64), 1 - 0.1 / (1 + 1e-3), rtol=1e-3)


@pytest.mark.parametrize("name, cfg", [CONFIGS[4], CONFIGS[6]], ids=[IDS[4], IDS[6]])
def test_update_is_in_place_and_allocates_nothing_after_the_first_step(name, cfg):
    p = Parameter(np.zeros((500, 500), np.float32))  # 1 MB
    opt = make(name, [p], **cfg)
    data = p.data
    p.grad = ta.ones(500, 500)
    opt.step()
    state_arrays = {k: v.data for k, v in opt.state[p].items() if k != "step"}
    tracemalloc.start()
    try:
        opt.step()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 100_000, f"a step allocated {peak} bytes (the parameter has 1 MB)"
    assert p.data is data
    assert all(opt.state[p][k].data is a for k, a in state_arrays.items())


def test_a_float16_step_through_the_master_copy_allocates_nothing_after_the_first():
    p = Parameter(np.zeros((500, 500), np.float16))
    opt = ta.optim.Adam([p], lr=1e-3)
    p.grad = ta.tensor(np.ones((500, 500), np.float16))
    opt.step()
    data, master = p.data, opt.state[p]["master_param"].data
    tracemalloc.start()
    try:
        opt.step()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 100_000, f"a step allocated {peak} bytes (the parameter has 0.5 MB)"
    assert p.data is data and opt.state[p]["master_param"].data is master


def test_one_scratch_buffer_per_dtype_is_shared_by_all_parameters():
    params = [Parameter(np.zeros(n, np.float32)) for n in (10, 300, 20)] + [Parameter(np.zeros(7, np.float64))]
    opt = ta.optim.Adam(params, weight_decay=0.1)
    for p in params:
        p.grad = ta.tensor(np.ones(p.shape, p.dtype))
    opt.step()
    sizes = sorted((str(dt), buf.size) for (_, dt, _), buf in opt._scratch.items())
    assert sizes == [("float32", 300), ("float64", 7)]


@pytest.mark.parametrize("name, cfg", [CONFIGS[3], CONFIGS[4], CONFIGS[7]], ids=[IDS[3], IDS[4], IDS[7]])
def test_state_dict_resume_equals_uninterrupted_bit_for_bit(name, cfg, tmp_path):
    pytest.importorskip("safetensors")
    rng = np.random.default_rng(5)
    theta0 = [rng.standard_normal(s).astype(np.float32) for s in [(3, 4), (5,)]]
    grads = [[rng.standard_normal(s).astype(np.float32) for s in [(3, 4), (5,)]] for _ in range(8)]

    def steps(opt, params, gs):
        for g in gs:
            for p, gi in zip(params, g):
                p.grad = ta.tensor(gi)
            opt.step()

    straight = [Parameter(t.copy()) for t in theta0]
    steps(make(name, [{"params": straight[:1]}, {"params": straight[1:], "lr": 0.03}], **cfg), straight, grads)

    first = [Parameter(t.copy()) for t in theta0]
    opt = make(name, [{"params": first[:1]}, {"params": first[1:], "lr": 0.03}], **cfg)
    steps(opt, first, grads[:3])
    ta.save({"params": [p.detach() for p in first], "optimizer": opt.state_dict()}, tmp_path / "ckpt.safetensors")

    ckpt = ta.load(tmp_path / "ckpt.safetensors")
    resumed = [Parameter(t) for t in ckpt["params"]]
    opt2 = make(name, [{"params": resumed[:1]}, {"params": resumed[1:]}])  # default hyperparameters
    opt2.load_state_dict(ckpt["optimizer"])
    assert opt2.param_groups[1]["lr"] == 0.03 and opt2.param_groups[0]["betas"] == opt.param_groups[0]["betas"]
    steps(opt2, resumed, grads[3:])
    for r, s in zip(resumed, straight):
        np.testing.assert_array_equal(r.numpy(), s.numpy())


def test_load_state_dict_copies_state_and_casts_to_the_parameter_dtype():
    p = Parameter(np.ones(3, np.float32))
    opt = ta.optim.Adam([p])
    p.grad = ta.ones(3)
    opt.step()
    sd = opt.state_dict()
    q = Parameter(np.ones(3, np.float64))
    opt2 = ta.optim.Adam([q])
    opt2.load_state_dict(sd)
    assert opt2.state[q]["exp_avg"].dtype == np.float64 and opt2.state[q]["step"] == 1
    assert opt2.state[q]["exp_avg"].data is not opt.state[p]["exp_avg"].data


def test_load_state_dict_rejects_state_of_the_wrong_shape():
    p = Parameter(np.ones(3, np.float32))
    opt = ta.optim.Adam([p])
    p.grad = ta.ones(3)
    opt.step()
    with pytest.raises(ValueError, match=r"'exp_avg' of parameter 0 has shape \(3,\).*\(4,\)"):
        ta.optim.Adam([Parameter(np.ones(4, np.float32))]).load_state_dict(opt.state_dict())


@pytest.mark.parametrize("kwargs, match", [
    (dict(lr=-1e-3), "invalid learning rate"),
    (dict(betas=(1.0, 0.999)), "invalid beta1"),
    (dict(betas=(0.9, -0.1)), "invalid beta2"),
    (dict(betas=(0.9,)), "betas must be a pair"),
    (dict(eps=-1e-8), "invalid eps"),
    (dict(weight_decay=-0.1), "invalid weight_decay"),
])
@pytest.mark.parametrize("name", ["Adam", "AdamW"])
def test_bad_hyperparameters_raise_clear_errors(name, kwargs, match):
    with pytest.raises(ValueError, match=f"{name}: {match}"):
        make(name, [Parameter(np.ones(2, np.float32))], **kwargs)


@pytest.mark.parametrize("name, cfg", CONFIGS, ids=IDS)
def test_parity_with_torch(name, cfg):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(6)
    theta0 = rng.standard_normal((6, 7)).astype(np.float32)
    p, tp = Parameter(theta0.copy()), torch.tensor(theta0.copy(), requires_grad=True)
    opt, topt = make(name, [p], **cfg), getattr(torch.optim, name)([tp], **cfg)
    for k in range(6):
        g = (rng.standard_normal((6, 7)) * 2.0**-k).astype(np.float32)
        p.grad, tp.grad = ta.tensor(g), torch.tensor(g)
        opt.step()
        topt.step()
    np.testing.assert_allclose(p.numpy(), tp.detach().numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(opt.state[p]["exp_avg_sq"].numpy(), topt.state[tp]["exp_avg_sq"].numpy(), rtol=1e-5)


@pytest.mark.parametrize("name", ["Adam", "AdamW"])
def test_mlp_learns_toy_regression(name):
    x, y = regression_data()
    params = mlp_params()
    loss = train(params, make(name, params, lr=0.01), 150, x, y)
    assert loss < 0.05, f"{name} reached loss {loss} (a constant predictor scores about 0.75)"


def test_loads_a_pytorch_adam_state_dict_and_continues_like_pytorch():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(8)
    tp = torch.tensor(rng.standard_normal(5).astype(np.float32), requires_grad=True)
    topt = torch.optim.Adam([tp], lr=0.05, amsgrad=True)
    for _ in range(3):
        tp.grad = torch.tensor(rng.standard_normal(5).astype(np.float32))
        topt.step()
    sd = topt.state_dict()  # its step count is a tensor, its groups carry torch-only flags
    state = {i: {k: ta.tensor(v.numpy()) if torch.is_tensor(v) else v for k, v in s.items()}
             for i, s in sd["state"].items()}
    p = Parameter(tp.detach().numpy().copy())
    opt = ta.optim.Adam([p])
    opt.load_state_dict({"state": state, "param_groups": sd["param_groups"]})
    assert opt.state[p]["step"] == 3 and opt.param_groups[0]["lr"] == 0.05
    g = rng.standard_normal(5).astype(np.float32)
    p.grad, tp.grad = ta.tensor(g), torch.tensor(g)
    opt.step()
    topt.step()
    np.testing.assert_allclose(p.numpy(), tp.detach().numpy(), rtol=1e-6, atol=1e-7)
