"""Text -> tokens -> ids for the LSTM: the tokenizer and the vocabulary (vocab.json), with the standard library only.

Training builds the vocabulary and the scoring scripts load it, both through this module, so a served model
tokenizes exactly as training did. Nothing here may import torch: the inference environment has none.
"""

from __future__ import annotations

import html
import json
import os
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from training_scripts.model_folder import VOCAB_FILE, file_in_folder, read_json_file

PAD_ID = 0
UNK_ID = 1
PAD_TOKEN = "<pad>"
UNK_TOKEN = "<unk>"

_HTML_TAG = re.compile(r"<[^<>]{0,200}>")
# In order: decimal numbers (3.5, 1,000), words or numbers with inner apostrophes (don't, 90's),
# then any other single non-space character (punctuation, symbols, a stray apostrophe, underscore).
_TOKEN = re.compile(r"\d+(?:[.,]\d+)+|[^\W_]+(?:'[^\W_]+)*|[^\w\s]|_")


def tokenize(text: str, lowercase: bool = True) -> list[str]:
    """Split text into word, number and punctuation tokens.

    HTML tags (`<br />`, `<i>` - common in scraped reviews) become spaces and entities (`&amp;`) are unescaped;
    curly apostrophes become straight ones. Tokens: decimal numbers ("3.5", "1,000"), words and numbers with
    inner apostrophes kept whole ("don't"), and every other non-space character on its own ("!", "?", "/").
    Example: "Don't stop!<br />10/10" -> ["don't", "stop", "!", "10", "/", "10"].
    """
    text = html.unescape(_HTML_TAG.sub(" ", text)).replace("\u2019", "'")
    if lowercase:
        text = text.lower()
    return _TOKEN.findall(text)


class Vocabulary:
    """Token <-> id mapping; id 0 is padding and id 1 stands for any unknown token."""

    def __init__(self, itos: Sequence[str]) -> None:
        itos = list(itos)
        if len(itos) < 2 or itos[PAD_ID] != PAD_TOKEN or itos[UNK_ID] != UNK_TOKEN:
            raise ValueError(
                f"a vocabulary starts with [{PAD_TOKEN!r}, {UNK_TOKEN!r}] (ids {PAD_ID} and {UNK_ID}), got {itos[:2]}"
            )
        if not all(isinstance(token, str) for token in itos):
            raise ValueError("vocabulary entries must be strings")
        if len(set(itos)) != len(itos):
            duplicates = sorted(token for token, count in Counter(itos).items() if count > 1)
            raise ValueError(f"vocabulary has duplicate entries: {duplicates[:10]}")
        self.itos: list[str] = itos
        self.stoi: dict[str, int] = {token: index for index, token in enumerate(itos)}

    @classmethod
    def build(cls, token_lists: Iterable[Sequence[str]], max_size: int | None = None, min_freq: int = 1) -> Vocabulary:
        """Most frequent tokens first, ties broken alphabetically, so the same corpus always gives the same ids.

        `max_size` caps the whole vocabulary INCLUDING <pad> and <unk> (it is the embedding table's size);
        tokens seen fewer than `min_freq` times are left out (they encode as <unk>).
        """
        if max_size is not None and max_size < 2:
            raise ValueError(f"max_size must be >= 2 (room for {PAD_TOKEN} and {UNK_TOKEN}), got {max_size}")
        if min_freq < 1:
            raise ValueError(f"min_freq must be >= 1, got {min_freq}")
        counts: Counter[str] = Counter()
        for tokens in token_lists:
            counts.update(tokens)
        counts.pop(PAD_TOKEN, None)
        counts.pop(UNK_TOKEN, None)
        ranked = sorted((token for token, count in counts.items() if count >= min_freq), key=lambda t: (-counts[t], t))
        if max_size is not None:
            ranked = ranked[: max_size - 2]
        return cls([PAD_TOKEN, UNK_TOKEN, *ranked])

    def __len__(self) -> int:
        return len(self.itos)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Vocabulary) and self.itos == other.itos

    def encode(self, tokens: Iterable[str]) -> list[int]:
        return [self.stoi.get(token, UNK_ID) for token in tokens]

    def to_dict(self) -> dict[str, Any]:
        return {"itos": list(self.itos), "pad_id": PAD_ID, "unk_id": UNK_ID}

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write vocab.json (`path` may be the output folder); returns the file written."""
        target = file_in_folder(path, VOCAB_FILE)
        target.write_text(json.dumps(self.to_dict(), ensure_ascii=False), encoding="utf-8")
        return target

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> Vocabulary:
        source = file_in_folder(path, VOCAB_FILE)
        data = read_json_file(source)
        if not isinstance(data, dict) or not isinstance(data.get("itos"), list):
            raise ValueError(f"{source}: expected a JSON object with an 'itos' list")
        if data.get("pad_id", PAD_ID) != PAD_ID or data.get("unk_id", UNK_ID) != UNK_ID:
            raise ValueError(
                f"{source}: pad_id/unk_id are {data.get('pad_id')}/{data.get('unk_id')}, expected {PAD_ID}/{UNK_ID}"
            )
        try:
            return cls(data["itos"])
        except ValueError as exc:
            raise ValueError(f"{source}: {exc}") from exc
