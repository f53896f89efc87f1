"""Image decoding in every PIL mode (16-bit X-rays, alpha, palette, CMYK, EXIF), broken images, the rescale table."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from training_scripts.image_decode import open_image, to_rgb
from training_scripts.image_formats import ImageDecodeError, ImageTooLargeError, is_image_file
from training_scripts.image_rescale import rescale_to_uint8


def _png_bytes(img: Image.Image) -> bytes:
    buffer = io.BytesIO()
    img.save(buffer, format="PNG")
    return buffer.getvalue()


def _rgb(img: Image.Image) -> np.ndarray:
    return np.asarray(img, dtype=np.int32)


# ---------------------------------------------------------------------------------------------- image modes


def test_12bit_xray_png_keeps_its_contrast() -> None:
    # A 12-bit detector stored as 16-bit PNG: a ramp over 0..4095 plus a darker body region.
    ramp = np.tile(np.linspace(0, 4095, 128).round().astype(np.uint16), (64, 1))
    data = _png_bytes(Image.fromarray(ramp))
    assert Image.open(io.BytesIO(data)).mode == "I;16"

    out = _rgb(open_image(data))
    assert out.shape == (64, 128, 3)
    assert out[..., 0].min() == 0 and out[..., 0].max() == 255
    # PIL's plain convert("RGB") would make almost all of it 255; the rescale keeps a full ramp.
    assert (out == 255).mean() < 0.02
    assert abs(out.mean() - 127.5) < 2
    assert np.all(np.diff(out[0, :, 0]) >= 0)
    assert np.array_equal(out[..., 0], out[..., 1]) and np.array_equal(out[..., 1], out[..., 2])


def test_narrow_16bit_range_is_stretched_by_the_image_own_range() -> None:
    values = np.array([[1000, 1100], [1200, 1300]], dtype=np.uint16)
    out = _rgb(open_image(_png_bytes(Image.fromarray(values))))[..., 0]
    assert out.tolist() == [[0, 85], [170, 255]]


@pytest.mark.parametrize("mode", ["I;16B", "I", "F"])
def test_wide_greyscale_modes_are_rescaled(mode: str) -> None:
    values = np.array([[0, 1000], [2000, 4000]])
    if mode == "I;16B":
        img = Image.frombytes("I;16B", (2, 2), values.astype(">u2").tobytes())
    elif mode == "I":
        img = Image.fromarray((values - 50_000).astype(np.int32))  # negative values are fine too
    else:
        img = Image.fromarray(values.astype(np.float32))
    assert img.mode == mode
    out = _rgb(to_rgb(img))[..., 0]
    assert out.tolist() == [[0, 64], [128, 255]]


def test_float_image_with_nan_and_constant_images() -> None:
    with_nan = Image.fromarray(np.array([[np.nan, 0.0], [0.5, 1.0]], dtype=np.float32))
    assert _rgb(to_rgb(with_nan))[..., 0].tolist() == [[0, 0], [128, 255]]
    constant = Image.fromarray(np.full((3, 3), 777, dtype=np.uint16))
    assert _rgb(to_rgb(constant)).max() == 0


def test_rgba_is_composited_on_black() -> None:
    rgba = Image.new("RGBA", (2, 1))
    rgba.putpixel((0, 0), (200, 100, 50, 255))
    rgba.putpixel((1, 0), (200, 100, 50, 0))
    out = _rgb(open_image(_png_bytes(rgba)))
    assert out[0, 0].tolist() == [200, 100, 50]
    assert out[0, 1].tolist() == [0, 0, 0]
    half = Image.new("RGBA", (1, 1), (200, 100, 50, 128))
    assert np.allclose(_rgb(to_rgb(half))[0, 0], [100, 50, 25], atol=1)


def test_la_is_composited_on_black() -> None:
    la = Image.new("LA", (2, 1))
    la.putpixel((0, 0), (180, 255))
    la.putpixel((1, 0), (180, 0))
    out = _rgb(open_image(_png_bytes(la)))
    assert out[0, 0].tolist() == [180, 180, 180]
    assert out[0, 1].tolist() == [0, 0, 0]


def test_palette_with_transparency() -> None:
    pal = Image.new("P", (2, 1))
    pal.putpalette([255, 0, 0, 0, 255, 0] + [0] * (256 * 3 - 6))
    pal.putpixel((0, 0), 0)
    pal.putpixel((1, 0), 1)
    pal.info["transparency"] = 1
    data = _png_bytes(pal)
    reopened = Image.open(io.BytesIO(data))
    assert reopened.mode == "P" and "transparency" in reopened.info
    out = _rgb(open_image(data))
    assert out[0, 0].tolist() == [255, 0, 0]
    assert out[0, 1].tolist() == [0, 0, 0]  # the transparent green pixel


def test_palette_without_transparency_and_one_bit() -> None:
    pal = Image.new("P", (1, 1))
    pal.putpalette([10, 20, 30] + [0] * (256 * 3 - 3))
    assert _rgb(open_image(_png_bytes(pal)))[0, 0].tolist() == [10, 20, 30]
    bilevel = Image.new("1", (2, 1))
    bilevel.putpixel((1, 0), 1)
    assert _rgb(to_rgb(bilevel))[0].tolist() == [[0, 0, 0], [255, 255, 255]]


def test_cmyk_jpeg_and_greyscale() -> None:
    buffer = io.BytesIO()
    Image.new("CMYK", (8, 8), (0, 0, 0, 0)).save(buffer, format="JPEG", quality=95)
    out = open_image(buffer.getvalue())
    assert out.mode == "RGB"
    assert _rgb(out).min() > 240  # no ink = white
    grey = open_image(_png_bytes(Image.new("L", (3, 2), 77)))
    assert grey.mode == "RGB" and grey.size == (3, 2) and set(np.unique(_rgb(grey))) == {77}


def test_exif_orientation_is_applied(tmp_path: Path) -> None:
    img = Image.new("RGB", (40, 20), (0, 0, 255))
    img.paste((255, 0, 0), (0, 0, 10, 10))  # red in the top-left corner as stored
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 CW to display"
    path = tmp_path / "photo.JPG"
    img.save(path, format="JPEG", exif=exif, quality=95)
    out = open_image(path)
    assert out.size == (20, 40)
    # Rotating 90 degrees clockwise moves the stored top-left corner to the top-right.
    assert _rgb(out)[3, 17, 0] > 200 and _rgb(out)[3, 2, 2] > 200


# ------------------------------------------------------------------------------------------- broken images


def test_text_file_named_jpg_raises_decode_error_naming_the_file(tmp_path: Path) -> None:
    path = tmp_path / "scan_001.jpg"
    path.write_text("this is not an image\n")
    with pytest.raises(ImageDecodeError, match=r"scan_001\.jpg"):
        open_image(path)


@pytest.mark.parametrize("fmt", ["PNG", "JPEG"])
def test_truncated_files_raise_decode_error(fmt: str) -> None:
    rng = np.random.default_rng(0)
    buffer = io.BytesIO()
    Image.fromarray(rng.integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(buffer, format=fmt)
    data = buffer.getvalue()
    with pytest.raises(ImageDecodeError, match=r"upload\.bin"):
        open_image(data[: len(data) // 2], name="upload.bin")


def test_empty_bytes_and_missing_path() -> None:
    with pytest.raises(ImageDecodeError, match="<0 bytes>"):
        open_image(b"")
    with pytest.raises(FileNotFoundError):
        open_image("/nonexistent/x.png")


def test_max_pixels_guard() -> None:
    data = _png_bytes(Image.new("L", (100, 50)))
    with pytest.raises(ImageTooLargeError, match=r"100x50 = 5000 pixels.*4999"):
        open_image(data, max_pixels=4999)
    assert issubclass(ImageTooLargeError, ImageDecodeError)
    assert open_image(data, max_pixels=5000).size == (100, 50)


def test_is_image_file_ignores_case() -> None:
    assert is_image_file("a/B.PNG") and is_image_file("x.JpEg") and is_image_file("y.bmp")
    assert is_image_file("z.dcm") and is_image_file("Z.DCM") and not is_image_file("png")


# ------------------------------------------------------------------------------------------ rescale table


def _rescale_reference(values: np.ndarray) -> np.ndarray:
    """The per-pixel float64 definition that rescale_to_uint8's lookup table for integer images must equal."""
    floats = np.asarray(values, dtype=np.float64)
    low, high = float(floats.min()), float(floats.max())
    if high <= low:
        return np.zeros(floats.shape, dtype=np.uint8)
    return np.clip(np.rint((floats - low) * (255.0 / (high - low))), 0, 255).astype(np.uint8)


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.int16, np.int32])
def test_integer_rescale_by_table_is_bit_identical_to_the_float_definition(dtype: type[np.integer]) -> None:
    rng = np.random.default_rng(7)
    info = np.iinfo(dtype)
    for _ in range(40):
        low = int(rng.integers(max(int(info.min), -70_000), min(int(info.max), 70_000)))
        high = min(int(info.max), low + int(rng.integers(0, 70_000)))
        values = rng.integers(low, high + 1, size=(17, 23), dtype=np.int64).astype(dtype)
        assert np.array_equal(rescale_to_uint8(values), _rescale_reference(values)), (low, high)
