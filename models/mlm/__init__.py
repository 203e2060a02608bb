"""The encoder-only family: BERT (``models/bert.py``) pre-trained as a masked language model on Multi30k and
fine-tuned to tell whether a German and an English sentence are translations of each other.

One way, lowest first: examples (special ids, [CLS] a [SEP] b [SEP] with segments, batches), masking (BERT's
15% / 80-10-10 corruption), pairs (the classification task and its splits), baseline (bag-of-words logistic
regression), config, train (pre-training and fine-tuning loops), fill (the blanks of a sentence), __main__
(CLI: ``python -m models.mlm train|fill|evaluate|finetune|classify|baseline``).
"""
