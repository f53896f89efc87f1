"""What every benchmark shares: machine and version facts, a median-of-repeats timer, and the result file format."""

from __future__ import annotations

import argparse
import datetime as _dt
import importlib.metadata
import json
import math
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

RESULTS_DIR = Path(__file__).resolve().parent / "results"
PACKAGES = ("torch", "onnxruntime", "onnx", "mlflow", "azure-ai-ml", "azureml-inference-server-http", "numpy")


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _memory_gib() -> float | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return round(int(line.split()[1]) / 1024**2, 1)
    except OSError:
        pass
    return None


def _gpu() -> str | None:
    try:
        import torch

        if torch.cuda.is_available():
            return torch.cuda.get_device_name(0)
    except ImportError:
        pass
    return None


def machine_info(name: str | None = None) -> dict[str, Any]:
    """Where a figure was measured; `name` overrides the label (e.g. "nvidia-h100-x1" from the device tool)."""
    versions = {}
    for package in PACKAGES:
        try:
            versions[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            continue
    return {
        "name": name or os.environ.get("AZURE_DL_BENCH_MACHINE") or f"{platform.node()} (CPU)",
        "cpu": _cpu_model(),
        "cores": os.cpu_count(),
        "memory_gib": _memory_gib(),
        "gpu": _gpu(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "versions": versions,
    }


def median_seconds(fn: Callable[[], object], *, repeats: int = 5, warmup: int = 1) -> tuple[float, list[float]]:
    """Median wall time of `fn` over `repeats` runs after `warmup` untimed runs; also every sample."""
    for _ in range(warmup):
        fn()
    samples = []
    for _ in range(repeats):
        started = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - started)
    return statistics.median(samples), samples


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0..100) by linear interpolation between closest ranks."""
    ordered = sorted(values)
    if not ordered:
        raise ValueError("percentile of no values")
    position = (len(ordered) - 1) * q / 100
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


@dataclass
class BenchmarkResult:
    """One benchmark's results: a title, how to reproduce it, and tables of rows (dicts with the same keys)."""

    name: str  # file stem under results/, e.g. "training_throughput_cpu"
    title: str
    command: str  # the exact command that produced it
    machine: dict[str, Any]
    tables: list[dict[str, Any]] = field(default_factory=list)  # {"caption", "columns", "rows"}
    notes: list[str] = field(default_factory=list)
    measured_at: str = field(default_factory=lambda: _dt.datetime.now(_dt.UTC).strftime("%Y-%m-%d %H:%M UTC"))

    def add_table(self, caption: str, rows: list[dict[str, Any]], columns: Sequence[str] | None = None) -> None:
        cols = list(columns) if columns is not None else (list(rows[0]) if rows else [])
        self.tables.append({"caption": caption, "columns": cols, "rows": rows})

    def save(self, directory: Path = RESULTS_DIR) -> Path:
        directory.mkdir(parents=True, exist_ok=True)
        path = directory / f"{self.name}.json"
        path.write_text(json.dumps(asdict(self), indent=2) + "\n", encoding="utf-8")
        return path


def load_results(directory: Path = RESULTS_DIR) -> list[BenchmarkResult]:
    results = []
    for path in sorted(directory.glob("*.json")):
        data = json.loads(path.read_text(encoding="utf-8"))
        results.append(BenchmarkResult(**data))
    return results


def add_output_arguments(parser: argparse.ArgumentParser, *, smoke_help: str) -> None:
    """The flags every benchmark shares: where it ran, the smoke mode the tests use, and where results go."""
    parser.add_argument("--machine", default=None, help="label of the machine in the results (default: host name)")
    parser.add_argument("--smoke", action="store_true", help=f"{smoke_help}; saves nothing unless --save")
    parser.add_argument("--save", action="store_true", help="with --smoke: save the result anyway")
    parser.add_argument("--results-dir", type=Path, default=RESULTS_DIR, help=f"where to save (default {RESULTS_DIR})")


def save_unless_smoke(result: BenchmarkResult, args: argparse.Namespace) -> None:
    if not args.smoke or args.save:
        print(f"saved {result.save(args.results_dir)}")


def command_line(module: str, argv: Sequence[str] | None) -> str:
    """The command that reproduces a run: `python -m MODULE ARGS` (ARGS from the command line unless given)."""
    return " ".join(["python -m", module, *(sys.argv[1:] if argv is None else argv)])


def load_average() -> tuple[float, float, float]:
    return os.getloadavg() if hasattr(os, "getloadavg") else (math.nan, math.nan, math.nan)


def load_notes(before: tuple[float, float, float], after: tuple[float, float, float], *, busy_effect: str) -> list[str]:
    """Notes on how busy this shared machine was; the second, when it was busy, says what that does to the figures."""

    def show(values: tuple[float, float, float]) -> str:
        return "/".join(f"{value:.1f}" for value in values)

    notes = [
        f"Load average (1/5/15 min) on this shared machine: {show(before)} before the run, {show(after)} after it "
        "(which includes the benchmark's own processes)."
    ]
    cores = os.cpu_count() or 1
    if before[0] > cores / 2:
        notes.append(
            f"The machine was busy (1-min load {before[0]:.1f} on {cores} cores before the run): other processes "
            f"competed for the CPU; {busy_effect}"
        )
    return notes
