"""One epoch of training (`train_one_epoch`) and one pass of evaluation (`evaluate`); call both on every rank."""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Dataset

from training_scripts import progress
from training_scripts.distributed import DistContext, all_reduce_sum, gather_rows, unwrap
from training_scripts.loaders import make_eval_loader
from training_scripts.metrics import classification_report
from training_scripts.optimizers import current_lr
from training_scripts.precision import BatchTransform, amp_dtype_for, autocast_for, batch_to_device
from training_scripts.train_config import TrainConfig
from training_scripts.train_state import TrainState
from training_scripts.training_errors import NonFiniteLossError


@dataclass
class StepControl:
    """What `train_one_epoch` needs besides tensors: when to sync, log, checkpoint and stop (see `engine.fit`)."""

    epochs: int
    steps_per_epoch: int
    log_every: int
    checkpoint_every: int = 0
    max_steps: int = 0
    grad_clip: float = 0.0
    channels_last: bool = False
    save_checkpoint: Callable[[], None] = lambda: None
    stop_requested: Callable[[], bool] = lambda: False  # a graceful stop (SIGTERM/SIGINT) was asked for here
    batch_transform: BatchTransform | None = None  # applied to each input batch on the device (augmentation)


EpochEnd = Literal["complete", "max_steps", "interrupted"]


@dataclass
class Evaluation:
    loss: float
    report: dict[str, Any]  # a metrics.json metrics dict (metrics.classification_report)
    probs: np.ndarray  # [N, C] in dataset order, on every rank
    labels: np.ndarray  # [N]


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
        inputs, targets = batch_to_device(batch, device, control.channels_last, control.batch_transform)
        with autocast_for(device, amp_dtype):
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
                lr=current_lr(optimizer),
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
    batch_transform: BatchTransform | None = None,
) -> Evaluation:
    """Loss and metrics on the loader's whole dataset, gathered from every rank (call on all ranks).

    Expects a loader from `make_eval_loader` (unshuffled shards); every rank gets the same `Evaluation`.
    ``loss`` is the plain mean cross-entropy whatever the imbalance mode, so runs compare with each other.
    """
    module = unwrap(model)  # no DDP forward: nothing to synchronise while evaluating
    was_training = module.training
    module.eval()
    rows = []
    for batch in loader:
        inputs, targets = batch_to_device(batch, ctx.device, channels_last, batch_transform)
        with autocast_for(ctx.device, amp_dtype):
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
    batch_transform: BatchTransform | None = None,
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
        batch_transform=batch_transform,
    )
