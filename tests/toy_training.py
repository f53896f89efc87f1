"""Tiny datasets and models for the engine's tests, and a toy training script for the torchrun test.

Run as ``python -m torch.distributed.run --nproc_per_node 2 --standalone -m tests.toy_training --out DIR``: each
rank trains the same toy problem through `engine.fit` and writes what it saw to ``DIR/rank<R>.json``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import signal
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.utils.data import Dataset


class Blobs(Dataset[tuple[torch.Tensor, int]]):
    """Gaussian blobs around fixed class centres: `noise` ~0.3 is separable, ~2 overlaps."""

    def __init__(
        self,
        n: int,
        *,
        num_classes: int = 3,
        dim: int = 4,
        noise: float = 0.3,
        proportions: Sequence[float] | None = None,
        seed: int = 0,
    ) -> None:
        centres = np.random.default_rng(1234).normal(scale=2.0, size=(num_classes, dim))  # same for every split
        rng = np.random.default_rng(seed)
        p = np.asarray(proportions if proportions is not None else [1.0] * num_classes, dtype=np.float64)
        self.labels = rng.choice(num_classes, size=n, p=p / p.sum()).tolist()
        points = centres[self.labels] + noise * rng.normal(size=(n, dim))
        self.inputs = torch.tensor(points, dtype=torch.float32)

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        return self.inputs[index], self.labels[index]


class Interrupted(Exception):
    """Stands in for a pre-emption: raised while fetching a batch."""


class FailAfter(Dataset[tuple[torch.Tensor, int]]):
    """Wraps a dataset; from the `after`-th item fetched on, raises `Interrupted` or returns NaN inputs.

    mode "sigterm": the process sends itself SIGTERM once, when the item after `after` is fetched.
    """

    def __init__(self, inner: Blobs, after: int, *, mode: str = "raise") -> None:
        self.inner, self.after, self.mode, self.fetched = inner, after, mode, 0
        self.labels = inner.labels

    def __len__(self) -> int:
        return len(self.inner)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        self.fetched += 1
        x, y = self.inner[index]
        if self.mode == "sigterm":
            if self.fetched == self.after + 1:
                os.kill(os.getpid(), signal.SIGTERM)
            return x, y
        if self.fetched > self.after:
            if self.mode == "raise":
                raise Interrupted(f"interrupted after {self.after} items")
            x = torch.full_like(x, math.nan)
        return x, y


class ToyNet(nn.Module):
    """A two-layer MLP with dropout (so a resumed run must restore the torch RNG to match)."""

    def __init__(self, dim: int = 4, num_classes: int = 3, hidden: int = 16, dropout: float = 0.2) -> None:
        super().__init__()
        self.layers = nn.Sequential(
            nn.Linear(dim, hidden), nn.ReLU(), nn.Dropout(dropout), nn.Linear(hidden, num_classes)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)


def class_names(num_classes: int) -> list[str]:
    return [f"class_{index}" for index in range(num_classes)]


def main(argv: Sequence[str] | None = None) -> int:
    from training_scripts import checkpoint, distributed, engine

    parser = argparse.ArgumentParser(description="toy DDP training for tests")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--patience", type=int, default=2)
    parser.add_argument("--min-delta", type=float, default=0.0)
    args = parser.parse_args(argv)

    ctx = distributed.init_distributed("cpu")
    # Record every checkpoint write of this rank: only rank 0 may write.
    writes: list[str] = []
    atomic_save = checkpoint.atomic_save

    def recording_save(obj: object, path: Path) -> None:
        writes.append(path.name)
        atomic_save(obj, path)

    checkpoint.atomic_save = recording_save
    finished = False
    try:
        config = engine.TrainConfig(
            epochs=args.epochs,
            batch_size=8,
            lr=0.05,
            patience=args.patience,
            min_delta=args.min_delta,
            checkpoint_every_steps=3,
            log_every_steps=2,
            seed=0,
        )
        engine.seed_everything(config.seed)
        model = ToyNet()
        names = class_names(3)
        # 45 training and 21 validation samples: neither divides by 2 ranks x 8, so padding is exercised.
        result = engine.fit(
            model,
            Blobs(45, seed=1),
            Blobs(21, seed=2),
            config,
            class_names=names,
            ctx=ctx,
            task="toy",
            checkpoint_dir=args.out / "checkpoints",
        )
        test = engine.evaluate_dataset(model, Blobs(13, seed=3), config, ctx, class_names=names)
        record = {
            "rank": ctx.rank,
            "world_size": ctx.world_size,
            "validation": result.validation,
            "test": test.report,
            "history": [
                {k: v for k, v in row.items() if k not in ("seconds", "samples_per_s")} for row in result.history
            ],
            "epochs_run": result.epochs_run,
            "stopped_early": result.stopped_early,
            "best_epoch": result.best_epoch,
            "checkpoint_writes": writes,
            "weights_sum": float(sum(t.double().sum() for t in result.best_state_dict.values())),
        }
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / f"rank{ctx.rank}.json").write_text(json.dumps(record, indent=1))
        finished = True
    finally:
        distributed.cleanup(ctx, synchronize=finished)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
