"""Helpers for the PyTorch parity tests: same weights into both frameworks, then compare outputs and the
gradients of every input and parameter. Only imported by tests that have already skipped without torch."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

import tinygrad_attn as ta


def copy_weights(ours: ta.nn.Module, theirs: Any) -> None:
    """Load our state dict into the torch module (strict: the key names must be the same)."""
    import torch

    ours_keys, theirs_keys = list(ours.state_dict()), list(theirs.state_dict())
    assert ours_keys == theirs_keys, f"state-dict keys differ:\n ours   {ours_keys}\n theirs {theirs_keys}"
    theirs.load_state_dict({k: torch.from_numpy(v.numpy().copy()) for k, v in ours.state_dict().items()})


def _floats(out: Any) -> list[Any]:
    """The floating-point tensors among a module's outputs (ours or torch's)."""
    items = out if isinstance(out, (tuple, list)) else (out,)
    return [o for o in items if o is not None and (o.is_floating_point() if hasattr(o, "is_floating_point")
                                                   else o.dtype.kind == "f")]


def check_parity(ours: ta.nn.Module, theirs: Any, run_ours: Callable[..., Any], run_theirs: Callable[..., Any],
                 inputs: dict[str, np.ndarray], rtol: float = 1e-4, atol: float = 1e-5, seed: int = 0) -> None:
    """Copy our weights into ``theirs``, run both on ``inputs`` (float arrays require grad), backpropagate
    the same random upstream gradient, and compare outputs, input gradients and all parameter gradients."""
    import torch

    copy_weights(ours, theirs)
    ta_in = {k: ta.tensor(v, requires_grad=v.dtype.kind == "f") for k, v in inputs.items()}
    th_in = {k: torch.tensor(v, requires_grad=v.dtype.kind == "f") for k, v in inputs.items()}
    outs_ours, outs_theirs = _floats(run_ours(**ta_in)), _floats(run_theirs(**th_in))
    assert len(outs_ours) == len(outs_theirs)
    rng = np.random.default_rng(seed)
    loss_ours, loss_theirs = 0, 0
    for o, t in zip(outs_ours, outs_theirs):
        assert tuple(o.shape) == tuple(t.shape), (o.shape, t.shape)
        np.testing.assert_allclose(o.numpy(), t.detach().numpy(), rtol=rtol, atol=atol, err_msg="forward output")
        g = rng.standard_normal(o.shape).astype(o.dtype)
        loss_ours = loss_ours + (o * ta.tensor(g)).sum()
        loss_theirs = loss_theirs + (t * torch.tensor(g)).sum()
    loss_ours.backward()
    loss_theirs.backward()
    for k in inputs:
        if th_in[k].grad is not None:
            np.testing.assert_allclose(ta_in[k].grad.numpy(), th_in[k].grad.numpy(), rtol=rtol, atol=atol,
                                       err_msg=f"gradient of input {k}")
    theirs_params = dict(theirs.named_parameters())
    ours_params = dict(ours.named_parameters())
    assert set(ours_params) == set(theirs_params)
    for name, p in ours_params.items():
        tp = theirs_params[name]
        if tp.grad is None:
            assert p.grad is None or not p.grad.numpy().any(), name
            continue
        np.testing.assert_allclose(p.grad.numpy(), tp.grad.numpy(), rtol=rtol, atol=atol,
                                   err_msg=f"gradient of parameter {name}")


def functional_call(module: ta.nn.Module, params: dict[str, ta.Tensor], *args: Any, **kwargs: Any) -> Any:
    """Run ``module`` with some parameters replaced by the given tensors (for gradcheck, which passes new
    tensors each call), then put the originals back."""
    saved = {}
    for name, t in params.items():
        owner = module.get_submodule(name.rpartition(".")[0])
        leaf = name.rpartition(".")[2]
        saved[name] = (owner, leaf, owner._parameters[leaf])
        owner._parameters[leaf] = t
    try:
        return module(*args, **kwargs)
    finally:
        for owner, leaf, p in saved.values():
            owner._parameters[leaf] = p
