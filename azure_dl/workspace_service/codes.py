"""Code asset versions: PUT/GET codes/{name}/versions/{version}, and the list by name or by content hash.

The SDK first asks `GET codes/{name}/versions?hash=H&hashVersion=202208` and, when any code version of the
workspace has that hash (whatever its name), reuses it instead of uploading; otherwise it uploads the snapshot to
the default datastore and PUTs the version with its `codeUri`. Shapes from Azure/azure-sdk-assets
python/sdk/ml/azure-ai-ml/tests/recordings/code_asset/e2etests/test_code.pyTestCodetest_create_and_get.json
(trimmed copy: tests/fixtures/recordings/code_create_and_get.json).
"""

from __future__ import annotations

import secrets
import uuid
from datetime import UTC, datetime
from typing import Any

from azure_dl.workspace_service.context import PROVIDER, ServiceContext
from azure_dl.workspace_service.datastores import account_url
from azure_dl.workspace_service.http import ApiError, Request, Response, Router, json_response, not_found
from azure_dl.workspace_service.identity import authenticated
from azure_dl.workspace_service.workspaces import STORAGE_ACCOUNT, check_scope

KIND = "codes"
ROUTE = (
    "/subscriptions/{subscription}/resourceGroups/{group}/providers/"
    + PROVIDER
    + "/workspaces/{workspace}/codes/{name}/versions"
)


def _key(name: str, version: str) -> str:
    return f"{name}/{version}"


def body(context: ServiceContext, record: dict[str, Any]) -> dict[str, Any]:
    properties = record["properties"]
    return {
        "id": f"{context.workspace_id}/codes/{record['name']}/versions/{record['version']}",
        "name": record["version"],
        "type": f"{PROVIDER}/workspaces/codes/versions",
        "properties": {
            "description": properties.get("description"),
            "tags": properties.get("tags") or {},
            "properties": properties.get("properties") or {},
            "isArchived": bool(properties.get("isArchived", False)),
            "isAnonymous": bool(properties.get("isAnonymous", False)),
            "codeUri": properties.get("codeUri"),
            "provisioningState": "Succeeded",
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


def register(router: Router, context: ServiceContext) -> None:
    def _get(request: Request) -> Response:
        check_scope(context, request)
        name, version = request.params["name"], request.params["version"]
        record = context.store.get(KIND, _key(name, version))
        if record is None:
            raise not_found("code version", f"{name}:{version}")
        return json_response(200, body(context, record))

    def _put(request: Request) -> Response:
        check_scope(context, request)
        name, version = request.params["name"], request.params["version"]
        document = request.json()
        properties = document.get("properties") if isinstance(document, dict) else None
        if not isinstance(properties, dict) or not properties.get("codeUri"):
            raise ApiError(400, "UserError", f"code {name}:{version}: the body needs properties.codeUri")
        now = datetime.now(UTC).isoformat()
        existing = context.store.get(KIND, _key(name, version))
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
        wanted_hash = request.query.get("hash")
        records = context.store.list(KIND)
        if wanted_hash:
            # By content: any name (the recorded answer names another code than the one asked for).
            records = [
                r for r in records if (r["properties"].get("properties") or {}).get("hash_sha256") == wanted_hash
            ]
        else:
            records = [r for r in records if r["name"] == request.params["name"]]
        return json_response(200, {"value": [body(context, record) for record in records]})

    def _start_pending_upload(request: Request) -> Response:
        # A fresh container per upload, as Azure ML hands out (the recorded codeUri is a container URL); the SDK
        # uploads the snapshot to its root through the SAS URI, then PUTs the version with codeUri = blobUri.
        check_scope(context, request)
        container = f"code-{uuid.uuid4().hex}"
        blob_uri = f"{account_url(context)}/{container}"
        sas = f"sv=2021-08-06&sr=c&sp=rcwl&se=2099-01-01T00:00:00Z&sig={secrets.token_hex(16)}"
        return json_response(
            200,
            {
                "blobReferenceForConsumption": {
                    "blobUri": blob_uri,
                    "storageAccountArmId": f"{context.resource_group_id}/providers/Microsoft.Storage/"
                    f"storageAccounts/{STORAGE_ACCOUNT}",
                    "credential": {"credentialType": "SAS", "sasUri": f"{blob_uri}?{sas}"},
                },
                "pendingUploadId": container,
                "pendingUploadType": "TemporaryBlobReference",
            },
        )

    router.add("GET", ROUTE, authenticated(context, _list))
    router.add("POST", ROUTE + "/{version}/startPendingUpload", authenticated(context, _start_pending_upload))
    router.add("GET", ROUTE + "/{version}", authenticated(context, _get))
    router.add("PUT", ROUTE + "/{version}", authenticated(context, _put))
