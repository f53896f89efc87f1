"""`FitRun`, what one `engine.fit` call builds and remembers, and its checkpoint: writing one, resuming from one.

The checkpoint's entries are written in `save_checkpoint` and read back in `resume`, side by side, so the format
has one home (the file handling itself, atomic writes and RNG states, is checkpoint.py's).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from training_scripts import progress
from training_scripts.checkpoint import CheckpointManager, capture_rng_state, latest_valid_checkpoint, restore_rng_state
from training_scripts.distributed import DistContext, all_reduce_sum, broadcast_int, unwrap
from training_scripts.epoch import Evaluation
from training_scripts.loaders import make_eval_loader, make_train_loader
from training_scripts.optimizers import build_optimizer, build_scheduler
from training_scripts.precision import BatchTransform, amp_dtype_for, grad_scaler_for, place_model
from training_scripts.sampling import ResumableSampler, balancing_weights
from training_scripts.tracking import Tracker
from training_scripts.train_config import TrainConfig, describe_mismatch, fingerprint
from training_scripts.train_state import TrainState
from training_scripts.training_errors import CheckpointMismatchError, TrainingError


@dataclass
class FitRun:
    """One `fit` call: what it built once, and what it remembers besides the checkpointed `TrainState`."""

    config: TrainConfig
    ctx: DistContext
    class_names: Sequence[str]
    model: nn.Module  # on ctx.device, never wrapped: what checkpoints and the best weights are taken from
    criterion: nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: Any  # a torch LR scheduler, or None for a constant lr
    scaler: torch.amp.GradScaler | None  # fp16 only
    amp_dtype: torch.dtype | None
    train_loader: DataLoader[Any]
    train_sampler: ResumableSampler
    steps_per_epoch: int  # of a whole epoch (the loader's length shrinks while a resumed epoch skips batches)
    val_loader: DataLoader[Any]
    checkpoints: CheckpointManager | None  # None: no checkpoint directory
    identity: dict[str, str]  # what a checkpoint must match to be resumed (TrainConfig.identity)
    tracker: Tracker  # a disabled one on every rank but 0
    state: TrainState
    train_model: nn.Module  # what trains: `model`, or its DDP wrapper once `fit` has resumed
    best_weights: dict[str, torch.Tensor] | None = None  # on CPU
    last_checkpoint: Path | None = None  # the newest checkpoint written or resumed from
    last_eval: Evaluation | None = None
    stopped_at_max_steps: bool = False  # in memory only: a later run with more steps continues
    resumed_from: Path | None = None
    eval_batch_transform: BatchTransform | None = None  # validation inputs on the device (see engine.fit)

    @property
    def finished(self) -> bool:
        return self.state.epoch >= self.config.epochs or self.state.stopped_early or self.stopped_at_max_steps


def set_up(
    model: nn.Module,
    train_data: Dataset[Any],
    val_data: Dataset[Any],
    config: TrainConfig,
    ctx: DistContext,
    class_names: Sequence[str],
    labels: np.ndarray,
    collate_fn: Callable[[list[Any]], Any] | None,
    checkpoint_dir: Path | None,
    run_params: Mapping[str, Any],
    tracker: Tracker,
) -> FitRun:
    """Loss, loaders, the model on its device, optimizer, scheduler, precision, checkpoint folder and tracker."""
    num_classes = len(class_names)
    weights = balancing_weights(labels, num_classes)
    class_weight = torch.tensor(weights, dtype=torch.float32, device=ctx.device)
    criterion = nn.CrossEntropyLoss(weight=class_weight if config.imbalance == "weighted-loss" else None)

    train_loader, train_sampler = make_train_loader(train_data, config, ctx, labels, num_classes, collate_fn)
    val_loader = make_eval_loader(val_data, config, ctx, collate_fn)
    steps_per_epoch = len(train_loader)
    if steps_per_epoch == 0:
        raise TrainingError(f"the training set ({len(labels)} samples) gives no batch of size {config.batch_size}")

    place_model(model, ctx.device, config.channels_last)
    optimizer = build_optimizer(model, config)
    amp_dtype = amp_dtype_for(ctx.device, config.amp)
    run = FitRun(
        config=config,
        ctx=ctx,
        class_names=class_names,
        model=model,
        criterion=criterion,
        optimizer=optimizer,
        scheduler=build_scheduler(optimizer, config),
        scaler=grad_scaler_for(amp_dtype),
        amp_dtype=amp_dtype,
        train_loader=train_loader,
        train_sampler=train_sampler,
        steps_per_epoch=steps_per_epoch,
        val_loader=val_loader,
        checkpoints=(
            CheckpointManager(checkpoint_dir, keep=config.keep_checkpoints, enabled=ctx.is_main)
            if checkpoint_dir
            else None
        ),
        identity=config.identity(ctx.world_size, class_names, run_params),
        tracker=tracker,
        state=TrainState(),
        train_model=model,
    )
    # Different seeds per rank: dropout masks must differ across ranks; the model was initialised before.
    torch.manual_seed(config.seed + ctx.rank)
    return run


def resume(run: FitRun, checkpoint_dir: Path) -> None:
    """Continue from the newest valid checkpoint in `checkpoint_dir`, if any: weights, optimizer, RNG, state."""
    resumed = latest_valid_checkpoint(checkpoint_dir, map_location="cpu")
    if resumed is None:
        return
    saved_identity = resumed.state.get("config_identity", {})
    if fingerprint(saved_identity) != fingerprint(run.identity):
        raise CheckpointMismatchError(
            f"checkpoint {resumed.path} was written by a different training configuration "
            f"({describe_mismatch(saved_identity, run.identity)}): use another --checkpoint-dir to start afresh, "
            "or run with the original settings to resume"
        )
    unwrap(run.model).load_state_dict(resumed.state["model"])
    run.optimizer.load_state_dict(resumed.state["optimizer"])
    if run.scheduler is not None and resumed.state.get("scheduler") is not None:
        run.scheduler.load_state_dict(resumed.state["scheduler"])
    if run.scaler is not None and resumed.state.get("scaler") is not None:
        run.scaler.load_state_dict(resumed.state["scaler"])
    state = run.state = TrainState.from_dict(resumed.state["train_state"])
    if resumed.best_weights_path is not None:
        run.best_weights = torch.load(resumed.best_weights_path, map_location="cpu", weights_only=True)
    if run.ctx.rank == 0:
        restore_rng_state(resumed.state["rng"])
    else:
        # Only rank 0's RNG was saved; other ranks get their own stream back, derived from the position.
        torch.manual_seed(run.config.seed + run.ctx.rank + 1_000_003 * state.global_step)
    run.last_checkpoint = run.resumed_from = resumed.path
    # A finished max_steps run started again with the same limit stops at once.
    run.stopped_at_max_steps = run.config.max_steps > 0 and state.global_step >= run.config.max_steps
    if run.ctx.is_main:
        print(
            f"resuming from checkpoint {resumed.path} at epoch {state.epoch + 1}, step {state.step_in_epoch}",
            flush=True,
        )
    progress.emit("resume", checkpoint=str(resumed.path), epoch=state.epoch + 1, step=state.step_in_epoch)


def check_ranks_resumed_alike(run: FitRun) -> None:
    """Every rank read the checkpoint folder itself; a folder not shared between nodes would split them."""
    if not run.ctx.distributed:
        return
    main_step = broadcast_int(run.state.global_step, run.ctx)
    if all_reduce_sum([float(main_step != run.state.global_step)], run.ctx)[0] > 0:
        raise TrainingError(
            f"ranks resumed from different checkpoints (rank 0 at global step {main_step}, rank {run.ctx.rank} at "
            f"{run.state.global_step}): put --checkpoint-dir on storage every node shares"
        )


def save_checkpoint(run: FitRun) -> None:
    """Everything a resume needs, at the state's current position (rank 0 writes; a no-op elsewhere)."""
    if run.checkpoints is None:
        return
    state = run.state
    path = run.checkpoints.save(
        {
            "model": unwrap(run.model).state_dict(),
            "optimizer": run.optimizer.state_dict(),
            "scheduler": run.scheduler.state_dict() if run.scheduler is not None else None,
            "scaler": run.scaler.state_dict() if run.scaler is not None else None,
            "train_state": asdict(state),
            "rng": capture_rng_state(),
            "config_identity": run.identity,
            "config_fingerprint": fingerprint(run.identity),
            "best_weights_file": state.best_weights_file,
            "mlflow_run_id": state.mlflow_run_id,
        },
        epoch=state.epoch,
        global_step=state.global_step,
    )
    if path is not None:
        run.last_checkpoint = path
