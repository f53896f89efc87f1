"""Process-group set-up and the few collectives training needs; a plain single process when not launched as DDP.

`init_distributed()` reads what torchrun and Azure ML's PyTorch distribution both set (RANK, WORLD_SIZE,
LOCAL_RANK, MASTER_ADDR, MASTER_PORT). With WORLD_SIZE unset or 1 it sets nothing up and every helper here
degrades to the identity, so the same training code runs in one process, under torchrun, and in an Azure ML job.
Backend: NCCL when the device is CUDA, gloo on CPU. Every helper must be called by all ranks at the same point.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import ParamSpec, TypeVar

import torch
import torch.distributed as dist

P = ParamSpec("P")
R = TypeVar("R")
T = TypeVar("T")


@dataclass(frozen=True)
class DistContext:
    """Where this process stands: its rank among `world_size` processes, and the device it trains on."""

    rank: int
    world_size: int
    local_rank: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        """Rank 0: the one process that writes checkpoints, logs to MLflow and prints progress."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name, "")
    if value == "":
        return default
    try:
        return int(value)
    except ValueError:
        raise ValueError(f"environment variable {name}={value!r} is not an integer (set by the launcher)") from None


def _pick_device(requested: str | None, local_rank: int) -> torch.device:
    if requested not in (None, "", "auto"):
        device = torch.device(str(requested))
        if device.type == "cuda":
            if not torch.cuda.is_available():
                raise ValueError(f"device {requested!r} was asked for but CUDA is not available: use 'cpu' or 'auto'")
            if device.index is None:
                device = torch.device("cuda", local_rank)
        return device
    if torch.cuda.is_available():
        return torch.device("cuda", local_rank % torch.cuda.device_count())
    return torch.device("cpu")


def init_distributed(device: str | None = None) -> DistContext:
    """Join the process group when launched with WORLD_SIZE > 1; otherwise describe a single process.

    `device`: None or "auto" = CUDA (the GPU of LOCAL_RANK) when available, else CPU; "cpu" forces the CPU
    (gloo), which is how the tests run DDP.
    """
    world_size = _env_int("WORLD_SIZE", 1)
    rank = _env_int("RANK", 0)
    local_rank = _env_int("LOCAL_RANK", rank if world_size > 1 else 0)
    target = _pick_device(device, local_rank)
    if world_size <= 1:
        return DistContext(rank=0, world_size=1, local_rank=0, device=target)
    missing = [name for name in ("MASTER_ADDR", "MASTER_PORT") if not os.environ.get(name)]
    if missing:
        raise ValueError(
            f"WORLD_SIZE={world_size} but {', '.join(missing)} is not set: launch with torchrun "
            "(or an Azure ML PyTorch distribution), or unset WORLD_SIZE for one process"
        )
    if target.type == "cuda":
        torch.cuda.set_device(target)
    if not dist.is_initialized():
        backend = "nccl" if target.type == "cuda" else "gloo"
        dist.init_process_group(backend=backend, init_method="env://", rank=rank, world_size=world_size)
    return DistContext(rank=rank, world_size=world_size, local_rank=local_rank, device=target)


def _comm_device(ctx: DistContext) -> torch.device:
    # NCCL only moves CUDA tensors; gloo only CPU ones.
    return ctx.device if ctx.device.type == "cuda" else torch.device("cpu")


def all_reduce_sum(values: Sequence[float] | torch.Tensor, ctx: DistContext) -> list[float]:
    """Element-wise sums over all ranks (float64), e.g. [loss_sum, sample_count]."""
    tensor = torch.as_tensor(values, dtype=torch.float64).detach().reshape(-1).clone()
    if ctx.distributed:
        tensor = tensor.to(_comm_device(ctx))
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return [float(value) for value in tensor.cpu().tolist()]


def gather_rows(rows: torch.Tensor, total: int, ctx: DistContext) -> torch.Tensor:
    """Concatenate every rank's rows back into dataset order and drop the sampler's padding.

    Assumes each rank holds the rows of an unshuffled `ResumableSampler` shard (rank r: indices r, r + W, ...,
    padded at the end to the same length on every rank); then interleaving the shards restores indices 0..total-1.
    """
    if not ctx.distributed:
        return rows[:total]
    local = rows.detach().contiguous().to(_comm_device(ctx))
    parts = [torch.empty_like(local) for _ in range(ctx.world_size)]
    dist.all_gather(parts, local)
    stacked = torch.stack(parts, dim=1)  # [rows per rank, world_size, ...]
    return stacked.reshape(-1, *local.shape[1:])[:total].to(rows.device)


def gather_predictions(
    probs: torch.Tensor, labels: torch.Tensor, total: int, ctx: DistContext
) -> tuple[torch.Tensor, torch.Tensor]:
    """Probabilities [N, C] and labels [N] of the whole evaluation set on every rank, padding trimmed."""
    return gather_rows(probs, total, ctx), gather_rows(labels, total, ctx)


def broadcast_flag(flag: bool, ctx: DistContext) -> bool:
    """Rank 0's decision (e.g. stop early) on every rank, so no rank waits in a collective the others left."""
    if not ctx.distributed:
        return flag
    tensor = torch.tensor([1 if flag else 0], dtype=torch.int64, device=_comm_device(ctx))
    dist.broadcast(tensor, src=0)
    return bool(tensor.item())


def broadcast_int(value: int, ctx: DistContext) -> int:
    """Rank 0's integer on every rank."""
    if not ctx.distributed:
        return value
    tensor = torch.tensor([value], dtype=torch.int64, device=_comm_device(ctx))
    dist.broadcast(tensor, src=0)
    return int(tensor.item())


def broadcast_object(value: T, ctx: DistContext) -> T:
    """Rank 0's picklable value (e.g. a list of paths) on every rank."""
    if not ctx.distributed:
        return value
    holder: list[object] = [value]
    dist.broadcast_object_list(holder, src=0, device=_comm_device(ctx))
    return holder[0]  # type: ignore[return-value]


def barrier(ctx: DistContext) -> None:
    if ctx.distributed:
        if ctx.device.type == "cuda":
            dist.barrier(device_ids=[ctx.device.index or 0])
        else:
            dist.barrier()


def cleanup(ctx: DistContext, *, synchronize: bool = False, timeout_s: float = 1800.0) -> None:
    """Leave the process group (call once at the end, also after an error, so torchrun exits promptly).

    `synchronize=True` (a rank that finished cleanly) first waits, at most `timeout_s`, for the other ranks to
    reach the same point: a gloo rank that tears its process group down while a peer's is still alive can abort
    with "terminate called without an active exception" (seen here on a loaded 2-core machine in about one run
    in three), so the ranks leave together. A rank that failed passes False and leaves at once; the waiting
    peers then see the connection close (or the timeout) and leave too.
    """
    if not (ctx.distributed and dist.is_initialized()):
        return
    if synchronize:
        try:
            if dist.get_backend() == "gloo":
                dist.monitored_barrier(timeout=timedelta(seconds=timeout_s))
            else:
                barrier(ctx)
        except RuntimeError:
            pass  # a peer left early (it failed and says why); nothing to wait for
    dist.destroy_process_group()


def on_main(ctx: DistContext, fn: Callable[P, R], *args: P.args, **kwargs: P.kwargs) -> R | None:
    """Run `fn` on rank 0 only (writing a file, logging); other ranks get None."""
    if ctx.is_main:
        return fn(*args, **kwargs)
    return None


def save_on_main(ctx: DistContext, obj: object, path: str | os.PathLike[str]) -> None:
    """`torch.save` on rank 0 only, like torchvision's `save_on_master`."""
    if ctx.is_main:
        torch.save(obj, path)


def unwrap(model: torch.nn.Module) -> torch.nn.Module:
    """The module inside DistributedDataParallel (its state_dict has no `module.` prefix)."""
    return model.module if isinstance(model, torch.nn.parallel.DistributedDataParallel) else model
