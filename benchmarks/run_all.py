"""Run every CPU benchmark at full size, one after another, then regenerate docs/benchmarks.md (`make bench`).

Run it on a quiet machine: the figures are wall-clock medians, and other work on the same cores skews them.
"""

from __future__ import annotations

import importlib
import sys

MODULES = (
    "bench_cli",
    "bench_training",
    "bench_decode",
    "bench_image_cache",
    "bench_dicom_coverage",
    "bench_onnx_vs_torch",
    "bench_quantization",
    "bench_endpoint",
    "bench_endpoint_load",
)


def main() -> int:
    for name in MODULES:
        print(f"\n=== benchmarks.{name}", flush=True)
        sys.argv = [f"benchmarks.{name}"]
        code = importlib.import_module(f"benchmarks.{name}").main([])
        if code:
            return int(code)
    from benchmarks import report

    return report.main([])


if __name__ == "__main__":
    raise SystemExit(main())
