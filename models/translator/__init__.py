"""German<->English (and French) Transformer translator on Multi30k, a small NMT toolkit.

Command line: ``python -m models.translator train|translate|evaluate|average`` (``ta-translate``).
One concern per module, in the order data flows:

    data.py         Multi30k: find, download, verify, read
    vocab.py        joint SentencePiece vocabulary
    batching.py     token-count batches
    config.py       the experiment config (YAML/TOML + CLI overrides)
    train.py        the training loop, evaluation during training, final scores
    parallel.py     CPU processes: sharing each training batch, decoding batches side by side
    search.py       greedy and beam search with a key/value cache
    evaluate.py     sacreBLEU / chrF
    checkpoints.py  checkpoint files, keep-last-K, averaging, loading a model to translate
    plots.py        training curves and attention heatmaps
    __main__.py     the command line

A run directory (``runs/<name>/``) holds config.yaml, spm.model, ckpt_step<N>.safetensors,
best.safetensors, metrics.jsonl, train.log, curves.png and results.json.
"""
