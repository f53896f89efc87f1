"""Property-based fuzzing of the image-folder scan: random, truncated and intact files of every extension are
either samples or skipped with a reason (files found = samples + skipped), never a crash; the only exception is
DatasetError, for a class left with no usable image."""

from __future__ import annotations

import io
import tempfile
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("hypothesis")
from hypothesis import given
from hypothesis import strategies as st
from PIL import Image

from training_scripts.image_decode import open_image
from training_scripts.image_folder import scan_image_folder
from training_scripts.splits import DatasetError

EXTENSIONS = [".png", ".jpg", ".JPEG", ".bmp", ".dcm", ".txt"]


def _png(seed: int, size: tuple[int, int]) -> bytes:
    values = np.random.default_rng(seed).integers(0, 256, (*size, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(values).save(buffer, format="PNG")
    return buffer.getvalue()


@st.composite
def files(draw: st.DrawFn) -> tuple[str, bytes]:
    """(extension, content): an intact PNG, one cut short, random bytes, or a file behind a wrong extension."""
    ext = draw(st.sampled_from(EXTENSIONS))
    kind = draw(st.sampled_from(["intact", "truncated", "random", "empty", "dicom_header"]))
    png = _png(draw(st.integers(0, 1000)), (draw(st.integers(1, 12)), draw(st.integers(1, 12))))
    if kind == "intact":
        return ext, png
    if kind == "truncated":
        return ext, png[: draw(st.integers(0, len(png) - 1))]
    if kind == "dicom_header":
        return ext, b"\0" * 128 + b"DICM" + draw(st.binary(max_size=40))
    return ext, b"" if kind == "empty" else draw(st.binary(min_size=1, max_size=200))


@given(
    classes=st.lists(st.lists(files(), max_size=5), min_size=2, max_size=3),
    check=st.sampled_from(["quick", "full"]),
)
def test_every_file_is_a_sample_or_skipped_with_a_reason(classes: list[list[tuple[str, bytes]]], check: str) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        expected = 0
        for label, entries in enumerate(classes):
            folder = root / f"class{label}"
            folder.mkdir()
            for number, (ext, data) in enumerate(entries):
                (folder / f"f{number}{ext}").write_bytes(data)
                expected += ext != ".txt"  # other extensions are not images, so not listed
        try:
            index = scan_image_folder(root, check=check, workers=1)  # type: ignore[arg-type]
        except DatasetError as exc:
            assert "no usable image" in str(exc) or "no usable images" in str(exc), exc
            return
        assert len(index.samples) + len(index.skipped) == expected
        assert all(reason.strip() for _, reason in index.skipped)
        assert sum(index.class_counts().values()) == len(index.samples)
        if check == "full":
            for path, _ in index.samples:
                assert open_image(path).mode == "RGB"
