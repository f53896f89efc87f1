"""Component versions: PUT/GET `components/{name}/versions/{version}`, the version list and the container.

A pipeline job's steps name their components by id, so the SDK creates each step's component first: an inline or
file component becomes an *anonymous* one (`components/azureml_anonymous/versions/{hash}`, `isAnonymous: true`),
a registered one keeps its name and version. The service keeps the `componentSpec` as sent (its command, code,
environment, inputs and outputs are what a pipeline step runs) and answers in the recorded shape: Azure/
azure-sdk-assets python/sdk/ml/azure-ai-ml/tests/recordings/component/e2etests/
test_component.pyTestComponenttest_anonymous_component_reuse.json (trimmed copy:
tests/fixtures/recordings/component_anonymous_create.json).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from azure_dl.workspace_service import paging
from azure_dl.workspace_service.context import PROVIDER, ServiceContext
from azure_dl.workspace_service.http import ApiError, Request, Response, Router, json_response, not_found
from azure_dl.workspace_service.identity import authenticated
from azure_dl.workspace_service.workspaces import check_scope

KIND = "components"
ANONYMOUS = "azureml_anonymous"
SUPPORTED_TYPES = ("command",)
CONTAINER_ROUTE = (
    "/subscriptions/{subscription}/resourceGroups/{group}/providers/"
    + PROVIDER
    + "/workspaces/{workspace}/components/{name}"
)
ROUTE = CONTAINER_ROUTE + "/versions"


def key(name: str, version: str) -> str:
    return f"{name}/{version}"


def find(context: ServiceContext, component_id: str) -> dict[str, Any] | None:
    """The stored component an ARM id (`.../components/NAME/versions/VERSION`) names, or None."""
    parts = component_id.rstrip("/").split("/")
    if len(parts) < 4 or parts[-2] != "versions" or parts[-4] != "components":
        return None
    return context.store.get(KIND, key(parts[-3], parts[-1]))


def body(context: ServiceContext, record: dict[str, Any]) -> dict[str, Any]:
    properties = record["properties"]
    return {
        "id": f"{context.workspace_id}/components/{record['name']}/versions/{record['version']}",
        "name": record["version"],
        "type": f"{PROVIDER}/workspaces/components/versions",
        "properties": {
            "description": properties.get("description"),
            "tags": properties.get("tags") or {},
            "properties": properties.get("properties") or {},
            "isArchived": bool(properties.get("isArchived", False)),
            "isAnonymous": bool(properties.get("isAnonymous", False)),
            "autoDeleteSetting": None,
            "componentSpec": properties["componentSpec"],
            "provisioningState": "Succeeded",
            "stage": properties.get("stage") or "Development",
        },
        "systemData": {
            "createdAt": record["createdAt"],
            "createdBy": "azure-dl",
            "createdByType": "User",
            "lastModifiedAt": record["modifiedAt"],
            "lastModifiedBy": "azure-dl",
            "lastModifiedByType": "User",
        },
    }


def _container_body(context: ServiceContext, name: str, versions: list[dict[str, Any]]) -> dict[str, Any]:
    newest = max(versions, key=lambda record: record["createdAt"])
    return {
        "id": f"{context.workspace_id}/components/{name}",
        "name": name,
        "type": f"{PROVIDER}/workspaces/components",
        "properties": {
            "description": None,
            "tags": {},
            "properties": {},
            "isArchived": False,
            "latestVersion": newest["version"],
            "nextVersion": str(len(versions) + 1),
            "provisioningState": "Succeeded",
        },
        "systemData": {"createdAt": min(r["createdAt"] for r in versions), "lastModifiedAt": newest["modifiedAt"]},
    }


def _checked_spec(name: str, version: str, document: Any) -> dict[str, Any]:
    properties = document.get("properties") if isinstance(document, dict) else None
    spec = properties.get("componentSpec") if isinstance(properties, dict) else None
    if not isinstance(properties, dict) or not isinstance(spec, dict):
        raise ApiError(400, "UserError", f"component {name}:{version}: the body needs properties.componentSpec")
    kind = spec.get("type")
    if kind not in SUPPORTED_TYPES:
        raise ApiError(
            501,
            "NotImplemented",
            f"component {name}:{version} is of type {kind!r}; the local workspace service runs command components "
            "only (pipeline, parallel, spark, sweep and data-transfer components are not implemented)",
        )
    if not isinstance(spec.get("command"), str) or not spec["command"].strip():
        raise ApiError(400, "UserError", f"component {name}:{version}: componentSpec.command is empty")
    return properties


def register(router: Router, context: ServiceContext) -> None:
    def _get(request: Request) -> Response:
        check_scope(context, request)
        name, version = request.params["name"], request.params["version"]
        record = context.store.get(KIND, key(name, version))
        if record is None:
            raise not_found("component version", f"{name}:{version}")
        return json_response(200, body(context, record))

    def _put(request: Request) -> Response:
        check_scope(context, request)
        name, version = request.params["name"], request.params["version"]
        properties = dict(_checked_spec(name, version, request.json()))
        properties["componentSpec"] = {k: v for k, v in properties["componentSpec"].items() if k != "_source"}
        now = datetime.now(UTC).isoformat()
        existing = context.store.get(KIND, key(name, version))
        record = {
            "name": name,
            "version": version,
            "properties": properties,
            "createdAt": existing["createdAt"] if existing else now,
            "modifiedAt": now,
        }
        context.store.put(KIND, key(name, version), record)
        return json_response(200 if existing else 201, body(context, record))

    def _versions(name: str) -> list[dict[str, Any]]:
        records = [record for record in context.store.list(KIND) if record["name"] == name]
        return sorted(records, key=lambda record: record["createdAt"], reverse=True)

    def _list(request: Request) -> Response:
        check_scope(context, request)
        records = _versions(request.params["name"])
        shown, next_link = paging.page(context, request, records, lambda r: (r["createdAt"], r["version"]))
        return json_response(200, paging.document([body(context, record) for record in shown], next_link))

    def _container(request: Request) -> Response:
        check_scope(context, request)
        name = request.params["name"]
        versions = _versions(name)
        if not versions:
            raise not_found("component", name)
        return json_response(200, _container_body(context, name, versions))

    router.add("GET", ROUTE, authenticated(context, _list))
    router.add("GET", ROUTE + "/{version}", authenticated(context, _get))
    router.add("PUT", ROUTE + "/{version}", authenticated(context, _put))
    router.add("GET", CONTAINER_ROUTE, authenticated(context, _container))
