"""Mixed precision (``ta.amp``): autocast's output dtypes per op, gradients of an autocast MLP against the
float32 ones, GradScaler's dynamic loss scale (skip and halve on inf/nan, grow after N clean steps, state
dict), float32 master weights under fp16 parameters, and the TF32 switch on the CPU."""

import numpy as np
import pytest

import tinygrad_attn as ta
from tests.strict_device import StrictArray, host_reads
from tinygrad_attn.amp import autocast_mode
from tinygrad_attn.nn.parameter import Parameter

F = ta.F


def _t(shape, seed=0, dtype=np.float32, requires_grad=False):
    return ta.tensor(np.random.default_rng(seed).standard_normal(shape).astype(dtype), requires_grad=requires_grad)


# ---- autocast ---------------------------------------------------------------------------------------------


def test_autocast_casts_matmuls_to_float16_and_softmax_norm_loss_to_float32():
    x, w, b = _t((4, 8)), _t((3, 8), 1), _t((3,), 2)
    q, k, v = _t((2, 5, 8), 3), _t((2, 6, 8), 4), _t((2, 6, 8), 5)
    with ta.amp.autocast(device_type="cpu"):
        assert F.linear(x, w, b).dtype == ta.float16
        assert (x @ w.T).dtype == ta.float16
        assert ta.matmul(x, w.T).dtype == ta.float16
        assert F.scaled_dot_product_attention(q, k, v).dtype == ta.float16
        half = F.linear(x, w, b)
        assert F.softmax(half, -1).dtype == ta.float32
        assert F.log_softmax(half, -1).dtype == ta.float32
        assert F.layer_norm(half, (3,), ta.ones(3), ta.zeros(3)).dtype == ta.float32
        assert F.cross_entropy(half, ta.tensor([0, 1, 2, 0])).dtype == ta.float32
        assert (half + x[:, :3]).dtype == ta.float32  # other ops promote as usual
    assert F.linear(x, w, b).dtype == ta.float32  # off again outside


def test_autocast_attention_keeps_its_softmax_in_float32():
    """The scores' softmax runs in float32 (P is float32) while the products run in float16; the output and
    the gradients are close to float32 attention, and reach float32 leaves in float32."""
    rng = np.random.default_rng(0)
    arrays = [rng.standard_normal(s).astype(np.float32) for s in ((2, 5, 8), (2, 6, 8), (2, 6, 8))]
    mask = ta.tensor(rng.random((5, 6)) > 0.3)
    results = {}
    for mixed in (False, True):
        q, k, v = (ta.tensor(a, requires_grad=True) for a in arrays)
        with ta.amp.autocast("cpu", enabled=mixed):
            out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
            weights = F.attention_weights(q, k, attn_mask=mask)
        assert weights.dtype == ta.float32
        assert out.dtype == (ta.float16 if mixed else ta.float32)
        out.float().sum().backward()
        assert all(t.grad.dtype == ta.float32 for t in (q, k, v))
        results[mixed] = [out.float().numpy(), weights.numpy()] + [t.grad.numpy() for t in (q, k, v)]
    for a32, a16 in zip(results[False], results[True]):
        np.testing.assert_allclose(a16, a32, rtol=2e-2, atol=2e-2)


def test_autocast_attention_survives_scores_whose_unscaled_product_overflows_float16():
    """q . k = 64 * 40^2 = 102400 overflows float16 (max 65504); the scaled score, 12800, does not: the scale is
    applied before the float16 product, so every query attends evenly instead of giving nan (inf - inf)."""
    q = ta.full((1, 3, 64), 40.0, requires_grad=True)
    k = ta.full((1, 4, 64), 40.0, requires_grad=True)
    v = ta.tensor(np.arange(16, dtype=np.float32).reshape(1, 4, 4), requires_grad=True)
    with ta.amp.autocast("cpu"):
        out = F.scaled_dot_product_attention(q, k, v)
    np.testing.assert_allclose(out.float().numpy(), np.broadcast_to(np.arange(16).reshape(4, 4).mean(0), (1, 3, 4)))
    out.float().sum().backward()
    assert all(np.isfinite(t.grad.numpy()).all() for t in (q, k, v))


def test_autocast_layer_norm_statistics_and_the_loss_stay_in_float32():
    """Values float16 holds whose squares or sums it does not: a layer norm of +-300 (variance 90000 > 65504)
    and a cross-entropy over 70000 equal logits (sum of exps 70000) are right under autocast."""
    x = ta.tensor(np.tile(np.array([300.0, -300.0], np.float16), (2, 4)))
    with ta.amp.autocast("cpu"):
        y = F.layer_norm(x, (8,))
    np.testing.assert_allclose(y.numpy(), np.tile([1.0, -1.0], (2, 4)), atol=1e-4)
    logits = ta.zeros(2, 70000, dtype=ta.float16)
    with ta.amp.autocast("cpu"):
        loss = F.cross_entropy(logits, ta.tensor([0, 5]))
    assert loss.item() == pytest.approx(np.log(70000), rel=1e-6)


def test_numpy_float16_matmuls_round_the_product_once():
    """NumPy has no float16 BLAS, so ours multiplies float16 in float32 and rounds once (as a GPU's float16
    matmul with float32 accumulation; the speed this buys is measured in benchmarks/README.md, "float16 on
    the CPU"): a float16 result equal to the exact product rounded to float16 (a float64 oracle) but for a
    few near-ties, and gradients in float16."""
    rng = np.random.default_rng(0)
    a, b = (ta.tensor(rng.standard_normal((256, 256)).astype(np.float16), requires_grad=True) for _ in range(2))
    out = a @ b
    product = out.numpy()
    assert product.dtype == np.float16
    exact = (a.numpy().astype(np.float64) @ b.numpy().astype(np.float64)).astype(np.float16)
    assert np.mean(product != exact) < 1e-2
    out.sum().backward()
    assert a.grad.dtype == ta.float16 and b.grad.dtype == ta.float16


def test_autocast_nests_and_can_be_switched_off_inside():
    x = _t((2, 2))
    with ta.amp.autocast("cpu"):
        assert ta.amp.is_autocast_enabled()
        with ta.amp.autocast("cpu", enabled=False):
            assert not ta.amp.is_autocast_enabled()
            assert (x @ x).dtype == ta.float32
        assert (x @ x).dtype == ta.float16
    assert not ta.amp.is_autocast_enabled() and not autocast_mode.enabled


def test_autocast_restores_the_state_after_an_exception_and_works_as_a_decorator():
    with pytest.raises(KeyError), ta.amp.autocast("cpu"):
        raise KeyError("boom")
    assert not ta.amp.is_autocast_enabled()

    @ta.amp.autocast("cpu")
    def product(a):
        return a @ a

    assert product(_t((2, 2))).dtype == ta.float16
    assert not ta.amp.is_autocast_enabled()


def test_autocast_rejects_bad_arguments():
    with pytest.raises(ValueError, match="device_type"):
        ta.amp.autocast("tpu")
    with pytest.raises(ValueError, match="float16"):
        ta.amp.autocast("cpu", dtype=ta.float64)
    with pytest.raises(TypeError, match="enabled"):
        ta.amp.autocast("cpu", enabled=1)


def _mlp_loss(params, x, y):
    w1, b1, w2, b2 = params
    h = F.linear(x, w1, b1).relu()
    return F.cross_entropy(F.linear(h, w2, b2), y)


def test_gradients_of_an_autocast_mlp_are_float32_and_close_to_the_float32_ones():
    rng = np.random.default_rng(0)
    x = ta.tensor(rng.standard_normal((32, 16)).astype(np.float32))
    y = ta.tensor(rng.integers(0, 5, 32))
    arrays = [rng.standard_normal((24, 16)) / 4, rng.standard_normal(24) / 4, rng.standard_normal((5, 24)) / 5,
              rng.standard_normal(5) / 5]
    grads = {}
    for mixed in (False, True):
        params = [Parameter(a.astype(np.float32)) for a in arrays]
        with ta.amp.autocast("cpu", enabled=mixed):
            loss = _mlp_loss(params, x, y)
        assert loss.dtype == ta.float32
        loss.backward()
        assert all(p.grad.dtype == ta.float32 for p in params)  # the casts are ops: gradients reach the masters
        grads[mixed] = [p.grad.numpy() for p in params]
    for g32, g16 in zip(grads[False], grads[True]):
        assert not np.array_equal(g32, g16)  # float16 really ran
        np.testing.assert_allclose(g16, g32, rtol=2e-2, atol=2e-3)


def test_autocast_costs_nothing_when_off():
    """Outside autocast the hooked ops see a plain module flag and call no cast."""
    assert autocast_mode.enabled is False
    x = _t((3, 3))
    calls = []
    original = autocast_mode.to_lower
    autocast_mode.to_lower = lambda *t: calls.append(t) or original(*t)
    try:
        F.linear(x, x)
        x @ x
        assert calls == []
        with ta.amp.autocast("cpu"):
            x @ x
        assert len(calls) == 1
    finally:
        autocast_mode.to_lower = original


# ---- GradScaler -------------------------------------------------------------------------------------------


def _param_with_grad(values, grad):
    p = Parameter(np.array(values, np.float32))
    p.grad = ta.tensor(np.array(grad, np.float32))
    return p


def test_scale_multiplies_the_loss_and_step_unscales_the_gradients():
    scaler = ta.amp.GradScaler(init_scale=8.0)
    p = Parameter(np.array([1.0, 2.0], np.float32))
    opt = ta.optim.SGD([p], lr=0.5)
    loss = (p * p).sum()
    scaled = scaler.scale(loss)
    assert scaled.item() == pytest.approx(8.0 * 5.0)
    scaled.backward()
    np.testing.assert_allclose(p.grad.numpy(), 8.0 * np.array([2.0, 4.0]))
    scaler.step(opt)
    np.testing.assert_allclose(p.grad.numpy(), [2.0, 4.0])  # unscaled in place
    np.testing.assert_allclose(p.numpy(), [0.0, 0.0])  # the step used the true gradient
    scaler.update()
    assert scaler.get_scale() == 8.0


@pytest.mark.parametrize("bad", [np.inf, -np.inf, np.nan])
def test_an_inf_or_nan_gradient_skips_the_step_and_halves_the_scale(bad):
    scaler = ta.amp.GradScaler(init_scale=1024.0, growth_interval=3)
    p, q = _param_with_grad([1.0, 2.0], [1.0, 1.0]), _param_with_grad([3.0], [bad])
    opt = ta.optim.Adam([q, p], lr=0.1)  # the bad gradient first: the check must not keep only the last
    assert scaler.step(opt) is None
    np.testing.assert_array_equal(p.numpy(), [1.0, 2.0])  # no parameter moved
    np.testing.assert_array_equal(q.numpy(), [3.0])
    assert not opt.state[p]  # and Adam's state did not start
    scaler.update()
    assert scaler.get_scale() == 512.0
    assert scaler.state_dict()["_growth_tracker"] == 0


def test_the_scale_grows_after_growth_interval_clean_steps_and_an_overflow_resets_the_count():
    scaler = ta.amp.GradScaler(init_scale=4.0, growth_interval=3, growth_factor=2.0, backoff_factor=0.5)
    p = _param_with_grad([1.0], [1.0])
    opt = ta.optim.SGD([p], lr=0.0)
    seen = []
    for g in [1.0, 1.0, np.inf, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0]:
        p.grad = ta.tensor(np.array([g * scaler.get_scale()], np.float32))
        scaler.step(opt)
        scaler.update()
        seen.append(scaler.get_scale())
    assert seen == [4.0, 4.0, 2.0, 2.0, 2.0, 4.0, 4.0, 4.0, 8.0]


def test_unscale_then_clip_then_step_unscales_once():
    scaler = ta.amp.GradScaler(init_scale=4.0)
    p = _param_with_grad([0.0, 0.0], [12.0, 16.0])
    opt = ta.optim.SGD([p], lr=1.0)
    scaler.unscale_(opt)
    np.testing.assert_allclose(p.grad.numpy(), [3.0, 4.0])
    ta.nn.utils.clip_grad_norm_([p], 1.0)
    scaler.step(opt)
    np.testing.assert_allclose(p.numpy(), [-0.6, -0.8], rtol=1e-5)
    with pytest.raises(RuntimeError, match="step\\(\\) has already been called"):
        scaler.step(opt)
    scaler.update()
    p.grad = ta.tensor(np.array([4.0, 4.0], np.float32))
    scaler.unscale_(opt)
    with pytest.raises(RuntimeError, match="already been called"):
        scaler.unscale_(opt)


def test_an_amp_training_step_reads_the_device_once():
    """On the strict stand-in for a GPU: autocast forward, scaled backward, unscale, the inf check and an
    Adam step of a small MLP read from the device once (the inf check), not once per parameter."""
    ta.manual_seed(0)
    model = ta.nn.Sequential(ta.nn.Linear(6, 16), ta.nn.ReLU(), ta.nn.LayerNorm(16), ta.nn.Linear(16, 4))
    model.to("strict")
    opt = ta.optim.Adam(model.parameters(), lr=1e-3)
    scaler = ta.amp.GradScaler()
    x, target = ta.randn(8, 6, device="strict"), ta.randn(8, 4, device="strict")
    counts = []
    for _ in range(2):
        with host_reads() as reads:
            opt.zero_grad()
            with ta.amp.autocast("cuda"):
                out = model(x)
            loss = F.mse_loss(out.float(), target)
            scaler.scale(loss).backward()
            scaler.step(opt)
            scaler.update()
        counts.append(reads.count)
    assert counts == [1, 1]
    assert all(p.dtype == ta.float32 and isinstance(p.data, StrictArray) for p in model.parameters())


def test_half_parameters_train_on_the_strict_device_as_on_the_cpu():
    results = []
    for device in ("cpu", "strict"):
        p = ta.tensor(np.linspace(-1, 1, 6).astype(np.float16), device=device, requires_grad=True)
        opt = ta.optim.Adam([p], lr=1e-2, eps=1e-9)
        for step in range(3):
            p.grad = ta.tensor(np.full(6, 1e-4 * (step + 1), np.float16), device=device)
            opt.step()
        assert opt.state[p]["master_param"].device == p.device
        results.append(p.numpy())
    np.testing.assert_array_equal(results[0], results[1])


def test_disabled_scaler_is_a_pass_through():
    scaler = ta.amp.GradScaler(enabled=False)
    p = _param_with_grad([1.0], [np.inf])
    loss = p.sum()
    assert scaler.scale(loss) is loss
    assert scaler.get_scale() == 1.0 and scaler.state_dict() == {}
    scaler.step(ta.optim.SGD([p], lr=1.0))  # steps, even into inf: no checks when disabled
    assert np.isinf(p.numpy()[0])
    scaler.update()


def test_scaler_state_dict_round_trips_through_a_file(tmp_path):
    scaler = ta.amp.GradScaler(init_scale=64.0, growth_interval=5)
    p = _param_with_grad([1.0], [1.0])
    opt = ta.optim.SGD([p], lr=0.0)
    for _ in range(3):
        p.grad = ta.tensor(np.array([1.0], np.float32))
        scaler.step(opt)
        scaler.update()
    p.grad = ta.tensor(np.array([np.nan], np.float32))
    scaler.step(opt)
    scaler.update()
    p.grad = ta.tensor(np.array([1.0], np.float32))
    scaler.step(opt)
    scaler.update()
    state = scaler.state_dict()
    assert state == {"scale": 32.0, "growth_factor": 2.0, "backoff_factor": 0.5, "growth_interval": 5,
                     "_growth_tracker": 1}
    ta.save({"scaler": state}, tmp_path / "s.safetensors")
    fresh = ta.amp.GradScaler()
    fresh.load_state_dict(ta.load(tmp_path / "s.safetensors")["scaler"])
    assert fresh.state_dict() == state


def test_scaler_rejects_bad_arguments_and_half_gradients():
    for kwargs, word in [(dict(init_scale=0.0), "init_scale"), (dict(growth_factor=1.0), "growth_factor"),
                         (dict(backoff_factor=1.0), "backoff_factor"), (dict(growth_interval=0), "growth_interval")]:
        with pytest.raises(ValueError, match=word):
            ta.amp.GradScaler(**kwargs)
    with pytest.raises(TypeError, match="Tensor"):
        ta.amp.GradScaler().scale(3.0)
    p = Parameter(np.ones(2, np.float16))
    p.grad = ta.tensor(np.ones(2, np.float16))
    with pytest.raises(ValueError, match="float16"):
        ta.amp.GradScaler().unscale_(ta.optim.SGD([p], lr=0.1))
    with pytest.raises(RuntimeError, match="step"):
        ta.amp.GradScaler().update()


def test_amp_training_of_an_mlp_follows_the_float32_run():
    """A few hundred steps of autocast + GradScaler end near the float32 loss (same data, same init)."""
    rng = np.random.default_rng(1)
    x = ta.tensor(rng.standard_normal((64, 16)).astype(np.float32))
    y = ta.tensor(rng.integers(0, 5, 64))
    arrays = [rng.standard_normal((24, 16)) / 4, np.zeros(24), rng.standard_normal((5, 24)) / 5, np.zeros(5)]
    final = {}
    for mixed in (False, True):
        params = [Parameter(a.astype(np.float32)) for a in arrays]
        opt = ta.optim.Adam(params, lr=1e-2)
        scaler = ta.amp.GradScaler(enabled=mixed)
        for _ in range(150):
            opt.zero_grad()
            with ta.amp.autocast("cpu", enabled=mixed):
                loss = _mlp_loss(params, x, y)
            scaler.scale(loss).backward()
            scaler.step(opt)
            scaler.update()
        assert all(p.dtype == ta.float32 for p in params)
        final[mixed] = loss.item()
    assert final[False] < 0.5
    assert final[True] == pytest.approx(final[False], abs=0.05)


# ---- optimizers on float16 parameters: float32 state and master copy --------------------------------------


@pytest.mark.parametrize("make", [lambda p: ta.optim.Adam(p, lr=1e-3, eps=1e-9),
                                  lambda p: ta.optim.AdamW(p, lr=1e-3, eps=1e-9),
                                  lambda p: ta.optim.SGD(p, lr=1e-3, momentum=0.9)],
                         ids=["Adam", "AdamW", "SGD"])
def test_half_parameters_are_updated_through_a_float32_master_copy(make):
    rng = np.random.default_rng(0)
    start = rng.standard_normal(16).astype(np.float16).astype(np.float32)  # representable in float16
    grads = [(rng.standard_normal(16) * 1e-4).astype(np.float32) for _ in range(20)]

    ref = Parameter(start.copy())  # float32 reference: same gradients, rounded to float16 as they would be
    half = Parameter(start.astype(np.float16))
    opt_ref, opt_half = make([ref]), make([half])
    for g in grads:
        ref.grad = ta.tensor(g.astype(np.float16).astype(np.float32))
        half.grad = ta.tensor(g.astype(np.float16))
        opt_ref.step()
        opt_half.step()
        assert half.dtype == ta.float16
    state = opt_half.state[half]
    master = state["master_param"].numpy()
    assert master.dtype == np.float32
    assert all(v.dtype == ta.float32 for k, v in state.items() if isinstance(v, ta.Tensor))
    np.testing.assert_allclose(master, ref.numpy(), rtol=1e-6, atol=1e-7)  # float32 all the way
    np.testing.assert_array_equal(half.numpy(), ref.numpy().astype(np.float16))  # written back, rounded
    assert not np.array_equal(master, start)


def test_adam_on_half_parameters_does_not_underflow():
    """g = 1e-4: g² = 1e-8 is 0 in float16, and eps 1e-9 too; Adam's first step must still move by ~lr."""
    p = Parameter(np.zeros(4, np.float16))
    p.grad = ta.tensor(np.full(4, 1e-4, np.float16))
    ta.optim.Adam([p], lr=1e-2, eps=1e-9).step()
    np.testing.assert_allclose(p.numpy().astype(np.float32), -1e-2, rtol=1e-2)


def test_half_parameter_state_resumes_exactly(tmp_path):
    rng = np.random.default_rng(3)
    grads = [rng.standard_normal(8).astype(np.float16) for _ in range(6)]

    def run(n_before, resume_path=None):
        p = Parameter(np.linspace(-1, 1, 8).astype(np.float16))
        opt = ta.optim.Adam([p], lr=1e-2)
        for g in grads[:n_before]:
            p.grad = ta.tensor(g)
            opt.step()
        return p, opt

    p_full, opt_full = run(6)
    p, opt = run(3)
    ta.save({"p": p, "opt": opt.state_dict()}, tmp_path / "c.safetensors")
    saved = ta.load(tmp_path / "c.safetensors")
    p2 = Parameter(saved["p"].numpy())
    opt2 = ta.optim.Adam([p2], lr=1e-2)
    opt2.load_state_dict(saved["opt"])
    assert opt2.state[p2]["exp_avg"].dtype == ta.float32 and opt2.state[p2]["master_param"].dtype == ta.float32
    for g in grads[3:]:
        p2.grad = ta.tensor(g)
        opt2.step()
    np.testing.assert_array_equal(p2.numpy(), p_full.numpy())
    np.testing.assert_array_equal(opt2.state[p2]["master_param"].numpy(),
                                  opt_full.state[p_full]["master_param"].numpy())


# ---- TF32 -------------------------------------------------------------------------------------------------


def test_allow_tf32_is_recorded_and_a_no_op_without_cupy(monkeypatch):
    monkeypatch.delenv("CUPY_TF32", raising=False)
    assert not ta.amp.tf32_allowed()
    took_effect = ta.amp.allow_tf32(True)
    assert ta.amp.tf32_allowed()
    import sys
    assert took_effect == ("cupy" in sys.modules)
    ta.amp.allow_tf32(False)
    assert not ta.amp.tf32_allowed()
    with pytest.raises(TypeError, match="bool"):
        ta.amp.allow_tf32("yes")
