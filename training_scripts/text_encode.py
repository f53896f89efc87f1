"""Texts -> the LSTM's `input_ids` array (tokenize, look up, truncate, pad), with numpy only.

Training and the scoring scripts both encode through `encode_texts`, so a served model reads exactly what
training read. Nothing here may import torch: the inference environment has none.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from training_scripts.preprocess_config import TextPreprocessConfig
from training_scripts.text_vocab import PAD_ID, UNK_ID, Vocabulary, tokenize


def encode_texts(texts: Iterable[str], vocab: Vocabulary, cfg: TextPreprocessConfig) -> np.ndarray:
    """Texts -> int64 [N, seq_len]: the first seq_len token ids, then PAD_ID to the end of the row.

    A text with no tokens encodes as a single UNK_ID, so every row has at least one real token (the LSTM reads
    its output at the last real token).
    """
    rows = [vocab.encode(tokenize(text, cfg.lowercase)[: cfg.seq_len]) or [UNK_ID] for text in texts]
    out = np.full((len(rows), cfg.seq_len), PAD_ID, dtype=np.int64)
    for index, ids in enumerate(rows):
        out[index, : len(ids)] = ids
    return out
