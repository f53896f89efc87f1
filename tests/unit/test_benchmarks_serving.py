"""The serving benchmarks run end to end at tiny sizes (--smoke) and write results in the common format."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

from benchmarks import bench_endpoint, bench_onnx_vs_torch
from benchmarks.common import load_results
from benchmarks.report import render


def test_lstm_flops_formula() -> None:
    # One sequence of 100 tokens, E=300, H=128, 2 classes: 2*100*4*128*(300+128) + 2*128*2 FLOPs.
    assert bench_onnx_vs_torch.lstm_flops(1, 100, 300, 128, 2) == 2 * 100 * 512 * 428 + 512
    assert bench_onnx_vs_torch.lstm_flops(64, 100, 300, 128, 2) == 64 * bench_onnx_vs_torch.lstm_flops(
        1, 100, 300, 128, 2
    )


def test_the_endpoint_benchmarks_jpeg_is_a_224_pixel_jpeg() -> None:
    from PIL import Image

    data = bench_endpoint.make_jpeg()
    with Image.open(io.BytesIO(data)) as img:
        assert (img.format, img.size) == ("JPEG", (224, 224))


def test_server_threads_follow_serves_rule() -> None:
    assert bench_endpoint.server_threads(1) == 0  # ONNX Runtime's own default
    assert bench_endpoint.server_threads(2) >= 1


@pytest.mark.slow
def test_bench_onnx_vs_torch_smoke(tmp_path: Path) -> None:
    assert bench_onnx_vs_torch.main(["--smoke", "--save", "--threads", "1", "--results-dir", str(tmp_path)]) == 0
    data = json.loads((tmp_path / "onnx_vs_torch_cpu.json").read_text())
    rows = data["tables"][0]["rows"]
    assert [(row["model"], row["input"]) for row in rows] == [
        ("resnet18", "1x3x32x32"),
        ("resnet18", "2x3x32x32"),
        ("lstm", "2x10"),
    ]
    for row in rows:
        assert row["torch_ms"] > 0 and row["ort_ms"] > 0
        assert row["speedup"] == pytest.approx(row["torch_ms"] / row["ort_ms"])
        assert row["ort_gflops"] == pytest.approx(row["gflop_per_call"] / row["ort_ms"] * 1e3)
        assert row["max_abs_diff"] < 1e-4
    # FlopCounterMode: a 32 px ResNet-18 is 1/49 of the well-known 1.82 GMAC at 224 px (x2 FLOPs per MAC).
    assert rows[0]["gflop_per_call"] == pytest.approx(2 * 1.82 / 49, rel=0.05)
    assert rows[1]["gflop_per_call"] == pytest.approx(2 * rows[0]["gflop_per_call"])
    assert "ONNX Runtime vs PyTorch eager" in render(load_results(tmp_path))


@pytest.mark.slow
def test_bench_endpoint_smoke(tmp_path: Path) -> None:
    assert bench_endpoint.main(["--smoke", "--save", "--results-dir", str(tmp_path)]) == 0
    result = load_results(tmp_path)[0]
    assert result.name == "endpoint_local_cpu"
    load, overhead = result.tables
    assert [row["concurrency"] for row in load["rows"]] == [1, 2]
    for row in load["rows"]:
        assert row["requests"] == 3 * row["concurrency"]
        assert 0 < row["p50_ms"] <= row["p99_ms"]
        assert row["requests_per_s"] > 0 and row["server_run_ms_p50"] > 0
    (row,) = overhead["rows"]
    assert row["overhead_ms"] == pytest.approx(row["http_p50_ms"] - row["run_in_process_ms"])
    assert row["outside_run_ms"] == pytest.approx(row["http_p50_ms"] - row["server_run_ms"])
    assert "Local endpoint (azmlinfsrv) end to end" in render([result])


def test_smoke_runs_save_nothing_without_save(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(bench_endpoint, "run", lambda *args, **kwargs: ([], []))
    monkeypatch.setattr(bench_endpoint, "make_tiny_folder", lambda folder: folder)
    assert bench_endpoint.main(["--smoke", "--results-dir", str(tmp_path)]) == 0
    assert not list(tmp_path.iterdir())
