"""Image folders: scanning, broken files skipped and counted, clear layout errors, transforms, the Dataset."""

from __future__ import annotations

import io
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from training_scripts.image_data import (
    ImageDataset,
    TrainTransform,
    check_image_file,
    eval_transform,
    random_resized_crop_box,
    scan_image_folder,
    train_transform,
)
from training_scripts.preprocess import (
    ImageDecodeError,
    ImagePreprocessConfig,
    image_to_array,
    normalize_image,
    open_image,
)
from training_scripts.splits import DatasetError

CFG = ImagePreprocessConfig(image_size=16, resize_size=20)


def _noise(size: tuple[int, int] = (24, 24), seed: int = 0) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8))


def _encoded(img: Image.Image, fmt: str) -> bytes:
    buffer = io.BytesIO()
    img.save(buffer, format=fmt)
    return buffer.getvalue()


def _png_with_corrupt_data_but_valid_crc() -> bytes:
    """A PNG whose chunk checksums are right but whose compressed pixels are garbage."""
    data = bytearray(_encoded(_noise((32, 32)), "PNG"))
    start = data.index(b"IDAT") - 4
    (length,) = struct.unpack(">I", data[start : start + 4])
    payload_at = start + 8
    for offset in range(10, min(length, 200)):
        data[payload_at + offset] ^= 0x5A
    crc = zlib.crc32(bytes(data[start + 4 : payload_at + length]))
    data[payload_at + length : payload_at + length + 4] = struct.pack(">I", crc)
    return bytes(data)


@pytest.fixture
def xray_folder(tmp_path: Path) -> Path:
    root = tmp_path / "xrays"
    normal, pneumonia = root / "normal", root / "pneumonia"
    (normal / "nested").mkdir(parents=True)
    pneumonia.mkdir()
    (root / ".ipynb_checkpoints").mkdir()
    (root / "__MACOSX").mkdir()
    (root / "__MACOSX" / "._a.png").write_bytes(b"junk")

    _noise(seed=1).save(normal / "a.PNG")
    _noise(seed=2).convert("L").save(normal / "b.jpeg")
    _noise(seed=3).save(normal / "nested" / "c.bmp")
    Image.fromarray(np.arange(576, dtype=np.uint16).reshape(24, 24) * 7).save(normal / "d_16bit.png")
    (normal / "notes.txt").write_text("not an image, ignored")
    (normal / ".hidden.png").write_bytes(b"ignored, hidden")

    _noise(seed=4).convert("RGBA").save(pneumonia / "e.png")
    _noise(seed=5).save(pneumonia / "f.JPG")
    (pneumonia / "g.jpg").write_text("this is text, not a JPEG")
    png = _encoded(_noise(seed=6), "PNG")
    (pneumonia / "h_truncated.png").write_bytes(png[: len(png) // 2])
    jpeg = _encoded(_noise((64, 64), seed=7), "JPEG")
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
    path.write_bytes(_png_with_corrupt_data_but_valid_crc())
    assert check_image_file(path, "quick") is None
    problem = check_image_file(path, "full")
    assert problem is not None and "sneaky.png" in problem


def test_layout_errors(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="does not exist; expected one subfolder per class"):
        scan_image_folder(tmp_path / "missing")
    (tmp_path / "file.png").write_bytes(_encoded(_noise(), "PNG"))
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


def test_eval_transform_is_the_scoring_preprocessing(xray_folder: Path) -> None:
    path = xray_folder / "normal" / "d_16bit.png"
    tensor = eval_transform(CFG)(path)
    assert tensor.dtype == torch.float32 and tensor.shape == (3, 16, 16)
    assert np.array_equal(tensor.numpy(), image_to_array(open_image(path), CFG))


def test_train_transform_is_seeded_by_torch(xray_folder: Path) -> None:
    path = xray_folder / "normal" / "a.PNG"
    transform = train_transform(CFG)
    torch.manual_seed(1)
    first = transform(path)
    torch.manual_seed(1)
    assert torch.equal(transform(path), first)
    assert first.shape == (3, 16, 16) and first.dtype == torch.float32
    others = [transform(path) for _ in range(5)]
    assert any(not torch.equal(first, other) for other in others)


def test_train_transform_full_crop_and_flip(tmp_path: Path) -> None:
    img = _noise((40, 40), seed=9)
    path = tmp_path / "x.png"
    img.save(path)
    out = TrainTransform(CFG, scale=(1.0, 1.0), ratio=(1.0, 1.0), hflip=1.0)(path)
    expected = img.resize((16, 16), Image.Resampling.BILINEAR).transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    assert np.allclose(out.numpy(), normalize_image(expected, CFG))
    with pytest.raises(ValueError, match="crop scale"):
        TrainTransform(CFG, scale=(0.0, 1.0))


def test_random_resized_crop_box_bounds_and_fallback() -> None:
    torch.manual_seed(0)
    for _ in range(50):
        left, top, right, bottom = random_resized_crop_box(200, 100, (0.3, 1.0), (0.75, 4 / 3))
        assert 0 <= left < right <= 200 and 0 <= top < bottom <= 100
        assert 0.3 * 20000 * 0.9 <= (right - left) * (bottom - top) <= 20000
    # A 100x10 strip cannot hold a 3/4..4/3 crop of >= 90% area: central crop of the widest allowed ratio.
    assert random_resized_crop_box(100, 10, (0.9, 1.0), (0.75, 4 / 3)) == (43, 0, 56, 10)


def test_dataset_replaces_and_reports_images_that_fail_late(tmp_path: Path) -> None:
    good_a, broken, good_b = tmp_path / "a.png", tmp_path / "b.png", tmp_path / "c.png"
    _noise(seed=1).save(good_a)
    broken.write_bytes(_png_with_corrupt_data_but_valid_crc())
    _noise(seed=2).save(good_b)
    transform = eval_transform(CFG)
    dataset = ImageDataset([(good_a, 0), (broken, 1), (good_b, 0)], transform)
    image, label = dataset[1]
    assert torch.equal(image, transform(good_b)) and label == 0
    assert dataset.failed_samples() == [broken]
    assert dataset[1][1] == 0  # known failure: no second decode attempt
    strict = ImageDataset([(broken, 1)], transform, skip_failures=False)
    with pytest.raises(ImageDecodeError, match=r"b\.png"):
        strict[0]
    with pytest.raises(DatasetError, match="none of the 1 images"):
        ImageDataset([(broken, 1)], transform)[0]


def test_failures_in_dataloader_workers_reach_the_caller(tmp_path: Path) -> None:
    samples = []
    for i in range(4):
        path = tmp_path / f"{i}.png"
        if i == 2:
            path.write_bytes(b"broken")
        else:
            _noise(seed=i).save(path)
        samples.append((path, i % 2))
    dataset = ImageDataset(samples, eval_transform(CFG))
    loader = torch.utils.data.DataLoader(dataset, batch_size=2, num_workers=2)
    batches = list(loader)
    assert [tuple(images.shape) for images, _ in batches] == [(2, 3, 16, 16), (2, 3, 16, 16)]
    assert dataset.failed_samples() == [tmp_path / "2.png"]
