"""`TrainState`: the training loop's position and memory, saved in every checkpoint and restored on resume."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any


@dataclass
class TrainState:
    """The loop's position and memory; saved in every checkpoint (plain numbers, strings, lists, dicts).

    Its fields are the checkpoint's ``train_state`` entry: adding one changes what new checkpoints hold (older
    ones still load, the new field taking its default); renaming or removing one breaks resuming older ones.
    """

    epoch: int = 0  # 0-based index of the epoch in progress (== epochs run when between epochs)
    step_in_epoch: int = 0  # optimizer steps done in that epoch
    global_step: int = 0
    epoch_loss_sum: float = 0.0  # sample-weighted train-loss sum of the epoch so far, over all ranks
    epoch_samples: int = 0
    best_val_loss: float = math.inf
    best_epoch: int = 0  # 1-based; 0 = none yet
    bad_epochs: int = 0  # epochs since the best one: the early-stopping patience counter
    best_report: dict[str, Any] | None = None
    best_weights_file: str | None = None
    stopped_early: bool = False
    history: list[dict[str, Any]] = field(default_factory=list)
    mlflow_run_id: str | None = None

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TrainState:
        known = {f.name for f in fields(cls)}
        return cls(**{key: value for key, value in data.items() if key in known})

    def start_next_epoch(self) -> None:
        """Move from the end of the epoch in progress to the start of the next one."""
        self.epoch += 1
        self.step_in_epoch = 0
        self.epoch_loss_sum = 0.0
        self.epoch_samples = 0
