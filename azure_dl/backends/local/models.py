"""The local model registry: training output folders registered in the MLflow model registry (ONNX flavor).

`register_local` logs model.onnx with mlflow.onnx (signature read from the ONNX graph) and the sidecar files as
extra files, so a registered version holds everything scoring needs; `resolve_local_model` turns a registry
reference back into a plain training-output folder for `azure-dl serve`. mlflow and onnx are imported lazily.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from azure_dl.backends.local.tracking import tracking_uri as default_tracking_uri
from azure_dl.errors import AzureDLError
from azure_dl.model_registration import (
    CONTENT_HASH_TAG,
    check_registration_gate,
    content_hash,
    model_tags,
    require_model,
)
from training_scripts.model_folder import ONNX_FILE, REGISTERED_FILES

EXTRA_FILES_DIR = "extra_files"  # where mlflow.onnx puts extra_files inside a logged model
REGISTRY_EXPERIMENT = "azure-dl-registry"
DEFAULT_CACHE = Path.home() / ".azure-dl" / "models"

_REF_PATTERNS = (
    re.compile(r"^models:/(?P<name>[^/]+)/(?P<version>\d+|latest)$"),
    re.compile(r"^(?P<name>[A-Za-z0-9][\w.-]*):(?P<version>\d+|latest)$"),
)


@dataclass(frozen=True)
class RegisteredModel:
    """A version in the local registry; `reused` when identical content was already registered."""

    name: str
    version: str
    reused: bool

    @property
    def uri(self) -> str:
        return f"models:/{self.name}/{self.version}"


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
    folder = require_model(Path(folder))
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

    model = onnx.load(str(folder / ONNX_FILE))
    extra = [str(folder / name) for name in REGISTERED_FILES if name != ONNX_FILE and (folder / name).is_file()]
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
            name, f"{run.info.artifact_uri}/model", run_id=run.info.run_id, tags=model_tags(folder, digest)
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
    if digest and (target / ONNX_FILE).is_file():
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
