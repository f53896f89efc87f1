"""The small JSON files of a training output folder (preprocess.json, vocab.json): where they are, how they read.

Standard library only (a leaf), so the preprocessing config and the vocabulary share it without importing each
other.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any


def file_in_folder(path: str | os.PathLike[str], default_name: str) -> Path:
    """`path` itself, or `path/default_name` when `path` is a directory (the training output folder)."""
    path = Path(path)
    return path / default_name if path.is_dir() else path


def read_json_file(path: Path) -> Any:
    """The parsed JSON of `path`; ValueError naming the file when it is not valid JSON (OSError when unreadable)."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path} is not valid JSON: {exc}") from exc
