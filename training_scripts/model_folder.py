"""The training output folder: its file names, how its JSON files read, its one content hash, the registration gate.

A training run writes this folder (train_common), the export and quantization steps add to it, evaluation,
scoring, serving and both registries (local MLflow and Azure ML) read it. Every one of them takes the names from
here, so a file renamed once is renamed everywhere, and both registries tag a folder with the same digest, so a
model registered locally and in Azure is recognised as the same model.

Standard library only (a leaf): the control plane, the torch-free evaluate step and the scoring scripts import it.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ONNX_FILE = "model.onnx"  # what is served, registered and evaluated
WEIGHTS_FILE = "model.pt"  # the best PyTorch state_dict (weights only); not registered
MODEL_CONFIG_FILE = "model_config.json"  # architecture and its arguments, to rebuild the PyTorch model
LABELS_FILE = "labels.json"  # class names in output order
VOCAB_FILE = "vocab.json"  # text models: the vocabulary
PREPROCESS_FILE = "preprocess.json"  # the task and the preprocessing scoring must repeat
METRICS_FILE = "metrics.json"  # validation and test metrics (docs/architecture.md)
EXPORT_FILE = "export.json"  # the ONNX export and its parity check with PyTorch
QUANTIZATION_FILE = "quantization.json"  # written by `register --quantize`: which model was kept and why
DATA_REPORT_FILE = "data_report.json"  # files and rows skipped while loading, counted
PLOTS_DIR = "plots"  # training curves and confusion matrix

# What a registered model version holds, in both registries: the model and every sidecar scoring or a later
# comparison needs, never the PyTorch weights or checkpoints.
REGISTERED_FILES = (
    ONNX_FILE,
    LABELS_FILE,
    VOCAB_FILE,
    PREPROCESS_FILE,
    METRICS_FILE,
    EXPORT_FILE,
    MODEL_CONFIG_FILE,
    QUANTIZATION_FILE,
)
# What every finished training run leaves (a download of a job's output is complete when it has these).
TRAINING_OUTPUT_FILES = (ONNX_FILE, LABELS_FILE, PREPROCESS_FILE, METRICS_FILE, EXPORT_FILE)
# What the scoring scripts cannot start without (text models also need VOCAB_FILE).
SERVING_FILES = (ONNX_FILE, PREPROCESS_FILE, LABELS_FILE)

# The model-version tag holding content_hash(): the same model registered twice is found by it.
CONTENT_HASH_TAG = "azure_dl.content_sha256"

# Metrics where higher is better: the ones a gate may require a minimum of (`loss` is not, for that reason).
GATE_METRICS = ("macro_f1", "balanced_accuracy", "accuracy", "auroc")

_HASH_CHUNK = 1 << 20


def file_in_folder(path: str | os.PathLike[str], default_name: str) -> Path:
    """`path` itself, or `path/default_name` when `path` is a directory (the training output folder)."""
    path = Path(path)
    return path / default_name if path.is_dir() else path


def read_json_file(path: Path) -> Any:
    """The parsed JSON of `path`; ValueError naming the file when it is not valid JSON (OSError when unreadable)."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path} is not valid JSON: {exc}") from exc


def read_optional_json(path: Path) -> Any:
    """Like read_json_file, but None when the file does not exist (a sidecar a folder may lack)."""
    return read_json_file(path) if path.is_file() else None


def has_model(folder: Path) -> bool:
    """Whether `folder` holds an exported model (the mark of a training output folder)."""
    return (Path(folder) / ONNX_FILE).is_file()


def registered_files_present(folder: Path) -> list[str]:
    """The REGISTERED_FILES that exist in `folder`, sorted by name."""
    return sorted(name for name in REGISTERED_FILES if (Path(folder) / name).is_file())


def _file_sha256(path: Path) -> bytes:
    digest = hashlib.sha256()
    with path.open("rb") as stream:  # streamed: a ResNet-50 model.onnx is ~100 MB
        for chunk in iter(lambda: stream.read(_HASH_CHUNK), b""):
            digest.update(chunk)
    return digest.digest()


def content_hash(folder: Path) -> str:
    """The identity of a model: sha256 over (name, sha256 of bytes) of each registered file present, by name.

    Only REGISTERED_FILES count, so a folder and its staged copy for upload (which holds just those) hash alike.
    """
    digest = hashlib.sha256()
    for name in registered_files_present(folder):
        digest.update(name.encode() + b"\0" + _file_sha256(Path(folder) / name))
    return digest.hexdigest()


def parity_problem(export: Mapping[str, Any] | None) -> str | None:
    """Why export.json does not show a passed ONNX parity check, or None when it does."""
    if export is None:
        return f"{EXPORT_FILE} is missing, so ONNX parity with PyTorch is unknown; re-export the model"
    if export.get("passed") is not True:
        return (
            f"ONNX parity check failed: max_abs_diff {export.get('max_abs_diff')} exceeds tolerance "
            f"{export.get('tolerance')} ({EXPORT_FILE}); the ONNX model does not reproduce the PyTorch model"
        )
    return None


@dataclass(frozen=True)
class GateRefusal:
    """Why a model folder may not be registered, and what to do about it (hint may be empty)."""

    reason: str
    hint: str = ""


def registration_refusal(folder: Path, min_metrics: Mapping[str, float] | None = None) -> GateRefusal | None:
    """The registration gate: None when `folder` may be registered, else why not.

    A model passes when its ONNX export reproduced PyTorch and each test metric in `min_metrics` reaches its
    minimum. An unknown metric name is a ValueError (a usage error, not a refusal of the model).
    """
    folder = Path(folder)
    for metric in min_metrics or {}:
        if metric not in GATE_METRICS:
            raise ValueError(f"minimum metric {metric!r} is not one of {', '.join(GATE_METRICS)}")
    problem = parity_problem(read_optional_json(folder / EXPORT_FILE))
    if problem is not None:
        return GateRefusal(f"refusing to register {folder}: {problem}")
    if not min_metrics:
        return None
    metrics = read_optional_json(folder / METRICS_FILE) or {}
    test = metrics.get("test") if isinstance(metrics, dict) else None
    if not isinstance(test, dict):
        return GateRefusal(
            f"refusing to register {folder}: {METRICS_FILE} has no test metrics to check {', '.join(min_metrics)}",
            hint="train with --test-data so the test split is evaluated, or drop --min-metric",
        )
    for metric, threshold in min_metrics.items():
        value = test.get(metric)
        if not isinstance(value, int | float) or not math.isfinite(value):
            return GateRefusal(f"refusing to register {folder}: {METRICS_FILE} has no test {metric}")
        if value < threshold:
            return GateRefusal(
                f"refusing to register {folder}: test {metric} {value:.4f} is below the minimum {threshold:.4f}"
            )
    return None
