"""Stages b and c: ResNet train-step images/s at bf16 autocast + channels_last, eager and compiled, and MFU; then
the same step fed end to end by the device-side loader (device_loader)."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from benchmarks.gpu_check.context import StageContext
from benchmarks.gpu_check.device_loader import DeviceFedBatches, cache_source, synthetic_source
from benchmarks.gpu_check.sizes import mfu, peak_bf16_flops
from benchmarks.gpu_check.timing import synchronize, time_steps
from training_scripts import resnet

NUM_CLASSES = 2  # the X-ray scenario: normal / pneumonia


def _model(ctx: StageContext) -> nn.Module:
    builders: dict[str, Callable[[int], nn.Module]] = {
        "resnet18": resnet.resnet18,
        "resnet34": resnet.resnet34,
        "resnet50": resnet.resnet50,
    }
    model = builders[ctx.sizes.resnet_arch](NUM_CLASSES).to(ctx.device)
    return model.to(memory_format=torch.channels_last)  # type: ignore[call-overload]


def _train_step(
    model: nn.Module, ctx: StageContext, inputs: Callable[[], torch.Tensor], batch: int
) -> Callable[[], torch.Tensor]:
    # Adam, as the scenario trains (training_scripts/optimizers.py); the loss stays on the device (no .item()).
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-4)
    targets = torch.randint(0, NUM_CLASSES, (batch,), device=ctx.device)
    dtype = ctx.low_precision
    model.train()

    def step() -> torch.Tensor:
        autocast = (
            torch.autocast(device_type=ctx.device.type, dtype=dtype) if dtype is not None else contextlib.nullcontext()
        )
        with autocast:
            loss = nn.functional.cross_entropy(model(inputs()), targets)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        return loss.detach()

    return step


def _fixed_batch(ctx: StageContext, batch: int) -> Callable[[], torch.Tensor]:
    size = ctx.sizes.image_size
    x = torch.randn(batch, 3, size, size, device=ctx.device).contiguous(memory_format=torch.channels_last)
    return lambda: x


def _row(ctx: StageContext, batch: int, compiled: bool, timing: Any, loss: torch.Tensor) -> dict[str, Any]:
    rate = timing.per_second(batch)
    peak = peak_bf16_flops(ctx.device_name) if ctx.low_precision is torch.bfloat16 else None
    return {
        "batch_size": batch,
        "compiled": compiled,
        "images_per_s": round(rate, 1),
        "mfu": None if ctx.sizes.resnet_arch != "resnet50" else _rounded(mfu(rate, ctx.sizes.image_size, peak)),
        "timed_steps": timing.steps,
        "seconds": round(timing.seconds, 3),
        "warmup_seconds": round(timing.warmup_seconds, 2),
        "last_loss": round(float(loss), 4),
    }


def _rounded(value: float | None) -> float | None:
    return None if value is None else round(value, 4)


def _measure(ctx: StageContext, *, compiled: bool) -> dict[str, Any]:
    sizes = ctx.sizes
    rows: list[dict[str, Any]] = []
    skipped: list[str] = []
    for batch in sizes.batch_sizes:
        if rows and compiled and ctx.left_s() < 1.5 * rows[-1]["warmup_seconds"]:
            # A second compile (a new static shape) takes about as long as the first: do not start what cannot end.
            skipped.append(
                f"batch {batch}: {ctx.left_s():.0f} s left, the first compile took {rows[-1]['warmup_seconds']} s"
            )
            continue
        model = _model(ctx)
        runner: nn.Module = model
        if compiled:
            runner = torch.compile(model, backend=sizes.compile_backend, dynamic=False)  # type: ignore[assignment]
        step = _train_step(runner, ctx, _fixed_batch(ctx, batch), batch)
        timing = time_steps(step, ctx.device, warmup=sizes.warmup_steps, steps=sizes.timed_steps, deadline=ctx.deadline)
        rows.append(_row(ctx, batch, compiled, timing, step()))
        del model, runner, step
        _free(ctx)
    peak = peak_bf16_flops(ctx.device_name)
    return {
        "arch": sizes.resnet_arch,
        "image_size": sizes.image_size,
        "precision": "bf16 autocast" if ctx.low_precision is torch.bfloat16 else "fp32 (no bf16 here)",
        "channels_last": True,
        "compile_backend": sizes.compile_backend if compiled else None,
        "peak_bf16_tflops": None if peak is None else peak / 1e12,
        "mfu_formula": "images/s x 3 x 8.2 GFLOP x (size/224)^2 / dense bf16 peak (null: unknown GPU or not ResNet-50)",
        "rows": rows,
        **({"not_run": skipped} if skipped else {}),
    }


def _free(ctx: StageContext) -> None:
    if ctx.device.type == "cuda":
        torch.cuda.empty_cache()


def resnet_eager(ctx: StageContext) -> dict[str, Any]:
    """b) eager (no torch.compile) images/s at each batch size."""
    return _measure(ctx, compiled=False)


def resnet_compiled(ctx: StageContext) -> dict[str, Any]:
    """b) the same with torch.compile; run last, so a slow compile cannot starve the other stages."""
    record = _measure(ctx, compiled=True)
    eager = ctx.results.get("resnet_eager", {}).get("rows", [])
    best = max((row["images_per_s"] for row in [*eager, *record["rows"]]), default=None)
    record["best_images_per_s_eager_or_compiled"] = best
    return record


def cache_loader(ctx: StageContext) -> dict[str, Any]:
    """c) the train step fed by the loader end to end, and the loader alone, at the largest batch size."""
    sizes = ctx.sizes
    batch = sizes.batch_sizes[0]
    source, cache_note = cache_source(sizes.loader_pool, sizes.cache_image_size, sizes.image_size, ctx.workdir)
    if source is None:
        source = synthetic_source(sizes.loader_pool, sizes.cache_image_size, sizes.image_size)
    loader = DeviceFedBatches(source, batch, ctx.device)
    try:
        half = time.perf_counter() + max(ctx.left_s(), 0) / 2  # the loader alone gets half the budget at most
        alone = time_steps(
            loader.next_batch, ctx.device, warmup=sizes.warmup_steps, steps=sizes.timed_steps, deadline=half
        )
        model = _model(ctx)
        step = _train_step(model, ctx, loader.next_batch, batch)
        fed = time_steps(step, ctx.device, warmup=sizes.warmup_steps, steps=sizes.timed_steps, deadline=ctx.deadline)
        loss = step()
        synchronize(ctx.device)
    finally:
        loader.close()
    record = {
        "source": source.description,
        "image_cache": cache_note,
        "augmentation": source.augmentation,
        "host_side": "index gather + pinning in one background thread, 2 batches ahead",
        "batch_size": batch,
        "image_size": sizes.image_size,
        "loader_images_per_s": round(alone.per_second(batch), 1),
        "train_images_per_s_fed": round(fed.per_second(batch), 1),
        "last_loss": round(float(loss), 4),
    }
    model_rate = next(
        (r["images_per_s"] for r in ctx.results.get("resnet_eager", {}).get("rows", []) if r["batch_size"] == batch),
        None,
    )
    if model_rate:
        # Issue 14's target: the loader at least 1.5x the model's rate, so it is never the bottleneck.
        record["loader_over_model_eager"] = round(record["loader_images_per_s"] / model_rate, 2)
        record["fed_over_fixed_batch_eager"] = round(record["train_images_per_s_fed"] / model_rate, 3)
    del model, step, loader
    _free(ctx)
    return record
