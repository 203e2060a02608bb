"""Learning-rate schedules: set each parameter group's ``lr`` as training goes on.

A scheduler follows PyTorch's protocol. Constructing it records each group's starting lr as
``group["initial_lr"]`` (kept in ``base_lrs``) and sets the lr for the first step; then the loop calls
``sched.step()`` once after each ``opt.step()``::

    sched = NoamLR(opt, d_model=512, warmup=4000)   # opt's lr is now the lr of step 1
    for batch in batches:
        ...; opt.step(); sched.step()               # after k calls, the lr of step k + 1

``last_epoch`` counts the ``sched.step()`` calls (0 after construction). Every schedule here is a
closed-form function of ``last_epoch``, so ``state_dict()`` / ``load_state_dict()`` resume it exactly;
the one exception, ``LinearWarmupCosineDecay`` with a budget in seconds, also reads a clock.
"""

from __future__ import annotations

import math
import types
from collections.abc import Callable, Sequence
from typing import Any

from .optimizer import Optimizer


class LRScheduler:
    """Base class: subclasses define ``get_lr()``, the lrs of the groups for the current ``last_epoch``."""

    def __init__(self, optimizer: Optimizer, last_epoch: int = -1) -> None:
        if not isinstance(optimizer, Optimizer):
            raise TypeError(f"{type(self).__name__}: expected an Optimizer, got {type(optimizer).__name__}")
        self.optimizer = optimizer
        if last_epoch == -1:
            for group in optimizer.param_groups:
                group.setdefault("initial_lr", group["lr"])
        else:
            for i, group in enumerate(optimizer.param_groups):
                if "initial_lr" not in group:
                    raise KeyError(f"{type(self).__name__}: last_epoch={last_epoch} means resuming, but "
                                   f"param_groups[{i}] has no 'initial_lr' (load the optimizer's state dict first)")
        self.base_lrs: list[float] = [group["initial_lr"] for group in optimizer.param_groups]
        self.last_epoch = last_epoch
        self._step_count = 0
        self._last_lr: list[float] = []
        self.step()

    def get_lr(self) -> list[float]:
        """The lr of each parameter group at the current ``last_epoch``."""
        raise NotImplementedError

    def step(self) -> None:
        """Advance one step (call it after ``optimizer.step()``) and write the new lrs into the groups."""
        self._step_count += 1
        self.last_epoch += 1
        self._last_lr = [float(lr) for lr in self.get_lr()]
        for group, lr in zip(self.optimizer.param_groups, self._last_lr):
            group["lr"] = lr

    def get_last_lr(self) -> list[float]:
        """The lrs the last ``step()`` (or the constructor) set."""
        return list(self._last_lr)

    def state_dict(self) -> dict[str, Any]:
        """Everything but the optimizer (which has its own state dict)."""
        return {k: v for k, v in self.__dict__.items() if k != "optimizer"}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore ``state_dict()``. The optimizer's lrs are restored by the optimizer's own state dict."""
        self.__dict__.update(state_dict)
        self.base_lrs, self._last_lr = list(self.base_lrs), list(self._last_lr)


class LambdaLR(LRScheduler):
    """``lr = initial_lr · lr_lambda(last_epoch)``; one function, or one per parameter group.

    As in PyTorch, ``state_dict()`` stores the attributes of callable objects but not plain functions
    or lambdas: pass the same functions again when resuming.
    """

    def __init__(self, optimizer: Optimizer, lr_lambda: Callable[[int], float] | Sequence[Callable[[int], float]],
                 last_epoch: int = -1) -> None:
        n = len(optimizer.param_groups)
        if isinstance(lr_lambda, (list, tuple)):
            if len(lr_lambda) != n:
                raise ValueError(f"LambdaLR: expected {n} lr_lambdas (one per parameter group), got {len(lr_lambda)}")
            self.lr_lambdas = list(lr_lambda)
        else:
            self.lr_lambdas = [lr_lambda] * n
        super().__init__(optimizer, last_epoch)

    def get_lr(self) -> list[float]:
        return [base * fn(self.last_epoch) for base, fn in zip(self.base_lrs, self.lr_lambdas)]

    def state_dict(self) -> dict[str, Any]:
        state = {k: v for k, v in self.__dict__.items() if k not in ("optimizer", "lr_lambdas")}
        state["lr_lambdas"] = [None if isinstance(fn, types.FunctionType) else dict(fn.__dict__)
                               for fn in self.lr_lambdas]
        return state

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        state = dict(state_dict)
        saved = state.pop("lr_lambdas", [])
        super().load_state_dict(state)
        for fn, attrs in zip(self.lr_lambdas, saved):
            if attrs is not None:
                fn.__dict__.update(attrs)


class StepLR(LRScheduler):
    """``lr = initial_lr · gamma^(last_epoch // step_size)``: decay by ``gamma`` every ``step_size`` steps."""

    def __init__(self, optimizer: Optimizer, step_size: int, gamma: float = 0.1, last_epoch: int = -1) -> None:
        if not isinstance(step_size, int) or step_size < 1:
            raise ValueError(f"StepLR: step_size must be a positive int, got {step_size!r}")
        self.step_size, self.gamma = step_size, gamma
        super().__init__(optimizer, last_epoch)

    def get_lr(self) -> list[float]:
        return [base * self.gamma ** (self.last_epoch // self.step_size) for base in self.base_lrs]


class LinearWarmupCosineDecay(LRScheduler):
    """Linear warmup to the initial lr, then cosine decay to ``min_lr`` over the rest of a budget of steps,
    of seconds, or of both (whichever runs out first).

    The n-th ``optimizer.step()`` (n = ``last_epoch + 1``, so n = 1 right after construction) uses::

        lr(n) = initial_lr · n / warmup_steps                       for n ≤ warmup_steps
        lr(n) = min_lr + (initial_lr - min_lr) · (1 + cos(π·p)) / 2   after it, p = (f - f_w) / (1 - f_w)
        lr(n) = min_lr                                              once f ≥ 1

    where f is the fraction of the budget used, ``max(n / total_steps, clock() / total_seconds)`` (a term
    without its budget is left out; the clock is read when the lr of step n is set, after n - 1 steps), and
    f_w its value when the warmup ended. With steps alone this is
    p = (n - warmup) / (total - warmup): the lr peaks at step ``warmup_steps`` and reaches ``min_lr`` at step
    ``total_steps`` (the first case wins when ``warmup_steps == total_steps``: no decay, then ``min_lr``).

    A budget in seconds needs ``clock``, a function that returns the seconds spent so far (training time,
    say, leaving evaluation out): the decay then fits whatever number of steps the time allows, on a fast
    machine or a slow one. Such an lr depends on measured time, so it is not reproducible to the bit; the
    clock is not saved with ``state_dict()`` (f_w is), so pass a clock that resumes its count when resuming.
    """

    def __init__(self, optimizer: Optimizer, warmup_steps: int, total_steps: int | None = None, min_lr: float = 0.0,
                 last_epoch: int = -1, total_seconds: float | None = None,
                 clock: Callable[[], float] | None = None) -> None:
        name = "LinearWarmupCosineDecay"
        if total_steps is None and total_seconds is None:
            raise ValueError(f"{name}: give a budget, total_steps or total_seconds (or both)")
        if not isinstance(warmup_steps, int) or warmup_steps < 0 or (total_steps is not None and not (
                isinstance(total_steps, int) and 1 <= total_steps and warmup_steps <= total_steps)):
            raise ValueError(f"{name}: need integers 0 <= warmup_steps <= total_steps and total_steps"
                             f" >= 1, got warmup_steps={warmup_steps!r}, total_steps={total_steps!r}")
        if total_seconds is not None and not (total_seconds > 0 and callable(clock)):
            raise ValueError(f"{name}: total_seconds must be > 0 and come with a clock (a function returning the "
                             f"seconds spent), got total_seconds={total_seconds!r}, clock={clock!r}")
        if min_lr < 0:
            raise ValueError(f"{name}: min_lr must be >= 0, got {min_lr!r}")
        self.warmup_steps, self.total_steps, self.total_seconds, self.min_lr = (warmup_steps, total_steps,
                                                                               total_seconds, min_lr)
        self.clock = clock
        # f_w, the budget fraction used when the warmup ended: known now for steps alone (so the lr stays a
        # closed form of last_epoch, and last_epoch=k resumes it), read off the clock at the time for seconds.
        self.warmup_end: float | None = (warmup_steps / total_steps if total_steps is not None and total_seconds is None
                                         else None)
        super().__init__(optimizer, last_epoch)

    def budget_used(self) -> float:
        """f: the fraction of the budget used at optimizer step ``last_epoch + 1``."""
        n = self.last_epoch + 1
        f = n / self.total_steps if self.total_steps is not None else 0.0
        if self.total_seconds is not None:
            assert self.clock is not None  # __init__ requires a clock with total_seconds
            f = max(f, self.clock() / self.total_seconds)
        return f

    def step(self) -> None:
        if self.warmup_end is None and self.last_epoch + 2 > self.warmup_steps:  # step warmup_steps is done
            self.warmup_end = self.budget_used()
        super().step()

    def get_lr(self) -> list[float]:
        n, warmup = self.last_epoch + 1, self.warmup_steps
        if n <= warmup:
            return [base * n / warmup for base in self.base_lrs]
        f, f_w = self.budget_used(), self.warmup_end
        assert f_w is not None  # step() records it when the warmup ends
        if f >= 1 or f_w >= 1:
            return [self.min_lr for _ in self.base_lrs]
        cosine = 0.5 * (1 + math.cos(math.pi * max(f - f_w, 0.0) / (1 - f_w)))
        return [self.min_lr + (base - self.min_lr) * cosine for base in self.base_lrs]

    def state_dict(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if k not in ("optimizer", "clock")}


class NoamLR(LRScheduler):
    """The schedule of "Attention Is All You Need" (section 5.3), often called Noam::

        lr(n) = factor · d_model^-0.5 · min(n^-0.5, n · warmup^-1.5)

    a linear rise for ``warmup`` steps, then decay as 1/sqrt(n); the peak, at n = warmup, is
    ``factor / sqrt(d_model · warmup)``. n is the optimizer step number, counted from 1: constructing the
    scheduler sets the lr of step 1, and after k ``sched.step()`` calls the lr is lr(k + 1)
    (n = ``last_epoch + 1``). The lr is absolute: the optimizer's own lr is replaced (the paper used
    ``factor=1``, ``d_model=512``, ``warmup=4000``, with Adam betas (0.9, 0.98), eps 1e-9).
    """

    def __init__(self, optimizer: Optimizer, d_model: int, warmup: int, factor: float = 1.0,
                 last_epoch: int = -1) -> None:
        if d_model <= 0 or warmup <= 0 or factor <= 0:
            raise ValueError(f"NoamLR: d_model, warmup and factor must be > 0, got d_model={d_model!r}, "
                             f"warmup={warmup!r}, factor={factor!r}")
        self.d_model, self.warmup, self.factor = d_model, warmup, factor
        super().__init__(optimizer, last_epoch)

    def get_lr(self) -> list[float]:
        n = self.last_epoch + 1
        lr = self.factor * self.d_model**-0.5 * min(n**-0.5, n * self.warmup**-1.5)
        return [lr for _ in self.base_lrs]
