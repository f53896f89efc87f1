"""`azure-dl pipeline resnet|lstm`: prepare -> train -> evaluate (quality gate) -> register, as one Azure ML
pipeline job, or run locally with the same graph and step reuse, or rendered only (--dry-run).

Inputs default to the pipeline definition's values (pipelines/<preset>.yml); --local applies the preset's small
local profile first; data defaults to synthetic data generated under --out. `--input NAME=VALUE` sets a pipeline
input (type-checked), `--input STEP.NAME=VALUE` one step's own input (e.g. train.max_steps=20).
"""

from __future__ import annotations

import argparse
import itertools
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # imported by the handler, so that `--help` stays light
    from azure_dl.pipeline_spec import PipelineSpec


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "pipeline",
        help="run the prepare/train/evaluate/register pipeline in Azure ML, locally (--local) or as a dry-run",
        description=__doc__,
        usage="azure-dl pipeline resnet|lstm|PIPELINE.yml [--input NAME=VALUE ...] [--dry-run | --local] [--out DIR]",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("target", help="a preset pipeline (resnet, lstm) or a pipeline YAML file")
    parser.add_argument(
        "--input",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="set a pipeline input, e.g. data=PATH_OR_URI, epochs=3, gate_threshold=0.9 (repeatable; a wrong "
        "name or type lists the valid inputs); STEP.NAME=VALUE sets a step's own input",
    )
    parser.add_argument(
        "--profile",
        choices=("scenario", "local"),
        help="the preset's settings: scenario (the default with a data input) or local (a small model for a laptop "
        "CPU; the default on the synthetic demo data)",
    )
    parser.add_argument(
        "--region",
        default=None,
        metavar="REGION",
        help="the region whose list prices the plan uses (default: eastus)",
    )
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument(
        "--dry-run",
        action="store_true",
        help="validate, write DIR/pipeline.yml (+ snapshot, environments), print the plan, and stop",
    )
    mode.add_argument("--local", action="store_true", help="run every step on this machine, reusing unchanged steps")
    parser.add_argument(
        "--out",
        type=Path,
        metavar="DIR",
        help="folder for pipeline.yml, the snapshot, data and local step outputs "
        "(default: runs/<preset>-pipeline-<time>)",
    )
    local = parser.add_argument_group("local runs")
    local.add_argument("--no-reuse", "--force", action="store_true", help="run every step even if a cached one matches")
    local.add_argument(
        "--cache-dir",
        type=Path,
        metavar="DIR",
        help="step cache (default: $AZURE_DL_PIPELINE_CACHE or ~/.azure-dl/pipeline-cache)",
    )
    azure = parser.add_argument_group("Azure ML submission")
    azure.add_argument("--stream", action="store_true", help="follow the pipeline's logs until it ends")
    azure.add_argument("--ensure-compute", action="store_true", help="create missing clusters first (quota checked)")
    from azure_dl.workspace import add_workspace_arguments

    add_workspace_arguments(parser)
    parser.set_defaults(handler=handle)


def local_profile(spec: PipelineSpec) -> dict[str, str]:
    """The preset's local script flags (--image-size 64 ...) as values of the pipeline inputs of the same name."""
    from azure_dl.presets import PRESETS

    preset = PRESETS.get(spec.name)
    if preset is None:
        return {}
    tokens = list(preset.local_args)
    profile: dict[str, str] = {}
    for flag, value in itertools.pairwise(tokens):
        name = flag.removeprefix("--").replace("-", "_")
        if flag.startswith("--") and not value.startswith("--") and name in spec.inputs:
            profile[name] = value
    return profile


def _synthetic_data(spec: PipelineSpec, out: Path) -> Path:
    """The preset's synthetic dataset under OUT/data (deterministic, so re-runs reuse the prepare step)."""
    from azure_dl.errors import SpecError
    from azure_dl.presets import PRESETS
    from azure_dl.staging import synthesize

    preset = PRESETS.get(spec.name)
    if preset is None:
        raise SpecError(f"pipeline {spec.name!r} has no value for 'data'", hint="pass --input data=PATH_OR_URI")
    # reviews.csv: the pipeline's own name for the text table (pipelines/*.yml and the goldens show data/reviews.csv)
    return synthesize(
        preset, out / "data", text_file="reviews.csv", data_flag="--input data", data_usage="--input data=PATH_OR_URI"
    )


def _archive_members(spec: PipelineSpec, overrides: dict[str, str]) -> dict[str, str]:
    """`glove=ARCHIVE.zip:MEMBER` -> the archive as the file input and the member as the step's glove_member (the
    archive is what is uploaded and mounted; the script reads the member out of it)."""
    value = overrides.get("glove", "")
    archive, separator, member = value.rpartition(".zip:")
    train = spec.steps.get("train")
    if not (separator and archive and member) or train is None or "glove_member" not in train.component.inputs:
        return overrides
    return {**overrides, "glove": archive + ".zip", "train.glove_member": member}


def build(args: argparse.Namespace) -> tuple[PipelineSpec, Path, list[str]]:
    """The validated spec (profile, overrides, data), the --out folder, and notes for the user."""
    from azure_dl.pipeline_inputs import apply_overrides, parse_overrides, validate_inputs
    from azure_dl.pipeline_spec import load_pipeline

    spec = load_pipeline(args.target)
    overrides = _archive_members(spec, parse_overrides(args.input))
    notes: list[str] = []
    # As with submit: the scenario's settings (the pipeline's own defaults) unless the demo data trains.
    demo_data = "data" in spec.inputs and spec.inputs["data"].value is None and "data" not in overrides
    profile = args.profile or ("local" if demo_data else "scenario")
    values = local_profile(spec) if profile == "local" else {}
    if values:
        notes.append("profile: local: " + ", ".join(f"{k}={v}" for k, v in values.items() if k not in overrides))
    else:
        notes.append("profile: scenario (the pipeline's inputs as declared; --profile local for a laptop run)")
    spec = apply_overrides(spec, {**values, **overrides})  # checks every value before any file is written
    out = (args.out or Path("runs") / f"{spec.name}-pipeline-{datetime.now(UTC):%Y%m%d-%H%M%S}").resolve()
    if "data" in spec.inputs and spec.inputs["data"].value is None:
        data = _synthetic_data(spec, out)
        spec = apply_overrides(spec, {"data": str(data)})
        notes.append(f"no data input given: synthetic data in {data} (pass --input data=PATH_OR_URI for yours)")
    validate_inputs(spec, target="local" if args.local else "azure")
    return spec, out, notes


def _run_local(args: argparse.Namespace, spec: PipelineSpec, out: Path, snapshot: Any) -> int:
    from azure_dl.backends.local.pipelines import run_pipeline, summary_rows
    from azure_dl.console import note, print_table

    run = run_pipeline(
        spec,
        out,
        code_dir=snapshot.path,
        code_hash=snapshot.sha256,
        reuse=not args.no_reuse,
        cache_dir=args.cache_dir,
        render=True,
    )
    print_table(f"Pipeline {spec.name} (local)", ["step", "status", "duration", "note"], summary_rows(run))
    for output, model in run.registered.items():
        ref = f"{model.name}:{model.version}"
        print(f"{output}: registered model {ref} - serve it with `azure-dl serve {ref}`")
    note(f"MLflow: parent run {run.parent_run_id} in {run.tracking_uri}; summary in {out / 'pipeline_run.json'}")
    failed = run.failed
    if failed is not None:
        print(f"error: step {failed.name!r} failed; log: {failed.log_path}", file=sys.stderr)
        return 1
    return 0


def _local_uploads(spec: PipelineSpec, code: Path) -> list[tuple[str, Path]]:
    """What submitting uploads: the code snapshot and each data input given as a local path."""
    from azure_dl.pipeline_spec import DATA_TYPES, is_uri

    items = [("code", code)]
    for item in spec.inputs.values():
        if item.type in DATA_TYPES and item.value is not None and not is_uri(str(item.value)):
            items.append((item.name, Path(str(item.value)).expanduser().resolve()))
    return items


def handle(args: argparse.Namespace) -> int:
    from azure_dl.cli._job_args import plan_region
    from azure_dl.console import note, print_table
    from azure_dl.pipeline_plan import PLAN_COLUMNS, plan_pipeline, plan_rows
    from azure_dl.pipeline_render import write_pipeline_yaml
    from azure_dl.snapshot import package_dir, stage_snapshot

    region = plan_region(args)
    spec, out, notes = build(args)
    snapshot = stage_snapshot(package_dir("training_scripts"), out / "snapshot")
    path = write_pipeline_yaml(spec, out, code_dir=snapshot.path)
    for line in (*notes, *snapshot.notes):
        note(f"note: {line}")
    note(f"snapshot: {snapshot.describe()} -> {snapshot.path}")
    note(f"wrote {path}")
    if args.local:
        return _run_local(args, spec, out, snapshot)

    from azure_dl.plan import UNKNOWN_PRICE_HINT, uploads_of, uploads_text

    plan = plan_pipeline(spec, region=region)
    print_table("Plan (nothing has been created or billed yet)", PLAN_COLUMNS, plan_rows(plan))
    print(f"prices: list prices per VM-hour in {plan.region} ({'; '.join(plan.price_sources) or 'none known'})")
    print(f"uploads: {uploads_text(uploads_of(_local_uploads(spec, snapshot.path)))}")
    if plan.cost_bound is None:
        note(f"cost bound unknown: a step's price or VM size is not known; {UNKNOWN_PRICE_HINT}")
    if plan.registers:
        print(f"registers: {', '.join(plan.registers)} (when the quality gate passes)")
    if args.dry_run:
        print(f"dry run: nothing was created or billed. {path} is exactly what submitting sends.")
        return 0
    from azure_dl.backends.azureml.pipelines import submit_pipeline_yaml

    submit_pipeline_yaml(args, path, needs=plan.needs, ensure_compute=args.ensure_compute, stream=args.stream)
    return 0
