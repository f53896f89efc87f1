"""The local endpoint under rising load, and while one of its workers is SIGKILLed: throughput, latency, errors.

The endpoint is what `azure-dl serve --workers 2` starts (the real azureml-inference-server-http, gunicorn sync
workers, bound to 127.0.0.1), serving tiny ResNet-18 and LSTM models trained by the project's own training
scripts (as tests/trained.py trains them), or the folders given with --resnet / --lstm. For each model:

- load: for each concurrency (1, 2, 4, 8, 16 client threads) the clients POST one request after another for a
  fixed time (--seconds per level); per level: requests answered 200 per second, p50/p99 latency of those,
  and every failure by HTTP status or exception. Clients use stdlib http.client (keep-alive capable; gunicorn's
  sync workers close each connection, so a client reconnects per request).
- worker kill: at --kill-concurrency clients, one worker (a child of the gunicorn master, read from
  /proc/PID/task/*/children) is SIGKILLed --kill-after seconds into the run. Counted: failed requests, the time
  until throughput is back (the first 0.25 s window after the kill with at least 80 % of the median rate
  before it) and the time until the replacement worker logs that it is ready.

    python -m benchmarks.bench_endpoint_load [--seconds 3] [--resnet DIR] [--lstm DIR] [--machine NAME] [--smoke]
"""

from __future__ import annotations

import argparse
import base64
import datetime as _dt
import http.client
import json
import os
import signal
import statistics
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
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
    percentile,
    save_unless_smoke,
)

NAME = "endpoint_load_cpu"
CONCURRENCY = (1, 2, 4, 8, 16)
WORKERS = 2
KILL_CONCURRENCY = 4
WINDOW_S = 0.25  # throughput windows for the recovery time
RECOVERED_FRACTION = 0.8
REQUEST_TIMEOUT_S = 30.0
TEXT = "A wonderful, moving film with a terrible ending; I loved most of it."


@dataclass(frozen=True)
class Outcome:
    """One request: when it started and ended (time.monotonic) and "200", another status, or an exception name."""

    started: float
    ended: float
    result: str

    @property
    def ok(self) -> bool:
        return self.result == "200"


def post_until(
    host: str,
    port: int,
    body: bytes,
    *,
    concurrency: int,
    seconds: float,
    max_requests: int | None = None,
    during: Callable[[Callable[[], int]], None] | None = None,
) -> tuple[list[Outcome], float]:
    """`concurrency` threads POST `body` to /score back to back for `seconds` (or until `max_requests` have been
    sent); every outcome, and the start time.

    `during`, if given, runs in this thread while the clients run (the worker kill), with a function that tells
    how many requests have finished; the clients stop at the deadline whatever it does.
    """
    outcomes: list[Outcome] = []
    lock = threading.Lock()
    headers = {"Content-Type": "application/json"}
    start = time.monotonic()
    deadline = start + seconds
    sent = 0

    def take_one() -> bool:
        nonlocal sent
        with lock:
            if time.monotonic() >= deadline or (max_requests is not None and sent >= max_requests):
                return False
            sent += 1
            return True

    def client() -> None:
        connection = http.client.HTTPConnection(host, port, timeout=REQUEST_TIMEOUT_S)
        while take_one():
            began = time.monotonic()
            try:
                connection.request("POST", "/score", body, headers)
                response = connection.getresponse()
                response.read()
                result = str(response.status)
                if response.getheader("Connection", "").lower() == "close":
                    connection.close()  # http.client reopens it on the next request
            except (OSError, http.client.HTTPException) as exc:
                result = type(exc).__name__
                connection.close()
            with lock:
                outcomes.append(Outcome(began, time.monotonic(), result))
        connection.close()

    threads = [threading.Thread(target=client, daemon=True) for _ in range(concurrency)]
    for thread in threads:
        thread.start()
    if during is not None:
        during(lambda: len(outcomes))
    for thread in threads:
        thread.join(timeout=seconds + REQUEST_TIMEOUT_S + 5)
    return sorted(outcomes, key=lambda outcome: outcome.started), start


def summarize(outcomes: Sequence[Outcome], seconds: float) -> dict[str, Any]:
    """Requests, 200s per second, p50/p99 latency of the 200s (ms) and the failures by kind ("503:2 ...")."""
    latencies = [outcome.ended - outcome.started for outcome in outcomes if outcome.ok]
    errors = Counter(outcome.result for outcome in outcomes if not outcome.ok)
    return {
        "requests": len(outcomes),
        "requests_per_s": len(latencies) / seconds,
        "p50_ms": percentile(latencies, 50) * 1e3 if latencies else None,
        "p99_ms": percentile(latencies, 99) * 1e3 if latencies else None,
        "errors": sum(errors.values()),
        "errors_by_kind": " ".join(f"{kind}:{count}" for kind, count in sorted(errors.items())) or "none",
    }


def worker_pids(master_pid: int) -> list[int]:
    """The gunicorn workers: the master's child processes, from /proc (Linux; no psutil needed)."""
    children: list[int] = []
    for task in Path(f"/proc/{master_pid}/task").iterdir():
        try:
            children += [int(pid) for pid in (task / "children").read_text().split()]
        except OSError:
            continue  # the thread ended while we read
    return sorted(children)


def recovery(outcomes: Sequence[Outcome], killed_at: float, end: float) -> dict[str, Any]:
    """Failures after the kill and the seconds until 200s come back at RECOVERED_FRACTION of the rate before it."""
    first = min(outcome.started for outcome in outcomes)
    before = [
        sum(1 for outcome in outcomes if outcome.ok and low <= outcome.ended < low + WINDOW_S)
        for low in _windows(first + WINDOW_S, killed_at)  # the first window includes the clients' start
    ]
    baseline = statistics.median(before) if before else 0.0
    recovered_s = None
    for low in _windows(killed_at, end):
        done = sum(1 for outcome in outcomes if outcome.ok and low <= outcome.ended < low + WINDOW_S)
        if baseline and done >= RECOVERED_FRACTION * baseline:
            recovered_s = low + WINDOW_S - killed_at
            break
    failed = [outcome for outcome in outcomes if not outcome.ok]
    return {
        "failed": len(failed),
        "failed_by_kind": " ".join(f"{k}:{n}" for k, n in sorted(Counter(o.result for o in failed).items())) or "none",
        "failed_started_before_kill": sum(1 for outcome in failed if outcome.started <= killed_at),
        "rate_before_per_s": baseline / WINDOW_S,
        "throughput_back_s": recovered_s,
    }


def _windows(low: float, high: float) -> list[float]:
    count = int((high - low) / WINDOW_S)
    return [low + index * WINDOW_S for index in range(max(count, 0))]


def ready_time(log_path: Path, pid: int) -> float | None:
    """When the worker `pid` logged "ready for serving traffic" (epoch seconds, from the server's log)."""
    marker = f"Worker with pid {pid} ready"
    for line in log_path.read_text(encoding="utf-8", errors="replace").splitlines():
        if marker in line:
            stamp = line[:23]  # "2026-12-07 04:52:23,419", this machine's local time
            return _dt.datetime.strptime(stamp, "%Y-%m-%d %H:%M:%S,%f").timestamp()
    return None


def kill_under_load(
    master_pid: int,
    host: str,
    port: int,
    body: bytes,
    *,
    concurrency: int,
    seconds: float,
    kill_after: float,
    kill_after_requests: int = 0,
    max_requests: int | None = None,
) -> dict[str, Any]:
    """Drive the endpoint and SIGKILL one worker `kill_after` seconds in (and once `kill_after_requests` have
    finished); the outcomes and who was killed when."""
    before = worker_pids(master_pid)
    if len(before) < 2:
        raise RuntimeError(f"the server runs {len(before)} worker(s); killing one needs at least 2")
    killed: dict[str, Any] = {}

    def kill(done: Callable[[], int]) -> None:
        time.sleep(kill_after)
        while done() < kill_after_requests and time.monotonic() < start + seconds:
            time.sleep(0.001)
        killed["at"], killed["wall"] = time.monotonic(), time.time()
        os.kill(before[0], signal.SIGKILL)
        killed["pid"] = before[0]

    start = time.monotonic()
    outcomes, start = post_until(
        host, port, body, concurrency=concurrency, seconds=seconds, max_requests=max_requests, during=kill
    )
    return {"outcomes": outcomes, "start": start, "end": start + seconds, "workers_before": before, **killed}


def kill_row(master_pid: int, log_path: Path, host: str, port: int, body: bytes, **kwargs: Any) -> dict[str, Any]:
    run = kill_under_load(master_pid, host, port, body, **kwargs)
    after = worker_pids(master_pid)
    replacements = [pid for pid in after if pid not in run["workers_before"]]
    ready = ready_time(log_path, replacements[0]) if replacements else None
    return {
        "concurrency": kwargs["concurrency"],
        "requests": len(run["outcomes"]),
        **recovery(run["outcomes"], run["at"], run["end"]),
        "replacement_ready_s": ready - run["wall"] if ready is not None else None,
        "workers_after": len(after),
    }


def request_bodies() -> dict[str, bytes]:
    """What each model gets per request: one 64 x 64 JPEG, or one review."""
    from benchmarks.bench_endpoint import make_jpeg

    return {
        "image-classification": json.dumps(
            {"images": [base64.b64encode(make_jpeg(64)).decode("ascii")], "top_k": 1}
        ).encode(),
        "text-classification": json.dumps({"texts": [TEXT]}).encode(),
    }


def train_tiny(root: Path) -> dict[str, Path]:
    """Tiny ResNet-18 and LSTM output folders, trained by the real scripts on synthetic data (as tests do)."""
    import subprocess

    from training_scripts.synth import synth_images, synth_text

    repo = Path(__file__).resolve().parents[1]
    env = {**os.environ, "PYTHONPATH": str(repo) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    env.setdefault("OMP_NUM_THREADS", "1")
    synth_images(root / "images", per_class=16, image_size=32, imbalance=2.0, seed=0)
    synth_text(root / "reviews.csv", n=160, seed=0)
    common = ["--epochs", "1", "--num-workers", "0", "--val-fraction", "0.25", "--test-fraction", "0.25"]
    resnet = ["--arch", "resnet18", "--image-size", "32", "--pretrained", "none", "--batch-size", "8"]
    lstm = ["--seq-len", "24", "--embed-dim", "16", "--hidden-size", "16", "--batch-size", "16"]
    jobs = {
        "resnet": ["training_scripts.train_resnet", "--data", str(root / "images"), *resnet],
        "lstm": ["training_scripts.train_lstm", "--data", str(root / "reviews.csv"), *lstm],
    }
    folders = {}
    for name, (module, *args) in jobs.items():
        out = root / name
        run_env = {**env, "MLFLOW_TRACKING_URI": f"sqlite:///{root / name}.db"}
        result = subprocess.run(
            [sys.executable, "-m", module, *args, *common, "--output", str(out)],
            env=run_env,
            capture_output=True,
            text=True,
            timeout=600,
        )
        if result.returncode != 0:
            raise RuntimeError(f"training {name} failed (exit {result.returncode}):\n{result.stderr[-3000:]}")
        folders[name] = out
    return folders


def run_model(
    model_dir: Path,
    label: str,
    *,
    concurrency: Sequence[int],
    seconds: float,
    kill_concurrency: int,
    kill_seconds: float,
    kill_after: float,
    log_dir: Path,
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    from azure_dl.backends.local import endpoints

    task = endpoints.model_task(model_dir)
    body = request_bodies()[task]
    spec = endpoints.ServerSpec(
        model_dir=model_dir, task=task, model_name=label, port=endpoints.free_port(), workers=WORKERS
    )
    log_path = log_dir / f"server-{label}.log"
    with endpoints.LocalEndpoint(spec, log_path=log_path) as server:
        assert server.process is not None
        post_until(spec.host, spec.port, body, concurrency=WORKERS, seconds=0.5)  # warm every worker
        rows = []
        for count in concurrency:
            outcomes, _ = post_until(spec.host, spec.port, body, concurrency=count, seconds=seconds)
            row = {"model": label, "concurrency": count, **summarize(outcomes, seconds)}
            # Side by side in the same run: how much more the endpoint answers than with one client.
            row["vs_first_level"] = row["requests_per_s"] / rows[0]["requests_per_s"] if rows else 1.0
            rows.append(row)
            print(
                f"{label} concurrency {count}: {row['requests_per_s']:.1f} req/s  p50 {row['p50_ms'] or 0:.1f} ms"
                f"  p99 {row['p99_ms'] or 0:.1f} ms  errors {row['errors_by_kind']}",
                flush=True,
            )
        kill = {
            "model": label,
            **kill_row(
                server.process.pid,
                log_path,
                spec.host,
                spec.port,
                body,
                concurrency=kill_concurrency,
                seconds=kill_seconds,
                kill_after=kill_after,
            ),
        }
        print(f"{label} worker kill: {kill}", flush=True)
    return rows, kill


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=3.0, help="seconds per concurrency level (default 3)")
    parser.add_argument("--resnet", type=Path, default=None, help="serve this ResNet output folder (default: train)")
    parser.add_argument("--lstm", type=Path, default=None, help="serve this LSTM output folder (default: train)")
    parser.add_argument(
        "--kill-concurrency", type=int, default=KILL_CONCURRENCY, help=f"clients during the kill ({KILL_CONCURRENCY})"
    )
    parser.add_argument("--kill-seconds", type=float, default=6.0, help="length of the kill run (default 6)")
    parser.add_argument("--kill-after", type=float, default=1.5, help="seconds into it the kill comes (default 1.5)")
    add_output_arguments(parser, smoke_help="two levels, short runs")
    args = parser.parse_args(argv)
    if args.seconds <= 0 or args.kill_concurrency < 1 or not 0 < args.kill_after < args.kill_seconds:
        parser.error("--seconds > 0, --kill-concurrency >= 1 and 0 < --kill-after < --kill-seconds are required")
    concurrency = (1, 4) if args.smoke else CONCURRENCY
    seconds = 1.0 if args.smoke else args.seconds
    kill_seconds, kill_after = (3.0, 1.0) if args.smoke else (args.kill_seconds, args.kill_after)
    load_before = load_average()
    load_rows: list[dict[str, Any]] = []
    kill_rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="bench-endpoint-load-") as tmp:
        trained = {} if args.resnet and args.lstm else train_tiny(Path(tmp) / "trained")
        models = {"resnet": args.resnet or trained["resnet"], "lstm": args.lstm or trained["lstm"]}
        for label, folder in models.items():
            rows, kill = run_model(
                Path(folder).resolve(),
                label,
                concurrency=concurrency,
                seconds=seconds,
                kill_concurrency=args.kill_concurrency,
                kill_seconds=kill_seconds,
                kill_after=kill_after,
                log_dir=Path(tmp),
            )
            load_rows += rows
            kill_rows.append(kill)
    load_after = load_average()
    result = BenchmarkResult(
        name=NAME,
        title="Local endpoint (azmlinfsrv) under load and with a worker killed, CPU",
        command=command_line("benchmarks.bench_endpoint_load", argv),
        machine=machine_info(args.machine),
    )
    result.add_table(
        f"{WORKERS} gunicorn workers; each level runs {seconds:g} s of back-to-back requests per client; "
        "requests_per_s counts 200s (vs_first_level: its ratio to the lowest concurrency's); "
        "p50/p99 of the 200s' round trips; errors by HTTP status or exception",
        load_rows,
        [
            "model",
            "concurrency",
            "requests",
            "requests_per_s",
            "vs_first_level",
            "p50_ms",
            "p99_ms",
            "errors",
            "errors_by_kind",
        ],
    )
    result.add_table(
        f"One of the {WORKERS} workers SIGKILLed {kill_after:g} s into a {kill_seconds:g} s run; failed = requests "
        f"not answered 200; throughput_back_s = kill to the end of the first {WINDOW_S} s window with "
        f">= {RECOVERED_FRACTION:.0%} of the median 200s-per-window before it; replacement_ready_s = kill to "
        "the new worker's 'ready' log line",
        kill_rows,
        [
            "model",
            "concurrency",
            "requests",
            "failed",
            "failed_by_kind",
            "failed_started_before_kill",
            "rate_before_per_s",
            "throughput_back_s",
            "replacement_ready_s",
            "workers_after",
        ],
    )
    result.notes += [
        "Models: tiny ResNet-18 (32 px) and LSTM trained for one epoch on synthetic data by the training scripts "
        "(unless --resnet/--lstm), served by azure_dl.backends.local.endpoints (the code of `azure-dl serve`) on "
        "127.0.0.1; one 64x64 JPEG or one review per request.",
        "gunicorn sync workers serve one request at a time, so a killed worker can lose at most the one request "
        "it was serving; requests queued on the shared listening socket are served by the other worker.",
        "The clients run on the same cores as the server, and on a shared machine other work comes and goes: "
        "once both workers are busy, latency grows with the clients, and throughput moves with the machine's "
        "load as much as with concurrency (compare a kill run's rate_before_per_s with the load row at the same "
        "concurrency, measured seconds apart).",
    ]
    result.notes += load_notes(
        load_before, load_after, busy_effect="throughput is lower and latency higher than on a quiet machine."
    )
    save_unless_smoke(result, args)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
