"""A toy regression task and a two-layer MLP made of bare Parameters, for the optimizer tests.

The task: y = sin(2·x0) + x1² - 0.5·x2 on points drawn uniformly from [-1, 1]³. A constant
predictor scores a mean squared error of about 0.75; a trained 3-32-1 tanh MLP gets far below 0.05.
"""

from __future__ import annotations

import numpy as np

import tinygrad_attn as ta
from tinygrad_attn.nn.parameter import Parameter


def regression_data(seed: int = 0, n: int = 256) -> tuple[ta.Tensor, ta.Tensor]:
    rng = np.random.default_rng(seed)
    x = rng.uniform(-1, 1, size=(n, 3)).astype(np.float32)
    y = (np.sin(2 * x[:, 0]) + x[:, 1] ** 2 - 0.5 * x[:, 2]).astype(np.float32)[:, None]
    return ta.tensor(x), ta.tensor(y)


def mlp_params(seed: int = 0, hidden: int = 32) -> list[Parameter]:
    rng = np.random.default_rng(seed)
    w1 = rng.normal(0, 1 / np.sqrt(3), size=(3, hidden)).astype(np.float32)
    w2 = rng.normal(0, 1 / np.sqrt(hidden), size=(hidden, 1)).astype(np.float32)
    return [Parameter(w1), Parameter(np.zeros(hidden, np.float32)), Parameter(w2), Parameter(np.zeros(1, np.float32))]


def mlp_loss(params: list[Parameter], x: ta.Tensor, y: ta.Tensor) -> ta.Tensor:
    w1, b1, w2, b2 = params
    pred = (x @ w1 + b1).tanh() @ w2 + b2
    return ((pred - y) ** 2).mean()


def train(params: list[Parameter], opt: ta.optim.Optimizer, steps: int, x: ta.Tensor, y: ta.Tensor) -> float:
    """Full-batch training; returns the last loss."""
    loss = None
    for _ in range(steps):
        opt.zero_grad()
        loss = mlp_loss(params, x, y)
        loss.backward()
        opt.step()
    return float(loss.item())
