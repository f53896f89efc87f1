"""Uploads through the SDK's own artifact path (datastore lookup, listSecrets, BlobStorageClient) to the service's
blob routes, and back."""

from __future__ import annotations

from pathlib import Path

from azure_dl.workspace_service.service import WorkspaceService


def _upload(ml_client, source: Path, version: str = "1"):  # type: ignore[no-untyped-def]
    from azure.ai.ml._artifacts._artifact_utilities import _upload_to_datastore

    return _upload_to_datastore(
        ml_client._operation_scope,
        ml_client.datastores,
        source,
        artifact_type="code",
        show_progress=False,
        asset_name="hello",
        asset_version=version,
    )


def test_a_code_folder_uploads_and_lands_under_the_service_folder(
    ml_client, workspace_service: WorkspaceService, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    source = tmp_path / "src"
    (source / "pkg").mkdir(parents=True)
    (source / "hello.py").write_text("print('hello from the local workspace')\n")
    (source / "pkg" / "data.bin").write_bytes(bytes(range(256)) * 40)

    info = _upload(ml_client, source)

    assert info.relative_path.endswith("/src")
    stored = list((workspace_service.data_dir / "blobs").glob("azureml-blobstore-*/**/hello.py"))
    assert [path.read_text() for path in stored] == ["print('hello from the local workspace')\n"]
    assert any(path.read_bytes() == bytes(range(256)) * 40 for path in stored[0].parent.rglob("data.bin"))


def test_the_same_content_again_is_not_uploaded_twice(ml_client, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    source = tmp_path / "src"
    source.mkdir()
    (source / "hello.py").write_text("print('same')\n")
    first = _upload(ml_client, source)
    # The SDK reads the confirmation metadata it set on the first upload (Set Blob Metadata, then Get Blob
    # Properties) and answers that asset's name and version instead of the new ones.
    again = _upload(ml_client, source, version="2")
    assert again.relative_path == first.relative_path
    assert (again.name, again.version) == ("hello", "1")


def test_the_sdk_downloads_what_it_uploaded(ml_client, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from azure.ai.ml._artifacts._artifact_utilities import download_artifact_from_aml_uri

    source = tmp_path / "src"
    source.mkdir()
    (source / "hello.py").write_text("print('round trip')\n")
    info = _upload(ml_client, source)
    uri = f"azureml://datastores/workspaceblobstore/paths/{info.relative_path}"
    target = tmp_path / "down"
    download_artifact_from_aml_uri(uri, str(target), ml_client.datastores)
    assert [path.read_text() for path in target.rglob("hello.py")] == ["print('round trip')\n"]


def test_block_uploads_and_ranged_downloads(ml_client, workspace_service: WorkspaceService) -> None:  # type: ignore[no-untyped-def]
    # The SDK's files are small enough for one Put Blob; larger ones (over max_single_put_size) go as blocks and
    # come back in ranges: force both with tiny limits on the same client the SDK builds.
    from azure.ai.ml._artifacts._artifact_utilities import get_datastore_info
    from azure.storage.blob import BlobClient

    info = get_datastore_info(ml_client.datastores, "workspaceblobstore")
    store = ml_client.datastores.get("workspaceblobstore")
    data = bytes(range(256)) * 20  # 5120 bytes: 10 blocks of 512
    blob = BlobClient(
        info["account_url"],
        store.container_name,
        "big/blocks.bin",
        credential=info["credential"],
        max_single_put_size=1024,
        max_block_size=512,
        max_single_get_size=1024,
        max_chunk_get_size=1024,
    )
    blob.upload_blob(data, overwrite=True, metadata={"kind": "test"})
    assert blob.download_blob().readall() == data
    properties = blob.get_blob_properties()
    assert (properties.size, properties.metadata) == (len(data), {"kind": "test"})
    stored = workspace_service.data_dir / "blobs" / store.container_name / "big" / "blocks.bin"
    assert stored.read_bytes() == data
    blocks = workspace_service.data_dir / "blobs" / ".blocks"
    assert not [path for path in blocks.rglob("*") if path.is_file()]  # committed blocks are removed
