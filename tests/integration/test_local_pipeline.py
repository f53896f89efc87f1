"""`azure-dl pipeline resnet|lstm --local` end to end on tiny synthetic data, with the real training scripts.

The ResNet pipeline trains once (module fixture); the other tests reuse its cache: a second run reuses every step,
a new gate threshold re-runs only evaluate/register (and the gate refuses the model), and an injected failure
in the first step stops everything after it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from azure_dl.cli.main import main

ROOT = Path(__file__).resolve().parents[2]
TRAINING_SCRIPTS = ("train_resnet.py", "train_lstm.py")

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        not all((ROOT / "training_scripts" / name).is_file() for name in TRAINING_SCRIPTS),
        reason="needs training_scripts/train_resnet.py and train_lstm.py",
    ),
]

# Tiny and fast: 16 px images, one epoch of at most two optimizer steps, no pretrained weights (no download).
RESNET_INPUTS = (
    "epochs=1",
    "train.max_steps=2",
    "image_size=32",
    "batch_size=8",
    "val_fraction=0.2",
    "test_fraction=0.2",
)


def _pipeline(preset: str, out: Path, cache: Path, *inputs: str) -> int:
    # The local profile (ResNet-18 from scratch, ...): with real data a pipeline runs the scenario's settings.
    argv = ["pipeline", preset, "--local", "--profile", "local", "--out", str(out), "--cache-dir", str(cache)]
    for item in inputs:
        argv += ["--input", item]
    return main(argv)


def _record(out: Path) -> dict[str, Any]:
    return json.loads((out / "pipeline_run.json").read_text())


def _statuses(out: Path) -> dict[str, str]:
    return {step["name"]: step["status"] for step in _record(out)["steps"]}


@pytest.fixture(scope="module")
def resnet(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """One full local run of the ResNet pipeline; its step cache is shared by the tests below."""
    from training_scripts.synth import synth_images

    root = tmp_path_factory.mktemp("resnet-pipeline")
    synth_images(root / "data", per_class=10, image_size=16, imbalance=2.0)
    base = (f"data={root / 'data'}", *RESNET_INPUTS)
    with pytest.MonkeyPatch.context() as patch:  # module-scoped: set up before the per-test MLflow store
        patch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{root / 'mlflow.db'}")
        patch.setenv("MLFLOW_REGISTRY_URI", f"sqlite:///{root / 'mlflow.db'}")
        patch.delenv("MLFLOW_RUN_ID", raising=False)
        code = _pipeline("resnet", root / "first", root / "cache", *base, "gate_threshold=0")
    return {"root": root, "code": code, "base": base, "cache": root / "cache", "uri": f"sqlite:///{root / 'mlflow.db'}"}


@pytest.fixture()
def shared_store(resnet: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> str:
    """The module's MLflow store instead of a fresh per-test one (creating a SQLite store costs seconds)."""
    monkeypatch.setenv("MLFLOW_TRACKING_URI", resnet["uri"])
    monkeypatch.setenv("MLFLOW_REGISTRY_URI", resnet["uri"])
    return str(resnet["uri"])


def test_resnet_pipeline_runs_every_step_and_registers_the_model(resnet: dict[str, Any]) -> None:
    import mlflow

    first = resnet["root"] / "first"
    assert resnet["code"] == 0
    record = _record(first)
    assert _statuses(first) == {"prepare": "ran", "train": "ran", "evaluate": "ran", "register": "ran"}
    assert record["registered"]["registered_model"] == {"name": "azure-dl-resnet", "version": "1", "reused": False}

    steps = first / "steps"
    report = json.loads((steps / "prepare" / "outputs" / "prepared" / "prepare_report.json").read_text())
    assert report["classes"] == ["normal", "pneumonia"] and report["totals"]["test"] > 0
    model = steps / "train" / "outputs" / "model"
    for name in ("model.onnx", "labels.json", "preprocess.json", "metrics.json", "export.json"):
        assert (model / name).is_file(), name
    assert not (model / "checkpoints").exists()  # checkpoints went to their own output
    assert any((steps / "train" / "outputs" / "checkpoints").iterdir())
    gate = json.loads((steps / "evaluate" / "outputs" / "evaluation" / "gate.json").read_text())
    assert gate["metric"] == "macro_f1" and gate["passed"] is True
    assert (steps / "register" / "outputs" / "registered_model" / "model.onnx").is_file()

    # The training script logged into the train step's child run of the pipeline's parent run.
    client = mlflow.MlflowClient(tracking_uri=resnet["uri"], registry_uri=resnet["uri"])
    train = next(step for step in record["steps"] if step["name"] == "train")
    run = client.get_run(train["run_id"])
    assert run.data.tags["mlflow.parentRunId"] == record["parent_run_id"]
    assert "val_macro_f1" in run.data.metrics
    assert client.get_model_version("azure-dl-resnet", "1").tags["azure_dl.content_sha256"]


def test_second_run_reuses_every_step(resnet: dict[str, Any], shared_store: str, tmp_path: Path) -> None:
    code = _pipeline("resnet", tmp_path / "again", resnet["cache"], *resnet["base"], "gate_threshold=0")
    assert code == 0
    assert set(_statuses(tmp_path / "again").values()) == {"reused"}
    # The same model content: the registry keeps version 1 instead of adding a copy.
    assert _record(tmp_path / "again")["registered"]["registered_model"] == {
        "name": "azure-dl-resnet",
        "version": "1",
        "reused": True,
    }
    first_model = resnet["root"] / "first" / "steps" / "train" / "outputs" / "model" / "model.onnx"
    again_model = tmp_path / "again" / "steps" / "train" / "outputs" / "model" / "model.onnx"
    assert again_model.samefile(first_model)


def test_raising_the_gate_reruns_only_evaluation_and_refuses_the_model(
    resnet: dict[str, Any], shared_store: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    evaluation = resnet["root"] / "first" / "steps" / "evaluate" / "outputs" / "evaluation"
    value = json.loads((evaluation / "gate.json").read_text())["value"]
    assert value < 0.99, "the tiny model is expected to be imperfect"
    threshold = round(value + 0.01, 4)
    code = _pipeline("resnet", tmp_path / "gated", resnet["cache"], *resnet["base"], f"gate_threshold={threshold}")

    assert code == 1
    assert _statuses(tmp_path / "gated") == {
        "prepare": "reused",
        "train": "reused",
        "evaluate": "ran",
        "register": "failed",
    }
    log = tmp_path / "gated" / "steps" / "register" / "step.log"
    assert f"gate refused the model: macro_f1 {value:.4f} is below the threshold {threshold:.4f}" in log.read_text()
    assert f"step 'register' failed; log: {log}" in capsys.readouterr().err
    assert not _record(tmp_path / "gated")["registered"]
    assert not any((tmp_path / "gated" / "steps" / "register" / "outputs" / "registered_model").iterdir())


def test_a_failing_first_step_stops_the_rest(
    resnet: dict[str, Any], shared_store: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # val + test fractions of 1.0 leave no training data: prepare_data refuses the split.
    inputs = (*resnet["base"], "val_fraction=0.5", "test_fraction=0.5")
    code = _pipeline("resnet", tmp_path / "broken", resnet["cache"], *inputs)

    assert code == 1
    assert _statuses(tmp_path / "broken") == {
        "prepare": "failed",
        "train": "skipped",
        "evaluate": "skipped",
        "register": "skipped",
    }
    log = tmp_path / "broken" / "steps" / "prepare" / "step.log"
    assert "val_fraction + test_fraction must be < 1" in log.read_text()
    assert f"step 'prepare' failed; log: {log}" in capsys.readouterr().err


def test_lstm_pipeline_end_to_end(shared_store: str, tmp_path: Path) -> None:
    from training_scripts.synth import synth_text

    synth_text(tmp_path / "reviews.csv", n=60)
    inputs = (
        f"data={tmp_path / 'reviews.csv'}",
        "epochs=1",
        "train.max_steps=2",
        "seq_len=16",
        "embed_dim=8",
        "hidden_size=8",
        "val_fraction=0.2",
        "test_fraction=0.2",
        "gate_threshold=0",
    )
    assert _pipeline("lstm", tmp_path / "out", tmp_path / "cache", *inputs) == 0
    assert set(_statuses(tmp_path / "out").values()) == {"ran"}
    model = tmp_path / "out" / "steps" / "register" / "outputs" / "registered_model"
    assert {"model.onnx", "vocab.json", "labels.json", "gate.json"} <= {p.name for p in model.iterdir()}
    assert _record(tmp_path / "out")["registered"]["registered_model"]["name"] == "azure-dl-lstm"
