"""SGD: updates against the formulas computed by hand in NumPy (float64), PyTorch parity, param groups,
state dicts that resume bit for bit, in-place updates without allocations, errors, and a toy MLP."""

import tracemalloc

import numpy as np
import pytest

import tinygrad_attn as ta
from tinygrad_attn.nn.parameter import Parameter

from .toy import mlp_params, regression_data, train

CONFIGS = [
    dict(lr=0.1),
    dict(lr=0.1, weight_decay=0.05),
    dict(lr=0.1, maximize=True),
    dict(lr=0.05, momentum=0.9),
    dict(lr=0.05, momentum=0.9, dampening=0.3),
    dict(lr=0.05, momentum=0.9, nesterov=True),
    dict(lr=0.05, momentum=0.8, nesterov=True, weight_decay=0.1),
    dict(lr=0.05, momentum=0.9, dampening=0.5, weight_decay=0.01, maximize=True),
]


def sgd_reference(theta, grads, lr, momentum=0.0, dampening=0.0, weight_decay=0.0, nesterov=False,
                  maximize=False):
    """SGD as PyTorch documents it, step by step in float64."""
    theta, buf = np.array(theta, np.float64), None
    for g in grads:
        g = -g if maximize else g.astype(np.float64)
        g = g + weight_decay * theta
        if momentum:
            buf = g.copy() if buf is None else momentum * buf + (1 - dampening) * g
            g = g + momentum * buf if nesterov else buf
        theta = theta - lr * g
    return theta


def run_steps(opt, p, grads):
    for g in grads:
        p.grad = ta.tensor(g)
        opt.step()


@pytest.mark.parametrize("cfg", CONFIGS, ids=lambda c: ",".join(f"{k}={v}" for k, v in c.items()))
def test_updates_match_the_formula(cfg):
    rng = np.random.default_rng(1)
    theta0 = rng.standard_normal((4, 5)).astype(np.float32)
    grads = [rng.standard_normal((4, 5)).astype(np.float32) for _ in range(5)]
    p = Parameter(theta0.copy())
    run_steps(ta.optim.SGD([p], **cfg), p, grads)
    assert p.dtype == np.float32
    np.testing.assert_allclose(p.numpy(), sgd_reference(theta0, grads, **cfg), rtol=1e-5, atol=1e-6)


def test_first_momentum_step_is_plain_sgd_and_buffer_holds_the_gradient():
    p = Parameter(np.array([1.0, 2.0], np.float32))
    opt = ta.optim.SGD([p], lr=0.5, momentum=0.9, dampening=0.5)
    run_steps(opt, p, [np.array([1.0, -2.0], np.float32)])
    np.testing.assert_array_equal(p.numpy(), [0.5, 3.0])  # no dampening on the first step, as in PyTorch
    np.testing.assert_array_equal(opt.state[p]["momentum_buffer"].numpy(), [1.0, -2.0])


def test_param_groups_use_their_own_hyperparameters():
    a, b = Parameter(np.ones(3, np.float32)), Parameter(np.ones(2, np.float32))
    opt = ta.optim.SGD([{"params": [a]}, {"params": [b], "lr": 0.5, "momentum": 0.9}], lr=0.1)
    assert opt.param_groups[0]["lr"] == 0.1 and opt.param_groups[0]["momentum"] == 0
    assert opt.param_groups[1]["lr"] == 0.5 and opt.param_groups[1]["momentum"] == 0.9
    for _ in range(2):
        a.grad, b.grad = ta.ones(3), ta.ones(2)
        opt.step()
    np.testing.assert_allclose(a.numpy(), 1 - 0.1 * 2, rtol=1e-6)
    np.testing.assert_allclose(b.numpy(), 1 - 0.5 * (1 + 1.9), rtol=1e-6)


def test_add_param_group_later():
    a, b = Parameter(np.ones(2, np.float32)), Parameter(np.ones(2, np.float32))
    opt = ta.optim.SGD([a], lr=0.1)
    opt.add_param_group({"params": b, "lr": 1.0})
    a.grad, b.grad = ta.ones(2), ta.ones(2)
    opt.step()
    np.testing.assert_allclose(a.numpy(), 0.9, rtol=1e-6)
    np.testing.assert_allclose(b.numpy(), 0.0, atol=1e-7)


def test_params_without_grad_are_skipped():
    a, b = Parameter(np.ones(2, np.float32)), Parameter(np.ones(2, np.float32))
    opt = ta.optim.SGD([a, b], lr=0.1, momentum=0.9)
    a.grad = ta.ones(2)
    opt.step()
    np.testing.assert_array_equal(b.numpy(), [1, 1])
    assert b not in opt.state or not opt.state[b]
    assert "momentum_buffer" in opt.state[a]


def test_update_is_in_place_and_allocates_nothing_after_the_first_step():
    p = Parameter(np.zeros((500, 500), np.float32))  # 1 MB
    opt = ta.optim.SGD([p], lr=0.1, momentum=0.9, nesterov=True, weight_decay=1e-4)
    data_before = p.data
    p.grad = ta.ones(500, 500)
    opt.step()
    buf = opt.state[p]["momentum_buffer"].data
    tracemalloc.start()
    try:
        opt.step()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 100_000, f"a step allocated {peak} bytes (the parameter has 1 MB)"
    assert p.data is data_before and opt.state[p]["momentum_buffer"].data is buf
    assert buf.dtype == np.float32


def test_version_counter_is_bumped_so_stale_graphs_refuse_backward():
    p = Parameter(np.ones(3, np.float32))
    loss = (p * p).sum()
    p.grad = ta.ones(3)
    ta.optim.SGD([p], lr=0.1).step()
    with pytest.raises(RuntimeError, match="modified by an in-place"):
        loss.backward()


def test_zero_grad():
    p = Parameter(np.ones(3, np.float32))
    opt = ta.optim.SGD([p])
    p.grad = ta.ones(3)
    opt.zero_grad(set_to_none=False)
    np.testing.assert_array_equal(p.grad.numpy(), [0, 0, 0])
    opt.zero_grad()
    assert p.grad is None


def test_zero_grad_after_a_real_backward():
    p = Parameter(np.ones(3, np.float32))
    opt = ta.optim.SGD([p], lr=0.1)
    (p * 2).sum().backward()
    opt.step()
    opt.zero_grad(set_to_none=False)
    (p * 3).sum().backward()
    np.testing.assert_array_equal(p.grad.numpy(), [3, 3, 3])


def test_closure_is_called_with_grad_enabled_and_its_loss_returned():
    p = Parameter(np.array([2.0], np.float32))
    opt = ta.optim.SGD([p], lr=0.25)

    def closure():
        opt.zero_grad()
        loss = (p * p).sum()
        loss.backward()
        return loss

    with ta.no_grad():
        loss = opt.step(closure)
    assert float(loss.item()) == 4.0
    np.testing.assert_allclose(p.numpy(), [2.0 - 0.25 * 4.0])


@pytest.mark.parametrize("cfg", [CONFIGS[3], CONFIGS[6], CONFIGS[7]])
def test_state_dict_resume_equals_uninterrupted_bit_for_bit(cfg):
    rng = np.random.default_rng(2)
    theta0 = rng.standard_normal((3, 4)).astype(np.float32)
    grads = [rng.standard_normal((3, 4)).astype(np.float32) for _ in range(7)]
    straight = Parameter(theta0.copy())
    run_steps(ta.optim.SGD([straight], **cfg), straight, grads)

    first = Parameter(theta0.copy())
    opt = ta.optim.SGD([first], **cfg)
    run_steps(opt, first, grads[:3])
    state = opt.state_dict()
    resumed = Parameter(first.numpy().copy())
    opt2 = ta.optim.SGD([resumed], lr=123.0)  # hyperparameters come from the state dict
    opt2.load_state_dict(state)
    assert opt2.param_groups[0]["lr"] == cfg["lr"]
    run_steps(opt2, resumed, grads[3:])
    np.testing.assert_array_equal(resumed.numpy(), straight.numpy())


def test_state_dict_layout_is_torch_like():
    a, b, c = (Parameter(np.ones(2, np.float32)) for _ in range(3))
    opt = ta.optim.SGD([{"params": [a, b]}, {"params": [c], "lr": 0.5}], lr=0.1, momentum=0.9)
    b.grad = ta.ones(2)
    opt.step()
    sd = opt.state_dict()
    assert list(sd) == ["state", "param_groups"]
    assert list(sd["state"]) == [1]
    assert set(sd["state"][1]) == {"momentum_buffer"}
    assert [g["params"] for g in sd["param_groups"]] == [[0, 1], [2]]
    assert sd["param_groups"][1]["lr"] == 0.5


def test_load_state_dict_rejects_mismatched_groups():
    a, b = Parameter(np.ones(2, np.float32)), Parameter(np.ones(2, np.float32))
    sd = ta.optim.SGD([a, b], lr=0.1).state_dict()
    with pytest.raises(ValueError, match="has 2 parameters in the state dict but 1"):
        ta.optim.SGD([a], lr=0.1).load_state_dict(sd)
    with pytest.raises(ValueError, match="1 parameter groups, this optimizer has 2"):
        ta.optim.SGD([{"params": [a]}, {"params": [b]}], lr=0.1).load_state_dict(sd)


@pytest.mark.parametrize("kwargs, match", [
    (dict(lr=-0.1), "invalid learning rate"),
    (dict(momentum=-0.5), "invalid momentum"),
    (dict(weight_decay=-1.0), "invalid weight_decay"),
    (dict(nesterov=True), "Nesterov momentum requires"),
    (dict(nesterov=True, momentum=0.9, dampening=0.1), "Nesterov momentum requires"),
])
def test_bad_hyperparameters_raise_clear_errors(kwargs, match):
    with pytest.raises(ValueError, match=match):
        ta.optim.SGD([Parameter(np.ones(2, np.float32))], **kwargs)


def test_bad_hyperparameter_in_a_group_is_caught_too():
    with pytest.raises(ValueError, match="invalid learning rate"):
        ta.optim.SGD([{"params": [Parameter(np.ones(2, np.float32))], "lr": -1}], lr=0.1)


def test_bad_params_raise_clear_errors():
    p = Parameter(np.ones(2, np.float32))
    with pytest.raises(TypeError, match="iterable of Tensors"):
        ta.optim.SGD(p)
    with pytest.raises(ValueError, match="empty parameter list"):
        ta.optim.SGD([])
    with pytest.raises(TypeError, match="not a set"):
        ta.optim.SGD({p})
    with pytest.raises(ValueError, match="non-leaf"):
        ta.optim.SGD([p * 2])
    with pytest.raises(ValueError, match="more than one parameter group"):
        ta.optim.SGD([{"params": [p]}, {"params": [p]}])
    with pytest.raises(TypeError, match="not a Tensor"):
        ta.optim.SGD([np.ones(2)])


def test_grad_of_wrong_shape_raises_clear_error():
    p = Parameter(np.ones((2, 3), np.float32))
    opt = ta.optim.SGD([p])
    p.grad = ta.ones(3)
    with pytest.raises(RuntimeError, match=r"SGD.step: parameter 0.*\(2, 3\).*grad is float32 \(3,\)"):
        opt.step()


def test_float64_parameters_stay_float64():
    p = Parameter(np.ones(3, np.float64))
    opt = ta.optim.SGD([p], lr=0.1, momentum=0.9)
    p.grad = ta.tensor(np.full(3, 1e-12, np.float64))
    opt.step()
    assert p.dtype == np.float64 and opt.state[p]["momentum_buffer"].dtype == np.float64
    np.testing.assert_array_equal(p.numpy(), 1 - 0.1 * 1e-12)


@pytest.mark.parametrize("cfg", CONFIGS, ids=lambda c: ",".join(f"{k}={v}" for k, v in c.items()))
def test_parity_with_torch(cfg):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(3)
    theta0 = rng.standard_normal((6, 7)).astype(np.float32)
    p, tp = Parameter(theta0.copy()), torch.tensor(theta0.copy(), requires_grad=True)
    opt, topt = ta.optim.SGD([p], **cfg), torch.optim.SGD([tp], **cfg)
    for _ in range(6):
        g = rng.standard_normal((6, 7)).astype(np.float32)
        p.grad, tp.grad = ta.tensor(g), torch.tensor(g)
        opt.step()
        topt.step()
    np.testing.assert_allclose(p.numpy(), tp.detach().numpy(), rtol=1e-5, atol=1e-6)


def test_mlp_learns_toy_regression():
    x, y = regression_data()
    params = mlp_params()
    loss = train(params, ta.optim.SGD(params, lr=0.1, momentum=0.9), 150, x, y)
    assert loss < 0.05, f"SGD reached loss {loss} (a constant predictor scores about 0.75)"
