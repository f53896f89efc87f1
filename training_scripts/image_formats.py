"""Which files are images, how a DICOM file is recognised, and the errors every image decoder raises.

A leaf module (standard library only) so that the PIL decoder (image_decode.py), the DICOM decoder (dicom.py),
the folder scan and the scoring scripts share these names without importing one another. Nothing here may
import torch: the inference environment has none.
"""

from __future__ import annotations

import os
from pathlib import Path

# Matched case-insensitively (X-ray exports are often named *.PNG / *.JPEG). .dcm needs pydicom (the "dicom" extra).
IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".dcm"})
DICOM_EXTENSION = ".dcm"
# A DICOM Part 10 file has a 128-byte preamble and then these 4 bytes; bytes from a scoring request have no name.
DICOM_MAGIC = b"DICM"
DICOM_MAGIC_OFFSET = 128

ImageSource = str | os.PathLike[str] | bytes | bytearray | memoryview


class ImageDecodeError(ValueError):
    """The bytes are not an image PIL can decode (corrupt, truncated, not an image at all)."""


class ImageTooLargeError(ImageDecodeError):
    """The image has more pixels than the caller allows (a decompression-bomb guard)."""


class MissingDecoderError(ImageDecodeError):
    """The image's format needs an optional package that is not installed (pydicom for DICOM)."""


def is_image_file(path: str | os.PathLike[str]) -> bool:
    """True when the file name has one of IMAGE_EXTENSIONS, in any letter case."""
    return Path(path).suffix.lower() in IMAGE_EXTENSIONS


def is_dicom_file(path: str | os.PathLike[str]) -> bool:
    """True when the file name ends in .dcm, in any letter case."""
    return Path(path).suffix.lower() == DICOM_EXTENSION


def has_dicom_magic(data: bytes | bytearray | memoryview) -> bool:
    """True when `data` (the start of a file is enough) has the DICOM Part 10 marker at byte 128."""
    return bytes(data[DICOM_MAGIC_OFFSET : DICOM_MAGIC_OFFSET + len(DICOM_MAGIC)]) == DICOM_MAGIC
