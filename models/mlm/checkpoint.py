"""A trained BERT from a run directory or checkpoint file (the translator's checkpoint format, kind ``mlm``)."""

from __future__ import annotations

import os
from typing import Any

import tinygrad_attn as ta
from models.bert import BERT, build_bert
from models.mlm import config as cfg
from models.mlm.config import Config, ConfigError
from models.mlm.examples import check_vocab
from models.translator import checkpoints as ckpt
from models.translator.vocab import Vocab


def load_bert(path: str | os.PathLike[str], device: ta.Device | str = "cpu") -> tuple[BERT, Vocab, Config, Any]:
    """``(model, vocab, config, checkpoint)`` from a checkpoint file or a run directory (its best checkpoint,
    else the newest), the model in eval mode; ``CheckpointError`` when it is not a BERT run's."""
    checkpoint = ckpt.load_checkpoint(path)
    try:
        config = cfg.resolve(cfg.from_dict(checkpoint.config, where=f"{checkpoint.path} (its config)"))
    except ConfigError as e:
        raise ckpt.CheckpointError(f"{checkpoint.path} is not a BERT run's checkpoint: {e}") from None
    try:
        vocab = check_vocab(Vocab.from_bytes(checkpoint.vocab_bytes))
    except ValueError as e:
        raise ckpt.CheckpointError(f"{checkpoint.path}: {e}") from None
    model = build_bert(len(vocab), **config.model_hparams())
    try:
        model.load_state_dict(checkpoint.model)
    except RuntimeError as e:
        raise ckpt.CheckpointError(f"{checkpoint.path} does not fit the model its config describes: {e}") from None
    model.to(device)
    model.eval()
    return model, vocab, config, checkpoint
