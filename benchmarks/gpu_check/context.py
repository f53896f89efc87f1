"""What every stage gets: the device, the sizes, its own deadline, a scratch folder, and earlier stages' results."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from benchmarks.gpu_check.sizes import Sizes


class CheckFailed(RuntimeError):
    """A stage ran but its check failed; `record` holds what it measured, which the JSON keeps."""

    def __init__(self, message: str, record: dict[str, Any]) -> None:
        super().__init__(message)
        self.record = record


@dataclass
class StageContext:
    device: torch.device
    sizes: Sizes
    smoke: bool
    workdir: Path  # scratch space (checkpoints, the cache), deleted at the end
    deadline: float = 0.0  # time.perf_counter() value this stage must finish by; set by the runner per stage
    results: dict[str, dict[str, Any]] = field(default_factory=dict)  # stage name -> its record, so far

    def left_s(self) -> float:
        return self.deadline - time.perf_counter()

    @property
    def device_name(self) -> str | None:
        return torch.cuda.get_device_name(self.device) if self.device.type == "cuda" else None

    @property
    def low_precision(self) -> torch.dtype | None:
        """bf16 autocast on a GPU that has it (the engine's choice); full precision on the CPU smoke run."""
        if self.device.type == "cuda" and torch.cuda.is_bf16_supported():
            return torch.bfloat16
        return None
