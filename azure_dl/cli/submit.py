"""`azure-dl submit resnet|lstm|SCRIPT`: build, validate and render a command job, then run it locally,
stop (--dry-run), or submit it to Azure ML.

Every mode goes through the same stages: (1) a JobSpec from the flags, validated before anything is written;
(2) the snapshot, environment files and (without --data) synthetic data staged under --out; (3) DIR/job.yml and
the plan; (4) the run. Heavy libraries (PyTorch, the Azure SDK) are imported only by the mode that needs them.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from azure_dl.cli._job_args import (
    SCRIPT_ARGS_HELP,
    add_job_arguments,
    add_mode_arguments,
    allow_script_args,
    job_options,
    plan_region,
    report_staging,
)

if TYPE_CHECKING:  # the handlers import these at run time, keeping `--help` light
    pass


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "submit",
        help="run a training script as an Azure ML command job (or locally / as a dry-run)",
        description=__doc__,
        usage="azure-dl submit resnet|lstm|SCRIPT [options] [--dry-run | --local] [--out DIR] [-- SCRIPT FLAGS...]",
        epilog=SCRIPT_ARGS_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_job_arguments(parser)
    add_mode_arguments(parser, "job.yml")
    from azure_dl.workspace import add_workspace_arguments

    add_workspace_arguments(parser)
    allow_script_args(parser)
    parser.set_defaults(handler=handle)


def report_done(result: Any, output: Path) -> None:
    """Where the results are (the script's own `done` line already showed the metrics)."""
    from azure_dl.backends.local.tracking import tracking_uri
    from azure_dl.console import print_key_values

    done = getattr(result, "done", None) or {}
    rows = [("output", str(done.get("output") or output))]
    for label, path in (("model", output / "model.onnx"), ("plots", output / "plots")):
        if path.exists():
            rows.append((label, str(path)))
    if done.get("run_id"):
        rows.append(("MLflow run", f"{done['run_id']} ({done.get('tracking_uri') or tracking_uri()})"))
    print_key_values("Local run finished", rows)


def handle(args: argparse.Namespace) -> int:
    from azure_dl.plan import plan_job, print_plan
    from azure_dl.render import render_job, write_yaml
    from azure_dl.staging import prepare

    region = plan_region(args)
    prepared = prepare(job_options(args), local=args.local)
    spec = prepared.spec
    yaml_path = write_yaml(render_job(spec, prepared.out), prepared.out / "job.yml")
    report_staging(prepared, yaml_path)
    if args.local:
        from azure_dl.backends.local.jobs import run_locally

        result = run_locally(
            spec,
            cwd=prepared.snapshot.path,
            output=prepared.out,
            nproc=args.nproc,
            log_path=prepared.out / "train.log",
        )
        code = int(getattr(result, "returncode", 1))
        if code != 0 and getattr(result, "interrupted", False):
            print(
                f"stopped (exit code {code}); the same command resumes from the last checkpoint in {prepared.out}",
                file=sys.stderr,
            )
            return code
        if code != 0:
            print(
                f"error: the training script exited with code {code} (log: {prepared.out / 'train.log'})",
                file=sys.stderr,
            )
            return code
        report_done(result, prepared.out)
        return 0
    plan = plan_job(spec, region=region)
    print_plan(plan)
    if args.dry_run:
        print(
            f"dry run: nothing was created or billed. {yaml_path} is exactly what submitting without --dry-run "
            "sends (`az ml job create --file` reads it too)."
        )
        return 0
    from azure_dl.backends.azureml.jobs import submit_job_yaml

    submit_job_yaml(
        args,
        yaml_path,
        needs=plan.needs,
        ensure_compute=args.ensure_compute,
        stream=args.stream,
    )
    return 0
