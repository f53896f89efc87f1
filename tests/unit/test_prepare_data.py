"""prepare_data: stratified deterministic splits of image folders and text tables, with bad items reported."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from training_scripts.prepare_data import REPORT_FILE, SPLITS, main, prepare, split_path
from training_scripts.splits import DatasetError
from training_scripts.synth import synth_images


def _tree(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_image_folder_split_is_deterministic_and_reports_bad_files(tmp_path: Path) -> None:
    data = tmp_path / "raw"
    synth_images(data, per_class=12, image_size=16, imbalance=2.0, corrupt=2)

    assert main(["--task", "image", "--data", str(data), "--output", str(tmp_path / "a"), "--seed", "3"]) == 0
    report = json.loads((tmp_path / "a" / REPORT_FILE).read_text())
    assert report["classes"] == ["normal", "pneumonia"]
    assert report["skipped_count"] == 2
    assert all(not item["file"].startswith("/") and item["reason"] for item in report["skipped"])
    # 12 + 6 readable images, split 70/15/15 and stratified: every class in every split.
    assert sum(report["totals"].values()) == 18
    for split in SPLITS:
        folder = split_path(tmp_path / "a", split, "image")
        for name in report["classes"]:
            files = list((folder / name).iterdir())
            assert len(files) == report["counts"][split][name] > 0

    prepare("image", data, tmp_path / "b", val_fraction=0.15, test_fraction=0.15, seed=3)
    prepare("image", data, tmp_path / "c", val_fraction=0.15, test_fraction=0.15, seed=4)
    assert _tree(tmp_path / "a") == _tree(tmp_path / "b")
    assert _tree(tmp_path / "a") != _tree(tmp_path / "c")


def test_text_table_split_writes_jsonl_and_skips_malformed_rows(tmp_path: Path) -> None:
    table = tmp_path / "reviews.csv"
    with table.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["review", "sentiment"])
        for i in range(20):
            writer.writerow([f"review number {i}, with a comma", "pos" if i % 3 else "neg"])
        writer.writerow(["", "pos"])  # empty text: skipped
    report = prepare(
        "text",
        table,
        tmp_path / "out",
        val_fraction=0.2,
        test_fraction=0.2,
        seed=0,
        text_column="review",
        label_column="sentiment",
    )
    assert report["classes"] == ["neg", "pos"]
    assert report["skipped_count"] == 1 and report["skipped"][0]["line"] == 22
    rows = {
        split: [json.loads(line) for line in split_path(tmp_path / "out", split, "text").read_text().splitlines()]
        for split in SPLITS
    }
    assert sum(len(r) for r in rows.values()) == 20
    assert {row["label"] for row in rows["test"]} == {"neg", "pos"}
    assert rows["train"][0].keys() == {"text", "label"}
    assert {row["text"] for r in rows.values() for row in r} == {f"review number {i}, with a comma" for i in range(20)}


def test_refuses_missing_splits_and_non_empty_output(tmp_path: Path) -> None:
    data = tmp_path / "raw"
    synth_images(data, per_class=4, image_size=16)
    with pytest.raises(DatasetError, match="needs a validation and a test split"):
        prepare("image", data, tmp_path / "o", val_fraction=0.2, test_fraction=0.0, seed=0)
    (tmp_path / "used").mkdir()
    (tmp_path / "used" / "x").write_text("x")
    with pytest.raises(DatasetError, match="not empty"):
        prepare("image", data, tmp_path / "used", val_fraction=0.2, test_fraction=0.2, seed=0)


def test_cli_reports_a_bad_dataset_without_a_traceback(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "only").mkdir()
    code = main(["--task", "image", "--data", str(tmp_path), "--output", str(tmp_path / "out")])
    assert code == 1
    assert "error:" in capsys.readouterr().err
