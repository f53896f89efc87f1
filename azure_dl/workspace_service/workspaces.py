"""The one workspace: GET .../workspaces/{name} (and the list in its resource group).

The body follows the recorded GET in Azure/azure-sdk-assets
python/sdk/ml/azure-ai-ml/tests/recordings/workspace/e2etests/test_workspace.pyTestWorkspacetest_workspace_update.json
(trimmed copy: tests/fixtures/recordings/workspace_get.json). The SDK reads `discoveryUrl` (the data plane's
address) and `mlFlowTrackingUri` (handed to MLflow as an azureml:// URI); the rest is there because clients
print or check it.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from azure_dl.workspace_service.context import LOCATION, PROVIDER, ServiceContext
from azure_dl.workspace_service.http import ApiError, Request, Response, Router, json_response, not_found
from azure_dl.workspace_service.identity import PRINCIPAL_ID, TENANT_ID, authenticated

KIND = "workspaces"
STORAGE_ACCOUNT = "azuredllocal"
WORKSPACE_ROUTE = "/subscriptions/{subscription}/resourceGroups/{group}/providers/" + PROVIDER + "/workspaces/{name}"


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def initial_record(context: ServiceContext) -> dict[str, Any]:
    """What the store keeps for the workspace: the identity and creation time that must survive a restart."""
    return {"name": context.workspace, "workspaceId": str(uuid.uuid4()), "createdAt": _now()}


def body(context: ServiceContext, record: dict[str, Any]) -> dict[str, Any]:
    group_id = context.resource_group_id
    mlflow_host = context.host
    return {
        "id": context.workspace_id,
        "name": context.workspace,
        "type": f"{PROVIDER}/workspaces",
        "location": LOCATION,
        "tags": {},
        "etag": None,
        "properties": {
            "friendlyName": context.workspace,
            "description": "azure-dl local workspace service",
            "storageAccount": f"{group_id}/providers/Microsoft.Storage/storageAccounts/{STORAGE_ACCOUNT}",
            "keyVault": f"{group_id}/providers/Microsoft.Keyvault/vaults/azuredllocal",
            "applicationInsights": None,
            "containerRegistry": None,
            "hbiWorkspace": False,
            "tenantId": TENANT_ID,
            "imageBuildCompute": None,
            "provisioningState": "Succeeded",
            "managedNetwork": {"isolationMode": "Disabled"},
            "v1LegacyMode": False,
            "softDeleteEnabled": False,
            "creationTime": record["createdAt"],
            "notebookInfo": None,
            "storageHnsEnabled": False,
            "workspaceId": record["workspaceId"],
            "linkedModelInventoryArmId": None,
            "privateLinkCount": 0,
            "publicNetworkAccess": "Enabled",
            "ipAllowlist": [],
            "discoveryUrl": f"{context.base_url}/discovery",
            "mlFlowTrackingUri": f"azureml://{mlflow_host}/mlflow/v1.0{context.workspace_id}",
            "serverlessComputeSettings": {"serverlessComputeCustomSubnet": None, "serverlessComputeNoPublicIP": False},
            "EnableSoftwareBillOfMaterials": False,
            "sdkTelemetryAppInsightsKey": None,
            "sasGetterUri": "",
            "enableDataIsolation": True,
            "systemDatastoresAuthMode": "accesskey",
            "enableServiceSideCMKEncryption": False,
        },
        "identity": {"type": "SystemAssigned", "principalId": PRINCIPAL_ID, "tenantId": TENANT_ID},
        "kind": "Default",
        "sku": {"name": "Basic", "tier": "Basic"},
        "systemData": {
            "createdAt": record["createdAt"],
            "createdBy": "azure-dl",
            "createdByType": "Application",
            "lastModifiedAt": record["createdAt"],
            "lastModifiedBy": "azure-dl",
            "lastModifiedByType": "Application",
        },
    }


def check_scope(context: ServiceContext, request: Request) -> None:
    """404 for a route under another subscription, resource group or (where the route names one) workspace."""
    if request.params["subscription"].lower() != context.subscription_id.lower():
        raise not_found("subscription", request.params["subscription"])
    if request.params["group"].lower() != context.resource_group.lower():
        raise not_found("resource group", request.params["group"])
    workspace = request.params.get("workspace")
    if workspace is not None and workspace.lower() != context.workspace.lower():
        raise not_found("workspace", workspace)


def register(router: Router, context: ServiceContext) -> None:
    context.store.put_if_absent(KIND, context.workspace, initial_record(context))

    def _get(request: Request) -> Response:
        check_scope(context, request)
        record = context.store.get(KIND, request.params["name"])
        if record is None:
            raise ApiError(
                404,
                "ResourceNotFound",
                f"The Resource '{PROVIDER}/workspaces/{request.params['name']}' under resource group "
                f"'{context.resource_group}' was not found in this local workspace service.",
            )
        return json_response(200, body(context, record))

    def _list(request: Request) -> Response:
        check_scope(context, request)
        return json_response(200, {"value": [body(context, record) for record in context.store.list(KIND)]})

    router.add("GET", WORKSPACE_ROUTE, authenticated(context, _get))
    router.add(
        "GET",
        "/subscriptions/{subscription}/resourceGroups/{group}/providers/" + PROVIDER + "/workspaces",
        authenticated(context, _list),
    )
