"""The one training loop of both scripts: `fit` = `train_one_epoch` + `evaluate` per epoch, with DDP, AMP,
checkpoints every epoch (and every N steps), automatic resume, early stopping and best-model selection.

It trains any `nn.Module` that maps a batch to logits [N, C] on any map-style Dataset whose items are
``(input tensor, int label)``. Typical use (what `train_resnet.py` does)::

    ctx = distributed.init_distributed(args.device)
    engine.seed_everything(config.seed)                      # before building the model: same init on every rank
    model = build_model(...)
    with Tracker("resnet", enabled=ctx.is_main) as tracker:
        result = engine.fit(model, train_ds, val_ds, config, class_names=names, ctx=ctx, task="resnet",
                            checkpoint_dir=out / "checkpoints", tracker=tracker, run_params=vars(args))
        # `model` now holds the best weights (on ctx.device, not wrapped in DDP)
        test = engine.evaluate_dataset(model, test_ds, config, ctx, class_names=names)   # all ranks
        if ctx.is_main:
            torch.save(result.best_state_dict, out / "model.pt")
            (out / "metrics.json").write_text(json.dumps(result.metrics_json(test=test.report)))
    distributed.cleanup(ctx)

Semantics worth knowing:

- Validation runs every epoch on the whole validation set (gathered across ranks, sampler padding dropped).
  ``val_loss`` is the plain mean cross-entropy whatever the imbalance mode, so runs compare with each other.
- Early stopping and best-model selection use the same test: an epoch improves when
  ``val_loss < best_val_loss - min_delta``; after `patience` epochs without improvement training stops
  (patience 0: never). Rank 0's decision is broadcast so every rank stops at the same epoch.
- Schedulers step once per epoch: ``cosine`` = CosineAnnealingLR(T_max=epochs), ``step`` = StepLR(step_size =
  max(1, epochs // 3), gamma 0.1), ``plateau`` = ReduceLROnPlateau on val_loss (factor 0.1, patience
  max(1, patience // 2)), ``none`` = constant.
- Imbalance: ``weighted-loss`` = cross-entropy with inverse-frequency class weights N / (C * n_c) from the training
  labels; ``oversample`` = draw training samples with those weights (with replacement, same epoch length).
- Resume: when `checkpoint_dir` holds a valid checkpoint, `fit` continues from it (model, optimizer, scheduler,
  grad scaler, RNG states, sampler position, history, early-stopping state, best weights, MLflow run). On CPU
  with a fixed seed and num_workers=0 a resumed run ends with exactly the metrics of an uninterrupted one. A
  checkpoint written with a different training configuration is refused (`CheckpointMismatchError`).
- SIGTERM/SIGINT during `fit`'s loop (interrupts.GracefulStop) finish the step in progress (DDP: up to the next
  sync point), checkpoint it, and raise `TrainingInterrupted` (exit code 128 + signal); one arriving during
  validation stops after that epoch's checkpoint. Restarting resumes from there like any other checkpoint.
- A NaN/inf training loss raises `NonFiniteLossError` (epoch and step named); the checkpoints written before it
  stay. Every `TrainingError` has an `exit_code` for the script to exit with.
- On CUDA: autocast in bf16 where supported, else fp16 with a GradScaler (T4); `channels_last` for 4-D inputs
  when asked; pinned memory; persistent workers when num_workers > 0. Only rank 0 checkpoints, tracks and prints.

The loop is `fit` below; its parts live beside it: `train_config` (TrainConfig, the resume identity),
`train_state` (TrainState, the checkpointed position), `loaders`, `optimizers`, `precision` (AMP, channels_last),
`epoch` (train_one_epoch, evaluate), `early_stopping`, `training_errors`; `checkpoint`, `distributed`,
`sampling` and `interrupts` as before. Their public names are importable from here too.
"""

from __future__ import annotations

import copy
import random
import signal
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import Dataset

from training_scripts import early_stopping, fit_run, progress
from training_scripts.distributed import DistContext, all_reduce_sum, broadcast_flag, init_distributed, unwrap
from training_scripts.epoch import EpochEnd, Evaluation, StepControl, evaluate, evaluate_dataset, train_one_epoch
from training_scripts.fit_run import FitRun
from training_scripts.interrupts import GracefulStop
from training_scripts.loaders import dataset_labels, make_eval_loader, make_train_loader, start_train_epoch
from training_scripts.optimizers import SGD_MOMENTUM, build_optimizer, build_scheduler, current_lr, step_scheduler
from training_scripts.precision import BatchTransform, amp_dtype_for
from training_scripts.sampling import class_counts
from training_scripts.tracking import Tracker
from training_scripts.train_config import ImbalanceMode, OptimizerName, SchedulerName, TrainConfig, fingerprint
from training_scripts.train_state import TrainState
from training_scripts.training_errors import (
    CheckpointMismatchError,
    NonFiniteLossError,
    TrainingError,
    TrainingInterrupted,
)

# The engine's public names, wherever they live, for the scripts, tests and benchmarks that use `engine.X`.
__all__ = [
    "SGD_MOMENTUM",
    "CheckpointMismatchError",
    "EpochEnd",
    "Evaluation",
    "FitResult",
    "ImbalanceMode",
    "NonFiniteLossError",
    "OptimizerName",
    "SchedulerName",
    "StepControl",
    "TrainConfig",
    "TrainState",
    "TrainingError",
    "TrainingInterrupted",
    "amp_dtype_for",
    "build_optimizer",
    "build_scheduler",
    "dataset_labels",
    "evaluate",
    "evaluate_dataset",
    "fingerprint",
    "fit",
    "make_eval_loader",
    "make_train_loader",
    "seed_everything",
    "train_one_epoch",
]


@dataclass
class FitResult:
    """What `fit` returns on every rank. `model` itself also holds `best_state_dict` afterwards."""

    best_state_dict: dict[str, torch.Tensor]  # on CPU, no DDP prefix: save as model.pt
    best_epoch: int
    best_val_loss: float
    validation: dict[str, Any]  # the best epoch's validation metrics
    history: list[dict[str, Any]]
    stopped_early: bool
    epochs_run: int
    global_step: int
    resumed_from: Path | None
    run_id: str | None

    def metrics_json(self, test: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """The `metrics.json` document of the output folder (docs/architecture.md)."""
        return {
            "validation": self.validation,
            "test": dict(test) if test is not None else None,
            "best_epoch": self.best_epoch,
            "epochs_run": self.epochs_run,
            "stopped_early": self.stopped_early,
        }


def seed_everything(seed: int) -> None:
    """Python, numpy and torch (CPU and CUDA) RNGs; call before building the model."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def fit(
    model: nn.Module,
    train_data: Dataset[Any],
    val_data: Dataset[Any],
    config: TrainConfig,
    *,
    class_names: Sequence[str],
    ctx: DistContext | None = None,
    task: str = "train",
    checkpoint_dir: Path | None = None,
    tracker: Tracker | None = None,
    train_labels: Sequence[int] | None = None,
    collate_fn: Callable[[list[Any]], Any] | None = None,
    run_params: Mapping[str, Any] | None = None,
    train_batch_transform: BatchTransform | None = None,
    eval_batch_transform: BatchTransform | None = None,
) -> FitResult:
    """Train with validation every epoch, resuming from `checkpoint_dir` when it holds a checkpoint.

    `run_params`: the script's own settings (architecture, data, image size, ...): logged to MLflow and part of
    what a resumed checkpoint must match (leave out paths that may legitimately differ between restarts).
    `tracker`: a `Tracker` to log to (started here with the checkpoint's run when resuming); None = no tracking.
    `train_batch_transform` / `eval_batch_transform`: applied to each training / validation input batch on the
    device before the model (the image cache's augmentation and normalisation); None = the batch as loaded.
    Call on every rank. Afterwards `model` holds the best weights.
    """
    ctx = ctx if ctx is not None else init_distributed(config.device)
    if tracker is None or not ctx.is_main:
        tracker = Tracker(task, enabled=False)  # only rank 0 tracks, whatever the caller passed
    run_params = dict(run_params or {})
    labels = dataset_labels(train_data, train_labels)
    run = fit_run.set_up(
        model, train_data, val_data, config, ctx, class_names, labels, collate_fn, checkpoint_dir, run_params, tracker
    )
    run.eval_batch_transform = eval_batch_transform
    if checkpoint_dir:
        fit_run.resume(run, checkpoint_dir)
    fit_run.check_ranks_resumed_alike(run)
    _start_tracking(run, run_params, labels, len(val_data))  # type: ignore[arg-type]
    progress.emit(
        "start",
        task=task,
        epochs=config.epochs,
        steps_per_epoch=run.steps_per_epoch,
        world_size=ctx.world_size,
        device=str(ctx.device),
    )
    if ctx.distributed:
        # Wrapped only now: building the wrapper broadcasts rank 0's weights, which must be the resumed ones.
        device_ids = [ctx.device.index] if ctx.device.type == "cuda" else None
        run.train_model = nn.parallel.DistributedDataParallel(model, device_ids=device_ids)
    control = _step_control(run)
    control.batch_transform = train_batch_transform

    # Only the training loop stops gracefully; a signal before or after it has its usual effect.
    with GracefulStop(announce=ctx.is_main) as graceful:
        control.stop_requested = lambda: graceful.requested != 0
        while not run.finished:
            epoch_started = time.perf_counter()
            samples_before = run.state.epoch_samples
            ending = _train_epoch(run, control)
            if ending == "interrupted":
                raise _interrupted(run, graceful)
            run.stopped_at_max_steps = ending == "max_steps"
            _end_epoch(run, epoch_started, samples_before)
            # A stop asked for during validation: the epoch's checkpoint is written, so stop here (a rerun
            # resumes at the next epoch, or goes straight to the test split and export after the last one).
            if all_reduce_sum([float(control.stop_requested())], ctx)[0] > 0:
                raise _interrupted(run, graceful)

    return _result(run)


def _start_tracking(run: FitRun, run_params: Mapping[str, Any], labels: np.ndarray, val_samples: int) -> None:
    """Start (or, when resuming, reopen) the MLflow run on rank 0 and log the run's parameters."""
    if not run.ctx.is_main:
        return
    state = run.state
    state.mlflow_run_id = run.tracker.start(resume_run_id=state.mlflow_run_id) or state.mlflow_run_id
    run.tracker.log_params(
        {
            **{key: value for key, value in asdict(run.config).items()},
            **run_params,
            "world_size": run.ctx.world_size,
            "num_classes": len(run.class_names),
            "train_samples": len(labels),
            "val_samples": val_samples,
            "train_class_counts": class_counts(labels, len(run.class_names)).tolist(),
        }
    )


def _step_control(run: FitRun) -> StepControl:
    config = run.config
    return StepControl(
        epochs=config.epochs,
        steps_per_epoch=run.steps_per_epoch,
        log_every=config.log_every_steps,
        checkpoint_every=config.checkpoint_every_steps,
        max_steps=config.max_steps,
        grad_clip=config.grad_clip,
        channels_last=config.channels_last,
        save_checkpoint=partial(fit_run.save_checkpoint, run),
    )


def _train_epoch(run: FitRun, control: StepControl) -> EpochEnd:
    """Train the epoch in progress from where the state stands (mid-epoch after a resume)."""
    state = run.state
    start_train_epoch(run.train_loader, run.train_sampler, run.config, run.ctx, state.epoch, state.step_in_epoch)
    try:
        return train_one_epoch(
            run.train_model,
            run.criterion,
            run.optimizer,
            run.train_loader,
            run.ctx,
            state,
            control,
            scaler=run.scaler,
            amp_dtype=run.amp_dtype,
        )
    except NonFiniteLossError as error:
        error.set_last_checkpoint(run.last_checkpoint)
        raise


def _end_epoch(run: FitRun, epoch_started: float, samples_before: int) -> None:
    """Validate, keep the best weights, step the scheduler, decide on early stopping, checkpoint, and report."""
    config, ctx, state = run.config, run.ctx, run.state
    train_seconds = time.perf_counter() - epoch_started
    epoch_number = state.epoch + 1
    train_loss = state.epoch_loss_sum / state.epoch_samples if state.epoch_samples else float("nan")
    samples_per_s = (state.epoch_samples - samples_before) / train_seconds if train_seconds > 0 else float("nan")
    lr = current_lr(run.optimizer)  # the lr this epoch trained with, before the scheduler steps

    evaluation = run.last_eval = evaluate(
        run.train_model,
        run.val_loader,
        ctx,
        class_names=run.class_names,
        amp_dtype=run.amp_dtype,
        channels_last=config.channels_last,
        batch_transform=run.eval_batch_transform,
    )
    improved = early_stopping.record_validation(
        state, evaluation.loss, epoch_number, evaluation.report, config.min_delta
    )
    if improved:
        run.best_weights = _cpu_state_dict(run.model)
        if run.checkpoints is not None:
            state.best_weights_file = run.checkpoints.save_best_weights(run.best_weights, epoch_number)
    step_scheduler(run.scheduler, config, evaluation.loss)
    report = evaluation.report
    record = {
        "epoch": epoch_number,
        "train_loss": train_loss,
        "val_loss": evaluation.loss,
        "val_accuracy": report["accuracy"],
        "val_balanced_accuracy": report["balanced_accuracy"],
        "val_macro_f1": report["macro_f1"],
        "val_auroc": report["auroc"],
        "lr": lr,
        "samples_per_s": samples_per_s,
        "seconds": time.perf_counter() - epoch_started,
        "partial": run.stopped_at_max_steps,
    }
    state.history.append(record)
    # Rank 0 decides, so every rank stops at the same epoch.
    stop = broadcast_flag(early_stopping.patience_exhausted(state, config.patience), ctx)
    if not run.stopped_at_max_steps:
        # A max_steps stop already checkpointed its mid-epoch position, so a later run resumes from there.
        state.start_next_epoch()
        state.stopped_early = stop
        fit_run.save_checkpoint(run)

    run.tracker.log_metrics(
        {key: value for key, value in record.items() if key not in ("epoch", "partial")}, step=epoch_number
    )
    progress.emit(
        "epoch",
        epoch=epoch_number,
        epochs=config.epochs,
        train_loss=train_loss,
        val_loss=evaluation.loss,
        val_accuracy=report["accuracy"],
        val_macro_f1=report["macro_f1"],
        seconds=round(record["seconds"], 3),
        best=improved,
    )
    if stop and not run.stopped_at_max_steps:
        reason = early_stopping.stop_reason(config.patience, config.min_delta)
        progress.emit("early_stop", epoch=epoch_number, reason=reason)


def _interrupted(run: FitRun, graceful: GracefulStop) -> TrainingInterrupted:
    """The error to stop with after a graceful stop's checkpoint, naming where training stands."""
    signum = graceful.requested or int(signal.SIGTERM)  # another rank may have received it
    return TrainingInterrupted(signum, run.state.epoch + 1, run.state.step_in_epoch, run.last_checkpoint)


def _result(run: FitRun) -> FitResult:
    """Load the best weights into the model and say how training went."""
    state = run.state
    if run.best_weights is None:
        # No epoch ended with a finite validation loss (or a finished max_steps run was started again).
        last_eval = run.last_eval
        if last_eval is None:
            last_eval = evaluate(
                run.model,
                run.val_loader,
                run.ctx,
                class_names=run.class_names,
                amp_dtype=run.amp_dtype,
                channels_last=run.config.channels_last,
                batch_transform=run.eval_batch_transform,
            )
        else:
            progress.warning("validation loss was never finite: returning the last weights, not the best")
        run.best_weights = _cpu_state_dict(run.model)
        state.best_epoch = state.history[-1]["epoch"] if state.history else 0
        state.best_report = last_eval.report
    unwrap(run.model).load_state_dict(run.best_weights)
    return FitResult(
        best_state_dict=run.best_weights,
        best_epoch=state.best_epoch,
        best_val_loss=state.best_val_loss,
        validation=copy.deepcopy(state.best_report) if state.best_report is not None else {},
        history=list(state.history),
        stopped_early=state.stopped_early,
        epochs_run=len({row["epoch"] for row in state.history}),
        global_step=state.global_step,
        resumed_from=run.resumed_from,
        run_id=state.mlflow_run_id,
    )


def _cpu_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    return {key: value.detach().to("cpu", copy=True) for key, value in unwrap(model).state_dict().items()}
