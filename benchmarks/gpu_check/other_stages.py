"""Stages a, d, e, f, g: the environment, the LSTM scenario's samples/s, fp16 + GradScaler (as on a T4), a checkpoint
written and resumed on the device, and a one-process DDP step over NCCL (gloo on the CPU)."""

from __future__ import annotations

import importlib
import math
import platform
import socket
import time
from datetime import timedelta
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

from benchmarks.gpu_check.context import CheckFailed, StageContext
from benchmarks.gpu_check.sizes import peak_bf16_flops
from benchmarks.gpu_check.timing import synchronize, time_steps
from training_scripts import precision, resnet
from training_scripts.lstm import LSTMClassifier


def environment(ctx: StageContext) -> dict[str, Any]:
    """a) torch and CUDA versions, the device, its memory, bf16 support; numpy's presence (checkpoint.py needs it)."""
    record: dict[str, Any] = {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cuda_available": torch.cuda.is_available(),
        "cuda_runtime": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None,
        "device": str(ctx.device),
        "cpu_threads": torch.get_num_threads(),
        "numpy": _version_of("numpy"),
    }
    if ctx.device.type == "cuda":
        props = torch.cuda.get_device_properties(ctx.device)
        peak = peak_bf16_flops(props.name)
        record.update(
            device_name=props.name,
            device_count=torch.cuda.device_count(),
            compute_capability=f"{props.major}.{props.minor}",
            memory_gib=round(props.total_memory / 1024**3, 1),
            multiprocessors=props.multi_processor_count,
            bf16_supported=torch.cuda.is_bf16_supported(),
            nccl=_nccl_version(),
            peak_bf16_tflops=None if peak is None else peak / 1e12,
        )
    else:
        record.update(device_name=platform.processor() or "cpu", bf16_supported=None, nccl=None)
    return record


def _nccl_version() -> str | None:
    if not dist.is_nccl_available():
        return None
    version = torch.cuda.nccl.version()  # a tuple in recent torch, one packed int in older releases
    return ".".join(str(v) for v in version) if isinstance(version, tuple) else str(version)


def _version_of(module: str) -> str | None:
    try:
        return str(importlib.import_module(module).__version__)
    except ImportError:
        return None


def lstm(ctx: StageContext) -> dict[str, Any]:
    """d) train-step samples/s of the LSTM scenario's model (train_lstm.py's defaults), autocast as the engine does."""
    s = ctx.sizes
    model = LSTMClassifier(
        vocab_size=s.lstm_vocab, num_classes=2, embed_dim=s.lstm_embed_dim, hidden_size=s.lstm_hidden, dropout=0.5
    ).to(ctx.device)
    model.train()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)  # train_lstm.py's default
    ids = torch.randint(1, s.lstm_vocab, (s.lstm_batch, s.lstm_seq_len), device=ctx.device)
    ids[: s.lstm_batch // 2, s.lstm_seq_len // 2 :] = 0  # half the batch right-padded, as short texts are
    labels = torch.randint(0, 2, (s.lstm_batch,), device=ctx.device)
    dtype = ctx.low_precision

    def step() -> torch.Tensor:
        with precision.autocast_for(ctx.device, dtype):
            loss = nn.functional.cross_entropy(model(ids), labels)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        return loss.detach()

    timing = time_steps(step, ctx.device, warmup=s.warmup_steps, steps=s.timed_steps * 2, deadline=ctx.deadline)
    loss = float(step())
    return {
        "model": f"LSTMClassifier(vocab {s.lstm_vocab}, embed {s.lstm_embed_dim}, hidden {s.lstm_hidden}, "
        "1 layer, forward, dropout 0.5)",
        "seq_len": s.lstm_seq_len,
        "batch_size": s.lstm_batch,
        "precision": "bf16 autocast" if dtype is torch.bfloat16 else "fp32",
        "samples_per_s": round(timing.per_second(s.lstm_batch), 1),
        "timed_steps": timing.steps,
        "last_loss": round(loss, 4),
        "loss_finite": math.isfinite(loss),
    }


def fp16_grad_scaler(ctx: StageContext) -> dict[str, Any]:
    """e) fp16 autocast + GradScaler (the T4 path of training_scripts/precision.py) for a few steps; loss finite."""
    s = ctx.sizes
    model = getattr(resnet, s.resnet_arch)(2).to(ctx.device).to(memory_format=torch.channels_last)
    model.train()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-4)
    # On CUDA the project's own choice; the CPU smoke run needs a CPU scaler (a "cuda" one disables itself there).
    scaler = precision.grad_scaler_for(torch.float16) if ctx.device.type == "cuda" else torch.amp.GradScaler("cpu")
    assert scaler is not None
    size = s.image_size
    x = torch.randn(s.fp16_batch, 3, size, size, device=ctx.device).contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, 2, (s.fp16_batch,), device=ctx.device)
    losses, scales = [], []
    started = time.perf_counter()
    for _ in range(s.fp16_steps):
        with precision.autocast_for(ctx.device, torch.float16):
            logits = model(x)
            loss = nn.functional.cross_entropy(logits, y)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
        optimizer.zero_grad(set_to_none=True)
        losses.append(float(loss.detach()))
        scales.append(float(scaler.get_scale()))
        if time.perf_counter() > ctx.deadline:
            break
    synchronize(ctx.device)
    finite = all(math.isfinite(v) for v in losses)
    record = {
        "autocast_dtype": str(logits.dtype),
        "steps": len(losses),
        "losses": [round(v, 4) for v in losses],
        "grad_scale": scales,
        "loss_finite": finite,
        "seconds": round(time.perf_counter() - started, 2),
    }
    if not finite:
        raise CheckFailed(f"fp16 loss not finite: {record['losses']}", record)
    return record


def checkpoint_resume(ctx: StageContext) -> dict[str, Any]:
    """f) train, checkpoint on the device, resume into fresh objects on the device: the next losses must match."""
    s = ctx.sizes
    size = s.image_size
    batches = [
        (
            torch.randn(s.fp16_batch, 3, size, size, device=ctx.device),
            torch.randint(0, 2, (s.fp16_batch,), device=ctx.device),
        )
        for _ in range(4)
    ]

    def fresh() -> tuple[nn.Module, torch.optim.Optimizer]:
        model = resnet.resnet18(2).to(ctx.device)
        return model, torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)  # momentum: state to resume

    def step(model: nn.Module, optimizer: torch.optim.Optimizer, batch: tuple[torch.Tensor, torch.Tensor]) -> float:
        model.train()
        loss = nn.functional.cross_entropy(model(batch[0]), batch[1])
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        return float(loss.detach())

    torch.manual_seed(0)
    model, optimizer = fresh()
    for batch in batches[:2]:
        step(model, optimizer, batch)
    state = {"model": model.state_dict(), "optimizer": optimizer.state_dict(), "global_step": 2}
    writer, loaded = _save_and_load(state, ctx)
    expected = [step(model, optimizer, batch) for batch in batches[2:]]

    resumed_model, resumed_optimizer = fresh()
    resumed_model.load_state_dict(loaded["model"])
    resumed_optimizer.load_state_dict(loaded["optimizer"])
    on_device = all(t.device.type == ctx.device.type for t in loaded["model"].values())
    got = [step(resumed_model, resumed_optimizer, batch) for batch in batches[2:]]
    diff = max(abs(a - b) for a, b in zip(expected, got))
    record = {
        "writer": writer,
        "loaded_tensors_on": ctx.device.type if on_device else "elsewhere",
        "resumed_at_step": int(loaded["global_step"]),
        "losses_uninterrupted": [round(v, 6) for v in expected],
        "losses_resumed": [round(v, 6) for v in got],
        "max_abs_diff": diff,
    }
    # cuDNN may pick different (not bit-identical) kernels for the fresh model; 1e-4 relative is far below a bug.
    if not on_device or diff > 1e-4 * max(1.0, abs(expected[0])):
        raise CheckFailed(f"resumed losses {got} differ from {expected} (or not loaded on {ctx.device})", record)
    return record


def _save_and_load(state: dict[str, Any], ctx: StageContext) -> tuple[str, dict[str, Any]]:
    """The project's CheckpointManager when importable (it needs numpy), else plain torch.save; both read back with
    torch.load(weights_only=True) onto the device."""
    directory = ctx.workdir / "checkpoints"
    try:
        from training_scripts import checkpoint
    except ImportError as exc:  # numpy missing on the device machine
        directory.mkdir(parents=True, exist_ok=True)
        path = directory / "ckpt.pt"
        torch.save(state, path)
        loaded = torch.load(path, map_location=ctx.device, weights_only=True)
        return f"torch.save (training_scripts.checkpoint not importable: {exc})", loaded
    manager = checkpoint.CheckpointManager(directory)
    manager.save({**state, "rng": checkpoint.capture_rng_state()}, epoch=0, global_step=state["global_step"])
    found = checkpoint.latest_valid_checkpoint(directory, map_location=ctx.device)
    if found is None:
        raise RuntimeError(f"no valid checkpoint found in {directory} right after writing one")
    return f"training_scripts.checkpoint.CheckpointManager ({found.path.name}, weights_only=True)", found.state


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def ddp_step(ctx: StageContext) -> dict[str, Any]:
    """g) init_process_group (NCCL on CUDA, gloo on the CPU) with world_size 1, one DDP train step, an all_reduce."""
    backend = "nccl" if ctx.device.type == "cuda" else "gloo"
    port = _free_port()
    started = time.perf_counter()
    dist.init_process_group(
        backend=backend,
        init_method=f"tcp://127.0.0.1:{port}",
        rank=0,
        world_size=1,
        timeout=timedelta(seconds=max(10.0, ctx.left_s())),
    )
    try:
        init_s = time.perf_counter() - started
        model = resnet.resnet18(2).to(ctx.device)
        ids = [ctx.device.index or 0] if ctx.device.type == "cuda" else None
        ddp = nn.parallel.DistributedDataParallel(model, device_ids=ids)
        optimizer = torch.optim.SGD(ddp.parameters(), lr=0.01)
        size = ctx.sizes.image_size
        x = torch.randn(2, 3, size, size, device=ctx.device)
        loss = nn.functional.cross_entropy(ddp(x), torch.tensor([0, 1], device=ctx.device))
        loss.backward()  # DDP all-reduces the gradients here
        optimizer.step()
        probe = torch.tensor([3.0], device=ctx.device)
        dist.all_reduce(probe)
        synchronize(ctx.device)
        loss_value, reduced = float(loss.detach()), float(probe)
        record = {
            "backend": dist.get_backend(),
            "world_size": dist.get_world_size(),
            "init_seconds": round(init_s, 3),
            "loss": round(loss_value, 4),
            "all_reduce_sum": reduced,
        }
    finally:
        dist.destroy_process_group()
    if reduced != 3.0 or not math.isfinite(loss_value):
        raise CheckFailed("all_reduce over one process must return its input and the loss be finite", record)
    return record
