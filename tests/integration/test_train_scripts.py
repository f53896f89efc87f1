"""Both training scripts end to end as subprocesses: the output folder contract and the MLflow run they log."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

from tests.trained import TINY_LSTM_ARGS, TINY_RESNET_ARGS, check_ok, run_script, script_env
from training_scripts.progress import parse_line

pytestmark = pytest.mark.slow

COMMON_FILES = [
    "model.onnx",
    "model.pt",
    "model_config.json",
    "labels.json",
    "preprocess.json",
    "metrics.json",
    "export.json",
]


def _events(stdout: str) -> list[dict[str, object]]:
    return [event for line in stdout.splitlines() if (event := parse_line(line)) is not None]


def _check_output_folder(out: Path, *, input_name: str, input_dtype: str) -> None:
    for name in COMMON_FILES:
        assert (out / name).is_file(), f"{name} missing from {sorted(p.name for p in out.iterdir())}"
    assert sorted(p.name for p in (out / "plots").iterdir()) == ["confusion_matrix.png", "training_curves.png"]
    assert any((out / "checkpoints").glob("ckpt-*.pt"))
    labels = json.loads((out / "labels.json").read_text())
    metrics = json.loads((out / "metrics.json").read_text())
    export = json.loads((out / "export.json").read_text())
    assert metrics["validation"]["confusion_matrix"] and metrics["test"]["per_class"].keys() == set(labels)
    assert export["passed"] is True and export["max_abs_diff"] <= export["tolerance"]
    session = ort.InferenceSession(str(out / "model.onnx"), providers=["CPUExecutionProvider"])
    (inp,) = session.get_inputs()
    (outp,) = session.get_outputs()
    assert (inp.name, inp.type, outp.name, outp.type) == (input_name, input_dtype, "logits", "tensor(float)")
    assert outp.shape[1] == len(labels)


def _only_run(tracking_uri: str, experiment: str):  # type: ignore[no-untyped-def]
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri)
    exp = client.get_experiment_by_name(experiment)
    assert exp is not None, f"no MLflow experiment {experiment}"
    runs = client.search_runs([exp.experiment_id])
    assert len(runs) == 1, [r.info.run_id for r in runs]
    return client, runs[0]


def test_train_resnet_writes_the_output_folder_and_one_mlflow_run(
    tmp_path: Path, synth_image_dir: Path, mlflow_store: str
) -> None:
    out = tmp_path / "out"
    argv = ["--data", str(synth_image_dir), "--output", str(out), "--cache-dir", str(tmp_path / "cache")]
    result = run_script("training_scripts.train_resnet", [*argv, *TINY_RESNET_ARGS], env=script_env(mlflow_store))
    check_ok(result)
    _check_output_folder(out, input_name="pixel_values", input_dtype="tensor(float)")
    assert json.loads((out / "preprocess.json").read_text())["image_size"] == 32
    # The images were decoded once into the cache (the default for image training) and trained from it.
    report = json.loads((out / "data_report.json").read_text())
    cache = report["image_cache"]["train"]
    assert cache["status"] == "built" and cache["images"] == 24 and Path(cache["path"]).parent == tmp_path / "cache"
    assert (report["image_cache_builds"], report["image_cache_hits"], report["skipped_images"]) == (1, 0, 0)

    done = [e for e in _events(result.stdout) if e["event"] == "done"]
    assert len(done) == 1 and done[0]["output"] == str(out.resolve())
    client, run = _only_run(mlflow_store, "azure-dl-resnet")
    assert run.info.run_id == done[0]["run_id"] and run.info.status == "FINISHED"
    assert run.data.params["arch"] == "resnet18" and run.data.params["imbalance"] == "weighted-loss"
    assert run.data.metrics["image_cache_builds"] == 1 and run.data.tags["image_cache"].startswith("train: built")
    assert not any(key.startswith("data_image_cache") for key in run.data.params)  # it changes on a rerun
    history = client.get_metric_history(run.info.run_id, "val_loss")
    assert [m.step for m in history] == [1, 2]
    for key in ("val_macro_f1", "val_balanced_accuracy", "train_loss", "lr", "samples_per_s", "test_macro_f1"):
        assert key in run.data.metrics, key
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id, "model")}
    assert {"model/model.onnx", "model/labels.json", "model/metrics.json", "model/export.json"} <= artifacts
    plots = {a.path for a in client.list_artifacts(run.info.run_id, "plots")}
    assert plots == {"plots/training_curves.png", "plots/confusion_matrix.png"}

    # The same command again: the finished run resumes from its checkpoint and reads the cache built above.
    again = run_script("training_scripts.train_resnet", [*argv, *TINY_RESNET_ARGS], env=script_env(mlflow_store))
    check_ok(again)
    assert "image cache (train): hit" in again.stdout
    assert json.loads((out / "data_report.json").read_text())["image_cache"]["train"]["status"] == "hit"
    rerun = client.get_run(run.info.run_id)  # the resumed run logs into the checkpoint's MLflow run
    assert rerun.data.metrics["image_cache_hits"] == 1 and rerun.data.tags["image_cache"].startswith("train: hit")
    assert "warning" not in again.stdout


def test_train_lstm_writes_vocab_a_dynamic_length_onnx_model_and_logs_into_a_given_run(
    tmp_path: Path, synth_text_file: Path, mlflow_store: str
) -> None:
    from mlflow.tracking import MlflowClient

    client = MlflowClient(mlflow_store)
    run_id = client.create_run("0").info.run_id  # e.g. a pipeline step's run, handed over in MLFLOW_RUN_ID
    out = tmp_path / "out"
    result = run_script(
        "training_scripts.train_lstm",
        ["--data", str(synth_text_file), "--output", str(out), *TINY_LSTM_ARGS],
        env=script_env(mlflow_store, MLFLOW_RUN_ID=run_id),
    )
    check_ok(result)
    _check_output_folder(out, input_name="input_ids", input_dtype="tensor(int64)")
    vocab = json.loads((out / "vocab.json").read_text())
    assert vocab["itos"][:2] == ["<pad>", "<unk>"] and vocab["pad_id"] == 0
    session = ort.InferenceSession(str(out / "model.onnx"), providers=["CPUExecutionProvider"])
    for shape in ((1, 5), (3, 40)):
        logits = session.run(["logits"], {"input_ids": np.ones(shape, dtype=np.int64)})[0]
        assert logits.shape == (shape[0], len(json.loads((out / "labels.json").read_text())))

    done = [e for e in _events(result.stdout) if e["event"] == "done"]
    assert done[0]["run_id"] == run_id
    run = client.get_run(run_id)
    assert run.data.params["seq_len"] == "24" and run.info.status == "FINISHED"
    assert client.get_experiment_by_name("azure-dl-lstm") is None, "no new run when MLFLOW_RUN_ID is set"


def test_bad_data_is_a_clear_error_before_training(tmp_path: Path) -> None:
    (tmp_path / "only_class").mkdir()
    result = run_script("training_scripts.train_resnet", ["--data", str(tmp_path), "--output", str(tmp_path / "o")])
    assert result.returncode == 2
    assert "only one class" in result.stderr and "Traceback" not in result.stderr
    missing = run_script(
        "training_scripts.train_lstm", ["--data", str(tmp_path / "nope.csv"), "--output", str(tmp_path / "o")]
    )
    assert missing.returncode == 2 and "nope.csv" in missing.stderr and "Traceback" not in missing.stderr
