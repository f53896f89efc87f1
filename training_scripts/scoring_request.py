"""The scoring request: its limits (AZURE_DL_* variables), the body parsed and checked field by field, and
the client's values rendered safely in messages. Every mistake is a `RequestError` naming the field and what to
send instead (a 400, or 413 for an oversized body); training_scripts/scoring.py documents the whole contract.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
import os
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from training_scripts.image_formats import has_dicom_magic

MAX_REQUEST_BYTES_ENV = "AZURE_DL_MAX_REQUEST_BYTES"
MAX_BATCH_ENV = "AZURE_DL_MAX_BATCH"
MAX_PIXELS_ENV = "AZURE_DL_MAX_IMAGE_PIXELS"
MAX_TEXT_CHARS_ENV = "AZURE_DL_MAX_TEXT_CHARS"
# 32 MiB holds two 10 MB radiographs as base64 (4/3 of their size) and bounds what one request makes json.loads
# hold in memory (about 10x the body for a list of short strings).
DEFAULT_MAX_REQUEST_BYTES = 32 * 1024 * 1024
DEFAULT_MAX_BATCH = 64
# 40 MP passes any X-ray or camera photo (a 16-bit 4096x4096 plate is 16.8 MP) and stops decompression bombs,
# whose header claims e.g. 100k x 100k pixels for a few kilobytes of data.
DEFAULT_MAX_PIXELS = 40_000_000
DEFAULT_MAX_TEXT_CHARS = 100_000
DEFAULT_TOP_K = 3

IMAGE_FIELDS = ("images", "top_k", "frame")
TEXT_FIELDS = ("texts",)

# First bytes of the formats the contract accepts (also the extensions training reads). Checked before PIL opens
# the data, so none of PIL's many other decoders ever sees untrusted bytes. DICOM has its marker at byte 128
# (image_formats.has_dicom_magic) and is decoded by pydicom, not PIL.
IMAGE_MAGIC = ((b"\xff\xd8\xff", "JPEG"), (b"\x89PNG\r\n\x1a\n", "PNG"), (b"BM", "BMP"))


class RequestError(ValueError):
    """The request is wrong in a way the client can fix: answered with HTTP `status` (400 unless told), this message."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


def env_int(name: str, default: int, *, minimum: int = 1) -> int:
    raw = os.environ.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ValueError(f"{name}={raw!r} is not an integer") from None
    if value < minimum:
        raise ValueError(f"{name}={value} must be >= {minimum}")
    return value


@dataclass(frozen=True)
class Limits:
    """Request limits; `from_env` reads them from the AZURE_DL_* variables the module docstring lists."""

    max_batch: int = DEFAULT_MAX_BATCH
    max_pixels: int = DEFAULT_MAX_PIXELS
    max_text_chars: int = DEFAULT_MAX_TEXT_CHARS
    max_request_bytes: int = DEFAULT_MAX_REQUEST_BYTES

    @classmethod
    def from_env(cls) -> Limits:
        return cls(
            max_batch=env_int(MAX_BATCH_ENV, DEFAULT_MAX_BATCH),
            max_pixels=env_int(MAX_PIXELS_ENV, DEFAULT_MAX_PIXELS),
            max_text_chars=env_int(MAX_TEXT_CHARS_ENV, DEFAULT_MAX_TEXT_CHARS),
            max_request_bytes=env_int(MAX_REQUEST_BYTES_ENV, DEFAULT_MAX_REQUEST_BYTES),
        )


# ----------------------------------------------------------------------------------------------- the request


def parse_body(raw_data: Any, max_bytes: int = DEFAULT_MAX_REQUEST_BYTES) -> dict[str, Any]:
    """The request as a dict: the server passes the body as a str (or bytes); a dict is taken as already parsed.

    A body over `max_bytes` (UTF-8) is refused with 413 before it is parsed.
    """
    if isinstance(raw_data, dict):
        return raw_data
    if isinstance(raw_data, bytes | bytearray | str):
        check_size(raw_data, max_bytes)
    if isinstance(raw_data, bytes | bytearray):
        try:
            raw_data = bytes(raw_data).decode("utf-8")
        except UnicodeDecodeError:
            raise RequestError("the request body is not UTF-8 text; send a JSON object") from None
    if not isinstance(raw_data, str):
        raise RequestError(f"the request must be a JSON object, got {type(raw_data).__name__}")
    if not raw_data.strip():
        raise RequestError("the request body is empty; send a JSON object")
    try:
        body = json.loads(raw_data)
    except json.JSONDecodeError as exc:
        raise RequestError(
            f"the request body is not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}"
        ) from None
    except RecursionError:
        # json's scanner recurses once per nested array/object and stops at Python's recursion limit (~1,000).
        raise RequestError(
            "the request body is nested too deeply (JSON arrays/objects inside each other beyond about "
            f'{sys.getrecursionlimit()} levels); a scoring request is a flat object such as {{"images": [...]}}'
        ) from None
    if not isinstance(body, dict):
        raise RequestError(f"the request body must be a JSON object, got a JSON {json_type(body)}")
    return body


def check_size(raw_data: str | bytes | bytearray, max_bytes: int) -> None:
    size = len(raw_data)
    if isinstance(raw_data, str) and size <= max_bytes and not raw_data.isascii():
        # Characters undercount UTF-8 bytes only for non-ASCII text; base64 bodies are ASCII and skip this.
        size = len(raw_data.encode("utf-8", "surrogatepass"))
    if size > max_bytes:
        raise RequestError(
            f"the request body is {size} bytes, more than the limit of {max_bytes}; send fewer or smaller items "
            f"per request (the server's {MAX_REQUEST_BYTES_ENV} sets the limit)",
            status=413,
        )


def preview(value: Any, width: int = 40) -> str:
    """A short, safe rendering of a client's value for a message (never recursing into a nested container)."""
    if isinstance(value, list | dict):
        return f"a JSON {json_type(value)}"
    text = value if isinstance(value, str) else json.dumps(value)
    return repr(text[:width] + "..." if len(text) > width else text)


def json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object" if isinstance(value, dict) else type(value).__name__


def check_fields(body: Mapping[str, Any], allowed: Sequence[str], example: str, other_task: dict[str, str]) -> None:
    unknown = [key for key in body if key not in allowed]
    if not unknown:
        return
    for key in unknown:
        if key in other_task:
            raise RequestError(f"{other_task[key]}; send {example}")
    # Keys are the client's: a megabyte-long key must not become a megabyte-long message.
    names = ", ".join(preview(key) for key in unknown[:5]) + (
        f" and {len(unknown) - 5} more" if len(unknown) > 5 else ""
    )
    raise RequestError(f"unknown field(s) {names}; this model accepts only {', '.join(allowed)}: {example}")


def request_items(body: Mapping[str, Any], field: str, example: str, limits: Limits) -> list[Any]:
    if field not in body:
        raise RequestError(f"missing field {field!r}; send {example}")
    items = body[field]
    if not isinstance(items, list):
        raise RequestError(f"{field!r} must be a JSON array, got a JSON {json_type(items)}; send {example}")
    if not items:
        raise RequestError(f"{field!r} is empty; send at least one item")
    if len(items) > limits.max_batch:
        raise RequestError(
            f"{field!r} has {len(items)} items, more than the limit of {limits.max_batch} per request; "
            f"split them over several requests (the server's {MAX_BATCH_ENV} sets the limit)"
        )
    return items


def strip_data_uri(text: str) -> str:
    # Browsers and some clients send "data:image/png;base64,...".
    if text.startswith("data:"):
        head, sep, rest = text.partition(",")
        if sep and head.endswith(";base64"):
            return rest
    return text


def decode_base64_image(value: Any, index: int) -> bytes:
    """images[index] -> the image bytes, checked to be base64 and to start like a JPEG, PNG, BMP or DICOM file."""
    where = f"images[{index}]"
    if not isinstance(value, str):
        raise RequestError(f"{where} must be a base64 string, got a JSON {json_type(value)}")
    # Line breaks are what `base64` tools insert every 76 characters; any other stray character is an error.
    compact = "".join(strip_data_uri(value).split())
    if not compact:
        raise RequestError(f"{where} is an empty string; send the base64 of a JPEG, PNG or BMP file")
    try:
        data = base64.b64decode(compact, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise RequestError(f"{where} is not valid base64 ({exc}); send standard base64 of the file's bytes") from None
    if not any(data.startswith(magic) for magic, _ in IMAGE_MAGIC) and not has_dicom_magic(data):
        raise RequestError(
            f"{where} is not a JPEG, PNG or BMP file or a DICOM file (its first bytes are {data[:8].hex(' ')}); "
            "send the base64 of the image file itself"
        )
    return data


def parse_frame(body: Mapping[str, Any]) -> int:
    """The optional "frame": which frame (0-based) of a multi-frame DICOM to score; default 0, the first."""
    if "frame" not in body or body["frame"] is None:
        return 0
    value = body["frame"]
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise RequestError(
            f"'frame' must be a whole number >= 0 (0 is a DICOM file's first frame), got {preview(value)}"
        )
    return value


def parse_top_k(body: Mapping[str, Any], num_classes: int) -> int:
    if "top_k" not in body or body["top_k"] is None:
        return min(DEFAULT_TOP_K, num_classes)
    value = body["top_k"]
    # JSON true is a Python bool, which is an int: refuse it explicitly. 3.0 is accepted as 3.
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise RequestError(f"'top_k' must be an integer, got {preview(value)}")
    # Python's json accepts NaN and Infinity, on which int() raises.
    if isinstance(value, float) and (not math.isfinite(value) or int(value) != value):
        raise RequestError(f"'top_k' must be an integer, got {value!r}")
    top_k = int(value)
    if not 1 <= top_k <= num_classes:
        raise RequestError(f"'top_k' must be between 1 and {num_classes} (the model's classes), got {top_k}")
    return top_k
