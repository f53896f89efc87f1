"""The quantization benchmark runs end to end at tiny sizes (--smoke) and writes results in the common format."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from benchmarks import bench_quantization
from benchmarks.common import load_results
from benchmarks.report import render
from tests.unit.test_quantize import image_model


@pytest.mark.slow
def test_smoke_exports_quantizes_and_saves(tmp_path: Path) -> None:
    assert bench_quantization.main(["--smoke", "--save", "--threads", "1", "--results-dir", str(tmp_path)]) == 0
    data = json.loads((tmp_path / "quantization_cpu.json").read_text())
    (row,) = data["tables"][0]["rows"]
    assert (row["model"], row["weights"], row["method"], row["input"]) == ("lstm", "random", "dynamic", "2x10")
    assert row["fp32_ms"] > 0 and row["int8_ms"] > 0 and row["speedup"] == row["fp32_ms"] / row["int8_ms"]
    assert 0 <= row["agreement"] <= 1 and row["held_out"] == 200
    assert row["accepted_at_99"] == (row["agreement"] >= 0.99)
    assert any(note.startswith("Load average") for note in data["notes"])
    assert "quantization_cpu" not in render([]) and "INT8 vs fp32" in render(load_results(tmp_path))


def test_smoke_on_training_output_folders(trained_lstm: Path, tmp_path: Path) -> None:
    image = image_model(tmp_path / "image", [[1, 1, 1], [-1, -1, -1]], [0, 0])
    (image / "model_config.json").write_text('{"arch": "pooled-linear"}')
    # Calibrated on synthetic images: the folder needs only its own files.
    args = ["--smoke", "--save", "--threads", "1", "--results-dir", str(tmp_path / "results")]
    assert bench_quantization.main([*args, "--folder", str(image), "--folder", str(trained_lstm)]) == 0
    rows = json.loads((tmp_path / "results" / "quantization_cpu.json").read_text())["tables"][0]["rows"]
    assert [(row["model"], row["method"]) for row in rows] == [("pooled-linear", "static_qdq"), ("lstm", "dynamic")]
    assert rows[0]["weights"] == "trained (image)" and rows[0]["input"] == "1x3x16x16"
    assert 0 <= rows[0]["agreement"] <= 1 and rows[0]["held_out"] == 40 and rows[1]["input"] == "1x24"
