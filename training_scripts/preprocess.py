"""Evaluation preprocessing shared by training and scoring: decode images and encode texts with PIL + numpy only.

The inference environment has no torch, and the scoring scripts call exactly these functions, so evaluation
during training is bit-identical to what a served model sees. Nothing here may import torch. DICOM files are
decoded by training_scripts/dicom.py (pydicom, an optional dependency), loaded only when one is met.
"""

from __future__ import annotations

import contextlib
import html
import io
import json
import os
import re
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import numpy as np
from PIL import Image, ImageOps

PREPROCESS_FILE = "preprocess.json"
VOCAB_FILE = "vocab.json"

IMAGE_TASK = "image-classification"
TEXT_TASK = "text-classification"
IMAGE_INPUT_NAME = "pixel_values"
TEXT_INPUT_NAME = "input_ids"

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

# Matched case-insensitively (X-ray exports are often named *.PNG / *.JPEG). .dcm needs pydicom (the "dicom" extra).
IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".dcm"})
DICOM_EXTENSION = ".dcm"
# A DICOM Part 10 file has a 128-byte preamble and then these 4 bytes; bytes from a scoring request have no name.
DICOM_MAGIC = b"DICM"
DICOM_MAGIC_OFFSET = 128

ImageSource = str | os.PathLike[str] | bytes | bytearray | memoryview

# Greyscale modes with more than 8 bits per pixel (16-bit X-rays, 32-bit int, float). PIL's own convert("RGB")
# clips these to 0..255, which saturates a 12-bit X-ray to white, so they are rescaled by their own range.
_WIDE_GREY_MODES = frozenset({"I;16", "I;16L", "I;16B", "I;16N", "I", "F"})
# Modes with an alpha channel (or transparency) that are composited on black.
_ALPHA_MODES = frozenset({"RGBA", "RGBa", "LA", "La", "PA"})


# --------------------------------------------------------------------------------------------------- images


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


@dataclass(frozen=True)
class ImagePreprocessConfig:
    """Resize the shorter side to `resize_size`, centre-crop `image_size`, scale to [0, 1], normalise."""

    image_size: int = 224
    resize_size: int = 256
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD

    def __post_init__(self) -> None:
        # Stored as tuples of floats whatever sequence was passed, so configs compare and hash by value.
        object.__setattr__(self, "mean", tuple(float(v) for v in self.mean))
        object.__setattr__(self, "std", tuple(float(v) for v in self.std))
        if int(self.image_size) != self.image_size or self.image_size < 1:
            raise ValueError(f"image_size must be a positive integer, got {self.image_size!r}")
        if int(self.resize_size) != self.resize_size or self.resize_size < self.image_size:
            raise ValueError(
                f"resize_size must be an integer >= image_size ({self.image_size}), got {self.resize_size!r}"
            )
        if len(self.mean) != 3 or len(self.std) != 3:
            raise ValueError(f"mean and std need 3 values (R, G, B), got mean={self.mean} std={self.std}")
        if any(not v > 0 for v in self.std):
            raise ValueError(f"std values must be > 0, got {self.std}")

    def to_dict(self) -> dict[str, Any]:
        return {
            "task": IMAGE_TASK,
            "image_size": self.image_size,
            "resize_size": self.resize_size,
            "mean": list(self.mean),
            "std": list(self.std),
            "input_name": IMAGE_INPUT_NAME,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ImagePreprocessConfig:
        _check_task(data, IMAGE_TASK)
        missing = [key for key in ("image_size", "resize_size", "mean", "std") if key not in data]
        if missing:
            raise ValueError(f"image preprocess config lacks {missing}; got keys {sorted(data)}")
        return cls(
            image_size=int(data["image_size"]),
            resize_size=int(data["resize_size"]),
            mean=tuple(data["mean"]),
            std=tuple(data["std"]),
        )


def _source_name(source: ImageSource, name: str | None) -> str:
    if name is not None:
        return name
    if isinstance(source, bytes | bytearray | memoryview):
        return f"<{len(source)} bytes>"
    return os.fspath(source)


def open_image(source: ImageSource, *, max_pixels: int | None = None, name: str | None = None) -> Image.Image:
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

    Raises ImageDecodeError (naming the file, or `name` for bytes) for corrupt, truncated or non-image data,
    and ImageTooLargeError when width * height exceeds `max_pixels`. PIL's own global bomb limit
    (Image.MAX_IMAGE_PIXELS) applies as well. A missing or unreadable path raises the usual OSError.
    """
    label = _source_name(source, name)
    if isinstance(source, bytes | bytearray | memoryview):
        return _decode(io.BytesIO(bytes(source)), label, max_pixels, named_dicom=False)
    with Path(source).open("rb") as handle:  # OSError for a missing file stays an OSError
        return _decode(handle, label, max_pixels, named_dicom=is_dicom_file(source))


def _decode(stream: IO[bytes], label: str, max_pixels: int | None, *, named_dicom: bool) -> Image.Image:
    if named_dicom or has_dicom_magic(_peek(stream, DICOM_MAGIC_OFFSET + len(DICOM_MAGIC))):
        # Imported here: dicom.py imports this module, and it is only needed when a DICOM file is met.
        from training_scripts.dicom import decode_dicom

        return decode_dicom(stream, label, max_pixels)
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


_LUT_MAX_LEVELS = 1 << 16  # integer images spanning more levels than this (rare 32-bit ones) take the float path


def rescale_to_uint8(values: np.ndarray) -> np.ndarray:
    """Greyscale values of any numeric type -> uint8, linearly from their own min..max to 0..255.

    A constant array becomes all 0; NaN and infinities become 0. Shared by 16-bit/float PIL images and DICOM, so a
    12-bit X-ray keeps the same contrast whichever format it was stored in.
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


# ----------------------------------------------------------------------------------------------------- text

PAD_ID = 0
UNK_ID = 1
PAD_TOKEN = "<pad>"
UNK_TOKEN = "<unk>"

_HTML_TAG = re.compile(r"<[^<>]{0,200}>")
# In order: decimal numbers (3.5, 1,000), words or numbers with inner apostrophes (don't, 90's),
# then any other single non-space character (punctuation, symbols, a stray apostrophe, underscore).
_TOKEN = re.compile(r"\d+(?:[.,]\d+)+|[^\W_]+(?:'[^\W_]+)*|[^\w\s]|_")


def tokenize(text: str, lowercase: bool = True) -> list[str]:
    """Split text into word, number and punctuation tokens.

    HTML tags (`<br />`, `<i>` - common in scraped reviews) become spaces and entities (`&amp;`) are unescaped;
    curly apostrophes become straight ones. Tokens: decimal numbers ("3.5", "1,000"), words and numbers with
    inner apostrophes kept whole ("don't"), and every other non-space character on its own ("!", "?", "/").
    Example: "Don't stop!<br />10/10" -> ["don't", "stop", "!", "10", "/", "10"].
    """
    text = html.unescape(_HTML_TAG.sub(" ", text)).replace("\u2019", "'")
    if lowercase:
        text = text.lower()
    return _TOKEN.findall(text)


class Vocabulary:
    """Token <-> id mapping; id 0 is padding and id 1 stands for any unknown token."""

    def __init__(self, itos: Sequence[str]) -> None:
        itos = list(itos)
        if len(itos) < 2 or itos[PAD_ID] != PAD_TOKEN or itos[UNK_ID] != UNK_TOKEN:
            raise ValueError(
                f"a vocabulary starts with [{PAD_TOKEN!r}, {UNK_TOKEN!r}] (ids {PAD_ID} and {UNK_ID}), got {itos[:2]}"
            )
        if not all(isinstance(token, str) for token in itos):
            raise ValueError("vocabulary entries must be strings")
        if len(set(itos)) != len(itos):
            duplicates = sorted(token for token, count in Counter(itos).items() if count > 1)
            raise ValueError(f"vocabulary has duplicate entries: {duplicates[:10]}")
        self.itos: list[str] = itos
        self.stoi: dict[str, int] = {token: index for index, token in enumerate(itos)}

    @classmethod
    def build(cls, token_lists: Iterable[Sequence[str]], max_size: int | None = None, min_freq: int = 1) -> Vocabulary:
        """Most frequent tokens first, ties broken alphabetically, so the same corpus always gives the same ids.

        `max_size` caps the whole vocabulary INCLUDING <pad> and <unk> (it is the embedding table's size);
        tokens seen fewer than `min_freq` times are left out (they encode as <unk>).
        """
        if max_size is not None and max_size < 2:
            raise ValueError(f"max_size must be >= 2 (room for {PAD_TOKEN} and {UNK_TOKEN}), got {max_size}")
        if min_freq < 1:
            raise ValueError(f"min_freq must be >= 1, got {min_freq}")
        counts: Counter[str] = Counter()
        for tokens in token_lists:
            counts.update(tokens)
        counts.pop(PAD_TOKEN, None)
        counts.pop(UNK_TOKEN, None)
        ranked = sorted((token for token, count in counts.items() if count >= min_freq), key=lambda t: (-counts[t], t))
        if max_size is not None:
            ranked = ranked[: max_size - 2]
        return cls([PAD_TOKEN, UNK_TOKEN, *ranked])

    def __len__(self) -> int:
        return len(self.itos)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Vocabulary) and self.itos == other.itos

    def encode(self, tokens: Iterable[str]) -> list[int]:
        return [self.stoi.get(token, UNK_ID) for token in tokens]

    def to_dict(self) -> dict[str, Any]:
        return {"itos": list(self.itos), "pad_id": PAD_ID, "unk_id": UNK_ID}

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write vocab.json (`path` may be the output folder); returns the file written."""
        target = _file_in(path, VOCAB_FILE)
        target.write_text(json.dumps(self.to_dict(), ensure_ascii=False), encoding="utf-8")
        return target

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> Vocabulary:
        source = _file_in(path, VOCAB_FILE)
        data = _read_json(source)
        if not isinstance(data, dict) or not isinstance(data.get("itos"), list):
            raise ValueError(f"{source}: expected a JSON object with an 'itos' list")
        if data.get("pad_id", PAD_ID) != PAD_ID or data.get("unk_id", UNK_ID) != UNK_ID:
            raise ValueError(
                f"{source}: pad_id/unk_id are {data.get('pad_id')}/{data.get('unk_id')}, expected {PAD_ID}/{UNK_ID}"
            )
        try:
            return cls(data["itos"])
        except ValueError as exc:
            raise ValueError(f"{source}: {exc}") from exc


@dataclass(frozen=True)
class TextPreprocessConfig:
    """Tokenize (optionally lowercased), keep the first `seq_len` tokens, pad with PAD_ID at the end."""

    seq_len: int = 100
    lowercase: bool = True

    def __post_init__(self) -> None:
        if int(self.seq_len) != self.seq_len or self.seq_len < 1:
            raise ValueError(f"seq_len must be a positive integer, got {self.seq_len!r}")

    def to_dict(self) -> dict[str, Any]:
        return {
            "task": TEXT_TASK,
            "seq_len": self.seq_len,
            "lowercase": self.lowercase,
            "pad_id": PAD_ID,
            "unk_id": UNK_ID,
            "input_name": TEXT_INPUT_NAME,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TextPreprocessConfig:
        _check_task(data, TEXT_TASK)
        missing = [key for key in ("seq_len", "lowercase") if key not in data]
        if missing:
            raise ValueError(f"text preprocess config lacks {missing}; got keys {sorted(data)}")
        if data.get("pad_id", PAD_ID) != PAD_ID or data.get("unk_id", UNK_ID) != UNK_ID:
            raise ValueError(
                f"text preprocess config has pad_id/unk_id {data.get('pad_id')}/{data.get('unk_id')}; "
                f"this version supports only {PAD_ID}/{UNK_ID}"
            )
        return cls(seq_len=int(data["seq_len"]), lowercase=bool(data["lowercase"]))


def encode_texts(texts: Iterable[str], vocab: Vocabulary, cfg: TextPreprocessConfig) -> np.ndarray:
    """Texts -> int64 [N, seq_len]: the first seq_len token ids, then PAD_ID to the end of the row.

    A text with no tokens encodes as a single UNK_ID, so every row has at least one real token (the LSTM reads
    its output at the last real token).
    """
    rows = [vocab.encode(tokenize(text, cfg.lowercase)[: cfg.seq_len]) or [UNK_ID] for text in texts]
    out = np.full((len(rows), cfg.seq_len), PAD_ID, dtype=np.int64)
    for index, ids in enumerate(rows):
        out[index, : len(ids)] = ids
    return out


# ---------------------------------------------------------------------------------------------- config file

PreprocessConfig = ImagePreprocessConfig | TextPreprocessConfig


def _check_task(data: Mapping[str, Any], expected: str) -> None:
    task = data.get("task", expected)
    if task != expected:
        raise ValueError(f"preprocess config is for task {task!r}, expected {expected!r}")


def _file_in(path: str | os.PathLike[str], default_name: str) -> Path:
    """`path` itself, or `path/default_name` when `path` is a directory (the training output folder)."""
    path = Path(path)
    return path / default_name if path.is_dir() else path


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path} is not valid JSON: {exc}") from exc


def save_preprocess_config(path: str | os.PathLike[str], cfg: PreprocessConfig) -> Path:
    """Write preprocess.json (`path` may be the output folder); returns the file written."""
    target = _file_in(path, PREPROCESS_FILE)
    target.write_text(json.dumps(cfg.to_dict(), indent=2) + "\n", encoding="utf-8")
    return target


def load_preprocess_config(path: str | os.PathLike[str]) -> PreprocessConfig:
    """Read preprocess.json (or `path/preprocess.json`) into the config class its "task" names."""
    source = _file_in(path, PREPROCESS_FILE)
    data = _read_json(source)
    if not isinstance(data, dict):
        raise ValueError(f"{source}: expected a JSON object, got {type(data).__name__}")
    task = data.get("task")
    try:
        if task == IMAGE_TASK:
            return ImagePreprocessConfig.from_dict(data)
        if task == TEXT_TASK:
            return TextPreprocessConfig.from_dict(data)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{source}: {exc}") from exc
    raise ValueError(f"{source}: unknown task {task!r}; expected {IMAGE_TASK!r} or {TEXT_TASK!r}")
