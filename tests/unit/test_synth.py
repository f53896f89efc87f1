"""Synthetic datasets: determinism, class balance, broken files, folder safety, readable by the data layer."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from training_scripts.image_folder import scan_image_folder
from training_scripts.synth import class_counts, synth_images, synth_text
from training_scripts.text_table import read_text_table


def _files(root: Path) -> dict[str, bytes]:
    return {str(path.relative_to(root)): path.read_bytes() for path in sorted(root.rglob("*")) if path.is_file()}


def test_images_are_deterministic_for_a_seed(tmp_path: Path) -> None:
    first = synth_images(tmp_path / "a", per_class=6, image_size=32, seed=3, corrupt=2)
    synth_images(tmp_path / "b", per_class=6, image_size=32, seed=3, corrupt=2)
    synth_images(tmp_path / "c", per_class=6, image_size=32, seed=4, corrupt=2)
    a, b, c = _files(tmp_path / "a"), _files(tmp_path / "b"), _files(tmp_path / "c")
    a.pop("synth.json"), b.pop("synth.json"), c.pop("synth.json")
    assert a == b
    assert a.keys() == c.keys() and a != c
    assert first.counts == {"normal": 6, "pneumonia": 2} and first.total == 8 and first.corrupt == 2


def test_class_counts_follow_the_imbalance() -> None:
    assert class_counts(["normal", "pneumonia"], 300, 3.0) == {"normal": 300, "pneumonia": 100}
    assert class_counts(["a", "b", "c"], 30, 4.0) == {"a": 30, "b": 15, "c": 8}
    assert class_counts(["a", "b"], 5, 1.0) == {"a": 5, "b": 5}
    assert class_counts(["a", "b"], 2, 100.0) == {"a": 2, "b": 1}
    with pytest.raises(ValueError, match="imbalance"):
        class_counts(["a", "b"], 10, 0.5)
    with pytest.raises(ValueError, match="two distinct"):
        class_counts(["a", "a"], 10, 1.0)


def test_image_layout_modes_and_broken_files(tmp_path: Path) -> None:
    summary = synth_images(tmp_path / "xr", per_class=8, image_size=48, imbalance=2, corrupt=4)
    assert summary.describe() == f"wrote 12 images to {tmp_path / 'xr'}: normal 8, pneumonia 4 (+4 deliberately broken)"
    first = Image.open(tmp_path / "xr" / "normal" / "normal_00000.png")
    assert first.mode == "L" and first.size == (48, 48)
    index = scan_image_folder(tmp_path / "xr")
    assert index.classes == ["normal", "pneumonia"]
    assert index.class_counts() == {"normal": 8, "pneumonia": 4}
    assert sorted(path.name for path, _ in index.skipped) == [
        "corrupt_000.jpg",
        "corrupt_001.png",
        "corrupt_002.png",
        "corrupt_003.jpeg",
    ]

    synth_images(tmp_path / "wide", per_class=3, image_size=32, mode="I;16")
    wide = Image.open(tmp_path / "wide" / "pneumonia" / "pneumonia_00000.png")
    values = np.asarray(wide)
    assert wide.mode == "I;16" and values.max() <= 4095 and values.max() - values.min() > 1500
    synth_images(tmp_path / "rgb", per_class=3, image_size=32, mode="RGB")
    assert Image.open(tmp_path / "rgb" / "normal" / "normal_00000.png").mode == "RGB"


def test_positive_class_has_lung_opacities(tmp_path: Path) -> None:
    # Not a learnability test: only that the sick class is, on average, brighter inside the lung fields.
    synth_images(tmp_path / "xr", per_class=40, image_size=32, imbalance=1, seed=1)

    def lung_mean(name: str) -> float:
        stack = np.stack([np.asarray(Image.open(p), dtype=np.float32) for p in (tmp_path / "xr" / name).glob("*.png")])
        return float(stack[:, 8:20, 4:12].mean() + stack[:, 8:20, 20:28].mean()) / 2

    assert lung_mean("pneumonia") - lung_mean("normal") > 5


def _noise_level(path: Path) -> float:
    """Robust noise estimate: median absolute Laplacian of the image (bigger for noisier images)."""
    pixels = np.asarray(Image.open(path), dtype=np.float64)
    laplacian = 4 * pixels[1:-1, 1:-1] - pixels[:-2, 1:-1] - pixels[2:, 1:-1] - pixels[1:-1, :-2] - pixels[1:-1, 2:]
    return float(np.median(np.abs(laplacian)))


def test_noise_level_varies_per_image_not_per_class(tmp_path: Path) -> None:
    """A class-wide noise level is a shortcut: a model learns it and fails on data made with another seed."""
    synth_images(tmp_path / "images", per_class=40, image_size=64, imbalance=1.0, seed=3)
    for name in ("normal", "pneumonia"):
        levels = np.array([_noise_level(path) for path in sorted((tmp_path / "images" / name).glob("*.png"))])
        assert np.percentile(levels, 90) / np.percentile(levels, 10) > 1.3, (name, levels.min(), levels.max())


def test_image_folder_safety(tmp_path: Path) -> None:
    out = tmp_path / "xr"
    synth_images(out, per_class=2, image_size=16)
    with pytest.raises(FileExistsError, match="--overwrite"):
        synth_images(out, per_class=2, image_size=16)
    again = synth_images(out, per_class=3, image_size=16, overwrite=True)
    assert again.counts == {"normal": 3, "pneumonia": 1}
    assert len(list((out / "normal").iterdir())) == 3

    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "thesis.tex").write_text("keep me")
    with pytest.raises(FileExistsError, match="refusing to delete"):
        synth_images(foreign, per_class=2, overwrite=True)
    assert (foreign / "thesis.tex").read_text() == "keep me"


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"mode": "CMYK"}, "mode must be one of"),
        ({"classes": ("a", "b", "c", "d", "e")}, "at most 4"),
        ({"per_class": 0}, ">= 1"),
        ({"image_size": 8}, "image_size"),
        ({"corrupt": -1}, "corrupt"),
    ],
)
def test_image_argument_errors(tmp_path: Path, kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        synth_images(tmp_path / "x", **kwargs)  # type: ignore[arg-type]


def test_text_csv_is_deterministic_imbalanced_and_readable(tmp_path: Path) -> None:
    summary = synth_text(tmp_path / "a.csv", n=400, imbalance=3, seed=5, corrupt=4)
    synth_text(tmp_path / "b.csv", n=400, imbalance=3, seed=5, corrupt=4)
    assert (tmp_path / "a.csv").read_bytes() == (tmp_path / "b.csv").read_bytes()
    assert summary.total == 400 and summary.corrupt == 4
    assert 285 <= summary.counts["negative"] <= 315  # 300 before the 1% label noise

    table = read_text_table(tmp_path / "a.csv")
    assert len(table) == 400 and len(table.skipped) == 4
    assert {name: table.labels.count(name) for name in ("negative", "positive")} == summary.counts
    assert any("<br /><br />" in text for text in table.texts)
    assert any("\n" in text for text in table.texts)  # multi-line quoted fields survive the round trip
    assert any("," in text for text in table.texts)


def test_text_jsonl_and_format_rules(tmp_path: Path) -> None:
    summary = synth_text(tmp_path / "r.jsonl", n=60, seed=1, corrupt=4)
    assert summary.params["format"] == "jsonl"
    table = read_text_table(summary.path)
    assert len(table) == 60
    assert sorted(reason.split(" ")[0] for _, reason in table.skipped) == ["empty", "expected", "invalid", "missing"]
    assert synth_text(tmp_path / "plain", n=10, format="jsonl").params["format"] == "jsonl"
    with pytest.raises(ValueError, match="suffix"):
        synth_text(tmp_path / "r.csv", n=10, format="jsonl")
    with pytest.raises(FileExistsError, match="is a folder"):
        synth_text(tmp_path, n=10)
    with pytest.raises(ValueError, match="imbalance"):
        synth_text(tmp_path / "x.csv", n=10, imbalance=0)


def test_synth_imports_no_torch() -> None:
    probe = "import sys, training_scripts.synth; print('torch' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "False"
