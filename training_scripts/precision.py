"""Device placement and mixed precision: bf16 autocast, fp16 + GradScaler where bf16 is missing (T4), channels_last."""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Any

import torch
from torch import nn


def amp_dtype_for(device: torch.device, enabled: bool) -> torch.dtype | None:
    """bf16 where the GPU has it, else fp16 (T4, V100); None (full precision) on CPU or when disabled."""
    if not enabled or device.type != "cuda":
        return None
    return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16


def grad_scaler_for(amp_dtype: torch.dtype | None) -> torch.amp.GradScaler | None:
    """A GradScaler for fp16 only: its narrow range underflows small gradients; bf16 and fp32 need none."""
    return torch.amp.GradScaler("cuda") if amp_dtype == torch.float16 else None


def autocast_for(device: torch.device, dtype: torch.dtype | None) -> contextlib.AbstractContextManager[Any]:
    """`torch.autocast` in `dtype`, or nothing when running in full precision."""
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


def place_model(model: nn.Module, device: torch.device, channels_last: bool) -> None:
    """Move `model` to `device`, in channels_last memory format when asked (faster convolutions on GPU)."""
    model.to(device)
    if channels_last:
        model.to(memory_format=torch.channels_last)  # type: ignore[call-overload]


BatchTransform = Callable[[torch.Tensor], torch.Tensor]


def batch_to_device(
    batch: Any, device: torch.device, channels_last: bool, transform: BatchTransform | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """A loader's ``(inputs, targets, ...)`` batch on `device`, through `transform` there when given (e.g. the
    image cache's crop + normalise on the GPU); 4-D inputs channels_last when asked."""
    inputs, targets = batch[0], batch[1]
    inputs = inputs.to(device, non_blocking=True)
    if transform is not None:
        inputs = transform(inputs)
    if channels_last and inputs.dim() == 4:
        inputs = inputs.contiguous(memory_format=torch.channels_last)
    return inputs, targets.to(device, non_blocking=True)
