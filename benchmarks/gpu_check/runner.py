"""Run the GPU check's stages in order, each under a time budget and its own try/except, and write the results.

python -m benchmarks.gpu_check --out DIR     # on a CUDA machine: ResNet-50 at 224 px, batches 256 and 128
python -m benchmarks.gpu_check --smoke       # the same code on the CPU at tiny sizes (the test suite), < 60 s

DIR/gpu_check.json is rewritten (atomically) before and after every stage, so a run that is killed still leaves
what it measured, with the stage in flight marked "running"; DIR/gpu_check.md (also printed) comes at the end. A
watchdog ends the run at the size's total budget, marking the stage in flight "timeout", so the whole check stays
within the issue's 5 minutes on one H100. torch.compile runs last: a slow compile cannot starve the other stages.
Exit status: 0 when no stage failed (skipped ones do not count), 1 otherwise, 2 for a usage error.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import shutil
import sys
import tempfile
import threading
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from benchmarks.common import machine_info
from benchmarks.gpu_check import markdown, other_stages, resnet_stages
from benchmarks.gpu_check.context import CheckFailed, StageContext
from benchmarks.gpu_check.sizes import FULL, SMOKE

# The check must run with what the device machine has: these would mean a module pulled in a dependency it lacks.
FORBIDDEN_MODULES = ("torchvision", "timm", "mlflow", "onnx")
JSON_NAME = "gpu_check.json"
MARKDOWN_NAME = "gpu_check.md"
MIN_STAGE_S = 2.0  # a stage is not started with less time than this left in the whole run
WATCHDOG_GRACE_S = 10.0  # stages stop themselves by the run's deadline; the watchdog is the backstop after it


@dataclass(frozen=True)
class Stage:
    name: str
    letter: str  # the list: a) environment ... g) NCCL
    run: Callable[[StageContext], dict[str, Any]]
    budget_s: float  # on the GPU; the smoke run scales it by SMOKE_BUDGET_FACTOR


SMOKE_BUDGET_FACTOR = 0.25

STAGES: tuple[Stage, ...] = (
    Stage("environment", "a", other_stages.environment, 10),
    Stage("resnet_eager", "b", resnet_stages.resnet_eager, 40),
    Stage("cache_loader", "c", resnet_stages.cache_loader, 45),  # building the cache of 512 PNGs included
    Stage("lstm", "d", other_stages.lstm, 20),
    Stage("fp16_grad_scaler", "e", other_stages.fp16_grad_scaler, 25),
    Stage("checkpoint_resume", "f", other_stages.checkpoint_resume, 20),
    Stage("ddp_step", "g", other_stages.ddp_step, 30),
    Stage("resnet_compiled", "b", resnet_stages.resnet_compiled, 240),  # gets whatever is left, up to this
)


def default_out(smoke: bool) -> Path:
    return Path(tempfile.mkdtemp(prefix="gpu-check-smoke-")) if smoke else Path("runs/gpu-check")


def _write_atomic(path: Path, text: str) -> None:
    temp = path.with_name(f".{path.name}.tmp")
    temp.write_text(text, encoding="utf-8")
    temp.replace(path)


class Report:
    """The gpu_check.json document, written after every change so a killed run still leaves its results."""

    def __init__(self, out: Path, *, smoke: bool, device: torch.device, command: str, stages: Sequence[Stage]) -> None:
        self.out = out
        self.lock = threading.Lock()  # the watchdog thread writes too
        self.started = time.perf_counter()
        self.data: dict[str, Any] = {
            "check": "gpu_check",
            "format_version": 1,
            "smoke": smoke,
            "device": str(device),
            "command": command,
            "started_at": _dt.datetime.now(_dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC"),
            "machine": machine_info(),
            "finished": False,
            "elapsed_s": 0.0,
            "order": [stage.name for stage in stages],
            "stages": {stage.name: {"letter": stage.letter, "status": "pending"} for stage in stages},
            "forbidden_imports": [],
        }

    def update(self, name: str, record: dict[str, Any]) -> None:
        with self.lock:
            self.data["stages"][name].update(record)
            self._write()

    def _write(self) -> None:
        self.data["elapsed_s"] = round(time.perf_counter() - self.started, 2)
        self.data["forbidden_imports"] = sorted(m for m in FORBIDDEN_MODULES if m in sys.modules)
        _write_atomic(self.out / JSON_NAME, json.dumps(self.data, indent=2, default=str) + "\n")

    def finish(self) -> str:
        with self.lock:
            self.data["finished"] = True
            self._write()
            text = markdown.render(self.data)
            _write_atomic(self.out / MARKDOWN_NAME, text)
            return text


def run_stage(stage: Stage, ctx: StageContext, report: Report, run_deadline: float) -> None:
    """One stage: skipped when too little time is left, else run; an exception is recorded and the run goes on."""
    left = run_deadline - time.perf_counter()
    if left < MIN_STAGE_S:
        report.update(stage.name, {"status": "skipped", "reason": f"not started: {left:.1f} s left in the run"})
        return
    budget = stage.budget_s * (SMOKE_BUDGET_FACTOR if ctx.smoke else 1.0)
    ctx.deadline = min(time.perf_counter() + budget, run_deadline)
    report.update(stage.name, {"status": "running", "budget_s": round(ctx.deadline - time.perf_counter(), 1)})
    print(f"gpu-check: {stage.letter}) {stage.name} ...", flush=True)
    started = time.perf_counter()
    try:
        record = {"status": "ok", **stage.run(ctx)}
    except CheckFailed as exc:
        record = {"status": "failed", "error": str(exc), **exc.record}
    except Exception as exc:
        record = {
            "status": "failed",
            "error": f"{type(exc).__name__}: {exc}",
            "traceback": traceback.format_exc(limit=8).splitlines()[-8:],
        }
    record["seconds"] = round(time.perf_counter() - started, 2)
    ctx.results[stage.name] = record
    report.update(stage.name, record)
    print(f"gpu-check: {stage.letter}) {stage.name}: {record['status']} in {record['seconds']} s", flush=True)


def _start_watchdog(report: Report, total_s: float) -> threading.Timer:
    def expire() -> None:
        with report.lock:
            for record in report.data["stages"].values():
                if record["status"] == "running":
                    record["status"] = "timeout"
                    record["error"] = f"the run's {total_s:.0f} s budget ran out during this stage"
                elif record["status"] == "pending":
                    record.update(status="skipped", reason="not started: the run's time budget ran out")
        print(report.finish(), flush=True)
        print(f"gpu-check: stopped by the {total_s:.0f} s watchdog; results in {report.out}", flush=True)
        os._exit(1)  # the main thread may be inside a compile that cannot be interrupted

    timer = threading.Timer(total_s, expire)
    timer.daemon = True
    timer.start()
    return timer


def run(
    out: Path, *, smoke: bool, command: str, stages: Sequence[Stage] = STAGES, total_s: float | None = None
) -> dict[str, Any]:
    """Run `stages` and return the final report (as written to out/gpu_check.json)."""
    sizes = SMOKE if smoke else FULL
    device = torch.device("cpu") if smoke else torch.device("cuda", 0)
    total = sizes.total_budget_s if total_s is None else total_s
    out.mkdir(parents=True, exist_ok=True)
    report = Report(out, smoke=smoke, device=device, command=command, stages=stages)
    workdir = Path(tempfile.mkdtemp(prefix="gpu-check-work-"))
    ctx = StageContext(device=device, sizes=sizes, smoke=smoke, workdir=workdir)
    run_deadline = report.started + total
    watchdog = _start_watchdog(report, total + WATCHDOG_GRACE_S)
    try:
        for stage in stages:
            run_stage(stage, ctx, report, run_deadline)
        print(report.finish(), flush=True)
    finally:
        watchdog.cancel()
        shutil.rmtree(workdir, ignore_errors=True)
    return report.data


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.gpu_check",
        description="The one prepared GPU check of issue 14: ResNet-50 images/s and MFU (eager and compiled), the "
        "device-fed loader, the LSTM, fp16 + GradScaler, checkpoint resume, NCCL. Torch and the standard library only.",
    )
    parser.add_argument(
        "--smoke", action="store_true", help="the same code on the CPU at tiny sizes, in under 60 s (default: off)"
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=None,
        help="folder for gpu_check.json and gpu_check.md (default: runs/gpu-check, or a new temporary folder "
        "with --smoke)",
    )
    args = parser.parse_args(argv)
    if not args.smoke and not torch.cuda.is_available():
        print(
            f"gpu-check: no CUDA device is visible to torch {torch.__version__} (torch.version.cuda="
            f"{torch.version.cuda}); run it on a GPU machine, or with --smoke to exercise the code on the CPU",
            file=sys.stderr,
        )
        return 2
    out = args.out if args.out is not None else default_out(args.smoke)
    command = " ".join(["python -m benchmarks.gpu_check", *(sys.argv[1:] if argv is None else argv)])
    data = run(out, smoke=args.smoke, command=command)
    print(f"gpu-check: wrote {out / JSON_NAME} and {out / MARKDOWN_NAME}", flush=True)
    failed = [name for name, record in data["stages"].items() if record["status"] not in ("ok", "skipped")]
    if failed:
        print(f"gpu-check: failed: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0
