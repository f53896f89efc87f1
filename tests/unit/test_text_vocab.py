"""The tokenizer, the vocabulary (order, vocab.json round trip) and text encoding to input_ids."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from training_scripts.preprocess_config import TextPreprocessConfig
from training_scripts.text_encode import encode_texts
from training_scripts.text_vocab import PAD_ID, UNK_ID, Vocabulary, tokenize


def test_tokenize() -> None:
    assert tokenize("Don't stop!<br /><br />10/10, 3.5 stars &amp; 1,000 fans") == [
        "don't",
        "stop",
        "!",
        "10",
        "/",
        "10",
        ",",
        "3.5",
        "stars",
        "&",
        "1,000",
        "fans",
    ]
    assert tokenize("It\u2019s 'GREAT'", lowercase=False) == ["It's", "'", "GREAT", "'"]
    assert tokenize("snake_case  \n\t") == ["snake", "_", "case"]
    assert tokenize("<i></i>") == []


def test_vocabulary_order_is_deterministic() -> None:
    docs = [["b", "a", "c"], ["a", "b"], ["d", "a"], ["c"]]
    vocab = Vocabulary.build(docs)
    # a: 3, then b and c tie at 2 (alphabetical), then d.
    assert vocab.itos == ["<pad>", "<unk>", "a", "b", "c", "d"]
    assert Vocabulary.build(reversed(docs)) == vocab
    assert Vocabulary.build(docs, max_size=4).itos == ["<pad>", "<unk>", "a", "b"]
    assert Vocabulary.build(docs, min_freq=2).itos == ["<pad>", "<unk>", "a", "b", "c"]
    assert vocab.encode(["c", "zzz", "a"]) == [4, UNK_ID, 2]
    with pytest.raises(ValueError, match="max_size"):
        Vocabulary.build(docs, max_size=1)


def test_vocabulary_save_load_round_trip(tmp_path: Path) -> None:
    vocab = Vocabulary.build([tokenize("Ünïcode words, and more words!")])
    path = vocab.save(tmp_path)
    assert json.loads(path.read_text(encoding="utf-8")) == {"itos": vocab.itos, "pad_id": 0, "unk_id": 1}
    assert Vocabulary.load(path) == vocab
    (tmp_path / "bad.json").write_text(json.dumps({"itos": ["a", "b"]}))
    with pytest.raises(ValueError, match=r"bad\.json"):
        Vocabulary.load(tmp_path / "bad.json")


def test_encode_texts_pads_truncates_and_handles_empty_text() -> None:
    vocab = Vocabulary.build([["one", "two", "three", "four"]])
    cfg = TextPreprocessConfig(seq_len=3)
    out = encode_texts(["One two", "one two three four", "", "<br />", "unknownword"], vocab, cfg)
    ids = vocab.stoi
    assert out.dtype == np.int64 and out.shape == (5, 3)
    assert out.tolist() == [
        [ids["one"], ids["two"], PAD_ID],
        [ids["one"], ids["two"], ids["three"]],
        [UNK_ID, PAD_ID, PAD_ID],
        [UNK_ID, PAD_ID, PAD_ID],
        [UNK_ID, PAD_ID, PAD_ID],
    ]
    cased = encode_texts(["One"], vocab, TextPreprocessConfig(seq_len=2, lowercase=False))
    assert cased.tolist() == [[UNK_ID, PAD_ID]]
    assert encode_texts([], vocab, cfg).shape == (0, 3)
