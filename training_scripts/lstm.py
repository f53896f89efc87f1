"""A padding-invariant (bi)LSTM text classifier that exports to ONNX (GloVe vectors: training_scripts/glove.py).

pack_padded_sequence does not export to ONNX, so padding is handled with index arithmetic instead: the forward
direction's output is read at each sequence's last real token, and the backward direction runs on each sequence
reversed within its own length (its padding stays at the end), so neither direction ever sees a pad token before
the real ones. A sequence's logits therefore do not depend on how much padding follows it, in PyTorch and in ONNX.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn


def _reverse_within_length(x: Tensor, lengths: Tensor) -> Tensor:
    """Reverse each sequence of x [N, T, D] over its first `lengths` steps; later (padding) steps stay in place.

    The permutation is its own inverse, so applying it twice restores the original order.
    """
    positions = torch.arange(x.shape[1], device=x.device).unsqueeze(0)  # [1, T]
    last = lengths.unsqueeze(1) - 1  # [N, 1]
    index = torch.where(positions <= last, last - positions, positions)  # [N, T]
    return torch.gather(x, 1, index.unsqueeze(-1).expand(-1, -1, x.shape[2]))


def _at_step(x: Tensor, steps: Tensor) -> Tensor:
    """x[n, steps[n], :] for every n, as [N, D]."""
    index = steps.view(-1, 1, 1).expand(-1, 1, x.shape[2])
    return torch.gather(x, 1, index).squeeze(1)


class LSTMClassifier(nn.Module):
    """Embedding -> (bi)LSTM -> dropout -> linear head; input_ids [N, T] int64 (right-padded) -> logits [N, C].

    Each layer of the backward direction is its own single-layer LSTM (``lstm_reverse``) run on the sequences
    reversed within their lengths, and its output is put back in the original order before the next layer, so a
    stacked bidirectional model means what nn.LSTM(bidirectional=True) means, without packing.
    """

    def __init__(
        self,
        vocab_size: int,
        num_classes: int,
        embed_dim: int = 300,
        hidden_size: int = 128,
        num_layers: int = 1,
        bidirectional: bool = False,
        dropout: float = 0.5,
        pad_id: int = 0,
    ) -> None:
        super().__init__()
        for name, value in (("vocab_size", vocab_size), ("num_classes", num_classes), ("num_layers", num_layers)):
            if value < 1:
                raise ValueError(f"LSTMClassifier: {name} must be >= 1, got {value}")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"LSTMClassifier: dropout must be in [0, 1), got {dropout}")
        if not 0 <= pad_id < vocab_size:
            raise ValueError(f"LSTMClassifier: pad_id {pad_id} is outside the vocabulary (size {vocab_size})")
        self.vocab_size = vocab_size
        self.num_classes = num_classes
        self.embed_dim = embed_dim
        self.hidden_size = hidden_size
        self.num_layers = num_layers
        self.bidirectional = bidirectional
        self.pad_id = pad_id

        directions = 2 if bidirectional else 1
        self.embedding = nn.Embedding(vocab_size, embed_dim, padding_idx=pad_id)
        self.lstm = nn.ModuleList(
            nn.LSTM(embed_dim if i == 0 else hidden_size * directions, hidden_size, batch_first=True)
            for i in range(num_layers)
        )
        self.lstm_reverse = nn.ModuleList(
            nn.LSTM(embed_dim if i == 0 else hidden_size * directions, hidden_size, batch_first=True)
            for i in range(num_layers if bidirectional else 0)
        )
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(hidden_size * directions, num_classes)

    def config(self) -> dict[str, Any]:
        """The constructor arguments (JSON-serialisable) that rebuild this module."""
        return {
            "vocab_size": self.vocab_size,
            "num_classes": self.num_classes,
            "embed_dim": self.embed_dim,
            "hidden_size": self.hidden_size,
            "num_layers": self.num_layers,
            "bidirectional": self.bidirectional,
            "dropout": self.dropout.p,
            "pad_id": self.pad_id,
        }

    def forward(self, input_ids: Tensor) -> Tensor:
        # An all-padding row counts as one (pad) token, so indexing stays valid instead of reading step -1.
        lengths = (input_ids != self.pad_id).sum(dim=1).clamp(min=1)
        x = self.embedding(input_ids)
        for layer in range(self.num_layers):
            if layer > 0:
                x = self.dropout(x)  # between stacked layers, as nn.LSTM(dropout=...) does
            forward_out, _ = self.lstm[layer](x)
            if not self.bidirectional:
                x = forward_out
                continue
            backward_rev, _ = self.lstm_reverse[layer](_reverse_within_length(x, lengths))
            x = torch.cat([forward_out, _reverse_within_length(backward_rev, lengths)], dim=2)
        hidden = self.hidden_size
        features = _at_step(x[:, :, :hidden], lengths - 1)
        if self.bidirectional:
            # The backward direction has read the whole sequence when it reaches position 0.
            features = torch.cat([features, x[:, 0, hidden:]], dim=1)
        return self.fc(self.dropout(features))
