"""Render every benchmarks/results/*.json into docs/benchmarks.md (machine, versions, command, tables, notes)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from benchmarks.common import RESULTS_DIR, BenchmarkResult, load_results

DOC = Path(__file__).resolve().parents[1] / "docs" / "benchmarks.md"

HEADER = """# Benchmarks

Every figure here was measured by a script in `benchmarks/` (its command is given with it) and is the median of
repeated runs unless the table says otherwise. Ratios are computed from figures measured side by side in the same
run. Regenerate one with its command, then this page with `python -m benchmarks.report`.
"""

# Written by hand, not from a results file: the GPU check (benchmarks/gpu_check) writes its own JSON and Markdown
# into its --out folder. Replace the last paragraph with its figures (and the machine's name) once it has run.
GPU_CHECK = """

## GPU check

`make gpu-check` (or `python -m benchmarks.gpu_check --out DIR`) is the one prepared check of issue 14 for a CUDA
machine: environment; ResNet-50 train-step images/s at bf16 autocast + channels_last, eager and with torch.compile,
at batch 256 and 128, with MFU (images/s x 3 x 8.2 GFLOP / the GPU's dense bf16 peak; null for a GPU not in
`benchmarks/gpu_check/sizes.py`); the train step fed end to end by the decode-once cache
(training_scripts.image_cache built from 512 synthetic PNGs, read through its memory map, `TrainBatchTransform` on
the GPU; where numpy or Pillow is missing, a synthetic uint8 pool with the same operations, as its JSON says); the
LSTM scenario's samples/s; fp16 + GradScaler (the T4 path); a checkpoint written and resumed on the GPU; a
one-process DDP step over NCCL. It needs only torch and the standard library (the device machine has its own
PyTorch and no network; stage c uses numpy and Pillow where they import), needs no venv, and stops itself after 270
s. It rewrites `gpu_check.json` after every stage and writes `gpu_check.md` (also printed) at the end, into `$OUT`
when set (the folder the device tool brings back), else `runs/gpu-check`. On the device tool: `make gpu-check ||
python3 -m benchmarks.gpu_check --out "$OUT"`. `python -m benchmarks.gpu_check --smoke` runs the same code on the
CPU at tiny sizes (the test suite does, in tests/unit/test_gpu_check.py).

No GPU figures have been measured yet: no GPU machine was lent to the sessions that built the check.
"""


def _cell(value: Any) -> str:
    if value is None:
        return "—"
    if isinstance(value, float):
        if value == 0 or 0.01 <= abs(value) < 100_000:
            return f"{value:,.3g}" if abs(value) < 10 else f"{value:,.1f}"
        return f"{value:.3g}"
    return str(value).replace("|", "\\|")


def _machine_line(machine: dict[str, Any]) -> str:
    versions = ", ".join(f"{k} {v}" for k, v in machine.get("versions", {}).items())
    gpu = f", GPU {machine['gpu']}" if machine.get("gpu") else ", no GPU"
    return (
        f"{machine.get('name')}: {machine.get('cpu')}, {machine.get('cores')} cores, {machine.get('memory_gib')} GiB"
        f"{gpu}; Python {machine.get('python')}; {versions}"
    )


def render(results: list[BenchmarkResult]) -> str:
    parts = [HEADER]
    for result in results:
        parts.append(f"\n## {result.title}\n")
        parts.append(f"- Machine: {_machine_line(result.machine)}")
        parts.append(f"- Measured: {result.measured_at}")
        parts.append(f"- Command: `{result.command}`\n")
        for table in result.tables:
            columns = table["columns"]
            parts.append(f"{table['caption']}\n")
            parts.append("| " + " | ".join(columns) + " |")
            parts.append("|" + "|".join("---" for _ in columns) + "|")
            for row in table["rows"]:
                parts.append("| " + " | ".join(_cell(row.get(c)) for c in columns) + " |")
            parts.append("")
        for note in result.notes:
            parts.append(f"- {note}")
    parts.append(GPU_CHECK)
    return "\n".join(parts).rstrip() + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--results", type=Path, default=RESULTS_DIR, help=f"results folder (default {RESULTS_DIR})")
    parser.add_argument("--out", type=Path, default=DOC, help=f"markdown file to write (default {DOC})")
    args = parser.parse_args(argv)
    args.out.write_text(render(load_results(args.results)), encoding="utf-8")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
