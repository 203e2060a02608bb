"""A small attention model built from ta.nn learns a task the test generates: reversing a sequence.

Reversal cannot be solved position by position: output i must read input L-1-i, so the model only
succeeds if attention (with the learned position embeddings) routes information between positions.
"""

import numpy as np

import tinygrad_attn as ta
from tinygrad_attn import nn

VOCAB, LENGTH = 6, 6


class Reverser(nn.Module):
    def __init__(self, d_model: int = 32) -> None:
        super().__init__()
        self.tokens = nn.Embedding(VOCAB, d_model)
        self.positions = nn.Embedding(LENGTH, d_model)
        self.encoder = nn.TransformerEncoder(
            nn.TransformerEncoderLayer(d_model, nhead=2, dim_feedforward=64, dropout=0.0, batch_first=True), 2
        )
        self.out = nn.Linear(d_model, VOCAB)

    def forward(self, x: ta.Tensor) -> ta.Tensor:
        h = self.tokens(x) + self.positions(ta.arange(LENGTH))
        return self.out(self.encoder(h))


def _accuracy(model: Reverser, rng: np.random.Generator) -> float:
    x = rng.integers(0, VOCAB, size=(256, LENGTH))
    with ta.no_grad():
        pred = model(ta.tensor(x)).argmax(-1).numpy()
    return float((pred == x[:, ::-1]).mean())


def test_attention_model_learns_to_reverse():
    ta.manual_seed(0)
    rng = np.random.default_rng(0)
    model = Reverser()
    opt = ta.optim.Adam(model.parameters(), lr=3e-3)
    before = _accuracy(model, rng)
    for _ in range(400):
        x = rng.integers(0, VOCAB, size=(64, LENGTH))
        loss = ta.F.cross_entropy(model(ta.tensor(x)), ta.tensor(np.ascontiguousarray(x[:, ::-1])))
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < 0.1
    assert before < 0.4 and _accuracy(model, rng) > 0.98
