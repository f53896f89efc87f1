"""Fake Azure ML operations installed on a real, offline MLClient: the boundary where the Azure calls are tested.

`fake_ml_client()` builds a genuine `azure.ai.ml.MLClient` (with a credential that never fetches a token) and
replaces its operation groups (`ml_client.jobs`, `ml_client.compute`, ...) with fakes that

- record every call (`ops.calls`, `ops.calls_to("create_or_update")`) with the exact entity passed,
- serialise what they are given the way the SDK would before its HTTP call (`rest_serialise`), so an entity the
  service could not receive fails the test,
- return real SDK entities (round-tripped through their REST form, as the service's answers are), and
- fail on demand: `ops.fail_next("create_or_update", http_error(503))` raises on the next call(s) of that method.

Extending for another operation group (models, online_endpoints, ...): subclass FakeOperations, record each call
with `self._record(method, *args, **kwargs)`, return SDK entities, and install it with
`fake_ml_client(models=FakeModelOperations())` (any MLClient property name works; see `install`).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

WORKSPACE = {
    "subscription_id": "00000000-0000-0000-0000-000000000000",
    "resource_group": "rg-test",
    "workspace": "ws-test",
}
LOCATION = "eastus"
TERMINAL = ("Completed", "Failed", "Canceled", "NotResponding", "Paused")


# --------------------------------------------------------------------------------------------------------- basics
class FakeCredential:
    """A TokenCredential that must never be asked for a token (no test may reach Azure)."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, ...]] = []

    def get_token(self, *scopes: str, **kwargs: Any) -> Any:
        self.requests.append(scopes)
        raise AssertionError(f"a test asked for an Azure token (scopes {scopes}): some call escaped the fakes")


class _StubResponse:
    """Just enough of an azure-core HTTP response for HttpResponseError to parse an OData error body."""

    def __init__(self, status: int, reason: str, body: dict[str, Any], headers: dict[str, str] | None = None):
        self.status_code = status
        self.reason = reason
        self.headers = headers or {}
        self._body = json.dumps(body)

    def text(self, encoding: str | None = None) -> str:
        return self._body


_REASONS = {
    400: "Bad Request",
    403: "Forbidden",
    404: "Not Found",
    409: "Conflict",
    429: "Too Many Requests",
    500: "Internal Server Error",
    502: "Bad Gateway",
    503: "Service Unavailable",
    504: "Gateway Timeout",
}


def http_error(status: int, message: str = "simulated service error", code: str | None = None) -> Exception:
    """The azure-core exception the SDK raises for an HTTP `status` (404 -> ResourceNotFoundError, 401 -> auth)."""
    from azure.core.exceptions import ClientAuthenticationError, HttpResponseError, ResourceNotFoundError

    reason = _REASONS.get(status, "Error")
    body = {"error": {"code": code or reason.replace(" ", ""), "message": message}}
    response = _StubResponse(status, reason, body)
    cls = {404: ResourceNotFoundError, 401: ClientAuthenticationError}.get(status, HttpResponseError)
    return cls(response=response)  # type: ignore[arg-type]


def not_found(kind: str, name: str) -> Exception:
    return http_error(404, f"{kind} {name} was not found", code="UserError")


class FakePoller:
    """An LROPoller that is already done."""

    def __init__(self, result: Any = None) -> None:
        self._result = result

    def result(self, timeout: float | None = None) -> Any:
        return self._result

    def wait(self, timeout: float | None = None) -> None:
        return None

    def done(self) -> bool:
        return True

    def status(self) -> str:
        return "Succeeded"


@dataclass
class Call:
    method: str
    args: tuple[Any, ...]
    kwargs: dict[str, Any]


@dataclass
class FakeOperations:
    """Base of every fake operation group: a call log and queued failures."""

    calls: list[Call] = field(default_factory=list)
    _failures: dict[str, list[BaseException]] = field(default_factory=dict)
    _failures_after: dict[str, list[BaseException]] = field(default_factory=dict)

    def fail_next(self, method: str, *errors: BaseException) -> None:
        """The next len(errors) calls of `method` raise these, in order (e.g. http_error(503))."""
        self._failures.setdefault(method, []).extend(errors)

    def fail_after(self, method: str, *errors: BaseException) -> None:
        """The next calls of `method` do their work, then raise: the service acted but its answer was lost.

        Only methods that call `self._raise_after(method)` support it (the create methods here)."""
        self._failures_after.setdefault(method, []).extend(errors)

    def calls_to(self, method: str) -> list[Call]:
        return [call for call in self.calls if call.method == method]

    def _record(self, method: str, *args: Any, **kwargs: Any) -> None:
        self.calls.append(Call(method, args, kwargs))
        queued = self._failures.get(method)
        if queued:
            raise queued.pop(0)

    def _raise_after(self, method: str) -> None:
        queued = self._failures_after.get(method)
        if queued:
            raise queued.pop(0)


def rest_serialise(entity: Any) -> Any:
    """What the SDK sends for `entity`: jobs (incl. Command/Sweep/Pipeline nodes) via to_rest_job_object, as
    JobOperations.create_or_update does; every other entity via its `_to_rest_object()`."""
    from azure.ai.ml.entities import Job
    from azure.ai.ml.entities._builders import BaseNode
    from azure.ai.ml.entities._job.to_rest_functions import to_rest_job_object

    if isinstance(entity, Job | BaseNode):
        return to_rest_job_object(entity)
    return entity._to_rest_object()


def arm_id(kind: str, name: str) -> str:
    return (
        f"/subscriptions/{WORKSPACE['subscription_id']}/resourceGroups/{WORKSPACE['resource_group']}/providers/"
        f"Microsoft.MachineLearningServices/workspaces/{WORKSPACE['workspace']}/{kind}/{name}"
    )


# ----------------------------------------------------------------------------------------------------------- jobs
def make_job(
    name: str,
    *,
    status: str = "Completed",
    experiment: str = "azure-dl-tests",
    compute: str = "gpu-cluster",
    created_at: datetime | None = None,
    output_names: Iterable[str] = ("model",),
) -> Any:
    """A command job entity as `jobs.get` returns it (built with the SDK's own `command()` builder)."""
    from azure.ai.ml import Output, command

    node = command(
        name=name,
        display_name=name,
        experiment_name=experiment,
        command="python -m training_scripts.train_resnet --output ${{outputs.model}}",
        environment="azureml:azure-dl-train-gpu:1",
        compute=compute,
        outputs={output: Output(type="uri_folder") for output in output_names},
    )
    return _as_returned(node, status=status, created_at=created_at)


def _as_returned(job: Any, *, status: str, created_at: datetime | None = None) -> Any:
    """The entity the service would answer with: REST round trip, plus id, status and creation time."""
    from azure.ai.ml._restclient.arm_ml_service.models import SystemData
    from azure.ai.ml.entities import Job

    rest = rest_serialise(job)
    rest.id = arm_id("jobs", rest.name)
    rest.properties.status = status
    rest.system_data = SystemData(created_at=created_at or datetime.now(UTC), created_by="Test User")
    return Job._from_rest_object(rest)


class FakeJobOperations(FakeOperations):
    """`ml_client.jobs`: create_or_update, get, list, stream, begin_cancel, download."""

    def __init__(self) -> None:
        super().__init__()
        self.jobs: dict[str, Any] = {}
        self.output_files: dict[str, dict[str, dict[str, bytes]]] = {}
        self.logs: dict[str, list[str]] = {}

    # seeding --------------------------------------------------------------------------------------------------
    def add_job(
        self,
        name: str,
        *,
        outputs: dict[str, dict[str, bytes | str]] | None = None,
        logs: list[str] | None = None,
        **job_fields: Any,
    ) -> Any:
        """Put a job in the workspace; `outputs` maps output name -> {relative path: content} for download()."""
        outputs = outputs or {}
        job = make_job(name, output_names=list(outputs) or ["model"], **job_fields)
        self.jobs[name] = job
        self.output_files[name] = {
            output: {path: content.encode() if isinstance(content, str) else content for path, content in files.items()}
            for output, files in outputs.items()
        }
        self.logs[name] = list(logs or [])
        return job

    def set_status(self, name: str, status: str) -> None:
        self.jobs[name] = _as_returned(self.jobs[name], status=status, created_at=self._created(name))

    def _created(self, name: str) -> datetime | None:
        context = getattr(self.jobs[name], "creation_context", None)
        return getattr(context, "created_at", None)

    def _get(self, name: str) -> Any:
        if name not in self.jobs:
            raise not_found("Job", name)
        return self.jobs[name]

    # operations ----------------------------------------------------------------------------------------------
    def create_or_update(self, job: Any, **kwargs: Any) -> Any:
        self._record("create_or_update", job, **kwargs)
        returned = _as_returned(job, status="Starting")
        self.jobs[returned.name] = returned
        self.output_files.setdefault(returned.name, {})
        self.logs.setdefault(returned.name, [])
        self._raise_after("create_or_update")
        return returned

    def get(self, name: str) -> Any:
        self._record("get", name)
        return self._get(name)

    def list(self, **kwargs: Any) -> Iterator[Any]:
        self._record("list", **kwargs)
        newest_first = sorted(self.jobs.values(), key=lambda job: job.creation_context.created_at, reverse=True)
        return iter(newest_first)

    def stream(self, name: str) -> None:
        from azure.ai.ml.exceptions import ErrorTarget, JobException

        self._record("stream", name)
        job = self._get(name)
        for line in self.logs.get(name, []):
            print(line)
        print(f"\nExecution Summary\n=================\nRunId: {name}\nWeb View: {job.studio_url}")
        if _status(job) == "Failed":
            raise JobException(
                message='Exception : \n {"code": "UserError"} ',
                target=ErrorTarget.JOB,
                no_personal_data_message="Exception raised on failed job.",
            )

    def begin_cancel(self, name: str, **kwargs: Any) -> FakePoller:
        self._record("begin_cancel", name, **kwargs)
        self._get(name)
        self.set_status(name, "Canceled")
        return FakePoller(None)

    def download(
        self, name: str, *, download_path: str | Path = ".", output_name: str | None = None, all: bool = False
    ) -> None:
        """Write files in Azure's layout: artifacts/ for logs, named-outputs/<output>/ for each output."""
        from azure.ai.ml.exceptions import ErrorTarget, JobException

        self._record("download", name, download_path=download_path, output_name=output_name, all=all)
        job = self._get(name)
        if _status(job) not in TERMINAL:
            raise JobException(
                message=f"This job is in state {job.status}. Download is allowed only in states {list(TERMINAL)}",
                target=ErrorTarget.JOB,
                no_personal_data_message="not terminal",
            )
        root = Path(download_path)
        outputs = self.output_files.get(name, {})
        wanted = [output_name] if output_name else (list(outputs) if all else [])
        if output_name is None:  # the default artifact store (logs) comes with every download but a named one
            _write(root / "artifacts" / "user_logs" / "std_log.txt", "\n".join(self.logs.get(name, [])).encode())
        for output in wanted:
            for relative, content in outputs.get(output, {}).items():
                _write(root / "named-outputs" / output / relative, content)


def _status(job: Any) -> str:
    return str(getattr(job.status, "value", job.status))


def _write(path: Path, content: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content)


# -------------------------------------------------------------------------------------------------------- compute
def make_cluster(
    name: str,
    size: str,
    *,
    min_nodes: int = 0,
    max_nodes: int = 2,
    idle_seconds: int = 1800,
    low_priority: bool = False,
    size_as_returned: str | None = None,
) -> Any:
    """An AmlCompute entity as `compute.get` returns it (Azure often answers with the size upper-cased)."""
    from azure.ai.ml.entities import AmlCompute

    cluster = AmlCompute(
        name=name,
        size=size_as_returned or size,
        min_instances=min_nodes,
        max_instances=max_nodes,
        idle_time_before_scale_down=idle_seconds,
        tier="low_priority" if low_priority else "dedicated",
        location=LOCATION,
    )
    return _compute_as_returned(cluster)


def _compute_as_returned(compute: Any) -> Any:
    from azure.ai.ml.entities import Compute

    rest = rest_serialise(compute)
    rest.name = compute.name
    rest.id = arm_id("computes", compute.name)
    rest.properties.provisioning_state = "Succeeded"
    return Compute._from_rest_object(rest)


def usage(
    value: str,
    limit: int,
    current: int = 0,
    *,
    usage_type: str = "Microsoft.MachineLearningServices/vmFamily/usages",
    localized: str | None = None,
    usage_id: str | None = None,
) -> Any:
    """A Usage entity exactly as compute.list_usage() yields it (built from the REST API's JSON)."""
    from azure.ai.ml._restclient.arm_ml_service.models import Usage as RestUsage
    from azure.ai.ml.entities import Usage

    wire = {
        "id": usage_id or f"/subscriptions/{WORKSPACE['subscription_id']}/usages/{value.replace(' ', '_')}",
        "type": usage_type,
        "currentValue": current,
        "limit": limit,
        "name": {"value": value, "localizedValue": localized or value},
        "unit": "Count",
    }
    return Usage._from_rest_object(RestUsage(wire))


def family_usage(family: str, limit: int, current: int = 0, *, low_priority: bool = False) -> Any:
    """A per-family row, spelled as the REST API's sample spells them ('Standard NCASv3_T4 Family Cluster ...')."""
    spaced = family.removeprefix("standard").removeprefix("Standard").removesuffix("Family")
    kind = "LowPriority" if low_priority else "Dedicated"
    text = f"Standard {spaced} Family Cluster {kind} vCPUs"
    return usage(text, limit, current)


def regional_usage(limit: int, current: int = 0, *, low_priority: bool = False) -> Any:
    kind = "LowPriority" if low_priority else "Dedicated"
    usage_type = f"Microsoft.MachineLearningServices/{'lowPriorityCores' if low_priority else 'dedicatedCores'}/usages"
    return usage(
        f"Total Cluster {kind} Regional vCPUs",
        limit,
        current,
        usage_type=usage_type,
        usage_id=f"/subscriptions/{WORKSPACE['subscription_id']}/usages",
    )


class FakeComputeOperations(FakeOperations):
    """`ml_client.compute`: get, begin_create_or_update, begin_delete, list_usage."""

    def __init__(self, usages: Iterable[Any] = ()) -> None:
        super().__init__()
        self.computes: dict[str, Any] = {}
        self.usages: list[Any] = list(usages)

    def add_cluster(self, name: str, size: str, **fields: Any) -> Any:
        self.computes[name] = make_cluster(name, size, **fields)
        return self.computes[name]

    def get(self, name: str) -> Any:
        self._record("get", name)
        if name not in self.computes:
            raise not_found("Compute", name)
        return self.computes[name]

    def begin_create_or_update(self, compute: Any) -> FakePoller:
        self._record("begin_create_or_update", compute)
        if not compute.location:
            compute.location = LOCATION  # what the SDK does (from the workspace) before serialising
        returned = _compute_as_returned(compute)
        self.computes[compute.name] = returned
        self._raise_after("begin_create_or_update")
        return FakePoller(returned)

    def begin_delete(self, name: str, *, action: str = "Delete") -> FakePoller:
        self._record("begin_delete", name, action=action)
        if name not in self.computes:
            raise not_found("Compute", name)
        del self.computes[name]
        return FakePoller(None)

    def list_usage(self, *, location: str | None = None) -> list[Any]:
        self._record("list_usage", location=location)
        return list(self.usages)


# ------------------------------------------------------------------------------------------------------ workspaces
class FakeWorkspaceOperations(FakeOperations):
    """`ml_client.workspaces.get`: the workspace with its MLflow tracking URI (point it at a local store)."""

    def __init__(self, mlflow_tracking_uri: str | None = None) -> None:
        super().__init__()
        self.mlflow_tracking_uri = mlflow_tracking_uri

    def get(self, name: str | None = None, **kwargs: Any) -> Any:
        from azure.ai.ml.entities import Workspace

        self._record("get", name, **kwargs)
        return Workspace(
            name=name or WORKSPACE["workspace"], location=LOCATION, mlflow_tracking_uri=self.mlflow_tracking_uri
        )


# ---------------------------------------------------------------------------------------------------------- client
def install(ml_client: Any, name: str, operations: Any) -> None:
    """Replace the operation group behind the MLClient property `name` (stored as `_<name>`)."""
    if not isinstance(getattr(type(ml_client), name, None), property):
        raise AttributeError(f"MLClient has no operation group {name!r}")
    setattr(ml_client, f"_{name}", operations)
    assert getattr(ml_client, name) is operations


def fake_ml_client(**operations: Any) -> Any:
    """A real MLClient for WORKSPACE whose jobs, compute and workspaces (and any `operations=`) are fakes."""
    from azure.ai.ml import MLClient

    client = MLClient(
        FakeCredential(),
        subscription_id=WORKSPACE["subscription_id"],
        resource_group_name=WORKSPACE["resource_group"],
        workspace_name=WORKSPACE["workspace"],
    )
    groups = {"jobs": FakeJobOperations(), "compute": FakeComputeOperations(), "workspaces": FakeWorkspaceOperations()}
    groups.update(operations)
    for name, group in groups.items():
        install(client, name, group)
    return client


def days_ago(days: float) -> datetime:
    return datetime.now(UTC) - timedelta(days=days)
