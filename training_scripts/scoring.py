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

import json
import logging
import os
import uuid
from collections import deque
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from training_scripts.data_collection import DataCollection
from training_scripts.image_decode import open_image
from training_scripts.image_formats import ImageDecodeError, ImageTooLargeError, MissingDecoderError
from training_scripts.image_transforms import image_to_array
from training_scripts.model_folder import LABELS_FILE, ONNX_FILE, SERVING_FILES, VOCAB_FILE
from training_scripts.preprocess_config import (
    ImagePreprocessConfig,
    TextPreprocessConfig,
    load_preprocess_config,
)
from training_scripts.scoring_request import (
    IMAGE_FIELDS,
    MAX_PIXELS_ENV,
    TEXT_FIELDS,
    Limits,
    RequestError,
    check_fields,
    decode_base64_image,
    env_int,
    json_type,
    parse_body,
    parse_frame,
    parse_top_k,
    request_items,
)
from training_scripts.text_encode import encode_texts
from training_scripts.text_vocab import Vocabulary

MODEL_DIR_ENV = "AZUREML_MODEL_DIR"

ORT_THREADS_ENV = "AZURE_DL_ORT_THREADS"

# Searched below AZUREML_MODEL_DIR: a registered custom_model folder lands one level down, a job output two.
MODEL_SEARCH_DEPTH = 3

# A child of the inference server's own logger, so messages land in its log with its format.
logger = logging.getLogger("azmlinfsrv.azure_dl")


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
    options.intra_op_num_threads = env_int(ORT_THREADS_ENV, 0, minimum=0) if threads is None else threads
    available = ort.get_available_providers()
    providers = ["CPUExecutionProvider"]
    if "CUDAExecutionProvider" in available:
        providers.insert(0, "CUDAExecutionProvider")
    return ort.InferenceSession(str(model_path), sess_options=options, providers=providers)


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
        check_fields(body, IMAGE_FIELDS, self.example, {"texts": "this model classifies images, not texts"})
        items = request_items(body, "images", self.example, self.limits)
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
        check_fields(
            body,
            TEXT_FIELDS,
            self.example,
            {"images": "this model classifies texts, not images", "top_k": "'top_k' applies to image models only"},
        )
        items = request_items(body, "texts", self.example, self.limits)
        for index, text in enumerate(items):
            if not isinstance(text, str):
                raise RequestError(f"texts[{index}] must be a string, got a JSON {json_type(text)}")
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


def handle(scorer: Scorer | None, raw_data: Any, collection: DataCollection | None = None) -> Any:
    """run()'s body: the predictions dict, a 400 response for a client error, a 500 response for a server fault;
    with `collection` (data_collection.from_environment()), the request's inputs and predictions are collected."""
    try:
        if scorer is None:
            raise RuntimeError("run() was called before init() loaded the model")
        body = parse_body(raw_data, scorer.limits.max_request_bytes)
        return scorer.score(body) if collection is None else collection.score(scorer, body)
    except RequestError as exc:
        logger.info("rejected a request (%d): %s", exc.status, exc)
        return error_response(exc.status, str(exc))
    except Exception:
        # The details (and possibly paths) stay in the server log; the client gets an id to quote.
        incident = uuid.uuid4().hex[:12]
        logger.exception("scoring failed (incident %s)", incident)
        return error_response(500, f"internal error while scoring (incident {incident}); see the server log")
