"""Stage c's input pipeline: decoded uint8 images held on the host, cropped, flipped and normalised on the device.

This is what the decode-once cache of issue 14 feeds the GPU with: uint8 arrays at the resize size, read by index
(here from a synthetic in-memory pool standing in for the memory-mapped cache), copied to the device as uint8 (a
quarter of float32's bytes), then a per-sample random resized crop + horizontal flip (one batched `grid_sample`)
and the ImageNet normalisation, all on the device.

WIRE-AFTER-MERGE: `cache_pool` below is the one place that knows about training_scripts.image_cache (written on
another branch). Until the lead wires it, it reports why it was not used and the synthetic pool is measured.
"""

from __future__ import annotations

import importlib
import math
from pathlib import Path

import torch
import torch.nn.functional as F

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# torchvision's RandomResizedCrop defaults: 8%-100% of the area, aspect ratio 3/4..4/3.
CROP_SCALE = (0.08, 1.0)
CROP_RATIO = (3 / 4, 4 / 3)


def synthetic_pool(count: int, size: int, *, seed: int = 0) -> torch.Tensor:
    """`count` random uint8 RGB images [count, 3, size, size] on the host (pinned when CUDA can use it)."""
    generator = torch.Generator().manual_seed(seed)
    pool = torch.randint(0, 256, (count, 3, size, size), dtype=torch.uint8, generator=generator)
    return pool.pin_memory() if torch.cuda.is_available() else pool


def cache_pool(count: int, size: int, workdir: Path) -> tuple[torch.Tensor | None, str]:
    """Images read back from training_scripts.image_cache, or (None, why not). WIRE-AFTER-MERGE: see the module doc.

    When the module exists, this should write `count` synthetic PNGs under `workdir`, build the cache there at
    `size` px and return its uint8 arrays as one [count, 3, size, size] tensor (pinned on CUDA).
    """
    try:
        importlib.import_module("training_scripts.image_cache")
    except ImportError:
        return None, "skipped: training_scripts.image_cache not available"
    del count, size, workdir  # used once the cache's API is wired in
    return None, "skipped: training_scripts.image_cache is present but not wired into the GPU check yet"


def _crop_affines(batch: int, device: torch.device, generator: torch.Generator) -> torch.Tensor:
    """Per-sample affine matrices [batch, 2, 3] for `affine_grid`: a random resized crop, mirrored half the time.

    In `affine_grid`'s normalised coordinates the whole image spans [-1, 1]: a crop of relative width w and
    height h centred at (cx, cy) is the matrix [[w, 0, cx], [0, h, cy]]; a negative w mirrors it.
    """
    area = torch.empty(batch, device=device).uniform_(*CROP_SCALE, generator=generator)
    log_ratio = torch.empty(batch, device=device).uniform_(
        math.log(CROP_RATIO[0]), math.log(CROP_RATIO[1]), generator=generator
    )
    ratio = torch.exp(log_ratio)
    # Relative width and height of the crop, clamped to the image (torchvision retries instead; the clamp keeps
    # the batch a single kernel and the area within range).
    width = torch.sqrt(area * ratio).clamp(max=1.0)
    height = torch.sqrt(area / ratio).clamp(max=1.0)
    centre_x = (torch.rand(batch, device=device, generator=generator) * 2 - 1) * (1 - width)
    centre_y = (torch.rand(batch, device=device, generator=generator) * 2 - 1) * (1 - height)
    flip = torch.where(torch.rand(batch, device=device, generator=generator) < 0.5, -1.0, 1.0)
    theta = torch.zeros(batch, 2, 3, device=device)
    theta[:, 0, 0] = width * flip
    theta[:, 0, 2] = centre_x
    theta[:, 1, 1] = height
    theta[:, 1, 2] = centre_y
    return theta


def augment_on_device(
    images: torch.Tensor, out_size: int, generator: torch.Generator, *, channels_last: bool
) -> torch.Tensor:
    """uint8 [N, 3, S, S] on the device -> float32 [N, 3, out, out]: random resized crop, flip, normalise."""
    n = images.shape[0]
    theta = _crop_affines(n, images.device, generator)
    grid = F.affine_grid(theta, [n, 3, out_size, out_size], align_corners=False)
    pixels = F.grid_sample(images.float(), grid, mode="bilinear", padding_mode="border", align_corners=False)
    mean = torch.tensor(IMAGENET_MEAN, device=images.device).view(1, 3, 1, 1) * 255
    std = torch.tensor(IMAGENET_STD, device=images.device).view(1, 3, 1, 1) * 255
    out = (pixels - mean) / std
    return out.contiguous(memory_format=torch.channels_last) if channels_last else out


class DeviceFedBatches:
    """Endless batches: random indices into the host pool, a uint8 copy to the device, augmentation there."""

    def __init__(
        self, pool: torch.Tensor, batch_size: int, out_size: int, device: torch.device, *, channels_last: bool
    ) -> None:
        self.pool = pool
        self.batch_size = batch_size
        self.out_size = out_size
        self.device = device
        self.channels_last = channels_last
        self._host_generator = torch.Generator().manual_seed(1)
        self._device_generator = torch.Generator(device=device).manual_seed(2)
        self._pinned = pool.is_pinned()

    def next_batch(self) -> torch.Tensor:
        index = torch.randint(0, self.pool.shape[0], (self.batch_size,), generator=self._host_generator)
        host = self.pool.index_select(0, index)  # the gather a memory-mapped cache read does
        if self._pinned:
            host = host.pin_memory()  # as DataLoader(pin_memory=True) does, so the copy below is asynchronous
        uint8 = host.to(self.device, non_blocking=self._pinned)
        return augment_on_device(uint8, self.out_size, self._device_generator, channels_last=self.channels_last)
