"""Training throughput: samples/s of the engine's own training step per preset, and the image loader's images/s.

Training cases run `engine.train_one_epoch` (forward, backward, optimizer step, the loop's loss bookkeeping) on
in-memory random tensors, so the figure is the model + loop cost without data loading; each repeat is one pass of
--steps batches after a warm-up pass, and the table gives the median. Cases:

- the two local profiles (presets.py): resnet18 at 64 px batch 16 from scratch; LSTM 64-d, seq 64, batch 32;
- the reference scenarios: resnet50 at 224 px (batch 32 on GPU, 8 on CPU to keep it short) with the stem,
  layer1 and layer2 frozen as train_resnet does; LSTM 300-d embeddings, 128 hidden, seq 100, batch 64.

On CUDA the resnet50 case is also run in bf16 autocast (fp16 + GradScaler where bf16 is missing) with
channels_last, with and without torch.compile. The loader case decodes 256 px PNGs from disk through the training
transform (random resized crop to 224, flip, normalise) with 0 and 2 worker processes. The engine is imported
without mlflow, so this also runs on a machine that has only torch, numpy and pillow (the lent GPU machine).

    python -m benchmarks.bench_training [--device cpu|cuda] [--repeats 5] [--steps 10] [--compile] [--machine NAME]
"""

from __future__ import annotations

import argparse
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmarks.common import (
    BenchmarkResult,
    add_output_arguments,
    command_line,
    machine_info,
    median_seconds,
    save_unless_smoke,
)


@dataclass(frozen=True)
class Case:
    name: str
    arch: str  # resnet18 / resnet50 / lstm
    batch: int
    shape: tuple[int, ...]  # one sample: (3, H, W) or (T,)
    options: dict[str, Any]
    freeze: str = "none"


def cases(device: str, smoke: bool) -> list[Case]:
    if smoke:
        return [
            Case("resnet18 32px (smoke)", "resnet18", 4, (3, 32, 32), {}),
            Case("lstm tiny (smoke)", "lstm", 4, (12,), {"vocab_size": 50, "embed_dim": 8, "hidden_size": 8}),
        ]
    scenario_batch = 32 if device == "cuda" else 8
    return [
        Case("resnet local profile (resnet18, 64 px, b16)", "resnet18", 16, (3, 64, 64), {}),
        Case(
            f"resnet scenario (resnet50, 224 px, b{scenario_batch}, frozen to layer2)",
            "resnet50",
            scenario_batch,
            (3, 224, 224),
            {},
            "layer2",
        ),
        Case(
            "lstm local profile (64-d, seq 64, b32)",
            "lstm",
            32,
            (64,),
            {"vocab_size": 5000, "embed_dim": 64, "hidden_size": 64},
        ),
        Case(
            "lstm scenario (300-d, 128 hidden, seq 100, b64)",
            "lstm",
            64,
            (100,),
            {"vocab_size": 30_000, "embed_dim": 300, "hidden_size": 128},
        ),
    ]


def train_samples_per_s(
    case: Case, *, device: str, steps: int, repeats: int, amp: bool, channels_last: bool, compile_model: bool
) -> float:
    import torch
    from torch.utils.data import DataLoader, TensorDataset

    from training_scripts import engine
    from training_scripts.distributed import init_distributed
    from training_scripts.models import build_model, freeze

    torch.manual_seed(0)
    ctx = init_distributed(device)
    model = build_model(case.arch, num_classes=2, **case.options)
    freeze(model, case.freeze)
    model.to(ctx.device)
    if channels_last:
        model.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
    train_model: Any = torch.compile(model) if compile_model else model
    count = case.batch * steps
    if case.arch == "lstm":
        inputs = torch.randint(1, case.options["vocab_size"], (count, *case.shape))
    else:
        inputs = torch.randn(count, *case.shape)
    loader = DataLoader(TensorDataset(inputs, torch.randint(0, 2, (count,))), batch_size=case.batch)
    optimizer = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    amp_dtype = engine.amp_dtype_for(ctx.device, amp)
    scaler = torch.amp.GradScaler("cuda") if amp_dtype == torch.float16 else None
    criterion = torch.nn.CrossEntropyLoss()
    control = engine.StepControl(epochs=1, steps_per_epoch=steps, log_every=10**9, channels_last=channels_last)

    def one_pass() -> None:
        state = engine.TrainState()
        engine.train_one_epoch(
            train_model, criterion, optimizer, loader, ctx, state, control, scaler=scaler, amp_dtype=amp_dtype
        )
        if ctx.device.type == "cuda":
            torch.cuda.synchronize()

    seconds, _ = median_seconds(one_pass, repeats=repeats, warmup=2 if compile_model else 1)
    return count / seconds


def loader_images_per_s(folder: Path, *, workers: int, batches: int, repeats: int) -> float:
    import torch
    from torch.utils.data import DataLoader

    from training_scripts.image_data import ImageDataset, train_transform
    from training_scripts.image_folder import scan_image_folder
    from training_scripts.preprocess_config import ImagePreprocessConfig

    index = scan_image_folder(folder)
    dataset = ImageDataset(index.samples, train_transform(ImagePreprocessConfig(image_size=224)))
    batch = 32
    loader = DataLoader(dataset, batch_size=batch, shuffle=True, num_workers=workers, persistent_workers=workers > 0)
    torch.manual_seed(0)

    def one_pass() -> None:
        for i, _ in enumerate(loader):
            if i + 1 >= batches:
                break

    seconds, _ = median_seconds(one_pass, repeats=repeats)
    return min(batches * batch, len(dataset)) / seconds


def run(args: argparse.Namespace) -> BenchmarkResult:
    import torch

    from training_scripts.synth import synth_images

    device = args.device
    if device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda: no CUDA device here")
    torch.set_num_threads(args.threads or torch.get_num_threads())
    steps, repeats = (2, 1) if args.smoke else (args.steps, args.repeats)
    result = BenchmarkResult(
        name=f"training_throughput_{device}",
        title=f"Training throughput ({device.upper()})",
        command=command_line("benchmarks.bench_training", None),
        machine=machine_info(args.machine),
    )
    rows = []
    for case in cases(device, args.smoke):
        variants: list[tuple[str, dict[str, bool]]] = [
            ("fp32", {"amp": False, "channels_last": False, "compile_model": False})
        ]
        if device == "cuda" and case.arch.startswith("resnet"):
            variants.append(
                ("bf16/fp16 autocast + channels_last", {"amp": True, "channels_last": True, "compile_model": False})
            )
            if args.compile:
                variants.append(
                    (
                        "autocast + channels_last + torch.compile",
                        {"amp": True, "channels_last": True, "compile_model": True},
                    )
                )
        baseline = None
        for label, options in variants:
            rate = train_samples_per_s(case, device=device, steps=steps, repeats=repeats, **options)
            baseline = baseline or rate
            rows.append({"case": case.name, "precision / layout": label, "samples/s": rate, "vs fp32": rate / baseline})
            print(f"{case.name:60s} {label:45s} {rate:10.1f} samples/s", flush=True)
    result.add_table(f"Training step throughput: median of {repeats} passes of {steps} batches", rows)

    loader_rows = []
    with tempfile.TemporaryDirectory() as tmp:
        per_class, size = (8, 64) if args.smoke else (64, 256)
        synth_images(Path(tmp) / "images", per_class=per_class, image_size=size, imbalance=1.0, seed=0)
        batches = 1 if args.smoke else 4
        for workers in (0,) if args.smoke else (0, 2):
            rate = loader_images_per_s(Path(tmp) / "images", workers=workers, batches=batches, repeats=repeats)
            loader_rows.append({"workers": workers, "images/s": rate})
            print(f"loader {size}px PNG -> 224 train transform, {workers} workers: {rate:.1f} images/s", flush=True)
    result.add_table("Image loader: decode PNG + random resized crop to 224 + flip + normalise, batch 32", loader_rows)
    if device == "cpu":
        result.notes.append(
            "CPU only: no GPU was lent to the session that measured this, so the bf16 + channels_last and "
            "torch.compile figures for resnet50 are not here (run with --device cuda --compile on a GPU)."
        )
    return result


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu", help="device to train on (default cpu)")
    parser.add_argument("--repeats", type=int, default=5, help="timed passes per case; the median is kept (default 5)")
    parser.add_argument("--steps", type=int, default=10, help="batches per timed pass (default 10)")
    parser.add_argument("--threads", type=int, default=0, help="torch intra-op threads (default: torch's choice)")
    parser.add_argument("--compile", action="store_true", help="on CUDA, also time torch.compile (default off)")
    add_output_arguments(parser, smoke_help="tiny sizes, one repeat")
    args = parser.parse_args(argv)
    result = run(args)
    save_unless_smoke(result, args)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
