"""GloVe-format word vectors for the LSTM's embedding: read from .txt, .gz or straight out of the published .zip.

The published GloVe sets come as one archive of several files (glove.6B.zip holds the 50/100/200/300-d sets), so a
vectors source is `PATH` (a .txt, or a .gz of one) or `ARCHIVE.zip:MEMBER` (e.g. `glove.6B.zip:glove.6B.300d.txt`);
a .zip with a single .txt member needs no member name. Archives are streamed member by member and never extracted
to disk: glove.6B.300d.txt alone is about 1 GB.
"""

from __future__ import annotations

import gzip
import io
import math
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

ZIP_MEMBER_SEPARATOR = ".zip:"


@dataclass
class GloveResult:
    """Embedding rows for a vocabulary, and how many of its words the vectors file covered."""

    weights: np.ndarray  # [V, dim] float32
    found: int
    missing: int
    missing_examples: list[str] = field(default_factory=list)
    malformed_lines: int = 0


def split_source(source: str | Path) -> tuple[Path, str | None]:
    """`ARCHIVE.zip:MEMBER` -> (ARCHIVE.zip, MEMBER); anything else -> (path, None)."""
    text = str(source)
    head, separator, member = text.rpartition(ZIP_MEMBER_SEPARATOR)
    if separator and member:
        return Path(head + ".zip"), member
    return Path(text), None


def _zip_member(archive: zipfile.ZipFile, path: Path, member: str | None) -> str:
    names = [info.filename for info in archive.infolist() if not info.is_dir()]
    if member is not None:
        if member in names:
            return member
        raise FileNotFoundError(
            f"{path} has no member {member!r}; it holds: {', '.join(names) or 'nothing'} "
            f"(pass --glove {path}:NAME with one of those)"
        )
    texts = [name for name in names if name.endswith(".txt")]
    if len(texts) == 1:
        return texts[0]
    raise ValueError(
        f"{path} holds {len(texts)} .txt files ({', '.join(texts) or 'none'}); name the one to use as "
        f"{path}:{texts[0] if texts else 'MEMBER'}"
    )


@contextmanager
def open_vectors(source: str | Path) -> Iterator[Iterator[str]]:
    """The lines of a vectors source (see the module docstring), decoded as UTF-8 with bad bytes replaced."""
    path, member = split_source(source)
    if not path.is_file():
        raise FileNotFoundError(
            f"GloVe file not found: {path} (pass a glove.*.txt, a .gz of one, or ARCHIVE.zip:MEMBER such as "
            "glove.6B.zip:glove.6B.300d.txt)"
        )
    if path.suffix.lower() == ".zip" or member is not None:
        try:
            archive = zipfile.ZipFile(path)
        except zipfile.BadZipFile as exc:
            raise ValueError(f"{path} is not a readable .zip archive: {exc}") from exc
        with archive, archive.open(_zip_member(archive, path, member)) as raw:
            yield io.TextIOWrapper(raw, encoding="utf-8", errors="replace")
    elif path.suffix.lower() == ".gz":
        with gzip.open(path, "rt", encoding="utf-8", errors="replace") as lines:
            yield lines
    else:
        with path.open(encoding="utf-8", errors="replace") as lines:
            yield lines


def _parse_floats(tokens: list[str]) -> list[float] | None:
    try:
        values = [float(t) for t in tokens]
    except ValueError:
        return None
    return values if all(math.isfinite(v) for v in values) else None


def load_glove(
    source: str | Path, itos: list[str], dim: int, *, pad_id: int = 0, seed: int = 0, max_examples: int = 10
) -> GloveResult:
    """Rows of a GloVe-format vectors source (a word, then `dim` numbers, per line) for the words of `itos`.

    The pad row is zeros; words the file lacks get normal(0, 1) * 0.1 from a fixed seed, so the result is
    reproducible. Lines that are not "word + dim numbers" are skipped and counted; a file whose vectors have another
    dimension is an error. Words are matched exactly (lower-case the vocabulary for the lower-cased GloVe sets).
    A token that contains spaces (glove.840B has a few) is read as everything before the last `dim` fields.
    A truncated .gz or .zip member is an error naming the file (its vectors would be silently incomplete).
    """
    if dim < 1:
        raise ValueError(f"load_glove: dim must be >= 1, got {dim}")
    weights = (np.random.default_rng(seed).standard_normal((len(itos), dim)) * 0.1).astype(np.float32)
    wanted = {word: index for index, word in enumerate(itos) if index != pad_id}
    seen: set[int] = set()
    malformed = 0
    file_dim: int | None = None
    try:
        with open_vectors(source) as lines:
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
                            f"{source}: line {line_no} has {file_dim}-dimensional vectors but dim={dim} was asked "
                            f"for; pass dim={file_dim} (and embed_dim={file_dim}) or use a {dim}-d vectors file"
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
    except (EOFError, zipfile.BadZipFile, gzip.BadGzipFile) as exc:
        raise ValueError(f"{source} is truncated or corrupt ({exc}); download it again") from exc
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
