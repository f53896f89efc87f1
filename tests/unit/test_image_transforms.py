"""The evaluation image transform: torchvision's resize/crop geometry, normalisation, batching paths and bytes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from training_scripts.image_transforms import center_crop, image_to_array, preprocess_images, resize_shorter_side
from training_scripts.preprocess_config import ImagePreprocessConfig


def test_resize_and_crop_follow_torchvision_geometry() -> None:
    assert resize_shorter_side(Image.new("RGB", (200, 300)), 256).size == (256, 384)
    assert resize_shorter_side(Image.new("RGB", (301, 200)), 100).size == (150, 100)
    # torchvision rounds the crop offset: (11 - 4) / 2 = 3.5 -> 4 (round half to even)
    stripes = Image.fromarray(np.arange(11, dtype=np.uint8)[None, :].repeat(4, 0))
    assert np.asarray(center_crop(stripes, 4))[0].tolist() == [4, 5, 6, 7]


def test_image_to_array_shape_and_normalisation() -> None:
    cfg = ImagePreprocessConfig(image_size=32, resize_size=40)
    arr = image_to_array(Image.new("RGB", (90, 60), (255, 128, 0)), cfg)
    assert arr.shape == (3, 32, 32) and arr.dtype == np.float32 and arr.flags.c_contiguous
    expected = [(1.0 - 0.485) / 0.229, (128 / 255 - 0.456) / 0.224, (0.0 - 0.406) / 0.225]
    assert np.allclose(arr.reshape(3, -1).mean(axis=1), expected, atol=1e-5)


def test_preprocess_images_batches_paths_and_bytes(tmp_path: Path) -> None:
    cfg = ImagePreprocessConfig(image_size=16, resize_size=20)
    path = tmp_path / "a.png"
    Image.new("L", (30, 30), 50).save(path)
    batch = preprocess_images([path, path.read_bytes()], cfg)
    assert batch.shape == (2, 3, 16, 16) and batch.dtype == np.float32
    assert np.array_equal(batch[0], batch[1])
    assert preprocess_images([], cfg).shape == (0, 3, 16, 16)
