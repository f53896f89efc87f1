"""Image decode cost of `image_decode.open_image` per format: JPEG, 8-bit PNG, 16-bit PNG and DICOM (with and without a
window), the same X-ray-like pixels in each, at 1024 and 2048 px.

Decoding runs once per image per epoch in training (and once per request in scoring), so this is the floor of the
data loader's cost per image before resizing. Usage:

    python -m benchmarks.bench_decode [--repeats 7] [--sizes 1024 2048] [--smoke]
"""

from __future__ import annotations

import argparse
import io
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from PIL import Image

from benchmarks.common import (
    BenchmarkResult,
    add_output_arguments,
    command_line,
    load_average,
    load_notes,
    machine_info,
    median_seconds,
    save_unless_smoke,
)
from training_scripts.image_decode import open_image

NAME = "image_decode_cpu"
BITS_STORED = 12


def xray_like(size: int, seed: int = 0) -> np.ndarray:
    """12-bit greyscale with smooth anatomy-like structure and detector noise: compresses like a real radiograph
    (pure noise would make PNG and JPEG look slower than they are)."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:size, 0:size] / size
    body = np.exp(-(((x - 0.5) / 0.35) ** 2 + ((y - 0.55) / 0.45) ** 2))
    ribs = 0.15 * np.sin(40 * y + 3 * np.sin(6 * x)) * body
    lungs = -0.35 * (np.exp(-(((x - 0.33) / 0.12) ** 2 + ((y - 0.5) / 0.25) ** 2)))
    lungs += -0.35 * np.exp(-(((x - 0.67) / 0.12) ** 2 + ((y - 0.5) / 0.25) ** 2))
    image = 0.2 + 0.6 * body + ribs + lungs + rng.normal(0, 0.01, (size, size))
    top = 2**BITS_STORED - 1
    return np.clip(image * top, 0, top).astype(np.uint16)


def encode_pil(pixels: np.ndarray, fmt: str, **options: Any) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format=fmt, **options)
    return buffer.getvalue()


def encode_dicom(pixels: np.ndarray, *, window: bool) -> bytes:
    """An uncompressed (Explicit VR Little Endian) MONOCHROME2 CT-like file, as a PACS export writes it."""
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, SecondaryCaptureImageStorage, generate_uid

    meta = FileMetaDataset()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID = meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID
    ds.Rows, ds.Columns = pixels.shape
    ds.BitsAllocated, ds.BitsStored, ds.HighBit = 16, BITS_STORED, BITS_STORED - 1
    ds.PixelRepresentation, ds.SamplesPerPixel, ds.PhotometricInterpretation = 0, 1, "MONOCHROME2"
    ds.RescaleSlope, ds.RescaleIntercept = 1, -1024
    if window:
        ds.WindowCenter, ds.WindowWidth = 1000, 3000
    ds.PixelData = pixels.tobytes()
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


def formats(pixels: np.ndarray) -> list[tuple[str, bytes]]:
    eight_bit = (pixels >> (BITS_STORED - 8)).astype(np.uint8)
    return [
        ("JPEG (8-bit, quality 95)", encode_pil(eight_bit, "JPEG", quality=95)),
        ("PNG 8-bit", encode_pil(eight_bit, "PNG")),
        ("PNG 16-bit (12 bits used)", encode_pil(pixels, "PNG")),
        ("DICOM 12-bit, no window", encode_dicom(pixels, window=False)),
        ("DICOM 12-bit, windowed", encode_dicom(pixels, window=True)),
    ]


def measure(sizes: Sequence[int], repeats: int) -> list[dict[str, Any]]:
    rows = []
    for size in sizes:
        for label, data in formats(xray_like(size)):
            decode: Callable[[], object] = lambda data=data: open_image(data)  # noqa: E731
            seconds, _ = median_seconds(decode, repeats=repeats)
            rows.append(
                {
                    "format": label,
                    "pixels": f"{size}x{size}",
                    "file_mb": round(len(data) / 1e6, 2),
                    "ms": seconds * 1000,
                    "images/s": 1 / seconds,
                }
            )
            print(f"{label:28s} {size:5d} px  {seconds * 1000:8.1f} ms  ({len(data) / 1e6:.2f} MB)", flush=True)
    return rows


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7, help="timed decodes per case; the median is kept (default 7)")
    parser.add_argument("--sizes", type=int, nargs="+", default=[1024, 2048], help="square sizes (default 1024 2048)")
    add_output_arguments(parser, smoke_help="one small size")
    args = parser.parse_args(argv)
    if args.repeats < 1 or min(args.sizes) < 16:
        parser.error("--repeats must be at least 1 and --sizes at least 16")
    sizes, repeats = ([128], 1) if args.smoke else (args.sizes, args.repeats)
    load_before = load_average()
    rows = measure(sizes, repeats)
    load_after = load_average()
    result = BenchmarkResult(
        name=NAME,
        title="Image decode per format (image_decode.open_image), CPU",
        command=command_line("benchmarks.bench_decode", argv),
        machine=machine_info(args.machine),
    )
    result.add_table(
        f"Median time of one `open_image` call from in-memory bytes to an 8-bit RGB PIL image, over {repeats} runs "
        "after a warm-up; one thread",
        rows,
        ["format", "pixels", "file_mb", "ms", "images/s"],
    )
    result.notes += [
        "The same synthetic 12-bit X-ray-like pixels in every format (smooth structure plus detector noise); the "
        "8-bit formats get the top 8 of the 12 bits. 16-bit PNG and DICOM are rescaled by their own value range "
        "(and DICOM first through its modality LUT and, when windowed, its VOI window), so they cost more than "
        "8-bit formats.",
        "DICOM: uncompressed Explicit VR Little Endian, MONOCHROME2, decoded by pydicom (training_scripts/dicom.py).",
        *load_notes(load_before, load_after, busy_effect="absolute times are inflated; compare rows within the run."),
    ]
    save_unless_smoke(result, args)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
