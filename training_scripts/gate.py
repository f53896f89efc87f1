"""The quality gate, and the pipeline's `register` step that promotes a model only when the gate passed.

A model passes when its ONNX export matched PyTorch (export.json) and a test metric reaches a threshold. The
metric defaults to macro F1: on imbalanced data a model that always predicts the majority class has high
accuracy and a poor macro F1. Standard library only; the registration gate of both registries is
model_folder.registration_refusal, with the same parity check.

As a step (`python -m training_scripts.gate --model M --evaluation E --output O`) it copies the model folder to
the `custom_model` output, which Azure ML registers when the pipeline output is named, or fails with the reason.
"""

from __future__ import annotations

import argparse
import math
import shutil
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from training_scripts.model_folder import EXPORT_FILE, GATE_METRICS, parity_problem, read_optional_json

DEFAULT_GATE_METRIC = "macro_f1"
GATE_FILE = "gate.json"


class GateRefused(Exception):
    """The model does not meet the gate; the message names the metric, its value and the threshold."""


def check_gate_metric(metric: str) -> None:
    if metric not in GATE_METRICS:
        raise ValueError(f"gate metric {metric!r} is not one of {', '.join(GATE_METRICS)} (higher-is-better metrics)")


def gate_verdict(
    test_metrics: Mapping[str, Any] | None,
    metric: str,
    threshold: float,
    export: Mapping[str, Any] | None,
) -> dict[str, Any]:
    """{metric, threshold, value, passed, reason}: passed when parity holds and metric >= threshold."""
    check_gate_metric(metric)
    raw_value = (test_metrics or {}).get(metric)
    value = float(raw_value) if isinstance(raw_value, int | float) and math.isfinite(raw_value) else None
    reason = parity_problem(export)
    if reason is None and value is None:
        reason = f"no test value for {metric} (metrics computed on the test split are needed)"
    if reason is None and value is not None and value < threshold:
        reason = f"{metric} {value:.4f} is below the threshold {threshold:.4f}"
    verdict = {"metric": metric, "threshold": threshold, "value": value, "passed": reason is None}
    verdict["reason"] = reason or f"{metric} {value:.4f} >= threshold {threshold:.4f}"
    return verdict


def promote(model_dir: Path, evaluation_dir: Path, output_dir: Path) -> dict[str, Any]:
    """Copy the model folder to output_dir if evaluation_dir/gate.json passed; raise GateRefused otherwise."""
    verdict = read_optional_json(evaluation_dir / GATE_FILE)
    if not isinstance(verdict, dict):
        raise GateRefused(f"{evaluation_dir / GATE_FILE} is missing: run the evaluate step first")
    if verdict.get("passed") is not True:
        raise GateRefused(f"gate refused the model: {verdict.get('reason')}")
    # A second parity check here: gate.json could come from a different model folder than this one.
    problem = parity_problem(read_optional_json(model_dir / EXPORT_FILE))
    if problem is not None:
        raise GateRefused(f"gate refused the model: {problem}")
    output_dir.mkdir(parents=True, exist_ok=True)
    shutil.copytree(model_dir, output_dir, dirs_exist_ok=True)
    shutil.copy2(evaluation_dir / GATE_FILE, output_dir / GATE_FILE)
    return verdict


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description="Promote a model folder to the registered output if it passed.")
    parser.add_argument("--model", type=Path, required=True, help="training output folder (model.onnx, ...)")
    parser.add_argument("--evaluation", type=Path, required=True, help="evaluate step output with gate.json")
    parser.add_argument("--output", type=Path, required=True, help="folder that receives the promoted model")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = get_args_parser().parse_args(argv)
    try:
        verdict = promote(args.model, args.evaluation, args.output)
    except GateRefused as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"gate passed ({verdict['reason']}); model promoted to {args.output}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
