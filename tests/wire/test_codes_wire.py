"""Code assets through the real SDK: hash lookup, startPendingUpload, upload to the service's blobs, version PUT."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlsplit

from azure_dl.workspace_service.service import WorkspaceService


def _code(path: Path, name: str | None = None, version: str | None = None):  # type: ignore[no-untyped-def]
    from azure.ai.ml.entities._assets import Code

    return Code(path=str(path), name=name, version=version)


def test_a_named_code_version_is_created_uploaded_and_read_back(
    ml_client, workspace_service: WorkspaceService, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    source = tmp_path / "src"
    source.mkdir()
    (source / "hello.py").write_text("print('code asset')\n")

    created = ml_client._code.create_or_update(_code(source, "hello-code", "1"))
    fetched = ml_client._code.get("hello-code", "1")

    assert (fetched.name, fetched.version) == ("hello-code", "1")
    assert fetched.path == created.path
    # codeUri = https://127.0.0.1:PORT/ACCOUNT.blob.SUFFIX/CONTAINER/src: the snapshot is a folder on disk.
    _account, container, *folder = urlsplit(created.path).path.strip("/").split("/")
    snapshot = workspace_service.data_dir / "blobs" / container / "/".join(folder) / "hello.py"
    assert snapshot.read_text() == "print('code asset')\n"


def test_the_same_content_resolves_to_the_existing_version(ml_client, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    source = tmp_path / "src"
    source.mkdir()
    (source / "train.py").write_text("print('same content')\n")
    first = ml_client._code.create_or_update(_code(source))
    # An anonymous code with identical content: the SDK's hash lookup finds the first one (another name).
    again = ml_client._code.create_or_update(_code(source))
    assert (again.name, again.version) == (first.name, first.version)


def test_an_unknown_code_version_is_not_found(ml_client) -> None:  # type: ignore[no-untyped-def]
    import pytest
    from azure.core.exceptions import ResourceNotFoundError

    with pytest.raises(ResourceNotFoundError):
        ml_client._code.get("no-such-code", "1")
