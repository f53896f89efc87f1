"""evaluate + gate steps: ONNX Runtime test metrics equal a numpy reference; the gate's verdicts and refusals."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from training_scripts import evaluate as evaluate_module
from training_scripts.gate import GateRefused, gate_verdict, promote
from training_scripts.gate import main as gate_main
from training_scripts.image_transforms import preprocess_images
from training_scripts.metrics import classification_report
from training_scripts.prepare_data import prepare
from training_scripts.preprocess_config import ImagePreprocessConfig, TextPreprocessConfig
from training_scripts.synth import synth_images
from training_scripts.text_vocab import Vocabulary

IMAGE_SIZE = 16
WEIGHTS = np.array([[2.0, -1.0], [-0.5, 0.5], [1.0, 0.0]], dtype=np.float32)  # [3 channels, 2 classes]


def _save(graph: Any, path: Path) -> None:
    import onnx
    from onnx import helper

    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(path))


def _image_model(folder: Path, *, parity: bool = True) -> Path:
    """logits = mean over pixels of each channel @ WEIGHTS: tiny, deterministic, easy to reproduce in numpy."""
    from onnx import TensorProto, helper

    folder.mkdir(parents=True)
    graph = helper.make_graph(
        [
            helper.make_node("GlobalAveragePool", ["pixel_values"], ["pooled"]),
            helper.make_node("Flatten", ["pooled"], ["flat"]),
            helper.make_node("MatMul", ["flat", "W"], ["logits"]),
        ],
        "image",
        [helper.make_tensor_value_info("pixel_values", TensorProto.FLOAT, ["N", 3, IMAGE_SIZE, IMAGE_SIZE])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", 2])],
        [helper.make_tensor("W", TensorProto.FLOAT, [3, 2], WEIGHTS.ravel().tolist())],
    )
    _save(graph, folder / "model.onnx")
    cfg = ImagePreprocessConfig(image_size=IMAGE_SIZE, resize_size=IMAGE_SIZE)
    (folder / "preprocess.json").write_text(json.dumps(cfg.to_dict()))
    (folder / "labels.json").write_text(json.dumps(["normal", "pneumonia"]))
    (folder / "metrics.json").write_text(json.dumps({"validation": {"macro_f1": 0.5}, "test": None, "best_epoch": 2}))
    (folder / "export.json").write_text(json.dumps({"passed": parity, "max_abs_diff": 0.0 if parity else 0.5}))
    return folder


def _reference_probs(paths: list[Path]) -> np.ndarray:
    pixels = preprocess_images(paths, ImagePreprocessConfig(image_size=IMAGE_SIZE, resize_size=IMAGE_SIZE))
    logits = pixels.mean(axis=(2, 3)).astype(np.float64) @ WEIGHTS.astype(np.float64)
    exp = np.exp(logits - logits.max(axis=1, keepdims=True))
    return exp / exp.sum(axis=1, keepdims=True)


@pytest.fixture(scope="module")
def prepared(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("evaluate")
    synth_images(root / "raw", per_class=10, image_size=IMAGE_SIZE, imbalance=2.0)
    prepare("image", root / "raw", root / "prepared", val_fraction=0.2, test_fraction=0.4, seed=0)
    return root / "prepared"


def test_image_metrics_match_a_numpy_reference(prepared: Path, tmp_path: Path) -> None:
    model = _image_model(tmp_path / "model")
    out = tmp_path / "eval"
    code = evaluate_module.main(
        ["--model", str(model), "--data", str(prepared), "--output", str(out), "--gate-threshold", "0"]
    )
    assert code == 0

    test_dir = prepared / "test"
    classes = sorted(p.name for p in test_dir.iterdir())
    samples = [(path, classes.index(d.name)) for d in sorted(test_dir.iterdir()) for path in sorted(d.iterdir())]
    expected = classification_report([y for _, y in samples], _reference_probs([p for p, _ in samples]), classes)
    metrics = json.loads((out / "metrics.json").read_text())
    for key in ("accuracy", "balanced_accuracy", "macro_f1", "auroc"):
        assert metrics["test"][key] == pytest.approx(expected[key], abs=1e-6), key
    assert metrics["test"]["confusion_matrix"] == expected["confusion_matrix"]
    assert metrics["validation"] == {"macro_f1": 0.5} and metrics["best_epoch"] == 2  # kept from training
    assert (out / "confusion_matrix.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    gate = json.loads((out / "gate.json").read_text())
    assert gate["metric"] == "macro_f1" and gate["passed"] is True
    assert gate["value"] == pytest.approx(expected["macro_f1"])


def test_gate_fails_below_threshold_and_on_failed_parity(prepared: Path, tmp_path: Path) -> None:
    model = _image_model(tmp_path / "model")
    low = evaluate_module.evaluate(model, prepared / "test", tmp_path / "a", gate_threshold=1.0, gate_metric="accuracy")
    assert low["value"] < 1.0  # the fixed weights misclassify some synthetic images
    assert low["passed"] is False
    assert low["reason"] == f"accuracy {low['value']:.4f} is below the threshold 1.0000"

    bad = _image_model(tmp_path / "bad", parity=False)
    verdict = evaluate_module.evaluate(bad, prepared / "test", tmp_path / "b", gate_threshold=0.0)
    assert verdict["passed"] is False and "parity check failed" in verdict["reason"]


def _text_model_and_table(tmp_path: Path) -> tuple[Path, Path]:
    """logits = sum of 2-d token embeddings ("good" positive, "bad" negative), and a 4-row JSONL test table."""
    from onnx import TensorProto, helper

    itos = ["<pad>", "<unk>", "good", "bad", "film"]
    emb = np.zeros((len(itos), 2), dtype=np.float32)
    emb[2] = [0.0, 3.0]  # "good" -> positive
    emb[3] = [3.0, 0.0]  # "bad" -> negative
    graph = helper.make_graph(
        [
            helper.make_node("Gather", ["E", "input_ids"], ["embedded"]),
            helper.make_node("ReduceSum", ["embedded", "axes"], ["logits"], keepdims=0),
        ],
        "text",
        [helper.make_tensor_value_info("input_ids", TensorProto.INT64, ["N", "T"])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", 2])],
        [
            helper.make_tensor("E", TensorProto.FLOAT, list(emb.shape), emb.ravel().tolist()),
            helper.make_tensor("axes", TensorProto.INT64, [1], [1]),
        ],
    )
    model = tmp_path / "model"
    model.mkdir()
    _save(graph, model / "model.onnx")
    (model / "preprocess.json").write_text(json.dumps(TextPreprocessConfig(seq_len=8).to_dict()))
    (model / "vocab.json").write_text(json.dumps({"itos": itos, "pad_id": 0, "unk_id": 1}))
    Vocabulary.load(model)  # the fixture is a valid vocabulary
    (model / "labels.json").write_text(json.dumps(["negative", "positive"]))
    (model / "export.json").write_text(json.dumps({"passed": True}))
    table = tmp_path / "test.jsonl"
    rows = [("good film", "positive"), ("bad film", "negative"), ("Good!", "positive"), ("bad bad good", "positive")]
    table.write_text("".join(json.dumps({"text": t, "label": y}) + "\n" for t, y in rows))
    return model, table


def test_text_model_on_a_table(tmp_path: Path) -> None:
    model, table = _text_model_and_table(tmp_path)
    verdict = evaluate_module.evaluate(model, table, tmp_path / "out", gate_threshold=0.7)
    metrics = json.loads((tmp_path / "out" / "metrics.json").read_text())["test"]
    assert metrics["accuracy"] == pytest.approx(0.75)  # "bad bad good" is predicted negative
    assert metrics["confusion_matrix"] == [[1, 0], [1, 2]]
    assert verdict["passed"] is True and verdict["value"] == pytest.approx(metrics["macro_f1"])


# `import torch` raises ImportError in this interpreter, as in the inference environment, which has no torch.
_WITHOUT_TORCH = """
import sys
sys.modules["torch"] = None
from training_scripts.evaluate import main
code = main(sys.argv[1:])
assert "torch" not in [name for name, module in sys.modules.items() if module is not None], "torch was imported"
raise SystemExit(code)
"""


@pytest.mark.parametrize("task", ["image", "text"])
def test_evaluate_step_runs_where_torch_cannot_be_imported(task: str, prepared: Path, tmp_path: Path) -> None:
    if task == "image":
        source = ["--model", str(_image_model(tmp_path / "model")), "--data", str(prepared)]
    else:
        model, table = _text_model_and_table(tmp_path)
        source = ["--model", str(model), "--test-data", str(table)]
    out = tmp_path / "eval"
    result = subprocess.run(
        [sys.executable, "-c", _WITHOUT_TORCH, *source, "--output", str(out)], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    assert json.loads((out / "gate.json").read_text())["passed"] is True
    assert (out / "metrics.json").is_file() and (out / "confusion_matrix.png").is_file()


def test_unknown_test_class_is_a_clear_error(prepared: Path, tmp_path: Path) -> None:
    model = _image_model(tmp_path / "model")
    (model / "labels.json").write_text(json.dumps(["normal", "other"]))
    with pytest.raises(ValueError, match=r"\['pneumonia'\] are not among the model's labels"):
        evaluate_module.evaluate(model, prepared / "test", tmp_path / "out")


def test_gate_verdicts() -> None:
    ok = {"passed": True}
    assert gate_verdict({"macro_f1": 0.81}, "macro_f1", 0.8, ok)["passed"] is True
    low = gate_verdict({"macro_f1": 0.5, "accuracy": 0.95}, "macro_f1", 0.8, ok)
    assert low == {
        "metric": "macro_f1",
        "threshold": 0.8,
        "value": 0.5,
        "passed": False,
        "reason": "macro_f1 0.5000 is below the threshold 0.8000",
    }
    assert "export.json is missing" in gate_verdict({"macro_f1": 0.9}, "macro_f1", 0.5, None)["reason"]
    assert "no test value for auroc" in gate_verdict({"auroc": None}, "auroc", 0.5, ok)["reason"]
    with pytest.raises(ValueError, match="higher-is-better"):
        gate_verdict({"loss": 0.1}, "loss", 0.5, ok)


def test_register_step_promotes_only_a_passed_model(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    model = _image_model(tmp_path / "model")
    evaluation = tmp_path / "evaluation"
    evaluation.mkdir()
    verdict = gate_verdict({"macro_f1": 0.4}, "macro_f1", 0.8, {"passed": True})
    (evaluation / "gate.json").write_text(json.dumps(verdict))
    args = ["--model", str(model), "--evaluation", str(evaluation), "--output", str(tmp_path / "registered")]
    assert gate_main(args) == 1
    assert "gate refused the model: macro_f1 0.4000 is below the threshold 0.8000" in capsys.readouterr().err
    assert not (tmp_path / "registered").exists()

    (evaluation / "gate.json").write_text(json.dumps({**verdict, "passed": True, "reason": "ok"}))
    assert gate_main(args) == 0
    assert sorted(p.name for p in (tmp_path / "registered").iterdir()) == sorted(
        [*(p.name for p in model.iterdir()), "gate.json"]
    )
    (model / "export.json").write_text(json.dumps({"passed": False, "max_abs_diff": 1.0, "tolerance": 1e-4}))
    with pytest.raises(GateRefused, match="parity check failed"):
        promote(model, evaluation, tmp_path / "again")
