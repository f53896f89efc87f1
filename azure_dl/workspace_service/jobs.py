"""Command jobs: PUT/GET jobs/{name}, the list, POST jobs/{name}/cancel (a long-running operation), and the run
history routes `jobs.stream` and `jobs.download` read (runs/{id}/details, rundata).

Bodies follow Azure/azure-sdk-assets python/sdk/ml/azure-ai-ml/tests/recordings/command_job/e2etests/
test_command_job.pyTestCommandJobtest_command_job_serverless.json (trimmed copy:
tests/fixtures/recordings/command_job_create.json). A PUT of an existing name answers the existing job and
starts nothing (the client retries PUTs). The job's default output is the artifact store's
ExperimentRun/dcid.NAME, where the runner writes user_logs/std_log.txt, ./outputs and ./logs; `jobs.stream` lists
user_logs/ there through the blob routes and polls runs/{id}/details for the status. Running: job_runner.py.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from azure_dl.workspace_service import mlflow_front, paging, parent_jobs, registries, tls
from azure_dl.workspace_service.context import PROVIDER, ServiceContext
from azure_dl.workspace_service.http import ApiError, Request, Response, Router, json_response, not_found
from azure_dl.workspace_service.identity import authenticated
from azure_dl.workspace_service.job_command import check_compute, output_uris
from azure_dl.workspace_service.job_runner import KIND, MIN_QUEUED_S, TERMINAL, JobRunner, now
from azure_dl.workspace_service.parent_jobs import PARENT_TYPES
from azure_dl.workspace_service.workspaces import check_scope

SCOPE = "/subscriptions/{subscription}/resourceGroups/{group}/providers/" + PROVIDER + "/workspaces/{workspace}"
HISTORY = "/history/v1.0" + SCOPE
SUPPORTED_TYPES = ("Command", *PARENT_TYPES)
LIST_VIEWS = ("ActiveOnly", "ArchivedOnly", "All")
# Fields Azure refuses to change on an existing job (a PUT of the same name with other values is a 400). codeId
# is left out: a retried create_or_update re-resolves the snapshot and may name another code of the same content.
IMMUTABLE = ("jobType", "command", "environmentId", "computeId", "inputs", "distribution")
_RUNNERS: dict[str, JobRunner] = {}


def runner_for(context: ServiceContext) -> JobRunner:
    return _RUNNERS[str(context.data_dir)]


def shutdown(context: ServiceContext) -> None:
    """Stop the service's running jobs (they end Canceled) and its queue; called by WorkspaceService.stop()."""
    runner = _RUNNERS.pop(str(context.data_dir), None)
    if runner is not None:
        runner.stop()


def body(context: ServiceContext, record: dict[str, Any]) -> dict[str, Any]:
    name, properties = record["name"], record["properties"]
    studio = f"https://ml.azure.com/runs/{name}?wsid={context.workspace_id}"
    common: dict[str, Any] = {
        "description": properties.get("description"),
        "tags": properties.get("tags") or {},
        "properties": {"_azureml.ComputeTargetType": "local", **(properties.get("properties") or {})},
        "parentJobName": record.get("parent"),
        "displayName": properties.get("displayName") or name,
        "status": record["status"],
        "experimentName": properties.get("experimentName") or "Default",
        "services": {
            "Tracking": {"jobServiceType": "Tracking", "endpoint": f"azureml://{context.host}/mlflow/v1.0"},
            "Studio": {"jobServiceType": "Studio", "endpoint": studio},
        },
        "computeId": properties.get("computeId"),
        "isArchived": bool(properties.get("isArchived", False)),
        "identity": properties.get("identity") or {"identityType": "AMLToken"},
        "componentId": None,
        "notificationSetting": None,
        # Recorded for command jobs (command_job_create.json); no secrets or autologger settings run locally.
        "secretsConfiguration": None,
        "jobType": properties["jobType"],
    }
    if properties["jobType"] in PARENT_TYPES:
        # A sweep or pipeline answers what it was sent (trial, objective, search space, jobs, settings ...).
        specific = {key: value for key, value in properties.items() if key not in common}
        outputs = dict(properties.get("outputs") or {})
        # Keys Azure answers whether or not they were sent (sweep_job_create.json, pipeline_job_create.json). A
        # sweep has the artifact store's default output; a pipeline has only the outputs it declares (the SDK
        # would list a "default" as one of the user's outputs), as recorded.
        if properties["jobType"] == "Sweep":
            outputs["default"] = output_uris(context, name, {})["default"]
            specific.setdefault("earlyTermination", None)
            specific.setdefault("queueSettings", None)
            specific.setdefault("resources", {"instanceCount": 1, "shmSize": "2g"})
            specific.setdefault("componentConfiguration", None)
        else:
            specific.setdefault("sourceJobId", None)
        specific.update(inputs=properties.get("inputs") or {}, outputs=outputs)
    else:
        specific = {
            "resources": properties.get("resources") or {"instanceCount": 1, "shmSize": "2g"},
            "codeId": properties.get("codeId"),
            "command": properties.get("command"),
            "environmentId": properties.get("environmentId"),
            "inputs": properties.get("inputs") or {},
            "outputs": output_uris(context, name, properties),
            "distribution": properties.get("distribution"),
            "autologgerSettings": None,
            "limits": properties.get("limits"),
            "environmentVariables": properties.get("environmentVariables") or {},
            "parameters": {},
            "queueSettings": properties.get("queueSettings") or {"jobTier": "Standard"},
        }
    return {
        "id": f"{context.workspace_id}/jobs/{name}",
        "name": name,
        "type": f"{PROVIDER}/workspaces/jobs",
        "properties": {**common, **specific},
        "systemData": {"createdAt": record["createdAt"], "createdBy": "azure-dl", "createdByType": "User"},
    }


def _check_new(context: ServiceContext, name: str, properties: dict[str, Any]) -> None:
    job_type = properties.get("jobType")
    if job_type not in SUPPORTED_TYPES:
        raise ApiError(
            400,
            "UserError",
            f"job {name}: jobType {job_type!r} is not supported locally (Command, Sweep, Pipeline are)",
        )
    if job_type in PARENT_TYPES:
        parent_jobs.check(context, name, properties)
    elif not properties.get("command"):
        raise ApiError(400, "UserError", f"job {name}: a command job needs properties.command")
    # An azureml://registries/... environment (a command job's, a sweep's trial's): a 404 naming what is missing.
    registries.check_job_environment(properties.get("trial") or properties)
    check_compute(context, name, properties.get("computeId"))


def _same(value: Any) -> Any:
    # The SDK sends an asset as `azureml:/subscriptions/...` or as the bare ARM id, depending on the call path.
    return value.removeprefix("azureml:") if isinstance(value, str) else value


def _record(context: ServiceContext, request: Request) -> dict[str, Any]:
    check_scope(context, request)
    record = context.store.get(KIND, request.params["name"])
    if record is None:
        raise not_found("job", request.params["name"])
    return record


def _run_details(record: dict[str, Any]) -> dict[str, Any]:
    error = record.get("error")
    return {
        "runId": record["name"],
        "target": "local",
        "status": record["status"],
        "startTimeUtc": record.get("startTime"),
        "endTimeUtc": record.get("endTime"),
        "error": {"error": error} if error else None,
        "warnings": [],
        "properties": {},
        "logFiles": {},
    }


# Run history's User, as recorded: only the name is known here.
_LOCAL_USER = {
    "userObjectId": None, "userPuId": None, "userIdp": None, "userAltSecId": None, "userIss": None,
    "userTenantId": None, "userName": "azure-dl", "upn": None, "clientApplicationId": None, "applicationACR": None,
}  # fmt: skip


def _child_run(context: ServiceContext, record: dict[str, Any]) -> dict[str, Any]:
    """A child job as run history's Run (what `jobs.list(parent_job_name=...)` reads)."""
    properties = record["properties"]
    compute = str(properties.get("computeId") or "").rstrip("/").rsplit("/", 1)[-1] or None
    return {
        **_run_details(record),
        "parentRunId": record.get("parent"),
        "rootRunId": record.get("parent"),
        "displayName": properties.get("displayName") or record["name"],
        "description": properties.get("description"),
        "experimentId": properties.get("experimentName") or "Default",
        "createdUtc": record["createdAt"],
        "tags": properties.get("tags") or {},
        "properties": properties.get("properties") or {},
        "compute": {"target": compute} if compute else None,
        "target": compute,
        # Run fields azure-ai-ml reads into the child job (its creation context and services), as recorded
        # (tests/fixtures/recordings/run_children.json).
        "services": {},
        "createdBy": _LOCAL_USER,
        "createdFrom": None,
        "lastModifiedBy": _LOCAL_USER,
        "lastModifiedUtc": record.get("endTime") or record.get("startTime") or record["createdAt"],
    }


# A job's run ends in MLflow with the job (unless the script ended it itself).
_MLFLOW_STATUS = {"Completed": "FINISHED", "Failed": "FAILED", "Canceled": "KILLED"}


def _job_environment(context: ServiceContext) -> Callable[[str, str], dict[str, str]]:
    def environment(job_name: str, experiment_name: str) -> dict[str, str]:
        # MLflow inside the job logs to the service over HTTPS: the job trusts the service's CA whatever the
        # shell that started the service had (connection.env's bundle: certifi's roots plus that CA).
        bundle = str(tls.bundle_path(context.data_dir / "tls"))
        return {
            **mlflow_front.job_environment(context, job_name, experiment_name),
            "REQUESTS_CA_BUNDLE": bundle,
            "SSL_CERT_FILE": bundle,
        }

    return environment


def _finish_mlflow_run(context: ServiceContext) -> Callable[[str, str], None]:
    def finished(job_name: str, status: str) -> None:
        if status in _MLFLOW_STATUS:
            mlflow_front.finish_job_run(context, job_name, _MLFLOW_STATUS[status])

    return finished


def register(router: Router, context: ServiceContext) -> None:
    runner = JobRunner(context, extra_environment=_job_environment(context), on_finished=_finish_mlflow_run(context))
    _RUNNERS[str(context.data_dir)] = runner

    def _put(request: Request) -> Response:
        check_scope(context, request)
        name = request.params["name"]
        document = request.json()
        properties = document.get("properties") if isinstance(document, dict) else None
        if not isinstance(properties, dict):
            raise ApiError(400, "UserError", f"job {name}: the body needs a `properties` object")
        existing = context.store.get(KIND, name)
        if existing is not None:
            old = existing["properties"]
            changed = [k for k in IMMUTABLE if k in properties and _same(properties.get(k)) != _same(old.get(k))]
            if changed:
                raise ApiError(
                    400,
                    "UserError",
                    f"job {name} exists; these fields cannot be changed: "
                    + ", ".join(f"{k} ({old.get(k)!r} -> {properties.get(k)!r})" for k in changed),
                )
            return json_response(200, body(context, existing))
        _check_new(context, name, properties)
        record = {"name": name, "properties": properties, "status": "Queued", "createdAt": now(), "error": None}
        context.store.put(KIND, name, record)
        if properties["jobType"] in PARENT_TYPES:
            parent_jobs.start(context, runner, name)
        else:
            runner.submit(name, min_queued_s=MIN_QUEUED_S)
        return json_response(201, body(context, record))

    def _get(request: Request) -> Response:
        return json_response(200, body(context, _record(context, request)))

    def _list(request: Request) -> Response:
        check_scope(context, request)
        view = request.query.get("listViewType") or "ActiveOnly"
        if view not in LIST_VIEWS:
            raise ApiError(400, "UserError", f"listViewType {view!r} is not one of {', '.join(LIST_VIEWS)}")
        # Trials and steps are listed under their parent (runs/{parent}/children), as Azure ML lists them.
        records = [r for r in context.store.list(KIND) if not r.get("parent")]
        if view != "All":
            archived = view == "ArchivedOnly"
            records = [r for r in records if bool(r["properties"].get("isArchived")) == archived]
        # Newest first, as Azure lists them; a page at a time (paging.py).
        shown, next_link = paging.page(context, request, records, lambda r: (r["createdAt"], r["name"]))
        return json_response(200, paging.document([body(context, r) for r in shown], next_link))

    # A cancel answers as recorded (tests/fixtures/recordings/job_cancel.json): 202, the JSON text `null`, a
    # Location to poll and the operation's timeout; the poll answers 202 `{}` (Location again) until the job has
    # ended, then 200 with no body. Two differences are kept: Location is this job's cancelStatus, not Azure's
    # locations/.../mfeOperationResults/jc:ID:NAME (the SDK follows whatever Location says), and `Retry-After: 1`
    # is added (Azure sends none, so azure-core would wait its default 30 s between polls).
    def _cancel(request: Request) -> Response:
        record = _record(context, request)
        if record["status"] not in TERMINAL:
            runner.cancel(record["name"])
        location = f"{context.base_url}{context.workspace_id}/jobs/{record['name']}/cancelStatus?api-version=local"
        headers = {"Location": location, "x-ms-async-operation-timeout": "PT1H", "Retry-After": "1"}
        return json_response(202, None, headers)

    def _cancel_status(request: Request) -> Response:
        record = _record(context, request)
        if record["status"] in TERMINAL:
            return Response(200, b"", {})
        location = f"{context.base_url}{request.path}?api-version=local"
        return json_response(202, {}, {"Location": location, "Retry-After": "1"})

    def _details(request: Request) -> Response:
        check_scope(context, request)
        record = context.store.get(KIND, request.params["run"])
        if record is None:
            raise not_found("run", request.params["run"])
        return json_response(200, _run_details(record))

    def _run_data(request: Request) -> Response:
        check_scope(context, request)
        run_id = (request.json() or {}).get("runId", "")
        record = context.store.get(KIND, run_id)
        if record is None:
            raise not_found("run", run_id)
        # Named outputs are not listed here: the SDK then looks for them at azureml/NAME/OUTPUT/ on the default
        # datastore, where the runner writes them.
        metadata = {**_run_details(record), "experimentId": None, "outputs": {}, "inputs": {}}
        return json_response(200, {"runMetadata": metadata, "runDefinition": None, "jobSpecification": None})

    def _children(request: Request) -> Response:
        check_scope(context, request)
        parent = request.params["run"]
        if context.store.get(KIND, parent) is None:
            raise not_found("run", parent)
        runs = [_child_run(context, record) for record in parent_jobs.children_of(context, parent)]
        top = request.query.get("$top")
        if top and top.isdigit():
            runs = runs[: int(top)]
        return json_response(200, {"value": runs, "nextLink": None, "continuationToken": None})

    route = SCOPE + "/jobs"
    router.add("GET", route, authenticated(context, _list))
    router.add("PUT", route + "/{name}", authenticated(context, _put))
    router.add("GET", route + "/{name}", authenticated(context, _get))
    router.add("POST", route + "/{name}/cancel", authenticated(context, _cancel))
    router.add("GET", route + "/{name}/cancelStatus", authenticated(context, _cancel_status))
    router.add("GET", HISTORY + "/runs/{run}/details", authenticated(context, _details))
    router.add("POST", HISTORY + "/rundata", authenticated(context, _run_data))
    router.add("GET", HISTORY + "/runs/{run}/children", authenticated(context, _children))
