"""The real azure-ai-ml + azure-identity against the local workspace service, over HTTPS, with no mocks."""

from __future__ import annotations

import json
import ssl
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from azure_dl.workspace_service.service import WorkspaceService


def test_connection_file_names_what_a_plain_mlclient_needs(connection: dict[str, str]) -> None:
    assert connection["AZURE_TOKEN_CREDENTIALS"] == "ManagedIdentityCredential"
    assert connection["ARM_CLOUD_METADATA_URL"].startswith("https://127.0.0.1:")
    bundle = Path(connection["REQUESTS_CA_BUNDLE"]).read_text()
    # certifi's roots stay in the bundle so pip and other HTTPS keep working in a shell that sourced it.
    assert bundle.count("BEGIN CERTIFICATE") > 50
    assert "azure-dl local workspace CA" in bundle


def test_default_credential_gets_a_token_from_the_identity_endpoint(connection: dict[str, str]) -> None:
    import jwt
    from azure.identity import DefaultAzureCredential

    resource = connection["ARM_CLOUD_METADATA_URL"].split("/metadata")[0] + "/"
    token = DefaultAzureCredential().get_token(resource + ".default")
    claims = jwt.decode(token.token, options={"verify_signature": False})
    # msal turns the scope "R/.default" into resource R without the slash; the audience echoes it.
    assert claims["aud"] == resource.rstrip("/")
    assert token.expires_on > claims["iat"]


def test_workspaces_get_through_the_sdk(ml_client, connection: dict[str, str]) -> None:  # type: ignore[no-untyped-def]
    workspace = ml_client.workspaces.get(connection["AZUREML_WORKSPACE_NAME"])
    assert workspace.name == connection["AZUREML_WORKSPACE_NAME"]
    assert workspace.resource_group == connection["AZURE_RESOURCE_GROUP"]
    assert workspace.discovery_url.startswith("https://127.0.0.1:")
    assert workspace.mlflow_tracking_uri.startswith("azureml://127.0.0.1:")


def test_an_unknown_workspace_is_a_resource_not_found(ml_client) -> None:  # type: ignore[no-untyped-def]
    from azure.core.exceptions import ResourceNotFoundError

    with pytest.raises(ResourceNotFoundError):
        ml_client.workspaces.get("no-such-workspace")


def test_arm_calls_without_a_token_are_refused(connection: dict[str, str]) -> None:
    url = (
        connection["ARM_CLOUD_METADATA_URL"].split("/metadata")[0]
        + f"/subscriptions/{connection['AZURE_SUBSCRIPTION_ID']}/resourceGroups/{connection['AZURE_RESOURCE_GROUP']}"
        f"/providers/Microsoft.MachineLearningServices/workspaces/{connection['AZUREML_WORKSPACE_NAME']}"
    )
    context = ssl.create_default_context(cafile=connection["REQUESTS_CA_BUNDLE"])
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(url, context=context)
    assert refused.value.code == 401
    assert json.loads(refused.value.read())["error"]["code"] == "AuthenticationFailed"


def test_a_restart_on_the_same_folder_keeps_the_workspace(workspace_service: WorkspaceService) -> None:
    assert workspace_service.context is not None
    before = workspace_service.context.store.get("workspaces", workspace_service.workspace)
    with WorkspaceService(workspace_service.data_dir / ".." / workspace_service.data_dir.name) as second:
        assert second.context is not None
        assert second.context.store.get("workspaces", second.workspace) == before
