"""Azure ML model registration: a training output folder becomes a `custom_model` version, gated, tagged, idempotent.

The gate (failed ONNX parity, a test metric below `--min-metric`) runs before anything is uploaded. Only model.onnx
and its sidecar files are uploaded (not model.pt or checkpoints), from a staging copy, so the registered folder is
exactly what the content hash covers: registering identical content again finds the version tagged with that hash
and reuses it. The gate, the staged copy, the hash and the tags are azure_dl.model_registration, shared with the
local registry, so a folder gets the same digest in both. Also here: the thin SDK calls behind `--job` and
`--sweep` sources (download a job's output; a sweep's objective and trials).
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from azure_dl.backends.azureml.client import sdk_errors
from azure_dl.errors import AzureDLError
from azure_dl.model_registration import (
    CONTENT_HASH_TAG,
    check_registration_gate,
    content_hash,
    folder_git_commit,
    model_tags,
    require_model,
    stage_model_folder,
)
from training_scripts.model_folder import ONNX_FILE

MODEL_TYPE = "custom_model"

# Quantizes a staged model folder in place and returns what it did (the quantization.json content).
Quantizer = Callable[[Path], Mapping[str, Any]]


@dataclass(frozen=True)
class RegisteredAzureModel:
    """A model version in the workspace; `reused` when identical content was registered before."""

    name: str
    version: str
    reused: bool
    content_sha256: str
    tags: Mapping[str, str] = field(default_factory=dict)
    quantization: Mapping[str, Any] | None = None

    @property
    def ref(self) -> str:
        return f"{self.name}:{self.version}"


def _versions(ml_client: Any, name: str) -> Iterator[Any]:
    from azure.core.exceptions import ResourceNotFoundError

    with sdk_errors(f"list the versions of model {name}"):
        try:
            yield from ml_client.models.list(name=name)
        except ResourceNotFoundError:  # no model of that name yet
            return


def find_version_by_content(ml_client: Any, name: str, digest: str) -> Any | None:
    """The oldest version of model `name` tagged with this content hash, or None."""
    matches = [model for model in _versions(ml_client, name) if (model.tags or {}).get(CONTENT_HASH_TAG) == digest]
    if not matches:
        return None
    return min(matches, key=lambda model: int(model.version) if str(model.version).isdigit() else 0)


def register_model(
    ml_client: Any,
    folder: Path,
    name: str,
    *,
    min_metrics: Mapping[str, float] | None = None,
    quantize: Quantizer | None = None,
    source: str | None = None,
    git_commit: str | None = None,
) -> RegisteredAzureModel:
    """Gate, stage (and quantize), hash, then reuse the version holding this content or upload a new one."""
    from azure_dl.endpoint_spec import ModelRef

    ModelRef(name)  # validates the name before anything else
    folder = require_model(folder)
    check_registration_gate(folder, min_metrics)  # before any upload
    commit = git_commit or folder_git_commit(folder)
    with tempfile.TemporaryDirectory(prefix="azure-dl-register-") as tmp:
        staged = stage_model_folder(folder, Path(tmp) / "model")
        report = quantize(staged) if quantize is not None else None
        digest = content_hash(staged)
        tags = model_tags(staged, digest, source=source, commit=commit)
        existing = find_version_by_content(ml_client, name, digest)
        if existing is not None:
            return RegisteredAzureModel(name, str(existing.version), True, digest, dict(existing.tags or {}), report)
        created = create_model(ml_client, staged, name, tags)
    return RegisteredAzureModel(name, str(created.version), False, digest, tags, report)


def create_model(ml_client: Any, folder: Path, name: str, tags: Mapping[str, str]) -> Any:
    """models.create_or_update of a custom_model whose path is `folder` (the SDK uploads it; Azure numbers it)."""
    from azure.ai.ml.entities import Model

    task = tags.get("task", "model")
    model = Model(
        name=name,
        path=str(folder),
        type=MODEL_TYPE,
        description=f"{task} (ONNX) registered by azure-dl",
        tags=dict(tags),
    )
    with sdk_errors(f"register model {name}"):
        return ml_client.models.create_or_update(model)


def get_model(ml_client: Any, name: str, version: str | None = None) -> Any:
    """The model version (the latest when `version` is None); a missing one is an error that says so."""
    from azure.core.exceptions import ResourceNotFoundError

    missing = AzureDLError(
        f"model {name}:{version or 'latest'} is not registered in workspace {ml_client.workspace_name}",
        hint=f"register it first: azure-dl register OUTPUT_FOLDER --name {name}",
    )
    if version is None:
        versions = list(_versions(ml_client, name))
        if not versions:
            raise missing
        return max(versions, key=lambda model: int(model.version) if str(model.version).isdigit() else 0)
    with sdk_errors(f"read model {name}:{version}"):
        try:
            return ml_client.models.get(name, version=version)
        except ResourceNotFoundError:
            raise missing from None


def download_model(ml_client: Any, name: str, version: str, dest: Path) -> Path:
    """The registered files of name:version in a local folder (Azure writes <dest>/<name>/<model path>/...)."""
    with sdk_errors(f"download model {name}:{version}"):
        ml_client.models.download(name=name, version=version, download_path=str(dest))
    for candidate in sorted(Path(dest).rglob(ONNX_FILE)):
        return candidate.parent
    raise AzureDLError(f"model {name}:{version} holds no {ONNX_FILE}: it was not registered by azure-dl")


# -------------------------------------------------------------------------------------------- job and sweep sources
@dataclass(frozen=True)
class TrialInfo:
    """A child job of a sweep and the value of the sweep's primary metric it reported (None if none)."""

    name: str
    status: str
    value: float | None


@dataclass(frozen=True)
class SweepInfo:
    name: str
    primary_metric: str
    goal: str  # "maximize" | "minimize"
    trials: tuple[TrialInfo, ...]


MetricReader = Callable[[str, str], float | None]  # (job name, metric) -> its final value


def mlflow_metric_reader(ml_client: Any) -> MetricReader:
    """Reads a job's final metric value from the workspace's MLflow tracking server (Azure ML's run id = job name)."""
    with sdk_errors("read the workspace's MLflow tracking URI"):
        workspace = ml_client.workspaces.get(ml_client.workspace_name)
    uri = getattr(workspace, "mlflow_tracking_uri", None)
    if not uri:
        raise AzureDLError(f"workspace {ml_client.workspace_name} reports no MLflow tracking URI")
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=uri)

    def read(job_name: str, metric: str) -> float | None:
        value = client.get_run(job_name).data.metrics.get(metric)
        return float(value) if value is not None else None

    return read


def sweep_info(ml_client: Any, sweep_name: str, read_metric: MetricReader | None = None) -> SweepInfo:
    """The sweep's objective (primary metric, goal) and each trial's status and final primary-metric value."""
    from azure_dl.backends.azureml.jobs import status_text

    with sdk_errors(f"read sweep job {sweep_name}"):
        sweep = ml_client.jobs.get(sweep_name)
    objective = getattr(sweep, "objective", None)
    metric = getattr(objective, "primary_metric", None)
    if not metric:
        raise AzureDLError(f"job {sweep_name} is not a sweep job (it has no objective)", hint="use --job NAME for it")
    goal = str(getattr(objective, "goal", "maximize") or "maximize").lower()
    with sdk_errors(f"list the trials of sweep {sweep_name}"):
        children = [job for job in ml_client.jobs.list(parent_job_name=sweep_name) if job is not None]
    reader = read_metric or mlflow_metric_reader(ml_client)
    trials = []
    for child in children:
        status = status_text(child)
        value = reader(child.name, metric) if status.lower() == "completed" else None
        trials.append(TrialInfo(child.name, status, value))
    return SweepInfo(sweep_name, metric, goal, tuple(trials))


def job_git_commit(ml_client: Any, job_name: str) -> str | None:
    """The git_commit tag azure-dl puts on the jobs it submits (None for other jobs)."""
    with sdk_errors(f"read job {job_name}"):
        job = ml_client.jobs.get(job_name)
    commit = (getattr(job, "tags", None) or {}).get("git_commit")
    return str(commit) if commit else None


def download_job_output(ml_client: Any, job_name: str, output: str, dest: Path) -> Path:
    """One output of a finished job, downloaded into the new folder `dest` (see jobs.download_job)."""
    from azure_dl.backends.azureml.jobs import download_job

    result = download_job(ml_client, job_name, dest, output_name=output)
    return result.folder
