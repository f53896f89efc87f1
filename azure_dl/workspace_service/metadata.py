"""Cloud metadata (ARM_CLOUD_METADATA_URL) and the workspace's discovery document.

azure-ai-ml (`_azure_environments._convert_arm_to_cli`) reads, per cloud: `name`, `portal`, `resourceManager`,
`authentication.loginEndpoint` and `suffixes.storage`; it picks the cloud whose `resourceManager` is a substring of
the metadata URL, so the URL lives under the service's own base URL. The cloud's name must not be one of the
SDK's built-in clouds (AzureCloud, ...), or their hard-coded endpoints would win.
"""

from __future__ import annotations

from typing import Any

from azure_dl.workspace_service.context import ServiceContext
from azure_dl.workspace_service.http import Request, Response, Router, json_response

CLOUD_NAME = "AzureDLLocal"
METADATA_PATH = "/metadata/endpoints"
# The storage suffix the SDK appends to https://{account}.blob.; the account name carries the service's address
# (datastores.py), so this only ends the first path segment of the blob URLs and names no host.
STORAGE_SUFFIX = "azure-dl.invalid"


def metadata_url(context: ServiceContext) -> str:
    return f"{context.base_url}{METADATA_PATH}?api-version=2019-05-01"


def cloud_metadata(context: ServiceContext) -> list[dict[str, Any]]:
    base = f"{context.base_url}/"
    return [
        {
            "name": CLOUD_NAME,
            # The SDK derives the Azure ML token audience from the portal's host ("https://ml.azure." + what
            # follows its second dot): this gives https://ml.azure.localhost. Nothing is served there.
            "portal": "https://portal.azure-dl.localhost/",
            "resourceManager": base,
            "authentication": {
                "loginEndpoint": f"{base}login/",
                "audiences": [base],
                "tenant": "common",
                "identityProvider": "AAD",
            },
            "suffixes": {"storage": STORAGE_SUFFIX, "keyVaultDns": "vault.azure-dl.invalid"},
            "media": base,
            "graph": base,
            "batch": base,
            "sqlManagement": base,
            "gallery": base,
            "activeDirectoryDataLake": base,
            "vmImageAliasDoc": base,
            "microsoftGraphResourceId": base,
        }
    ]


def discovery(context: ServiceContext) -> dict[str, str]:
    """Every data-plane family is served from the same base URL (the real service spreads them over hosts)."""
    base = context.base_url
    return {
        name: base
        for name in (
            "api",
            "catalog",
            "experimentation",
            "gallery",
            "history",
            "hyperdrive",
            "labeling",
            "modelmanagement",
            "pipelines",
            "studio",
        )
    }


def register(router: Router, context: ServiceContext) -> None:
    def _metadata(_request: Request) -> Response:
        return json_response(200, cloud_metadata(context))

    def _discovery(_request: Request) -> Response:
        return json_response(200, discovery(context))

    router.add("GET", METADATA_PATH, _metadata)
    router.add("GET", "/discovery", _discovery)
