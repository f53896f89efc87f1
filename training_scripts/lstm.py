"""A padding-invariant (bi)LSTM text classifier that exports to ONNX, and a GloVe loader for its embedding.

pack_padded_sequence does not export to ONNX, so padding is handled with index arithmetic instead: the forward
direction's output is read at each sequence's last real token, and the backward direction runs on each sequence
reversed within its own length (its padding stays at the end), so neither direction ever sees a pad token before
the real ones. A sequence's logits therefore do not depend on how much padding follows it, in PyTorch and in ONNX.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
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


@dataclass
class GloveResult:
    """Embedding rows for a vocabulary, and how many of its words the vectors file covered."""

    weights: np.ndarray  # [V, dim] float32
    found: int
    missing: int
    missing_examples: list[str] = field(default_factory=list)
    malformed_lines: int = 0


def _parse_floats(tokens: list[str]) -> list[float] | None:
    try:
        values = [float(t) for t in tokens]
    except ValueError:
        return None
    return values if all(math.isfinite(v) for v in values) else None


def load_glove(
    path: str | Path, itos: list[str], dim: int, *, pad_id: int = 0, seed: int = 0, max_examples: int = 10
) -> GloveResult:
    """Rows of a GloVe-format text file (a word, then `dim` numbers, per line) for the words of `itos`.

    The pad row is zeros; words the file lacks get normal(0, 1) * 0.1 from a fixed seed, so the result is
    reproducible. Lines that are not "word + dim numbers" are skipped and counted; a file whose vectors have another
    dimension is an error. Words are matched exactly (lower-case the vocabulary for the lower-cased GloVe sets).
    A token that contains spaces (glove.840B has a few) is read as everything before the last `dim` fields.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"GloVe file not found: {path} (pass the path to a glove.*.txt file)")
    if dim < 1:
        raise ValueError(f"load_glove: dim must be >= 1, got {dim}")
    weights = (np.random.default_rng(seed).standard_normal((len(itos), dim)) * 0.1).astype(np.float32)
    wanted = {word: index for index, word in enumerate(itos) if index != pad_id}
    seen: set[int] = set()
    malformed = 0
    file_dim: int | None = None
    with path.open(encoding="utf-8", errors="replace") as lines:
        for line_no, line in enumerate(lines, start=1):
            stripped = line.rstrip()
            if not stripped:
                continue
            tokens = stripped.split(" ")
            if file_dim is None:
                if line_no == 1 and len(tokens) == 2 and all(t.isdigit() for t in tokens):
                    continue  # word2vec-style "<count> <dim>" header
                values = _parse_floats(tokens[1:])
                if not values or not tokens[0]:
                    malformed += 1
                    continue
                file_dim = len(values)
                if file_dim != dim:
                    raise ValueError(
                        f"{path}: line {line_no} has {file_dim}-dimensional vectors but dim={dim} was asked for; "
                        f"pass dim={file_dim} (and embed_dim={file_dim}) or use a {dim}-d vectors file"
                    )
            if len(tokens) < dim + 1 or not tokens[0]:
                malformed += 1
                continue
            word = tokens[0] if len(tokens) == dim + 1 else " ".join(tokens[:-dim])
            index = wanted.get(word)
            if index is None or index in seen:
                continue
            values = _parse_floats(tokens[-dim:])
            if values is None:
                malformed += 1
                continue
            weights[index] = values
            seen.add(index)
    if 0 <= pad_id < len(itos):
        weights[pad_id] = 0.0
    missing_words = [word for word, index in wanted.items() if index not in seen]
    return GloveResult(
        weights=weights,
        found=len(seen),
        missing=len(missing_words),
        missing_examples=missing_words[:max_examples],
        malformed_lines=malformed,
    )
