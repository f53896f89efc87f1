"""Environment versions: registered ones (PUT/GET/list) and curated `AzureML-*` names, recorded, never built.

Jobs run in the service's own Python environment whatever environment they name, so an environment here is a
record. A curated name (prefix `AzureML-`) resolves at any version; `@latest` (the SDK lists
`versions?$orderBy=createdtime desc&$top=1`) answers version 1 unless versions of it were registered here: the
service does not know Azure's current curated version numbers and does not guess them. The curated body follows
Azure/azure-sdk-assets python/sdk/ml/azure-ai-ml/tests/recordings/environment/e2etests/
test_environment.pyTestEnvironmenttest_environment_get.json (trimmed copy:
tests/fixtures/recordings/environment_get_curated.json).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from azure_dl.workspace_service import paging
from azure_dl.workspace_service.context import PROVIDER, ServiceContext
from azure_dl.workspace_service.http import ApiError, Request, Response, Router, json_response, not_found
from azure_dl.workspace_service.identity import authenticated
from azure_dl.workspace_service.workspaces import check_scope

KIND = "environments"
CURATED_PREFIX = "AzureML-"
CURATED_CREATED_AT = "2021-12-15T01:34:25.555093+00:00"  # a fixed time, so curated bodies are stable
# What makes an environment version what it is: a PUT of an existing version that changes one is a 409.
DEFINING = ("image", "build", "condaFile", "osType", "inferenceConfig")
ROUTE = (
    "/subscriptions/{subscription}/resourceGroups/{group}/providers/"
    + PROVIDER
    + "/workspaces/{workspace}/environments/{name}/versions"
)


def _key(name: str, version: str) -> str:
    return f"{name}/{version}"


def _curated(name: str, version: str) -> dict[str, Any]:
    return {
        "name": name,
        "version": version,
        "properties": {
            "description": "Curated environment stand-in: jobs run in the local workspace service's Python.",
            "tags": {},
            "properties": {"azureml.labels": ""},
            "environmentType": "Curated",
            "condaFile": "",
            "osType": "Linux",
            "autoRebuild": "OnBaseImageUpdate",
            "stage": "Development",
        },
        "createdAt": CURATED_CREATED_AT,
        "modifiedAt": CURATED_CREATED_AT,
        "createdBy": "Microsoft",
    }


def body(context: ServiceContext, record: dict[str, Any]) -> dict[str, Any]:
    properties = dict(record["properties"])
    properties.setdefault("description", None)
    properties.setdefault("tags", {})
    properties.setdefault("properties", {})
    properties.update(
        {
            "isArchived": bool(properties.get("isArchived", False)),
            "isAnonymous": bool(properties.get("isAnonymous", False)),
            "autoDeleteSetting": properties.get("autoDeleteSetting"),
            "environmentType": properties.get("environmentType", "UserCreated"),
            "osType": properties.get("osType", "Linux"),
            "autoRebuild": properties.get("autoRebuild", "Disabled"),
            "provisioningState": "Succeeded",
            "intellectualProperty": None,
        }
    )
    created_by = record.get("createdBy", "azure-dl")
    return {
        "id": f"{context.workspace_id}/environments/{record['name']}/versions/{record['version']}",
        "name": record["version"],
        "type": f"{PROVIDER}/workspaces/environments/versions",
        "properties": properties,
        "systemData": {
            "createdAt": record["createdAt"],
            "createdBy": created_by,
            "createdByType": "User",
            "lastModifiedAt": record["modifiedAt"],
            "lastModifiedBy": created_by,
            "lastModifiedByType": "User",
        },
    }


def _find(context: ServiceContext, name: str, version: str) -> dict[str, Any] | None:
    record = context.store.get(KIND, _key(name, version))
    if record is None and name.startswith(CURATED_PREFIX) and version.isdigit() and int(version) > 0:
        return _curated(name, version)
    return record


def _versions(context: ServiceContext, name: str) -> list[dict[str, Any]]:
    records = [record for record in context.store.list(KIND) if record["name"] == name]
    if not records and name.startswith(CURATED_PREFIX):
        records = [_curated(name, "1")]
    return sorted(records, key=lambda record: record["createdAt"], reverse=True)


def _container(context: ServiceContext, name: str, versions: list[dict[str, Any]]) -> dict[str, Any]:
    numbers = [int(record["version"]) for record in versions if str(record["version"]).isdigit()]
    latest = max(versions, key=lambda record: record["createdAt"])
    return {
        "id": f"{context.workspace_id}/environments/{name}",
        "name": name,
        "type": f"{PROVIDER}/workspaces/environments",
        "properties": {
            "description": None,
            "tags": {},
            "properties": {},
            "isArchived": False,
            "latestVersion": latest["version"],
            "nextVersion": str(max(numbers, default=0) + 1),
        },
    }


def register(router: Router, context: ServiceContext) -> None:
    def _get(request: Request) -> Response:
        check_scope(context, request)
        name, version = request.params["name"], request.params["version"]
        record = _find(context, name, version)
        if record is None:
            raise not_found("environment version", f"{name}:{version}")
        return json_response(200, body(context, record))

    def _put(request: Request) -> Response:
        check_scope(context, request)
        name, version = request.params["name"], request.params["version"]
        if name.startswith(CURATED_PREFIX):
            raise ApiError(
                400, "UserError", f"environment {name}: the prefix {CURATED_PREFIX} is reserved for curated ones"
            )
        document = request.json()
        properties = document.get("properties") if isinstance(document, dict) else None
        if not isinstance(properties, dict) or not (properties.get("image") or properties.get("build")):
            raise ApiError(400, "UserError", f"environment {name}:{version}: the body needs properties.image or .build")
        now = datetime.now(UTC).isoformat()
        existing = context.store.get(KIND, _key(name, version))
        if existing is not None:
            changed = [key for key in DEFINING if existing["properties"].get(key) != properties.get(key)]
            if changed:
                # Versions are immutable in Azure ML: the SDK, creating one without a version, PUTs the latest
                # version first and takes this 409 as "make the next one".
                raise ApiError(
                    409,
                    "Conflict",
                    f"environment {name}:{version} already exists with a different {', '.join(changed)}; "
                    "versions cannot change: create a new version",
                )
        record = {
            "name": name,
            "version": version,
            "properties": properties,
            "createdAt": existing["createdAt"] if existing else now,
            "modifiedAt": now,
        }
        context.store.put(KIND, _key(name, version), record)
        return json_response(200 if existing else 201, body(context, record))

    def _list(request: Request) -> Response:
        check_scope(context, request)
        records = _versions(context, request.params["name"])
        shown, next_link = paging.page(context, request, records, lambda r: (r["createdAt"], r["version"]))
        return json_response(200, paging.document([body(context, record) for record in shown], next_link))

    def _get_container(request: Request) -> Response:
        check_scope(context, request)
        name = request.params["name"]
        versions = [record for record in context.store.list(KIND) if record["name"] == name]
        if not versions:
            raise not_found("environment", name)
        return json_response(200, _container(context, name, versions))

    def _list_containers(request: Request) -> Response:
        # `environments.list()`: the registered environments (curated ones live in the azureml registry:
        # registries.py). Sorted by name, a page at a time.
        check_scope(context, request)
        records = context.store.list(KIND)
        names = sorted({record["name"] for record in records})
        shown, next_link = paging.page(context, request, names, lambda name: (name,), descending=False)
        bodies = [_container(context, name, [r for r in records if r["name"] == name]) for name in shown]
        return json_response(200, paging.document(bodies, next_link))

    router.add("GET", ROUTE.removesuffix("/{name}/versions"), authenticated(context, _list_containers))
    router.add("GET", ROUTE.removesuffix("/versions"), authenticated(context, _get_container))
    router.add("GET", ROUTE, authenticated(context, _list))
    router.add("GET", ROUTE + "/{version}", authenticated(context, _get))
    router.add("PUT", ROUTE + "/{version}", authenticated(context, _put))
