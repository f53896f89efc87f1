"""The flags `submit` and `sweep` share, their JobOptions, and the staging report (not a verb: main.py skips _*)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from azure_dl.flag_values import key_value

if TYPE_CHECKING:
    from azure_dl.staging import JobOptions, Prepared

SCRIPT_ARGS_HELP = "everything after `--` is passed to the training script unchanged"


def allow_script_args(parser: argparse.ArgumentParser, dest: str = "script_args") -> None:
    """Let `-- FLAGS...` at the end of a sub-command reach the script untouched.

    argparse (3.11) cannot give a sub-command's positional list everything after `--` once other options come
    first, so the sub-parser splits its own arguments at the first `--` before parsing the rest.
    """
    parse_known = parser.parse_known_args

    def split_at_double_dash(args: Sequence[str] | None = None, namespace: Any = None) -> Any:
        items = list(args if args is not None else sys.argv[1:])
        passthrough: list[str] = []
        if "--" in items:
            cut = items.index("--")
            items, passthrough = items[:cut], items[cut + 1 :]
        parsed, extras = parse_known(items, namespace)
        setattr(parsed, dest, passthrough)
        return parsed, extras

    parser.parse_known_args = split_at_double_dash  # type: ignore[method-assign,assignment]
    parser.set_defaults(**{dest: []})


def add_job_arguments(parser: argparse.ArgumentParser) -> None:
    """The flags submit and sweep share: what runs, on what, with which data, for how long."""
    parser.add_argument("target", help="a preset (resnet, lstm) or the path of your own training script (train.py)")
    job = parser.add_argument_group("job")
    job.add_argument("--code", type=Path, metavar="DIR", help="folder uploaded with a script (default: its folder)")
    job.add_argument(
        "--data",
        metavar="URI_OR_PATH",
        help="training data: azureml://datastores/.../paths/..., "
        "azureml:NAME:VERSION, an https URL or a local path (uploaded); presets default to synthetic data",
    )
    job.add_argument("--val-data", metavar="URI_OR_PATH", help="validation data (default: split from --data)")
    job.add_argument("--test-data", metavar="URI_OR_PATH", help="test data (default: split from --data)")
    job.add_argument(
        "--glove",
        metavar="PATH_OR_URI",
        help="lstm: GloVe vectors as a job input (.txt, .gz or ARCHIVE.zip:MEMBER, e.g. glove.6B.zip:glove.6B.300d.txt;"
        " a local file is uploaded)",
    )
    job.add_argument(
        "--pretrained",
        metavar="PATH_OR_URI",
        help="resnet: initial weights as a job input (a .pth file or URI; uploaded when local), "
        "`default` (torchvision's ImageNet weights) or `none` (from scratch)",
    )
    job.add_argument(
        "--input",
        dest="job_inputs",
        action="append",
        type=key_value,
        default=[],
        metavar="NAME=PATH_OR_URI[:uri_file|uri_folder]",
        help="another job input, given to your script's flags as ${{inputs.NAME}} (repeatable; a local path is "
        "uploaded): --input vocab=vocab.txt -- --vocab '${{inputs.vocab}}'",
    )
    job.add_argument(
        "--profile",
        choices=("scenario", "local"),
        help="a preset's settings: scenario (the default with --data) or local (a small model for a laptop CPU; "
        "the default on the synthetic demo data)",
    )
    job.add_argument(
        "--compute",
        metavar="NAME",
        help="AmlCompute cluster name (default: one per VM size, e.g. "
        "nc4as-t4-v3); `serverless` asks Azure ML for the VM per job",
    )
    job.add_argument(
        "--vm-size",
        metavar="SIZE",
        help="VM size (default: the preset's, Standard_NC4as_T4_v3); see `azure-dl catalog list`",
    )
    job.add_argument("--instance-count", type=int, default=1, metavar="N", help="nodes (default: 1)")
    job.add_argument(
        "--nproc",
        type=int,
        metavar="N",
        help="processes per node (default: one per GPU of the VM; with --local: torchrun --nproc-per-node N)",
    )
    job.add_argument(
        "--environment",
        metavar="ENV",
        help="train-gpu, train-cpu (default: by VM size) or a registered "
        "environment azureml:NAME:VERSION / azureml:NAME@latest",
    )
    job.add_argument(
        "--max-hours", type=float, metavar="H", help="time limit; bounds the cost (default: the preset's, 2)"
    )
    job.add_argument("--low-priority", action="store_true", help="preemptible VMs (cheaper; resumes from checkpoints)")
    job.add_argument(
        "--env",
        action="append",
        type=key_value,
        default=[],
        metavar="NAME=VALUE",
        help="environment variable for the job (repeatable; never secrets)",
    )
    job.add_argument(
        "--tag", action="append", type=key_value, default=[], metavar="KEY=VALUE", help="job tag (repeatable)"
    )
    job.add_argument("--experiment", metavar="NAME", help="experiment name (default: azure-dl-<preset or script>)")
    job.add_argument(
        "--out",
        type=Path,
        metavar="DIR",
        help="folder for job.yml, the snapshot and (with --local) the training output (default: runs/<name>-<time>)",
    )


def add_mode_arguments(parser: argparse.ArgumentParser, yaml_name: str) -> None:
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument(
        "--dry-run",
        action="store_true",
        help=f"validate, write DIR/{yaml_name} and the snapshot, print the plan, and stop (no credential, no network)",
    )
    mode.add_argument("--local", action="store_true", help="run the same command on this machine")
    parser.add_argument(
        "--region",
        default=None,
        metavar="REGION",
        help="the region whose list prices the plan uses (default: eastus; e.g. westeurope)",
    )
    azure = parser.add_argument_group("Azure ML submission")
    azure.add_argument("--stream", action="store_true", help="follow the job's logs until it ends")
    azure.add_argument("--ensure-compute", action="store_true", help="create or grow the cluster first (quota checked)")


def plan_region(args: argparse.Namespace) -> str:
    """The --region the plan prices in, checked before anything is staged."""
    from azure_dl.catalog import DEFAULT_REGION, check_region

    return check_region(args.region or DEFAULT_REGION)


def job_options(args: argparse.Namespace) -> JobOptions:
    """The staging options that the flags of add_job_arguments (and the `--` script flags) give.

    Each JobOptions field is named after the flag's argparse dest, so the two cannot drift apart silently.
    """
    import dataclasses

    from azure_dl.staging import JobOptions

    return JobOptions(**{field.name: getattr(args, field.name) for field in dataclasses.fields(JobOptions)})


def report_staging(prepared: Prepared, yaml_path: Path) -> None:
    from azure_dl.console import note

    for line in prepared.notes:
        note(f"note: {line}")
    note(f"snapshot: {prepared.snapshot.describe()} -> {prepared.snapshot.path}")
    note(f"wrote {yaml_path}")
