"""engine.fit on toy problems: learning, early stopping, imbalance modes, NaN stop, exact resume, tracking."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from tests.toy_training import Blobs, FailAfter, Interrupted, ToyNet, class_names
from training_scripts import engine, progress
from training_scripts.checkpoint import latest_valid_checkpoint
from training_scripts.distributed import DistContext
from training_scripts.plots import write_plots
from training_scripts.tracking import Tracker


@pytest.fixture(autouse=True, scope="module")
def one_torch_thread() -> Any:
    """Tiny models on a shared 2-core machine run several times faster on one thread than on two."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


CPU = DistContext(rank=0, world_size=1, local_rank=0, device=torch.device("cpu"))
NAMES = class_names(3)


def _config(**overrides: Any) -> engine.TrainConfig:
    settings: dict[str, Any] = {"epochs": 4, "batch_size": 8, "lr": 0.05, "patience": 0, "log_every_steps": 2}
    settings.update(overrides)
    return engine.TrainConfig(**settings)


def _fit(config: engine.TrainConfig, train: Any = None, **kwargs: Any) -> tuple[engine.FitResult, ToyNet]:
    engine.seed_everything(config.seed)
    model = ToyNet()
    train_data = train if train is not None else Blobs(60, seed=1)
    result = engine.fit(model, train_data, Blobs(30, seed=2), config, class_names=NAMES, ctx=CPU, **kwargs)
    return result, model


def _events(text: str) -> list[dict[str, Any]]:
    return [event for event in map(progress.parse_line, text.splitlines()) if event is not None]


def _comparable(result: engine.FitResult) -> dict[str, Any]:
    """Everything that must match between a resumed and an uninterrupted run (timings excluded)."""
    return {
        "validation": result.validation,
        "history": [{k: v for k, v in row.items() if k not in ("seconds", "samples_per_s")} for row in result.history],
        "best_epoch": result.best_epoch,
        "global_step": result.global_step,
        "weights": {key: value.tolist() for key, value in result.best_state_dict.items()},
    }


def test_learns_a_separable_problem_and_reports_progress(capsys: pytest.CaptureFixture[str]) -> None:
    result, model = _fit(_config(epochs=5))
    assert result.validation["accuracy"] >= 0.95
    assert result.history[-1]["train_loss"] < result.history[0]["train_loss"]
    assert result.epochs_run == 5 and not result.stopped_early
    assert set(result.validation) >= {"loss", "accuracy", "balanced_accuracy", "macro_f1", "auroc", "per_class"}
    # The model now holds the best weights: evaluating it again gives the best epoch's validation metrics.
    again = engine.evaluate_dataset(model, Blobs(30, seed=2), _config(), CPU, class_names=NAMES)
    assert again.report == result.validation
    test = engine.evaluate_dataset(model, Blobs(25, seed=3), _config(), CPU, class_names=NAMES)
    document = result.metrics_json(test=test.report)
    assert json.loads(json.dumps(document))["test"]["num_samples"] == 25
    assert document["best_epoch"] == result.best_epoch

    events = _events(capsys.readouterr().out)
    kinds = [event["event"] for event in events]
    assert kinds[0] == "start" and kinds.count("epoch") == 5 and "step" in kinds
    assert events[0] == {
        "event": "start",
        "task": "train",
        "epochs": 5,
        "steps_per_epoch": 8,
        "world_size": 1,
        "device": "cpu",
    }


def test_early_stopping_stops_after_patience_epochs(capsys: pytest.CaptureFixture[str]) -> None:
    # lr 0: the validation loss never changes, so no epoch after the first improves.
    result, _ = _fit(_config(epochs=10, lr=0.0, patience=2))
    assert result.stopped_early
    assert result.epochs_run == 3
    assert result.best_epoch == 1
    stops = [event for event in _events(capsys.readouterr().out) if event["event"] == "early_stop"]
    assert [event["epoch"] for event in stops] == [3]


def test_min_delta_makes_small_improvements_not_count() -> None:
    result, _ = _fit(_config(epochs=10, patience=1, min_delta=10.0))
    assert result.stopped_early and result.epochs_run == 2 and result.best_epoch == 1


@pytest.mark.parametrize("mode", ["weighted-loss", "oversample"])
def test_imbalance_modes_shift_predictions_towards_the_minority(mode: str) -> None:
    # 90/10 with overlapping classes: plain training mostly predicts the majority class.
    train = Blobs(200, num_classes=2, noise=3.0, proportions=[0.9, 0.1], seed=11)
    val = Blobs(200, num_classes=2, noise=3.0, proportions=[0.9, 0.1], seed=12)
    names = class_names(2)
    minority_prob, minority_recall = {}, {}
    for imbalance in ("none", mode):
        config = _config(epochs=3, batch_size=16, lr=0.02, imbalance=imbalance, seed=1)
        engine.seed_everything(1)
        model = ToyNet(num_classes=2)
        result = engine.fit(model, train, val, config, class_names=names, ctx=CPU)
        evaluation = engine.evaluate_dataset(model, val, config, CPU, class_names=names)
        minority_prob[imbalance] = float(evaluation.probs[:, 1].mean())
        minority_recall[imbalance] = result.validation["per_class"]["class_1"]["recall"]
    assert minority_prob[mode] > minority_prob["none"] + 0.02
    assert minority_recall[mode] > minority_recall["none"]


def test_nan_loss_stops_with_a_clear_error_and_keeps_the_last_good_checkpoint(tmp_path: Path) -> None:
    # 60 samples / batch 8 = 8 steps per epoch; inputs turn NaN from the 70th item fetched (epoch 2, step 1).
    train = FailAfter(Blobs(60, seed=1), after=69, mode="nan")
    with pytest.raises(engine.NonFiniteLossError) as caught:
        _fit(_config(log_every_steps=4), train=train, checkpoint_dir=tmp_path)
    error = caught.value
    assert (error.epoch, error.step, error.global_step) == (2, 2, 10)
    message = str(error)
    assert "epoch 2, step 2" in message and "ckpt-e0001-s00000008.pt" in message
    assert error.exit_code != 0
    found = latest_valid_checkpoint(tmp_path)
    assert found is not None and found.path.name == "ckpt-e0001-s00000008.pt"
    assert all(torch.isfinite(value).all() for value in found.state["model"].values())


@pytest.fixture(scope="module")
def uninterrupted() -> dict[str, Any]:
    torch.manual_seed(0)
    result, _ = _fit(_config(scheduler="cosine", checkpoint_every_steps=3))
    return _comparable(result)


def test_resume_after_an_interruption_ends_exactly_like_an_uninterrupted_run(
    tmp_path: Path, uninterrupted: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    config = _config(scheduler="cosine", checkpoint_every_steps=3)
    # 60 items an epoch in 8 steps: dies while fetching global step 21 (epoch 3, step 5); the last checkpoint is at 18.
    with pytest.raises(Interrupted):
        _fit(config, train=FailAfter(Blobs(60, seed=1), after=19 * 8), checkpoint_dir=tmp_path)
    capsys.readouterr()

    result, _ = _fit(config, checkpoint_dir=tmp_path)

    assert result.resumed_from is not None and result.resumed_from.name == "ckpt-e0002-s00000018.pt"
    out = capsys.readouterr().out
    assert f"resuming from checkpoint {result.resumed_from} at epoch 3, step 2" in out
    resume_events = [event for event in _events(out) if event["event"] == "resume"]
    assert resume_events == [{"event": "resume", "checkpoint": str(result.resumed_from), "epoch": 3, "step": 2}]
    assert _comparable(result) == uninterrupted

    # Starting the finished run again changes nothing.
    again, _ = _fit(config, checkpoint_dir=tmp_path)
    assert _comparable(again) == uninterrupted


def test_sigterm_checkpoints_the_step_it_arrives_in_and_a_resume_ends_like_an_uninterrupted_run(
    tmp_path: Path, uninterrupted: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    config = _config(scheduler="cosine", checkpoint_every_steps=3)
    # 60 items an epoch in 8 steps (7 x 8 + 4). SIGTERM while fetching the first item of epoch 3, step 4 (global
    # step 20): that step completes, is checkpointed, and training stops.
    after = 2 * 60 + 3 * 8
    with pytest.raises(engine.TrainingInterrupted) as stopped:
        _fit(config, train=FailAfter(Blobs(60, seed=1), after=after, mode="sigterm"), checkpoint_dir=tmp_path)
    checkpoint = tmp_path / "ckpt-e0002-s00000020.pt"
    assert stopped.value.exit_code == 143 and stopped.value.mlflow_status == "KILLED"
    assert str(stopped.value) == (
        f"stopped by SIGTERM at epoch 3, step 4; checkpoint {checkpoint} written: "
        "run the same command again to resume from there"
    )
    assert "received SIGTERM" in capsys.readouterr().out

    result, _ = _fit(config, checkpoint_dir=tmp_path)
    assert result.resumed_from == checkpoint
    assert _comparable(result) == uninterrupted


def test_resume_after_a_max_steps_stop_ends_exactly_like_an_uninterrupted_run(
    tmp_path: Path, uninterrupted: dict[str, Any]
) -> None:
    first, _ = _fit(_config(scheduler="cosine", checkpoint_every_steps=3, max_steps=13), checkpoint_dir=tmp_path)
    assert first.global_step == 13 and first.history[-1]["partial"]
    result, _ = _fit(_config(scheduler="cosine", checkpoint_every_steps=3), checkpoint_dir=tmp_path)
    assert result.resumed_from is not None and result.resumed_from.name == "ckpt-e0001-s00000013.pt"
    assert _comparable(result) == uninterrupted


def test_a_checkpoint_of_another_configuration_is_refused(tmp_path: Path) -> None:
    _fit(_config(epochs=1), checkpoint_dir=tmp_path)
    with pytest.raises(engine.CheckpointMismatchError, match=r"lr: 0\.05 -> 0\.1"):
        _fit(_config(epochs=2, lr=0.1), checkpoint_dir=tmp_path)
    # More epochs with an unchanged configuration simply continue.
    longer, _ = _fit(_config(epochs=2), checkpoint_dir=tmp_path)
    assert longer.epochs_run == 2 and longer.resumed_from is not None


def test_a_checkpoint_holds_exactly_the_entries_a_resume_reads(tmp_path: Path) -> None:
    # Checkpoints written by earlier versions must keep resuming: renaming or dropping an entry breaks them.
    _fit(_config(epochs=1, scheduler="cosine"), checkpoint_dir=tmp_path)
    saved = latest_valid_checkpoint(tmp_path)
    assert saved is not None
    assert set(saved.state) == {
        "format_version",
        "model",
        "optimizer",
        "scheduler",
        "scaler",
        "train_state",
        "rng",
        "config_identity",
        "config_fingerprint",
        "best_weights_file",
        "mlflow_run_id",
    }
    assert set(saved.state["train_state"]) == {
        "epoch",
        "step_in_epoch",
        "global_step",
        "epoch_loss_sum",
        "epoch_samples",
        "best_val_loss",
        "best_epoch",
        "bad_epochs",
        "best_report",
        "best_weights_file",
        "stopped_early",
        "history",
        "mlflow_run_id",
    }
    assert set(saved.state["rng"]) == {"python", "numpy", "torch", "cuda"}
    assert saved.state["scheduler"] is not None and saved.state["scaler"] is None  # no GradScaler on CPU
    assert saved.state["config_fingerprint"] == engine.fingerprint(saved.state["config_identity"])
    # An entry this version does not know is ignored; one it misses takes its default.
    state = engine.TrainState.from_dict({**saved.state["train_state"], "unknown": 1, "epoch": 1})
    assert state.epoch == 1 and engine.TrainState.from_dict({}).best_epoch == 0


class RecordingTracker(Tracker):
    """Records what the engine asks of its tracker (the MLflow side is tested in test_tracking.py)."""

    def __init__(self, run_id: str) -> None:
        super().__init__("engine-test", enabled=False)
        self.new_run_id = run_id
        self.calls: list[tuple[str, Any]] = []

    def start(self, resume_run_id: str | None = None) -> str | None:
        self.calls.append(("start", resume_run_id))
        self.run_id = resume_run_id or self.new_run_id
        return self.run_id

    def log_params(self, params: Any) -> None:
        self.calls.append(("params", dict(params)))

    def log_metrics(self, metrics: Any, step: int | None = None) -> None:
        self.calls.append(("metrics", (step, dict(metrics))))


def test_tracking_gets_params_and_each_epoch_and_a_resume_reopens_the_run(tmp_path: Path) -> None:
    tracker = RecordingTracker("run-1")
    result, _ = _fit(_config(epochs=2), checkpoint_dir=tmp_path / "ckpt", tracker=tracker, run_params={"arch": "toy"})
    assert tracker.calls[0] == ("start", None)
    params = dict(tracker.calls)["params"]
    assert params["arch"] == "toy" and params["lr"] == 0.05 and params["train_class_counts"] == [19, 19, 22]
    logged = [value for kind, value in tracker.calls if kind == "metrics"]
    assert [step for step, _ in logged] == [1, 2]
    assert [metrics["val_loss"] for _, metrics in logged] == [row["val_loss"] for row in result.history]
    assert result.run_id == "run-1"
    saved = latest_valid_checkpoint(tmp_path / "ckpt")
    assert saved is not None and saved.state["mlflow_run_id"] == "run-1"

    resumed_tracker = RecordingTracker("run-2")
    longer, _ = _fit(
        _config(epochs=3), checkpoint_dir=tmp_path / "ckpt", tracker=resumed_tracker, run_params={"arch": "toy"}
    )
    assert resumed_tracker.calls[0] == ("start", "run-1")
    assert longer.run_id == "run-1"

    paths = write_plots(longer.history, longer.validation["confusion_matrix"], NAMES, tmp_path / "plots")
    assert [path.name for path in paths] == ["training_curves.png", "confusion_matrix.png"]
    assert all(path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for path in paths)


def test_training_labels_come_from_the_dataset(capsys: pytest.CaptureFixture[str]) -> None:
    blobs = Blobs(10, seed=1)
    assert engine.dataset_labels(blobs).tolist() == blobs.labels
    subset = torch.utils.data.Subset(blobs, [3, 1])
    assert engine.dataset_labels(subset).tolist() == [blobs.labels[3], blobs.labels[1]]
    plain = torch.utils.data.TensorDataset(torch.zeros(3, 2), torch.tensor([2, 0, 1]))
    assert engine.dataset_labels(plain).tolist() == [2, 0, 1]
    assert "no `labels` attribute" in capsys.readouterr().out
    plain.labels = np.array([1, 1, 0])  # type: ignore[attr-defined]
    assert engine.dataset_labels(plain).tolist() == [1, 1, 0]


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"optimizer": "rmsprop"}, "optimizer='rmsprop' is not one of adam, sgd"),
        ({"scheduler": "linear"}, "scheduler='linear' is not one of"),
        ({"imbalance": "smote"}, "imbalance='smote'"),
        ({"epochs": 0}, "epochs=0 must be at least 1"),
        ({"patience": -1}, "patience=-1 must not be negative"),
        ({"lr": float("nan")}, "lr=nan"),
    ],
)
def test_bad_configuration_is_named(overrides: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        engine.TrainConfig(**overrides)


def test_sgd_and_schedulers_run() -> None:
    for scheduler in ("step", "plateau"):
        result, _ = _fit(_config(epochs=3, optimizer="sgd", scheduler=scheduler, grad_clip=1.0))
        assert np.isfinite([row["train_loss"] for row in result.history]).all()
    step_result, _ = _fit(_config(epochs=3, optimizer="sgd", scheduler="step"))
    # StepLR(step_size=max(1, 3 // 3)) divides the lr by 10 after every epoch.
    assert [row["lr"] for row in step_result.history] == pytest.approx([0.05, 0.005, 0.0005])


def test_an_interruption_message_says_where_training_stopped(tmp_path: Path) -> None:
    mid = engine.TrainingInterrupted(15, epoch=3, step=4, checkpoint=tmp_path / "ckpt.pt")
    assert str(mid).startswith("stopped by SIGTERM at epoch 3, step 4; checkpoint ")
    boundary = engine.TrainingInterrupted(2, epoch=3, step=0, checkpoint=None)
    assert str(boundary) == "stopped by SIGINT after epoch 2; no checkpoint directory, so nothing was saved"
    assert (mid.exit_code, boundary.exit_code) == (143, 130)


def test_sigterm_during_validation_stops_after_that_epochs_checkpoint(
    tmp_path: Path, uninterrupted: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    config = _config(scheduler="cosine", checkpoint_every_steps=3)
    engine.seed_everything(config.seed)
    signalling_val = FailAfter(Blobs(30, seed=2), after=0, mode="sigterm")  # on the first validation item
    with pytest.raises(engine.TrainingInterrupted, match="stopped by SIGTERM after epoch 1; checkpoint "):
        engine.fit(
            ToyNet(), Blobs(60, seed=1), signalling_val, config, class_names=NAMES, ctx=CPU, checkpoint_dir=tmp_path
        )
    capsys.readouterr()

    result, _ = _fit(config, checkpoint_dir=tmp_path)
    assert result.resumed_from == tmp_path / "ckpt-e0001-s00000008.pt"
    assert _comparable(result) == uninterrupted
