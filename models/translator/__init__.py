"""German<->English (and French) Transformer translator on Multi30k, a small NMT toolkit.

Command line: ``python -m models.translator train|translate|evaluate|average`` (``ta-translate``).
One concern per module, in the order data flows; each imports only modules above it (the model itself is
``models.transformer``):

    data.py         Multi30k: find, download, verify, read
    vocab.py        joint SentencePiece vocabulary
    batching.py     token-count batches
    config.py       the experiment config (YAML/TOML + CLI overrides)
    machine.py      the device a config names, checked; the process's peak memory
    checkpoints.py  checkpoint files, keep-last-K, averaging, loading a model to translate
    run_dir.py      a run directory's files; starting, resuming or overwriting a run
    step.py         the model and optimiser of a config; one optimiser step (gradient accumulation)
    parallel.py     CPU processes: sharing each training batch, decoding batches side by side
    search.py       greedy and beam search with a key/value cache; translating sentences
    evaluate.py     sacreBLEU / chrF; scoring a model's translations
    plots.py        training curves and attention heatmaps
    train.py        the training loop, evaluation during training, final scores
    __main__.py     the command line

A run directory (``runs/<name>/``) holds config.yaml, spm.model, ckpt_step<N>.safetensors,
best.safetensors, metrics.jsonl, train.log, curves.png and results.json.
"""
