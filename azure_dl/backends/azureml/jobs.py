"""Azure ML jobs: submit a rendered job YAML exactly as written, then list, show, follow, cancel and download.

The YAML the dry-run writes is what gets submitted: it is loaded with azure.ai.ml.load_job (which validates it)
and the loaded entity is created. The job gets its name on this side before the first attempt, so a create that is
retried after a 429/5xx (or a lost response) PUTs the same job again instead of starting a second one.
"""

from __future__ import annotations

import argparse
import re
import secrets
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from azure_dl.backends.azureml import client as azure_client
from azure_dl.backends.azureml.client import job_studio_url, redact, require_sdk, sdk_errors
from azure_dl.backends.azureml.data_refs import check_data_assets
from azure_dl.backends.azureml.preflight import preflight
from azure_dl.cluster_needs import ClusterNeeds
from azure_dl.errors import AzureDLError, ConfigError, SpecError
from azure_dl.workspace import WorkspaceSettings
from training_scripts.model_folder import ONNX_FILE, TRAINING_OUTPUT_FILES

# The output every job has: the artifact store folder with its logs (azure.ai.ml DEFAULT_ARTIFACT_STORE_OUTPUT_NAME).
DEFAULT_OUTPUT = "default"

TERMINAL_STATUSES = frozenset({"completed", "failed", "canceled", "notresponding", "paused"})
TRANSIENT_STATUS_CODES = frozenset({408, 429, 500, 502, 503, 504})
# Pauses between whole create attempts, after azure-core's own per-request retries have given up.
CREATE_RETRY_DELAYS_S: tuple[float, ...] = (5.0, 20.0)
_MAX_VALIDATION_MESSAGE = 3000
# The jobs list API filters by job type, tag, properties and archive state, not by experiment (the REST
# parameters azure-ai-ml's jobs.list can send), so `--experiment` filters here: it stops at `--limit` matches or
# after this many jobs (newest first), rather than paging through every job the workspace ever ran.
EXPERIMENT_SCAN_LIMIT = 1000


@dataclass(frozen=True)
class SubmittedJob:
    name: str
    studio_url: str
    status: str


@dataclass(frozen=True)
class JobRow:
    """One line of `jobs list`."""

    name: str
    status: str
    experiment: str
    created: datetime | None
    compute: str


@dataclass(frozen=True)
class JobInfo:
    """What `jobs show` prints; metrics and times come from the job's MLflow run (None/empty when unavailable)."""

    name: str
    display_name: str
    status: str
    experiment: str
    compute: str
    created: datetime | None
    started: datetime | None
    ended: datetime | None
    duration_s: float | None
    metrics: dict[str, float]
    metrics_note: str | None
    studio_url: str
    outputs: tuple[str, ...]


@dataclass(frozen=True)
class DownloadResult:
    """Where `jobs download` put a job's outputs, and whether the folder is a complete training output folder."""

    job_name: str
    folder: Path
    output_name: str | None  # the output whose files are at the top of `folder`
    other_outputs: tuple[str, ...]  # further outputs, each in folder/<name>/
    missing: tuple[str, ...]  # training-output files not found at the top of `folder`

    @property
    def complete(self) -> bool:
        return not self.missing


def _note(message: str) -> None:
    print(message, file=sys.stderr)


def status_text(job: Any) -> str:
    """The job status as Azure ML spells it ('Completed'), whether the SDK gives an enum or a string."""
    status = getattr(job, "status", None)
    if status is None:
        return "Unknown"
    return str(getattr(status, "value", status))


def _is_terminal(status: str) -> bool:
    return status.lower() in TERMINAL_STATUSES


# ------------------------------------------------------------------------------------------------------- loading
def load_job_yaml(job_yaml: Path) -> Any:
    """The job entity azure.ai.ml.load_job makes of `job_yaml` (validating it); invalid files raise SpecError."""
    path = Path(job_yaml)
    if not path.is_file():
        raise SpecError(
            f"job file {path} does not exist",
            hint="render one with `azure-dl submit ... --dry-run --out DIR` (it writes DIR/job.yml)",
        )
    require_sdk()
    from azure.ai.ml import load_job
    from azure.ai.ml.exceptions import MlException
    from marshmallow.exceptions import ValidationError

    try:
        return load_job(path)
    except (MlException, ValidationError) as exc:
        message = redact(str(getattr(exc, "message", None) or exc))
        if len(message) > _MAX_VALIDATION_MESSAGE:
            message = message[:_MAX_VALIDATION_MESSAGE] + " ..."
        raise SpecError(
            f"{path} is not a valid Azure ML job: {message}",
            hint="the file must follow the Azure ML CLI v2 job schema (the one `az ml job create --file` reads)",
        ) from None


def _slug(text: str) -> str:
    slug = re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")
    if not slug or not slug[0].isalpha():
        slug = f"job-{slug}".rstrip("-")
    return slug[:40].rstrip("-")


def new_job_name(job: Any) -> str:
    """A unique job name chosen here: <experiment or display name>-<UTC time>-<random>."""
    base = _slug(str(getattr(job, "experiment_name", None) or getattr(job, "display_name", None) or "azure-dl"))
    return f"{base}-{datetime.now(UTC):%Y%m%d-%H%M%S}-{secrets.token_hex(3)}"


def compute_name_of(job: Any) -> str | None:
    """The cluster a job targets ('azureml:gpu' / an ARM id / 'gpu' -> 'gpu'), None for serverless jobs."""
    compute = getattr(job, "compute", None)
    if not compute:
        return None
    return str(compute).rstrip("/").split("/")[-1].removeprefix("azureml:")


def instance_count_of(job: Any) -> int | None:
    """resources.instance_count of a command or sweep job (nodes per trial), None when the YAML leaves it out."""
    resources = getattr(job, "resources", None)
    if isinstance(resources, dict):
        count = resources.get("instance_count")
    else:
        count = getattr(resources, "instance_count", None)
    return int(count) if count is not None else None


# ----------------------------------------------------------------------------------------------------- submission
def client_for(workspace_args: argparse.Namespace | WorkspaceSettings | None) -> Any:
    """The MLClient for a verb's workspace flags (or WorkspaceSettings); the one factory jobs and pipelines use."""
    # Looked up on the module so that tests (and callers) can replace the factory in one place.
    if isinstance(workspace_args, WorkspaceSettings):
        return azure_client.get_ml_client(workspace_args)
    return azure_client.client_from_args(workspace_args if workspace_args is not None else argparse.Namespace())


def submit_job_yaml(
    workspace_args: argparse.Namespace | WorkspaceSettings | None,
    job_yaml: Path,
    *,
    needs: ClusterNeeds | None = None,
    ensure_compute: bool = False,
    stream: bool = False,
    ml_client: Any = None,
) -> SubmittedJob:
    """Submit the job in `job_yaml` to Azure ML and print its name and studio URL.

    `workspace_args` is the argparse namespace of a verb that called add_workspace_arguments() (or a
    WorkspaceSettings, signed in with DefaultAzureCredential); it is ignored when `ml_client` is given.
    `needs` is what the plan says the job asks of its cluster (`plan_job(...).needs`, `plan_sweep(...).needs`);
    the cluster checked is the one the YAML names. Before creating the job: with `ensure_compute`, that cluster is
    created (or grown to the larger of the YAML's and the needs' node count) with the needs' VM size, quota
    checked first on that node count; without it, the cluster must exist, match the VM size (when known) and
    priority and have the nodes and quota one job needs (see backends/azureml/preflight.py). With `stream`, logs
    are followed until the job ends.
    """
    job = load_job_yaml(Path(job_yaml))
    client = ml_client if ml_client is not None else client_for(workspace_args)
    check_data_assets(client, job)  # before the cluster check and any upload: a missing asset fails here
    planned = needs if needs is not None else ClusterNeeds(compute=None, vm_size=None)
    yaml_nodes = instance_count_of(job)
    preflight(
        client,
        replace(
            planned,
            compute=compute_name_of(job),
            nodes=max(yaml_nodes or planned.nodes, planned.nodes),
            job_nodes=yaml_nodes or planned.job_nodes,
        ),
        ensure=ensure_compute,
        source=Path(job_yaml),
    )

    created = create_job(client, job)
    url = getattr(created, "studio_url", None) or job_studio_url(client, created.name)
    print(f"Submitted job {created.name}")
    print(f"Studio: {url}")
    status = status_text(created)
    if stream:
        stream_job(client, created.name)
        with sdk_errors(f"read job {created.name}"):
            status = status_text(client.jobs.get(created.name))
    return SubmittedJob(name=created.name, studio_url=url, status=status)


def _existing_job(client: Any, name: str) -> Any | None:
    """The job called `name` if the service has it; None when it does not or cannot say right now."""
    from azure.core.exceptions import AzureError

    try:
        return client.jobs.get(name)
    except AzureError:
        return None


def create_job(ml_client: Any, job: Any) -> Any:
    """jobs.create_or_update(job), retried on 429/5xx and lost responses without ever creating a second job.

    The name is fixed before the first attempt (the SDK would otherwise draw a new one on every call), and before
    each retry the service is asked whether the previous attempt created the job after all.
    """
    from azure.core.exceptions import HttpResponseError, ServiceResponseError

    if not getattr(job, "name", None):
        job.name = new_job_name(job)
    attempts = len(CREATE_RETRY_DELAYS_S) + 1
    with sdk_errors(f"submit job {job.name}"):
        for attempt in range(attempts):
            try:
                return ml_client.jobs.create_or_update(job)
            except (HttpResponseError, ServiceResponseError) as exc:
                status = getattr(exc, "status_code", None)
                transient = isinstance(exc, ServiceResponseError) or status in TRANSIENT_STATUS_CODES
                if transient or attempt > 0:
                    existing = _existing_job(ml_client, job.name)
                    if existing is not None:
                        return existing
                if not transient or attempt == attempts - 1:
                    raise
                delay = CREATE_RETRY_DELAYS_S[attempt]
                _note(f"creating job {job.name} failed ({status or type(exc).__name__}); retrying in {delay:g} s")
                time.sleep(delay)
    raise AssertionError("unreachable: the last attempt returns or raises")


# ------------------------------------------------------------------------------------------------- reading jobs
def _created(job: Any) -> datetime | None:
    context = getattr(job, "creation_context", None)
    created = getattr(context, "created_at", None)
    return created if isinstance(created, datetime) else None


def list_jobs(ml_client: Any, *, experiment: str | None = None, limit: int = 20) -> list[JobRow]:
    """The most recent `limit` jobs of the workspace (of one experiment when given), newest first."""
    if limit < 1:
        raise ConfigError(f"--limit must be at least 1, got {limit}")
    rows: list[JobRow] = []
    scanned = 0
    with sdk_errors("list jobs"):
        for job in ml_client.jobs.list():
            scanned += 1
            if experiment and scanned > EXPERIMENT_SCAN_LIMIT:
                _note(
                    f"looked at the newest {EXPERIMENT_SCAN_LIMIT} jobs of the workspace only: older jobs of "
                    f"experiment {experiment} are not shown (Azure ML's jobs list cannot filter by experiment)"
                )
                break
            if job is None:  # the SDK yields None for jobs it cannot parse
                continue
            if experiment and getattr(job, "experiment_name", None) != experiment:
                continue
            rows.append(
                JobRow(
                    name=job.name,
                    status=status_text(job),
                    experiment=str(getattr(job, "experiment_name", None) or ""),
                    created=_created(job),
                    compute=compute_name_of(job) or "serverless",
                )
            )
            if len(rows) >= limit:
                break
    oldest = datetime.min.replace(tzinfo=UTC)
    return sorted(rows, key=lambda row: row.created or oldest, reverse=True)


def read_mlflow_run(ml_client: Any, job_name: str) -> Any:
    """The MLflow run of a job (Azure ML uses the job name as run id), read through the workspace tracking URI."""
    with sdk_errors("read the workspace's MLflow tracking URI"):
        workspace = ml_client.workspaces.get(ml_client.workspace_name)
    uri = getattr(workspace, "mlflow_tracking_uri", None)
    if not uri:
        raise AzureDLError(f"workspace {ml_client.workspace_name} reports no MLflow tracking URI")
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri=uri).get_run(job_name)


def _from_ms(value: Any) -> datetime | None:
    return datetime.fromtimestamp(value / 1000, tz=UTC) if value else None


def show_job(ml_client: Any, name: str, *, with_metrics: bool = True) -> JobInfo:
    """Status, compute, times and (through MLflow) the final value of each metric of job `name`."""
    with sdk_errors(f"read job {name}"):
        job = ml_client.jobs.get(name)
    metrics: dict[str, float] = {}
    started = ended = None
    metrics_note = None
    if with_metrics:
        try:
            run = read_mlflow_run(ml_client, name)
            metrics = {key: float(value) for key, value in sorted(run.data.metrics.items())}
            started, ended = _from_ms(run.info.start_time), _from_ms(run.info.end_time)
        except Exception as exc:  # metrics are extra information: show the job without them, and say why
            metrics_note = f"metrics unavailable ({type(exc).__name__}: {redact(str(exc))[:300]})"
    duration = None
    if started is not None:
        duration = ((ended or datetime.now(UTC)) - started).total_seconds()
    outputs = tuple(sorted((getattr(job, "outputs", None) or {}).keys()))
    return JobInfo(
        name=job.name,
        display_name=str(getattr(job, "display_name", None) or job.name),
        status=status_text(job),
        experiment=str(getattr(job, "experiment_name", None) or ""),
        compute=compute_name_of(job) or "serverless",
        created=_created(job),
        started=started,
        ended=ended,
        duration_s=duration,
        metrics=metrics,
        metrics_note=metrics_note,
        studio_url=getattr(job, "studio_url", None) or job_studio_url(ml_client, job.name),
        outputs=outputs,
    )


def _interrupted(exc: BaseException) -> bool:
    """Whether a KeyboardInterrupt is in the cause/context chain of `exc`."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        if isinstance(current, KeyboardInterrupt):
            return True
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return False


def stream_job(ml_client: Any, name: str) -> None:
    """Print the job's logs until it ends (the SDK's own streaming); a failed job raises AzureDLError."""
    from azure.ai.ml.exceptions import JobException

    try:
        with sdk_errors(f"follow the logs of job {name}"):
            try:
                ml_client.jobs.stream(name)
            except JobException as exc:
                if _interrupted(exc):
                    # The SDK turns Ctrl-C into its own JobException ("The output streaming for the run
                    # interrupted"), raised from the KeyboardInterrupt: the job did not fail, we stopped reading.
                    raise KeyboardInterrupt from None
                raise AzureDLError(
                    f"job {name} did not complete: {redact(str(getattr(exc, 'message', None) or exc))[:600]}",
                    hint=f"see the logs above, or `azure-dl jobs show {name}`",
                ) from None
    except KeyboardInterrupt:
        _note(f"stopped following the logs; job {name} keeps running (cancel it with `azure-dl jobs cancel {name}`)")
        raise


def cancel_job(ml_client: Any, name: str) -> str:
    """Cancel job `name` and return its status afterwards; a job that has already ended is an error."""
    with sdk_errors(f"read job {name}"):
        status = status_text(ml_client.jobs.get(name))
    if _is_terminal(status):
        raise AzureDLError(f"job {name} has already ended ({status}); there is nothing to cancel")
    with sdk_errors(f"cancel job {name}"):
        ml_client.jobs.begin_cancel(name).result()
        return status_text(ml_client.jobs.get(name))


# -------------------------------------------------------------------------------------------------------- download
def missing_training_files(folder: Path) -> tuple[str, ...]:
    """The training-output files (TRAINING_OUTPUT_FILES) that `folder` lacks."""
    return tuple(name for name in TRAINING_OUTPUT_FILES if not (Path(folder) / name).is_file())


def _move_children(source: Path, destination: Path) -> None:
    destination.mkdir(parents=True, exist_ok=True)
    for child in sorted(source.iterdir()):
        target = destination / child.name
        if target.exists():
            raise AzureDLError(f"{target} would be overwritten while flattening the download")
        shutil.move(str(child), str(target))


def _free_name(folder: Path, name: str) -> Path:
    candidate = folder / name
    return candidate if not candidate.exists() else folder / f"{name}-output"


def download_job(ml_client: Any, name: str, out_dir: Path, *, output_name: str | None = None) -> DownloadResult:
    """Download a finished job's outputs into `out_dir`, flattened so that it is a training output folder.

    Azure ML writes <path>/named-outputs/<output>/... and <path>/artifacts/... (logs). With `output_name` that
    output's files go straight into `out_dir`. Without it every output is downloaded: the one holding model.onnx
    (or the only one) goes to the top of `out_dir`, any other beside it in `out_dir/<output>/`; the logs and
    anything else Azure writes keep their names (`out_dir/artifacts/`, a sweep's `hd-artifacts/`).
    `out_dir` must be empty or new: a download never overwrites files.
    """
    out = Path(out_dir)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise AzureDLError(f"{out} already exists and is not an empty folder", hint="choose another --out DIR")
    with sdk_errors(f"read job {name}"):
        job = ml_client.jobs.get(name)
    status = status_text(job)
    if not _is_terminal(status):
        raise AzureDLError(
            f"job {name} is {status}: its outputs can be downloaded once it has ended",
            hint=f"follow it with `azure-dl jobs logs {name}`",
        )
    declared = sorted((getattr(job, "outputs", None) or {}).keys())
    if output_name and declared and output_name not in declared:
        raise AzureDLError(
            f"job {name} has no output named {output_name!r}", hint=f"its outputs: {', '.join(declared)}"
        )
    out.mkdir(parents=True, exist_ok=True)
    # Staged inside `out` so that the moves below stay on one file system.
    staging = Path(tempfile.mkdtemp(prefix=".download-", dir=out))
    try:
        with sdk_errors(f"download the outputs of job {name}"):
            if output_name:
                ml_client.jobs.download(name, download_path=str(staging), output_name=output_name)
            elif named := [output for output in declared if output != DEFAULT_OUTPUT]:
                # Output by output rather than all=True: with all=True azure-ai-ml 1.35.2 downloads only the
                # outputs run history lists, and resolving a listed data output crashes in the SDK
                # (BatchDataUriResponse has no `values_property`); by name it also finds an output at its
                # default path (azureml/JOB/OUTPUT/ on the default datastore).
                ml_client.jobs.download(name, download_path=str(staging))  # the logs (default artifacts)
                for output in named:
                    ml_client.jobs.download(name, download_path=str(staging), output_name=output)
            else:
                ml_client.jobs.download(name, download_path=str(staging), all=True)
        top, others = _flatten(staging, out, name, output_name)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return DownloadResult(name, out, top, others, missing_training_files(out))


def _flatten(staging: Path, out: Path, job_name: str, output_name: str | None) -> tuple[str | None, tuple[str, ...]]:
    named = staging / "named-outputs"
    outputs = sorted(path for path in named.iterdir() if path.is_dir()) if named.is_dir() else []
    if output_name:
        source = named / output_name
        if not source.is_dir():
            raise AzureDLError(f"job {job_name} wrote nothing to its output {output_name!r}")
        _move_children(source, out)
        return output_name, ()
    with_model = [path for path in outputs if (path / ONNX_FILE).is_file()]
    top = with_model[0] if len(with_model) == 1 else (outputs[0] if len(outputs) == 1 else None)
    if top is not None:
        _move_children(top, out)
    others = [path for path in outputs if path != top]
    for other in others:
        shutil.move(str(other), str(_free_name(out, other.name)))
    # Whatever else Azure wrote keeps its name: artifacts/ (logs), a sweep's hd-artifacts/, ...
    for leftover in sorted(staging.iterdir()):
        if leftover != named:
            shutil.move(str(leftover), str(_free_name(out, leftover.name)))
    return (top.name if top is not None else None), tuple(path.name for path in others)
