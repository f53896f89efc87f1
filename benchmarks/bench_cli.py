"""Wall time of the CLI where users wait for it: `--help` and the dry-runs (no credentials, no network).

Each command runs as a fresh process (what a user types), from a scratch folder, --repeats times; the median and
the slowest run are reported. Dry-runs write into a new --out folder each time, so every run stages the snapshot
and, without --data, generates the preset's synthetic data, as a first run does.

    python -m benchmarks.bench_cli [--repeats 7] [--machine NAME] [--smoke [--save]]
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from benchmarks.common import BenchmarkResult, add_output_arguments, command_line, machine_info, save_unless_smoke

CLI = [sys.executable, "-m", "azure_dl"]
COMMANDS: list[tuple[str, list[str], float | None]] = [
    # (label, arguments, the budget the issue sets, in seconds)
    ("azure-dl --help", ["--help"], 0.5),
    ("azure-dl submit resnet --dry-run --out DIR", ["submit", "resnet", "--dry-run", "--out", "{out}"], 3.0),
    (
        "azure-dl submit resnet --dry-run --data azureml:xray:1 --out DIR",
        ["submit", "resnet", "--dry-run", "--data", "azureml:xray:1", "--out", "{out}"],
        None,
    ),
    ("azure-dl sweep lstm --dry-run --out DIR", ["sweep", "lstm", "--dry-run", "--out", "{out}"], None),
    ("azure-dl pipeline resnet --dry-run --out DIR", ["pipeline", "resnet", "--dry-run", "--out", "{out}"], None),
]


def time_command(arguments: list[str], scratch: Path, repeats: int) -> list[float]:
    samples = []
    for attempt in range(repeats):
        out = scratch / f"out{attempt}"
        argv = [*CLI, *(a.replace("{out}", str(out)) for a in arguments)]
        started = time.perf_counter()
        result = subprocess.run(argv, cwd=scratch, capture_output=True, text=True, env={**os.environ, "NO_COLOR": "1"})
        samples.append(time.perf_counter() - started)
        if result.returncode != 0:
            raise SystemExit(f"{' '.join(argv)} failed ({result.returncode}):\n{result.stderr[-2000:]}")
        shutil.rmtree(out, ignore_errors=True)
    return samples


def run(args: argparse.Namespace) -> BenchmarkResult:
    repeats = 1 if args.smoke else args.repeats
    result = BenchmarkResult(
        name="cli_latency",
        title="CLI latency (no credentials, no network)",
        command=command_line("benchmarks.bench_cli", None),
        machine=machine_info(args.machine),
    )
    rows = []
    commands = COMMANDS[:2] if args.smoke else COMMANDS
    with tempfile.TemporaryDirectory() as tmp:
        for label, arguments, budget in commands:
            samples = sorted(time_command(arguments, Path(tmp), repeats))
            median = samples[len(samples) // 2]
            rows.append(
                {
                    "command": label,
                    "median s": median,
                    "slowest s": samples[-1],
                    "budget s": budget,
                    "within budget": None if budget is None else ("yes" if median <= budget else "NO"),
                }
            )
            print(f"{label:70s} median {median:.3f} s  slowest {samples[-1]:.3f} s", flush=True)
    result.add_table(f"Wall time per command, fresh process each run ({repeats} runs)", rows)
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    if load is not None:
        result.notes.append(f"1-minute load average when the run ended: {load:.2f}")
    return result


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7, help="runs per command; median reported (default 7)")
    add_output_arguments(parser, smoke_help="one run of the first two commands")
    args = parser.parse_args(argv)
    result = run(args)
    save_unless_smoke(result, args)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
