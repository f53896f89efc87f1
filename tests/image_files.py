"""Small image files for tests: seeded noise, encoded bytes, and a PNG that only a full decode finds broken."""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
from PIL import Image


def noise_image(size: tuple[int, int] = (24, 24), seed: int = 0) -> Image.Image:
    """Seeded RGB noise of `size` (width, height)."""
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8))


def encoded(img: Image.Image, fmt: str) -> bytes:
    """`img` saved in format `fmt` (PNG, JPEG, ...), as bytes."""
    buffer = io.BytesIO()
    img.save(buffer, format=fmt)
    return buffer.getvalue()


def png_with_corrupt_data_but_valid_crc() -> bytes:
    """A PNG whose chunk checksums are right but whose compressed pixels are garbage."""
    data = bytearray(encoded(noise_image((32, 32)), "PNG"))
    start = data.index(b"IDAT") - 4
    (length,) = struct.unpack(">I", data[start : start + 4])
    payload_at = start + 8
    for offset in range(10, min(length, 200)):
        data[payload_at + offset] ^= 0x5A
    crc = zlib.crc32(bytes(data[start + 4 : payload_at + length]))
    data[payload_at + length : payload_at + length + 4] = struct.pack(">I", crc)
    return bytes(data)
