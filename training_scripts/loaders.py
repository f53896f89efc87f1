"""The DataLoaders of `engine.fit`: sharded over ranks, the training one resumable mid-epoch and seeded per epoch."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Subset

from training_scripts import progress
from training_scripts.distributed import DistContext
from training_scripts.interrupts import ignore_in_worker
from training_scripts.sampling import ResumableSampler, balancing_weights
from training_scripts.train_config import TrainConfig


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
    """Shuffled (or class-balanced) and sharded over ranks; call `start_train_epoch` before every epoch."""
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
    # resumed run restores exactly; `start_train_epoch` reseeds it.
    generator = torch.Generator()
    return _loader(dataset, sampler, config, ctx, collate_fn, generator=generator, drop_last=drop_last), sampler


def start_train_epoch(
    loader: DataLoader[Any], sampler: ResumableSampler, config: TrainConfig, ctx: DistContext, epoch: int, step: int
) -> None:
    """Point a `make_train_loader` pair at `epoch` (0-based), skipping the `step` batches already trained."""
    start_index = min(step * config.batch_size, sampler.shard_size)
    sampler.set_epoch(epoch, start_index=start_index)
    if loader.generator is not None:
        # Worker seeds (random augmentation in DataLoader workers) depend on (seed, epoch, rank) only.
        loader.generator.manual_seed((config.seed * 1_000_003 + epoch) * 1_009 + ctx.rank)


def make_eval_loader(
    dataset: Dataset[Any], config: TrainConfig, ctx: DistContext, collate_fn: Callable[[list[Any]], Any] | None = None
) -> DataLoader[Any]:
    """In dataset order, sharded over ranks (padded; `evaluate` drops the padding again)."""
    sampler = ResumableSampler(len(dataset), num_replicas=ctx.world_size, rank=ctx.rank, shuffle=False)  # type: ignore[arg-type]
    return _loader(dataset, sampler, config, ctx, collate_fn)
