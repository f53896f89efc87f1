"""preprocess.json: what scoring needs to reproduce training's evaluation preprocessing, as two small configs.

An image model stores an ImagePreprocessConfig (resize, crop, mean/std), a text model a TextPreprocessConfig
(sequence length, lowercasing); `load_preprocess_config` reads either back by its "task". The transforms that
apply them are image_transforms.py and text_encode.py. Nothing here may import torch: the inference environment
has none.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from training_scripts.model_folder import PREPROCESS_FILE, file_in_folder, read_json_file
from training_scripts.text_vocab import PAD_ID, UNK_ID

IMAGE_TASK = "image-classification"
TEXT_TASK = "text-classification"
IMAGE_INPUT_NAME = "pixel_values"
TEXT_INPUT_NAME = "input_ids"

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class ImagePreprocessConfig:
    """Resize the shorter side to `resize_size`, centre-crop `image_size`, scale to [0, 1], normalise."""

    image_size: int = 224
    resize_size: int = 256
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD

    def __post_init__(self) -> None:
        # Stored as tuples of floats whatever sequence was passed, so configs compare and hash by value.
        object.__setattr__(self, "mean", tuple(float(v) for v in self.mean))
        object.__setattr__(self, "std", tuple(float(v) for v in self.std))
        if int(self.image_size) != self.image_size or self.image_size < 1:
            raise ValueError(f"image_size must be a positive integer, got {self.image_size!r}")
        if int(self.resize_size) != self.resize_size or self.resize_size < self.image_size:
            raise ValueError(
                f"resize_size must be an integer >= image_size ({self.image_size}), got {self.resize_size!r}"
            )
        if len(self.mean) != 3 or len(self.std) != 3:
            raise ValueError(f"mean and std need 3 values (R, G, B), got mean={self.mean} std={self.std}")
        if any(not v > 0 for v in self.std):
            raise ValueError(f"std values must be > 0, got {self.std}")

    def to_dict(self) -> dict[str, Any]:
        return {
            "task": IMAGE_TASK,
            "image_size": self.image_size,
            "resize_size": self.resize_size,
            "mean": list(self.mean),
            "std": list(self.std),
            "input_name": IMAGE_INPUT_NAME,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ImagePreprocessConfig:
        _check_task(data, IMAGE_TASK)
        missing = [key for key in ("image_size", "resize_size", "mean", "std") if key not in data]
        if missing:
            raise ValueError(f"image preprocess config lacks {missing}; got keys {sorted(data)}")
        return cls(
            image_size=int(data["image_size"]),
            resize_size=int(data["resize_size"]),
            mean=tuple(data["mean"]),
            std=tuple(data["std"]),
        )


@dataclass(frozen=True)
class TextPreprocessConfig:
    """Tokenize (optionally lowercased), keep the first `seq_len` tokens, pad with PAD_ID at the end."""

    seq_len: int = 100
    lowercase: bool = True

    def __post_init__(self) -> None:
        if int(self.seq_len) != self.seq_len or self.seq_len < 1:
            raise ValueError(f"seq_len must be a positive integer, got {self.seq_len!r}")

    def to_dict(self) -> dict[str, Any]:
        return {
            "task": TEXT_TASK,
            "seq_len": self.seq_len,
            "lowercase": self.lowercase,
            "pad_id": PAD_ID,
            "unk_id": UNK_ID,
            "input_name": TEXT_INPUT_NAME,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TextPreprocessConfig:
        _check_task(data, TEXT_TASK)
        missing = [key for key in ("seq_len", "lowercase") if key not in data]
        if missing:
            raise ValueError(f"text preprocess config lacks {missing}; got keys {sorted(data)}")
        if data.get("pad_id", PAD_ID) != PAD_ID or data.get("unk_id", UNK_ID) != UNK_ID:
            raise ValueError(
                f"text preprocess config has pad_id/unk_id {data.get('pad_id')}/{data.get('unk_id')}; "
                f"this version supports only {PAD_ID}/{UNK_ID}"
            )
        return cls(seq_len=int(data["seq_len"]), lowercase=bool(data["lowercase"]))


PreprocessConfig = ImagePreprocessConfig | TextPreprocessConfig


def _check_task(data: Mapping[str, Any], expected: str) -> None:
    task = data.get("task", expected)
    if task != expected:
        raise ValueError(f"preprocess config is for task {task!r}, expected {expected!r}")


def save_preprocess_config(path: str | os.PathLike[str], cfg: PreprocessConfig) -> Path:
    """Write preprocess.json (`path` may be the output folder); returns the file written."""
    target = file_in_folder(path, PREPROCESS_FILE)
    target.write_text(json.dumps(cfg.to_dict(), indent=2) + "\n", encoding="utf-8")
    return target


def load_preprocess_config(path: str | os.PathLike[str]) -> PreprocessConfig:
    """Read preprocess.json (or `path/preprocess.json`) into the config class its "task" names."""
    source = file_in_folder(path, PREPROCESS_FILE)
    data = read_json_file(source)
    if not isinstance(data, dict):
        raise ValueError(f"{source}: expected a JSON object, got {type(data).__name__}")
    task = data.get("task")
    try:
        if task == IMAGE_TASK:
            return ImagePreprocessConfig.from_dict(data)
        if task == TEXT_TASK:
            return TextPreprocessConfig.from_dict(data)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{source}: {exc}") from exc
    raise ValueError(f"{source}: unknown task {task!r}; expected {IMAGE_TASK!r} or {TEXT_TASK!r}")
