"""Local MLflow registry: ONNX flavor with signature and sidecars, idempotent by content, the gate, resolving refs."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from azure_dl.backends.local.models import parse_model_ref, register_local, resolve_local_model
from azure_dl.errors import AzureDLError
from azure_dl.model_registration import CONTENT_HASH_TAG, RegistrationRefused


def _tiny_onnx(path: Path, num_classes: int = 2) -> None:
    """A real ONNX graph with the ResNet I/O contract: pixel_values [N,3,4,4] -> logits [N,C]."""
    import onnx
    from onnx import TensorProto, helper

    weights = np.linspace(-1, 1, 48 * num_classes, dtype=np.float32)
    graph = helper.make_graph(
        [
            helper.make_node("Reshape", ["pixel_values", "shape"], ["flat"]),
            helper.make_node("MatMul", ["flat", "W"], ["logits"]),
        ],
        "tiny",
        [helper.make_tensor_value_info("pixel_values", TensorProto.FLOAT, ["N", 3, 4, 4])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", num_classes])],
        [
            helper.make_tensor("W", TensorProto.FLOAT, [48, num_classes], weights.tolist()),
            helper.make_tensor("shape", TensorProto.INT64, [2], [0, 48]),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))


def _metrics(macro_f1: float) -> dict[str, object]:
    test = {"loss": 0.5, "accuracy": 0.9, "balanced_accuracy": 0.85, "macro_f1": macro_f1, "auroc": 0.95}
    return {"validation": dict(test), "test": test, "best_epoch": 1, "epochs_run": 2, "stopped_early": False}


def _output_folder(root: Path, *, macro_f1: float = 0.9, parity: bool = True) -> Path:
    root.mkdir(parents=True)
    _tiny_onnx(root / "model.onnx")
    (root / "labels.json").write_text(json.dumps(["cat", "dog"]))
    (root / "preprocess.json").write_text(json.dumps({"task": "image-classification", "image_size": 4}))
    (root / "metrics.json").write_text(json.dumps(_metrics(macro_f1)))
    export = {"onnx_file": "model.onnx", "max_abs_diff": 1e-6 if parity else 0.3, "tolerance": 1e-4, "passed": parity}
    (root / "export.json").write_text(json.dumps(export))
    return root


def test_register_is_idempotent_by_content_and_tags_the_version(tmp_path: Path, mlflow_store: str) -> None:
    import mlflow

    folder = _output_folder(tmp_path / "out")
    first = register_local(folder, "tiny-resnet")
    again = register_local(folder, "tiny-resnet", min_metrics={"macro_f1": 0.85})
    assert (first.version, first.reused) == ("1", False)
    assert (again.version, again.reused) == ("1", True)

    folder_v1 = tmp_path / "v1"
    shutil.copytree(folder, folder_v1)
    (folder / "metrics.json").write_text(json.dumps(_metrics(0.95)))
    (folder / "quantization.json").write_text(json.dumps({"kept": "fp32", "agreement": 0.9}))
    changed = register_local(folder, "tiny-resnet")
    assert (changed.version, changed.reused) == ("2", False)

    client = mlflow.MlflowClient(tracking_uri=mlflow_store, registry_uri=mlflow_store)
    tags = client.get_model_version("tiny-resnet", "2").tags
    assert len(tags[CONTENT_HASH_TAG]) == 64
    assert tags[CONTENT_HASH_TAG] != client.get_model_version("tiny-resnet", "1").tags[CONTENT_HASH_TAG]
    assert float(tags["test.macro_f1"]) == pytest.approx(0.95)
    assert tags["parity.passed"] == "True"

    info = mlflow.models.get_model_info("models:/tiny-resnet/1")
    inputs = info.signature.inputs.to_dict()
    assert list(inputs[0]["tensor-spec"]["shape"]) == [-1, 3, 4, 4]
    assert info.signature.inputs.input_names() == ["pixel_values"]
    assert info.signature.outputs.input_names() == ["logits"]

    # Resolving gives back a training output folder (one MLflow store per test is slow: share it here).
    for ref, registered in (
        ("tiny-resnet:1", folder_v1),
        ("models:/tiny-resnet/2", folder),
        ("tiny-resnet:latest", folder),
    ):
        resolved = resolve_local_model(ref, cache_dir=tmp_path / "cache")
        for name in ("model.onnx", "labels.json", "preprocess.json", "metrics.json", "export.json"):
            assert (resolved / name).read_bytes() == (registered / name).read_bytes(), (ref, name)
    with pytest.raises(AzureDLError, match="not registered"):
        resolve_local_model("tiny-resnet:7", cache_dir=tmp_path / "cache")
    v2 = resolve_local_model("tiny-resnet:2", cache_dir=tmp_path / "cache")
    assert json.loads((v2 / "quantization.json").read_text())["kept"] == "fp32"
    with pytest.raises(AzureDLError, match="no registered model"):
        resolve_local_model("missing:latest", cache_dir=tmp_path / "cache")


def test_gate_refuses_failed_parity_and_low_metric(tmp_path: Path) -> None:
    bad_parity = _output_folder(tmp_path / "parity", parity=False)
    with pytest.raises(RegistrationRefused, match=r"parity check failed: max_abs_diff 0\.3 exceeds tolerance"):
        register_local(bad_parity, "m")

    weak = _output_folder(tmp_path / "weak", macro_f1=0.6)
    with pytest.raises(RegistrationRefused, match=r"test macro_f1 0\.6000 is below the minimum 0\.8000"):
        register_local(weak, "m", min_metrics={"macro_f1": 0.8})
    with pytest.raises(AzureDLError, match="not one of"):
        register_local(weak, "m", min_metrics={"loss": 0.1})
    no_test = _output_folder(tmp_path / "no-test")
    (no_test / "metrics.json").write_text(json.dumps({**_metrics(0.9), "test": None}))
    with pytest.raises(RegistrationRefused, match="no test metrics"):
        register_local(no_test, "m", min_metrics={"macro_f1": 0.5})


def test_refuses_a_folder_without_a_model(tmp_path: Path) -> None:
    with pytest.raises(AzureDLError, match=r"no model\.onnx"):
        register_local(tmp_path, "m")


@pytest.mark.parametrize(
    ("ref", "expected"),
    [("models:/a/3", ("a", "3")), ("a-b.c:12", ("a-b.c", "12")), ("a:latest", ("a", "latest"))],
)
def test_parse_model_ref(ref: str, expected: tuple[str, str]) -> None:
    assert parse_model_ref(ref) == expected


def test_parse_model_ref_rejects_garbage() -> None:
    with pytest.raises(AzureDLError, match="NAME:VERSION"):
        parse_model_ref("just-a-name")
