"""Datastores: workspaceblobstore (the default) and workspaceartifactstore; GET, list (incl. ?isDefault=true, which
`datastores.get_default()` sends) and POST listSecrets.

Bodies follow Azure/azure-sdk-assets
python/sdk/ml/azure-ai-ml/tests/recordings/datastore/e2etests/test_datastore.pyTestDatastoretest_blob_store.json
(trimmed copy: tests/fixtures/recordings/datastore_blob_store.json).

The account name carries the service's address: azure-ai-ml builds a datastore's account URL as
`https://{accountName}.blob.{storage suffix}` and nothing else (`_artifact_utilities.get_datastore_info`), no
name under a suffix resolves to 127.0.0.1 here, and azure-storage-blob treats a URL whose host is 127.0.0.1 as
path-style (account in the first path segment, as for Azurite). So accountName `127.0.0.1:PORT/azuredllocal`
gives `https://127.0.0.1:PORT/azuredllocal.blob.<suffix>/CONTAINER/BLOB`. See docs/architecture.md.
"""

from __future__ import annotations

import secrets
from typing import Any

from azure_dl.workspace_service import workspaces
from azure_dl.workspace_service.context import PROVIDER, ServiceContext
from azure_dl.workspace_service.http import Request, Response, Router, json_response, not_found
from azure_dl.workspace_service.identity import authenticated
from azure_dl.workspace_service.metadata import STORAGE_SUFFIX
from azure_dl.workspace_service.workspaces import STORAGE_ACCOUNT, check_scope

KIND = "datastores"
DEFAULT_DATASTORE = "workspaceblobstore"
ARTIFACT_DATASTORE = "workspaceartifactstore"
ROUTE = (
    "/subscriptions/{subscription}/resourceGroups/{group}/providers/" + PROVIDER + "/workspaces/{workspace}/datastores"
)


def account_name(context: ServiceContext) -> str:
    return f"{context.host}/{STORAGE_ACCOUNT}"


def account_url(context: ServiceContext) -> str:
    """What the SDK computes from the datastore and the cloud metadata (the blob routes' prefix)."""
    return f"https://{account_name(context)}.blob.{STORAGE_SUFFIX}"


def _initial(name: str, container: str, is_default: bool) -> dict[str, Any]:
    return {"name": name, "containerName": container, "isDefault": is_default}


def seed(context: ServiceContext, workspace_id: str) -> None:
    """The two system datastores every workspace has; containers named as Azure ML names them."""
    context.store.put_if_absent(
        KIND, DEFAULT_DATASTORE, _initial(DEFAULT_DATASTORE, f"azureml-blobstore-{workspace_id}", True)
    )
    context.store.put_if_absent(KIND, ARTIFACT_DATASTORE, _initial(ARTIFACT_DATASTORE, "azureml", False))


def body(context: ServiceContext, record: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": f"{context.workspace_id}/datastores/{record['name']}",
        "name": record["name"],
        "type": f"{PROVIDER}/workspaces/datastores",
        "properties": {
            "description": None,
            "tags": {},
            "properties": None,
            "isDefault": record["isDefault"],
            "credentials": {"credentialsType": "AccountKey"},
            "subscriptionId": context.subscription_id,
            "resourceGroup": context.resource_group,
            "datastoreType": "AzureBlob",
            "accountName": account_name(context),
            "containerName": record["containerName"],
            "endpoint": STORAGE_SUFFIX,
            "protocol": "https",
            "serviceDataAccessAuthIdentity": "None",
        },
        "systemData": None,
    }


def _record(context: ServiceContext, request: Request) -> dict[str, Any]:
    check_scope(context, request)
    record = context.store.get(KIND, request.params["name"])
    if record is None:
        raise not_found("datastore", request.params["name"])
    return record


def register(router: Router, context: ServiceContext) -> None:
    workspace = context.store.get(workspaces.KIND, context.workspace)
    assert workspace is not None, "workspaces.register runs first"
    seed(context, workspace["workspaceId"])

    def _get(request: Request) -> Response:
        return json_response(200, body(context, _record(context, request)))

    def _list(request: Request) -> Response:
        check_scope(context, request)
        records = context.store.list(KIND)
        if request.query.get("isDefault", "").lower() == "true":
            records = [record for record in records if record["isDefault"]]
        return json_response(200, {"value": [body(context, record) for record in records]})

    def _list_secrets(request: Request) -> Response:
        _record(context, request)
        # A SAS, as the recording answers for an account-key store asked for an expirable secret; the blob
        # routes accept any signature (the bearer token guards the ARM side, loopback the rest).
        token = f"?sv=2021-08-06&ss=b&srt=co&sp=rcwdl&se=2099-01-01T00:00:00Z&sig={secrets.token_hex(16)}"
        return json_response(200, {"secretsType": "Sas", "sasToken": token})

    router.add("GET", ROUTE, authenticated(context, _list))
    router.add("GET", ROUTE + "/{name}", authenticated(context, _get))
    router.add("POST", ROUTE + "/{name}/listSecrets", authenticated(context, _list_secrets))
