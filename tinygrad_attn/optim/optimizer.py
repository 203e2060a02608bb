"""Optimizer: what every optimizer shares (parameter groups, per-parameter state, state dicts).

An optimizer holds *parameter groups*: lists of parameters, each list with its own hyperparameters
(``lr``, ``weight_decay``, ...). ``step()`` visits every parameter that has a gradient and lets the
subclass update it, in place, with ``_update(param, grad, state, group)``, where ``param`` and ``grad`` are
the raw NumPy/CuPy arrays and ``state`` is the parameter's own dict (momentum buffers, step counts).

    opt = ta.optim.Adam([{"params": model.encoder.parameters()},
                         {"params": model.head.parameters(), "lr": 1e-4}], lr=3e-4)
    for x, y in batches:
        opt.zero_grad()
        loss_fn(model(x), y).backward()
        opt.step()

``state_dict()`` / ``load_state_dict()`` use PyTorch's layout, parameters replaced by their position
(counted across groups in order), so that a run resumes with exactly the same next update::

    {"state": {0: {"step": 3, "exp_avg": Tensor, ...}, ...},
     "param_groups": [{"lr": 0.001, "betas": (0.9, 0.999), ..., "params": [0, 1, 2]}, ...]}

Float16 parameters (after ``model.half()``) are updated in float32: the optimizer keeps a float32 master
copy of each (state ``"master_param"``), its state in float32, and the gradient converted to float32; the
update runs on the master copy, which is then written back into the parameter, rounded to float16. So a
tiny eps (1e-9) or a squared gradient (g² of 1e-4 is 1e-8) does not round to 0, and updates smaller than
float16's spacing accumulate instead of being lost. The master copy is the truth from the first step on:
a float16 parameter changed by hand afterwards is overwritten at the next step (load its optimizer state,
or make a new optimizer).
"""

from __future__ import annotations

import numbers
from collections import defaultdict
from collections.abc import Callable, Iterable
from typing import Any

import numpy as np

from ..autograd import enable_grad, no_grad
from ..backend import Device, array_module, device_of, on_device_of, to_device
from ..tensor import Tensor

ParamsT = Iterable[Tensor] | Iterable[dict[str, Any]]


class Optimizer:
    """Base class of optimizers: ``Optimizer(params, defaults)``.

    ``params`` is an iterable of tensors, or of dicts (parameter groups) holding ``"params"`` plus any
    hyperparameters that override ``defaults`` for that group.
    """

    def __init__(self, params: ParamsT, defaults: dict[str, Any]) -> None:
        self.defaults = dict(defaults)
        self.state: defaultdict[Tensor, dict[str, Any]] = defaultdict(dict)
        self.param_groups: list[dict[str, Any]] = []
        self._scratch: dict[tuple[Any, Any, Any], Any] = {}  # one flat work buffer per (slot, dtype, device)
        if isinstance(params, (Tensor, dict)):
            raise TypeError(f"{self._name}: params must be an iterable of Tensors or of dicts (parameter groups), "
                            f"got a single {type(params).__name__}; wrap it in a list")
        if isinstance(params, (set, frozenset)):
            raise TypeError(self._unordered_message)
        groups: list[Any] = list(params)  # dicts or Tensors: add_param_group checks each group
        if not groups:
            raise ValueError(f"{self._name} got an empty parameter list")
        if not isinstance(groups[0], dict):
            groups = [{"params": groups}]
        for group in groups:
            self.add_param_group(group)

    @property
    def _name(self) -> str:
        return type(self).__name__

    @property
    def _unordered_message(self) -> str:
        return (f"{self._name}: parameters must be in an ordered collection (a list), not a set: the order of a "
                "set changes between runs, and state dicts match parameters by position")

    # ---- parameter groups ------------------------------------------------------------------------------
    def add_param_group(self, param_group: dict[str, Any]) -> None:
        """Add a group of parameters with its own hyperparameters (missing ones come from ``defaults``)."""
        if not isinstance(param_group, dict):
            raise TypeError(f"{self._name}.add_param_group: expected a dict, got {type(param_group).__name__}")
        if "params" not in param_group:
            raise ValueError(f"{self._name}.add_param_group: the group has no 'params' entry")
        params = param_group["params"]
        if isinstance(params, Tensor):
            params = [params]
        elif isinstance(params, (set, frozenset)):
            raise TypeError(self._unordered_message)
        else:
            params = list(params)
        seen: set[int] = set()
        for i, p in enumerate(params):
            if not isinstance(p, Tensor):
                raise TypeError(f"{self._name}: parameter {i} of a group is a {type(p).__name__}, not a Tensor")
            if not p.is_leaf:
                raise ValueError(f"{self._name}: can't optimize a non-leaf tensor (parameter {i}, shape "
                                 f"{tuple(p.shape)}): optimize the leaf it was computed from")
            if p.dtype.kind != "f":
                raise TypeError(f"{self._name}: parameter {i} has dtype {p.dtype}; only floating-point tensors "
                                "can be optimized")
            if id(p) in seen:
                raise ValueError(f"{self._name}: parameter {i} (shape {tuple(p.shape)}) appears twice in a group")
            seen.add(id(p))
        group = {**self.defaults, **param_group, "params": params}
        self._check_hyperparameters(group)
        for other in self.param_groups:
            if any(id(p) in seen for p in other["params"]):
                raise ValueError(f"{self._name}: some parameters appear in more than one parameter group")
        self.param_groups.append(group)

    def _check_hyperparameters(self, group: dict[str, Any]) -> None:
        """Raise ValueError for a bad hyperparameter of ``group`` (subclasses add their own checks)."""
        lr = group.get("lr", 0.0)
        if not isinstance(lr, numbers.Real) or lr < 0:
            raise ValueError(f"{self._name}: invalid learning rate lr={lr!r} (must be a number >= 0)")

    # ---- the update -------------------------------------------------------------------------------------
    def zero_grad(self, set_to_none: bool = True) -> None:
        """Forget the gradients: set ``.grad`` to None (default), or fill it with zeros."""
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                if set_to_none:
                    p.grad = None
                elif p.grad.grad_fn is None and getattr(p.grad.data.flags, "writeable", True):
                    with on_device_of(p.grad.data):
                        p.grad.data.fill(0)
                    p.grad._version.value += 1
                else:  # a graph-attached or read-only gradient: replace it rather than write into it
                    p.grad = Tensor._make(array_module(p.grad.data).zeros_like(p.grad.data))

    def step(self, closure: Callable[[], Any] | None = None) -> Any:
        """Update every parameter that has a gradient (parameters whose ``.grad`` is None are skipped).

        ``closure``, if given, recomputes the loss (with gradients) and is called first; its result is
        returned.
        """
        loss = None
        if closure is not None:
            with enable_grad():
                loss = closure()
        with no_grad():
            for group in self.param_groups:
                for i, p in enumerate(group["params"]):
                    g = p.grad
                    if g is None:
                        continue
                    self._check_grad(i, p, g)
                    if type(p.data) is np.ndarray:
                        self._update_param(p.data, g.data, self.state[p], group)
                    else:  # on the parameter's GPU, not the current one
                        with on_device_of(p.data):
                            self._update_param(p.data, g.data, self.state[p], group)
                    p._version.value += 1  # graphs that saved this parameter must not backward through it
        return loss

    def _update_param(self, param: Any, grad: Any, state: dict[str, Any], group: dict[str, Any]) -> None:
        """``_update`` on the parameter itself, or, for a float16 one, on its float32 master copy (then
        written back, rounded)."""
        if param.dtype != np.float16:
            self._update(param, grad, state, group)
            return
        xp = array_module(param)
        master = state.get("master_param")
        if master is None:
            master = state["master_param"] = Tensor._make(param.astype(np.float32))
        grad32 = self._scratch_like(grad, dtype=np.float32, slot="grad")
        xp.copyto(grad32, grad)
        self._update(master.data, grad32, state, group)
        xp.copyto(param, master.data, casting="same_kind")

    def _update(self, param: Any, grad: Any, state: dict[str, Any], group: dict[str, Any]) -> None:
        """Update the array ``param`` in place from ``grad``; ``state`` is this parameter's own dict."""
        raise NotImplementedError

    def _check_grad(self, i: int, p: Tensor, g: Tensor) -> None:
        if g.shape != p.shape or g.dtype != p.dtype or type(g.data) is not type(p.data):
            raise RuntimeError(
                f"{self._name}.step: parameter {i} of its group is {p.dtype} {tuple(p.shape)} on {p.device}, "
                f"but its grad is {g.dtype} {tuple(g.shape)} on {g.device}; they must match")

    def _scratch_like(self, a: Any, dtype: Any = None, slot: str = "work") -> Any:
        """A work array shaped like ``a`` (``a``'s dtype unless ``dtype`` is given; ``a``'s device), reused
        across parameters and steps.

        One flat buffer per (slot, dtype, device), as large as the largest parameter seen, so that a step
        allocates nothing once the first has run.
        """
        dtype = a.dtype if dtype is None else np.dtype(dtype)
        key = (slot, dtype, device_of(a))
        buf = self._scratch.get(key)
        if buf is None or buf.size < a.size:
            buf = array_module(a).empty_like(a, dtype=dtype, shape=(a.size,))
            self._scratch[key] = buf
        return buf[: a.size].reshape(a.shape)

    @staticmethod
    def _regularized_grad(grad: Any, param: Any, weight_decay: float, maximize: bool, out: Any) -> Any:
        """ĝ = ±g + λ·θ (L2 weight decay folded into the gradient; minus when maximizing).

        Returns ``grad`` itself when there is nothing to add, else writes ĝ into ``out`` and returns it.
        """
        if not weight_decay and not maximize:
            return grad
        xp = array_module(grad)
        if weight_decay:
            xp.multiply(param, weight_decay, out=out)
            (xp.subtract if maximize else xp.add)(out, grad, out=out)
        else:
            xp.negative(grad, out=out)
        return out

    # ---- state dicts ------------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """``{"state": {index: {...}}, "param_groups": [{..., "params": [indices]}]}`` as in PyTorch.

        Parameters are replaced by their position, counted across the groups in order. The state
        tensors are the optimizer's own (not copies, as in PyTorch): ``ta.save`` it, or copy it if you
        keep it in memory while training goes on.
        """
        index: dict[int, int] = {}
        groups = []
        for group in self.param_groups:
            packed = {k: v for k, v in group.items() if k != "params"}
            packed["params"] = []
            for p in group["params"]:
                index.setdefault(id(p), len(index))
                packed["params"].append(index[id(p)])
            groups.append(packed)
        state = {index[id(p)]: dict(s) for p, s in self.state.items() if id(p) in index and s}
        return {"state": dict(sorted(state.items())), "param_groups": groups}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore hyperparameters and state from ``state_dict()`` (parameters matched by position).

        State tensors are copied onto each parameter's device; floating ones take the parameter's dtype
        (float32 for a float16 parameter, whose state and master copy are float32).
        """
        if not isinstance(state_dict, dict) or "state" not in state_dict or "param_groups" not in state_dict:
            raise ValueError(f"{self._name}.load_state_dict: expected a dict with 'state' and 'param_groups' "
                             "(what state_dict() returns)")
        saved_groups = state_dict["param_groups"]
        if len(saved_groups) != len(self.param_groups):
            raise ValueError(f"{self._name}.load_state_dict: the state dict has {len(saved_groups)} parameter "
                             f"groups, this optimizer has {len(self.param_groups)}")
        by_index: dict[int, Tensor] = {}
        for g, (group, saved) in enumerate(zip(self.param_groups, saved_groups)):
            if len(saved["params"]) != len(group["params"]):
                raise ValueError(f"{self._name}.load_state_dict: parameter group {g} has {len(saved['params'])} "
                                 f"parameters in the state dict but {len(group['params'])} in this optimizer")
            by_index.update(zip((int(i) for i in saved["params"]), group["params"]))

        state: defaultdict[Tensor, dict[str, Any]] = defaultdict(dict)
        for key, values in state_dict["state"].items():
            if int(key) not in by_index:
                raise ValueError(f"{self._name}.load_state_dict: state for parameter {key}, which no group lists")
            p = by_index[int(key)]
            state[p] = {name: self._state_value(p, int(key), name, v) for name, v in values.items()}

        new_groups = []
        for group, saved in zip(self.param_groups, saved_groups):
            new_group = {**group, **{k: v for k, v in saved.items() if k != "params"}, "params": group["params"]}
            self._check_hyperparameters(new_group)
            new_groups.append(new_group)
        self.param_groups, self.state = new_groups, state

    def _state_value(self, p: Tensor, index: int, name: str, value: Any) -> Any:
        """A private copy of a loaded state entry, on ``p``'s device (and dtype, if it is floating)."""
        if not isinstance(value, Tensor) and not hasattr(value, "__array_priority__"):
            return value  # numbers (the step count), None, ...
        if name == "step":  # PyTorch keeps the step count in a tensor; we keep an int
            return int(to_device(value.data if isinstance(value, Tensor) else value, Device("cpu")).item())
        arr = to_device(value.data if isinstance(value, Tensor) else value, p.device)
        if arr.dtype.kind == "f" and arr.shape != p.shape:
            raise ValueError(f"{self._name}.load_state_dict: state '{name}' of parameter {index} has shape "
                             f"{tuple(arr.shape)}, but the parameter has shape {tuple(p.shape)}")
        state_dtype = np.dtype(np.float32) if p.dtype == np.float16 else p.dtype
        with on_device_of(arr):
            return Tensor._make(arr.astype(state_dtype if arr.dtype.kind == "f" else arr.dtype, copy=True))

    def __repr__(self) -> str:
        lines = [f"{self._name} ("]
        for i, group in enumerate(self.param_groups):
            lines.append(f"Parameter Group {i}")
            lines += [f"    {k}: {v}" for k, v in sorted(group.items()) if k != "params"]
        return "\n".join([*lines, ")"])
