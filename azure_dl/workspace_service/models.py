"""Model containers and versions, as `ml_client.models` uses them (workspace scope, not registries).

What the SDK sends (azure/ai/ml/operations/_model_operations.py, _utils/_asset_utils.py):
- create_or_update: `GET models/{name}/versions?$orderBy=createdtime desc&$top=1` (is the name an evaluator?),
  `GET models/{name}` for `nextVersion` when no version is given, the files to the default datastore under
  LocalUpload/<hash>/<folder> (the blob routes), then `PUT models/{name}/versions/{v}` with `modelUri` =
  azureml://subscriptions/.../datastores/workspaceblobstore/paths/LocalUpload/<hash>/<folder>.
- get (version, or label latest = the versions list above), list (`versions?listViewType=...`, or the containers),
  archive/restore (GET then PUT of the version or container with `isArchived`), download (GET the version, then
  the datastore and the blobs under modelUri's path).
A name with no versions answers 404 to the versions list, as the live service does (the SDK treats it as "none").
Changing an existing version's modelUri is refused with the live service's "Asset paths cannot be updated.".
Shapes: Azure/azure-sdk-assets python/sdk/ml/azure-ai-ml/tests/recordings/model/e2etests/
test_model.pyTestModeltest_crud_file.json and ...test_list_no_name.json (trimmed copies:
tests/fixtures/recordings/model_crud_file.json, model_list_containers.json). Stored as kind "models", key
"NAME/VERSION", and kind "model-containers", key NAME (the container's own archive flag and creation time).
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from azure_dl.workspace_service import datastores, paging
from azure_dl.workspace_service.context import PROVIDER, ServiceContext
from azure_dl.workspace_service.http import ApiError, Request, Response, Router, json_response
from azure_dl.workspace_service.identity import authenticated
from azure_dl.workspace_service.workspaces import check_scope

KIND = "models"
CONTAINER_KIND = "model-containers"
MODELS_ROUTE = (
    "/subscriptions/{subscription}/resourceGroups/{group}/providers/" + PROVIDER + "/workspaces/{workspace}/models"
)
ASSET_PATH_ERROR = "Asset paths cannot be updated."
LIST_VIEWS = ("ActiveOnly", "ArchivedOnly", "All")
# azureml://subscriptions/S/resourcegroups/G/workspaces/W/datastores/D/paths/P (the SDK writes "resourcegroups").
_DATASTORE_URI = re.compile(
    r"^azureml://subscriptions/[^/]+/resourcegroups/[^/]+/workspaces/[^/]+/datastores/(?P<store>[^/]+)/paths/(?P<path>.+)$",
    re.IGNORECASE,
)


class ModelNotFound(ApiError):
    """The live service's 404 for models: UserError with a ModelNotFound detail (the recording's shape)."""

    def __init__(self, message: str) -> None:
        super().__init__(404, "UserError", "The specified resource was not found.")
        self.detail = message

    def response(self) -> Response:
        detail = {"code": "ModelNotFound", "message": self.detail, "details": [], "additionalInfo": []}
        return json_response(
            404, {"error": {"code": self.code, "message": self.message, "details": [detail], "additionalInfo": []}}
        )


def _key(name: str, version: str) -> str:
    return f"{name}/{version}"


def _now() -> str:
    return datetime.now(UTC).isoformat()


def _system_data(created: str, modified: str) -> dict[str, str]:
    return {
        "createdAt": created,
        "createdBy": "azure-dl",
        "createdByType": "User",
        "lastModifiedAt": modified,
        "lastModifiedBy": "azure-dl",
        "lastModifiedByType": "User",
    }


def version_body(context: ServiceContext, record: dict[str, Any]) -> dict[str, Any]:
    properties = record["properties"]
    return {
        "id": f"{context.workspace_id}/models/{record['name']}/versions/{record['version']}",
        "name": record["version"],
        "type": f"{PROVIDER}/workspaces/models/versions",
        "properties": {
            "description": properties.get("description"),
            "tags": properties.get("tags") or {},
            "properties": properties.get("properties") or {},
            "isArchived": bool(properties.get("isArchived", False)),
            "isAnonymous": bool(properties.get("isAnonymous", False)),
            "autoDeleteSetting": properties.get("autoDeleteSetting"),
            "flavors": properties.get("flavors") or {},
            "modelType": properties.get("modelType") or "custom_model",
            "modelUri": properties["modelUri"],
            "jobName": properties.get("jobName"),
            "provisioningState": "Succeeded",
            "stage": properties.get("stage") or "Development",
            "intellectualProperty": None,
        },
        "systemData": _system_data(record["createdAt"], record["modifiedAt"]),
    }


def _version_number(record: dict[str, Any]) -> int:
    return int(record["version"]) if str(record["version"]).isdigit() else 0


def versions_of(context: ServiceContext, name: str) -> list[dict[str, Any]]:
    """Every stored version of model `name`, newest first (creation time, then version number)."""
    records = [record for record in context.store.list(KIND) if record["name"] == name]
    return sorted(records, key=lambda record: (record["createdAt"], _version_number(record)), reverse=True)


def find_version(context: ServiceContext, name: str, version: str) -> dict[str, Any] | None:
    return context.store.get(KIND, _key(name, version))


def register_job_output(
    context: ServiceContext, name: str, output_uri: str, *, job_name: str, model_type: str = "custom_model"
) -> str:
    """Register a job's model output (`azureml://datastores/D/paths/P`) as the next version of `name`.

    What Azure ML does with a pipeline's named custom_model output when the pipeline completes. The modelUri is
    the long form the service gives registered models, so `ml_client.models.download` finds the files.
    """
    short = re.match(r"^azureml://datastores/(?P<store>[^/]+)/paths/(?P<path>.+)$", output_uri)
    model_uri = (
        f"azureml://subscriptions/{context.subscription_id}/resourcegroups/{context.resource_group}"
        f"/workspaces/{context.workspace}/datastores/{short['store']}/paths/{short['path']}"
        if short
        else output_uri
    )
    numbers = [_version_number(record) for record in versions_of(context, name)]
    version = str(max(numbers, default=0) + 1)
    now = _now()
    record = {
        "name": name,
        "version": version,
        "properties": {"modelUri": model_uri, "modelType": model_type, "jobName": job_name, "tags": {}},
        "createdAt": now,
        "modifiedAt": now,
    }
    context.store.put(KIND, _key(name, version), record)
    context.store.put_if_absent(CONTAINER_KIND, name, {"name": name, "createdAt": now, "modifiedAt": now})
    return version


def container_body(context: ServiceContext, name: str) -> dict[str, Any]:
    versions = versions_of(context, name)
    container = context.store.get(CONTAINER_KIND, name) or {}
    numbers = [_version_number(record) for record in versions]
    latest = versions[0]["version"] if versions else None
    return {
        "id": f"{context.workspace_id}/models/{name}",
        "name": name,
        "type": f"{PROVIDER}/workspaces/models",
        "properties": {
            "description": container.get("description"),
            "tags": container.get("tags") or {},
            "properties": container.get("properties") or {},
            "isArchived": bool(container.get("isArchived", False)),
            "latestVersion": latest,
            "nextVersion": str(max(numbers, default=0) + 1),
            "provisioningState": "Succeeded",
        },
        "systemData": _system_data(
            container.get("createdAt") or (versions[-1]["createdAt"] if versions else _now()),
            container.get("modifiedAt") or (versions[0]["modifiedAt"] if versions else _now()),
        ),
    }


def local_files(context: ServiceContext, model_uri: str) -> Path | None:
    """Where a datastore modelUri's files lie under DIR/blobs (None for other URIs or a datastore not served)."""
    match = _DATASTORE_URI.match(model_uri.rstrip("/"))
    if match is None:
        return None
    store = context.store.get(datastores.KIND, match.group("store"))
    if store is None:
        return None
    root = (context.data_dir / "blobs" / store["containerName"]).resolve()
    path = (root / match.group("path")).resolve()
    return path if path.is_relative_to(root) else None


def _list_view(request: Request) -> str:
    view = request.query.get("listViewType") or "ActiveOnly"
    if view not in LIST_VIEWS:
        raise ApiError(400, "UserError", f"listViewType {view!r} is not one of {', '.join(LIST_VIEWS)}")
    return view


def _visible(archived: bool, view: str) -> bool:
    return view == "All" or (view == "ArchivedOnly") == archived


def _check_uri(context: ServiceContext, name: str, version: str, model_uri: str) -> None:
    """A datastore path this service holds must name uploaded files: a PUT before the upload is an error, not a
    version that cannot be downloaded or deployed."""
    if not _DATASTORE_URI.match(model_uri.rstrip("/")):
        return
    files = local_files(context, model_uri)
    if files is None or not files.exists():
        raise ApiError(
            400,
            "UserError",
            f"model {name}:{version}: modelUri {model_uri} names no uploaded files in this workspace's datastores",
        )


def register(router: Router, context: ServiceContext) -> None:
    def _version_record(request: Request) -> tuple[str, str, dict[str, Any]]:
        check_scope(context, request)
        name, version = request.params["name"], request.params["version"]
        record = find_version(context, name, version)
        if record is None:
            raise ModelNotFound(f"Model container with name: {name} version: {version} not found.")
        return name, version, record

    def _get_version(request: Request) -> Response:
        return json_response(200, version_body(context, _version_record(request)[2]))

    def _put_version(request: Request) -> Response:
        check_scope(context, request)
        name, version = request.params["name"], request.params["version"]
        document = request.json()
        properties = document.get("properties") if isinstance(document, dict) else None
        if not isinstance(properties, dict) or not properties.get("modelUri"):
            raise ApiError(400, "UserError", f"model {name}:{version}: the body needs properties.modelUri")
        existing = find_version(context, name, version)
        if (
            existing is not None
            and existing["properties"]["modelUri"].rstrip("/").lower()
            != str(properties["modelUri"]).rstrip("/").lower()
        ):
            raise ApiError(400, "UserError", ASSET_PATH_ERROR)
        if existing is None:
            _check_uri(context, name, version, str(properties["modelUri"]))
        now = _now()
        if existing is not None:  # keep the path as first written (the SDK lower-cases "resourcegroups")
            properties = {**properties, "modelUri": existing["properties"]["modelUri"]}
        record = {
            "name": name,
            "version": version,
            "properties": properties,
            "createdAt": existing["createdAt"] if existing else now,
            "modifiedAt": now,
        }
        context.store.put(KIND, _key(name, version), record)
        context.store.put_if_absent(CONTAINER_KIND, name, {"name": name, "createdAt": now, "modifiedAt": now})
        return json_response(200 if existing else 201, version_body(context, record))

    def _delete_version(request: Request) -> Response:
        name, version, _record = _version_record(request)
        context.store.delete(KIND, _key(name, version))
        return Response(200)

    def _list_versions(request: Request) -> Response:
        check_scope(context, request)
        name = request.params["name"]
        records = versions_of(context, name)
        if not records:
            raise ModelNotFound(f"Model container with name: {name} not found.")
        order = (request.query.get("$orderBy") or "createdtime desc").lower().split()
        if order and order[0] not in ("createdtime", "createdat"):
            raise ApiError(400, "UserError", f"$orderBy {request.query['$orderBy']!r}: only createdtime is served")
        view = _list_view(request)
        records = [r for r in records if _visible(bool(r["properties"].get("isArchived")), view)]
        if request.query.get("version"):
            records = [r for r in records if r["version"] == request.query["version"]]
        if request.query.get("stage"):  # the SDK's models.list(name, stage=...)
            records = [r for r in records if (r["properties"].get("stage") or "Development") == request.query["stage"]]
        newest_first = not (len(order) > 1 and order[1] == "asc")
        shown, next_link = paging.page(
            context, request, records, lambda r: (r["createdAt"], _version_number(r)), descending=newest_first
        )
        return json_response(200, paging.document([version_body(context, record) for record in shown], next_link))

    def _container(request: Request) -> tuple[str, dict[str, Any]]:
        check_scope(context, request)
        name = request.params["name"]
        if not versions_of(context, name):
            raise ModelNotFound(f"Model container with name: {name} not found.")
        return name, container_body(context, name)

    def _get_container(request: Request) -> Response:
        return json_response(200, _container(request)[1])

    def _put_container(request: Request) -> Response:
        # The SDK PUTs a container only to archive or restore it; a container is born with its first version.
        name, _body = _container(request)
        document = request.json()
        properties = document.get("properties") if isinstance(document, dict) else None
        if not isinstance(properties, dict):
            raise ApiError(400, "UserError", f"model container {name}: the body needs properties")
        stored = context.store.get(CONTAINER_KIND, name) or {"name": name, "createdAt": _now()}
        stored.update(
            {
                "isArchived": bool(properties.get("isArchived", False)),
                "description": properties.get("description"),
                "tags": properties.get("tags") or {},
                "properties": properties.get("properties") or {},
                "modifiedAt": _now(),
            }
        )
        context.store.put(CONTAINER_KIND, name, stored)
        return json_response(200, container_body(context, name))

    def _list_containers(request: Request) -> Response:
        check_scope(context, request)
        view = _list_view(request)
        names = sorted({record["name"] for record in context.store.list(KIND)})
        bodies = [container_body(context, name) for name in names]
        bodies = [body for body in bodies if _visible(body["properties"]["isArchived"], view)]
        shown, next_link = paging.page(context, request, bodies, lambda body: (body["name"],), descending=False)
        return json_response(200, paging.document(shown, next_link))

    router.add("GET", MODELS_ROUTE, authenticated(context, _list_containers))
    router.add("GET", MODELS_ROUTE + "/{name}", authenticated(context, _get_container))
    router.add("PUT", MODELS_ROUTE + "/{name}", authenticated(context, _put_container))
    router.add("GET", MODELS_ROUTE + "/{name}/versions", authenticated(context, _list_versions))
    router.add("GET", MODELS_ROUTE + "/{name}/versions/{version}", authenticated(context, _get_version))
    router.add("PUT", MODELS_ROUTE + "/{name}/versions/{version}", authenticated(context, _put_version))
    router.add("DELETE", MODELS_ROUTE + "/{name}/versions/{version}", authenticated(context, _delete_version))
