"""`TrainConfig`, everything `engine.fit` is told besides the model and data, and the identity a resume must match."""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

OptimizerName = Literal["adam", "sgd"]
SchedulerName = Literal["none", "cosine", "step", "plateau"]
ImbalanceMode = Literal["none", "weighted-loss", "oversample"]


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


def describe_mismatch(saved: Mapping[str, str], current: Mapping[str, str]) -> str:
    """The identity entries that differ, as ``key: saved -> current`` (the first 8)."""
    keys = sorted(set(saved) | set(current))
    diffs = [
        f"{key}: {saved.get(key, '<unset>')} -> {current.get(key, '<unset>')}"
        for key in keys
        if saved.get(key) != current.get(key)
    ]
    return "; ".join(diffs[:8]) + (" ..." if len(diffs) > 8 else "")
