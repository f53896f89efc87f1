"""The training-throughput, image-decode, image-cache and CLI-latency benchmarks run at tiny sizes and render."""

from __future__ import annotations

from pathlib import Path

import pytest

from benchmarks import bench_cli, bench_decode, bench_image_cache, bench_training
from benchmarks.common import load_results
from benchmarks.report import render


@pytest.mark.slow
def test_bench_training_smoke_writes_both_tables(tmp_path: Path) -> None:
    assert bench_training.main(["--smoke", "--save", "--threads", "1", "--results-dir", str(tmp_path)]) == 0
    (result,) = load_results(tmp_path)
    assert result.name == "training_throughput_cpu"
    train, loader = result.tables
    assert {row["case"] for row in train["rows"]} == {"resnet18 32px (smoke)", "lstm tiny (smoke)"}
    assert all(row["samples/s"] > 0 for row in train["rows"]) and loader["rows"][0]["images/s"] > 0
    assert "no GPU was lent" in result.notes[0]
    assert "## Training throughput (CPU)" in render([result])


def test_bench_cli_smoke_times_help_and_a_dry_run(tmp_path: Path) -> None:
    assert bench_cli.main(["--smoke", "--save", "--results-dir", str(tmp_path)]) == 0
    (result,) = load_results(tmp_path)
    rows = result.tables[0]["rows"]
    assert [row["command"] for row in rows] == ["azure-dl --help", "azure-dl submit resnet --dry-run --out DIR"]
    assert all(row["median s"] > 0 and row["budget s"] for row in rows)


def test_bench_decode_smoke_times_every_format(tmp_path: Path) -> None:
    assert bench_decode.main(["--smoke", "--save", "--results-dir", str(tmp_path)]) == 0
    (result,) = load_results(tmp_path)
    rows = result.tables[0]["rows"]
    assert [row["format"] for row in rows] == [
        "JPEG (8-bit, quality 95)",
        "PNG 8-bit",
        "PNG 16-bit (12 bits used)",
        "DICOM 12-bit, no window",
        "DICOM 12-bit, windowed",
    ]
    assert all(row["ms"] > 0 and row["pixels"] == "128x128" for row in rows)
    assert "## Image decode per format" in render([result])


@pytest.mark.slow
def test_bench_image_cache_smoke_puts_decode_and_cache_side_by_side(tmp_path: Path) -> None:
    assert bench_image_cache.main(["--smoke", "--save", "--results-dir", str(tmp_path)]) == 0
    (result,) = load_results(tmp_path)
    loaders, costs, epochs = result.tables
    assert [row["loader"].split()[0] for row in loaders["rows"]] == ["decode", "cache", "cache", "decode"]
    assert all(row["images/s per core"] > 0 for row in loaders["rows"])
    assert [row["source"] for row in costs["rows"]] == ["128 px 16-bit PNG (12 bits used)", "128 px DICOM, windowed"]
    assert [row["loader"] for row in epochs["rows"]] == ["decode every epoch", "cache"] * 2
    assert "Decode-once image cache" in render([result])
