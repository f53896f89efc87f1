"""Image folders as a torch Dataset for the ResNet: the train/eval transforms and decode failures during training.

The folder scan (class subfolders, broken files skipped and counted up front) is image_folder.py. A file that
passes the scan and still fails to decode in `ImageDataset.__getitem__` (say, a PNG with a corrupt compressed
stream but valid checksums) is replaced by the next sample that decodes, so batch shapes stay fixed and no fit
loop needs an empty-batch case. Its index is flagged in a shared-memory tensor that DataLoader worker processes
write and the caller reads with `ImageDataset.failed_samples()` (per process; with DDP each rank counts its own
shard).

Evaluation uses exactly `image_decode.open_image` + `image_transforms.image_to_array`, the scoring scripts' code,
so validation metrics are bit-identical to what the served model computes. Training augmentation is written with
PIL + numpy + torch (torchvision does not install here) and draws from torch's RNG, so DataLoader worker
seeding makes it reproducible.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

import torch
from PIL import Image
from torch.utils.data import Dataset

from training_scripts.image_decode import open_image
from training_scripts.image_formats import ImageDecodeError, ImageSource
from training_scripts.image_transforms import image_to_array, normalize_image
from training_scripts.preprocess_config import ImagePreprocessConfig
from training_scripts.splits import DatasetError

# Milder than torchvision's (0.08, 1.0): a chest X-ray's finding can sit in a small part of the lung fields,
# and an 8% crop often contains none of it, which turns a positive image into a mislabelled crop.
DEFAULT_CROP_SCALE = (0.5, 1.0)
DEFAULT_CROP_RATIO = (3.0 / 4.0, 4.0 / 3.0)


# ------------------------------------------------------------------------------------------------ transforms


class EvalTransform:
    """Path or bytes -> float32 tensor [3, H, W], exactly the scoring scripts' preprocessing."""

    def __init__(self, cfg: ImagePreprocessConfig, max_pixels: int | None = None) -> None:
        self.cfg = cfg
        self.max_pixels = max_pixels

    def __call__(self, source: ImageSource) -> torch.Tensor:
        return torch.from_numpy(image_to_array(open_image(source, max_pixels=self.max_pixels), self.cfg))


def eval_transform(cfg: ImagePreprocessConfig, max_pixels: int | None = None) -> EvalTransform:
    return EvalTransform(cfg, max_pixels)


def random_resized_crop_box(
    width: int, height: int, scale: tuple[float, float], ratio: tuple[float, float]
) -> tuple[int, int, int, int]:
    """torchvision's RandomResizedCrop.get_params on torch's RNG, as a PIL box (left, top, right, bottom)."""
    area = width * height
    log_ratio = (math.log(ratio[0]), math.log(ratio[1]))
    for _ in range(10):
        target_area = area * torch.empty(1).uniform_(scale[0], scale[1]).item()
        aspect = math.exp(torch.empty(1).uniform_(log_ratio[0], log_ratio[1]).item())
        w = round(math.sqrt(target_area * aspect))
        h = round(math.sqrt(target_area / aspect))
        if 0 < w <= width and 0 < h <= height:
            top = int(torch.randint(0, height - h + 1, size=(1,)).item())
            left = int(torch.randint(0, width - w + 1, size=(1,)).item())
            return left, top, left + w, top + h
    # Fallback, as torchvision: the largest central crop within the ratio range.
    in_ratio = width / height
    if in_ratio < min(ratio):
        w, h = width, round(width / min(ratio))
    elif in_ratio > max(ratio):
        w, h = round(height * max(ratio)), height
    else:
        w, h = width, height
    top, left = (height - h) // 2, (width - w) // 2
    return left, top, left + w, top + h


class TrainTransform:
    """Path -> augmented float32 tensor [3, S, S]: random resized crop, horizontal flip, normalisation.

    Defaults: crop area scale DEFAULT_CROP_SCALE (milder than torchvision's, see above), aspect ratio 3/4..4/3,
    flip probability 0.5. All randomness comes from torch's RNG.
    """

    def __init__(
        self,
        cfg: ImagePreprocessConfig,
        scale: tuple[float, float] = DEFAULT_CROP_SCALE,
        ratio: tuple[float, float] = DEFAULT_CROP_RATIO,
        hflip: float = 0.5,
        max_pixels: int | None = None,
    ) -> None:
        if not 0 < scale[0] <= scale[1] <= 1:
            raise ValueError(f"crop scale must satisfy 0 < min <= max <= 1, got {scale}")
        if not 0 < ratio[0] <= ratio[1]:
            raise ValueError(f"crop ratio must satisfy 0 < min <= max, got {ratio}")
        if not 0 <= hflip <= 1:
            raise ValueError(f"hflip probability must be in [0, 1], got {hflip}")
        self.cfg, self.scale, self.ratio, self.hflip, self.max_pixels = cfg, scale, ratio, hflip, max_pixels

    def __call__(self, source: ImageSource) -> torch.Tensor:
        img = open_image(source, max_pixels=self.max_pixels)
        box = random_resized_crop_box(img.width, img.height, self.scale, self.ratio)
        size = self.cfg.image_size
        img = img.resize((size, size), Image.Resampling.BILINEAR, box=box)
        if torch.rand(1).item() < self.hflip:
            img = img.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        return torch.from_numpy(normalize_image(img, self.cfg))


def train_transform(
    cfg: ImagePreprocessConfig,
    scale: tuple[float, float] = DEFAULT_CROP_SCALE,
    hflip: float = 0.5,
    max_pixels: int | None = None,
) -> TrainTransform:
    return TrainTransform(cfg, scale=scale, hflip=hflip, max_pixels=max_pixels)


# --------------------------------------------------------------------------------------------------- dataset


class ImageDataset(Dataset[tuple[torch.Tensor, int]]):
    """(path, label) samples -> (float32 tensor [3, H, W], label) through `transform`.

    With skip_failures (default) an image that fails to decode is replaced by the next one that decodes and is
    recorded for `failed_samples()` (see the module docstring); without it the ImageDecodeError propagates.
    """

    def __init__(
        self,
        samples: Sequence[tuple[Path, int]],
        transform: Callable[[Path], torch.Tensor],
        skip_failures: bool = True,
    ) -> None:
        self.samples = [(Path(path), int(label)) for path, label in samples]
        self.transform = transform
        self.skip_failures = skip_failures
        # Shared memory, so flags set inside DataLoader worker processes are visible here.
        self._failed = torch.zeros(len(self.samples), dtype=torch.uint8).share_memory_()

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        if not self.skip_failures:
            path, label = self.samples[index]
            return self.transform(path), label
        for offset in range(len(self.samples)):
            position = (index + offset) % len(self.samples)
            if self._failed[position]:
                continue
            path, label = self.samples[position]
            try:
                return self.transform(path), label
            except (ImageDecodeError, OSError) as exc:  # OSError: the file vanished or became unreadable mid-run
                self._failed[position] = 1
                print(f"warning: skipping unreadable image {path}: {exc}", file=sys.stderr, flush=True)
        raise DatasetError(f"none of the {len(self.samples)} images in this dataset could be decoded")

    def failed_samples(self) -> list[Path]:
        """Paths that failed to decode while loading (in this process and its DataLoader workers)."""
        return [self.samples[i][0] for i in torch.nonzero(self._failed).flatten().tolist()]
