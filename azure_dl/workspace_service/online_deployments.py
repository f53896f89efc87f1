"""Managed online deployments as records: PUT/GET/LIST/DELETE (long-running, see operations.py) and getLogs.

What `ml_client.online_deployments` sends (azure/ai/ml/operations/_online_deployment_operations.py): GET of the
endpoint first, the code, environment and model through their own routes (codes.py, environments.py,
models.py), then `PUT .../onlineEndpoints/{e}/deployments/{d}` with `sku.capacity` (instance_count) and the
properties (endpointComputeType, instanceType, model, codeConfiguration, environmentId, probes, requestSettings,
...), polled like the endpoint's PUT. The body answered is the properties as PUT plus `provisioningState`, in
the REST model's shape (azure/ai/ml/_restclient/arm_ml_service/models: OnlineDeployment).

A deployment runs (deployment_processes.py): the PUT checks what it names, starts the deployment's scoring
process group and answers at once (201 "Creating", an update too, as recorded); its operation stays "Updating",
as the recorded live polls show, until azmlinfsrv is ready - then the operation and the provisioningState read
"Succeeded" - or until init() crashes, when they read "Failed" with the server log's last lines as the error (the
SDK's poller raises it).
A PUT of a running deployment rolls it over (deployment_processes.py): the serving process group answers until
the new one is ready; if the new one fails, the old one keeps serving and the deployment reads "Failed" with the
new one's log tail (what the SDK's poller raises), as a failed create does. getLogs returns the server's logs,
every process group's in turn (`tail` lines); the StorageInitializer container has none here (the files are on
disk already), and says so. On start, the service starts again the deployments its state says were running.
The live service's rules that are kept: the endpoint must exist; names are 3-32 letters, digits and '-'; a
managed deployment needs instanceType and at least one instance; a workspace model or code version it names
must exist; a deployment that takes live or mirror traffic cannot be deleted (deleting one stops its processes).
Kubernetes deployments are checked by kubernetes_endpoints.py (an instance type of the endpoint's compute, scale
settings), then run the same way.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any

from azure_dl.workspace_service import (
    codes,
    data_collection,
    deployment_processes,
    kubernetes_endpoints,
    models,
    online_endpoints,
    operations,
)
from azure_dl.workspace_service.context import LOCATION, PROVIDER, ServiceContext
from azure_dl.workspace_service.http import ApiError, Request, Response, Router, json_response, not_found
from azure_dl.workspace_service.identity import authenticated
from azure_dl.workspace_service.workspaces import check_scope

KIND = online_endpoints.DEPLOYMENT_KIND
ROUTE = online_endpoints.ROUTE + "/{endpoint}/deployments"
LOG_CONTAINERS = {"storageinitializer": "StorageInitializer", "inferenceserver": "InferenceServer"}
# Azure's code for a deployment whose container crashed or never became ready.
NOT_READY_CODE = "ResourceNotReady"
_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9-]{2,31}$")
# What the live service fills in when a PUT leaves them out (as the recorded answer shows,
# tests/fixtures/recordings/online_deployment_create.json); the SDK reads scaleSettings.scaleType, so a body
# without it cannot even be read back.
DEFAULTS: dict[str, Any] = {
    "scaleSettings": {"scaleType": "Default"},
    "requestSettings": {"requestTimeout": "PT5S", "maxConcurrentRequestsPerInstance": 1, "maxQueueWait": "PT0S"},
    "livenessProbe": {
        "initialDelay": "PT10S",
        "period": "PT10S",
        "timeout": "PT2S",
        "successThreshold": 1,
        "failureThreshold": 30,
    },
    "readinessProbe": {
        "initialDelay": "PT10S",
        "period": "PT10S",
        "timeout": "PT2S",
        "successThreshold": 1,
        "failureThreshold": 30,
    },
    "appInsightsEnabled": False,
    "egressPublicNetworkAccess": "Enabled",
    "modelMountPath": None,
    "dataCollector": None,
}

_VERSIONED = re.compile(r"/workspaces/[^/]+/(?P<kind>models|codes)/(?P<name>[^/]+)/versions/(?P<version>[^/]+)$")


def _key(endpoint: str, name: str) -> str:
    return f"{endpoint}/{name}"


def _now() -> str:
    return datetime.now(UTC).isoformat()


def body(context: ServiceContext, record: dict[str, Any], state: str | None = None) -> dict[str, Any]:
    endpoint, name = record["endpoint"], record["name"]
    operation = (
        {"AzureAsyncOperationUri": operations.status_url(context, record["operation"])}
        if record.get("operation")
        else {}
    )
    return {
        "id": f"{context.workspace_id}/onlineEndpoints/{endpoint}/deployments/{name}",
        "name": name,
        "type": f"{PROVIDER}/workspaces/onlineEndpoints/deployments",
        "properties": {
            **record["properties"],
            # As recorded: the deployment's own properties name the operation that made it.
            "properties": {**(record["properties"].get("properties") or {}), **operation},
            "provisioningState": state or record["state"],
        },
        "systemData": {
            "createdAt": record["createdAt"],
            "createdBy": "azure-dl",
            "lastModifiedAt": record["modifiedAt"],
        },
        "tags": record.get("tags") or {},
        "location": LOCATION,
        "kind": "Managed",
        "sku": {"tier": "Standard", **record["sku"]},
    }


def find(context: ServiceContext, endpoint: str, name: str) -> dict[str, Any]:
    record = context.store.get(KIND, _key(endpoint, name))
    if record is None:
        raise not_found("online deployment", f"{endpoint}/{name}")
    return record


def _check_asset(context: ServiceContext, where: str, asset_id: Any) -> None:
    """A workspace model or code version named by ARM id must exist (others, e.g. registry assets, pass)."""
    if not isinstance(asset_id, str):
        return
    match = _VERSIONED.search(asset_id)
    if match is None:
        return
    kind, name, version = match.group("kind"), match.group("name"), match.group("version")
    found = (
        models.find_version(context, name, version)
        if kind == "models"
        else context.store.get(codes.KIND, f"{name}/{version}")
    )
    if found is None:
        raise ApiError(400, "BadArgument", f"{where}: {kind[:-1]} {name}:{version} does not exist in this workspace")


def _validated(context: ServiceContext, endpoint: str, name: str, document: Any) -> tuple[dict[str, Any], int]:
    where = f"deployment {name} of endpoint {endpoint}"
    if not _NAME.match(name):
        raise ApiError(
            400, "BadArgument", f"deployment name {name!r}: use 3-32 letters, digits and '-', starting with a letter"
        )
    properties = document.get("properties") if isinstance(document, dict) else None
    if not isinstance(properties, dict):
        raise ApiError(400, "BadArgument", f"{where}: the body needs properties")
    compute_type = str(properties.get("endpointComputeType") or "")
    endpoint_record = online_endpoints.find(context, endpoint)
    if compute_type.lower() == "kubernetes":
        properties = kubernetes_endpoints.checked_deployment(context, endpoint_record, name, properties)
    elif compute_type.lower() != "managed":
        raise ApiError(
            400, "BadArgument", f"{where}: endpointComputeType {compute_type!r} is not Managed or Kubernetes"
        )
    else:
        kubernetes_endpoints.check_managed_deployment(endpoint_record, name)
    if not properties.get("instanceType"):
        raise ApiError(400, "BadArgument", f"{where}: a managed deployment needs properties.instanceType")
    sku = document.get("sku") or {}
    capacity = sku.get("capacity", 1) if isinstance(sku, dict) else None
    if not isinstance(capacity, int) or isinstance(capacity, bool) or capacity < 1:
        raise ApiError(400, "BadArgument", f"{where}: sku.capacity (instance_count) is {capacity!r}; give 1 or more")
    _check_asset(context, where, properties.get("model"))
    _check_asset(context, where, (properties.get("codeConfiguration") or {}).get("codeId"))
    properties = data_collection.checked(where, properties)
    filled = {key: value for key, value in DEFAULTS.items() if properties.get(key) is None}
    return {**properties, **filled}, capacity


def register(router: Router, context: ServiceContext) -> None:
    def _endpoint(request: Request) -> dict[str, Any]:
        check_scope(context, request)
        return online_endpoints.find(context, request.params["endpoint"])

    def _get(request: Request) -> Response:
        endpoint = _endpoint(request)
        return json_response(200, body(context, find(context, endpoint["name"], request.params["name"])))

    def _list(request: Request) -> Response:
        endpoint = _endpoint(request)
        records = online_endpoints.deployments_of(context, endpoint["name"])
        return json_response(200, {"value": [body(context, record) for record in records]})

    def _start(record: dict[str, Any], operation_id: str | None) -> None:
        """Start the record's processes; their outcome ends operation `operation_id` and sets the record's state."""
        endpoint, name = record["endpoint"], record["name"]
        capacity = record["sku"]["capacity"]
        spec = deployment_processes.server_spec(context, endpoint, name, record["properties"], capacity)

        def _done(error: str | None) -> None:
            current = context.store.get(KIND, _key(endpoint, name))
            if current is not None and current.get("operation") == operation_id:
                current["state"] = "Failed" if error else "Succeeded"
                current["error"] = error
                context.store.put(KIND, _key(endpoint, name), current)
            if operation_id is not None:
                failure = {"code": NOT_READY_CODE, "message": f"deployment {name} of endpoint {endpoint}: {error}"}
                operations.complete(context, operation_id, error=failure if error else None)

        deployment_processes.of(context).start(
            spec,
            endpoint,
            name,
            deployment_processes.log_dir(context, endpoint, name) / deployment_processes.LOG_FILE,
            deployment_processes.limits(record["properties"], capacity),
            _done,
        )

    def _put(request: Request) -> Response:
        endpoint = _endpoint(request)["name"]
        name = request.params["name"]
        document = request.json()
        properties, capacity = _validated(context, endpoint, name, document)
        # What it will run is checked before the answer: a bad code or model is the PUT's 400, not a failed start.
        deployment_processes.server_spec(context, endpoint, name, properties, capacity)
        existing = context.store.get(KIND, _key(endpoint, name))
        now = _now()
        operation_id, headers = operations.started(context, online_endpoints.resource_url(context, endpoint, name))
        # The record reads "Updating" while an update runs; the PUT's own answer is 201 "Creating" for an update
        # too, as the live service answered one (tests/fixtures/recordings/online_deployment_update.json).
        state = "Updating" if existing else "Creating"
        record = {
            "endpoint": endpoint,
            "name": name,
            "properties": properties,
            "sku": {"name": (document.get("sku") or {}).get("name") or "Default", "capacity": capacity},
            "tags": document.get("tags") or {},
            "state": state,
            "operation": operation_id,
            "createdAt": existing["createdAt"] if existing else now,
            "modifiedAt": now,
        }
        context.store.put(KIND, _key(endpoint, name), record)
        serving = deployment_processes.of(context).get(endpoint, name)
        if existing and serving is not None and deployment_processes.runs_the_same(existing, record):
            # Only settings the service keeps without acting on them changed (scale settings, probes, tags,
            # request limits): the serving group stays, with the new request limits, and the operation is over.
            serving.capacity, serving.timeout_s = deployment_processes.limits(properties, capacity)
            record["state"] = "Succeeded"
            context.store.put(KIND, _key(endpoint, name), record)
            operations.complete(context, operation_id)
        else:
            _start(record, operation_id)
        return json_response(201, body(context, record, "Creating"), headers)

    def _delete(request: Request) -> Response:
        endpoint = _endpoint(request)
        name = request.params["name"]
        find(context, endpoint["name"], name)
        for field in ("traffic", "mirrorTraffic"):
            if (endpoint.get(field) or {}).get(name):
                raise ApiError(
                    400,
                    "BadArgument",
                    f"deployment {name} of endpoint {endpoint['name']} has {endpoint[field][name]}% {field}; "
                    "move that traffic to another deployment (or to 0) before deleting it",
                )
        context.store.delete(KIND, _key(endpoint["name"], name))
        deployment_processes.of(context).stop_one(endpoint["name"], name)
        url = online_endpoints.resource_url(context, endpoint["name"], name)
        return Response(202, b"", operations.result_location(context, operations.finished(context, url)))

    def _logs(request: Request) -> Response:
        endpoint = _endpoint(request)["name"]
        name = request.params["name"]
        find(context, endpoint, name)
        document = request.json() if request.body else {}
        container = (document or {}).get("containerType") or "InferenceServer"
        if str(container).lower() not in LOG_CONTAINERS:
            raise ApiError(
                400, "BadArgument", f"containerType {container!r}: give {' or '.join(LOG_CONTAINERS.values())}"
            )
        logs = deployment_processes.log_files(deployment_processes.log_dir(context, endpoint, name))
        if str(container).lower() == "storageinitializer":
            lines = ["azure-dl local workspace service: no StorageInitializer runs; the model and code are on disk."]
        elif logs:
            lines = [line for log in logs for line in log.read_text(encoding="utf-8", errors="replace").splitlines()]
        else:
            lines = [f"azure-dl local workspace service: deployment {name} has not written a log yet."]
        tail = (document or {}).get("tail")
        if isinstance(tail, int) and tail >= 0:
            lines = lines[-tail:] if tail else []
        return json_response(200, {"content": "\n".join(lines) + ("\n" if lines else "")})

    # Deployments the state says were running (or starting) when the service last stopped run again.
    for record in context.store.list(KIND):
        if record.get("state") in ("Succeeded", "Creating", "Updating"):
            try:
                _start(record, record.get("operation"))
            except ApiError as exc:  # its code or model went away: say so on the record
                record.update({"state": "Failed", "error": exc.message})
                context.store.put(KIND, _key(record["endpoint"], record["name"]), record)

    router.add("GET", ROUTE, authenticated(context, _list))
    router.add("GET", ROUTE + "/{name}", authenticated(context, _get))
    router.add("PUT", ROUTE + "/{name}", authenticated(context, _put))
    router.add("DELETE", ROUTE + "/{name}", authenticated(context, _delete))
    router.add("POST", ROUTE + "/{name}/getLogs", authenticated(context, _logs))
