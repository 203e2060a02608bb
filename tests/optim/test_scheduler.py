"""Learning-rate schedulers against their closed-form formulas, in the loop a training script runs
(``opt.step(); sched.step()``), plus state-dict resume, PyTorch parity and errors."""

import math

import numpy as np
import pytest

import tinygrad_attn as ta
from tinygrad_attn.nn.parameter import Parameter
from tinygrad_attn.optim.lr_scheduler import LambdaLR, LinearWarmupCosineDecay, NoamLR, StepLR


def make_opt(lr=0.1, groups=1):
    params = [Parameter(np.zeros(2, np.float32)) for _ in range(groups)]
    return ta.optim.SGD([{"params": [p], "lr": lr * (i + 1)} for i, p in enumerate(params)], lr=lr)


def lrs_used(opt, sched, steps):
    """The lr of each group during optimizer steps 1..steps, as a training loop sees them."""
    seen = []
    for _ in range(steps):
        seen.append([g["lr"] for g in opt.param_groups])  # what opt.step() would use now
        opt.step()
        sched.step()
    return np.array(seen)


def test_lambda_lr_multiplies_the_initial_lr():
    opt = make_opt(0.1, groups=2)
    sched = LambdaLR(opt, [lambda e: 0.5**e, lambda e: 1 / (e + 1)])
    used = lrs_used(opt, sched, 6)
    epochs = np.arange(6)
    np.testing.assert_allclose(used[:, 0], 0.1 * 0.5**epochs, rtol=1e-15)
    np.testing.assert_allclose(used[:, 1], 0.2 / (epochs + 1), rtol=1e-15)
    assert sched.last_epoch == 6 and sched.get_last_lr() == [g["lr"] for g in opt.param_groups]


def test_step_lr_decays_every_step_size():
    opt = make_opt(0.5)
    sched = StepLR(opt, step_size=3, gamma=0.1)
    used = lrs_used(opt, sched, 10)[:, 0]
    np.testing.assert_allclose(used, [0.5 * 0.1 ** (e // 3) for e in range(10)], rtol=1e-15)


@pytest.mark.parametrize("warmup, total, min_lr", [(4, 20, 0.0), (0, 10, 0.01), (5, 5, 0.0), (3, 12, 0.02)])
def test_linear_warmup_cosine_decay_closed_form(warmup, total, min_lr):
    base = 0.3
    opt = make_opt(base)
    sched = LinearWarmupCosineDecay(opt, warmup_steps=warmup, total_steps=total, min_lr=min_lr)
    used = lrs_used(opt, sched, total + 5)[:, 0]
    for n, lr in enumerate(used, start=1):  # n: the optimizer step
        if n <= warmup:
            expected = base * n / warmup
        elif n >= total:
            expected = min_lr
        else:
            expected = min_lr + (base - min_lr) * 0.5 * (1 + math.cos(math.pi * (n - warmup) / (total - warmup)))
        assert lr == pytest.approx(expected, rel=1e-12, abs=1e-15), n
    if warmup:
        assert used[warmup - 1] == pytest.approx(base) and used[0] == pytest.approx(base / warmup)
    if total > warmup:
        assert used[total - 1] == pytest.approx(min_lr)
    assert used[-1] == pytest.approx(min_lr)


class FakeClock:
    """Seconds that advance only when told: each optimizer step of the tests below takes ``per_step``."""

    def __init__(self, per_step: float) -> None:
        self.seconds, self.per_step = 0.0, per_step

    def __call__(self) -> float:
        return self.seconds


def lrs_used_timed(opt, sched, clock, steps):
    seen = []
    for _ in range(steps):
        seen.append(opt.param_groups[0]["lr"])
        opt.step()
        clock.seconds += clock.per_step  # the step took this long; the scheduler then sets the next lr
        sched.step()
    return np.array(seen)


@pytest.mark.parametrize("per_step, warmup", [(2.0, 4), (0.5, 4), (3.0, 0)])
def test_cosine_over_a_time_budget_ends_when_the_time_does(per_step, warmup):
    """With seconds alone, f = clock / total_seconds: the cosine fits the steps the time allows; f_w is the
    fraction spent in the warmup, so p = (t - t_w) / (T - t_w) with t the time after n - 1 steps."""
    base, total_seconds = 0.3, 60.0
    opt, clock = make_opt(base), FakeClock(per_step)
    sched = LinearWarmupCosineDecay(opt, warmup_steps=warmup, total_seconds=total_seconds, clock=clock)
    steps_in_budget = int(total_seconds / per_step)
    used = lrs_used_timed(opt, sched, clock, steps_in_budget + 3)
    t_w = warmup * per_step
    for n, lr in enumerate(used, start=1):
        t = (n - 1) * per_step  # time spent before step n, when its lr was set
        if n <= warmup:
            expected = base * n / warmup
        elif t >= total_seconds:
            expected = 0.0
        else:
            expected = base * 0.5 * (1 + math.cos(math.pi * (t - t_w) / (total_seconds - t_w)))
        assert lr == pytest.approx(expected, rel=1e-12, abs=1e-15), n
    assert used[steps_in_budget] == 0.0 and used[steps_in_budget - 1] > 0.0


def test_cosine_with_steps_and_seconds_follows_whichever_budget_runs_out_first():
    """f = max(n / total_steps, t / total_seconds): a slow clock leaves the step budget in charge (the lrs
    of the steps-only schedule, exactly); a fast one ends the decay early, at the time budget."""
    opt = make_opt(0.3)
    steps_only = lrs_used(opt, LinearWarmupCosineDecay(opt, 5, total_steps=40), 45)[:, 0]
    opt, clock = make_opt(0.3), FakeClock(per_step=1.0)  # 40 steps take 40 s of a 1,000 s budget
    slow = lrs_used_timed(opt, LinearWarmupCosineDecay(opt, 5, total_steps=40, total_seconds=1000.0, clock=clock),
                          clock, 45)
    np.testing.assert_array_equal(slow, steps_only)
    opt, clock = make_opt(0.3), FakeClock(per_step=1.0)  # 20 s budget: half the steps
    fast = lrs_used_timed(opt, LinearWarmupCosineDecay(opt, 5, total_steps=40, total_seconds=20.0, clock=clock),
                          clock, 45)
    np.testing.assert_array_equal(fast[:5], steps_only[:5])  # the same warmup
    assert fast[5] == pytest.approx(0.3)  # f = f_w: the clock read 5 s after the warmup's 5 steps
    assert np.all(fast[6:20] < steps_only[6:20]) and fast[19] > 0.0 and np.all(fast[20:] == 0.0)


def test_time_budget_resumes_from_the_saved_warmup_fraction():
    """The clock is not saved; f_w is: a resumed run whose clock goes on from the saved time gets the same lrs."""
    def make(clock):
        opt = make_opt(0.3)
        return opt, LinearWarmupCosineDecay(opt, 3, total_seconds=30.0, clock=clock)

    clock = FakeClock(per_step=1.5)
    opt, sched = make(clock)
    straight = lrs_used_timed(opt, sched, clock, 20)
    clock = FakeClock(per_step=1.5)
    opt, sched = make(clock)
    first = lrs_used_timed(opt, sched, clock, 8)
    state = (opt.state_dict(), sched.state_dict())
    assert "clock" not in state[1] and state[1]["warmup_end"] == pytest.approx(4.5 / 30.0)
    resumed_clock = FakeClock(per_step=1.5)
    resumed_clock.seconds = clock.seconds
    opt, sched = make(resumed_clock)
    opt.load_state_dict(state[0])
    sched.load_state_dict(state[1])
    np.testing.assert_array_equal(np.concatenate([first, lrs_used_timed(opt, sched, resumed_clock, 12)]), straight)


def test_noam_follows_the_paper_from_step_one():
    opt = make_opt(123.0, groups=2)  # the optimizer's own lr is replaced
    d_model, warmup, factor = 512, 40, 2.0
    sched = NoamLR(opt, d_model=d_model, warmup=warmup, factor=factor)
    used = lrs_used(opt, sched, 200)
    n = np.arange(1, 201, dtype=np.float64)
    expected = factor * d_model**-0.5 * np.minimum(n**-0.5, n * warmup**-1.5)
    np.testing.assert_allclose(used[:, 0], expected, rtol=1e-13)
    np.testing.assert_allclose(used[:, 1], expected, rtol=1e-13)
    assert used[0, 0] == pytest.approx(factor * d_model**-0.5 * warmup**-1.5)  # set by the constructor
    assert int(np.argmax(used[:, 0])) + 1 == warmup
    assert used[:, 0].max() == pytest.approx(factor / math.sqrt(d_model * warmup))


def test_noam_drives_a_real_optimizer():
    p = Parameter(np.zeros(1, np.float32))
    opt = ta.optim.SGD([p], lr=1.0)
    sched = NoamLR(opt, d_model=4, warmup=2)
    for _ in range(3):
        p.grad = ta.ones(1)
        opt.step()
        sched.step()
    lrs = [0.5 * min(n**-0.5, n * 2**-1.5) for n in (1, 2, 3)]
    np.testing.assert_allclose(p.numpy(), [-sum(lrs)], rtol=1e-6)


@pytest.mark.parametrize("make", [
    lambda o: StepLR(o, step_size=2, gamma=0.5),
    lambda o: LinearWarmupCosineDecay(o, warmup_steps=3, total_steps=10, min_lr=0.001),
    lambda o: NoamLR(o, d_model=16, warmup=4),
    lambda o: LambdaLR(o, lambda e: 1.0 / (1 + e)),
], ids=["StepLR", "LinearWarmupCosineDecay", "NoamLR", "LambdaLR"])
def test_state_dict_resume_continues_the_same_schedule(make, tmp_path):
    pytest.importorskip("safetensors")
    opt = make_opt(0.2, groups=2)
    sched = make(opt)
    straight = lrs_used(opt, sched, 12)

    opt1 = make_opt(0.2, groups=2)
    sched1 = make(opt1)
    first = lrs_used(opt1, sched1, 5)
    ta.save({"optimizer": opt1.state_dict(), "scheduler": sched1.state_dict()}, tmp_path / "s.safetensors")
    ckpt = ta.load(tmp_path / "s.safetensors")
    opt2 = make_opt(0.2, groups=2)  # build fresh objects as a training script does, then restore them
    sched2 = make(opt2)
    opt2.load_state_dict(ckpt["optimizer"])
    sched2.load_state_dict(ckpt["scheduler"])
    rest = lrs_used(opt2, sched2, 7)
    np.testing.assert_array_equal(np.concatenate([first, rest]), straight)
    assert sched2.last_epoch == 12


def test_lambda_lr_state_dict_keeps_callable_objects_state():
    class Halve:
        def __init__(self):
            self.rate = 0.5

        def __call__(self, epoch):
            return self.rate**epoch

    opt = make_opt()
    fn = Halve()
    sched = LambdaLR(opt, fn)
    fn.rate = 0.25
    sd = sched.state_dict()
    assert sd["lr_lambdas"] == [{"rate": 0.25}]
    other = Halve()
    LambdaLR(make_opt(), other).load_state_dict(sd)
    assert other.rate == 0.25
    assert LambdaLR(make_opt(), lambda e: 1.0).state_dict()["lr_lambdas"] == [None]


def test_initial_lr_is_recorded_and_required_when_resuming():
    opt = make_opt(0.1)
    StepLR(opt, step_size=1, gamma=0.5)
    assert opt.param_groups[0]["initial_lr"] == 0.1
    with pytest.raises(KeyError, match="initial_lr"):
        StepLR(make_opt(0.1), step_size=1, last_epoch=4)
    resumed = StepLR(opt, step_size=1, gamma=0.5, last_epoch=2)  # the opt now has initial_lr
    assert resumed.get_last_lr() == [0.1 * 0.5**3]


@pytest.mark.parametrize("make, match", [
    (lambda o: StepLR(o, step_size=0), "step_size"),
    (lambda o: NoamLR(o, d_model=0, warmup=10), "d_model"),
    (lambda o: NoamLR(o, d_model=8, warmup=0), "warmup"),
    (lambda o: LinearWarmupCosineDecay(o, warmup_steps=5, total_steps=3), "warmup_steps"),
    (lambda o: LinearWarmupCosineDecay(o, warmup_steps=1, total_steps=3, min_lr=-1.0), "min_lr"),
    (lambda o: LinearWarmupCosineDecay(o, warmup_steps=1), "give a budget"),
    (lambda o: LinearWarmupCosineDecay(o, warmup_steps=1, total_seconds=60.0), "come with a clock"),
    (lambda o: LinearWarmupCosineDecay(o, warmup_steps=1, total_seconds=0.0, clock=lambda: 0.0), "total_seconds"),
    (lambda o: LambdaLR(o, [lambda e: 1.0, lambda e: 1.0]), "one per parameter group"),
])
def test_bad_arguments_raise_clear_errors(make, match):
    with pytest.raises(ValueError, match=match):
        make(make_opt())


def test_scheduler_needs_an_optimizer():
    with pytest.raises(TypeError, match="expected an Optimizer"):
        StepLR([0.1], step_size=1)


def test_parity_with_torch_lambda_and_step():
    torch = pytest.importorskip("torch")
    tp = torch.zeros(2, requires_grad=True)
    topt = torch.optim.SGD([tp], lr=0.3)
    tsched = torch.optim.lr_scheduler.StepLR(topt, step_size=3, gamma=0.5)
    opt = make_opt(0.3)
    sched = StepLR(opt, step_size=3, gamma=0.5)
    tl = torch.optim.SGD([torch.zeros(2, requires_grad=True)], lr=0.3)
    tlam = torch.optim.lr_scheduler.LambdaLR(tl, lambda e: 0.9**e)
    lopt = make_opt(0.3)
    lam = LambdaLR(lopt, lambda e: 0.9**e)
    for _ in range(10):
        assert sched.get_last_lr()[0] == pytest.approx(tsched.get_last_lr()[0], rel=1e-12)
        assert lam.get_last_lr()[0] == pytest.approx(tlam.get_last_lr()[0], rel=1e-12)
        for o in (topt, tl, opt, lopt):
            o.step()
        for s in (tsched, tlam, sched, lam):
            s.step()
