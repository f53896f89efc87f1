"""Training on the decoded-image cache: a Dataset of its uint8 rows, and the train / eval transforms as batched
tensor ops that run on the training device (the GPU when training on CUDA, else the CPU).

The DataLoader only copies uint8 [R, R, C] rows out of the memory-mapped array (a quarter of the bytes of a
float32 image), so workers are barely needed; the float work happens per batch after `batch_to_device`:

- `TrainBatchTransform`: random resized crop (torchvision's RandomResizedCrop parameters, drawn for the whole batch
  from torch's global CPU RNG, which checkpoints save and restore), horizontal flip and resize to `image_size`
  in ONE bilinear `grid_sample` per batch, then normalisation. The crop comes from the stored R-square (the
  central square of the image resized to R on its shorter side), not from the full-resolution original as
  image_data.TrainTransform does: the price of decoding once.
- `EvalBatchTransform`: the centre `image_size` crop and normalisation. The cache stores its square so that this
  crop is exactly the one image_transforms.image_to_array takes (image_cache._square_offset): validation and test
  see the scoring preprocessing's pixels (tests/unit/test_image_cache.py pins it).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from training_scripts.image_data import DEFAULT_CROP_RATIO, DEFAULT_CROP_SCALE
from training_scripts.preprocess_config import ImagePreprocessConfig

_CROP_TRIES = 10  # torchvision's RandomResizedCrop.get_params


class CachedImageDataset(Dataset[tuple[torch.Tensor, int]]):
    """Rows of a cache's `images.npy` -> (uint8 tensor [R, R, C], label). The memmap is opened lazily in each
    process (a pickled memmap would be copied whole into every DataLoader worker)."""

    def __init__(self, array_path: Path, rows: Sequence[int], labels: Sequence[int]) -> None:
        if len(rows) != len(labels):
            raise ValueError(f"{len(rows)} rows but {len(labels)} labels")
        self.array_path = Path(array_path)
        self.rows = np.asarray(rows, dtype=np.int64)
        self.labels = [int(label) for label in labels]  # read by loaders.dataset_labels
        self._array: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.labels)

    def _images(self) -> np.ndarray:
        if self._array is None:
            self._array = np.load(self.array_path, mmap_mode="r")
        return self._array

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        return torch.from_numpy(np.array(self._images()[self.rows[index]])), self.labels[index]

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_array": None}

    def failed_samples(self) -> list[Path]:
        return []  # undecodable images were found, and left out, when the cache was built


def random_resized_crop_boxes(
    count: int,
    width: int,
    height: int,
    scale: tuple[float, float] = DEFAULT_CROP_SCALE,
    ratio: tuple[float, float] = DEFAULT_CROP_RATIO,
) -> torch.Tensor:
    """`count` crop boxes [count, 4] = (left, top, width, height), torchvision's get_params vectorised: up to 10
    tries of area and log-uniform aspect per box, else the largest central crop within the ratio range."""
    area = width * height
    target = area * torch.empty(count, _CROP_TRIES).uniform_(scale[0], scale[1])
    aspect = torch.exp(torch.empty(count, _CROP_TRIES).uniform_(math.log(ratio[0]), math.log(ratio[1])))
    w = torch.round(torch.sqrt(target * aspect))
    h = torch.round(torch.sqrt(target / aspect))
    valid = (w > 0) & (w <= width) & (h > 0) & (h <= height)
    first = torch.argmax(valid.int(), dim=1)  # the first valid try (0 when none is; then `found` is False)
    found = valid.any(dim=1)
    pick = torch.arange(count)
    w, h = w[pick, first], h[pick, first]
    in_ratio = width / height
    if in_ratio < min(ratio):
        fallback_w, fallback_h = width, round(width / min(ratio))
    elif in_ratio > max(ratio):
        fallback_w, fallback_h = round(height * max(ratio)), height
    else:
        fallback_w, fallback_h = width, height
    w = torch.where(found, w, torch.full_like(w, fallback_w))
    h = torch.where(found, h, torch.full_like(h, fallback_h))
    top = torch.floor(torch.rand(count) * (height - h + 1))
    left = torch.floor(torch.rand(count) * (width - w + 1))
    top = torch.where(found, top, torch.floor((height - h) / 2))
    left = torch.where(found, left, torch.floor((width - w) / 2))
    return torch.stack([left, top, w, h], dim=1)


def _as_float_nchw(images: torch.Tensor) -> torch.Tensor:
    """uint8 [B, H, W, C] -> float32 [B, C, H, W] in 0..255."""
    if images.dim() != 4 or images.dtype != torch.uint8:
        raise ValueError(f"expected uint8 images [B, H, W, C], got {images.dtype} {tuple(images.shape)}")
    return images.permute(0, 3, 1, 2).float()


class _Normalize:
    def __init__(self, cfg: ImagePreprocessConfig) -> None:
        self.cfg = cfg
        std = torch.tensor(cfg.std, dtype=torch.float64).view(1, 3, 1, 1)
        mean = torch.tensor(cfg.mean, dtype=torch.float64).view(1, 3, 1, 1)
        # (x / 255 - mean) / std as one multiply-add: the same values to float32 rounding, half the passes.
        self._scale = (1.0 / (255.0 * std)).float()
        self._shift = (-mean / std).float()

    def normalize(self, pixels: torch.Tensor) -> torch.Tensor:
        """float [B, C, H, W] in 0..255 (C = 1 or 3) -> normalised float32 [B, 3, H, W], as normalize_image."""
        if pixels.shape[1] == 1:
            pixels = pixels.expand(-1, 3, -1, -1)
        if self._scale.device != pixels.device:  # moved once, not per batch
            self._scale, self._shift = self._scale.to(pixels.device), self._shift.to(pixels.device)
        return (pixels.contiguous() * self._scale).add_(self._shift)


class EvalBatchTransform(_Normalize):
    """Cached uint8 [B, R, R, C] on any device -> float32 [B, 3, S, S]: centre crop, normalise."""

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        size, stored = self.cfg.image_size, images.shape[-2]
        start = round((stored - size) / 2.0)
        # Cropped while still uint8: a quarter of the bytes to convert.
        return self.normalize(_as_float_nchw(images[:, start : start + size, start : start + size]))


class TrainBatchTransform(_Normalize):
    """Cached uint8 [B, R, R, C] -> float32 [B, 3, S, S]: random resized crop + horizontal flip in one bilinear
    `grid_sample` on the images' device, then normalise. Parameters come from torch's global CPU RNG."""

    def __init__(
        self,
        cfg: ImagePreprocessConfig,
        scale: tuple[float, float] = DEFAULT_CROP_SCALE,
        ratio: tuple[float, float] = DEFAULT_CROP_RATIO,
        hflip: float = 0.5,
    ) -> None:
        super().__init__(cfg)
        if not 0 < scale[0] <= scale[1] <= 1:
            raise ValueError(f"crop scale must satisfy 0 < min <= max <= 1, got {scale}")
        if not 0 < ratio[0] <= ratio[1]:
            raise ValueError(f"crop ratio must satisfy 0 < min <= max, got {ratio}")
        if not 0 <= hflip <= 1:
            raise ValueError(f"hflip probability must be in [0, 1], got {hflip}")
        self.scale, self.ratio, self.hflip = scale, ratio, hflip

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        pixels = _as_float_nchw(images)
        count, _, height, width = pixels.shape
        boxes = random_resized_crop_boxes(count, width, height, self.scale, self.ratio)
        flip = torch.rand(count) < self.hflip
        left, top, w, h = boxes.unbind(1)
        # align_corners=False: -1 and 1 are the outer pixel edges, so the box [left, left + w) maps to
        # [2 left / W - 1, 2 (left + w) / W - 1], which samples the same points as PIL's resize with a box.
        # The grid is separable (x depends on the column, y on the row): built by broadcasting, not affine_grid's
        # batched matrix product, which costs as much as the sampling on a CPU.
        size = self.cfg.image_size
        steps = (torch.arange(size, dtype=torch.float32) * 2 + 1) / size - 1  # output pixel centres in -1..1
        scale_x = torch.where(flip, -w / width, w / width)
        grid_x = (scale_x[:, None] * steps + ((2 * left + w) / width - 1)[:, None]).to(pixels.device)
        grid_y = ((h / height)[:, None] * steps + ((2 * top + h) / height - 1)[:, None]).to(pixels.device)
        grid = torch.stack(
            [grid_x[:, None, :].expand(count, size, size), grid_y[:, :, None].expand(count, size, size)], dim=-1
        )
        crops = F.grid_sample(pixels, grid, mode="bilinear", padding_mode="border", align_corners=False)
        return self.normalize(crops)
