"""Data assets through the real SDK: upload of a file and a folder, versions given and auto-incremented, latest,
list, archive/restore, and what the service keeps for the jobs family to resolve inputs from."""

from __future__ import annotations

from pathlib import Path

import pytest

from azure_dl.workspace_service import data_assets
from azure_dl.workspace_service.service import WorkspaceService


def _data(path: Path, kind: str, name: str, version: str | None = None):  # type: ignore[no-untyped-def]
    from azure.ai.ml.entities import Data

    return Data(path=str(path), type=kind, name=name, version=version)


def _blob_file(service: WorkspaceService, uri: str) -> Path:
    """Where a datastore URI of the default datastore lies on the service's disk."""
    assert service.context is not None
    datastore = service.context.store.get("datastores", "workspaceblobstore")
    assert datastore is not None
    relative = uri.split("/datastores/workspaceblobstore/paths/", 1)[1]
    return service.data_dir / "blobs" / datastore["containerName"] / relative


def test_a_file_asset_is_uploaded_and_kept_for_jobs(
    ml_client, workspace_service: WorkspaceService, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    source = tmp_path / "reviews.csv"
    source.write_text("text,label\ngood,1\n")
    created = ml_client.data.create_or_update(_data(source, "uri_file", "reviews", "1"))
    fetched = ml_client.data.get("reviews", version="1")

    assert (fetched.name, fetched.version, fetched.type) == ("reviews", "1", "uri_file")
    assert fetched.path == created.path
    assert _blob_file(workspace_service, created.path).read_text() == "text,label\ngood,1\n"
    assert workspace_service.context is not None
    record = workspace_service.context.store.get(data_assets.KIND, data_assets.key("reviews", "1"))
    assert record is not None
    assert set(record) == {"name", "version", "properties", "createdAt", "modifiedAt"}
    assert record["properties"]["dataUri"] == created.path


def test_versions_auto_increment_and_latest_is_the_newest(
    ml_client, workspace_service: WorkspaceService, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    folder = tmp_path / "images"
    (folder / "cat").mkdir(parents=True)
    (folder / "cat" / "0.png").write_bytes(b"\x89PNG fake")
    first = ml_client.data.create_or_update(_data(folder, "uri_folder", "xrays"))
    second = ml_client.data.create_or_update(_data(folder, "uri_folder", "xrays"))
    assert (first.version, second.version) == ("1", "2")
    assert ml_client.data.get("xrays", label="latest").version == "2"
    assert (_blob_file(workspace_service, first.path) / "cat" / "0.png").read_bytes() == b"\x89PNG fake"
    assert sorted(item.version for item in ml_client.data.list(name="xrays")) == ["1", "2"]
    assert "xrays" in {item.name for item in ml_client.data.list()}


def test_archive_and_restore_a_version_and_a_whole_asset(ml_client, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    source = tmp_path / "a.txt"
    source.write_text("a")
    for version in ("1", "2"):
        ml_client.data.create_or_update(_data(source, "uri_file", "archived-data", version))

    ml_client.data.archive("archived-data", version="2")
    assert [item.version for item in ml_client.data.list(name="archived-data")] == ["1"]
    assert ml_client.data.get("archived-data", label="latest").version == "1"
    assert ml_client.data.get("archived-data", version="2").version == "2"  # still readable by version
    ml_client.data.restore("archived-data", version="2")
    assert sorted(item.version for item in ml_client.data.list(name="archived-data")) == ["1", "2"]

    ml_client.data.archive("archived-data")
    assert "archived-data" not in {item.name for item in ml_client.data.list()}
    ml_client.data.restore("archived-data")
    assert "archived-data" in {item.name for item in ml_client.data.list()}


def test_an_unknown_data_asset_is_not_found(ml_client) -> None:  # type: ignore[no-untyped-def]
    from azure.ai.ml.exceptions import MlException
    from azure.core.exceptions import ResourceNotFoundError

    with pytest.raises(ResourceNotFoundError):
        ml_client.data.get("no-such-data", version="1")
    # The container's 404, which the SDK itself turns into its own "Resource was not found" error.
    with pytest.raises(MlException, match="Resource was not found"):
        ml_client.data.get("no-such-data", label="latest")


def test_an_mltable_asset_is_refused_by_name(ml_client, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from azure.core.exceptions import HttpResponseError

    folder = tmp_path / "table"
    folder.mkdir()
    (folder / "MLTable").write_text("paths:\n  - file: ./data.csv\n")
    (folder / "data.csv").write_text("a\n1\n")
    with pytest.raises(HttpResponseError) as refused:
        ml_client.data.create_or_update(_data(folder, "mltable", "table-data", "1"))
    assert refused.value.status_code == 400
    assert "mltable is not implemented" in str(refused.value)
