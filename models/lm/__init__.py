"""Training and using a GPT language model (models/gpt.py) on Tiny Shakespeare: ``python -m models.lm``.

- ``data.py``: find / download / verify the text, nanoGPT's 90/10 split, random contiguous blocks;
- ``vocab.py``: characters (nanoGPT's ``shakespeare_char``) or SentencePiece BPE pieces;
- ``config.py``: the experiment config (model, data, train sections) and its checks;
- ``train.py``: the training loop (AdamW, warmup + cosine, clipping, evaluation, checkpoints, exact resume);
- ``__main__.py``: the CLI: ``train``, ``sample``, ``evaluate``.
"""
