"""Time training steps on a GPU honestly: warm-up steps excluded, `torch.cuda.synchronize` around the timed ones."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import torch


def synchronize(device: torch.device) -> None:
    # CUDA kernels run asynchronously: without this the clock stops before the GPU has finished the work.
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@dataclass(frozen=True)
class StepTiming:
    steps: int  # timed steps (fewer than asked when the deadline came first)
    seconds: float
    warmup_seconds: float  # includes torch.compile's compilation, when compiled

    def per_second(self, items_per_step: int) -> float:
        return items_per_step * self.steps / self.seconds


def time_steps(
    step: Callable[[], object], device: torch.device, *, warmup: int, steps: int, deadline: float
) -> StepTiming:
    """Run `warmup` untimed then up to `steps` timed calls of `step`, stopping early at `deadline` (perf_counter).

    At least one timed step always runs, so a slow warm-up (a compile) still yields a figure.
    """
    started = time.perf_counter()
    for _ in range(warmup):
        step()
        if time.perf_counter() > deadline:
            break
    synchronize(device)
    warm = time.perf_counter()
    done = 0
    while done < steps:
        step()
        done += 1
        # Checking the clock needs a sync to be truthful; every 5 steps keeps the GPU's queue full in between.
        if done % 5 == 0 or done == steps:
            synchronize(device)
            if time.perf_counter() > deadline:
                break
    synchronize(device)
    end = time.perf_counter()
    return StepTiming(steps=done, seconds=end - warm, warmup_seconds=warm - started)
