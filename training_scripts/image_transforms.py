"""The evaluation image transform: resize the shorter side, centre-crop, normalise, as PIL + numpy arrays.

Validation during training and the scoring scripts both call `image_to_array` (after image_decode.open_image), so
validation metrics are bit-identical to what the served model computes. Nothing here may import torch: the
inference environment has none. Training's random augmentation is in image_data.py (it draws from torch's RNG).
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
from PIL import Image

from training_scripts.image_decode import open_image, to_rgb
from training_scripts.image_formats import ImageSource
from training_scripts.preprocess_config import ImagePreprocessConfig


def normalize_image(img: Image.Image, cfg: ImagePreprocessConfig) -> np.ndarray:
    """An already-sized image -> float32 [3, H, W]: scale to [0, 1], subtract mean, divide by std."""
    pixels = np.asarray(to_rgb(img), dtype=np.float32) / np.float32(255.0)
    mean = np.asarray(cfg.mean, dtype=np.float32)
    std = np.asarray(cfg.std, dtype=np.float32)
    return np.ascontiguousarray(((pixels - mean) / std).transpose(2, 0, 1))


def resize_shorter_side(img: Image.Image, size: int) -> Image.Image:
    """Bilinear resize so the shorter side is `size`, keeping the aspect ratio (torchvision's Resize(int))."""
    width, height = img.size
    if width <= height:
        new_w, new_h = size, int(size * height / width)
    else:
        new_w, new_h = int(size * width / height), size
    if (new_w, new_h) == (width, height):
        return img
    return img.resize((new_w, new_h), Image.Resampling.BILINEAR)


def center_crop(img: Image.Image, size: int) -> Image.Image:
    """Central size x size crop, with torchvision's rounding of the offsets."""
    width, height = img.size
    left = round((width - size) / 2.0)
    top = round((height - size) / 2.0)
    return img.crop((left, top, left + size, top + size))


def image_to_array(img: Image.Image, cfg: ImagePreprocessConfig) -> np.ndarray:
    """Evaluation transform: resize shorter side, centre crop, normalise -> float32 [3, image_size, image_size]."""
    img = center_crop(resize_shorter_side(to_rgb(img), cfg.resize_size), cfg.image_size)
    return normalize_image(img, cfg)


def preprocess_images(
    sources: Iterable[ImageSource], cfg: ImagePreprocessConfig, *, max_pixels: int | None = None
) -> np.ndarray:
    """Decode and transform a batch of paths or byte strings -> float32 [N, 3, H, W] (N may be 0)."""
    arrays = [image_to_array(open_image(source, max_pixels=max_pixels), cfg) for source in sources]
    if not arrays:
        return np.zeros((0, 3, cfg.image_size, cfg.image_size), dtype=np.float32)
    return np.stack(arrays)
