"""Data assets: versions (PUT/GET/list) and containers (GET/list/PUT for archive), as `ml_client.data` uses them.

`data.create_or_update(Data(path=LOCAL, ...))` uploads through the default datastore's blob routes
(`LocalUpload/<hash>/...`, blobs.py), then PUTs `data/{name}/versions/{v}` with `dataType` and a short `dataUri`
(`azureml://datastores/D/paths/P`), which the answer spells in full (`azureml://subscriptions/S/resourcegroups/G/
workspaces/W/datastores/D/paths/P`), as the recording shows. Without a version the SDK GETs the container and
PUTs its `nextVersion` (1 when there is none). `label="latest"` GETs the container for `latestVersion` (the most
recently created version). Archive/restore GETs then PUTs the version (or the container) with `isArchived`;
lists honour `listViewType` (ActiveOnly by default, ArchivedOnly, All).

State: kind "data", key "NAME/VERSION" -> {"name", "version", "properties": {..., "dataUri"}, "createdAt",
"modifiedAt"} (the jobs family resolves data inputs from it); kind "data-containers", key NAME -> the container's
own settable fields (isArchived, description, tags) and createdAt. Only uri_file and uri_folder are accepted:
mltable is refused with a 400 naming it. Shapes from Azure/azure-sdk-assets python/sdk/ml/azure-ai-ml/tests/
recordings/dataset/e2etests/test_data.pyTestDatatest_create_uri_file.json and ...test_data_get_latest_label.json
(trimmed copies: tests/fixtures/recordings/data_create_uri_file.json, data_get_latest_label.json).
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any

from azure_dl.workspace_service import paging
from azure_dl.workspace_service.context import PROVIDER, ServiceContext
from azure_dl.workspace_service.http import ApiError, Request, Response, Router, json_response, not_found
from azure_dl.workspace_service.identity import authenticated
from azure_dl.workspace_service.workspaces import check_scope

KIND = "data"
CONTAINER_KIND = "data-containers"
DATA_TYPES = ("uri_file", "uri_folder")
ROUTE = "/subscriptions/{subscription}/resourceGroups/{group}/providers/" + PROVIDER + "/workspaces/{workspace}/data"
_SHORT_DATASTORE_URI = re.compile(r"^azureml://datastores/(?P<rest>.+)$", re.IGNORECASE)
_VIEWS = {"activeonly": False, "archivedonly": True, "all": None}


def key(name: str, version: str) -> str:
    """The store key of a data version: what a job input `azureml:NAME:VERSION` is resolved from."""
    return f"{name}/{version}"


def _now() -> str:
    return datetime.now(UTC).isoformat()


def full_data_uri(context: ServiceContext, uri: str) -> str:
    """A datastore URI in the long form the service answers (other URIs unchanged)."""
    match = _SHORT_DATASTORE_URI.match(uri)
    if match is None:
        return uri
    return (
        f"azureml://subscriptions/{context.subscription_id}/resourcegroups/{context.resource_group}/"
        f"workspaces/{context.workspace}/datastores/{match.group('rest')}"
    )


def _system_data(created: str, modified: str) -> dict[str, Any]:
    return {"createdAt": created, "createdBy": "azure-dl", "createdByType": "User", "lastModifiedAt": modified}


def version_body(context: ServiceContext, record: dict[str, Any]) -> dict[str, Any]:
    properties = record["properties"]
    return {
        "id": f"{context.workspace_id}/data/{record['name']}/versions/{record['version']}",
        "name": record["version"],
        "type": f"{PROVIDER}/workspaces/data/versions",
        "properties": {
            "description": properties.get("description"),
            "tags": properties.get("tags") or {},
            "properties": properties.get("properties") or {},
            "isArchived": bool(properties.get("isArchived", False)),
            "isAnonymous": bool(properties.get("isAnonymous", False)),
            "autoDeleteSetting": properties.get("autoDeleteSetting"),
            "dataUri": properties["dataUri"],
            "stage": properties.get("stage"),
            "intellectualProperty": None,
            "dataType": properties["dataType"],
        },
        "systemData": _system_data(record["createdAt"], record["modifiedAt"]),
    }


def _versions(context: ServiceContext, name: str) -> list[dict[str, Any]]:
    """The versions of `name`, newest created first."""
    records = [record for record in context.store.list(KIND) if record["name"] == name]
    return sorted(records, key=lambda record: record["createdAt"], reverse=True)


def _archived(record: dict[str, Any]) -> bool:
    return bool(record["properties"].get("isArchived", False))


def _next_version(versions: list[dict[str, Any]]) -> str:
    # As Azure answers: one more than the largest whole-number version, "1" when there is none (e.g. only "foo").
    numbers = [int(record["version"]) for record in versions if record["version"].isdigit()]
    return str(max(numbers, default=0) + 1)


def container_body(context: ServiceContext, name: str, versions: list[dict[str, Any]]) -> dict[str, Any]:
    stored = context.store.get(CONTAINER_KIND, name) or {}
    active = [record for record in versions if not _archived(record)]
    latest = (active or versions)[0]
    modified = max([stored.get("modifiedAt", ""), *(record["modifiedAt"] for record in versions)])
    return {
        "id": f"{context.workspace_id}/data/{name}",
        "name": name,
        "type": f"{PROVIDER}/workspaces/data",
        "properties": {
            "description": stored.get("description"),
            "tags": stored.get("tags"),
            "properties": stored.get("properties"),
            "isArchived": bool(stored.get("isArchived", False)),
            "latestVersion": latest["version"],
            "nextVersion": _next_version(versions),
            "dataType": latest["properties"]["dataType"],
        },
        "systemData": _system_data(stored.get("createdAt", versions[-1]["createdAt"]), modified),
    }


def _view(request: Request) -> bool | None:
    """listViewType as a filter on isArchived: False (ActiveOnly, the default), True (ArchivedOnly), None (All)."""
    view = request.query.get("listViewType", "ActiveOnly")
    if view.lower() not in _VIEWS:
        raise ApiError(400, "UserError", f"listViewType {view!r} is not one of ActiveOnly, ArchivedOnly, All")
    return _VIEWS[view.lower()]


def _checked_properties(name: str, version: str, document: Any) -> dict[str, Any]:
    properties = document.get("properties") if isinstance(document, dict) else None
    if not isinstance(properties, dict) or not isinstance(properties.get("dataUri"), str):
        raise ApiError(400, "UserError", f"data {name}:{version}: the body needs properties.dataUri")
    data_type = properties.get("dataType")
    if data_type not in DATA_TYPES:
        raise ApiError(
            400,
            "UserError",
            f"data {name}:{version}: dataType {data_type!r} is not served by the local workspace "
            f"(it keeps {' and '.join(DATA_TYPES)} data assets; mltable is not implemented)",
        )
    return properties


def register(router: Router, context: ServiceContext) -> None:
    def _get_version(request: Request) -> Response:
        check_scope(context, request)
        name, version = request.params["name"], request.params["version"]
        record = context.store.get(KIND, key(name, version))
        if record is None:
            raise not_found("data version", f"{name}:{version}")
        return json_response(200, version_body(context, record))

    def _put_version(request: Request) -> Response:
        check_scope(context, request)
        name, version = request.params["name"], request.params["version"]
        properties = dict(_checked_properties(name, version, request.json()))
        properties["dataUri"] = full_data_uri(context, properties["dataUri"])
        now = _now()
        existing = context.store.get(KIND, key(name, version))
        record = {
            "name": name,
            "version": version,
            "properties": properties,
            "createdAt": existing["createdAt"] if existing else now,
            "modifiedAt": now,
        }
        context.store.put(KIND, key(name, version), record)
        context.store.put_if_absent(CONTAINER_KIND, name, {"createdAt": now})
        return json_response(200 if existing else 201, version_body(context, record))

    def _list_versions(request: Request) -> Response:
        check_scope(context, request)
        archived = _view(request)
        records = [r for r in _versions(context, request.params["name"]) if archived in (None, _archived(r))]
        shown, next_link = paging.page(context, request, records, lambda r: (r["createdAt"], r["version"]))
        return json_response(200, paging.document([version_body(context, record) for record in shown], next_link))

    def _get_container(request: Request) -> Response:
        check_scope(context, request)
        name = request.params["name"]
        versions = _versions(context, name)
        if not versions:
            raise not_found("data container", name)
        return json_response(200, container_body(context, name, versions))

    def _put_container(request: Request) -> Response:
        # What archive/restore of a whole asset sends: the container's own fields, isArchived among them.
        check_scope(context, request)
        name = request.params["name"]
        versions = _versions(context, name)
        if not versions:
            raise not_found("data container", name)
        document = request.json()
        properties = document.get("properties") if isinstance(document, dict) else None
        if not isinstance(properties, dict):
            raise ApiError(400, "UserError", f"data container {name}: the body needs properties")
        stored = context.store.get(CONTAINER_KIND, name) or {"createdAt": versions[-1]["createdAt"]}
        stored.update({field: properties.get(field) for field in ("description", "tags", "properties")})
        stored.update({"isArchived": bool(properties.get("isArchived", False)), "modifiedAt": _now()})
        context.store.put(CONTAINER_KIND, name, stored)
        return json_response(200, container_body(context, name, versions))

    def _list_containers(request: Request) -> Response:
        check_scope(context, request)
        archived = _view(request)
        names = sorted({record["name"] for record in context.store.list(KIND)})
        bodies = [container_body(context, name, _versions(context, name)) for name in names]
        bodies = [body for body in bodies if archived in (None, body["properties"]["isArchived"])]
        shown, next_link = paging.page(context, request, bodies, lambda body: (body["name"],), descending=False)
        return json_response(200, paging.document(shown, next_link))

    router.add("GET", ROUTE, authenticated(context, _list_containers))
    router.add("GET", ROUTE + "/{name}", authenticated(context, _get_container))
    router.add("PUT", ROUTE + "/{name}", authenticated(context, _put_container))
    router.add("GET", ROUTE + "/{name}/versions", authenticated(context, _list_versions))
    router.add("GET", ROUTE + "/{name}/versions/{version}", authenticated(context, _get_version))
    router.add("PUT", ROUTE + "/{name}/versions/{version}", authenticated(context, _put_version))
