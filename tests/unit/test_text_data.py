"""Encoded text rows as a torch Dataset: LongTensor rows, label ids, shape checks."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from training_scripts.preprocess_config import TextPreprocessConfig
from training_scripts.text_data import TextDataset
from training_scripts.text_encode import encode_texts
from training_scripts.text_table import label_ids, label_names, read_text_table
from training_scripts.text_vocab import Vocabulary, tokenize


def test_text_dataset_yields_long_tensors(tmp_path: Path) -> None:
    path = tmp_path / "reviews.csv"
    path.write_text('text,label\ngreat film,pos\n"dull, slow film",neg\nfine film,pos\n')
    table = read_text_table(path)
    names = label_names(table.labels)
    vocab = Vocabulary.build(tokenize(text) for text in table.texts)
    encoded = encode_texts(table.texts, vocab, TextPreprocessConfig(seq_len=8))
    dataset = TextDataset(encoded, label_ids(table.labels, names))
    assert len(dataset) == 3
    ids, label = dataset[1]
    assert ids.dtype == torch.int64 and ids.shape == (8,)
    assert label == names.index("neg")
    batch = torch.utils.data.default_collate([dataset[i] for i in range(3)])
    assert batch[0].shape == (3, 8) and batch[1].tolist() == [1, 0, 1]
    with pytest.raises(ValueError, match="3 encoded texts but 2 labels"):
        TextDataset(encoded, [0, 1])
    with pytest.raises(ValueError, match="2-D"):
        TextDataset(np.zeros(3, dtype=np.int64), [0, 1, 0])
