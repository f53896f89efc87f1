"""DICOM (.dcm) images, decoded with pydicom into the same 8-bit RGB image `image_decode.open_image` makes of a PNG.

pydicom is optional (`pip install "azure-dl[dicom]"`) and imported only when a DICOM file is met; without it every
function here raises image_formats.MissingDecoderError naming the file and the package to install. Nothing here
imports torch (the inference environment has none).

Greyscale (MONOCHROME1/2), in this order:
1. the modality LUT (Rescale Slope / Intercept, or a Modality LUT Sequence) gives the stored values their meaning;
2. the first VOI LUT or window (Window Center / Width) in the file is applied, when the file has one;
3. MONOCHROME1 (bright = low values) is inverted, so that bone is bright as in MONOCHROME2;
4. the result is rescaled linearly from its own min..max to 0..255, exactly as a 16-bit PNG is
   (image_rescale.rescale_to_uint8), then copied into R, G and B.
Colour:
- RGB comes out as is; YBR_FULL and YBR_FULL_422 are converted to RGB by pydicom (`pixel_array`'s as_rgb, which
  applies `pydicom.pixels.convert_color_space`), and the JPEG 2000 colour transforms (YBR_ICT, YBR_RCT) are undone by
  the decoder; colour of more than 8 bits is scaled by Bits Stored (not the image's own range, so colours keep
  their balance);
- PALETTE COLOR goes through its Red/Green/Blue palette lookup tables (`pydicom.pixels.apply_color_lut`, segmented
  tables included) and is scaled by the tables' bits per entry.
Of a multi-frame file the FIRST frame is used (one image per file, as for every other format), or the one `frame`
names (0-based); per-frame rescale/window values in an enhanced file's functional groups are not read, only the
top-level ones.

Compressed transfer syntaxes (JPEG baseline/extended/lossless, JPEG-LS, JPEG 2000, HTJ2K, RLE) are decoded by the
plugins the `dicom` extra installs (pylibjpeg with its libjpeg, openjpeg and rle plugins; pillow covers JPEG baseline
and JPEG 2000 too); Deflated and big-endian files by pydicom itself.

Errors are per file (image_formats.ImageDecodeError, so a training scan skips and counts the file and scoring answers
400): not a DICOM Part 10 file (no "DICM" at byte 128; files without the preamble are not read), no pixel data,
an unsupported photometric interpretation (ARGB, CMYK, HSV: retired), a palette without its lookup tables, a frame
that the file does not have, and a transfer syntax that no installed plugin decodes (video: MPEG-2, H.264, HEVC;
the message names what is missing), or pixel data that the decoder refuses (its error is quoted).
"""

from __future__ import annotations

import os
from pathlib import Path
from types import ModuleType
from typing import IO, Any

import numpy as np
from PIL import Image

from training_scripts.image_formats import (
    DICOM_MAGIC,
    DICOM_MAGIC_OFFSET,
    ImageDecodeError,
    ImageTooLargeError,
    MissingDecoderError,
    has_dicom_magic,
)
from training_scripts.image_rescale import rescale_to_uint8

INSTALL_HINT = 'pip install "azure-dl[dicom]" (or pip install pydicom)'
_GREY = frozenset({"MONOCHROME1", "MONOCHROME2"})
# pydicom's pixel_array converts the YBR ones to RGB (its default as_rgb=True).
_COLOUR = frozenset({"RGB", "YBR_FULL", "YBR_FULL_422", "YBR_ICT", "YBR_RCT", "YBR_PARTIAL_420"})
_PALETTE = "PALETTE COLOR"
_SUPPORTED = _GREY | _COLOUR | {_PALETTE}
# Float Pixel Data and Double Float Pixel Data (parametric maps) decode like integer pixel data.
_PIXEL_ELEMENTS = ("PixelData", "FloatPixelData", "DoubleFloatPixelData")


def import_pydicom(label: str) -> ModuleType:
    """The pydicom module, or MissingDecoderError naming `label` and what to install (pydicom 3 is needed)."""
    try:
        import pydicom
    except ImportError:
        message = f"cannot decode DICOM image {label}: pydicom is not installed; {INSTALL_HINT}"
        raise MissingDecoderError(message) from None
    try:
        import pydicom.pixels  # the pixel API used here, new in pydicom 3.0
    except ImportError:
        version = getattr(pydicom, "__version__", "?")
        raise MissingDecoderError(
            f"cannot decode DICOM image {label}: pydicom {version} is installed, 3.0 or later is needed; "
            'pip install -U "azure-dl[dicom]"'
        ) from None
    return pydicom


def decode_dicom(stream: IO[bytes], label: str, max_pixels: int | None = None, *, frame: int = 0) -> Image.Image:
    """A DICOM file's first frame (or `frame`, 0-based) -> 8-bit RGB PIL image (the module docstring has the steps).

    Raises MissingDecoderError without pydicom, ImageTooLargeError when Rows x Columns exceeds `max_pixels` (or
    PIL's own bomb limit), and ImageDecodeError, naming `label`, for anything else that cannot be decoded.
    """
    ds, pixels = _read(stream, label, max_pixels, frame)
    try:
        return _to_rgb(ds, pixels)
    except MemoryError:
        raise
    except Exception as exc:  # pydicom's LUT code raises ValueError, KeyError, IndexError... on bad attributes
        raise ImageDecodeError(f"cannot decode DICOM image {label}: {_describe(exc)}") from exc


def check_dicom(path: str | os.PathLike[str], max_pixels: int | None = None, *, frame: int = 0) -> None:
    """Raise what `decode_dicom` would for a header, transfer-syntax or pixel-data problem, without the LUT work.

    The training scan's quick check: it reads the file and decodes the frame's stored values (for an
    uncompressed file that is a copy that fails on truncation), skipping the modality/VOI LUTs and the rescaling.
    """
    label = os.fspath(path)
    with Path(path).open("rb") as handle:  # OSError for a missing file stays an OSError
        _read(handle, label, max_pixels, frame)


def _read(stream: IO[bytes], label: str, max_pixels: int | None, frame: int = 0) -> tuple[Any, np.ndarray]:
    """(dataset, the frame's stored values) after every check that needs no LUT."""
    pydicom = import_pydicom(label)
    from pydicom import pixels

    stream.seek(0)
    if not has_dicom_magic(stream.read(DICOM_MAGIC_OFFSET + len(DICOM_MAGIC))):
        raise ImageDecodeError(
            f"cannot decode DICOM image {label}: no 'DICM' marker at byte {DICOM_MAGIC_OFFSET} "
            "(not a DICOM Part 10 file, or truncated)"
        )
    stream.seek(0)
    try:
        ds = pydicom.dcmread(stream)
        _check_header(ds, label, max_pixels, pixels)
        _check_frame(ds, label, frame)
        return ds, pixels.pixel_array(ds, index=frame)
    except ImageDecodeError:
        raise
    except MemoryError:
        raise
    # Untrusted bytes: pydicom raises many types (InvalidDicomError, ValueError, EOFError, AttributeError, ...).
    except Exception as exc:
        raise ImageDecodeError(f"cannot decode DICOM image {label}: {_describe(exc)}") from exc


def _describe(exc: BaseException, width: int = 600) -> str:
    """An exception as one line: pydicom lists each plugin's failure on its own line, and the reason ends up in a
    training log line and a 400's JSON message."""
    text = " ".join(f"{type(exc).__name__}: {exc}".split())
    return text if len(text) <= width else text[: width - 3] + "..."


def _check_header(ds: Any, label: str, max_pixels: int | None, pixels: ModuleType) -> None:
    if not any(element in ds for element in _PIXEL_ELEMENTS):
        raise ImageDecodeError(
            f"cannot decode DICOM image {label}: it has no Pixel Data element (a non-image object, or cut short)"
        )
    syntax = ds.file_meta.get("TransferSyntaxUID")
    if syntax is None:
        raise ImageDecodeError(f"cannot decode DICOM image {label}: the file meta has no Transfer Syntax UID")
    try:
        decoder = pixels.get_decoder(syntax)
    except NotImplementedError:
        raise ImageDecodeError(
            f"cannot decode DICOM image {label}: pydicom has no decoder for transfer syntax {syntax}"
        ) from None
    if not decoder.is_available:
        needs = "; ".join(decoder.missing_dependencies) or "a pydicom decoding plugin"
        raise ImageDecodeError(
            f"cannot decode DICOM image {label}: its transfer syntax {syntax.name} ({syntax}) needs a decoder "
            f"that is not installed ({needs}); convert the file to an uncompressed DICOM or PNG, or install one"
        )
    rows, columns = int(ds.get("Rows") or 0), int(ds.get("Columns") or 0)
    if rows < 1 or columns < 1:
        raise ImageDecodeError(f"cannot decode DICOM image {label}: Rows x Columns is {rows}x{columns}")
    count = rows * columns
    # PIL's decompression-bomb limit applies to PNGs; DICOM pixels never pass through PIL's decoders, so apply it here.
    pil_limit = None if Image.MAX_IMAGE_PIXELS is None else 2 * Image.MAX_IMAGE_PIXELS
    for limit in (max_pixels, pil_limit):
        if limit is not None and count > limit:
            raise ImageTooLargeError(
                f"{label}: image is {columns}x{rows} = {count} pixels, more than the limit of {limit}; "
                "downscale it or raise max_pixels"
            )
    photometric = str(ds.get("PhotometricInterpretation", "")).strip()
    if photometric not in _SUPPORTED:
        raise ImageDecodeError(
            f"cannot decode DICOM image {label}: photometric interpretation {photometric or '(none)'!r} is not "
            f"supported (only {', '.join(sorted(_SUPPORTED))})"
        )
    # A well-known palette is named by a UID alone (pydicom ships those); otherwise the three tables must be there.
    if photometric == _PALETTE and "PaletteColorLookupTableUID" not in ds:
        missing = [
            f"{colour}PaletteColorLookupTable{part}"
            for colour in ("Red", "Green", "Blue")
            for part in ("Descriptor", "Data")
            if f"{colour}PaletteColorLookupTable{part}" not in ds
            and (part == "Descriptor" or f"Segmented{colour}PaletteColorLookupTableData" not in ds)
        ]
        if missing:
            raise ImageDecodeError(
                f"cannot decode DICOM image {label}: it is PALETTE COLOR but lacks {', '.join(missing)}"
            )


def _check_frame(ds: Any, label: str, frame: int) -> None:
    frames = int(ds.get("NumberOfFrames") or 1)
    if not 0 <= frame < frames:
        raise ImageDecodeError(
            f"cannot decode DICOM image {label}: frame {frame} asked for, but the file has {frames} frame(s) "
            f"(0 to {frames - 1})"
        )


def _to_rgb(ds: Any, stored: np.ndarray) -> Image.Image:
    from pydicom.pixels import apply_color_lut, apply_modality_lut, apply_voi_lut

    photometric = str(ds.PhotometricInterpretation).strip()
    if photometric == _PALETTE:
        if stored.ndim != 2:
            raise ValueError(f"{photometric} pixel data has shape {stored.shape}, expected (rows, columns)")
        rgb = apply_color_lut(stored, ds)
        if rgb.dtype != np.uint8:
            descriptor = ds.get("RedPaletteColorLookupTableDescriptor")
            bits = int(descriptor[2]) if descriptor is not None and len(descriptor) == 3 else 16
            top = float(2 ** (bits if bits in (8, 16) else 16) - 1)
            rgb = np.clip(np.rint(rgb.astype(np.float64) * (255.0 / top)), 0, 255).astype(np.uint8)
        return Image.fromarray(np.ascontiguousarray(rgb))
    if photometric in _COLOUR:
        if stored.ndim != 3 or stored.shape[-1] != 3:
            raise ValueError(f"{photometric} pixel data has shape {stored.shape}, expected (rows, columns, 3)")
        if stored.dtype != np.uint8:
            # 16-bit colour: scale the stored range (not the image's own) so colours keep their balance.
            top = float(2 ** int(ds.get("BitsStored") or 16) - 1)
            stored = np.clip(np.rint(stored.astype(np.float64) * (255.0 / top)), 0, 255).astype(np.uint8)
        return Image.fromarray(np.ascontiguousarray(stored))
    if stored.ndim != 2:
        raise ValueError(f"{photometric} pixel data has shape {stored.shape}, expected (rows, columns)")
    values = apply_voi_lut(apply_modality_lut(stored, ds), ds, index=0)
    values = np.asarray(values, dtype=np.float64)
    if photometric == "MONOCHROME1":
        # Rescaling by the own range follows, so negating is the same as max + min - value.
        values = -values
    return Image.fromarray(rescale_to_uint8(values)).convert("RGB")
