"""Models through the real SDK (create from a folder, get, latest, list, archive/restore, download) and
`azure-dl register` against the local workspace service."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from azure_dl.workspace_service import models as service_models
from azure_dl.workspace_service.service import WorkspaceService

pytestmark = pytest.mark.filterwarnings(
    "ignore::marshmallow.warnings.ChangedInMarshmallow4Warning",
    "ignore::marshmallow.warnings.RemovedInMarshmallow4Warning",
    "ignore::DeprecationWarning:azure.storage.blob",  # the SDK's download calls azure-storage-blob the old way
)


def _folder(tmp_path: Path, text: str) -> Path:
    folder = tmp_path / "weights"
    folder.mkdir()
    (folder / "model.bin").write_text(text)
    (folder / "sub").mkdir()
    (folder / "sub" / "labels.json").write_text('["neg", "pos"]')
    return folder


def _model(folder: Path, name: str, version: str | None = None, **kwargs):  # type: ignore[no-untyped-def]
    from azure.ai.ml.entities import Model

    return Model(name=name, version=version, path=str(folder), type="custom_model", **kwargs)


def test_a_model_folder_is_uploaded_versioned_and_downloaded(
    ml_client, workspace_service: WorkspaceService, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    folder = _folder(tmp_path, "weights v1")
    first = ml_client.models.create_or_update(_model(folder, "wire-model", tags={"k": "v"}))
    assert (first.name, first.version, first.tags) == ("wire-model", "1", {"k": "v"})
    assert first.path.startswith("azureml://") and "/paths/LocalUpload/" in first.path
    assert workspace_service.context is not None
    stored = service_models.local_files(workspace_service.context, first.path)
    assert stored is not None and (stored / "model.bin").read_text() == "weights v1"

    (folder / "model.bin").write_text("weights v2")
    second = ml_client.models.create_or_update(_model(folder, "wire-model"))
    assert second.version == "2"
    assert ml_client.models.get("wire-model", label="latest").version == "2"
    assert ml_client.models.get("wire-model", version="1").tags == {"k": "v"}
    assert sorted(m.version for m in ml_client.models.list(name="wire-model")) == ["1", "2"]
    assert "wire-model" in {m.name for m in ml_client.models.list()}

    ml_client.models.download("wire-model", "1", download_path=str(tmp_path / "down"))
    downloaded = [p for p in (tmp_path / "down").rglob("model.bin")]
    assert [p.read_text() for p in downloaded] == ["weights v1"]
    assert (downloaded[0].parent / "sub" / "labels.json").is_file()


def test_archive_hides_a_version_and_restore_brings_it_back(ml_client, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from azure.ai.ml.constants import ListViewType

    ml_client.models.create_or_update(_model(_folder(tmp_path, "archived"), "wire-archive", "7"))
    ml_client.models.archive("wire-archive", version="7")
    assert [m.version for m in ml_client.models.list(name="wire-archive")] == []
    archived = ml_client.models.list(name="wire-archive", list_view_type=ListViewType.ARCHIVED_ONLY)
    assert [m.version for m in archived] == ["7"]
    ml_client.models.restore("wire-archive", version="7")
    assert [m.version for m in ml_client.models.list(name="wire-archive")] == ["7"]

    ml_client.models.archive("wire-archive")  # the container
    assert "wire-archive" not in {m.name for m in ml_client.models.list()}
    ml_client.models.restore("wire-archive")
    assert "wire-archive" in {m.name for m in ml_client.models.list()}


def test_unknown_models_are_not_found_and_paths_cannot_change(ml_client, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from azure.core.exceptions import HttpResponseError, ResourceNotFoundError

    with pytest.raises(ResourceNotFoundError):
        ml_client.models.get("no-such-model", version="1")
    with pytest.raises(ResourceNotFoundError):
        list(ml_client.models.list(name="no-such-model"))

    ml_client.models.create_or_update(_model(_folder(tmp_path, "one"), "wire-fixed", "1"))
    other = tmp_path / "other"
    shutil.copytree(tmp_path / "weights", other)
    (other / "model.bin").write_text("different")
    with pytest.raises(HttpResponseError, match="Asset paths cannot be updated"):
        ml_client.models.create_or_update(_model(other, "wire-fixed", "1"))


def _blob_files(service: WorkspaceService) -> set[Path]:
    return {path for path in (service.data_dir / "blobs").rglob("*") if path.is_file()}


def test_azure_dl_register_gates_uploads_and_reuses_identical_content(
    ml_client, connection, workspace_service: WorkspaceService, trained_lstm: Path, tmp_path: Path, capsys
) -> None:  # type: ignore[no-untyped-def]
    import json

    from azure_dl.backends.azureml.models import download_model
    from azure_dl.cli.main import main
    from azure_dl.model_registration import CONTENT_HASH_TAG

    run = Path(shutil.copytree(trained_lstm, tmp_path / "runs" / "lstm"))
    blobs_before = _blob_files(workspace_service)
    export = (run / "export.json").read_text()
    (run / "export.json").write_text(json.dumps({**json.loads(export), "passed": False, "max_abs_diff": 0.2}))
    assert main(["register", str(run), "--name", "reviews"]) == 2
    assert "ONNX parity check failed" in capsys.readouterr().err
    assert _blob_files(workspace_service) == blobs_before  # refused before any upload
    with pytest.raises(Exception, match="not found"):
        list(ml_client.models.list(name="reviews"))
    (run / "export.json").write_text(export)

    assert main(["register", str(run), "--name", "reviews"]) == 0
    out = capsys.readouterr().out
    assert "azureml:reviews:1" in out and "no: new version" in out
    assert main(["register", str(run), "--name", "reviews"]) == 0
    assert "yes: identical content was registered before" in capsys.readouterr().out
    (version,) = ml_client.models.list(name="reviews")
    assert version.version == "1" and version.tags[CONTENT_HASH_TAG]

    downloaded = download_model(ml_client, "reviews", "1", tmp_path / "download")
    assert (downloaded / "model.onnx").read_bytes() == (run / "model.onnx").read_bytes()
    assert not (downloaded / "model.pt").exists()  # only the registered files are uploaded

    # Changed content is a new version; the old one keeps its files.
    labels = json.loads((run / "labels.json").read_text())
    (run / "labels.json").write_text(json.dumps(list(reversed(labels))))
    assert main(["register", str(run), "--name", "reviews"]) == 0
    assert "azureml:reviews:2" in capsys.readouterr().out
