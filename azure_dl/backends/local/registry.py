"""The local model registry: training output folders registered in the MLflow model registry (ONNX flavor).

`register_local` logs model.onnx with mlflow.onnx (signature read from the ONNX graph) and the sidecar files as
extra files, so a registered version holds everything scoring needs; `resolve_local_model` turns a registry
reference back into a plain training-output folder for `azure-dl serve`. mlflow and onnx are imported lazily.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from azure_dl.errors import AzureDLError
from training_scripts.gate import GATE_METRICS, parity_problem

MODEL_FILE = "model.onnx"
SIDECAR_FILES = (
    "labels.json",
    "vocab.json",
    "preprocess.json",
    "metrics.json",
    "export.json",
    "model_config.json",
    "quantization.json",  # written by `register --quantize`: which model (INT8 or fp32) and the agreement
)
CONTENT_HASH_TAG = "azure_dl.content_sha256"
EXTRA_FILES_DIR = "extra_files"  # where mlflow.onnx puts extra_files inside a logged model
REGISTRY_EXPERIMENT = "azure-dl-registry"
DEFAULT_CACHE = Path.home() / ".azure-dl" / "models"

_REF_PATTERNS = (
    re.compile(r"^models:/(?P<name>[^/]+)/(?P<version>\d+|latest)$"),
    re.compile(r"^(?P<name>[A-Za-z0-9][\w.-]*):(?P<version>\d+|latest)$"),
)


class RegistrationRefused(AzureDLError):
    """The gate refused the model (failed parity, or a test metric below the required minimum)."""


@dataclass(frozen=True)
class RegisteredModel:
    """A version in the local registry; `reused` when identical content was already registered."""

    name: str
    version: str
    reused: bool

    @property
    def uri(self) -> str:
        return f"models:/{self.name}/{self.version}"


def default_tracking_uri() -> str:
    """The CLI's store: MLFLOW_TRACKING_URI (a relative SQLite path made absolute, since subprocesses run in
    other folders), else a SQLite file where the user runs the CLI."""
    uri = os.environ.get("MLFLOW_TRACKING_URI")
    if not uri:
        return f"sqlite:///{Path.cwd().resolve() / 'mlflow.db'}"
    prefix = "sqlite:///"
    if uri.startswith(prefix) and not uri[len(prefix) :].startswith("/"):
        return f"{prefix}{Path.cwd().resolve() / uri[len(prefix) :]}"
    return uri


def content_hash(folder: Path) -> str:
    """sha256 over model.onnx and the sidecar files present (names and bytes): the identity of a model."""
    digest = hashlib.sha256()
    for name in (MODEL_FILE, *SIDECAR_FILES):
        path = folder / name
        if path.is_file():
            digest.update(name.encode() + b"\0")
            digest.update(hashlib.sha256(path.read_bytes()).digest())
    return digest.hexdigest()


def _read_json(path: Path) -> Any:
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise AzureDLError(f"{path} is not valid JSON: {exc}") from exc


def check_registration_gate(folder: Path, min_metrics: Mapping[str, float] | None) -> None:
    """Refuse a model whose export failed parity or whose test metrics are below the given minimums."""
    problem = parity_problem(_read_json(folder / "export.json"))
    if problem is not None:
        raise RegistrationRefused(f"refusing to register {folder}: {problem}")
    if not min_metrics:
        return
    metrics = _read_json(folder / "metrics.json") or {}
    test = metrics.get("test")
    if not isinstance(test, dict):
        raise RegistrationRefused(
            f"refusing to register {folder}: metrics.json has no test metrics to check {', '.join(min_metrics)}",
            hint="train with --test-data so the test split is evaluated, or drop --min-metric",
        )
    for metric, threshold in min_metrics.items():
        if metric not in GATE_METRICS:
            raise AzureDLError(f"--min-metric {metric!r} is not one of {', '.join(GATE_METRICS)}")
        value = test.get(metric)
        if not isinstance(value, int | float):
            raise RegistrationRefused(f"refusing to register {folder}: metrics.json has no test {metric}")
        if value < threshold:
            raise RegistrationRefused(
                f"refusing to register {folder}: test {metric} {value:.4f} is below the minimum {threshold:.4f}"
            )


def _onnx_signature(model: Any) -> Any:
    """An MLflow tensor signature from the ONNX graph's inputs and outputs (symbolic dims become -1)."""
    import numpy as np
    from mlflow.models import ModelSignature
    from mlflow.types import ColSpec, Schema, TensorSpec
    from onnx import helper

    initializers = {init.name for init in model.graph.initializer}

    def specs(values: Any) -> list[ColSpec | TensorSpec]:
        result: list[ColSpec | TensorSpec] = []
        for value in values:
            if value.name in initializers:
                continue
            tensor = value.type.tensor_type
            shape = tuple(d.dim_value if d.HasField("dim_value") else -1 for d in tensor.shape.dim)
            dtype = np.dtype(helper.tensor_dtype_to_np_dtype(tensor.elem_type))
            result.append(TensorSpec(dtype, shape, value.name))
        return result

    return ModelSignature(inputs=Schema(specs(model.graph.input)), outputs=Schema(specs(model.graph.output)))


def _git_commit(folder: Path, sidecars: Mapping[str, Any]) -> str | None:
    """The commit recorded by training, else the commit of a git checkout that contains the folder."""
    for data in sidecars.values():
        if isinstance(data, dict) and isinstance(data.get("git_commit"), str):
            return str(data["git_commit"])
    try:
        result = subprocess.run(
            ["git", "-C", str(folder), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return result.stdout.strip() or None if result.returncode == 0 else None


def _tags(folder: Path, digest: str) -> dict[str, str]:
    sidecars = {name: _read_json(folder / name) for name in ("metrics.json", "export.json")}
    tags = {CONTENT_HASH_TAG: digest}
    metrics = sidecars["metrics.json"] or {}
    for split in ("test", "validation"):
        values = metrics.get(split)
        if isinstance(values, dict):
            for key, value in values.items():
                if isinstance(value, int | float):
                    tags[f"{split}.{key}"] = f"{value:.6g}"
    export = sidecars["export.json"] or {}
    for key in ("max_abs_diff", "tolerance", "passed", "opset"):
        if key in export:
            tags[f"parity.{key}"] = str(export[key])
    commit = _git_commit(folder, sidecars)
    if commit:
        tags["git_commit"] = commit
    return tags


def artifact_root(tracking_uri: str) -> str | None:
    """Artifacts beside a SQLite store, as training_scripts.tracking does (MLflow would use ./mlruns in the cwd)."""
    if tracking_uri.startswith("sqlite:///"):
        return (Path(tracking_uri.removeprefix("sqlite:///")).parent / "mlartifacts").resolve().as_uri()
    return None


def ensure_experiment(client: Any, name: str, tracking_uri: str) -> str:
    """The id of experiment `name`, created (with artifacts next to a SQLite store) when missing."""
    experiment = client.get_experiment_by_name(name)
    if experiment is not None:
        return str(experiment.experiment_id)
    return str(client.create_experiment(name, artifact_location=artifact_root(tracking_uri)))


def mlflow_client(uri: str) -> Any:
    from mlflow import MlflowClient

    # MLflow draws a progress bar for every artifact transfer, even a 1 KB file; the CLI prints its own summary.
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")

    # An explicit client instead of the fluent API: no global tracking state to set and restore.
    return MlflowClient(tracking_uri=uri, registry_uri=uri)


def find_version_by_content(client: Any, name: str, digest: str) -> str | None:
    """The version of `name` already holding this content, if any."""
    versions = client.search_model_versions(f"name = '{name}' and tags.`{CONTENT_HASH_TAG}` = '{digest}'")
    return str(min(int(v.version) for v in versions)) if versions else None


def register_local(
    folder: Path | str,
    name: str,
    *,
    min_metrics: Mapping[str, float] | None = None,
    tracking_uri: str | None = None,
) -> RegisteredModel:
    """Register a training output folder in the local MLflow registry; identical content reuses its version."""
    folder = Path(folder)
    if not (folder / MODEL_FILE).is_file():
        raise AzureDLError(
            f"{folder} has no {MODEL_FILE}", hint="pass a training output folder (the script's --output)"
        )
    if not re.fullmatch(r"[A-Za-z0-9][\w.-]*", name):
        raise AzureDLError(f"model name {name!r} is invalid: use letters, digits, '-', '_' and '.'")
    check_registration_gate(folder, min_metrics)
    digest = content_hash(folder)
    uri = tracking_uri or default_tracking_uri()

    client = mlflow_client(uri)
    existing = find_version_by_content(client, name, digest)
    if existing is not None:
        return RegisteredModel(name, existing, reused=True)

    import mlflow.onnx
    import onnx
    from mlflow.exceptions import MlflowException

    model = onnx.load(str(folder / MODEL_FILE))
    extra = [str(folder / f) for f in SIDECAR_FILES if (folder / f).is_file()]
    run = client.create_run(ensure_experiment(client, REGISTRY_EXPERIMENT, uri), run_name=f"register-{name}")
    try:
        with tempfile.TemporaryDirectory(prefix="azure-dl-register-") as tmp:
            local = Path(tmp) / "model"
            mlflow.onnx.save_model(
                model,
                str(local),
                signature=_onnx_signature(model),
                extra_files=extra,
                # Explicit requirements: inferring them would load the model in a subprocess.
                pip_requirements=[f"onnx=={onnx.__version__}", "onnxruntime", "numpy"],
                save_as_external_data=False,
            )
            client.log_artifacts(run.info.run_id, str(local), "model")
        client.log_param(run.info.run_id, "source_folder", str(folder.resolve()))
        try:
            client.create_registered_model(name)
        except MlflowException as exc:
            if exc.error_code != "RESOURCE_ALREADY_EXISTS":
                raise
        version = client.create_model_version(
            name, f"{run.info.artifact_uri}/model", run_id=run.info.run_id, tags=_tags(folder, digest)
        )
    except Exception:
        client.set_terminated(run.info.run_id, "FAILED")
        raise
    client.set_terminated(run.info.run_id, "FINISHED")
    return RegisteredModel(name, str(version.version), reused=False)


def parse_model_ref(ref: str) -> tuple[str, str]:
    """("name", "version") from "models:/name/version" or "name:version" (version may be "latest")."""
    for pattern in _REF_PATTERNS:
        match = pattern.match(ref)
        if match:
            return match.group("name"), match.group("version")
    raise AzureDLError(f"{ref!r} is not a registered model reference", hint="use models:/NAME/VERSION or NAME:VERSION")


def resolve_local_model(ref: str, *, tracking_uri: str | None = None, cache_dir: Path | None = None) -> Path:
    """A local training-output folder (model.onnx + sidecars) for a locally registered model version."""
    name, version = parse_model_ref(ref)
    uri = tracking_uri or default_tracking_uri()
    client = mlflow_client(uri)

    from mlflow.artifacts import download_artifacts
    from mlflow.exceptions import MlflowException

    try:
        if version == "latest":
            versions = client.search_model_versions(f"name = '{name}'")
            if not versions:
                raise AzureDLError(f"no registered model named {name!r} in {uri}")
            version = str(max(int(v.version) for v in versions))
        digest = client.get_model_version(name, version).tags.get(CONTENT_HASH_TAG)
        source = client.get_model_version_download_uri(name, version)
    except MlflowException as exc:
        raise AzureDLError(f"model {name}:{version} is not registered in {uri}") from exc
    # Keyed by content, not name/version: two stores can both hold a different "model:1".
    cache = cache_dir or DEFAULT_CACHE
    target = cache / digest if digest else cache / "untagged" / name / version
    if digest and (target / MODEL_FILE).is_file():
        return target
    staging = target.with_name(f".{version}.partial")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    downloaded = Path(download_artifacts(artifact_uri=source, dst_path=str(staging)))
    # The sidecars sit next to model.onnx in a training output folder (copies: MLmodel still lists extra_files/).
    extras = downloaded / EXTRA_FILES_DIR
    if extras.is_dir():
        for item in extras.iterdir():
            shutil.copy2(item, downloaded / item.name)
    shutil.rmtree(target, ignore_errors=True)
    downloaded.rename(target)
    shutil.rmtree(staging, ignore_errors=True)
    return target
