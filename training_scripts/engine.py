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
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import json
import math
import random
import signal
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Dataset, Subset

from training_scripts import progress
from training_scripts.checkpoint import (
    CheckpointManager,
    capture_rng_state,
    latest_valid_checkpoint,
    restore_rng_state,
)
from training_scripts.distributed import (
    DistContext,
    all_reduce_sum,
    broadcast_flag,
    broadcast_int,
    gather_rows,
    init_distributed,
    unwrap,
)
from training_scripts.interrupts import GracefulStop, ignore_in_worker
from training_scripts.metrics import classification_report
from training_scripts.sampling import ResumableSampler, balancing_weights, class_counts
from training_scripts.tracking import Tracker

OptimizerName = Literal["adam", "sgd"]
SchedulerName = Literal["none", "cosine", "step", "plateau"]
ImbalanceMode = Literal["none", "weighted-loss", "oversample"]
SGD_MOMENTUM = 0.9


class TrainingError(RuntimeError):
    """A training failure the script turns into a message and `exit_code` (no traceback needed)."""

    exit_code = 1


class NonFiniteLossError(TrainingError):
    exit_code = 3

    def __init__(self, value: float, epoch: int, step: int, global_step: int) -> None:
        self.value, self.epoch, self.step, self.global_step = value, epoch, step, global_step
        self.last_checkpoint: Path | None = None
        super().__init__(self._message())

    def _message(self) -> str:
        kept = f"the last good checkpoint is {self.last_checkpoint}" if self.last_checkpoint else "no checkpoint"
        return (
            f"training loss became {self.value} at epoch {self.epoch}, step {self.step} (global step "
            f"{self.global_step}); training stopped and {kept} was kept. Lower --lr, set --grad-clip, or turn off "
            "mixed precision, then run again."
        )

    def set_last_checkpoint(self, path: Path | None) -> None:
        self.last_checkpoint = path
        self.args = (self._message(),)


class TrainingInterrupted(TrainingError):
    """SIGTERM/SIGINT stopped training at a step boundary, after a checkpoint there (see interrupts.py)."""

    mlflow_status = "KILLED"  # not a failure: the same command resumes it into the same MLflow run

    def __init__(self, signum: int, epoch: int, step: int, checkpoint: Path | None) -> None:
        """`epoch` 1-based; `step` within it, 0 = stopped at the end of the epoch before (after its validation)."""
        self.exit_code = 128 + signum  # the shell's convention for "stopped by signal N": 143 SIGTERM, 130 SIGINT
        name = signal.Signals(signum).name
        where = f"at epoch {epoch}, step {step}" if step > 0 else f"after epoch {epoch - 1}"
        if checkpoint is not None:
            advice = f"checkpoint {checkpoint} written: run the same command again to resume from there"
        else:
            advice = "no checkpoint directory, so nothing was saved"
        super().__init__(f"stopped by {name} {where}; {advice}")


class CheckpointMismatchError(TrainingError):
    exit_code = 2


@dataclass
class TrainConfig:
    """Everything `fit` needs to know besides the model and the data. Defaults suit a small fine-tune."""

    epochs: int = 10
    batch_size: int = 32
    lr: float = 1e-3
    optimizer: OptimizerName = "adam"  # sgd uses momentum 0.9
    weight_decay: float = 0.0
    scheduler: SchedulerName = "none"
    patience: int = 5  # epochs without val_loss improvement before stopping; 0 = never stop early
    min_delta: float = 0.0  # improvement smaller than this does not count
    grad_clip: float = 0.0  # max global grad norm; 0 = no clipping
    max_steps: int = 0  # stop after this many optimizer steps (smoke runs); 0 = no limit
    checkpoint_every_steps: int = 0  # also checkpoint every N optimizer steps; 0 = only at epoch ends
    keep_checkpoints: int = 2
    log_every_steps: int = 10  # a `step` progress event every N steps (rank 0)
    seed: int = 0
    num_workers: int = 0
    imbalance: ImbalanceMode = "none"
    amp: bool = True  # mixed precision on CUDA (bf16 where supported, else fp16 + GradScaler); ignored on CPU
    channels_last: bool = False  # channels_last memory format for the model and 4-D inputs (CNNs on GPU)
    device: str | None = None  # None/"auto": CUDA when available; used when `fit` is given no DistContext

    def __post_init__(self) -> None:
        choices: dict[str, tuple[str, ...]] = {
            "optimizer": ("adam", "sgd"),
            "scheduler": ("none", "cosine", "step", "plateau"),
            "imbalance": ("none", "weighted-loss", "oversample"),
        }
        for name, allowed in choices.items():
            if getattr(self, name) not in allowed:
                raise ValueError(f"{name}={getattr(self, name)!r} is not one of {', '.join(allowed)}")
        positive = ("epochs", "batch_size", "keep_checkpoints", "log_every_steps")
        for name in positive:
            if getattr(self, name) < 1:
                raise ValueError(f"{name}={getattr(self, name)} must be at least 1")
        non_negative = ("weight_decay", "patience", "min_delta", "grad_clip", "max_steps", "checkpoint_every_steps")
        for name in (*non_negative, "num_workers"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name}={getattr(self, name)} must not be negative")
        if not self.lr >= 0 or not math.isfinite(self.lr):
            raise ValueError(f"lr={self.lr} must be a finite number >= 0")

    def identity(self, world_size: int, class_names: Sequence[str], run_params: Mapping[str, Any]) -> dict[str, str]:
        """What a checkpoint must agree on to be resumed: whatever changes the optimisation trajectory."""
        keys = ["batch_size", "lr", "optimizer", "weight_decay", "scheduler", "min_delta", "grad_clip", "seed"]
        keys += ["imbalance", "amp"]
        if self.scheduler in ("cosine", "step"):
            keys.append("epochs")  # the schedule's length depends on it
        if self.scheduler == "plateau":
            keys.append("patience")
        identity = {key: json.dumps(getattr(self, key)) for key in keys}
        identity["world_size"] = str(world_size)
        identity["class_names"] = json.dumps(list(class_names))
        for key, value in sorted(run_params.items()):
            identity[f"run.{key}"] = json.dumps(value, sort_keys=True, default=str)
        return identity


def fingerprint(identity: Mapping[str, str]) -> str:
    return hashlib.sha256(json.dumps(dict(identity), sort_keys=True).encode()).hexdigest()[:16]


@dataclass
class TrainState:
    """The loop's position and memory; saved in every checkpoint (plain numbers, strings, lists, dicts)."""

    epoch: int = 0  # 0-based index of the epoch in progress (== epochs run when between epochs)
    step_in_epoch: int = 0  # optimizer steps done in that epoch
    global_step: int = 0
    epoch_loss_sum: float = 0.0  # sample-weighted train-loss sum of the epoch so far, over all ranks
    epoch_samples: int = 0
    best_val_loss: float = math.inf
    best_epoch: int = 0  # 1-based; 0 = none yet
    bad_epochs: int = 0
    best_report: dict[str, Any] | None = None
    best_weights_file: str | None = None
    stopped_early: bool = False
    history: list[dict[str, Any]] = field(default_factory=list)
    mlflow_run_id: str | None = None

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TrainState:
        known = {f.name for f in fields(cls)}
        return cls(**{key: value for key, value in data.items() if key in known})


@dataclass
class Evaluation:
    loss: float
    report: dict[str, Any]  # a metrics.json metrics dict (metrics.classification_report)
    probs: np.ndarray  # [N, C] in dataset order, on every rank
    labels: np.ndarray  # [N]


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


def _has_labels(dataset: Any) -> bool:
    return any(getattr(dataset, name, None) is not None for name in ("labels", "targets")) or (
        isinstance(dataset, Subset) and _has_labels(dataset.dataset)
    )


def dataset_labels(dataset: Dataset[Any], labels: Sequence[int] | None = None) -> np.ndarray:
    """The training labels: given, else `dataset.labels` / `dataset.targets` (also through a `Subset`), else read
    item by item (slow for images: give datasets a `labels` attribute)."""
    for attribute in ("labels", "targets"):
        if labels is None:
            labels = getattr(dataset, attribute, None)  # may be a list, a numpy array or a tensor
    if labels is None and isinstance(dataset, Subset):
        inner = dataset_labels(dataset.dataset) if _has_labels(dataset.dataset) else None
        if inner is not None:
            return inner[np.asarray(dataset.indices, dtype=np.int64)]
    if labels is None:
        size = len(dataset)  # type: ignore[arg-type]
        progress.warning(
            f"the training dataset has no `labels` attribute: reading all {size} items once to count classes"
        )
        labels = [int(dataset[index][1]) for index in range(size)]
    return np.asarray(labels, dtype=np.int64).reshape(-1)


def amp_dtype_for(device: torch.device, enabled: bool) -> torch.dtype | None:
    """bf16 where the GPU has it, else fp16 (T4, V100); None (full precision) on CPU or when disabled."""
    if not enabled or device.type != "cuda":
        return None
    return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16


def _autocast(device: torch.device, dtype: torch.dtype | None) -> contextlib.AbstractContextManager[Any]:
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


def _loader(
    dataset: Dataset[Any],
    sampler: ResumableSampler,
    config: TrainConfig,
    ctx: DistContext,
    collate_fn: Callable[[list[Any]], Any] | None,
    *,
    generator: torch.Generator | None = None,
    drop_last: bool = False,
) -> DataLoader[Any]:
    workers = config.num_workers
    return DataLoader(
        dataset,
        batch_size=config.batch_size,
        sampler=sampler,
        num_workers=workers,
        collate_fn=collate_fn,
        pin_memory=ctx.device.type == "cuda",
        persistent_workers=workers > 0,
        worker_init_fn=ignore_in_worker if workers > 0 else None,
        generator=generator,
        drop_last=drop_last,
    )


def make_train_loader(
    dataset: Dataset[Any],
    config: TrainConfig,
    ctx: DistContext,
    labels: np.ndarray,
    num_classes: int,
    collate_fn: Callable[[list[Any]], Any] | None = None,
) -> tuple[DataLoader[Any], ResumableSampler]:
    """Shuffled (or class-balanced) and sharded over ranks; call `sampler.set_epoch(epoch)` every epoch."""
    weights = balancing_weights(labels, num_classes) if config.imbalance == "oversample" else None
    sampler = ResumableSampler(
        len(labels),
        num_replicas=ctx.world_size,
        rank=ctx.rank,
        shuffle=True,
        seed=config.seed,
        labels=labels if weights is not None else None,
        class_weights=weights,
    )
    # A last batch of one sample breaks BatchNorm in training mode; drop it only in that case.
    drop_last = sampler.shard_size % config.batch_size == 1 and sampler.shard_size > 1
    # Its own generator keeps DataLoader iterator creation from consuming the global torch RNG, which a
    # resumed run restores exactly; it is reseeded per epoch in `fit`.
    generator = torch.Generator()
    return _loader(dataset, sampler, config, ctx, collate_fn, generator=generator, drop_last=drop_last), sampler


def make_eval_loader(
    dataset: Dataset[Any], config: TrainConfig, ctx: DistContext, collate_fn: Callable[[list[Any]], Any] | None = None
) -> DataLoader[Any]:
    """In dataset order, sharded over ranks (padded; `evaluate` drops the padding again)."""
    sampler = ResumableSampler(len(dataset), num_replicas=ctx.world_size, rank=ctx.rank, shuffle=False)  # type: ignore[arg-type]
    return _loader(dataset, sampler, config, ctx, collate_fn)


def build_optimizer(model: nn.Module, config: TrainConfig) -> torch.optim.Optimizer:
    params = [p for p in model.parameters() if p.requires_grad]
    if config.optimizer == "sgd":
        return torch.optim.SGD(params, lr=config.lr, momentum=SGD_MOMENTUM, weight_decay=config.weight_decay)
    return torch.optim.Adam(params, lr=config.lr, weight_decay=config.weight_decay)


def build_scheduler(optimizer: torch.optim.Optimizer, config: TrainConfig) -> Any:
    if config.scheduler == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=config.epochs)
    if config.scheduler == "step":
        return torch.optim.lr_scheduler.StepLR(optimizer, step_size=max(1, config.epochs // 3), gamma=0.1)
    if config.scheduler == "plateau":
        return torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, factor=0.1, patience=max(1, config.patience // 2))
    return None


def _to_device(batch: Any, ctx: DistContext, channels_last: bool) -> tuple[torch.Tensor, torch.Tensor]:
    inputs, targets = batch[0], batch[1]
    inputs = inputs.to(ctx.device, non_blocking=True)
    if channels_last and inputs.dim() == 4:
        inputs = inputs.contiguous(memory_format=torch.channels_last)
    return inputs, targets.to(ctx.device, non_blocking=True)


def _current_lr(optimizer: torch.optim.Optimizer) -> float:
    return float(optimizer.param_groups[0]["lr"])


@dataclass
class StepControl:
    """What `train_one_epoch` needs besides tensors: when to sync, log, checkpoint and stop (see `fit`)."""

    epochs: int
    steps_per_epoch: int
    log_every: int
    checkpoint_every: int = 0
    max_steps: int = 0
    grad_clip: float = 0.0
    channels_last: bool = False
    save_checkpoint: Callable[[], None] = lambda: None
    stop_requested: Callable[[], bool] = lambda: False  # a graceful stop (SIGTERM/SIGINT) was asked for here


EpochEnd = Literal["complete", "max_steps", "interrupted"]


def train_one_epoch(
    model: nn.Module,
    criterion: nn.Module,
    optimizer: torch.optim.Optimizer,
    loader: DataLoader[Any],
    ctx: DistContext,
    state: TrainState,
    control: StepControl,
    *,
    scaler: torch.amp.GradScaler | None = None,
    amp_dtype: torch.dtype | None = None,
) -> EpochEnd:
    """One pass over `loader` (resuming at `state.step_in_epoch`); says whether it ended early and why.

    Losses stay on the device between sync points (every `log_every` steps, checkpoint steps, the last step),
    where they are summed over ranks into `state` and checked for NaN/inf; the first non-finite step is named.
    A graceful stop asked for on any rank is agreed at a sync point (in one process: at the very next step),
    checkpointed there, and ends the pass with "interrupted".
    """
    model.train()
    device = ctx.device
    pending_loss = torch.zeros((), dtype=torch.float64, device=device)
    pending_samples = 0
    first_bad_step = torch.full((), -1, dtype=torch.int64, device=device)
    first_bad_value = torch.zeros((), dtype=torch.float32, device=device)
    log_loss, log_samples, log_started = 0.0, 0, time.perf_counter()

    for batch in loader:
        inputs, targets = _to_device(batch, ctx, control.channels_last)
        with _autocast(device, amp_dtype):
            logits = model(inputs)
        loss = criterion(logits.float(), targets)
        optimizer.zero_grad(set_to_none=True)
        if scaler is not None:
            scaler.scale(loss).backward()
            if control.grad_clip > 0:
                scaler.unscale_(optimizer)
                nn.utils.clip_grad_norm_(model.parameters(), control.grad_clip)
            scaler.step(optimizer)
            scaler.update()
        else:
            loss.backward()
            if control.grad_clip > 0:
                nn.utils.clip_grad_norm_(model.parameters(), control.grad_clip)
            optimizer.step()
        state.step_in_epoch += 1
        state.global_step += 1
        detached = loss.detach()
        bad_now = ~torch.isfinite(detached) & (first_bad_step < 0)
        first_bad_step = torch.where(bad_now, torch.full_like(first_bad_step, state.step_in_epoch), first_bad_step)
        first_bad_value = torch.where(bad_now, detached.to(first_bad_value.dtype), first_bad_value)
        pending_loss += detached.double() * targets.shape[0]
        pending_samples += int(targets.shape[0])

        at_max = control.max_steps > 0 and state.global_step >= control.max_steps
        log_now = state.global_step % control.log_every == 0
        checkpoint_now = control.checkpoint_every > 0 and state.global_step % control.checkpoint_every == 0
        last = state.step_in_epoch >= control.steps_per_epoch
        # One process can stop at any step; ranks must agree on where, so they stop at a sync point.
        stop_here = control.stop_requested() and not ctx.distributed
        if not (log_now or checkpoint_now or last or at_max or stop_here):
            continue

        # Sync point: the same global steps on every rank, so the collectives line up.
        bad_flag = float(first_bad_step.item() >= 0)
        stop_flag = float(control.stop_requested())
        loss_sum, samples, bad_ranks, stopping_ranks = all_reduce_sum(
            [pending_loss.item(), pending_samples, bad_flag, stop_flag], ctx
        )
        if bad_ranks > 0:
            # Each rank names its own first bad step; they agree in practice (DDP shares the weights).
            step = int(first_bad_step.item()) if bad_flag else state.step_in_epoch
            value = float(first_bad_value.item()) if bad_flag else math.nan
            raise NonFiniteLossError(value, state.epoch + 1, step, state.global_step - state.step_in_epoch + step)
        state.epoch_loss_sum += loss_sum
        state.epoch_samples += int(samples)
        pending_loss.zero_()
        pending_samples = 0
        log_loss += loss_sum
        log_samples += int(samples)
        if log_now and log_samples:
            elapsed = time.perf_counter() - log_started
            progress.emit(
                "step",
                epoch=state.epoch + 1,
                epochs=control.epochs,
                step=state.step_in_epoch,
                steps=control.steps_per_epoch,
                loss=round(log_loss / log_samples, 6),
                lr=_current_lr(optimizer),
                samples_per_s=round(log_samples / elapsed, 1) if elapsed > 0 else None,
            )
            log_loss, log_samples, log_started = 0.0, 0, time.perf_counter()
        interrupted = stopping_ranks > 0
        # On an epoch's last step the epoch-end checkpoint follows right after validation: one write suffices.
        if (checkpoint_now and not last) or at_max or interrupted:
            control.save_checkpoint()
        if interrupted:
            return "interrupted"
        if at_max:
            return "max_steps"
    return "complete"


@torch.no_grad()
def evaluate(
    model: nn.Module,
    loader: DataLoader[Any],
    ctx: DistContext,
    *,
    class_names: Sequence[str],
    amp_dtype: torch.dtype | None = None,
    channels_last: bool = False,
) -> Evaluation:
    """Loss and metrics on the loader's whole dataset, gathered from every rank (call on all ranks).

    Expects a loader from `make_eval_loader` (unshuffled shards); every rank gets the same `Evaluation`.
    """
    module = unwrap(model)  # no DDP forward: nothing to synchronise while evaluating
    was_training = module.training
    module.eval()
    rows = []
    for batch in loader:
        inputs, targets = _to_device(batch, ctx, channels_last)
        with _autocast(ctx.device, amp_dtype):
            logits = module(inputs)
        logits = logits.float()
        losses = F.cross_entropy(logits, targets, reduction="none")
        rows.append(
            torch.cat([logits.softmax(dim=1), losses[:, None], targets[:, None].to(logits.dtype)], dim=1).double()
        )
    module.train(was_training)
    total = len(loader.dataset)  # type: ignore[arg-type]
    local = torch.cat(rows) if rows else torch.zeros((0, len(class_names) + 2), dtype=torch.float64, device=ctx.device)
    gathered = gather_rows(local, total, ctx).cpu().numpy()
    probs, sample_losses, labels = gathered[:, :-2], gathered[:, -2], gathered[:, -1].astype(np.int64)
    loss = float(sample_losses.mean())
    return Evaluation(
        loss=loss, report=classification_report(labels, probs, class_names, loss=loss), probs=probs, labels=labels
    )


def evaluate_dataset(
    model: nn.Module,
    dataset: Dataset[Any],
    config: TrainConfig,
    ctx: DistContext,
    *,
    class_names: Sequence[str],
    collate_fn: Callable[[list[Any]], Any] | None = None,
) -> Evaluation:
    """`evaluate` on a dataset (e.g. the test split after `fit`, with the best weights already in `model`)."""
    module = unwrap(model).to(ctx.device)
    return evaluate(
        module,
        make_eval_loader(dataset, config, ctx, collate_fn),
        ctx,
        class_names=class_names,
        amp_dtype=amp_dtype_for(ctx.device, config.amp),
        channels_last=config.channels_last,
    )


def _cpu_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    return {key: value.detach().to("cpu", copy=True) for key, value in unwrap(model).state_dict().items()}


def _describe_mismatch(saved: Mapping[str, str], current: Mapping[str, str]) -> str:
    keys = sorted(set(saved) | set(current))
    diffs = [
        f"{key}: {saved.get(key, '<unset>')} -> {current.get(key, '<unset>')}"
        for key in keys
        if saved.get(key) != current.get(key)
    ]
    return "; ".join(diffs[:8]) + (" ..." if len(diffs) > 8 else "")


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
) -> FitResult:
    """Train with validation every epoch, resuming from `checkpoint_dir` when it holds a checkpoint.

    `run_params`: the script's own settings (architecture, data, image size, ...): logged to MLflow and part of
    what a resumed checkpoint must match (leave out paths that may legitimately differ between restarts).
    `tracker`: a `Tracker` to log to (started here with the checkpoint's run when resuming); None = no tracking.
    Call on every rank. Afterwards `model` holds the best weights.
    """
    ctx = ctx if ctx is not None else init_distributed(config.device)
    if tracker is None or not ctx.is_main:
        tracker = Tracker(task, enabled=False)  # only rank 0 tracks, whatever the caller passed
    run_params = dict(run_params or {})
    num_classes = len(class_names)
    labels = dataset_labels(train_data, train_labels)
    counts = class_counts(labels, num_classes)
    weights = balancing_weights(labels, num_classes)
    class_weight = torch.tensor(weights, dtype=torch.float32, device=ctx.device)
    criterion = nn.CrossEntropyLoss(weight=class_weight if config.imbalance == "weighted-loss" else None)

    train_loader, train_sampler = make_train_loader(train_data, config, ctx, labels, num_classes, collate_fn)
    val_loader = make_eval_loader(val_data, config, ctx, collate_fn)
    steps_per_epoch = len(train_loader)
    if steps_per_epoch == 0:
        raise TrainingError(f"the training set ({len(labels)} samples) gives no batch of size {config.batch_size}")

    model.to(ctx.device)
    if config.channels_last:
        model.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
    optimizer = build_optimizer(model, config)
    scheduler = build_scheduler(optimizer, config)
    amp_dtype = amp_dtype_for(ctx.device, config.amp)
    scaler = torch.amp.GradScaler("cuda") if amp_dtype == torch.float16 else None
    identity = config.identity(ctx.world_size, class_names, run_params)

    state = TrainState()
    best_state: dict[str, torch.Tensor] | None = None
    manager = (
        CheckpointManager(checkpoint_dir, keep=config.keep_checkpoints, enabled=ctx.is_main) if checkpoint_dir else None
    )
    last_checkpoint: list[Path | None] = [None]
    # Different seeds per rank: dropout masks must differ across ranks; the model was initialised before.
    torch.manual_seed(config.seed + ctx.rank)

    resumed = latest_valid_checkpoint(checkpoint_dir, map_location="cpu") if checkpoint_dir else None
    if resumed is not None:
        saved_identity = resumed.state.get("config_identity", {})
        if fingerprint(saved_identity) != fingerprint(identity):
            raise CheckpointMismatchError(
                f"checkpoint {resumed.path} was written by a different training configuration "
                f"({_describe_mismatch(saved_identity, identity)}): use another --checkpoint-dir to start afresh, "
                "or run with the original settings to resume"
            )
        unwrap(model).load_state_dict(resumed.state["model"])
        optimizer.load_state_dict(resumed.state["optimizer"])
        if scheduler is not None and resumed.state.get("scheduler") is not None:
            scheduler.load_state_dict(resumed.state["scheduler"])
        if scaler is not None and resumed.state.get("scaler") is not None:
            scaler.load_state_dict(resumed.state["scaler"])
        state = TrainState.from_dict(resumed.state["train_state"])
        if resumed.best_weights_path is not None:
            best_state = torch.load(resumed.best_weights_path, map_location="cpu", weights_only=True)
        if ctx.rank == 0:
            restore_rng_state(resumed.state["rng"])
        else:
            # Only rank 0's RNG was saved; other ranks get their own stream back, derived from the position.
            torch.manual_seed(config.seed + ctx.rank + 1_000_003 * state.global_step)
        last_checkpoint[0] = resumed.path
        if ctx.is_main:
            print(
                f"resuming from checkpoint {resumed.path} at epoch {state.epoch + 1}, step {state.step_in_epoch}",
                flush=True,
            )
        progress.emit("resume", checkpoint=str(resumed.path), epoch=state.epoch + 1, step=state.step_in_epoch)

    if ctx.distributed:
        # Every rank read the checkpoint folder itself; a folder not shared between nodes would split them.
        main_step = broadcast_int(state.global_step, ctx)
        if all_reduce_sum([float(main_step != state.global_step)], ctx)[0] > 0:
            raise TrainingError(
                f"ranks resumed from different checkpoints (rank 0 at global step {main_step}, rank {ctx.rank} at "
                f"{state.global_step}): put --checkpoint-dir on storage every node shares"
            )
    if ctx.is_main:
        state.mlflow_run_id = tracker.start(resume_run_id=state.mlflow_run_id) or state.mlflow_run_id
        tracker.log_params(
            {
                **{key: value for key, value in asdict(config).items()},
                **run_params,
                "world_size": ctx.world_size,
                "num_classes": num_classes,
                "train_samples": len(labels),
                "val_samples": len(val_data),  # type: ignore[arg-type]
                "train_class_counts": counts.tolist(),
            }
        )
    progress.emit(
        "start",
        task=task,
        epochs=config.epochs,
        steps_per_epoch=steps_per_epoch,
        world_size=ctx.world_size,
        device=str(ctx.device),
    )

    train_model: nn.Module = model
    if ctx.distributed:
        device_ids = [ctx.device.index] if ctx.device.type == "cuda" else None
        train_model = nn.parallel.DistributedDataParallel(model, device_ids=device_ids)

    def save_checkpoint() -> None:
        if manager is None:
            return
        path = manager.save(
            {
                "model": unwrap(model).state_dict(),
                "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict() if scheduler is not None else None,
                "scaler": scaler.state_dict() if scaler is not None else None,
                "train_state": asdict(state),
                "rng": capture_rng_state(),
                "config_identity": identity,
                "config_fingerprint": fingerprint(identity),
                "best_weights_file": state.best_weights_file,
                "mlflow_run_id": state.mlflow_run_id,
            },
            epoch=state.epoch,
            global_step=state.global_step,
        )
        if path is not None:
            last_checkpoint[0] = path

    control = StepControl(
        epochs=config.epochs,
        steps_per_epoch=steps_per_epoch,
        log_every=config.log_every_steps,
        checkpoint_every=config.checkpoint_every_steps,
        max_steps=config.max_steps,
        grad_clip=config.grad_clip,
        channels_last=config.channels_last,
        save_checkpoint=save_checkpoint,
    )
    loader_generator = train_loader.generator
    last_eval: Evaluation | None = None
    hit_max_steps = config.max_steps > 0 and state.global_step >= config.max_steps

    # Only the training loop stops gracefully; a signal before or after it has its usual effect.
    with GracefulStop(announce=ctx.is_main) as graceful:
        control.stop_requested = lambda: graceful.requested != 0

        def interrupted() -> TrainingInterrupted:
            signum = graceful.requested or int(signal.SIGTERM)  # another rank may have received it
            return TrainingInterrupted(signum, state.epoch + 1, state.step_in_epoch, last_checkpoint[0])

        while state.epoch < config.epochs and not state.stopped_early and not hit_max_steps:
            epoch_started = time.perf_counter()
            samples_before = state.epoch_samples
            start_index = min(state.step_in_epoch * config.batch_size, train_sampler.shard_size)
            train_sampler.set_epoch(state.epoch, start_index=start_index)
            if loader_generator is not None:
                # Worker seeds (random augmentation in DataLoader workers) depend on (seed, epoch, rank) only.
                loader_generator.manual_seed((config.seed * 1_000_003 + state.epoch) * 1_009 + ctx.rank)
            try:
                ending = train_one_epoch(
                    train_model,
                    criterion,
                    optimizer,
                    train_loader,
                    ctx,
                    state,
                    control,
                    scaler=scaler,
                    amp_dtype=amp_dtype,
                )
            except NonFiniteLossError as error:
                error.set_last_checkpoint(last_checkpoint[0])
                raise
            if ending == "interrupted":
                raise interrupted()
            hit_max_steps = ending == "max_steps"
            train_seconds = time.perf_counter() - epoch_started
            epoch_number = state.epoch + 1
            train_loss = state.epoch_loss_sum / state.epoch_samples if state.epoch_samples else math.nan
            samples_per_s = (state.epoch_samples - samples_before) / train_seconds if train_seconds > 0 else math.nan
            lr = _current_lr(optimizer)

            last_eval = evaluate(
                train_model,
                val_loader,
                ctx,
                class_names=class_names,
                amp_dtype=amp_dtype,
                channels_last=config.channels_last,
            )
            improved = last_eval.loss < state.best_val_loss - config.min_delta
            if improved:
                state.best_val_loss = last_eval.loss
                state.best_epoch = epoch_number
                state.best_report = last_eval.report
                state.bad_epochs = 0
                best_state = _cpu_state_dict(model)
                if manager is not None:
                    state.best_weights_file = manager.save_best_weights(best_state, epoch_number)
            else:
                state.bad_epochs += 1
            if scheduler is not None:
                if config.scheduler == "plateau":
                    scheduler.step(last_eval.loss)
                else:
                    scheduler.step()
            report = last_eval.report
            record = {
                "epoch": epoch_number,
                "train_loss": train_loss,
                "val_loss": last_eval.loss,
                "val_accuracy": report["accuracy"],
                "val_balanced_accuracy": report["balanced_accuracy"],
                "val_macro_f1": report["macro_f1"],
                "val_auroc": report["auroc"],
                "lr": lr,
                "samples_per_s": samples_per_s,
                "seconds": time.perf_counter() - epoch_started,
                "partial": hit_max_steps,
            }
            state.history.append(record)
            stop = config.patience > 0 and state.bad_epochs >= config.patience
            stop = broadcast_flag(stop, ctx)
            if not hit_max_steps:
                # A max_steps stop already checkpointed its mid-epoch position, so a later run resumes from there.
                state.epoch += 1
                state.step_in_epoch = 0
                state.epoch_loss_sum = 0.0
                state.epoch_samples = 0
                state.stopped_early = stop
                save_checkpoint()
            tracker.log_metrics(
                {key: value for key, value in record.items() if key not in ("epoch", "partial")}, step=epoch_number
            )
            progress.emit(
                "epoch",
                epoch=epoch_number,
                epochs=config.epochs,
                train_loss=train_loss,
                val_loss=last_eval.loss,
                val_accuracy=report["accuracy"],
                val_macro_f1=report["macro_f1"],
                seconds=round(record["seconds"], 3),
                best=improved,
            )
            if stop and not hit_max_steps:
                reason = f"val_loss did not improve by more than {config.min_delta} for {config.patience} epochs"
                progress.emit("early_stop", epoch=epoch_number, reason=reason)
            # A stop asked for during validation: the epoch's checkpoint is written, so stop here (a rerun
            # resumes at the next epoch, or goes straight to the test split and export after the last one).
            if all_reduce_sum([float(control.stop_requested())], ctx)[0] > 0:
                raise interrupted()

    if best_state is None:
        # No epoch ended with a finite validation loss (or a finished max_steps run was started again).
        if last_eval is None:
            last_eval = evaluate(
                model, val_loader, ctx, class_names=class_names, amp_dtype=amp_dtype, channels_last=config.channels_last
            )
        else:
            progress.warning("validation loss was never finite: returning the last weights, not the best")
        best_state = _cpu_state_dict(model)
        state.best_epoch = state.history[-1]["epoch"] if state.history else 0
        state.best_report = last_eval.report
    unwrap(model).load_state_dict(best_state)
    return FitResult(
        best_state_dict=best_state,
        best_epoch=state.best_epoch,
        best_val_loss=state.best_val_loss,
        validation=copy.deepcopy(state.best_report) if state.best_report is not None else {},
        history=list(state.history),
        stopped_early=state.stopped_early,
        epochs_run=len({row["epoch"] for row in state.history}),
        global_step=state.global_step,
        resumed_from=resumed.path if resumed is not None else None,
        run_id=state.mlflow_run_id,
    )
