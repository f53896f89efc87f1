"""Image folders as a torch Dataset: the eval and train transforms, and images that fail to decode during training."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from tests.image_files import noise_image, png_with_corrupt_data_but_valid_crc
from training_scripts.image_data import (
    ImageDataset,
    TrainTransform,
    eval_transform,
    random_resized_crop_box,
    train_transform,
)
from training_scripts.image_decode import open_image
from training_scripts.image_formats import ImageDecodeError
from training_scripts.image_transforms import image_to_array, normalize_image
from training_scripts.preprocess_config import ImagePreprocessConfig
from training_scripts.splits import DatasetError

CFG = ImagePreprocessConfig(image_size=16, resize_size=20)


def test_eval_transform_is_the_scoring_preprocessing(tmp_path: Path) -> None:
    path = tmp_path / "d_16bit.png"
    Image.fromarray(np.arange(576, dtype=np.uint16).reshape(24, 24) * 7).save(path)
    tensor = eval_transform(CFG)(path)
    assert tensor.dtype == torch.float32 and tensor.shape == (3, 16, 16)
    assert np.array_equal(tensor.numpy(), image_to_array(open_image(path), CFG))


def test_train_transform_is_seeded_by_torch(tmp_path: Path) -> None:
    path = tmp_path / "a.PNG"
    noise_image(seed=1).save(path)
    transform = train_transform(CFG)
    torch.manual_seed(1)
    first = transform(path)
    torch.manual_seed(1)
    assert torch.equal(transform(path), first)
    assert first.shape == (3, 16, 16) and first.dtype == torch.float32
    others = [transform(path) for _ in range(5)]
    assert any(not torch.equal(first, other) for other in others)


def test_train_transform_full_crop_and_flip(tmp_path: Path) -> None:
    img = noise_image((40, 40), seed=9)
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
    noise_image(seed=1).save(good_a)
    broken.write_bytes(png_with_corrupt_data_but_valid_crc())
    noise_image(seed=2).save(good_b)
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


def test_a_file_deleted_mid_run_is_replaced_and_counted(tmp_path: Path) -> None:
    """The data folder loses a file after it was listed (a sync, a cleanup job): skipped and counted, no crash."""
    kept, lost = tmp_path / "a.png", tmp_path / "b.png"
    noise_image(seed=1).save(kept)
    noise_image(seed=2).save(lost)
    transform = eval_transform(CFG)
    dataset = ImageDataset([(kept, 0), (lost, 1)], transform)
    lost.unlink()
    image, label = dataset[1]
    assert torch.equal(image, transform(kept)) and label == 0
    assert dataset.failed_samples() == [lost]


def test_failures_in_dataloader_workers_reach_the_caller(tmp_path: Path) -> None:
    samples = []
    for i in range(4):
        path = tmp_path / f"{i}.png"
        if i == 2:
            path.write_bytes(b"broken")
        else:
            noise_image(seed=i).save(path)
        samples.append((path, i % 2))
    dataset = ImageDataset(samples, eval_transform(CFG))
    loader = torch.utils.data.DataLoader(dataset, batch_size=2, num_workers=2)
    batches = list(loader)
    assert [tuple(images.shape) for images, _ in batches] == [(2, 3, 16, 16), (2, 3, 16, 16)]
    assert dataset.failed_samples() == [tmp_path / "2.png"]
