"""`azure-dl jobs list|show|logs|cancel|download`: Azure ML jobs and their results, back on this machine."""

from __future__ import annotations

import argparse
from pathlib import Path

from azure_dl.cli._shared import show_help, workspace_client
from azure_dl.workspace import add_workspace_arguments


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "jobs",
        help="list, inspect, follow, cancel and download Azure ML jobs",
        description="Azure ML jobs of the workspace: status, metrics, logs, cancellation and output download.",
    )
    actions = parser.add_subparsers(dest="jobs_action", metavar="ACTION")

    listing = actions.add_parser("list", help="recent jobs as a table (name, status, experiment, created, compute)")
    listing.add_argument("--experiment", default=None, help="only jobs of this experiment (default: all)")
    listing.add_argument("--limit", type=int, default=20, help="how many jobs, newest first (default: 20)")
    listing.set_defaults(handler=_list)

    show = actions.add_parser("show", help="status, compute, duration and metrics of one job")
    show.add_argument("name", metavar="NAME", help="job name (as `jobs list` prints it)")
    show.add_argument(
        "--no-metrics",
        action="store_true",
        help="skip reading metrics from the workspace's MLflow (default: read them)",
    )
    show.set_defaults(handler=_show)

    logs = actions.add_parser("logs", help="stream a job's logs until it ends")
    logs.add_argument("name", metavar="NAME", help="job name")
    logs.set_defaults(handler=_logs)

    cancel = actions.add_parser("cancel", help="cancel a queued or running job")
    cancel.add_argument("name", metavar="NAME", help="job name")
    cancel.set_defaults(handler=_cancel)

    download = actions.add_parser(
        "download",
        help="download a finished job's outputs into a training output folder",
        description=(
            "Downloads the job's outputs and flattens Azure's layout (named-outputs/<output>/...) so that DIR is a "
            "training output folder (model.onnx, labels.json, preprocess.json, metrics.json, export.json) that "
            "`azure-dl register` and `azure-dl serve` accept."
        ),
    )
    download.add_argument("name", metavar="NAME", help="job name")
    download.add_argument(
        "--output",
        metavar="NAME",
        default=None,
        help="download only this named output, straight into DIR (default: all outputs and the logs)",
    )
    download.add_argument(
        "--out", metavar="DIR", type=Path, default=None, help="an empty or new folder (default: runs/<job name>)"
    )
    download.set_defaults(handler=_download)

    for action in (listing, show, logs, cancel, download):
        add_workspace_arguments(action)
    parser.set_defaults(handler=show_help(parser))


def _when(value: object) -> str:
    from datetime import UTC, datetime

    if not isinstance(value, datetime):
        return "-"
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    minutes, secs = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}"


def _list(args: argparse.Namespace) -> int:
    from azure_dl.backends.azureml.jobs import list_jobs
    from azure_dl.console import note, print_table

    ml_client = workspace_client(args)
    rows = list_jobs(ml_client, experiment=args.experiment, limit=args.limit)
    if not rows:
        which = f" in experiment {args.experiment!r}" if args.experiment else ""
        note(f"no jobs{which} in workspace {getattr(ml_client, 'workspace_name', '')}")
        return 0
    table = [[row.name, row.status, row.experiment, _when(row.created), row.compute] for row in rows]
    title = f"Jobs in workspace {getattr(ml_client, 'workspace_name', '')} (newest first)"
    print_table(title, ["name", "status", "experiment", "created", "compute"], table)
    return 0


def _show(args: argparse.Namespace) -> int:
    from azure_dl.backends.azureml.jobs import show_job
    from azure_dl.console import note, print_key_values, print_table

    info = show_job(workspace_client(args), args.name, with_metrics=not args.no_metrics)
    print_key_values(
        f"Job {info.name}",
        [
            ("display name", info.display_name),
            ("status", info.status),
            ("experiment", info.experiment or "-"),
            ("compute", info.compute),
            ("created", _when(info.created)),
            ("started", _when(info.started)),
            ("ended", _when(info.ended)),
            ("duration", _duration(info.duration_s)),
            ("outputs", ", ".join(info.outputs) or "-"),
            ("studio", info.studio_url),
        ],
    )
    if info.metrics:
        print_table("Metrics (last value)", ["metric", "value"], [[k, f"{v:.6g}"] for k, v in info.metrics.items()])
    elif info.metrics_note:
        note(info.metrics_note)
    elif not args.no_metrics:
        note("the job logged no metrics")
    return 0


def _logs(args: argparse.Namespace) -> int:
    from azure_dl.backends.azureml.jobs import stream_job

    stream_job(workspace_client(args), args.name)
    return 0


def _cancel(args: argparse.Namespace) -> int:
    from azure_dl.backends.azureml.jobs import cancel_job

    status = cancel_job(workspace_client(args), args.name)
    print(f"Job {args.name}: {status}")
    return 0


def _download(args: argparse.Namespace) -> int:
    from azure_dl.backends.azureml.jobs import TRAINING_OUTPUT_FILES, download_job
    from azure_dl.console import note

    out = args.out if args.out is not None else Path("runs") / args.name
    result = download_job(workspace_client(args), args.name, out, output_name=args.output)
    top = f" (output {result.output_name!r} at the top)" if result.output_name else ""
    print(f"Downloaded job {args.name} to {result.folder}{top}")
    for other in result.other_outputs:
        print(f"  output {other!r} in {result.folder / other}")
    if result.complete:
        print(f"{result.folder} is a complete training output folder: `azure-dl register` and `serve` accept it")
    else:
        note(
            f"warning: {result.folder} is not a complete training output folder "
            f"(missing {', '.join(result.missing)} of {', '.join(TRAINING_OUTPUT_FILES)}); "
            "pick the training output with --output NAME, or check whether the job finished its export"
        )
    return 0
