"""The training output folder module: one content hash (order-free, registered files only), the registration gate,
and the local and Azure registries tagging the same folder with the same digest."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from azure_dl.backends.azureml.models import register_model
from azure_dl.backends.local.models import register_local
from azure_dl.errors import AzureDLError
from azure_dl.model_registration import CONTENT_HASH_TAG, RegistrationRefused, check_registration_gate
from azure_dl.model_registration import content_hash as control_plane_hash
from tests.endpoint_fakes import fake_endpoint_client
from training_scripts import model_folder
from training_scripts.model_folder import REGISTERED_FILES, content_hash, registration_refusal

pytestmark = pytest.mark.filterwarnings(
    "ignore::marshmallow.warnings.ChangedInMarshmallow4Warning",
    "ignore::marshmallow.warnings.RemovedInMarshmallow4Warning",
)


def _folder(root: Path, *, passed: bool = True, test: dict[str, float] | None = None) -> Path:
    root.mkdir(parents=True)
    (root / "model.onnx").write_bytes(b"onnx bytes")
    (root / "labels.json").write_text('["a", "b"]')
    (root / "export.json").write_text(json.dumps({"passed": passed, "max_abs_diff": 0.3, "tolerance": 1e-4}))
    metrics: dict[str, object] = {"validation": {"macro_f1": 0.7}}
    if test is not None:
        metrics["test"] = test
    (root / "metrics.json").write_text(json.dumps(metrics))
    return root


def test_every_registered_file_is_named_once() -> None:
    assert len(set(REGISTERED_FILES)) == len(REGISTERED_FILES)
    assert model_folder.WEIGHTS_FILE not in REGISTERED_FILES  # never the PyTorch weights
    assert set(model_folder.SERVING_FILES) <= set(REGISTERED_FILES)
    assert set(model_folder.TRAINING_OUTPUT_FILES) <= set(REGISTERED_FILES)


def test_content_hash_covers_names_and_bytes_of_registered_files_only(tmp_path: Path) -> None:
    folder = _folder(tmp_path / "a")
    digest = content_hash(folder)
    assert len(digest) == 64 and control_plane_hash is content_hash

    (folder / "model.pt").write_bytes(b"weights")  # not registered: the identity does not change
    (folder / "checkpoints").mkdir()
    assert content_hash(folder) == digest

    copy = Path(shutil.copytree(folder, tmp_path / "b"))
    (copy / "labels.json").write_text('["a", "c"]')
    assert content_hash(copy) != digest
    (copy / "labels.json").write_text('["a", "b"]')
    (copy / "labels.json").rename(copy / "vocab.json")  # same bytes under another name: another model
    assert content_hash(copy) != digest


def test_content_hash_does_not_depend_on_creation_order(tmp_path: Path) -> None:
    forward, backward = tmp_path / "f", tmp_path / "b"
    forward.mkdir(), backward.mkdir()
    names = list(REGISTERED_FILES)
    for name in names:
        (forward / name).write_text(name)
    for name in reversed(names):
        (backward / name).write_text(name)
    assert content_hash(forward) == content_hash(backward)


def test_the_gate_refuses_failed_parity_missing_and_low_metrics(tmp_path: Path) -> None:
    refusal = registration_refusal(_folder(tmp_path / "bad", passed=False))
    assert refusal is not None and "parity check failed: max_abs_diff 0.3 exceeds tolerance" in refusal.reason

    untested = _folder(tmp_path / "untested")
    assert registration_refusal(untested) is None  # no minimum asked for: parity is enough
    refusal = registration_refusal(untested, {"macro_f1": 0.5})
    assert refusal is not None and "no test metrics" in refusal.reason and "--test-data" in refusal.hint

    low = _folder(tmp_path / "low", test={"macro_f1": 0.6})
    refusal = registration_refusal(low, {"macro_f1": 0.8})
    assert refusal is not None and "test macro_f1 0.6000 is below the minimum 0.8000" in refusal.reason
    assert registration_refusal(low, {"macro_f1": 0.6}) is None
    with pytest.raises(ValueError, match="'loss' is not one of"):
        registration_refusal(low, {"loss": 0.1})

    with pytest.raises(RegistrationRefused, match="below the minimum"):
        check_registration_gate(low, {"macro_f1": 0.8})
    (low / "export.json").write_text("{not json")
    with pytest.raises(AzureDLError, match=r"export\.json is not valid JSON"):
        check_registration_gate(low, None)


def test_local_and_azure_registration_tag_the_same_folder_with_the_same_digest(
    trained_lstm: Path, tmp_path: Path, mlflow_store: str
) -> None:
    import mlflow

    folder = Path(shutil.copytree(trained_lstm, tmp_path / "lstm"))
    (folder / "quantization.json").write_text(json.dumps({"accepted": False, "method": "dynamic"}))

    local = register_local(folder, "reviews")
    client = mlflow.MlflowClient(tracking_uri=mlflow_store, registry_uri=mlflow_store)
    local_tags = client.get_model_version("reviews", local.version).tags

    azure_client = fake_endpoint_client()
    azure = register_model(azure_client, folder, "reviews")
    (call,) = azure_client.models.calls_to("create_or_update")
    azure_tags = call.args[0].tags

    assert local_tags[CONTENT_HASH_TAG] == azure.content_sha256 == azure_tags[CONTENT_HASH_TAG] == content_hash(folder)
    assert {key: local_tags.get(key) for key in azure_tags} == azure_tags  # the same tags, not only the same digest
