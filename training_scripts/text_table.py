"""Labelled text tables (CSV, TSV, JSONL): tolerant reading, label names and ids, without torch.

Malformed rows never stop a run: each one is skipped and reported with its line number in `TextTable.skipped`.
Problems that make training impossible (a missing column, no usable rows, a single class) raise DatasetError.
Training (train_lstm.py), the pipeline's prepare and evaluate steps and `azure-dl demo` read tables through this
module; nothing here may import torch, so the evaluate step runs in an environment without it.
"""

from __future__ import annotations

import csv
import io
import json
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from training_scripts.splits import DatasetError, check_class_counts

CSV_SUFFIXES = {".csv": ",", ".tsv": "\t"}
JSONL_SUFFIXES = frozenset({".jsonl", ".ndjson"})
_INT_LABEL = re.compile(r"[+-]?\d+")

Label = int | str


@dataclass
class TextTable:
    """Texts and labels in file order; `skipped` holds (line number, reason) for every row left out."""

    texts: list[str]
    labels: list[Label]
    skipped: list[tuple[int, str]] = field(default_factory=list)
    path: Path | None = None

    def __len__(self) -> int:
        return len(self.texts)

    def skipped_summary(self, limit: int = 5) -> str:
        """One line for logs: how many rows were skipped and the first few reasons."""
        if not self.skipped:
            return "no rows skipped"
        shown = "; ".join(f"line {line}: {reason}" for line, reason in self.skipped[:limit])
        more = f"; ... {len(self.skipped) - limit} more" if len(self.skipped) > limit else ""
        return f"skipped {len(self.skipped)} malformed row(s): {shown}{more}"


def read_text_table(path: str | os.PathLike[str], text_column: str = "text", label_column: str = "label") -> TextTable:
    """Read a CSV/TSV (header row; quoted fields may hold commas and newlines) or JSONL file of texts and labels.

    Rows are skipped, with their line number and reason, when they have the wrong number of fields, an empty or
    missing text or label, a label that is neither a string nor an integer, or (JSONL) invalid JSON. Labels come
    back as ints when every label is an integer ("0", 1, "-1"), else as stripped strings. Raises DatasetError
    for a missing file or column, a file that is not UTF-8, no usable rows, or fewer than two distinct labels.
    """
    source = Path(path)
    suffix = source.suffix.lower()
    if suffix not in CSV_SUFFIXES and suffix not in JSONL_SUFFIXES:
        supported = ", ".join(sorted([*CSV_SUFFIXES, *JSONL_SUFFIXES]))
        raise DatasetError(f"{source}: unsupported file type {suffix or '(none)'!r}; use one of {supported}")
    if not source.is_file():
        raise DatasetError(f"text table {source} does not exist (or is not a file)")
    try:
        content = source.read_bytes().decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise DatasetError(
            f"{source} is not UTF-8 (byte {exc.start} is {exc.object[exc.start : exc.start + 1]!r}); "
            "re-save it as UTF-8"
        ) from exc

    if suffix in CSV_SUFFIXES:
        texts, raw_labels, skipped = _read_csv(content, CSV_SUFFIXES[suffix], text_column, label_column, source)
    else:
        texts, raw_labels, skipped = _read_jsonl(content, text_column, label_column, source)

    table = TextTable(texts=texts, labels=_typed_labels(raw_labels), skipped=skipped, path=source)
    if not table.texts:
        raise DatasetError(f"{source} has no usable rows ({table.skipped_summary()})")
    distinct = set(table.labels)
    if len(distinct) < 2:
        raise DatasetError(
            f"{source}: every one of the {len(table)} usable rows has label {next(iter(distinct))!r}; "
            f"a classifier needs at least two classes (is {label_column!r} the right column?)"
        )
    return table


def _check_row(text: Any, label: Any) -> tuple[str | None, str | None]:
    """(label as a string, None) for a usable row, or (None, reason)."""
    if not isinstance(text, str):
        return None, f"text is {type(text).__name__}, not a string"
    if not text.strip():
        return None, "empty text"
    if isinstance(label, bool) or not isinstance(label, int | str | float):
        return None, f"label {label!r} is neither a string nor an integer"
    if isinstance(label, float):
        if not label.is_integer():
            return None, f"label {label!r} is neither a string nor an integer"
        label = int(label)
    label = str(label).strip()
    if not label:
        return None, "empty label"
    return label, None


def _read_csv(
    content: str, delimiter: str, text_column: str, label_column: str, source: Path
) -> tuple[list[str], list[str], list[tuple[int, str]]]:
    reader = csv.reader(io.StringIO(content, newline=""), delimiter=delimiter)
    try:
        header = next(reader)
    except StopIteration:
        raise DatasetError(f"{source} is empty; expected a header row naming the columns") from None
    header = [name.strip() for name in header]
    for role, column in (("text", text_column), ("label", label_column)):
        if column not in header:
            raise DatasetError(
                f"{source} has no {role} column {column!r}; its columns are {header}. "
                f"Name the right one with the {role} column option."
            )
    text_at, label_at = header.index(text_column), header.index(label_column)

    texts: list[str] = []
    labels: list[str] = []
    skipped: list[tuple[int, str]] = []
    while True:
        line = reader.line_num + 1  # where the next record starts (a quoted field may span several lines)
        try:
            row = next(reader)
        except StopIteration:
            break
        except csv.Error as exc:
            skipped.append((line, f"unreadable CSV: {exc}"))
            continue
        if not row or (len(row) == 1 and not row[0].strip()):
            continue  # blank line
        if len(row) != len(header):
            skipped.append((line, f"expected {len(header)} fields, found {len(row)}"))
            continue
        label, reason = _check_row(row[text_at], row[label_at])
        if label is None:
            skipped.append((line, reason or "unusable row"))
            continue
        texts.append(row[text_at])
        labels.append(label)
    return texts, labels, skipped


def _read_jsonl(
    content: str, text_column: str, label_column: str, source: Path
) -> tuple[list[str], list[str], list[tuple[int, str]]]:
    texts: list[str] = []
    labels: list[str] = []
    skipped: list[tuple[int, str]] = []
    keys_seen: set[str] = set()
    found = {text_column: False, label_column: False}
    # JSON Lines are separated by "\n" only: str.splitlines() would also split at U+2028, U+0085 and other
    # separators, which JSON allows unescaped inside strings (json.dumps(ensure_ascii=False) writes them so).
    for number, line in enumerate(content.split("\n"), start=1):
        line = line.removesuffix("\r")
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            skipped.append((number, f"invalid JSON ({exc.msg}, column {exc.colno})"))
            continue
        except RecursionError:
            skipped.append((number, "invalid JSON (nested deeper than the parser's recursion limit)"))
            continue
        if not isinstance(record, dict):
            skipped.append((number, f"expected a JSON object, found {type(record).__name__}"))
            continue
        keys_seen.update(record)
        missing = [column for column in (text_column, label_column) if column not in record]
        for column in found:
            found[column] = found[column] or column in record
        if missing:
            skipped.append((number, f"missing {', '.join(map(repr, missing))}"))
            continue
        label, reason = _check_row(record[text_column], record[label_column])
        if label is None:
            skipped.append((number, reason or "unusable row"))
            continue
        texts.append(record[text_column])
        labels.append(label)
    for role, column in (("text", text_column), ("label", label_column)):
        if keys_seen and not found[column]:
            raise DatasetError(
                f"{source}: no record has a {role} field {column!r}; the fields present are {sorted(keys_seen)}. "
                f"Name the right one with the {role} column option."
            )
    return texts, labels, skipped


def _typed_labels(raw: list[str]) -> list[Label]:
    if raw and all(_INT_LABEL.fullmatch(label) for label in raw):
        return [int(label) for label in raw]
    return list(raw)


def label_names(labels: Sequence[Label]) -> list[str]:
    """Class names in logit order: integer labels sorted numerically, string labels sorted alphabetically."""
    distinct = set(labels)
    ints = sorted(label for label in distinct if isinstance(label, int))
    strings = sorted(label for label in distinct if isinstance(label, str))
    return [str(label) for label in ints] + strings


def label_ids(labels: Sequence[Label], names: Sequence[str], source: str = "dataset") -> list[int]:
    """Map labels to their index in `names` (e.g. from label_names or a model's labels.json).

    Raises DatasetError for a label that is not in `names`, a name with no rows, or fewer than two classes.
    """
    index = {name: position for position, name in enumerate(names)}
    unknown = sorted({str(label) for label in labels} - set(index))
    if unknown:
        raise DatasetError(f"{source}: labels {unknown[:10]} are not among the known classes {list(names)}")
    ids = [index[str(label)] for label in labels]
    check_class_counts(ids, names, source)
    return ids
