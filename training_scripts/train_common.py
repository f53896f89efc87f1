"""What both training scripts share: the common flags, the run skeleton, and the training output folder.

A script (train_resnet.py, train_lstm.py) only knows its task: how to read its data into datasets, build its
model and describe its preprocessing. It hands that over as a `PreparedTask`, and `run_training` does the rest
the same way for both:

    distributed setup -> fit (checkpoints, resume, early stopping, MLflow) -> test evaluation with the best
    weights -> output folder (model.pt, model_config.json, labels.json, preprocess.json, metrics.json, plots/)
    -> ONNX export + parity check (export.json) -> artifacts to MLflow -> a `done` progress event.

Exit codes: 0 success; 2 unusable data or arguments; 3 non-finite loss; 4 ONNX parity failed (every file is still
written, export.json says why); 130/143 stopped by SIGINT/SIGTERM with a checkpoint (the same command resumes);
other TrainingError codes come from the engine.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import Dataset

from training_scripts import engine, progress
from training_scripts.distributed import DistContext, cleanup, init_distributed
from training_scripts.export_onnx import DEFAULT_TOLERANCE, check_parity, export_onnx, write_export_json
from training_scripts.model_folder import (
    DATA_REPORT_FILE,
    EXPORT_FILE,
    LABELS_FILE,
    METRICS_FILE,
    MODEL_CONFIG_FILE,
    ONNX_FILE,
    PLOTS_DIR,
    PREPROCESS_FILE,
    WEIGHTS_FILE,
)
from training_scripts.models import model_config
from training_scripts.plots import write_plots
from training_scripts.precision import BatchTransform
from training_scripts.preprocess_config import PreprocessConfig, save_preprocess_config
from training_scripts.splits import DatasetError
from training_scripts.tracking import Tracker

EXIT_BAD_INPUT = 2
EXIT_PARITY_FAILED = 4


def add_common_args(
    parser: argparse.ArgumentParser,
    *,
    epochs: int,
    batch_size: int,
    lr: float,
    patience: int,
    imbalance: str,
    val_fraction: float = 0.15,
    test_fraction: float = 0.15,
) -> None:
    """The flags both scripts take; each help text states its default (the script's own defaults are passed in)."""
    data = parser.add_argument_group("data")
    data.add_argument("--data", required=True, help="training data (required)")
    data.add_argument("--val-data", default=None, help="validation data; default: split off --val-fraction of --data")
    data.add_argument("--test-data", default=None, help="test data; default: split off --test-fraction of --data")
    data.add_argument(
        "--val-fraction",
        type=float,
        default=val_fraction,
        help=f"share of --data held out for validation when --val-data is not given (default {val_fraction})",
    )
    data.add_argument(
        "--test-fraction",
        type=float,
        default=test_fraction,
        help=f"share of --data held out for the test split when --test-data is not given (default {test_fraction})",
    )
    data.add_argument(
        "--num-workers", type=int, default=2, help="DataLoader worker processes per rank (default 2; 0 = in-process)"
    )

    out = parser.add_argument_group("outputs")
    out.add_argument("--output", required=True, help="the training output folder (required; see docs/architecture.md)")
    out.add_argument(
        "--checkpoint-dir",
        default=None,
        help="where checkpoints go and are resumed from (default OUTPUT/checkpoints; on Azure a read-write mount "
        "so a preempted low-priority VM resumes)",
    )
    out.add_argument(
        "--checkpoint-every-steps",
        type=int,
        default=0,
        help="also checkpoint every N optimizer steps (default 0 = only at the end of each epoch)",
    )
    out.add_argument(
        "--experiment",
        default=None,
        help="MLflow experiment for a new run (default: MLFLOW_EXPERIMENT_NAME, else the script's name)",
    )
    out.add_argument(
        "--parity-tolerance",
        type=float,
        default=None,
        help="max |ONNX - PyTorch| logit difference accepted (default: the exporter's, 1e-4 for fp32)",
    )

    opt = parser.add_argument_group("optimisation")
    opt.add_argument("--epochs", type=int, default=epochs, help=f"maximum epochs (default {epochs})")
    opt.add_argument(
        "--batch-size", type=int, default=batch_size, help=f"per-process batch size (default {batch_size})"
    )
    opt.add_argument("--lr", type=float, default=lr, help=f"learning rate (default {lr:g})")
    opt.add_argument(
        "--optimizer", choices=("adam", "sgd"), default="adam", help="adam, or sgd with momentum 0.9 (default adam)"
    )
    opt.add_argument("--weight-decay", type=float, default=0.0, help="weight decay (default 0)")
    opt.add_argument(
        "--scheduler",
        choices=("none", "cosine", "step", "plateau"),
        default="none",
        help="learning-rate schedule, stepped once per epoch (default none)",
    )
    opt.add_argument(
        "--patience",
        type=int,
        default=patience,
        help=f"early stopping: epochs without validation-loss improvement (default {patience}; 0 = off)",
    )
    opt.add_argument(
        "--min-delta", type=float, default=0.0, help="smallest validation-loss decrease that counts (default 0)"
    )
    opt.add_argument("--grad-clip", type=float, default=1.0, help="max gradient norm (default 1.0; 0 = off)")
    opt.add_argument(
        "--imbalance",
        choices=("none", "weighted-loss", "oversample"),
        default=imbalance,
        help=f"class-imbalance handling: inverse-frequency loss weights or oversampling (default {imbalance})",
    )
    opt.add_argument("--seed", type=int, default=0, help="random seed for splits, init and sample order (default 0)")
    opt.add_argument(
        "--max-steps", type=int, default=0, help="stop after N optimizer steps, for smoke runs (default 0 = no limit)"
    )
    opt.add_argument(
        "--log-every-steps", type=int, default=10, help="a progress line every N optimizer steps (default 10)"
    )
    opt.add_argument(
        "--device", default=None, help="cpu, cuda or cuda:N (default: CUDA when available; LOCAL_RANK under DDP)"
    )
    opt.add_argument(
        "--no-amp", action="store_true", help="disable mixed precision on CUDA (default: bf16, or fp16 on T4)"
    )


def train_config(args: argparse.Namespace, *, channels_last: bool = False) -> engine.TrainConfig:
    try:
        return engine.TrainConfig(
            epochs=args.epochs,
            batch_size=args.batch_size,
            lr=args.lr,
            optimizer=args.optimizer,
            weight_decay=args.weight_decay,
            scheduler=args.scheduler,
            patience=args.patience,
            min_delta=args.min_delta,
            grad_clip=args.grad_clip,
            max_steps=args.max_steps,
            checkpoint_every_steps=args.checkpoint_every_steps,
            log_every_steps=args.log_every_steps,
            seed=args.seed,
            num_workers=args.num_workers,
            imbalance=args.imbalance,
            amp=not args.no_amp,
            channels_last=channels_last,
            device=args.device,
        )
    except ValueError as exc:
        raise DatasetError(f"invalid training option: {exc}") from exc


@dataclass
class PreparedTask:
    """Everything task-specific that `run_training` needs; built by the script on every rank identically."""

    task: str  # "resnet" / "lstm": names the MLflow experiment and the progress `start` event
    model: nn.Module
    train: Dataset[Any]
    val: Dataset[Any]
    test: Dataset[Any] | None
    class_names: list[str]
    train_labels: list[int]
    preprocess: PreprocessConfig
    input_name: str  # the ONNX input: "pixel_values" or "input_ids"
    parity_inputs: Callable[[], list[torch.Tensor]]  # held-out inputs of >= 2 batch sizes (and lengths)
    run_params: dict[str, Any]  # logged to MLflow; must match for a checkpoint to be resumed
    data_report: dict[str, Any] = field(default_factory=dict)  # counts and skipped items, written + logged
    # data_report keys written to data_report.json but not logged as MLflow params: their values differ between a
    # run and its resumption (e.g. the image cache built, then hit), and a param cannot change its value.
    report_only_keys: tuple[str, ...] = ()
    run_metrics: dict[str, float] = field(default_factory=dict)  # logged as MLflow metrics at the end
    run_tags: dict[str, str] = field(default_factory=dict)  # logged as MLflow tags at the end
    write_sidecars: Callable[[Path], list[Path]] = lambda folder: []  # e.g. vocab.json
    # Items that passed the up-front checks but still failed to load during training (replaced, and counted).
    failed_items: Callable[[], list[str]] = lambda: []
    dynamic_sequence: bool = False
    channels_last: bool = False
    # Applied to each input batch on the training device (the image cache's augmentation / eval crop).
    train_batch_transform: BatchTransform | None = None
    eval_batch_transform: BatchTransform | None = None


def _write_json(path: Path, data: Any) -> Path:
    path.write_text(json.dumps(data, indent=2, sort_keys=False) + "\n", encoding="utf-8")
    return path


def _headline(metrics: dict[str, Any]) -> dict[str, Any]:
    headline: dict[str, Any] = {}
    for split in ("validation", "test"):
        report = metrics.get(split) or {}
        prefix = "val" if split == "validation" else "test"
        for key in ("accuracy", "balanced_accuracy", "macro_f1", "auroc"):
            if report.get(key) is not None:
                headline[f"{prefix}_{key}"] = round(float(report[key]), 4)
    return headline


def _export(prepared: PreparedTask, output: Path, tolerance: float | None) -> dict[str, Any]:
    model = prepared.model
    inputs = prepared.parity_inputs()
    onnx_path = output / ONNX_FILE
    export_onnx(model, inputs[0], onnx_path, input_name=prepared.input_name, dynamic_sequence=prepared.dynamic_sequence)
    report = check_parity(model, onnx_path, inputs, tolerance if tolerance is not None else DEFAULT_TOLERANCE)
    return write_export_json(output, report, onnx_path)


def _write_outputs(
    prepared: PreparedTask,
    result: engine.FitResult,
    test: engine.Evaluation | None,
    output: Path,
    tracker: Tracker,
    parity_tolerance: float | None,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Rank 0: the output folder contract, the plots, the ONNX export and the MLflow artifacts."""
    output.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    torch.save(result.best_state_dict, output / WEIGHTS_FILE)
    written.append(output / WEIGHTS_FILE)
    written.append(_write_json(output / MODEL_CONFIG_FILE, model_config(prepared.model)))
    written.append(_write_json(output / LABELS_FILE, list(prepared.class_names)))
    written.append(save_preprocess_config(output / PREPROCESS_FILE, prepared.preprocess))
    written.extend(prepared.write_sidecars(output))
    metrics = result.metrics_json(test=test.report if test is not None else None)
    written.append(_write_json(output / METRICS_FILE, metrics))
    if prepared.data_report:
        written.append(_write_json(output / DATA_REPORT_FILE, prepared.data_report))
    for path in written:
        progress.emit("artifact", kind=path.stem, path=str(path))

    confusion = (test.report if test is not None else result.validation).get("confusion_matrix") or []
    plots = write_plots(result.history, confusion, prepared.class_names, output / PLOTS_DIR)
    for path in plots:
        progress.emit("artifact", kind="plot", path=str(path))

    export = _export(prepared, output, parity_tolerance)
    progress.emit("artifact", kind="onnx", path=str(output / ONNX_FILE))

    if test is not None:
        tracker.log_metrics({f"test_{key}": value for key, value in test.report.items() if key != "loss"})
        tracker.log_metrics({"test_loss": test.loss})
    tracker.log_metrics(
        {"onnx_max_abs_diff": export["max_abs_diff"], "onnx_parity_passed": float(bool(export["passed"]))}
    )
    tracker.set_tags({"onnx_sha256": export["sha256"], "best_epoch": result.best_epoch})
    # Plain artifacts only: mlflow.<flavor>.log_model fails against an Azure ML workspace (MLflow 3.x).
    for path in [*written, output / ONNX_FILE, output / EXPORT_FILE]:
        tracker.log_artifact(path, artifact_path="model")
    tracker.log_artifacts(output / PLOTS_DIR, artifact_path=PLOTS_DIR)
    return metrics, export


def _fail(message: str, code: int) -> int:
    print(f"error: {message}", file=sys.stderr, flush=True)
    return code


def run_training(args: argparse.Namespace, prepare: Callable[[argparse.Namespace, DistContext], PreparedTask]) -> int:
    """The whole run for one process (rank); returns the exit code. See the module docstring for the stages."""
    started = time.perf_counter()
    try:
        ctx = init_distributed(args.device)
    except (RuntimeError, ValueError) as exc:
        return _fail(f"cannot set up the device or process group: {exc}", EXIT_BAD_INPUT)
    output = Path(args.output)
    checkpoint_dir = Path(args.checkpoint_dir) if args.checkpoint_dir else output / "checkpoints"
    # Set once the last collective (the test evaluation) is behind every rank: from then on the ranks leave
    # the process group together (see distributed.cleanup); before it, a failing rank leaves at once.
    collectives_done = False
    try:
        engine.seed_everything(args.seed)  # before the model is built: the same init on every rank
        prepared = prepare(args, ctx)
        config = train_config(args, channels_last=prepared.channels_last and ctx.device.type == "cuda")
        if ctx.is_main:
            output.mkdir(parents=True, exist_ok=True)
        tracker = Tracker(args.experiment or f"azure-dl-{prepared.task}", enabled=ctx.is_main)
        with tracker:
            result = engine.fit(
                prepared.model,
                prepared.train,
                prepared.val,
                config,
                class_names=prepared.class_names,
                ctx=ctx,
                task=prepared.task,
                checkpoint_dir=checkpoint_dir,
                tracker=tracker,
                train_labels=prepared.train_labels,
                run_params=prepared.run_params,
                train_batch_transform=prepared.train_batch_transform,
                eval_batch_transform=prepared.eval_batch_transform,
            )
            test = (
                engine.evaluate_dataset(
                    prepared.model,
                    prepared.test,
                    config,
                    ctx,
                    class_names=prepared.class_names,
                    batch_transform=prepared.eval_batch_transform,
                )
                if prepared.test is not None
                else None
            )
            collectives_done = True
            if not ctx.is_main:
                return 0
            failed = prepared.failed_items()
            if failed:
                prepared.data_report["failed_during_training"] = len(failed)
                progress.warning(
                    f"{len(failed)} item(s) failed to load during training and were replaced: {failed[:3]}"
                )
            report = prepared.data_report
            tracker.log_params(
                {f"data_{key}": value for key, value in report.items() if key not in prepared.report_only_keys}
            )
            tracker.log_metrics(prepared.run_metrics)
            if prepared.run_tags:
                tracker.set_tags(prepared.run_tags)
            metrics, export = _write_outputs(prepared, result, test, output, tracker, args.parity_tolerance)
            headline = _headline(metrics)
            progress.emit(
                "done",
                output=str(output.resolve()),
                run_id=tracker.run_id,
                tracking_uri=tracker.tracking_uri,
                metrics={**headline, "seconds": round(time.perf_counter() - started, 1)},
            )
            if not export["passed"]:
                return _fail(
                    f"ONNX parity check failed: max |ONNX - PyTorch| = {export['max_abs_diff']} > tolerance "
                    f"{export['tolerance']}; every file was written, {output / 'export.json'} has the details",
                    EXIT_PARITY_FAILED,
                )
            return 0
    except DatasetError as exc:
        return _fail(str(exc), EXIT_BAD_INPUT)
    except FileNotFoundError as exc:
        return _fail(str(exc), EXIT_BAD_INPUT)
    except KeyboardInterrupt:
        # Ctrl-C outside the training loop (setup, test split, export): no step to finish, so stop at once.
        if ctx.is_main:
            print(
                f"interrupted; the same command resumes from the last checkpoint in {checkpoint_dir}",
                file=sys.stderr,
                flush=True,
            )
        return 128 + signal.SIGINT
    except engine.TrainingInterrupted as exc:
        if ctx.is_main:  # the rank that checkpoints says where; asked for, so not an "error:"
            print(str(exc), file=sys.stderr, flush=True)
        return exc.exit_code
    except engine.TrainingError as exc:
        return _fail(str(exc), exc.exit_code)
    finally:
        # After the test evaluation only rank 0 works (files, export) and the others wait for it at the
        # leaving barrier, which is bounded and gives way when rank 0 fails and leaves.
        cleanup(ctx, synchronize=collectives_done)


def main_for(
    get_args_parser: Callable[[], argparse.ArgumentParser],
    prepare: Callable[[argparse.Namespace, DistContext], PreparedTask],
    argv: Sequence[str] | None = None,
) -> int:
    args = get_args_parser().parse_args(argv)
    return run_training(args, prepare)
