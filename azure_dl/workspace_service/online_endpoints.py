"""Managed online endpoints as records: PUT/GET/LIST/DELETE (long-running, see operations.py), listKeys,
regenerateKeys, token, and the traffic and mirror traffic in the endpoint's body.

What `ml_client.online_endpoints` sends (azure/ai/ml/operations/_online_endpoint_operations.py): a full PUT for
create and for every update (traffic included: zero shares are stripped), GET + a list of the endpoint's
deployments for get, DELETE, `POST listKeys` (authMode Key), `POST token` (AMLToken), `POST regenerateKeys` with
`keyType` and, oddly, `keyValue` = the current key: a key equal to the current one (or none) gets a new random
value. The PUT's answer follows the recording (tests/fixtures/recordings/online_endpoint_create.json): 201 for a
new endpoint, 200 for an update, `provisioningState` "Creating"/"Updating" in that answer and "Succeeded" once the
operation is polled. The rules the live service applies and this one keeps: traffic and mirror traffic name
existing deployments, traffic shares are 0-100 and add up to 100 (or 0 when nothing is served), a mirror share is
at most 50 and goes to a deployment without live traffic. A Kubernetes endpoint (`properties.compute`) must name an
attached Kubernetes compute (kubernetes_endpoints.py).
Deployments are kept beside their endpoint (kind "online-deployments", key "ENDPOINT/DEPLOYMENT";
online_deployments.py); deleting an endpoint deletes them and stops their processes. Endpoint records: kind
"online-endpoints", key NAME.
"""

from __future__ import annotations

import re
import secrets
import time
from datetime import UTC, datetime
from typing import Any

from azure_dl.workspace_service import deployment_processes, kubernetes_endpoints, operations
from azure_dl.workspace_service.context import LOCATION, PROVIDER, ServiceContext
from azure_dl.workspace_service.http import ApiError, Request, Response, Router, json_response, not_found
from azure_dl.workspace_service.identity import PRINCIPAL_ID, TENANT_ID, authenticated, issue_token
from azure_dl.workspace_service.workspaces import check_scope

KIND = "online-endpoints"
DEPLOYMENT_KIND = "online-deployments"
ROUTE = (
    "/subscriptions/{subscription}/resourceGroups/{group}/providers/"
    + PROVIDER
    + "/workspaces/{workspace}/onlineEndpoints"
)
AUTH_MODES = {"key": "Key", "amltoken": "AMLToken", "aadtoken": "AADToken"}
SCORING_PREFIX = "/inference"
TOKEN_LIFETIME_S = 3600
MAX_MIRROR_PERCENT = 50
# Azure's rule for endpoint names: 3-32 characters, a letter first, then letters, digits and '-'.
_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9-]{2,31}$")


def _now() -> str:
    return datetime.now(UTC).isoformat()


def scoring_uri(context: ServiceContext, name: str) -> str:
    """Where endpoint `name` is scored: under the service's own address (scoring.py answers there)."""
    return f"{context.base_url}{SCORING_PREFIX}/{name}/score"


def swagger_uri(context: ServiceContext, name: str) -> str:
    return f"{context.base_url}{SCORING_PREFIX}/{name}/swagger.json"


def token_audience(context: ServiceContext, name: str) -> str:
    """The `aud` of the tokens POST .../token hands out for endpoint `name` (scoring.py checks it)."""
    return scoring_uri(context, name)


def resource_url(context: ServiceContext, name: str, deployment: str | None = None) -> str:
    path = f"{context.workspace_id}/onlineEndpoints/{name}"
    if deployment is not None:
        path += f"/deployments/{deployment}"
    return f"{context.base_url}{path}?api-version={operations.API_VERSION}"


def deployments_of(context: ServiceContext, endpoint: str) -> list[dict[str, Any]]:
    return [record for record in context.store.list(DEPLOYMENT_KIND) if record["endpoint"] == endpoint]


def find(context: ServiceContext, name: str) -> dict[str, Any]:
    record = context.store.get(KIND, name)
    if record is None:
        raise not_found("online endpoint", name)
    return record


def body(context: ServiceContext, record: dict[str, Any], state: str = "Succeeded") -> dict[str, Any]:
    name = record["name"]
    endpoint_id = f"{context.workspace_id}/onlineEndpoints/{name}"
    return {
        "id": endpoint_id,
        "name": name,
        "type": f"{PROVIDER}/workspaces/onlineEndpoints",
        "properties": {
            "description": record.get("description"),
            "properties": {**(record.get("properties") or {}), "azureml.onlineendpointid": endpoint_id.lower()},
            "scoringUri": scoring_uri(context, name),
            "swaggerUri": swagger_uri(context, name),
            "authMode": record["authMode"],
            "provisioningState": state,
            "compute": record.get("compute"),
            "traffic": record.get("traffic") or {},
            "mirrorTraffic": record.get("mirrorTraffic") or {},
            "publicNetworkAccess": record.get("publicNetworkAccess") or "Enabled",
        },
        "systemData": {
            "createdAt": record["createdAt"],
            "createdBy": "azure-dl",
            "lastModifiedAt": record["modifiedAt"],
        },
        "tags": record.get("tags") or {},
        "location": LOCATION,
        "kind": "K8S" if record.get("compute") else "Managed",
        "identity": {"type": "SystemAssigned", "principalId": PRINCIPAL_ID, "tenantId": TENANT_ID},
    }


def _shares(name: str, field: str, value: Any) -> dict[str, int]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ApiError(400, "BadArgument", f"endpoint {name}: properties.{field} must be a map deployment -> percent")
    shares: dict[str, int] = {}
    for deployment, percent in value.items():
        if not isinstance(percent, int) or isinstance(percent, bool) or not 0 <= percent <= 100:
            raise ApiError(
                400, "BadArgument", f"endpoint {name}: {field} of {deployment} is {percent!r}; give 0 to 100"
            )
        if percent:
            shares[str(deployment)] = percent
    return shares


def check_traffic(context: ServiceContext, name: str, traffic: dict[str, int], mirror: dict[str, int]) -> None:
    """The live service's rules for the traffic and mirror traffic of endpoint `name` (see the module docstring)."""
    known = {record["name"] for record in deployments_of(context, name)}
    for field, shares in (("traffic", traffic), ("mirrorTraffic", mirror)):
        unknown = sorted(set(shares) - known)
        if unknown:
            raise ApiError(
                400,
                "BadArgument",
                f"endpoint {name}: {field} names deployment(s) {', '.join(unknown)} that do not exist "
                f"(deployments: {', '.join(sorted(known)) or 'none'})",
            )
    total = sum(traffic.values())
    if total not in (0, 100):
        raise ApiError(400, "BadArgument", f"endpoint {name}: traffic adds up to {total}; it must add up to 100")
    for deployment, percent in mirror.items():
        if percent > MAX_MIRROR_PERCENT:
            raise ApiError(
                400, "BadArgument", f"endpoint {name}: mirror traffic to {deployment} is {percent}; at most 50"
            )
        if traffic.get(deployment):
            raise ApiError(
                400,
                "BadArgument",
                f"endpoint {name}: deployment {deployment} gets live traffic and cannot also get mirror traffic",
            )


def _key() -> str:
    return secrets.token_urlsafe(24)


def register(router: Router, context: ServiceContext) -> None:
    def _record(request: Request) -> dict[str, Any]:
        check_scope(context, request)
        return find(context, request.params["name"])

    def _get(request: Request) -> Response:
        return json_response(200, body(context, _record(request)))

    def _list(request: Request) -> Response:
        check_scope(context, request)
        records = context.store.list(KIND)
        if request.query.get("name"):
            records = [record for record in records if record["name"] == request.query["name"]]
        return json_response(200, {"value": [body(context, record) for record in records]})

    def _put(request: Request) -> Response:
        check_scope(context, request)
        name = request.params["name"]
        if not _NAME.match(name):
            raise ApiError(
                400,
                "BadArgument",
                f"online endpoint name {name!r}: use 3-32 letters, digits and '-', starting with a letter",
            )
        document = request.json()
        properties = document.get("properties") if isinstance(document, dict) else None
        if not isinstance(properties, dict):
            raise ApiError(400, "BadArgument", f"online endpoint {name}: the body needs properties")
        auth_mode = AUTH_MODES.get(str(properties.get("authMode") or "Key").lower())
        if auth_mode is None:
            raise ApiError(
                400,
                "BadArgument",
                f"online endpoint {name}: authMode {properties.get('authMode')!r} is not one of "
                + ", ".join(AUTH_MODES.values()),
            )
        traffic = _shares(name, "traffic", properties.get("traffic"))
        mirror = _shares(name, "mirrorTraffic", properties.get("mirrorTraffic"))
        check_traffic(context, name, traffic, mirror)
        existing = context.store.get(KIND, name)
        compute = kubernetes_endpoints.endpoint_compute(context, name, properties.get("compute"), existing)
        now = _now()
        record = {
            "name": name,
            "compute": compute,
            "authMode": auth_mode,
            "description": properties.get("description"),
            "properties": properties.get("properties") or {},
            "publicNetworkAccess": properties.get("publicNetworkAccess") or "Enabled",
            "traffic": traffic,
            "mirrorTraffic": mirror,
            "tags": document.get("tags") or {},
            "keys": existing["keys"] if existing else {"primaryKey": _key(), "secondaryKey": _key()},
            "createdAt": existing["createdAt"] if existing else now,
            "modifiedAt": now,
        }
        context.store.put(KIND, name, record)
        headers = operations.finished(context, resource_url(context, name))
        state = "Updating" if existing else "Creating"
        return json_response(200 if existing else 201, body(context, record, state), headers)

    def _delete(request: Request) -> Response:
        record = _record(request)
        name = record["name"]
        for deployment in deployments_of(context, name):
            context.store.delete(DEPLOYMENT_KIND, f"{name}/{deployment['name']}")
            deployment_processes.of(context).stop_one(name, deployment["name"])
        context.store.delete(KIND, name)
        headers = operations.result_location(context, operations.finished(context, resource_url(context, name)))
        return Response(202, b"", headers)

    def _list_keys(request: Request) -> Response:
        record = _record(request)
        if record["authMode"] != "Key":
            raise ApiError(
                400,
                "BadArgument",
                f"online endpoint {record['name']} uses {record['authMode']} authentication and has no keys; "
                "ask for a token (POST .../token) instead",
            )
        return json_response(200, record["keys"])

    def _regenerate_keys(request: Request) -> Response:
        record = _record(request)
        if record["authMode"] != "Key":
            raise ApiError(
                400, "BadArgument", f"online endpoint {record['name']} uses {record['authMode']}: it has no keys"
            )
        document = request.json()
        key_type = str(document.get("keyType") or "") if isinstance(document, dict) else ""
        field = {"primary": "primaryKey", "secondary": "secondaryKey"}.get(key_type.lower())
        if field is None:
            raise ApiError(400, "BadArgument", f"keyType {key_type!r}: give Primary or Secondary")
        wanted = document.get("keyValue")
        # The SDK sends the current key as keyValue; "regenerate" must still give a new one.
        record["keys"][field] = wanted if wanted and wanted != record["keys"][field] else _key()
        record["modifiedAt"] = _now()
        context.store.put(KIND, record["name"], record)
        headers = operations.finished(context, resource_url(context, record["name"]))
        return Response(202, b"", operations.result_location(context, headers))

    def _token(request: Request) -> Response:
        record = _record(request)
        if record["authMode"] != "AMLToken":
            raise ApiError(
                400,
                "BadArgument",
                f"online endpoint {record['name']} uses {record['authMode']} authentication; tokens are for "
                "AMLToken endpoints",
            )
        token, expires = issue_token(context, token_audience(context, record["name"]))
        now = int(time.time())
        return json_response(
            200,
            {
                "accessToken": token,
                "expiryTimeUtc": expires,
                "refreshAfterTimeUtc": now + TOKEN_LIFETIME_S // 2,
                "tokenType": "Bearer",
            },
        )

    router.add("GET", ROUTE, authenticated(context, _list))
    router.add("GET", ROUTE + "/{name}", authenticated(context, _get))
    router.add("PUT", ROUTE + "/{name}", authenticated(context, _put))
    router.add("DELETE", ROUTE + "/{name}", authenticated(context, _delete))
    router.add("POST", ROUTE + "/{name}/listKeys", authenticated(context, _list_keys))
    router.add("POST", ROUTE + "/{name}/regenerateKeys", authenticated(context, _regenerate_keys))
    router.add("POST", ROUTE + "/{name}/token", authenticated(context, _token))
