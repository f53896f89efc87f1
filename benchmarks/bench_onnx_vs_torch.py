"""ONNX Runtime vs PyTorch eager inference latency on the CPU, with speed-up and achieved GFLOP/s.

Models: ResNet-18 and ResNet-50 at 224 x 224, batch 1, 8 and 32; the LSTM classifier (train_lstm's defaults:
300-d embeddings, 128 hidden, one forward layer, 30,000-token vocabulary) at [1, 100] and [64, 100]. Weights are
random (seeded): latency does not depend on their values. Each model is exported with the project's own exporter
(training_scripts.export_onnx: dynamo, dynamic batch), both runtimes get the same number of threads, and each
time is the median of --repeats runs after warm-up runs. FLOPs per call: the ResNets' by
torch.utils.flop_counter.FlopCounterMode on the eager model (2 FLOPs per multiply-add of convolutions and
matrix products); the LSTM's analytically, since FlopCounterMode does not see inside aten.lstm:
N * (2 * T * 4H(E + H) + 2 * H * C) (gate matrix products and the head; element-wise gate math left out).

    python -m benchmarks.bench_onnx_vs_torch [--repeats 7] [--threads N] [--machine NAME] [--smoke [--save]]
"""

from __future__ import annotations

import argparse
import os
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmarks.common import (
    BenchmarkResult,
    add_output_arguments,
    command_line,
    load_average,
    load_notes,
    machine_info,
    median_seconds,
    save_unless_smoke,
)

NAME = "onnx_vs_torch_cpu"
LSTM_CONFIG = {"vocab_size": 30_000, "embed_dim": 300, "hidden_size": 128, "num_layers": 1, "bidirectional": False}
NUM_CLASSES = 2


@dataclass(frozen=True)
class Case:
    model: str  # "resnet18", "resnet50", "lstm"
    shape: tuple[int, ...]  # [N, 3, H, W] or [N, T]


FULL_CASES = [
    *(Case(arch, (batch, 3, 224, 224)) for arch in ("resnet18", "resnet50") for batch in (1, 8, 32)),
    Case("lstm", (1, 100)),
    Case("lstm", (64, 100)),
]
SMOKE_CASES = [Case("resnet18", (1, 3, 32, 32)), Case("resnet18", (2, 3, 32, 32)), Case("lstm", (2, 10))]
SMOKE_LSTM_CONFIG = {"vocab_size": 50, "embed_dim": 8, "hidden_size": 8, "num_layers": 1, "bidirectional": False}


def lstm_flops(batch: int, steps: int, embed: int, hidden: int, classes: int) -> float:
    """Multiply-adds x 2 of a one-layer forward LSTM over `steps` tokens plus the linear head."""
    return float(batch * (2 * steps * 4 * hidden * (embed + hidden) + 2 * hidden * classes))


def counted_flops(model: Any, example: Any) -> float:
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    with torch.inference_mode(), FlopCounterMode(display=False) as counter:
        model(example)
    return float(counter.get_total_flops())


def _build(name: str, lstm_config: dict[str, Any]) -> Any:
    import torch

    from training_scripts.models import build_model

    torch.manual_seed(0)
    kwargs = lstm_config if name == "lstm" else {}
    return build_model(name, NUM_CLASSES, **kwargs).eval()


def _example(case: Case, vocab_size: int) -> Any:
    import torch

    generator = torch.Generator().manual_seed(1)
    if case.model == "lstm":
        return torch.randint(1, vocab_size, case.shape, generator=generator)
    return torch.randn(case.shape, generator=generator)


def _session(path: Path, threads: int) -> Any:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    return ort.InferenceSession(str(path), sess_options=options, providers=["CPUExecutionProvider"])


def run(
    cases: Sequence[Case], *, repeats: int, threads: Sequence[int], lstm_config: dict[str, Any]
) -> list[dict[str, Any]]:
    import torch

    from training_scripts.export_onnx import INPUT_IDS, PIXEL_VALUES, export_onnx

    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="bench-onnx-") as tmp:
        for name in dict.fromkeys(case.model for case in cases):
            model = _build(name, lstm_config)
            first = next(case for case in cases if case.model == name)
            path = Path(tmp) / f"{name}.onnx"
            is_lstm = name == "lstm"
            export_onnx(
                model,
                _example(first, lstm_config["vocab_size"]),
                path,
                input_name=INPUT_IDS if is_lstm else PIXEL_VALUES,
                dynamic_sequence=is_lstm,
            )
            for count in threads:
                torch.set_num_threads(count)
                session = _session(path, count)
                input_name = session.get_inputs()[0].name
                for case in (c for c in cases if c.model == name):
                    rows.append(_measure(model, session, input_name, case, count, repeats, lstm_config))
    return rows


def _measure(
    model: Any, session: Any, input_name: str, case: Case, threads: int, repeats: int, lstm_config: dict[str, Any]
) -> dict[str, Any]:
    import numpy as np
    import torch

    example = _example(case, lstm_config["vocab_size"])
    feed = {input_name: example.numpy()}
    with torch.inference_mode():
        expected = model(example).numpy()
    diff = float(np.abs(session.run(None, feed)[0] - expected).max())
    warmup = 2 if case.shape[0] <= 8 else 1

    def torch_call() -> None:
        with torch.inference_mode():
            model(example)

    torch_s, _ = median_seconds(torch_call, repeats=repeats, warmup=warmup)
    ort_s, _ = median_seconds(lambda: session.run(None, feed), repeats=repeats, warmup=warmup)
    if case.model == "lstm":
        cfg = lstm_config
        flops = lstm_flops(case.shape[0], case.shape[1], cfg["embed_dim"], cfg["hidden_size"], NUM_CLASSES)
    else:
        flops = counted_flops(model, example)
    row = {
        "model": case.model,
        "input": "x".join(map(str, case.shape)),
        "threads": threads,
        "torch_ms": torch_s * 1e3,
        "ort_ms": ort_s * 1e3,
        "speedup": torch_s / ort_s,
        "gflop_per_call": flops / 1e9,
        "torch_gflops": flops / torch_s / 1e9,
        "ort_gflops": flops / ort_s / 1e9,
        "max_abs_diff": diff,
    }
    print(
        f"{case.model:9s} {row['input']:>14s} {threads} thr  torch {torch_s * 1e3:9.2f} ms  ORT {ort_s * 1e3:9.2f} ms"
        f"  x{torch_s / ort_s:5.2f}  {flops / 1e9:8.3f} GFLOP  ORT {flops / ort_s / 1e9:7.1f} GFLOP/s",
        flush=True,
    )
    return row


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=7, help="timed runs per case; the median is kept (default 7)")
    parser.add_argument(
        "--threads",
        type=int,
        nargs="+",
        default=sorted({1, os.cpu_count() or 1}),
        help="thread counts to measure, the same for PyTorch and ONNX Runtime (default: 1 and all cores)",
    )
    add_output_arguments(parser, smoke_help="tiny models and sizes")
    args = parser.parse_args(argv)
    if args.repeats < 1 or min(args.threads) < 1:
        parser.error("--repeats and --threads must be at least 1")
    cases = SMOKE_CASES if args.smoke else FULL_CASES
    lstm_config = SMOKE_LSTM_CONFIG if args.smoke else LSTM_CONFIG
    repeats = 1 if args.smoke else args.repeats
    load_before = load_average()
    rows = run(cases, repeats=repeats, threads=args.threads, lstm_config=lstm_config)
    load_after = load_average()
    result = BenchmarkResult(
        name=NAME,
        title="ONNX Runtime vs PyTorch eager, CPU inference",
        command=command_line("benchmarks.bench_onnx_vs_torch", argv),
        machine=machine_info(args.machine),
    )
    result.add_table(
        f"Median latency per call (ms) over {repeats} runs, `threads` for both runtimes; "
        "speedup = PyTorch time / ONNX Runtime time; GFLOP/s = FLOPs per call / median time",
        rows,
        [
            "model",
            "input",
            "threads",
            "torch_ms",
            "ort_ms",
            "speedup",
            "gflop_per_call",
            "torch_gflops",
            "ort_gflops",
            "max_abs_diff",
        ],
    )
    result.notes += [
        "Random weights (seeded); exported by training_scripts.export_onnx (dynamo exporter, dynamic batch); "
        "ONNX Runtime CPUExecutionProvider with intra-op threads = PyTorch threads, inter-op 1.",
        "FLOPs: ResNets counted by torch.utils.flop_counter.FlopCounterMode (2 per multiply-add); LSTM "
        f"analytic N*(2*T*4H(E+H) + 2*H*C) with E={lstm_config['embed_dim']}, H={lstm_config['hidden_size']}, "
        f"C={NUM_CLASSES}, one forward layer.",
        "max_abs_diff: largest |logit difference| between the two runtimes on the timed input.",
    ]
    result.notes += load_notes(
        load_before,
        load_after,
        busy_effect="the multi-threaded rows suffer most (a thread waits at each barrier for a partner that another "
        "process holds), so compare runtimes within a row, and prefer the 1-thread rows.",
    )
    save_unless_smoke(result, args)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
