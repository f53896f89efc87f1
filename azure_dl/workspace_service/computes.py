"""AmlCompute clusters: PUT (create or replace), PATCH (scale settings), GET, list, DELETE, and the operation status.

Shapes and long-running-operation headers follow Azure/azure-sdk-assets
python/sdk/ml/azure-ai-ml/tests/recordings/compute/e2etests/test_compute.pyTestComputetest_aml_compute_create_and_delete.json
(trimmed copy: tests/fixtures/recordings/compute_aml_create_and_delete.json): a PUT answers 201 (a new cluster or a
replaced one alike) with `Azure-AsyncOperation` naming a `computeOperationsStatus` URL; the SDK polls it until
`{"status": "Succeeded", "percentComplete": 100.0}` and then GETs the cluster; a DELETE answers 202 with the same
header and no body. Clusters here never allocate VMs (jobs run on this machine), so every operation has finished
by the time it is answered and the first poll says Succeeded. A cluster reports `minNodeCount` nodes as allocated
and idle (what Azure converges to), and those nodes are what the usages route counts against quota.

AmlCompute clusters are created here; Kubernetes compute is attached through kubernetes_computes.py (clusters
declared in DIR/kubernetes.toml). Other compute types get a 400, as do a VM size the catalogue does not know,
min > max nodes, and a change of VM size or priority of an existing cluster (Azure cannot change those in place
either). Kept in the store as kind "computes", key = the cluster name.
"""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime
from typing import Any

from azure_dl.catalog import lookup_vm_size, user_catalog_path
from azure_dl.workspace_service import kubernetes_computes
from azure_dl.workspace_service.context import LOCATION, PROVIDER, ServiceContext
from azure_dl.workspace_service.http import ApiError, Handler, Request, Response, Router, json_response, not_found
from azure_dl.workspace_service.identity import authenticated
from azure_dl.workspace_service.workspaces import check_scope

KIND = "computes"
OPERATIONS_KIND = "compute-operations"
PAGE_SIZE = 50  # computes per list page; the SDK follows nextLink
SUPPORTED_TYPE = "AmlCompute"
PRIORITIES = ("Dedicated", "LowPriority")
DEFAULT_IDLE = "PT2M"  # Azure's default idle time before scale-down (120 s)
ROUTE = (
    "/subscriptions/{subscription}/resourceGroups/{group}/providers/" + PROVIDER + "/workspaces/{workspace}/computes"
)
STATUS_ROUTE = (
    "/subscriptions/{subscription}/providers/" + PROVIDER + "/locations/{location}/computeOperationsStatus/{id}"
)
# Azure's rule for a compute name: 3-24 letters, digits and '-', starting with a letter, not ending with '-'.
_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9-]{1,22}[A-Za-z0-9]$")
# Verbs of compute instances; an AmlCompute cluster scales with its jobs instead.
INSTANCE_ACTIONS = ("start", "stop", "restart")


def _now() -> str:
    return datetime.now(UTC).isoformat()


def _invalid(message: str) -> ApiError:
    return ApiError(400, "BadRequest", message)


def _check_type(name: str, properties: dict[str, Any]) -> None:
    compute_type = str(properties.get("computeType") or "")
    if compute_type.lower() == SUPPORTED_TYPE.lower():
        return
    raise _invalid(
        f"compute {name}: computeType {compute_type or '(none)'!r} is not supported by the local workspace "
        f"service; it runs {SUPPORTED_TYPE} clusters and attaches Kubernetes clusters only"
    )


def _check_scale(name: str, scale: Any) -> dict[str, Any]:
    if not isinstance(scale, dict):
        raise _invalid(f"compute {name}: properties.properties.scaleSettings is required (maxNodeCount, minNodeCount)")
    maximum, minimum = scale.get("maxNodeCount"), scale.get("minNodeCount", 0)
    if not isinstance(maximum, int) or isinstance(maximum, bool) or maximum < 1:
        raise _invalid(f"compute {name}: scaleSettings.maxNodeCount must be a whole number >= 1, got {maximum!r}")
    if minimum is None:
        minimum = 0
    if not isinstance(minimum, int) or isinstance(minimum, bool) or minimum < 0:
        raise _invalid(f"compute {name}: scaleSettings.minNodeCount must be a whole number >= 0, got {minimum!r}")
    if minimum > maximum:
        raise _invalid(
            f"compute {name}: minNodeCount ({minimum}) is greater than maxNodeCount ({maximum}); "
            "give min <= max (min 0 lets an idle cluster scale to zero)"
        )
    return {
        "maxNodeCount": maximum,
        "minNodeCount": minimum,
        "nodeIdleTimeBeforeScaleDown": scale.get("nodeIdleTimeBeforeScaleDown") or DEFAULT_IDLE,
    }


def _checked_cluster(name: str, properties: dict[str, Any]) -> dict[str, Any]:
    """The AmlCompute properties of a PUT body, validated, with the vmSize and vmPriority spelled as Azure does."""
    cluster = properties.get("properties")
    if not isinstance(cluster, dict):
        raise _invalid(f"compute {name}: the body needs properties.properties (vmSize, scaleSettings)")
    size_name = str(cluster.get("vmSize") or "")
    size = lookup_vm_size(size_name) if size_name else None
    if size is None:
        raise _invalid(
            f"compute {name}: VM size {size_name or '(none)'!r} is not in azure-dl's catalogue, so the local "
            "service cannot tell its family and vCPUs for quota; `azure-dl catalog list` shows the sizes, or add a "
            f"[[size]] to {user_catalog_path()}"
        )
    if size.status == "retired":
        successors = f"; choose {' or '.join(size.successors)}" if size.successors else ""
        raise _invalid(
            f"compute {name}: VM size {size.name} was retired on {size.retired_on or 'an earlier date'} and can no "
            f"longer be provisioned{successors}"
        )
    priority = str(cluster.get("vmPriority") or "Dedicated")
    matched = next((p for p in PRIORITIES if p.lower() == priority.lower()), None)
    if matched is None:
        raise _invalid(f"compute {name}: vmPriority {priority!r} is not one of {', '.join(PRIORITIES)}")
    return {
        **cluster,
        "vmSize": size_name,
        "vmPriority": matched,
        "scaleSettings": _check_scale(name, cluster.get("scaleSettings")),
    }


def _check_unchanged(name: str, old: dict[str, Any], new: dict[str, Any]) -> None:
    for key, what in (("vmSize", "VM size"), ("vmPriority", "priority")):
        if str(old.get(key)).lower() != str(new.get(key)).lower():
            raise _invalid(
                f"compute {name}: the {what} of an existing cluster cannot be changed (it is {old.get(key)}, the "
                f"request asks for {new.get(key)}); delete the cluster and create it again, or use another name"
            )


def _nodes(cluster: dict[str, Any]) -> int:
    return int(cluster["scaleSettings"].get("minNodeCount") or 0)


def allocated_nodes(record: dict[str, Any]) -> int:
    """Nodes the cluster holds (its minNodeCount: what Azure converges to while no job runs)."""
    return _nodes(record["properties"]["properties"])


def body(context: ServiceContext, record: dict[str, Any]) -> dict[str, Any]:
    """The recorded GET shape; the cluster's properties as sent, with Azure's read-only fields beside them."""
    if "resourceId" in record["properties"]:  # an attached Kubernetes cluster (kubernetes_computes.py)
        return kubernetes_computes.body(context, record)
    sent = record["properties"]
    cluster = sent["properties"]
    nodes = _nodes(cluster)
    properties: dict[str, Any] = {
        "vmSize": cluster["vmSize"],
        "vmPriority": cluster["vmPriority"],
        "scaleSettings": cluster["scaleSettings"],
    }
    credentials = cluster.get("userAccountCredentials")
    if isinstance(credentials, dict):
        # Azure never answers the password it was given.
        properties["userAccountCredentials"] = {
            "adminUserName": credentials.get("adminUserName"),
            "adminUserPassword": None,
            "adminUserSshPublicKey": credentials.get("adminUserSshPublicKey"),
        }
    properties.update(
        {
            "subnet": cluster.get("subnet"),
            "currentNodeCount": nodes,
            "targetNodeCount": nodes,
            "nodeStateCounts": {
                "preparingNodeCount": 0,
                "runningNodeCount": 0,
                "idleNodeCount": nodes,
                "unusableNodeCount": 0,
                "leavingNodeCount": 0,
                "preemptedNodeCount": 0,
            },
            "allocationState": "Steady",
            "allocationStateTransitionTime": record["modifiedOn"],
            "errors": None,
            "remoteLoginPortPublicAccess": cluster.get("remoteLoginPortPublicAccess") or "NotSpecified",
            "osType": cluster.get("osType") or "Linux",
            "virtualMachineImage": cluster.get("virtualMachineImage"),
            "isolatedNetwork": False,
            "enableNodePublicIp": cluster.get("enableNodePublicIp", True),
            "enableBatchPrivateLink": False,
            "propertyBag": {},
        }
    )
    document: dict[str, Any] = {
        "id": f"{context.workspace_id}/computes/{record['name']}",
        "name": record["name"],
        "type": f"{PROVIDER}/workspaces/computes",
        "location": record["location"],
        "tags": record.get("tags") or {},
        "properties": {
            "createdOn": record["createdOn"],
            "modifiedOn": record["modifiedOn"],
            "disableLocalAuth": bool(sent.get("disableLocalAuth", False)),
            "description": sent.get("description"),
            "resourceId": None,
            "computeType": SUPPORTED_TYPE,
            "computeLocation": record["location"],
            "provisioningState": "Succeeded",
            "provisioningErrors": None,
            "provisioningWarnings": {},
            "isAttachedCompute": False,
            "properties": properties,
        },
    }
    if record.get("identity"):
        document["identity"] = record["identity"]
    return document


def _operation_header(context: ServiceContext, request: Request) -> dict[str, str]:
    """A finished operation and the Azure-AsyncOperation header that names it (the SDK polls it once)."""
    operation = str(uuid.uuid4())
    context.store.put(OPERATIONS_KIND, operation, {"status": "Succeeded", "percentComplete": 100.0})
    version = request.query.get("api-version", "2025-12-01")
    url = (
        f"{context.base_url}/subscriptions/{context.subscription_id}/providers/{PROVIDER}/locations/{LOCATION}/"
        f"computeOperationsStatus/{operation}?api-version={version}"
    )
    return {"Azure-AsyncOperation": url}


def register(router: Router, context: ServiceContext) -> None:
    def _found(request: Request) -> dict[str, Any]:
        check_scope(context, request)
        name = request.params["name"]
        record = context.store.get(KIND, name) or context.store.get(kubernetes_computes.KIND, name)
        if record is None:
            raise not_found("compute", name)
        return record

    def _get(request: Request) -> Response:
        return json_response(200, body(context, _found(request)))

    def _list(request: Request) -> Response:
        check_scope(context, request)
        records = context.store.list(KIND) + context.store.list(kubernetes_computes.KIND)
        skip = request.query.get("$skip", "0")
        start = int(skip) if skip.isdigit() else 0
        page = records[start : start + PAGE_SIZE]
        document: dict[str, Any] = {"value": [body(context, record) for record in page]}
        if start + PAGE_SIZE < len(records):
            version = request.query.get("api-version", "2025-12-01")
            document["nextLink"] = f"{context.base_url}{request.path}?api-version={version}&$skip={start + PAGE_SIZE}"
        return json_response(200, document)

    def _put(request: Request) -> Response:
        check_scope(context, request)
        name = request.params["name"]
        if not _NAME.match(name):
            raise _invalid(
                f"compute name {name!r} is not valid: use 3-24 letters, digits and '-', starting with a letter "
                "and ending with a letter or digit"
            )
        document = request.json()
        properties = document.get("properties") if isinstance(document, dict) else None
        if not isinstance(properties, dict):
            raise _invalid(f"compute {name}: the body needs `properties` (computeType, properties)")
        if str(properties.get("computeType") or "").lower() == "kubernetes":
            return _attach(request, name, document, properties)
        if context.store.get(kubernetes_computes.KIND, name) is not None:
            raise _invalid(f"compute {name} is an attached Kubernetes cluster; detach it before reusing the name")
        _check_type(name, properties)
        cluster = _checked_cluster(name, properties)
        existing = context.store.get(KIND, name)
        if existing is not None:
            _check_unchanged(name, existing["properties"]["properties"], cluster)
        now = _now()
        record = {
            "name": name,
            "location": document.get("location") or LOCATION,
            "tags": document.get("tags") or {},
            "identity": document.get("identity"),
            "properties": {**properties, "computeType": SUPPORTED_TYPE, "properties": cluster},
            "createdOn": existing["createdOn"] if existing else now,
            "modifiedOn": now,
        }
        context.store.put(KIND, name, record)
        # 201 for a replaced cluster too: the recording's second PUT (new idle time) answered 201.
        return json_response(201, body(context, record), _operation_header(context, request))

    def _attach(request: Request, name: str, document: dict[str, Any], properties: dict[str, Any]) -> Response:
        if context.store.get(KIND, name) is not None:
            raise _invalid(f"compute {name} is an AmlCompute cluster; delete it before attaching a cluster as {name}")
        attached = kubernetes_computes.checked_attach(context, name, properties)
        existing = context.store.get(kubernetes_computes.KIND, name)
        record = kubernetes_computes.record(name, document, attached, existing)
        context.store.put(kubernetes_computes.KIND, name, record)
        return json_response(201, body(context, record), _operation_header(context, request))

    def _patch(request: Request) -> Response:
        # ClusterUpdateParameters: {"properties": {"properties": {"scaleSettings": {...}}}}; Azure updates only
        # the scale settings this way, and so does this service.
        record = _found(request)
        name = request.params["name"]
        if "resourceId" in record["properties"]:
            raise _invalid(
                f"compute {name} is an attached Kubernetes cluster: its nodes are the cluster's (scale the AKS/Arc "
                "node pools); an update (PATCH) changes AmlCompute scale settings only"
            )
        document = request.json()
        update = (document.get("properties") or {}).get("properties") if isinstance(document, dict) else None
        if not isinstance(update, dict) or set(update) != {"scaleSettings"}:
            keys = sorted(update) if isinstance(update, dict) else []
            raise _invalid(
                f"compute {name}: an update (PATCH) changes properties.properties.scaleSettings only, got "
                f"{keys or 'nothing'}; PUT the whole cluster to change anything else"
            )
        cluster = record["properties"]["properties"]
        merged = {**cluster["scaleSettings"], **{k: v for k, v in update["scaleSettings"].items() if v is not None}}
        cluster["scaleSettings"] = _check_scale(name, merged)
        record["modifiedOn"] = _now()
        context.store.put(KIND, name, record)
        return json_response(200, body(context, record), _operation_header(context, request))

    def _delete(request: Request) -> Response:
        found = _found(request)
        name = request.params["name"]
        action = request.query.get("underlyingResourceAction", "Delete")
        if "resourceId" in found["properties"]:  # Delete and Detach alike detach: the cluster itself stays
            context.store.delete(kubernetes_computes.KIND, name)
            return Response(202, b"", _operation_header(context, request))
        if action.lower() != "delete":
            raise _invalid(
                f"compute {name}: underlyingResourceAction {action!r} is not supported; an AmlCompute cluster is "
                "deleted (Delete), not detached"
            )
        context.store.delete(KIND, name)
        return Response(202, b"", _operation_header(context, request))

    def _instance_action(action: str) -> Handler:
        def _answer(request: Request) -> Response:
            _found(request)
            raise _invalid(
                f"compute {request.params['name']}: {action} is for compute instances, which the local workspace "
                "service does not run; an AmlCompute cluster scales with its jobs (change its nodes with an update)"
            )

        return _answer

    def _status(request: Request) -> Response:
        if request.params["subscription"].lower() != context.subscription_id.lower():
            raise not_found("subscription", request.params["subscription"])
        operation = context.store.get(OPERATIONS_KIND, request.params["id"])
        if operation is None:
            raise not_found("compute operation", request.params["id"])
        return json_response(200, operation)

    router.add("GET", ROUTE, authenticated(context, _list))
    router.add("GET", ROUTE + "/{name}", authenticated(context, _get))
    router.add("PUT", ROUTE + "/{name}", authenticated(context, _put))
    router.add("PATCH", ROUTE + "/{name}", authenticated(context, _patch))
    router.add("DELETE", ROUTE + "/{name}", authenticated(context, _delete))
    for action in INSTANCE_ACTIONS:
        router.add("POST", ROUTE + "/{name}/" + action, authenticated(context, _instance_action(action)))
    router.add("GET", STATUS_ROUTE, authenticated(context, _status))
