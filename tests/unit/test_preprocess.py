"""Torch-free evaluation preprocessing: image decoding in every PIL mode, the eval transform, text encoding."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from training_scripts import preprocess as pp
from training_scripts.preprocess import (
    PAD_ID,
    UNK_ID,
    ImageDecodeError,
    ImagePreprocessConfig,
    ImageTooLargeError,
    TextPreprocessConfig,
    Vocabulary,
    encode_texts,
    image_to_array,
    load_preprocess_config,
    open_image,
    preprocess_images,
    save_preprocess_config,
    tokenize,
)


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
    out = _rgb(pp.to_rgb(img))[..., 0]
    assert out.tolist() == [[0, 64], [128, 255]]


def test_float_image_with_nan_and_constant_images() -> None:
    with_nan = Image.fromarray(np.array([[np.nan, 0.0], [0.5, 1.0]], dtype=np.float32))
    assert _rgb(pp.to_rgb(with_nan))[..., 0].tolist() == [[0, 0], [128, 255]]
    constant = Image.fromarray(np.full((3, 3), 777, dtype=np.uint16))
    assert _rgb(pp.to_rgb(constant)).max() == 0


def test_rgba_is_composited_on_black() -> None:
    rgba = Image.new("RGBA", (2, 1))
    rgba.putpixel((0, 0), (200, 100, 50, 255))
    rgba.putpixel((1, 0), (200, 100, 50, 0))
    out = _rgb(open_image(_png_bytes(rgba)))
    assert out[0, 0].tolist() == [200, 100, 50]
    assert out[0, 1].tolist() == [0, 0, 0]
    half = Image.new("RGBA", (1, 1), (200, 100, 50, 128))
    assert np.allclose(_rgb(pp.to_rgb(half))[0, 0], [100, 50, 25], atol=1)


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
    assert _rgb(pp.to_rgb(bilevel))[0].tolist() == [[0, 0, 0], [255, 255, 255]]


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
    assert pp.is_image_file("a/B.PNG") and pp.is_image_file("x.JpEg") and pp.is_image_file("y.bmp")
    assert pp.is_image_file("z.dcm") and pp.is_image_file("Z.DCM") and not pp.is_image_file("png")


# ----------------------------------------------------------------------------------------- eval transform


def test_resize_and_crop_follow_torchvision_geometry() -> None:
    assert pp.resize_shorter_side(Image.new("RGB", (200, 300)), 256).size == (256, 384)
    assert pp.resize_shorter_side(Image.new("RGB", (301, 200)), 100).size == (150, 100)
    # torchvision rounds the crop offset: (11 - 4) / 2 = 3.5 -> 4 (round half to even)
    stripes = Image.fromarray(np.arange(11, dtype=np.uint8)[None, :].repeat(4, 0))
    assert np.asarray(pp.center_crop(stripes, 4))[0].tolist() == [4, 5, 6, 7]


def test_image_to_array_shape_and_normalisation() -> None:
    cfg = ImagePreprocessConfig(image_size=32, resize_size=40)
    arr = image_to_array(Image.new("RGB", (90, 60), (255, 128, 0)), cfg)
    assert arr.shape == (3, 32, 32) and arr.dtype == np.float32 and arr.flags.c_contiguous
    expected = [(1.0 - 0.485) / 0.229, (128 / 255 - 0.456) / 0.224, (0.0 - 0.406) / 0.225]
    assert np.allclose(arr.reshape(3, -1).mean(axis=1), expected, atol=1e-5)


def test_preprocess_images_batches_paths_and_bytes(tmp_path: Path) -> None:
    cfg = ImagePreprocessConfig(image_size=16, resize_size=20)
    path = tmp_path / "a.png"
    Image.new("L", (30, 30), 50).save(path)
    batch = preprocess_images([path, path.read_bytes()], cfg)
    assert batch.shape == (2, 3, 16, 16) and batch.dtype == np.float32
    assert np.array_equal(batch[0], batch[1])
    assert preprocess_images([], cfg).shape == (0, 3, 16, 16)


def test_image_config_round_trip_and_validation(tmp_path: Path) -> None:
    cfg = ImagePreprocessConfig(image_size=64, resize_size=72, mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25))
    data = cfg.to_dict()
    assert data["task"] == "image-classification" and data["input_name"] == "pixel_values"
    assert json.loads(json.dumps(data)) == data
    assert ImagePreprocessConfig.from_dict(data) == cfg
    written = save_preprocess_config(tmp_path, cfg)
    assert written == tmp_path / "preprocess.json"
    assert load_preprocess_config(tmp_path) == cfg
    with pytest.raises(ValueError, match="resize_size"):
        ImagePreprocessConfig(image_size=64, resize_size=32)
    with pytest.raises(ValueError, match="std"):
        ImagePreprocessConfig(std=(0.2, 0.0, 0.2))
    with pytest.raises(ValueError, match="text-classification"):
        ImagePreprocessConfig.from_dict(TextPreprocessConfig().to_dict())


# ---------------------------------------------------------------------------------------------------- text


def test_tokenize() -> None:
    assert tokenize("Don't stop!<br /><br />10/10, 3.5 stars &amp; 1,000 fans") == [
        "don't",
        "stop",
        "!",
        "10",
        "/",
        "10",
        ",",
        "3.5",
        "stars",
        "&",
        "1,000",
        "fans",
    ]
    assert tokenize("It\u2019s 'GREAT'", lowercase=False) == ["It's", "'", "GREAT", "'"]
    assert tokenize("snake_case  \n\t") == ["snake", "_", "case"]
    assert tokenize("<i></i>") == []


def test_vocabulary_order_is_deterministic() -> None:
    docs = [["b", "a", "c"], ["a", "b"], ["d", "a"], ["c"]]
    vocab = Vocabulary.build(docs)
    # a: 3, then b and c tie at 2 (alphabetical), then d.
    assert vocab.itos == ["<pad>", "<unk>", "a", "b", "c", "d"]
    assert Vocabulary.build(reversed(docs)) == vocab
    assert Vocabulary.build(docs, max_size=4).itos == ["<pad>", "<unk>", "a", "b"]
    assert Vocabulary.build(docs, min_freq=2).itos == ["<pad>", "<unk>", "a", "b", "c"]
    assert vocab.encode(["c", "zzz", "a"]) == [4, UNK_ID, 2]
    with pytest.raises(ValueError, match="max_size"):
        Vocabulary.build(docs, max_size=1)


def test_vocabulary_save_load_round_trip(tmp_path: Path) -> None:
    vocab = Vocabulary.build([tokenize("Ünïcode words, and more words!")])
    path = vocab.save(tmp_path)
    assert json.loads(path.read_text(encoding="utf-8")) == {"itos": vocab.itos, "pad_id": 0, "unk_id": 1}
    assert Vocabulary.load(path) == vocab
    (tmp_path / "bad.json").write_text(json.dumps({"itos": ["a", "b"]}))
    with pytest.raises(ValueError, match=r"bad\.json"):
        Vocabulary.load(tmp_path / "bad.json")


def test_encode_texts_pads_truncates_and_handles_empty_text() -> None:
    vocab = Vocabulary.build([["one", "two", "three", "four"]])
    cfg = TextPreprocessConfig(seq_len=3)
    out = encode_texts(["One two", "one two three four", "", "<br />", "unknownword"], vocab, cfg)
    ids = vocab.stoi
    assert out.dtype == np.int64 and out.shape == (5, 3)
    assert out.tolist() == [
        [ids["one"], ids["two"], PAD_ID],
        [ids["one"], ids["two"], ids["three"]],
        [UNK_ID, PAD_ID, PAD_ID],
        [UNK_ID, PAD_ID, PAD_ID],
        [UNK_ID, PAD_ID, PAD_ID],
    ]
    cased = encode_texts(["One"], vocab, TextPreprocessConfig(seq_len=2, lowercase=False))
    assert cased.tolist() == [[UNK_ID, PAD_ID]]
    assert encode_texts([], vocab, cfg).shape == (0, 3)


def test_text_config_round_trip(tmp_path: Path) -> None:
    cfg = TextPreprocessConfig(seq_len=50, lowercase=False)
    assert cfg.to_dict() == {
        "task": "text-classification",
        "seq_len": 50,
        "lowercase": False,
        "pad_id": 0,
        "unk_id": 1,
        "input_name": "input_ids",
    }
    save_preprocess_config(tmp_path / "preprocess.json", cfg)
    assert load_preprocess_config(tmp_path / "preprocess.json") == cfg
    (tmp_path / "other.json").write_text(json.dumps({"task": "segmentation"}))
    with pytest.raises(ValueError, match="segmentation"):
        load_preprocess_config(tmp_path / "other.json")
    with pytest.raises(ValueError, match="seq_len"):
        TextPreprocessConfig(seq_len=0)


def test_preprocess_imports_no_torch() -> None:
    probe = "import sys, training_scripts.preprocess; print('torch' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "False"


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
        assert np.array_equal(pp.rescale_to_uint8(values), _rescale_reference(values)), (low, high)
