"""LSTMClassifier: padding never changes a prediction, it means what a packed nn.LSTM means; GloVe loading."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence

from training_scripts.lstm import LSTMClassifier
from training_scripts.models import build_model


@pytest.fixture(autouse=True, scope="module")
def _one_torch_thread() -> Iterator[None]:
    # On two shared, busy cores, intra-op threads spin against each other: tiny models run 10x slower.
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


def _batch(lengths: list[int], width: int, vocab: int = 40) -> torch.Tensor:
    """Right-padded token ids (0 = pad) with the given real lengths."""
    ids = torch.zeros(len(lengths), width, dtype=torch.long)
    for row, length in enumerate(lengths):
        ids[row, :length] = torch.randint(1, vocab, (length,))
    return ids


@pytest.mark.parametrize("bidirectional", [False, True])
@pytest.mark.parametrize("num_layers", [1, 2])
def test_padding_does_not_change_logits(bidirectional: bool, num_layers: int) -> None:
    model = LSTMClassifier(40, 3, embed_dim=8, hidden_size=6, num_layers=num_layers, bidirectional=bidirectional)
    model.eval()
    ids = _batch([5, 2, 7, 1], width=7)
    with torch.no_grad():
        logits = model(ids)
        padded = model(torch.cat([ids, torch.zeros(4, 9, dtype=torch.long)], dim=1))
        alone = torch.cat([model(ids[row : row + 1, :length]) for row, length in enumerate([5, 2, 7, 1])])
    assert logits.shape == (4, 3) and logits.dtype == torch.float32
    torch.testing.assert_close(padded, logits, rtol=0, atol=1e-6)
    torch.testing.assert_close(alone, logits, rtol=0, atol=1e-6)


@pytest.mark.parametrize("num_layers", [1, 2])
def test_bidirectional_equals_a_packed_nn_lstm(num_layers: int) -> None:
    """Same weights in nn.LSTM(bidirectional=True) over packed sequences give the same logits."""
    model = LSTMClassifier(40, 3, embed_dim=8, hidden_size=6, num_layers=num_layers, bidirectional=True).eval()
    packed_lstm = nn.LSTM(8, 6, num_layers=num_layers, bidirectional=True, batch_first=True)
    with torch.no_grad():
        for layer in range(num_layers):
            for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
                getattr(packed_lstm, f"{name}_l{layer}").copy_(getattr(model.lstm[layer], f"{name}_l0"))
                getattr(packed_lstm, f"{name}_l{layer}_reverse").copy_(getattr(model.lstm_reverse[layer], f"{name}_l0"))
        lengths = [6, 3, 1]
        ids = _batch(lengths, width=8)
        packed = pack_padded_sequence(model.embedding(ids), torch.tensor(lengths), batch_first=True)
        _, (h_n, _) = packed_lstm(packed)
        expected = model.fc(torch.cat([h_n[-2], h_n[-1]], dim=1))  # last layer: forward, backward
        torch.testing.assert_close(model(ids), expected, rtol=1e-5, atol=1e-6)


def test_an_all_padding_row_is_read_as_one_pad_token() -> None:
    model = LSTMClassifier(40, 2, embed_dim=4, hidden_size=3, bidirectional=True).eval()
    with torch.no_grad():
        empty = model(torch.zeros(2, 5, dtype=torch.long))
        one_pad = model(torch.zeros(1, 1, dtype=torch.long))
    assert torch.isfinite(empty).all()
    torch.testing.assert_close(empty, one_pad.expand(2, -1), rtol=0, atol=1e-6)


def test_config_rebuilds_and_bad_arguments_are_clear() -> None:
    model = LSTMClassifier(25, 4, embed_dim=5, hidden_size=3, num_layers=2, bidirectional=True, dropout=0.1)
    rebuilt = LSTMClassifier(**model.config())
    rebuilt.load_state_dict(model.state_dict(), strict=True)
    with pytest.raises(ValueError, match="dropout must be in"):
        LSTMClassifier(10, 2, dropout=1.0)
    with pytest.raises(ValueError, match="pad_id 12 is outside"):
        LSTMClassifier(10, 2, pad_id=12)


def test_lstm_checkpoint_with_another_class_count_keeps_everything_but_the_head(tmp_path: Path) -> None:
    options: dict[str, Any] = {"vocab_size": 30, "embed_dim": 6, "hidden_size": 4, "bidirectional": True}
    source = build_model("lstm", num_classes=5, **options)
    torch.save(source.state_dict(), tmp_path / "lstm.pt")
    model = build_model("lstm", num_classes=2, pretrained=tmp_path / "lstm.pt", **options)
    assert isinstance(model, LSTMClassifier)
    for key, value in source.state_dict().items():
        if not key.startswith("fc."):
            assert torch.equal(model.state_dict()[key], value), key
    assert model.fc.out_features == 2
