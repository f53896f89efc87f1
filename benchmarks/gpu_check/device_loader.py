"""Stage c's input pipeline: decoded uint8 images held on the host, cropped, flipped and normalised on the device.

This is what the decode-once cache of issue 14 feeds the GPU with: uint8 arrays at the resize size, read by index
(here from a synthetic in-memory pool standing in for the memory-mapped cache), copied to the device as uint8 (a
quarter of float32's bytes), then a per-sample random resized crop + horizontal flip (one batched `grid_sample`)
and the ImageNet normalisation, all on the device.

`cache_source` is the one place that knows the project's cache: where training_scripts.image_cache and
image_augment import (they need numpy and Pillow, which the device machine may lack), it builds a real cache of
synthetic PNGs and feeds the step with the project's own `TrainBatchTransform`; otherwise it says why not, and the
synthetic pool with this module's `augment_on_device` (the same operations) is measured instead.
"""

from __future__ import annotations

import importlib
import math
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# torchvision's RandomResizedCrop defaults: 8%-100% of the area, aspect ratio 3/4..4/3.
CROP_SCALE = (0.08, 1.0)
CROP_RATIO = (3 / 4, 4 / 3)


@dataclass(frozen=True)
class Source:
    """Host images (uint8, as the loader reads them) and the device-side transform that turns a batch into inputs."""

    images: torch.Tensor
    transform: Callable[[torch.Tensor], torch.Tensor]
    description: str
    augmentation: str


def synthetic_source(count: int, size: int, out_size: int) -> Source:
    """Random uint8 images [count, 3, size, size] in host memory, with `augment_on_device`."""
    generator = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (count, 3, size, size), dtype=torch.uint8, generator=generator)
    device_generator: dict[str, torch.Generator] = {}

    def transform(batch: torch.Tensor) -> torch.Tensor:
        gen = device_generator.setdefault("g", torch.Generator(device=batch.device).manual_seed(2))
        return augment_on_device(batch, out_size, gen, channels_last=True)

    return Source(
        images,
        transform,
        f"synthetic uint8 tensors ({count} x 3 x {size}^2, host memory)",
        "device_loader.augment_on_device: random resized crop (8-100% area, 3/4-4/3) + flip in one grid_sample, "
        "normalise",
    )


def cache_source(count: int, size: int, out_size: int, workdir: Path) -> tuple[Source | None, str]:
    """The project's decode-once cache of `count` synthetic PNGs built under `workdir`, read through a memory map,
    with image_augment.TrainBatchTransform; or (None, why not)."""
    try:
        image_augment = importlib.import_module("training_scripts.image_augment")
        image_cache = importlib.import_module("training_scripts.image_cache")
        preprocess_config = importlib.import_module("training_scripts.preprocess_config")
        synth = importlib.import_module("training_scripts.synth")
        np = importlib.import_module("numpy")
    except ImportError as exc:
        return None, f"skipped: training_scripts.image_cache not available ({exc})"
    data = workdir / "images"
    synth.synth_images(data, per_class=max(1, count // 2), image_size=size, imbalance=1.0, mode="L")
    classes = sorted(p for p in data.iterdir() if p.is_dir())
    samples = [(path, label) for label, folder in enumerate(classes) for path in sorted(folder.glob("*.png"))]
    settings = image_cache.CacheSettings(resize_size=size, image_size=out_size, channels=3)
    started = time.perf_counter()
    cached = image_cache.ensure_cache(data, samples, settings, workdir / "cache")
    build_s = time.perf_counter() - started
    # Copy-on-write map: torch wants a writable array; the file itself is never written.
    images = torch.from_numpy(np.load(cached.array_path, mmap_mode="c"))
    transform = image_augment.TrainBatchTransform(
        preprocess_config.ImagePreprocessConfig(image_size=out_size, resize_size=size)
    )
    note = (
        f"used: {len(samples)} synthetic {size} px PNGs cached by training_scripts.image_cache.ensure_cache in "
        f"{build_s:.1f} s ({cached.status}), augmented by image_augment.TrainBatchTransform"
    )
    description = f"training_scripts.image_cache memory map {tuple(cached.shape)}"
    augmentation = "image_augment.TrainBatchTransform on the device (random resized crop + flip, normalise)"
    return Source(images, transform, description, augmentation), note


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
    """Endless batches: random rows of the host images, a uint8 copy to the device, the transform there.

    The host side (the gather a memory-mapped cache read does, and pinning) runs in one background thread, `prefetch`
    batches ahead, as a DataLoader worker would, so it overlaps the GPU's work instead of queueing behind it; torch
    releases the GIL inside index_select and pin_memory. Call `close()` when done.
    """

    def __init__(self, source: Source, batch_size: int, device: torch.device, *, prefetch: int = 2) -> None:
        self.source = source
        self.batch_size = batch_size
        self.device = device
        self._host_generator = torch.Generator().manual_seed(1)
        self._pin = device.type == "cuda"
        self._ready: queue.Queue[torch.Tensor] = queue.Queue(maxsize=prefetch)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._produce, name="gpu-check-loader", daemon=True)
        self._thread.start()

    def _host_batch(self) -> torch.Tensor:
        images = self.source.images
        index = torch.randint(0, images.shape[0], (self.batch_size,), generator=self._host_generator)
        host = images.index_select(0, index)
        # A fresh pinned buffer per batch, as DataLoader(pin_memory=True) makes: the caching host allocator keeps it
        # alive until its asynchronous copy has finished, so no buffer is overwritten while in flight.
        return host.pin_memory() if self._pin else host

    def _produce(self) -> None:
        while not self._stop.is_set():
            batch = self._host_batch()
            while not self._stop.is_set():
                try:
                    self._ready.put(batch, timeout=0.1)
                    break
                except queue.Full:
                    continue

    def next_batch(self) -> torch.Tensor:
        uint8 = self._ready.get().to(self.device, non_blocking=self._pin)
        return self.source.transform(uint8).contiguous(memory_format=torch.channels_last)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
