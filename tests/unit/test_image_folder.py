"""The image folder scan: class subfolders, broken files skipped and counted, clear layout errors (no torch)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.image_files import encoded, noise_image, png_with_corrupt_data_but_valid_crc
from training_scripts.image_folder import check_image_file, scan_image_folder
from training_scripts.splits import DatasetError


@pytest.fixture
def xray_folder(tmp_path: Path) -> Path:
    root = tmp_path / "xrays"
    normal, pneumonia = root / "normal", root / "pneumonia"
    (normal / "nested").mkdir(parents=True)
    pneumonia.mkdir()
    (root / ".ipynb_checkpoints").mkdir()
    (root / "__MACOSX").mkdir()
    (root / "__MACOSX" / "._a.png").write_bytes(b"junk")

    noise_image(seed=1).save(normal / "a.PNG")
    noise_image(seed=2).convert("L").save(normal / "b.jpeg")
    noise_image(seed=3).save(normal / "nested" / "c.bmp")
    Image.fromarray(np.arange(576, dtype=np.uint16).reshape(24, 24) * 7).save(normal / "d_16bit.png")
    (normal / "notes.txt").write_text("not an image, ignored")
    (normal / ".hidden.png").write_bytes(b"ignored, hidden")

    noise_image(seed=4).convert("RGBA").save(pneumonia / "e.png")
    noise_image(seed=5).save(pneumonia / "f.JPG")
    (pneumonia / "g.jpg").write_text("this is text, not a JPEG")
    png = encoded(noise_image(seed=6), "PNG")
    (pneumonia / "h_truncated.png").write_bytes(png[: len(png) // 2])
    jpeg = encoded(noise_image((64, 64), seed=7), "JPEG")
    (pneumonia / "i_truncated.jpg").write_bytes(jpeg[: len(jpeg) // 2])
    (pneumonia / "j_trailing.jpg").write_bytes(jpeg + b"camera trailer")
    (pneumonia / "k_empty.png").write_bytes(b"")
    return root


def test_scan_lists_images_and_skips_broken_ones(xray_folder: Path) -> None:
    index = scan_image_folder(xray_folder)
    assert index.classes == ["normal", "pneumonia"]
    names = [(path.name, label) for path, label in index.samples]
    assert names == [
        ("a.PNG", 0),
        ("b.jpeg", 0),
        ("d_16bit.png", 0),
        ("c.bmp", 0),
        ("e.png", 1),
        ("f.JPG", 1),
        ("j_trailing.jpg", 1),
    ]
    skipped = {path.name: reason for path, reason in index.skipped}
    assert sorted(skipped) == ["g.jpg", "h_truncated.png", "i_truncated.jpg", "k_empty.png"]
    assert all(str(xray_folder) in reason or "cannot" in reason for reason in skipped.values())
    assert index.class_counts() == {"normal": 4, "pneumonia": 3}
    assert index.summary().startswith("7 images in 2 classes (normal 4, pneumonia 3); skipped 4 unreadable file(s)")


def test_full_check_agrees_and_none_check_keeps_everything(xray_folder: Path) -> None:
    quick = scan_image_folder(xray_folder)
    full = scan_image_folder(xray_folder, check="full", workers=2)
    assert full.samples == quick.samples and [p for p, _ in full.skipped] == [p for p, _ in quick.skipped]
    unchecked = scan_image_folder(xray_folder, check="none")
    assert len(unchecked.samples) == 11 and unchecked.skipped == []


def test_scan_max_pixels(xray_folder: Path) -> None:
    Image.new("L", (100, 100)).save(xray_folder / "normal" / "big.png")
    index = scan_image_folder(xray_folder, max_pixels=24 * 24)
    reasons = {path.name: reason for path, reason in index.skipped}
    assert "more than the limit of 576" in reasons["big.png"]


def test_quick_check_misses_corrupt_compressed_data_that_full_check_catches(tmp_path: Path) -> None:
    path = tmp_path / "sneaky.png"
    path.write_bytes(png_with_corrupt_data_but_valid_crc())
    assert check_image_file(path, "quick") is None
    problem = check_image_file(path, "full")
    assert problem is not None and "sneaky.png" in problem


def test_layout_errors(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="does not exist; expected one subfolder per class"):
        scan_image_folder(tmp_path / "missing")
    (tmp_path / "file.png").write_bytes(encoded(noise_image(), "PNG"))
    with pytest.raises(DatasetError, match="is a file, not a folder"):
        scan_image_folder(tmp_path / "file.png")
    with pytest.raises(DatasetError, match=r"found 1 image\(s\) directly in .* but no class subfolders"):
        scan_image_folder(tmp_path)
    (tmp_path / "only").mkdir()
    with pytest.raises(DatasetError, match=r"only one class folder \('only'\)"):
        scan_image_folder(tmp_path)


def test_class_without_usable_images_is_named(xray_folder: Path) -> None:
    empty = xray_folder / "covid"
    empty.mkdir()
    (empty / "scan.tif").write_bytes(b"II*\x00")  # TIFF is not one of IMAGE_EXTENSIONS (.dcm now is)
    (empty / "broken.png").write_bytes(b"nope")
    with pytest.raises(
        DatasetError, match=r"'covid' \(1 unreadable image\(s\); 1 file\(s\) with other extensions: .tif\)"
    ):
        scan_image_folder(xray_folder)


def test_no_usable_images_at_all(tmp_path: Path) -> None:
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
    (tmp_path / "a" / "x.txt").write_text("x")
    with pytest.raises(DatasetError, match=r"no usable images at all: 'a' \(1 file\(s\) .*\.txt\), 'b' \(empty\)"):
        scan_image_folder(tmp_path)
