"""Encoded text rows as a torch Dataset for the LSTM.

Reading the tables (CSV, TSV, JSONL; malformed rows skipped and counted) is text_table.py; encoding the texts is
text_encode.py. This module only hands the encoded rows to torch.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch.utils.data import Dataset


class TextDataset(Dataset[tuple[torch.Tensor, int]]):
    """Encoded rows (int64 [N, T] from text_encode.encode_texts) and their label ids -> (LongTensor [T], int)."""

    def __init__(self, encoded: np.ndarray, labels: Sequence[int] | np.ndarray) -> None:
        if encoded.ndim != 2:
            raise ValueError(f"encoded texts must be a 2-D array [N, seq_len], got shape {encoded.shape}")
        if len(labels) != len(encoded):
            raise ValueError(f"{len(encoded)} encoded texts but {len(labels)} labels")
        self.encoded = np.ascontiguousarray(encoded, dtype=np.int64)
        self.labels = [int(label) for label in labels]

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        return torch.from_numpy(self.encoded[index]), self.labels[index]
