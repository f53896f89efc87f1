"""The pipelines' evaluate step: score the exported ONNX model on the test split and apply the quality gate.

It loads model.onnx, preprocess.json and labels.json (and vocab.json for text) exactly as the scoring scripts do,
runs ONNX Runtime over the test split with the torch-free evaluation preprocessing, and writes into --output:

- metrics.json: the training metrics.json with `test` replaced by what ONNX Runtime measured;
- confusion_matrix.png;
- gate.json: {metric, threshold, value, passed, reason}; the gate also fails when export.json says parity failed.

A model that fails the gate is not an error here (exit 0, the verdict is the output); the register step refuses it.

    python -m training_scripts.evaluate --model MODEL_DIR --data PREPARED_DIR --output OUT \
        --gate-metric macro_f1 --gate-threshold 0.8
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from training_scripts.gate import DEFAULT_GATE_METRIC, GATE_FILE, GATE_METRICS, gate_verdict
from training_scripts.image_transforms import preprocess_images
from training_scripts.model_folder import EXPORT_FILE, LABELS_FILE, METRICS_FILE, ONNX_FILE, read_optional_json
from training_scripts.preprocess_config import (
    IMAGE_TASK,
    ImagePreprocessConfig,
    TextPreprocessConfig,
    load_preprocess_config,
)
from training_scripts.splits import DatasetError
from training_scripts.text_encode import encode_texts
from training_scripts.text_vocab import Vocabulary

CONFUSION_PNG = "confusion_matrix.png"


def _batches(items: Sequence[Any], size: int) -> Iterator[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _softmax(logits: np.ndarray) -> np.ndarray:
    shifted = logits - logits.max(axis=1, keepdims=True)
    exp = np.exp(shifted)
    return exp / exp.sum(axis=1, keepdims=True)


def _label_ids(names: Sequence[str], labels: Sequence[str], source: Path) -> list[int]:
    """Map test labels to the model's logit order; a test set may lack some classes but not add new ones."""
    index = {name: position for position, name in enumerate(labels)}
    unknown = sorted({str(name) for name in names} - set(index))
    if unknown:
        raise DatasetError(f"{source}: classes {unknown[:10]} are not among the model's labels {list(labels)}")
    return [index[str(name)] for name in names]


def _load_session(model_dir: Path) -> Any:
    import onnxruntime as ort

    path = model_dir / ONNX_FILE
    if not path.is_file():
        raise DatasetError(f"{model_dir} has no {ONNX_FILE}; pass the training output folder as --model")
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def _test_path(data: Path | None, split: str, test_data: Path | None, task: str) -> Path:
    if test_data is not None:
        return test_data
    assert data is not None
    from training_scripts.prepare_data import split_path

    return split_path(data, split, "image" if task == IMAGE_TASK else "text")


def predict(
    model_dir: Path, test_path: Path, *, batch_size: int = 32, text_column: str = "text", label_column: str = "label"
) -> tuple[list[int], np.ndarray, list[str], int]:
    """(true label ids, probabilities [N, C], model labels, items skipped) for a test folder or table."""
    cfg = load_preprocess_config(model_dir)
    labels = [str(name) for name in json.loads((model_dir / LABELS_FILE).read_text(encoding="utf-8"))]
    session = _load_session(model_dir)
    input_name = session.get_inputs()[0].name
    chunks: list[np.ndarray] = []
    if isinstance(cfg, ImagePreprocessConfig):
        from training_scripts.image_folder import scan_image_folder

        index = scan_image_folder(test_path)
        y_true = _label_ids([index.classes[label] for _, label in index.samples], labels, test_path)
        paths = [path for path, _ in index.samples]
        for batch in _batches(paths, batch_size):
            chunks.append(session.run(None, {input_name: preprocess_images(batch, cfg)})[0])
        skipped = len(index.skipped)
    else:
        assert isinstance(cfg, TextPreprocessConfig)
        from training_scripts.text_table import read_text_table

        vocab = Vocabulary.load(model_dir)
        table = read_text_table(test_path, text_column, label_column)
        y_true = _label_ids([str(label) for label in table.labels], labels, test_path)
        for batch in _batches(table.texts, batch_size):
            chunks.append(session.run(None, {input_name: encode_texts(batch, vocab, cfg)})[0])
        skipped = len(table.skipped)
    logits = np.concatenate(chunks).astype(np.float64)
    if logits.shape[1] != len(labels):
        raise DatasetError(f"model.onnx returns {logits.shape[1]} logits but labels.json lists {len(labels)} classes")
    return y_true, _softmax(logits), labels, skipped


def evaluate(
    model_dir: Path,
    test_path: Path,
    output: Path,
    *,
    gate_metric: str = DEFAULT_GATE_METRIC,
    gate_threshold: float = 0.0,
    batch_size: int = 32,
    text_column: str = "text",
    label_column: str = "label",
) -> dict[str, Any]:
    """Write metrics.json, confusion_matrix.png and gate.json into `output`; returns the gate verdict."""
    from training_scripts.metrics import classification_report
    from training_scripts.plots import plot_confusion_matrix

    y_true, probs, labels, skipped = predict(
        model_dir, test_path, batch_size=batch_size, text_column=text_column, label_column=label_column
    )
    picked = probs[np.arange(len(y_true)), y_true]
    loss = float(-np.log(np.clip(picked, 1e-12, 1.0)).mean())
    report = classification_report(y_true, probs, labels, loss=loss)
    report["skipped"] = skipped

    trained = read_optional_json(model_dir / METRICS_FILE) or {}
    metrics = {**trained, "test": report, "test_evaluated_with": "onnxruntime"}
    export = read_optional_json(model_dir / EXPORT_FILE)
    verdict = gate_verdict(report, gate_metric, gate_threshold, export)

    output.mkdir(parents=True, exist_ok=True)
    (output / METRICS_FILE).write_text(json.dumps(metrics, indent=2) + "\n", encoding="utf-8")
    (output / GATE_FILE).write_text(json.dumps(verdict, indent=2) + "\n", encoding="utf-8")
    plot_confusion_matrix(report["confusion_matrix"], labels, output / CONFUSION_PNG, title="Test confusion matrix")
    _track(report, verdict, output)
    return verdict


def _track(report: dict[str, Any], verdict: dict[str, Any], output: Path) -> None:
    """Log into the run the caller gave (a pipeline step's child run, or an Azure ML job's run), never a new one."""
    if not os.environ.get("MLFLOW_RUN_ID"):
        return
    from training_scripts.tracking import Tracker

    with Tracker("azure-dl-evaluate") as tracker:
        tracker.log_metrics({f"test_{key}": value for key, value in report.items() if not isinstance(value, dict)})
        tracker.log_metrics({"gate_passed": int(verdict["passed"])})
        tracker.set_tags({"gate": verdict["reason"]})
        tracker.log_artifacts(output, artifact_path="evaluation")


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description="Evaluate an exported ONNX model on the test split; apply the gate.")
    parser.add_argument("--model", type=Path, required=True, help="training output folder (model.onnx, ...)")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--data", type=Path, help="prepare_data output folder (its --split is evaluated)")
    source.add_argument("--test-data", type=Path, help="an image folder or text table to evaluate instead")
    parser.add_argument("--split", default="test", help="which split of --data (default: test)")
    parser.add_argument("--output", type=Path, required=True, help="folder for metrics.json, gate.json and the plot")
    parser.add_argument(
        "--gate-metric", default=DEFAULT_GATE_METRIC, choices=GATE_METRICS, help="gate metric (default: macro_f1)"
    )
    parser.add_argument("--gate-threshold", type=float, default=0.0, help="minimum value to pass (default: 0.0)")
    parser.add_argument("--batch-size", type=int, default=32, help="ONNX Runtime batch size (default: 32)")
    parser.add_argument("--text-column", default="text", help="text column of a table (default: text)")
    parser.add_argument("--label-column", default="label", help="label column of a table (default: label)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = get_args_parser().parse_args(argv)
    try:
        task = load_preprocess_config(args.model).to_dict()["task"]
        test_path = _test_path(args.data, args.split, args.test_data, task)
        verdict = evaluate(
            args.model,
            test_path,
            args.output,
            gate_metric=args.gate_metric,
            gate_threshold=args.gate_threshold,
            batch_size=args.batch_size,
            text_column=args.text_column,
            label_column=args.label_column,
        )
    except (DatasetError, ValueError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"gate {'passed' if verdict['passed'] else 'FAILED'}: {verdict['reason']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
