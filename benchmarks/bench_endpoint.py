"""End-to-end latency and throughput of a local endpoint, and the server's overhead over the model's own compute.

The endpoint is what `azure-dl serve` starts - the real azureml-inference-server-http (gunicorn + Flask) running
training_scripts/score_resnet.py - serving a ResNet-18 (random weights, seeded, exported at 224 x 224 by the
project's exporter; 2 classes) or the training output folder given with --model. Every request carries one
224 x 224 JPEG. For each worker count, clients on this machine send --repeats requests each at concurrency 1, 4
and 8 (one `requests` session per client thread; gunicorn's sync workers close each connection); p50/p99
latency and requests/s are reported. The overhead table compares, for the same request body, the HTTP round
trip (median, concurrency 1) with the same work in-process: `scoring.handle` (JSON + base64 + decode +
resize/crop/normalise + ONNX Runtime + response), with the ONNX Runtime thread count the server's worker gets;
also the server's own `x-ms-run-fn-exec-ms`.

    python -m benchmarks.bench_endpoint [--repeats 40] [--workers 1 2] [--model DIR] [--machine NAME] [--smoke]
"""

from __future__ import annotations

import argparse
import io
import json
import os
import statistics
import tempfile
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
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
    percentile,
    save_unless_smoke,
)

NAME = "endpoint_local_cpu"
CONCURRENCY = (1, 4, 8)
IMAGE_SIZE = 224
LABELS = ["normal", "pneumonia"]


def make_jpeg(size: int = IMAGE_SIZE, seed: int = 0) -> bytes:
    """A size x size JPEG (quality 90) of smooth gradients plus noise: photo-like to compress and decode."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:size, 0:size] / size
    base = np.stack([x, y, (x + y) / 2], axis=-1) * 200 + rng.normal(0, 12, (size, size, 3))
    buffer = io.BytesIO()
    Image.fromarray(np.clip(base, 0, 255).astype(np.uint8)).save(buffer, format="JPEG", quality=90)
    return buffer.getvalue()


def _write_sidecars(folder: Path, image_size: int, resize_size: int) -> None:
    from training_scripts.preprocess_config import ImagePreprocessConfig, save_preprocess_config

    (folder / "labels.json").write_text(json.dumps(LABELS))
    save_preprocess_config(folder, ImagePreprocessConfig(image_size=image_size, resize_size=resize_size))


def make_resnet_folder(folder: Path) -> Path:
    """A serving folder with a random-weight ResNet-18 exported at 224 px (model.onnx, labels, preprocess)."""
    import torch

    from training_scripts.export_onnx import PIXEL_VALUES, export_onnx
    from training_scripts.models import build_model

    folder.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    model = build_model("resnet18", len(LABELS)).eval()
    export_onnx(model, torch.randn(2, 3, IMAGE_SIZE, IMAGE_SIZE), folder / "model.onnx", input_name=PIXEL_VALUES)
    _write_sidecars(folder, IMAGE_SIZE, 256)
    return folder


def make_tiny_folder(folder: Path) -> Path:
    """--smoke: a tiny ONNX image classifier built directly with onnx.helper (mean colour -> 2 logits), no torch."""
    from onnx import TensorProto, helper, save_model

    folder.mkdir(parents=True, exist_ok=True)
    inputs = helper.make_tensor_value_info("pixel_values", TensorProto.FLOAT, ["N", 3, "H", "W"])
    output = helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", 2])
    weight = helper.make_tensor("w", TensorProto.FLOAT, [3, 2], [1.0, -1.0, 0.5, 0.5, -1.0, 1.0])
    nodes = [
        helper.make_node("ReduceMean", ["pixel_values"], ["pooled"], axes=[2, 3], keepdims=0),
        helper.make_node("MatMul", ["pooled", "w"], ["logits"]),
    ]
    graph = helper.make_graph(nodes, "tiny", [inputs], [output], initializer=[weight])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    save_model(model, str(folder / "model.onnx"))
    _write_sidecars(folder, 32, 36)
    return folder


def load_test(url: str, body: bytes, *, concurrency: int, per_client: int) -> dict[str, Any]:
    """`concurrency` client threads each POST `body` `per_client` times; latencies, throughput, failures."""
    import requests

    latencies: list[float] = []
    server_ms: list[float] = []
    failures: list[str] = []
    lock = threading.Lock()
    headers = {"Content-Type": "application/json"}

    def client() -> None:
        with requests.Session() as session:
            for _ in range(per_client):
                started = time.perf_counter()
                response = session.post(url, data=body, headers=headers, timeout=120)
                elapsed = time.perf_counter() - started
                with lock:
                    if response.status_code != 200:
                        failures.append(f"{response.status_code} {response.text[:100]}")
                        continue
                    latencies.append(elapsed)
                    run_ms = response.headers.get("x-ms-run-fn-exec-ms")
                    if run_ms:
                        server_ms.append(float(run_ms))

    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=concurrency) as pool:
        for future in [pool.submit(client) for _ in range(concurrency)]:
            future.result()
    wall = time.perf_counter() - started
    if failures:
        raise RuntimeError(f"{len(failures)} requests failed, e.g. {failures[0]}")
    return {
        "concurrency": concurrency,
        "requests": len(latencies),
        "p50_ms": percentile(latencies, 50) * 1e3,
        "p99_ms": percentile(latencies, 99) * 1e3,
        "mean_ms": statistics.fmean(latencies) * 1e3,
        "requests_per_s": len(latencies) / wall,
        "server_run_ms_p50": percentile(server_ms, 50) if server_ms else None,
    }


def in_process(model_dir: Path, body: bytes, *, threads: int, repeats: int) -> dict[str, float]:
    """Median seconds of the scoring script's work for this body without the server, in this process."""
    from training_scripts import scoring

    session = scoring.create_session(model_dir / "model.onnx", threads=threads)
    scorer = scoring.load_scorer(model_dir, session=session)
    text = body.decode("utf-8")
    parsed = json.loads(text)
    inputs, top_k = scorer.parse(parsed)
    preprocess_s, _ = median_seconds(lambda: scorer.parse(parsed), repeats=repeats, warmup=2)
    ort_s, _ = median_seconds(lambda: scorer.predict(inputs, top_k), repeats=repeats, warmup=2)
    handle_s, _ = median_seconds(lambda: scoring.handle(scorer, text), repeats=repeats, warmup=2)
    return {"preprocess_s": preprocess_s, "ort_s": ort_s, "handle_s": handle_s}


def server_threads(workers: int) -> int:
    """The ONNX Runtime intra-op threads a worker of `azure-dl serve --workers N` gets (0 = ONNX Runtime's choice)."""
    from azure_dl.backends.local import endpoints

    env = endpoints.server_env(os.environ, Path(), Path(), workers=workers)
    return int(env.get("AZURE_DL_ORT_THREADS") or 0)


def run(
    model_dir: Path, *, workers_list: Sequence[int], concurrency: Sequence[int], per_client: int, log_dir: Path
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    import base64

    from azure_dl.backends.local import endpoints

    body = json.dumps({"images": [base64.b64encode(make_jpeg()).decode("ascii")], "top_k": 1}).encode()
    load_rows: list[dict[str, Any]] = []
    overhead_rows: list[dict[str, Any]] = []
    for workers in workers_list:
        spec = endpoints.ServerSpec(
            model_dir=model_dir,
            task=endpoints.model_task(model_dir),
            model_name="bench",
            port=endpoints.free_port(),
            workers=workers,
        )
        with endpoints.LocalEndpoint(spec, log_path=log_dir / f"server-{workers}.log"):
            load_test(spec.scoring_url, body, concurrency=max(workers, 1), per_client=3)  # warm every worker
            results = []
            for count in concurrency:
                row = {
                    "workers": workers,
                    **load_test(spec.scoring_url, body, concurrency=count, per_client=per_client),
                }
                results.append(row)
                print(
                    f"workers {workers} concurrency {count}: p50 {row['p50_ms']:.1f} ms  p99 {row['p99_ms']:.1f} ms"
                    f"  {row['requests_per_s']:.1f} req/s",
                    flush=True,
                )
            load_rows += results
        # Measured with the server stopped, so that it competes with nothing.
        threads = server_threads(workers)
        local = in_process(model_dir, body, threads=threads, repeats=max(per_client, 5))
        single = next(row for row in results if row["concurrency"] == 1)
        round_trip_ms = single["p50_ms"]
        overhead_rows.append(
            {
                "workers": workers,
                "ort_threads": threads or "default",
                "preprocess_ms": local["preprocess_s"] * 1e3,
                "ort_ms": local["ort_s"] * 1e3,
                "run_in_process_ms": local["handle_s"] * 1e3,
                "server_run_ms": single["server_run_ms_p50"],
                "http_p50_ms": round_trip_ms,
                "overhead_ms": round_trip_ms - local["handle_s"] * 1e3,
                "overhead_pct": 100 * (round_trip_ms - local["handle_s"] * 1e3) / round_trip_ms,
                # Same requests, no second measurement: what the HTTP layers add around run().
                "outside_run_ms": (
                    round_trip_ms - single["server_run_ms_p50"] if single["server_run_ms_p50"] is not None else None
                ),
            }
        )
        print(f"workers {workers}: in-process run() {local['handle_s'] * 1e3:.1f} ms vs HTTP {round_trip_ms:.1f} ms")
    return load_rows, overhead_rows


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=40, help="requests per client at each concurrency (default 40)")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2], help="server worker counts (default 1 2)")
    parser.add_argument(
        "--model", type=Path, default=None, help="serve this training output folder (default: ResNet-18, random)"
    )
    add_output_arguments(parser, smoke_help="tiny model, few requests")
    args = parser.parse_args(argv)
    if args.repeats < 1 or min(args.workers) < 1:
        parser.error("--repeats and --workers must be at least 1")
    concurrency = (1, 2) if args.smoke else CONCURRENCY
    per_client = 3 if args.smoke else args.repeats
    workers_list = args.workers[:1] if args.smoke else args.workers
    load_before = load_average()
    with tempfile.TemporaryDirectory(prefix="bench-endpoint-") as tmp:
        if args.model is not None:
            model_dir, what = args.model.resolve(), f"the model in {args.model}"
        elif args.smoke:
            model_dir, what = make_tiny_folder(Path(tmp) / "model"), "a tiny ONNX model (smoke)"
        else:
            model_dir, what = make_resnet_folder(Path(tmp) / "model"), "ResNet-18 (random weights, 224 px, 2 classes)"
        load_rows, overhead_rows = run(
            model_dir, workers_list=workers_list, concurrency=concurrency, per_client=per_client, log_dir=Path(tmp)
        )
    load_after = load_average()
    result = BenchmarkResult(
        name=NAME,
        title="Local endpoint (azmlinfsrv) end to end, CPU",
        command=command_line("benchmarks.bench_endpoint", argv),
        machine=machine_info(args.machine),
    )
    result.add_table(
        f"One {IMAGE_SIZE}x{IMAGE_SIZE} JPEG per request, {per_client} requests per client; latency = HTTP round "
        "trip seen by the client; server_run_ms_p50 = the server's x-ms-run-fn-exec-ms (time inside run())",
        load_rows,
        ["workers", "concurrency", "requests", "p50_ms", "p99_ms", "mean_ms", "requests_per_s", "server_run_ms_p50"],
    )
    result.add_table(
        "Server overhead at concurrency 1: HTTP p50 round trip vs the same request's work in-process "
        "(run_in_process = JSON + base64 + image decode + resize/crop/normalise + ONNX Runtime + response; "
        "overhead = http_p50 - run_in_process); outside_run_ms = http_p50 - the server's own p50 time in run(), "
        "from the same requests",
        overhead_rows,
        [
            "workers",
            "ort_threads",
            "preprocess_ms",
            "ort_ms",
            "run_in_process_ms",
            "server_run_ms",
            "http_p50_ms",
            "overhead_ms",
            "overhead_pct",
            "outside_run_ms",
        ],
    )
    result.notes += [
        f"Served: {what}, by azure_dl.backends.local.endpoints (the same code as `azure-dl serve`), bound to "
        "127.0.0.1; gunicorn sync workers (azmlinfsrv's default), one ONNX Runtime session per worker.",
        "The clients run on the same machine as the server and take CPU from it; on a 2-core machine that "
        "lowers requests/s at high concurrency.",
    ]
    result.notes += load_notes(
        load_before,
        load_after,
        busy_effect="absolute latencies are inflated, and differences between runs of a few tens of percent are noise.",
    )
    save_unless_smoke(result, args)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
