"""preprocess.json: both configs round-trip, validate their values and refuse another task's file."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from training_scripts.preprocess_config import (
    ImagePreprocessConfig,
    TextPreprocessConfig,
    load_preprocess_config,
    save_preprocess_config,
)


def test_image_config_round_trip_and_validation(tmp_path: Path) -> None:
    cfg = ImagePreprocessConfig(image_size=64, resize_size=72, mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25))
    data = cfg.to_dict()
    assert data["task"] == "image-classification" and data["input_name"] == "pixel_values"
    assert json.loads(json.dumps(data)) == data
    assert ImagePreprocessConfig.from_dict(data) == cfg
    written = save_preprocess_config(tmp_path, cfg)
    assert written == tmp_path / "preprocess.json"
    assert load_preprocess_config(tmp_path) == cfg
    with pytest.raises(ValueError, match="resize_size"):
        ImagePreprocessConfig(image_size=64, resize_size=32)
    with pytest.raises(ValueError, match="std"):
        ImagePreprocessConfig(std=(0.2, 0.0, 0.2))
    with pytest.raises(ValueError, match="text-classification"):
        ImagePreprocessConfig.from_dict(TextPreprocessConfig().to_dict())


def test_text_config_round_trip(tmp_path: Path) -> None:
    cfg = TextPreprocessConfig(seq_len=50, lowercase=False)
    assert cfg.to_dict() == {
        "task": "text-classification",
        "seq_len": 50,
        "lowercase": False,
        "pad_id": 0,
        "unk_id": 1,
        "input_name": "input_ids",
    }
    save_preprocess_config(tmp_path / "preprocess.json", cfg)
    assert load_preprocess_config(tmp_path / "preprocess.json") == cfg
    (tmp_path / "other.json").write_text(json.dumps({"task": "segmentation"}))
    with pytest.raises(ValueError, match="segmentation"):
        load_preprocess_config(tmp_path / "other.json")
    with pytest.raises(ValueError, match="seq_len"):
        TextPreprocessConfig(seq_len=0)
