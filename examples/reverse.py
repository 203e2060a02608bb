"""A small Transformer learns to reverse sequences: the paper's encoder-decoder on a task made here.

The first thing to run after ``train_mlp.py``. The task: read a sequence of random symbols and write it
back to front. Nothing is downloaded and it trains in seconds on a CPU. Reversal cannot be learned one
position at a time: output i must read input L-1-i, so the model succeeds only if attention routes
information between positions.

The model is ``torch.nn.Transformer`` code with ``ta`` for ``torch``: embeddings plus the paper's
sinusoidal positions, ``nn.Transformer`` (encoder, then a decoder that attends to the encoder's output
through a causal mask), and a linear layer to the symbols. Training uses teacher forcing: the decoder reads
``<bos>`` and the right answer shifted by one, and learns to predict the next symbol everywhere at once.
Testing decodes greedily, one symbol at a time from ``<bos>``, as a translator does.

Run it with ``python examples/reverse.py``: it prints the loss falling, then the accuracy on fresh
sequences and a few of them reversed.
"""

from __future__ import annotations

import math

import numpy as np

import tinygrad_attn as ta
import tinygrad_attn.functional as F
from tinygrad_attn import nn

SYMBOLS = 8  # the symbols 0..7 ...
BOS = SYMBOLS  # ... and a start token for the decoder
LENGTH = 6


class Reverser(nn.Module):
    def __init__(self, d_model: int = 32, nhead: int = 4, layers: int = 2) -> None:
        super().__init__()
        self.d_model = d_model
        self.embed = nn.Embedding(SYMBOLS + 1, d_model)  # one table for source and target symbols
        self.positions = nn.PositionalEncoding(d_model, dropout=0.0, batch_first=True)
        self.transformer = nn.Transformer(d_model, nhead, num_encoder_layers=layers, num_decoder_layers=layers,
                                          dim_feedforward=4 * d_model, dropout=0.0, batch_first=True)
        self.out = nn.Linear(d_model, SYMBOLS)

    def embed_positions(self, x: ta.Tensor) -> ta.Tensor:
        """(batch, length) symbols -> (batch, length, d_model), scaled by sqrt(d_model) as in the paper."""
        return self.positions(self.embed(x) * math.sqrt(self.d_model))

    def forward(self, src: ta.Tensor, tgt_in: ta.Tensor) -> ta.Tensor:
        """Logits (batch, target length, SYMBOLS) for the symbol after each position of ``tgt_in``."""
        causal = nn.Transformer.generate_square_subsequent_mask(tgt_in.shape[1])  # position i sees 0..i
        h = self.transformer(self.embed_positions(src), self.embed_positions(tgt_in), tgt_mask=causal)
        return self.out(h)

    @ta.no_grad()
    def reverse(self, src: ta.Tensor) -> np.ndarray:
        """Greedy decoding: start from <bos>, append the most likely next symbol, LENGTH times."""
        out = np.full((src.shape[0], 1), BOS)
        for _ in range(src.shape[1]):
            logits = self(src, ta.tensor(out))
            out = np.concatenate([out, logits[:, -1].argmax(-1).numpy()[:, None]], axis=1)
        return out[:, 1:]


def batch(rng: np.random.Generator, size: int) -> tuple[ta.Tensor, ta.Tensor, ta.Tensor]:
    """Random sequences, the decoder's input (<bos> + the reversal without its last symbol), the target."""
    src = rng.integers(0, SYMBOLS, size=(size, LENGTH))
    tgt = np.ascontiguousarray(src[:, ::-1])
    tgt_in = np.concatenate([np.full((size, 1), BOS), tgt[:, :-1]], axis=1)
    return ta.tensor(src), ta.tensor(tgt_in), ta.tensor(tgt)


def main(steps: int = 600, seed: int = 0) -> float:
    """Train for ``steps`` steps, print progress and examples; return the per-symbol accuracy of greedy
    decoding on 500 fresh sequences (chance: 1 / SYMBOLS)."""
    ta.manual_seed(seed)
    rng = np.random.default_rng(seed)
    model = Reverser()
    optimizer = ta.optim.Adam(model.parameters(), lr=3e-3)

    for step in range(1, steps + 1):
        src, tgt_in, tgt = batch(rng, 64)
        loss = F.cross_entropy(model(src, tgt_in), tgt)  # classes in the last dimension
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if step % 50 == 0:
            print(f"step {step:4d}  loss {loss.item():.4f}")

    model.eval()
    src, _, tgt = batch(rng, 500)
    predicted = model.reverse(src)
    correct = predicted == tgt.numpy()
    accuracy = float(correct.mean())
    print(f"greedy decoding of 500 new sequences: {accuracy:.1%} of symbols right, "
          f"{correct.all(axis=1).mean():.1%} of sequences (chance: {1 / SYMBOLS:.1%} of symbols)")
    for s, p in zip(src.numpy()[:3], predicted[:3]):
        print(f"  {' '.join(map(str, s))}  ->  {' '.join(map(str, p))}")
    return accuracy


if __name__ == "__main__":
    main()
