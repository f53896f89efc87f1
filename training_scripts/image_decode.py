"""Decode a file path or raw bytes into an 8-bit RGB PIL image, whatever the stored mode (PIL + numpy only).

Training's evaluation transform and the scoring scripts decode through `open_image`, so a served model sees exactly
what validation saw. DICOM files go to training_scripts/dicom.py (pydicom, an optional dependency), loaded only
when one is met. Nothing here may import torch: the inference environment has none.
"""

from __future__ import annotations

import contextlib
import io
import os
from pathlib import Path
from typing import IO

import numpy as np
from PIL import Image, ImageOps

from training_scripts.image_formats import (
    DICOM_MAGIC,
    DICOM_MAGIC_OFFSET,
    ImageDecodeError,
    ImageSource,
    ImageTooLargeError,
    has_dicom_magic,
    is_dicom_file,
)
from training_scripts.image_rescale import rescale_to_uint8

# Greyscale modes with more than 8 bits per pixel (16-bit X-rays, 32-bit int, float). PIL's own convert("RGB")
# clips these to 0..255, which saturates a 12-bit X-ray to white, so they are rescaled by their own range.
_WIDE_GREY_MODES = frozenset({"I;16", "I;16L", "I;16B", "I;16N", "I", "F"})
# Modes with an alpha channel (or transparency) that are composited on black.
_ALPHA_MODES = frozenset({"RGBA", "RGBa", "LA", "La", "PA"})


def _source_name(source: ImageSource, name: str | None) -> str:
    if name is not None:
        return name
    if isinstance(source, bytes | bytearray | memoryview):
        return f"<{len(source)} bytes>"
    return os.fspath(source)


def open_image(
    source: ImageSource, *, max_pixels: int | None = None, name: str | None = None, frame: int = 0
) -> Image.Image:
    """Decode a file path or raw bytes into an 8-bit RGB image, whatever the stored mode.

    - EXIF orientation is applied (phone photos and some scanners store it instead of rotating pixels);
      an unreadable EXIF block leaves the pixels as stored.
    - Transparency (RGBA, LA, P with a transparent colour) is composited on BLACK: X-rays and most scans have
      a black surround, and black is what dropping the alpha of a fully transparent pixel usually gives.
    - 16/32-bit and float greyscale (I;16, I;16B, I, F) is rescaled linearly from the image's own min..max to
      0..255 (a constant image becomes 0); NaN and infinities become 0.
    - CMYK, palette, 1-bit and other modes go through PIL's conversion to RGB.
    - DICOM (a .dcm name, or the "DICM" marker at byte 128) is decoded with pydicom: see training_scripts/dicom.py.
      Without pydicom it raises MissingDecoderError, which names the file and the package to install.
    - `frame` (0-based) picks a frame of a multi-frame DICOM; every other format has only frame 0.

    Raises ImageDecodeError (naming the file, or `name` for bytes) for corrupt, truncated or non-image data,
    and ImageTooLargeError when width * height exceeds `max_pixels`. PIL's own global bomb limit
    (Image.MAX_IMAGE_PIXELS) applies as well. A missing or unreadable path raises the usual OSError.
    """
    label = _source_name(source, name)
    if isinstance(source, bytes | bytearray | memoryview):
        return _decode(io.BytesIO(bytes(source)), label, max_pixels, named_dicom=False, frame=frame)
    with Path(source).open("rb") as handle:  # OSError for a missing file stays an OSError
        return _decode(handle, label, max_pixels, named_dicom=is_dicom_file(source), frame=frame)


def _decode(stream: IO[bytes], label: str, max_pixels: int | None, *, named_dicom: bool, frame: int) -> Image.Image:
    if named_dicom or has_dicom_magic(_peek(stream, DICOM_MAGIC_OFFSET + len(DICOM_MAGIC))):
        # Imported here: pydicom is optional and only needed when a DICOM file is met.
        from training_scripts.dicom import decode_dicom

        return decode_dicom(stream, label, max_pixels, frame=frame)
    if frame != 0:
        raise ImageDecodeError(f"cannot decode image {label}: frame {frame} asked for, but only DICOM has frames")
    try:
        img: Image.Image = Image.open(stream)
        width, height = img.size
        if max_pixels is not None and width * height > max_pixels:
            raise ImageTooLargeError(
                f"{label}: image is {width}x{height} = {width * height} pixels, more than the limit of "
                f"{max_pixels}; downscale it or raise max_pixels"
            )
        img.load()
    except ImageDecodeError:
        raise
    except Image.DecompressionBombError as exc:
        raise ImageTooLargeError(f"{label}: {exc}") from exc
    # Untrusted bytes: PIL's decoders raise many types (OSError, SyntaxError, struct.error, EOFError,
    # IndexError, ...) for broken files, so anything but resource exhaustion counts as "cannot decode".
    except MemoryError:
        raise
    except Exception as exc:
        raise ImageDecodeError(f"cannot decode image {label}: {type(exc).__name__}: {exc}") from exc
    # A broken EXIF block must not discard otherwise good pixels.
    with contextlib.suppress(Exception):
        img = ImageOps.exif_transpose(img)
    try:
        return to_rgb(img)
    except ValueError as exc:
        raise ImageDecodeError(f"cannot convert image {label} (mode {img.mode}) to RGB: {exc}") from exc


def _peek(stream: IO[bytes], size: int) -> bytes:
    """The first `size` bytes of a seekable stream, leaving its position where it was."""
    position = stream.tell()
    stream.seek(0)
    head = stream.read(size)
    stream.seek(position)
    return head


def to_rgb(img: Image.Image) -> Image.Image:
    """Convert any PIL mode to 8-bit RGB with the rules documented in `open_image`."""
    mode = img.mode
    if mode == "RGB":
        return img
    if mode in _WIDE_GREY_MODES:
        return _rescale_wide_grey(img).convert("RGB")
    if mode == "P" and "transparency" in img.info:
        img = img.convert("RGBA")
        mode = "RGBA"
    if mode in _ALPHA_MODES:
        rgba = img.convert("RGBA")
        background = Image.new("RGB", rgba.size, (0, 0, 0))
        background.paste(rgba.convert("RGB"), mask=rgba.getchannel("A"))
        return background
    return img.convert("RGB")


def _rescale_wide_grey(img: Image.Image) -> Image.Image:
    return Image.fromarray(rescale_to_uint8(np.asarray(img)))
