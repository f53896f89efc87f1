"""Greyscale values of any numeric type (16-bit X-rays, DICOM, float images) -> uint8 by their own range.

Shared by the PIL decoder (image_decode.py) and the DICOM decoder (dicom.py), so a 12-bit X-ray keeps the same
contrast whichever format it was stored in. numpy only; nothing here may import torch.
"""

from __future__ import annotations

import numpy as np

_LUT_MAX_LEVELS = 1 << 16  # integer images spanning more levels than this (rare 32-bit ones) take the float path


def rescale_to_uint8(values: np.ndarray) -> np.ndarray:
    """Greyscale values of any numeric type -> uint8, linearly from their own min..max to 0..255.

    A constant array becomes all 0; NaN and infinities become 0.
    """
    values = np.asarray(values)
    if np.issubdtype(values.dtype, np.integer) and values.size:
        low_int, high_int = int(values.min()), int(values.max())
        if high_int <= low_int:
            return np.zeros(values.shape, dtype=np.uint8)
        if high_int - low_int <= _LUT_MAX_LEVELS:
            # One table entry per level, computed exactly as the general path below computes each pixel, then a
            # gather: bit-identical, and several times faster on a 16-bit X-ray than float64 arithmetic per pixel.
            levels = np.arange(high_int - low_int + 1, dtype=np.float64) * (255.0 / (high_int - low_int))
            table = np.clip(np.rint(levels), 0, 255).astype(np.uint8)
            if np.issubdtype(values.dtype, np.unsignedinteger):
                return table[values - values.dtype.type(low_int)]  # no wrap-around: every value is >= low
            return table[values.astype(np.int64) - low_int]  # a signed difference can overflow its own type
    values = values.astype(np.float64, copy=False)
    finite = np.isfinite(values)
    if not finite.any():
        return np.zeros(values.shape, dtype=np.uint8)
    low = float(values[finite].min())
    high = float(values[finite].max())
    if high <= low:
        return np.zeros(values.shape, dtype=np.uint8)
    scaled = (np.where(finite, values, low) - low) * (255.0 / (high - low))
    return np.clip(np.rint(scaled), 0, 255).astype(np.uint8)
