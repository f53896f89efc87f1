"""INT8 vs fp32 ONNX Runtime inference on the CPU: latency, model size and top-1 agreement.

The INT8 models are made exactly as `azure-dl register --quantize` makes them (training_scripts.quantize): ResNets
by static QDQ quantization (per-channel int8 weights, uint8 activations calibrated on half of a synthetic X-ray-like
image set, through the model's own 224 px evaluation preprocessing), the LSTM by dynamic quantization. Agreement
is the share of held-out items (the other half of the images; synthetic reviews for the LSTM) whose top-1 class is
the same under both models; logit_rel_err = ||int8 logits - fp32 logits|| / ||fp32 logits|| on them.

Weights are RANDOM (seeded; two classes), not trained: latency does not depend on them, and agreement on them
measures numeric fidelity only, not accuracy. `--folder DIR` measures training output folders (your trained
models) instead. Both models get the same threads; each time is the median of --repeats runs after warm-up.

    python -m benchmarks.bench_quantization [--repeats 7] [--threads N] [--machine NAME] [--folder DIR ...]
                                            [--smoke [--save]]
"""

from __future__ import annotations

import argparse
import json
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

NAME = "quantization_cpu"
NUM_CLASSES = 2
LSTM_CONFIG = {"vocab_size": 30_000, "embed_dim": 300, "hidden_size": 128, "num_layers": 1, "bidirectional": False}
SMOKE_LSTM_CONFIG = {"vocab_size": 60, "embed_dim": 8, "hidden_size": 8, "num_layers": 1, "bidirectional": False}
SEQ_LEN = 100


@dataclass(frozen=True)
class Case:
    model: str  # "resnet18" | "resnet50" | "lstm", or a folder's arch
    batches: tuple[int, ...]  # batch sizes timed
    size: int  # image size, or sequence length for the LSTM
    folder: Path | None = None  # an existing training output folder (trained weights) instead of random ones


FULL_CASES = [Case("resnet18", (1, 8), 224), Case("resnet50", (1, 8), 224), Case("lstm", (1, 64), SEQ_LEN)]
# The smoke run exports only a tiny LSTM (a ResNet export alone takes ~10 s here); --folder covers image models.
SMOKE_CASES = [Case("lstm", (2,), 10)]


def folder_case(folder: Path, batches: tuple[int, ...]) -> Case:
    """A case for an existing training output folder: its arch (model_config.json) and input size."""
    from training_scripts.preprocess_config import ImagePreprocessConfig, load_preprocess_config

    config_file = folder / "model_config.json"
    config = json.loads(config_file.read_text()) if config_file.is_file() else {}
    cfg = load_preprocess_config(folder)
    size = cfg.image_size if isinstance(cfg, ImagePreprocessConfig) else cfg.seq_len
    return Case(str(config.get("arch") or folder.name), batches, size, folder)


def _session(path: Path, threads: int) -> Any:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    return ort.InferenceSession(str(path), sess_options=options, providers=["CPUExecutionProvider"])


def model_folder(case: Case, folder: Path, lstm_config: dict[str, Any]) -> Path:
    """A training-output-like folder (model.onnx, preprocess.json, labels.json, vocab.json) with random weights."""
    import torch

    from training_scripts.export_onnx import INPUT_IDS, PIXEL_VALUES, export_onnx
    from training_scripts.models import build_model
    from training_scripts.preprocess_config import ImagePreprocessConfig, TextPreprocessConfig, save_preprocess_config

    folder.mkdir(parents=True)
    torch.manual_seed(0)
    is_lstm = case.model == "lstm"
    model = build_model(case.model, NUM_CLASSES, **(lstm_config if is_lstm else {})).eval()
    if is_lstm:
        example = torch.randint(1, lstm_config["vocab_size"], (2, case.size))
        vocabulary(lstm_config["vocab_size"]).save(folder)
        save_preprocess_config(folder, TextPreprocessConfig(seq_len=case.size))
    else:
        example = torch.randn(2, 3, case.size, case.size)
        save_preprocess_config(folder, ImagePreprocessConfig(image_size=case.size, resize_size=case.size * 8 // 7))
    export_onnx(
        model,
        example,
        folder / "model.onnx",
        input_name=INPUT_IDS if is_lstm else PIXEL_VALUES,
        dynamic_sequence=is_lstm,
    )
    (folder / "labels.json").write_text(json.dumps(["negative", "positive"]))
    return folder


def vocabulary(size: int) -> Any:
    """The synthetic reviews' own tokens first (so their ids hit trained-size rows), then filler up to `size`."""
    from training_scripts.quantize import read_texts
    from training_scripts.synth import synth_text
    from training_scripts.text_vocab import Vocabulary, tokenize

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "texts.csv"
        synth_text(path, n=200, seed=1)
        texts = read_texts(path)
    vocab = Vocabulary.build((tokenize(text) for text in texts), max_size=size)
    filler = [f"tok{index}" for index in range(size - len(vocab))]
    return Vocabulary([*vocab.itos, *filler])


def _median_run(session: Any, feed: dict[str, Any], repeats: int) -> float:
    seconds, _ = median_seconds(lambda: session.run(None, feed), repeats=repeats, warmup=2)
    return seconds


def measure(case: Case, folder: Path, workdir: Path, threads: Sequence[int], repeats: int) -> list[dict[str, Any]]:
    """Quantize once, then time fp32 and int8 side by side at each thread count and batch size."""
    import numpy as np

    from training_scripts.quantize import agreement, make_candidate

    candidate = make_candidate(folder, workdir)
    fp32_path, name, held = folder / "model.onnx", candidate.input_name, candidate.held_out
    fp32, int8 = _session(fp32_path, threads[0]), _session(candidate.int8, threads[0])
    reference = np.concatenate([fp32.run(None, {name: held[i : i + 16]})[0] for i in range(0, len(held), 16)])
    quantized = np.concatenate([int8.run(None, {name: held[i : i + 16]})[0] for i in range(0, len(held), 16)])
    agreed = agreement(fp32_path, candidate.int8, name, held)
    rel_err = float(np.linalg.norm(quantized - reference)) / max(float(np.linalg.norm(reference)), 1e-12)
    rows = []
    for count in threads:
        fp32, int8 = _session(fp32_path, count), _session(candidate.int8, count)
        for batch in case.batches:
            inputs = np.resize(held, (batch, *held.shape[1:]))  # repeats held-out items when the batch is larger
            fp32_s = _median_run(fp32, {name: inputs}, repeats)
            int8_s = _median_run(int8, {name: inputs}, repeats)
            rows.append(
                {
                    "model": case.model,
                    "weights": "random" if case.folder is None else f"trained ({case.folder.name})",
                    "method": candidate.method,
                    "input": "x".join(map(str, inputs.shape)),
                    "threads": count,
                    "fp32_ms": fp32_s * 1e3,
                    "int8_ms": int8_s * 1e3,
                    "speedup": fp32_s / int8_s,
                    "agreement": agreed,
                    "held_out": len(held),
                    "logit_rel_err": rel_err,
                    "fp32_mb": fp32_path.stat().st_size / 1e6,
                    "int8_mb": candidate.int8.stat().st_size / 1e6,
                    "accepted_at_99": agreed >= 0.99,
                }
            )
            print(
                f"{case.model:9s} {rows[-1]['input']:>14s} {count} thr  fp32 {fp32_s * 1e3:9.2f} ms  int8 "
                f"{int8_s * 1e3:9.2f} ms  x{fp32_s / int8_s:5.2f}  agreement {agreed:.3f} on {len(held)}",
                flush=True,
            )
    return rows


def run(
    cases: Sequence[Case], *, repeats: int, threads: Sequence[int], lstm_config: dict[str, Any]
) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="bench-quant-") as tmp:
        for index, case in enumerate(cases):
            folder = case.folder or model_folder(case, Path(tmp) / f"{index}-{case.model}", lstm_config)
            workdir = Path(tmp) / f"{index}-{case.model}-quantized"
            workdir.mkdir()
            rows += measure(case, folder, workdir, threads, repeats)
    return rows


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=7, help="timed runs per case; the median is kept (default 7)")
    parser.add_argument(
        "--threads",
        type=int,
        nargs="+",
        default=sorted({1, os.cpu_count() or 1}),
        help="intra-op thread counts to measure, the same for both models (default: 1 and all cores)",
    )
    parser.add_argument(
        "--folder",
        type=Path,
        action="append",
        default=[],
        metavar="DIR",
        help="measure this training output folder (trained weights) instead of the random-weight models (repeatable)",
    )
    add_output_arguments(parser, smoke_help="tiny models and sizes")
    args = parser.parse_args(argv)
    if args.repeats < 1 or min(args.threads) < 1:
        parser.error("--repeats and --threads must be at least 1")
    cases = SMOKE_CASES if args.smoke else FULL_CASES
    if args.folder:
        cases = [folder_case(folder, (1,) if args.smoke else (1, 8)) for folder in args.folder]
    lstm_config = SMOKE_LSTM_CONFIG if args.smoke else LSTM_CONFIG
    repeats = 1 if args.smoke else args.repeats
    load_before = load_average()
    rows = run(cases, repeats=repeats, threads=args.threads, lstm_config=lstm_config)
    load_after = load_average()
    result = BenchmarkResult(
        name=NAME,
        title="INT8 vs fp32 ONNX Runtime, CPU inference (quantized as `register --quantize` does)",
        command=command_line("benchmarks.bench_quantization", argv),
        machine=machine_info(args.machine),
    )
    result.add_table(
        f"Median latency per call (ms) over {repeats} runs; speedup = fp32 time / int8 time; agreement = top-1 "
        "agreement on the held-out items; accepted_at_99 = what `register --quantize` would keep",
        rows,
        [
            "model",
            "weights",
            "method",
            "input",
            "threads",
            "fp32_ms",
            "int8_ms",
            "speedup",
            "agreement",
            "held_out",
            "logit_rel_err",
            "fp32_mb",
            "int8_mb",
            "accepted_at_99",
        ],
    )
    if args.folder:
        result.notes.append(
            "Trained models from training output folders; static QDQ calibrated on half of synthetic X-ray-like "
            "images through each model's own preprocessing (agreement on the other half); text models dynamic int8, "
            "agreement on 200 synthetic reviews."
        )
    else:
        result.notes += [
            "Random weights (seeded, 2 classes), not trained models: agreement and logit_rel_err measure numeric "
            "fidelity to the fp32 model, not accuracy.",
            "ResNets: static QDQ (per-channel int8 weights, uint8 activations, MinMax calibration) on half of 80 "
            "synthetic X-ray-like images resized/cropped to 224 px; agreement on the other 40. LSTM (train_lstm "
            f"defaults: vocab {lstm_config['vocab_size']}, embed {lstm_config['embed_dim']}, hidden "
            f"{lstm_config['hidden_size']}): dynamic int8, agreement on 200 synthetic reviews at {SEQ_LEN} tokens.",
        ]
    result.notes += [
        "ONNX Runtime CPUExecutionProvider, intra-op threads as listed, inter-op 1; batches larger than the held-out "
        "set repeat its items.",
    ]
    result.notes += load_notes(
        load_before,
        load_after,
        busy_effect="multi-threaded rows most; compare fp32 and int8 within a row (measured back to back), and "
        "prefer the 1-thread rows.",
    )
    save_unless_smoke(result, args)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
