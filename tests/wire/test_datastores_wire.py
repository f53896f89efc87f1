"""Datastores through the real SDK: the default store, the artifact store, listSecrets and the blob URL it yields."""

from __future__ import annotations

from urllib.parse import urlsplit

import pytest


def test_get_default_is_the_workspace_blob_store(ml_client) -> None:  # type: ignore[no-untyped-def]
    default = ml_client.datastores.get_default()
    assert default.name == "workspaceblobstore"
    assert default.type == "AzureBlob"
    assert default.container_name.startswith("azureml-blobstore-")


def test_list_has_both_system_stores(ml_client) -> None:  # type: ignore[no-untyped-def]
    names = {store.name for store in ml_client.datastores.list()}
    assert names == {"workspaceblobstore", "workspaceartifactstore"}


def test_an_unknown_datastore_is_not_found(ml_client) -> None:  # type: ignore[no-untyped-def]
    from azure.core.exceptions import ResourceNotFoundError

    with pytest.raises(ResourceNotFoundError):
        ml_client.datastores.get("nope")


def test_the_sdk_points_its_blob_client_at_the_service(ml_client, connection: dict[str, str]) -> None:  # type: ignore[no-untyped-def]
    # The SDK's own upload path: datastore GET + cloud storage suffix -> account URL, listSecrets -> SAS.
    from azure.ai.ml._artifacts._artifact_utilities import get_datastore_info

    info = get_datastore_info(ml_client.datastores, "workspaceblobstore")
    service = urlsplit(connection["ARM_CLOUD_METADATA_URL"])
    account = urlsplit(info["account_url"])
    assert (account.scheme, account.netloc) == ("https", service.netloc)
    assert info["credential"].startswith("?sv=")
