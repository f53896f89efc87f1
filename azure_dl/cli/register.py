"""`azure-dl register SOURCE --name NAME`: register a trained model in Azure ML (or, with --local, in MLflow).

SOURCE is a training output folder, a job output (azureml://jobs/<job>/outputs/<output>), `--job NAME` (its
`model` output) or `--sweep NAME` (the best trial by the sweep's own primary metric and goal). The gate - ONNX
parity passed, test metrics at least the `--min-metric` values - runs before anything is uploaded; identical
content registered before is reused instead of becoming a new version. `--quantize` registers an INT8 model when it
agrees with the fp32 one on held-out data (>= 99% top-1), else the fp32 model, and records which in quantization.json.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path
from typing import Any

from azure_dl.cli._shared import add_gate_arguments
from azure_dl.errors import SpecError
from azure_dl.workspace import add_workspace_arguments


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "register",
        help="register a trained model in Azure ML (or the local MLflow registry), gated and idempotent",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "source",
        nargs="?",
        metavar="SOURCE",
        help="a training output folder or azureml://jobs/<job>/outputs/<output> (or use --job / --sweep)",
    )
    parser.add_argument("--name", required=True, help="registered model name")
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--job", metavar="NAME", help="register the `model` output of this Azure ML job")
    where.add_argument("--sweep", metavar="NAME", help="register the best trial of this sweep job")
    parser.add_argument(
        "--local",
        action="store_true",
        help="register in the local MLflow model registry ($MLFLOW_TRACKING_URI, else ./mlflow.db) instead",
    )
    add_gate_arguments(parser)
    quantize = parser.add_argument_group("INT8 quantization")
    quantize.add_argument(
        "--quantize",
        action="store_true",
        help="register an INT8 model when its top-1 predictions agree with fp32 on >= 99%% of held-out items",
    )
    quantize.add_argument(
        "--calibration-data",
        type=Path,
        metavar="PATH",
        help="images folder (image models: half calibrate, half check) or CSV/JSONL/TXT texts (text models) "
        "(default: synthetic data)",
    )
    add_workspace_arguments(parser)
    parser.set_defaults(handler=handle)


def quantizer_for(args: argparse.Namespace) -> Any:
    """The function that quantizes a staged folder for `--quantize` (None without it)."""
    if not args.quantize:
        if args.calibration_data is not None:
            raise SpecError("--calibration-data is for --quantize")
        return None
    if args.calibration_data is not None and not args.calibration_data.exists():
        raise SpecError(f"--calibration-data {args.calibration_data} does not exist")

    def quantize(folder: Path) -> dict[str, Any]:
        from training_scripts.quantize import QuantizationError, quantize_folder

        try:
            return quantize_folder(folder, data=args.calibration_data).to_dict()
        except QuantizationError as exc:
            raise SpecError(f"--quantize: {exc}") from None

    return quantize


def _size(count: int) -> str:
    return f"{count / 1e6:.1f} MB" if count >= 1e6 else f"{count / 1e3:.1f} KB"


def _report_quantization(report: Any) -> None:
    from azure_dl.console import note

    if report:
        note(f"quantization: {report['reason']}")
        note(f"model.onnx: {_size(report['fp32_bytes'])} fp32, {_size(report['int8_bytes'])} int8")


def _register_local(args: argparse.Namespace, folder: Path, min_metrics: dict[str, float], quantize: Any) -> int:
    from azure_dl.backends.local.models import register_local
    from azure_dl.console import print_key_values
    from azure_dl.model_registration import check_registration_gate

    report = None
    with tempfile.TemporaryDirectory(prefix="azure-dl-register-") as tmp:
        if quantize is not None:
            from azure_dl.model_registration import stage_model_folder

            check_registration_gate(folder, min_metrics)  # the gate sees the fp32 model, before quantizing
            folder = stage_model_folder(folder, Path(tmp) / "model")
            report = quantize(folder)
        registered = register_local(folder, args.name, min_metrics=min_metrics)
    _report_quantization(report)
    print_key_values(
        "Registered locally" if not registered.reused else "Registered locally before (identical content)",
        [("model", registered.uri), ("reused", "yes" if registered.reused else "no")],
    )
    return 0


def handle(args: argparse.Namespace) -> int:
    from azure_dl.console import note, print_key_values
    from azure_dl.endpoint_spec import ModelRef
    from azure_dl.flag_values import pairs_to_dict
    from azure_dl.model_source import fetch, parse_source

    ModelRef(args.name)
    source = parse_source(args.source, job=args.job, sweep=args.sweep)
    min_metrics = pairs_to_dict(args.min_metric, "--min-metric")
    quantize = quantizer_for(args)
    if source.kind == "folder":
        from azure_dl.model_registration import check_registration_gate

        assert source.folder is not None
        check_registration_gate(source.folder, min_metrics)  # refuse before signing in or uploading anything
    ml_client: Any = None
    if source.needs_azure or not args.local:
        from azure_dl.backends.azureml import client as azure_client

        ml_client = azure_client.client_from_args(args)
    with tempfile.TemporaryDirectory(prefix="azure-dl-source-") as tmp:
        fetched = fetch(source, ml_client, Path(tmp))
        if fetched.note:
            note(fetched.note)
        if args.local:
            return _register_local(args, fetched.folder, min_metrics, quantize)
        from azure_dl.backends.azureml.models import register_model

        registered = register_model(
            ml_client,
            fetched.folder,
            args.name,
            min_metrics=min_metrics,
            quantize=quantize,
            source=fetched.source,
            git_commit=fetched.git_commit,
        )
    _report_quantization(registered.quantization)
    headline = [(key, value) for key, value in registered.tags.items() if key.startswith(("test.", "validation."))]
    rows = [
        ("model", f"azureml:{registered.ref}"),
        ("reused", "yes: identical content was registered before" if registered.reused else "no: new version"),
        ("content sha256", registered.content_sha256),
        ("source", fetched.source),
        *headline,
    ]
    print_key_values(f"Registered model {registered.ref} in workspace {ml_client.workspace_name}", rows)
    print(f"Deploy it: azure-dl deploy {registered.ref} --endpoint NAME")
    return 0
