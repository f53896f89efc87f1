"""Tracker: the per-test SQLite store, run choice order, redaction, status on failure, no-mlflow fallback.

Each test that touches the store pays for creating a fresh SQLite schema (seconds on a small machine), so the
store is exercised by two tests that check several things each; the rest runs without a store.
"""

from __future__ import annotations

import sys
from pathlib import Path

import mlflow
import pytest

from training_scripts import progress
from training_scripts.tracking import Tracker, flatten_params, is_secret_key, tracking_uri


def _warnings(text: str) -> list[str]:
    events = [progress.parse_line(line) for line in text.splitlines()]
    return [event["message"] for event in events if event and event["event"] == "warning"]


def test_logs_params_metrics_artifacts_and_tags(
    tmp_path: Path, mlflow_store: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("MLFLOW_EXPERIMENT_NAME", "from-env")
    artifact = tmp_path / "metrics.json"
    artifact.write_text("{}")
    folder = tmp_path / "plots"
    folder.mkdir()
    (folder / "curve.png").write_bytes(b"png")
    with Tracker("from-caller") as tracker:
        tracker.log_params({"lr": 0.1, "model": {"arch": "resnet18", "depth": 18}, "account_key": "s3cr3t"})
        tracker.log_metrics({"val_loss": 0.5, "val_auroc": None}, step=1)
        tracker.log_metrics({"val_loss": 0.25}, step=2)
        tracker.log_artifact(artifact)
        tracker.log_artifacts(folder, artifact_path="plots")
        tracker.set_tags({"task": "resnet"})
        # A failing tracking call warns once and training goes on.
        tracker.log_artifact(tmp_path / "missing-1.txt")
        tracker.log_artifact(tmp_path / "missing-2.txt")
        run_id = tracker.run_id
    assert run_id is not None
    client = mlflow.MlflowClient()
    assert tracker.tracking_uri == mlflow_store
    run = client.get_run(run_id)
    assert run.info.status == "FINISHED"
    assert run.data.params == {"lr": "0.1", "model.arch": "resnet18", "model.depth": "18"}  # no account_key
    assert run.data.tags["task"] == "resnet"
    history = client.get_metric_history(run_id, "val_loss")
    assert [(m.step, m.value) for m in history] == [(1, 0.5), (2, 0.25)]
    assert "val_auroc" not in run.data.metrics
    assert {item.path for item in client.list_artifacts(run_id)} == {"metrics.json", "plots"}
    assert client.get_experiment(run.info.experiment_id).name == "from-env"
    # Artifacts of a new experiment on a SQLite store live beside the database, not in the working directory.
    assert (Path(mlflow_store.removeprefix("sqlite:///")).parent / "mlartifacts").is_dir()
    warnings = _warnings(capsys.readouterr().out)
    assert len(warnings) == 1 and "log_artifact" in warnings[0]


def test_run_choice_env_beats_checkpoint_beats_new_and_failure_is_recorded(monkeypatch: pytest.MonkeyPatch) -> None:
    client = mlflow.MlflowClient()
    with Tracker("unit-exp") as first:
        first.start()
    with pytest.raises(RuntimeError), Tracker("unit-exp") as second:
        second.start()
        raise RuntimeError("boom")
    assert first.run_id is not None and second.run_id is not None
    assert client.get_run(second.run_id).info.status == "FAILED"
    # The checkpoint's run is reopened when no MLFLOW_RUN_ID is set.
    with Tracker("unit-exp") as resumed:
        assert resumed.start(resume_run_id=first.run_id) == first.run_id
    # MLFLOW_RUN_ID wins over the checkpoint's run.
    monkeypatch.setenv("MLFLOW_RUN_ID", second.run_id)
    with Tracker("unit-exp") as from_env:
        assert from_env.start(resume_run_id=first.run_id) == second.run_id
    monkeypatch.delenv("MLFLOW_RUN_ID", raising=False)  # mlflow's end_run may already have removed it
    # A checkpoint run the store does not know: a warning and a new run.
    with Tracker("unit-exp") as fresh:
        new_id = fresh.start(resume_run_id="0" * 32)
    assert new_id not in (None, first.run_id, second.run_id)
    assert client.get_run(first.run_id).info.status == "FINISHED"


def test_default_uri_is_an_absolute_sqlite_file_in_the_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("MLFLOW_TRACKING_URI")
    monkeypatch.chdir(tmp_path)
    assert tracking_uri() == f"sqlite:///{tmp_path.resolve()}/mlflow.db"


@pytest.mark.parametrize(
    "key",
    ["api_key", "sas_token", "DB_PASSWORD", "storage.AccountKey", "connection_string", "clientSecret", "pwd", "Key"],
)
def test_secret_keys_are_recognised(key: str) -> None:
    assert is_secret_key(key)


@pytest.mark.parametrize("key", ["lr", "keep_checkpoints", "monkey", "max_tokens", "author", "data"])
def test_ordinary_keys_are_not_secret(key: str) -> None:
    assert not is_secret_key(key)


def test_flatten_drops_secret_keys_and_redacts_secret_values() -> None:
    flat = flatten_params(
        {
            "data": "https://acct.blob.core.windows.net/c/x?sv=2022&sig=abc123",
            "conn": "DefaultEndpointsProtocol=https;AccountName=a;AccountKey=xyz==",
            "nested": {"api_token": "t", "epochs": 3},
            "note": "x" * 7000,
        }
    )
    assert flat["data"] == "<redacted>"
    assert flat["conn"] == "<redacted>"
    assert "nested.api_token" not in flat
    assert flat["nested.epochs"] == "3"
    assert len(flat["note"]) == 6000
    assert not any("abc123" in value or "xyz" in value for value in flat.values())


def test_disabled_tracker_touches_no_store(mlflow_store: str) -> None:
    with Tracker("unit-exp", enabled=False) as tracker:
        tracker.log_params({"lr": 1})
        tracker.log_metrics({"loss": 1.0}, step=1)
    assert tracker.run_id is None
    assert not Path(mlflow_store.removeprefix("sqlite:///")).exists()


def test_without_mlflow_it_is_a_no_op_with_one_warning(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], mlflow_store: str
) -> None:
    monkeypatch.setitem(sys.modules, "mlflow", None)  # `import mlflow` raises ImportError
    with Tracker("unit-exp") as tracker:
        tracker.start()
        tracker.log_params({"lr": 1})
        tracker.log_metrics({"loss": 1.0}, step=1)
        tracker.log_artifact("/nonexistent")
    warnings = _warnings(capsys.readouterr().out)
    assert len(warnings) == 1 and "mlflow is not installed" in warnings[0]
    assert tracker.run_id is None
    assert not Path(mlflow_store.removeprefix("sqlite:///")).exists()
