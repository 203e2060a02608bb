"""Train a small MLP on a toy task, start to finish, in about 40 lines you can read in five minutes.

The task: classify points in the plane into three interleaved spirals (data made here, no download).
Run it with ``python examples/train_mlp.py``; it prints the loss falling and the final accuracy.
Next: ``examples/reverse.py``, a small Transformer.
"""

from __future__ import annotations

import math

import numpy as np

import tinygrad_attn as ta
from tinygrad_attn import nn


def make_spirals(n_per_class: int = 200, classes: int = 3, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Points on ``classes`` noisy spiral arms; the label is the arm."""
    rng = np.random.default_rng(seed)
    radius = np.tile(np.linspace(0.05, 1.0, n_per_class), classes)
    label = np.repeat(np.arange(classes), n_per_class)
    angle = label * 2 * math.pi / classes + radius * 4 + rng.normal(0, 0.15, radius.size)
    points = np.stack([radius * np.sin(angle), radius * np.cos(angle)], axis=1)
    return points.astype(np.float32), label.astype(np.int64)


def main(steps: int = 500) -> float:
    ta.manual_seed(0)
    x_np, y_np = make_spirals()
    x, y = ta.tensor(x_np), ta.tensor(y_np)

    model = nn.Sequential(nn.Linear(2, 64), nn.ReLU(), nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 3))
    optimizer = ta.optim.Adam(model.parameters(), lr=1e-2)
    loss_fn = nn.CrossEntropyLoss()

    for step in range(1, steps + 1):
        logits = model(x)                 # forward: builds the graph
        loss = loss_fn(logits, y)
        optimizer.zero_grad()
        loss.backward()                   # backward: fills p.grad for every parameter
        optimizer.step()                  # update the parameters in place
        if step % 100 == 0:
            print(f"step {step:4d}  loss {loss.item():.4f}")

    with ta.no_grad():
        accuracy = (model(x).argmax(dim=1) == y).float().mean().item()
    print(f"training accuracy: {accuracy:.1%}")
    return accuracy


if __name__ == "__main__":
    main()
