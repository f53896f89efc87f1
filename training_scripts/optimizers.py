"""The optimizer and learning-rate scheduler a `TrainConfig` names, and the scheduler's once-per-epoch step."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from training_scripts.train_config import TrainConfig

SGD_MOMENTUM = 0.9


def build_optimizer(model: nn.Module, config: TrainConfig) -> torch.optim.Optimizer:
    """Adam or SGD (momentum 0.9) over the parameters that train (frozen ones are left out)."""
    params = [p for p in model.parameters() if p.requires_grad]
    if config.optimizer == "sgd":
        return torch.optim.SGD(params, lr=config.lr, momentum=SGD_MOMENTUM, weight_decay=config.weight_decay)
    return torch.optim.Adam(params, lr=config.lr, weight_decay=config.weight_decay)


def build_scheduler(optimizer: torch.optim.Optimizer, config: TrainConfig) -> Any:
    """cosine over `epochs`, step (/10 every epochs // 3), plateau on val_loss, or None (constant lr)."""
    if config.scheduler == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=config.epochs)
    if config.scheduler == "step":
        return torch.optim.lr_scheduler.StepLR(optimizer, step_size=max(1, config.epochs // 3), gamma=0.1)
    if config.scheduler == "plateau":
        return torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, factor=0.1, patience=max(1, config.patience // 2))
    return None


def step_scheduler(scheduler: Any, config: TrainConfig, val_loss: float) -> None:
    """The end-of-epoch step: plateau looks at the validation loss, the others only count epochs."""
    if scheduler is None:
        return
    if config.scheduler == "plateau":
        scheduler.step(val_loss)
    else:
        scheduler.step()


def current_lr(optimizer: torch.optim.Optimizer) -> float:
    return float(optimizer.param_groups[0]["lr"])
