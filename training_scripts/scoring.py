"""What the scoring scripts share: find the model files, validate requests, run ONNX Runtime, shape responses.

Torch-free (numpy, PIL, onnxruntime; the inference server's response type only when a response is built), because
the inference environment has no torch. The request/response contract:

- image model: `{"images": ["<base64 JPEG/PNG/BMP/DICOM>", ...], "top_k": 3}` (`top_k` optional, 1..number of
  classes, default min(3, number of classes); `"frame": n` optional, which frame of a multi-frame DICOM to score,
  0-based, default 0); DICOM needs pydicom in the server's environment (without it such an item gets a 400 that
  says so), and its compressed transfer syntaxes the pylibjpeg plugins of the `dicom` extra;
- text model: `{"texts": ["...", ...]}`;
- answer: `{"predictions": [{"label": ..., "score": p, "probabilities": {label: p, ...}}, ...]}` in request order;
  `probabilities` holds the top_k classes (highest first) for images and every class for text.

Every client mistake gets HTTP 400 with `{"message": "..."}` naming the field, the item and what to do: bad JSON
(including JSON nested deeper than Python's parser goes, about 1,000 levels), not an object, a missing, mistyped or
unknown field (unknown fields are REJECTED, so a typo such as "image" or "topk" is not silently ignored), an empty
list, more items than the batch limit, invalid base64, a payload that is not a decodable JPEG/PNG/BMP/DICOM, an image
over the pixel limit, a non-string or over-long text, top_k out of range or not finite (Python's json accepts NaN
and Infinity). A body larger than AZURE_DL_MAX_REQUEST_BYTES gets 413.
A fault on the server's side (ONNX Runtime failing, non-finite scores) gets 500 with a generic message and is
logged with its traceback. Limits come from the environment: AZURE_DL_MAX_REQUEST_BYTES (request body, default
32 MiB: a 10 MB radiograph is 13.4 MB as base64), AZURE_DL_MAX_BATCH (items per request, default 64),
AZURE_DL_MAX_IMAGE_PIXELS (width x height, default 40,000,000), AZURE_DL_MAX_TEXT_CHARS (default 100,000), and
AZURE_DL_ORT_THREADS (ONNX Runtime intra-op threads, default 0 = ONNX Runtime's choice).
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import math
import os
import sys
import uuid
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from training_scripts.image_decode import open_image
from training_scripts.image_formats import ImageDecodeError, ImageTooLargeError, MissingDecoderError, has_dicom_magic
from training_scripts.image_transforms import image_to_array
from training_scripts.model_folder import LABELS_FILE, ONNX_FILE, SERVING_FILES, VOCAB_FILE
from training_scripts.preprocess_config import (
    ImagePreprocessConfig,
    TextPreprocessConfig,
    load_preprocess_config,
)
from training_scripts.text_encode import encode_texts
from training_scripts.text_vocab import Vocabulary

MODEL_DIR_ENV = "AZUREML_MODEL_DIR"

MAX_REQUEST_BYTES_ENV = "AZURE_DL_MAX_REQUEST_BYTES"
MAX_BATCH_ENV = "AZURE_DL_MAX_BATCH"
MAX_PIXELS_ENV = "AZURE_DL_MAX_IMAGE_PIXELS"
MAX_TEXT_CHARS_ENV = "AZURE_DL_MAX_TEXT_CHARS"
ORT_THREADS_ENV = "AZURE_DL_ORT_THREADS"
# 32 MiB holds two 10 MB radiographs as base64 (4/3 of their size) and bounds what one request makes json.loads
# hold in memory (about 10x the body for a list of short strings).
DEFAULT_MAX_REQUEST_BYTES = 32 * 1024 * 1024
DEFAULT_MAX_BATCH = 64
# 40 MP passes any X-ray or camera photo (a 16-bit 4096x4096 plate is 16.8 MP) and stops decompression bombs,
# whose header claims e.g. 100k x 100k pixels for a few kilobytes of data.
DEFAULT_MAX_PIXELS = 40_000_000
DEFAULT_MAX_TEXT_CHARS = 100_000
DEFAULT_TOP_K = 3
# Searched below AZUREML_MODEL_DIR: a registered custom_model folder lands one level down, a job output two.
MODEL_SEARCH_DEPTH = 3

IMAGE_FIELDS = ("images", "top_k", "frame")
TEXT_FIELDS = ("texts",)

# First bytes of the formats the contract accepts (also the extensions training reads). Checked before PIL opens
# the data, so none of PIL's many other decoders ever sees untrusted bytes. DICOM has its marker at byte 128
# (image_formats.has_dicom_magic) and is decoded by pydicom, not PIL.
_MAGIC = ((b"\xff\xd8\xff", "JPEG"), (b"\x89PNG\r\n\x1a\n", "PNG"), (b"BM", "BMP"))

# A child of the inference server's own logger, so messages land in its log with its format.
logger = logging.getLogger("azmlinfsrv.azure_dl")


class RequestError(ValueError):
    """The request is wrong in a way the client can fix: answered with HTTP `status` (400 unless told), this message."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


class Session(Protocol):
    """What the scorers need of an onnxruntime.InferenceSession (tests pass a fake)."""

    def run(self, output_names: Any, input_feed: Mapping[str, np.ndarray]) -> list[np.ndarray]: ...


# ------------------------------------------------------------------------------------------------ model files


def find_model_dir(root: str | os.PathLike[str] | None = None, *, max_depth: int = MODEL_SEARCH_DEPTH) -> Path:
    """The folder holding model.onnx + preprocess.json + labels.json: `root` itself or the shallowest below it.

    `root` defaults to $AZUREML_MODEL_DIR. Azure ML mounts a registered custom_model folder one level below that
    variable ($AZUREML_MODEL_DIR/<folder>/model.onnx); `azure-dl serve` points it at the folder itself. Two
    candidates at the same depth are ambiguous and raise ValueError; none raises FileNotFoundError.
    """
    if root is None:
        value = os.environ.get(MODEL_DIR_ENV)
        if not value:
            raise FileNotFoundError(f"{MODEL_DIR_ENV} is not set: it must point at the model files")
        root = value
    base = Path(root)
    if not base.is_dir():
        raise FileNotFoundError(f"model folder {base} does not exist or is not a folder")
    queue: deque[tuple[Path, int]] = deque([(base, 0)])
    found: list[tuple[int, Path]] = []
    while queue:
        folder, depth = queue.popleft()
        if found and depth > found[0][0]:
            break
        if all((folder / name).is_file() for name in SERVING_FILES):
            found.append((depth, folder))
            continue
        if depth < max_depth:
            try:
                children = sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))
            except OSError:
                continue
            queue.extend((child, depth + 1) for child in children)
    if not found:
        listing = ", ".join(sorted(p.name for p in base.iterdir())[:20]) or "nothing"
        raise FileNotFoundError(
            f"no folder with {', '.join(SERVING_FILES)} in {base} or {max_depth} levels below it "
            f"(it holds: {listing}); register or serve a training output folder"
        )
    if len(found) > 1:
        names = ", ".join(str(path) for _, path in found)
        raise ValueError(f"several model folders at the same depth under {base}: {names}; register only one")
    return found[0][1]


def read_labels(model_dir: Path) -> list[str]:
    """labels.json: class names in logit order."""
    path = model_dir / LABELS_FILE
    labels = json.loads(path.read_text(encoding="utf-8"))
    if not isinstance(labels, list) or not labels:
        raise ValueError(f"{path}: expected a non-empty JSON list of class names")
    return [str(label) for label in labels]


def create_session(model_path: Path, *, threads: int | None = None) -> Any:
    """An ONNX Runtime session on CUDA when this onnxruntime build has it, else on the CPU."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = _env_int(ORT_THREADS_ENV, 0, minimum=0) if threads is None else threads
    available = ort.get_available_providers()
    providers = ["CPUExecutionProvider"]
    if "CUDAExecutionProvider" in available:
        providers.insert(0, "CUDAExecutionProvider")
    return ort.InferenceSession(str(model_path), sess_options=options, providers=providers)


def _env_int(name: str, default: int, *, minimum: int = 1) -> int:
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
            max_batch=_env_int(MAX_BATCH_ENV, DEFAULT_MAX_BATCH),
            max_pixels=_env_int(MAX_PIXELS_ENV, DEFAULT_MAX_PIXELS),
            max_text_chars=_env_int(MAX_TEXT_CHARS_ENV, DEFAULT_MAX_TEXT_CHARS),
            max_request_bytes=_env_int(MAX_REQUEST_BYTES_ENV, DEFAULT_MAX_REQUEST_BYTES),
        )


# ----------------------------------------------------------------------------------------------- the request


def parse_body(raw_data: Any, max_bytes: int = DEFAULT_MAX_REQUEST_BYTES) -> dict[str, Any]:
    """The request as a dict: the server passes the body as a str (or bytes); a dict is taken as already parsed.

    A body over `max_bytes` (UTF-8) is refused with 413 before it is parsed.
    """
    if isinstance(raw_data, dict):
        return raw_data
    if isinstance(raw_data, bytes | bytearray | str):
        _check_size(raw_data, max_bytes)
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
        raise RequestError(f"the request body must be a JSON object, got a JSON {_json_type(body)}")
    return body


def _check_size(raw_data: str | bytes | bytearray, max_bytes: int) -> None:
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


def _preview(value: Any, width: int = 40) -> str:
    """A short, safe rendering of a client's value for a message (never recursing into a nested container)."""
    if isinstance(value, list | dict):
        return f"a JSON {_json_type(value)}"
    text = value if isinstance(value, str) else json.dumps(value)
    return repr(text[:width] + "..." if len(text) > width else text)


def _json_type(value: Any) -> str:
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


def _check_fields(body: Mapping[str, Any], allowed: Sequence[str], example: str, other_task: dict[str, str]) -> None:
    unknown = [key for key in body if key not in allowed]
    if not unknown:
        return
    for key in unknown:
        if key in other_task:
            raise RequestError(f"{other_task[key]}; send {example}")
    # Keys are the client's: a megabyte-long key must not become a megabyte-long message.
    names = ", ".join(_preview(key) for key in unknown[:5]) + (
        f" and {len(unknown) - 5} more" if len(unknown) > 5 else ""
    )
    raise RequestError(f"unknown field(s) {names}; this model accepts only {', '.join(allowed)}: {example}")


def _items(body: Mapping[str, Any], field: str, example: str, limits: Limits) -> list[Any]:
    if field not in body:
        raise RequestError(f"missing field {field!r}; send {example}")
    items = body[field]
    if not isinstance(items, list):
        raise RequestError(f"{field!r} must be a JSON array, got a JSON {_json_type(items)}; send {example}")
    if not items:
        raise RequestError(f"{field!r} is empty; send at least one item")
    if len(items) > limits.max_batch:
        raise RequestError(
            f"{field!r} has {len(items)} items, more than the limit of {limits.max_batch} per request; "
            f"split them over several requests (the server's {MAX_BATCH_ENV} sets the limit)"
        )
    return items


def _strip_data_uri(text: str) -> str:
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
        raise RequestError(f"{where} must be a base64 string, got a JSON {_json_type(value)}")
    # Line breaks are what `base64` tools insert every 76 characters; any other stray character is an error.
    compact = "".join(_strip_data_uri(value).split())
    if not compact:
        raise RequestError(f"{where} is an empty string; send the base64 of a JPEG, PNG or BMP file")
    try:
        data = base64.b64decode(compact, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise RequestError(f"{where} is not valid base64 ({exc}); send standard base64 of the file's bytes") from None
    if not any(data.startswith(magic) for magic, _ in _MAGIC) and not has_dicom_magic(data):
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
            f"'frame' must be a whole number >= 0 (0 is a DICOM file's first frame), got {_preview(value)}"
        )
    return value


def parse_top_k(body: Mapping[str, Any], num_classes: int) -> int:
    if "top_k" not in body or body["top_k"] is None:
        return min(DEFAULT_TOP_K, num_classes)
    value = body["top_k"]
    # JSON true is a Python bool, which is an int: refuse it explicitly. 3.0 is accepted as 3.
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise RequestError(f"'top_k' must be an integer, got {_preview(value)}")
    # Python's json accepts NaN and Infinity, on which int() raises.
    if isinstance(value, float) and (not math.isfinite(value) or int(value) != value):
        raise RequestError(f"'top_k' must be an integer, got {value!r}")
    top_k = int(value)
    if not 1 <= top_k <= num_classes:
        raise RequestError(f"'top_k' must be between 1 and {num_classes} (the model's classes), got {top_k}")
    return top_k


# ------------------------------------------------------------------------------------------------- the models


def softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise softmax in float64 (numerically stable)."""
    shifted = logits.astype(np.float64) - logits.max(axis=1, keepdims=True)
    exp = np.exp(shifted)
    return exp / exp.sum(axis=1, keepdims=True)


def predictions(probabilities: np.ndarray, labels: Sequence[str], top_k: int) -> list[dict[str, Any]]:
    """One prediction per row: the best label, its probability, and the top_k classes' probabilities (best first)."""
    result = []
    for row in probabilities:
        # A stable sort on the negated values keeps logit order among ties, so answers are deterministic.
        order = np.argsort(-row, kind="stable")[:top_k]
        result.append(
            {
                "label": labels[int(order[0])],
                "score": float(row[order[0]]),
                "probabilities": {labels[int(i)]: float(row[i]) for i in order},
            }
        )
    return result


class Scorer:
    """A loaded model: validates a request into a model input, runs the session, shapes the predictions."""

    task = ""

    def __init__(self, session: Session, labels: Sequence[str], input_name: str, limits: Limits) -> None:
        self.session = session
        self.labels = list(labels)
        self.input_name = input_name
        self.limits = limits

    def parse(self, body: Mapping[str, Any]) -> tuple[np.ndarray, int]:
        """(model input, top_k) for a request; RequestError for anything the client must fix."""
        raise NotImplementedError

    def predict(self, inputs: np.ndarray, top_k: int) -> list[dict[str, Any]]:
        logits = np.asarray(self.session.run(None, {self.input_name: inputs})[0])
        if logits.ndim != 2 or logits.shape != (len(inputs), len(self.labels)):
            raise RuntimeError(
                f"the model returned logits of shape {logits.shape}, expected ({len(inputs)}, {len(self.labels)})"
            )
        if not np.isfinite(logits).all():
            raise RuntimeError("the model returned non-finite logits")
        return predictions(softmax(logits), self.labels, top_k)

    def score(self, body: Mapping[str, Any]) -> dict[str, Any]:
        inputs, top_k = self.parse(body)
        return {"predictions": self.predict(inputs, top_k)}


class ImageScorer(Scorer):
    task = "image-classification"
    example = '{"images": ["<base64 JPEG/PNG/BMP/DICOM>", ...], "top_k": 3}'

    def __init__(self, session: Session, labels: Sequence[str], cfg: ImagePreprocessConfig, limits: Limits) -> None:
        super().__init__(session, labels, "pixel_values", limits)
        self.cfg = cfg

    def parse(self, body: Mapping[str, Any]) -> tuple[np.ndarray, int]:
        _check_fields(body, IMAGE_FIELDS, self.example, {"texts": "this model classifies images, not texts"})
        items = _items(body, "images", self.example, self.limits)
        top_k = parse_top_k(body, len(self.labels))
        frame = parse_frame(body)
        payloads = [decode_base64_image(value, index) for index, value in enumerate(items)]
        arrays = []
        for index, data in enumerate(payloads):
            try:
                img = open_image(data, max_pixels=self.limits.max_pixels, name=f"images[{index}]", frame=frame)
            except ImageTooLargeError as exc:
                # open_image's advice ("raise max_pixels") is for the server's owner, not for the client.
                reason = str(exc).split("; downscale", 1)[0]
                raise RequestError(
                    f"{reason}; downscale the image (the server's {MAX_PIXELS_ENV} sets the limit)"
                ) from None
            except MissingDecoderError as exc:
                # A client's 400, not a server fault: the request asks for a format this deployment does not read.
                # Logged as a warning too, because the fix (adding pydicom) is the server owner's.
                logger.warning("%s", exc)
                raise RequestError(
                    f"{exc}; this endpoint cannot read DICOM until pydicom is added to its environment, "
                    "so send the image as PNG or JPEG"
                ) from None
            except ImageDecodeError as exc:
                raise RequestError(f"{exc}; send an intact JPEG, PNG, BMP or DICOM file") from None
            arrays.append(image_to_array(img, self.cfg))
        return np.stack(arrays), top_k


class TextScorer(Scorer):
    task = "text-classification"
    example = '{"texts": ["first text", "second text", ...]}'

    def __init__(
        self, session: Session, labels: Sequence[str], cfg: TextPreprocessConfig, vocab: Vocabulary, limits: Limits
    ) -> None:
        super().__init__(session, labels, "input_ids", limits)
        self.cfg = cfg
        self.vocab = vocab

    def parse(self, body: Mapping[str, Any]) -> tuple[np.ndarray, int]:
        _check_fields(
            body,
            TEXT_FIELDS,
            self.example,
            {"images": "this model classifies texts, not images", "top_k": "'top_k' applies to image models only"},
        )
        items = _items(body, "texts", self.example, self.limits)
        for index, text in enumerate(items):
            if not isinstance(text, str):
                raise RequestError(f"texts[{index}] must be a string, got a JSON {_json_type(text)}")
            if len(text) > self.limits.max_text_chars:
                raise RequestError(
                    f"texts[{index}] has {len(text)} characters, more than the limit of {self.limits.max_text_chars}; "
                    f"the model reads only its first {self.cfg.seq_len} tokens, so send a shorter text"
                )
        return encode_texts(items, self.vocab, self.cfg), len(self.labels)


def load_scorer(
    model_dir: Path, *, expected_task: str | None = None, session: Session | None = None, limits: Limits | None = None
) -> Scorer:
    """The scorer for a model folder: config, labels (and vocabulary) read, the ONNX session created once."""
    cfg = load_preprocess_config(model_dir)
    labels = read_labels(model_dir)
    limits = limits or Limits.from_env()
    session = session if session is not None else create_session(model_dir / ONNX_FILE)
    scorer: Scorer
    if isinstance(cfg, ImagePreprocessConfig):
        scorer = ImageScorer(session, labels, cfg, limits)
    else:
        scorer = TextScorer(session, labels, cfg, Vocabulary.load(model_dir / VOCAB_FILE), limits)
    if expected_task is not None and scorer.task != expected_task:
        raise ValueError(f"{model_dir} holds a {scorer.task} model; this scoring script serves {expected_task} models")
    logger.info("loaded %s model from %s: %d classes", scorer.task, model_dir, len(labels))
    return scorer


# ---------------------------------------------------------------------------------------------- the response


def error_response(status: int, message: str) -> Any:
    """The inference server's own response type with a JSON body {"message": ...} (its errors look the same)."""
    from azureml_inference_server_http.api.aml_response import AMLResponse

    return AMLResponse({"message": message}, status, json_str=True)


def handle(scorer: Scorer | None, raw_data: Any) -> Any:
    """run()'s body: the predictions dict, a 400 response for a client error, a 500 response for a server fault."""
    try:
        if scorer is None:
            raise RuntimeError("run() was called before init() loaded the model")
        return scorer.score(parse_body(raw_data, scorer.limits.max_request_bytes))
    except RequestError as exc:
        logger.info("rejected a request (%d): %s", exc.status, exc)
        return error_response(exc.status, str(exc))
    except Exception:
        # The details (and possibly paths) stay in the server log; the client gets an id to quote.
        incident = uuid.uuid4().hex[:12]
        logger.exception("scoring failed (incident %s)", incident)
        return error_response(500, f"internal error while scoring (incident {incident}); see the server log")
