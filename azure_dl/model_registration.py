"""What both registries (local MLflow, Azure ML) do the same way before and while registering a model folder.

The gate, the staged copy that is uploaded, and the version's tags live here, once, so the local and the Azure
registration refuse the same folders and tag the same folder alike (the same content digest under the same tag,
which is how an identical model is found again and reused). The folder's file names, JSON readers, content hash
and the gate's rules are the data plane's `training_scripts.model_folder`; this module adds the control plane's
errors and tags. Torch-free and SDK-free.
"""

from __future__ import annotations

import shutil
from collections.abc import Mapping
from pathlib import Path

from azure_dl.errors import AzureDLError
from azure_dl.git_info import git_commit
from training_scripts.model_folder import (
    CONTENT_HASH_TAG,
    EXPORT_FILE,
    LABELS_FILE,
    METRICS_FILE,
    MODEL_CONFIG_FILE,
    ONNX_FILE,
    PREPROCESS_FILE,
    QUANTIZATION_FILE,
    REGISTERED_FILES,
    content_hash,
    read_optional_json,
    registration_refusal,
)

__all__ = [
    "CONTENT_HASH_TAG",
    "HEADLINE_METRICS",
    "RegistrationRefused",
    "check_registration_gate",
    "content_hash",
    "folder_git_commit",
    "model_tags",
    "read_sidecar",
    "require_model",
    "stage_model_folder",
]

HEADLINE_METRICS = ("accuracy", "balanced_accuracy", "macro_f1", "auroc", "loss")


class RegistrationRefused(AzureDLError):
    """The gate refused the model (failed parity, or a test metric below the required minimum)."""


def read_sidecar(path: Path) -> object:
    """A sidecar JSON file of a model folder, None when absent; an AzureDLError naming it when it is not JSON."""
    try:
        return read_optional_json(path)
    except ValueError as exc:
        raise AzureDLError(str(exc)) from exc


def require_model(folder: Path) -> Path:
    """`folder` as a Path after checking it holds model.onnx (a training output folder)."""
    folder = Path(folder)
    if not (folder / ONNX_FILE).is_file():
        raise AzureDLError(f"{folder} has no {ONNX_FILE}", hint="pass a training output folder (the script's --output)")
    return folder


def check_registration_gate(folder: Path, min_metrics: Mapping[str, float] | None) -> None:
    """Refuse a model whose export failed parity or whose test metrics are below the given minimums."""
    try:
        refusal = registration_refusal(Path(folder), min_metrics)
    except ValueError as exc:  # an unknown metric name or an unreadable sidecar: the user's input to fix
        raise AzureDLError(str(exc)) from exc
    if refusal is not None:
        raise RegistrationRefused(refusal.reason, hint=refusal.hint or None)


def stage_model_folder(folder: Path, dest: Path) -> Path:
    """Copy model.onnx and the registered sidecar files present (nothing else) into `dest`, a new folder."""
    folder = require_model(folder)
    dest.mkdir(parents=True, exist_ok=False)
    for name in REGISTERED_FILES:
        if (folder / name).is_file():
            shutil.copy2(folder / name, dest / name)
    return dest


def folder_git_commit(folder: Path) -> str | None:
    """The commit recorded by training (export.json, metrics.json), else the HEAD of a checkout holding the folder."""
    for name in (EXPORT_FILE, METRICS_FILE):
        data = read_sidecar(Path(folder) / name)
        if isinstance(data, dict) and isinstance(data.get("git_commit"), str):
            return str(data["git_commit"])
    return git_commit(Path(folder))


def model_tags(folder: Path, digest: str, *, source: str | None = None, commit: str | None = None) -> dict[str, str]:
    """Tags of a registered version: content hash, task, classes, arch, headline metrics, parity, quantization, commit.

    The same function tags a version in both registries, so `models list` reads alike in either.
    """
    folder = Path(folder)
    tags = {CONTENT_HASH_TAG: digest}
    preprocess = read_sidecar(folder / PREPROCESS_FILE)
    if isinstance(preprocess, dict) and isinstance(preprocess.get("task"), str):
        tags["task"] = preprocess["task"]
    labels = read_sidecar(folder / LABELS_FILE)
    if isinstance(labels, list):
        tags["num_classes"] = str(len(labels))
    config = read_sidecar(folder / MODEL_CONFIG_FILE)
    if isinstance(config, dict) and isinstance(config.get("arch"), str):
        tags["arch"] = config["arch"]
    metrics = read_sidecar(folder / METRICS_FILE)
    metrics = metrics if isinstance(metrics, dict) else {}
    # Test metrics are the headline; validation ones only when the model was never tested.
    split = "test" if isinstance(metrics.get("test"), dict) else "validation"
    values = metrics.get(split)
    values = values if isinstance(values, dict) else {}
    for key in HEADLINE_METRICS:
        value = values.get(key)
        if isinstance(value, int | float):
            tags[f"{split}.{key}"] = f"{value:.6g}"
    export = read_sidecar(folder / EXPORT_FILE)
    export = export if isinstance(export, dict) else {}
    for key in ("max_abs_diff", "tolerance", "passed", "opset"):
        if key in export:
            tags[f"parity.{key}"] = str(export[key])
    quantization = read_sidecar(folder / QUANTIZATION_FILE)
    if isinstance(quantization, dict):
        for key in ("accepted", "method", "agreement"):
            if key in quantization:
                tags[f"quantization.{key}"] = str(quantization[key])
    if source:  # where the folder came from (a job or sweep trial), when it was not a local path
        tags["source"] = source
    commit = commit or folder_git_commit(folder)
    if commit:
        tags["git_commit"] = commit
    return tags
