"""`azure-dl submit resnet|lstm|SCRIPT`: build, validate and render a command job, then run it locally,
stop (--dry-run), or submit it to Azure ML.

Every mode goes through the same stages: (1) a JobSpec from the flags, validated before anything is written;
(2) the snapshot, environment files and (without --data) synthetic data staged under --out; (3) DIR/job.yml and
the plan; (4) the run. Heavy libraries (PyTorch, the Azure SDK) are imported only by the mode that needs them.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import subprocess
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from azure_dl.errors import SpecError

if TYPE_CHECKING:  # the handlers import these at run time, keeping `--help` light
    from azure_dl.presets import Preset
    from azure_dl.snapshot import Snapshot
    from azure_dl.spec import InputSpec, JobSpec

DATA_FLAGS = (("data", "--data"), ("val_data", "--val-data"), ("test_data", "--test-data"))
OUTPUT_FLAGS = (("model", "--output"), ("checkpoints", "--checkpoint-dir"))
SCRIPT_ARGS_HELP = "everything after `--` is passed to the training script unchanged"


# ----------------------------------------------------------------------------------------------------- arguments
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


def _key_value(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise argparse.ArgumentTypeError(f"expected NAME=VALUE, got {text!r}")
    return key.strip(), value


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
        type=_key_value,
        default=[],
        metavar="NAME=VALUE",
        help="environment variable for the job (repeatable; never secrets)",
    )
    job.add_argument(
        "--tag", action="append", type=_key_value, default=[], metavar="KEY=VALUE", help="job tag (repeatable)"
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
    azure = parser.add_argument_group("Azure ML submission")
    azure.add_argument("--stream", action="store_true", help="follow the job's logs until it ends")
    azure.add_argument("--ensure-compute", action="store_true", help="create or grow the cluster first (quota checked)")


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


# ------------------------------------------------------------------------------------------------------ building
@dataclass(frozen=True)
class Target:
    """What a job runs: a preset's module in training_scripts/, or a user's script in its code folder."""

    name: str
    code_source: Path
    preset: Preset | None = None
    module: str | None = None
    script: str | None = None


def resolve_target(target: str, code: Path | None) -> Target:
    from azure_dl.presets import PRESETS
    from azure_dl.snapshot import package_dir

    if not target.strip():
        raise SpecError(
            "empty command: nothing to run", hint=f"give a preset ({', '.join(sorted(PRESETS))}) or a script path"
        )
    if target in PRESETS:
        if code is not None:
            raise SpecError(f"--code is for your own script; the {target} preset ships its code (training_scripts/)")
        preset = PRESETS[target]
        return Target(name=target, code_source=package_dir("training_scripts"), preset=preset, module=preset.module)
    script = Path(target).expanduser()
    if script.suffix != ".py" and not script.exists():
        raise SpecError(
            f"{target!r} is neither a preset nor a script",
            hint=f"use one of {', '.join(sorted(PRESETS))}, or the path of a Python script (train.py)",
        )
    if not script.is_file():
        raise SpecError(f"script {target!r} not found", hint="give the path of an existing .py file")
    folder = (code or script.parent).expanduser().resolve()
    script = script.resolve()
    if folder not in script.parents:
        raise SpecError(f"script {target} is not inside the code folder {folder}", hint="pass --code DIR that holds it")
    return Target(name=script.stem, code_source=folder, script=script.relative_to(folder).as_posix())


def parse_pairs(pairs: Sequence[tuple[str, str]], what: str) -> dict[str, str]:
    result: dict[str, str] = {}
    for key, value in pairs:
        if key in result:
            raise SpecError(f"{what} {key} is given twice")
        result[key] = value
    return result


def _input(value: str, flag: str, default_kind: str) -> InputSpec:
    from azure_dl.spec import InputSpec, infer_input_kind

    return InputSpec(value, flag, kind=infer_input_kind(value, default_kind))


def build_spec(
    args: argparse.Namespace, target: Target, *, local: bool, drop_flags: frozenset[str] = frozenset()
) -> JobSpec:
    """The job as the flags describe it, validated; code is still the source folder (staging comes later).

    `drop_flags` are removed from the preset's profile (a sweep searches them instead).
    """
    from azure_dl.catalog import get_vm_size
    from azure_dl.environments import default_environment, environment_spec
    from azure_dl.presets import DEFAULT_GPU_VM_SIZE, merge_flags, without_flags
    from azure_dl.spec import JobSpec, OutputSpec

    preset = target.preset
    vm = get_vm_size(args.vm_size or (preset.default_vm_size if preset else DEFAULT_GPU_VM_SIZE))
    compute: str | None = args.compute or vm.compute_name
    if compute == "serverless":
        compute = None
    default_kind = preset.data_kind if preset else "uri_folder"
    inputs = {
        name: _input(getattr(args, name), flag, default_kind)
        for name, flag in DATA_FLAGS
        if getattr(args, name) is not None
    }
    profile = (preset.local_args if local else preset.cloud_args) if preset else ()
    tags = {"preset" if preset else "script": target.name if preset else str(target.script)}
    tags |= parse_pairs(args.tag, "tag")
    return JobSpec(
        display_name=target.name,
        experiment=args.experiment or (preset.experiment if preset else f"azure-dl-{_slug(target.name)}"),
        code=target.code_source,
        module=target.module,
        script=target.script,
        args=merge_flags(without_flags(profile, drop_flags), args.script_args),
        inputs=inputs,
        outputs={name: OutputSpec(flag) for name, flag in OUTPUT_FLAGS},
        environment=environment_spec(args.environment or default_environment(vm.is_gpu)),
        vm_size=vm.name,
        compute=compute,
        instance_count=args.instance_count,
        # Locally, --nproc is torchrun's process count on this machine, not a property of the VM.
        process_count_per_instance=None if local else args.nproc,
        env_vars=parse_pairs(args.env, "environment variable"),
        max_hours=args.max_hours if args.max_hours is not None else (preset.max_hours if preset else 2.0),
        low_priority=args.low_priority,
        tags=tags,
    )


def _slug(text: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "-" for c in text).strip("-_.") or "script"


def default_out(name: str) -> Path:
    return Path("runs") / f"{name}-{datetime.now(UTC):%Y%m%d-%H%M%S}"


def git_commit(folder: Path) -> str | None:
    """The commit of the repository holding `folder` (with '-dirty' for uncommitted changes), if any."""
    try:
        head = subprocess.run(
            ["git", "-C", str(folder), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5, check=False
        )
        if head.returncode != 0:
            return None
        dirty = subprocess.run(
            ["git", "-C", str(folder), "status", "--porcelain", "--", "."],
            capture_output=True,
            text=True,
            timeout=5,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return head.stdout.strip() + ("-dirty" if dirty.stdout.strip() else "")


def synthesize(preset: Preset, data_dir: Path) -> Path:
    """Generate the preset's synthetic data into data_dir (images: a class-per-folder tree; text: a CSV)."""
    try:
        from training_scripts import synth
    except ImportError as exc:
        raise SpecError(
            "no --data given and the synthetic data generator (training_scripts/synth.py) is not available",
            hint="pass --data URI_OR_PATH",
        ) from exc
    data_dir.mkdir(parents=True, exist_ok=True)
    try:
        if preset.synth == "images":
            synth.synth_images(data_dir, overwrite=True, **preset.synth_options)
            return data_dir
        path = data_dir / "texts.csv"
        synth.synth_text(path, **preset.synth_options)  # replaces an existing file
        return path
    except (ValueError, FileExistsError) as exc:  # e.g. data_dir holds files synth did not write
        raise SpecError(
            f"cannot write synthetic data into {data_dir}: {exc}", hint="choose a new --out folder, or pass --data"
        ) from exc


@dataclass(frozen=True)
class Prepared:
    spec: JobSpec
    snapshot: Snapshot
    out: Path
    notes: tuple[str, ...]


def prepare(
    args: argparse.Namespace,
    *,
    local: bool,
    drop_flags: frozenset[str] = frozenset(),
    also_validate: Callable[[JobSpec], object] | None = None,
) -> Prepared:
    """Validate, then stage under --out: snapshot, environment files, synthetic data when needed. No network.

    `also_validate` checks what wraps the job (a sweep) with the draft spec, so it too fails before any I/O.
    """
    from azure_dl.environments import environment_spec
    from azure_dl.snapshot import stage_snapshot

    target = resolve_target(args.target, args.code)
    draft = build_spec(args, target, local=local, drop_flags=drop_flags)
    if also_validate is not None:
        also_validate(draft)
    out = (args.out or default_out(target.name)).resolve()
    out.mkdir(parents=True, exist_ok=True)
    notes: list[str] = []
    inputs = dict(draft.inputs)
    if "data" not in inputs:
        if target.preset is None:
            notes.append("no --data given: the script gets no --data flag")
        else:
            data = synthesize(target.preset, out / "data")
            inputs["data"] = _input(str(data), "--data", target.preset.data_kind)
            notes.append(f"no --data given: synthetic {target.preset.synth} in {data} (pass --data for real data)")
    snapshot = stage_snapshot(target.code_source, out / "snapshot")
    environment = draft.environment
    if not environment.is_registered:
        environment = environment_spec(environment.name, copy_to=out / "environments")
    tags = dict(draft.tags)
    tags["snapshot_sha256"] = snapshot.sha256
    commit = git_commit(target.code_source)
    if commit:
        tags["git_commit"] = commit
    spec = dataclasses.replace(draft, code=snapshot.path, inputs=inputs, environment=environment, tags=tags)
    return Prepared(spec=spec, snapshot=snapshot, out=out, notes=(*notes, *snapshot.notes))


def report_staging(prepared: Prepared, yaml_path: Path) -> None:
    from azure_dl.console import note

    for line in prepared.notes:
        note(f"note: {line}")
    note(f"snapshot: {prepared.snapshot.describe()} -> {prepared.snapshot.path}")
    note(f"wrote {yaml_path}")


# -------------------------------------------------------------------------------------------------------- running
def tracking_uri(cwd: Path | None = None) -> str:
    """The user's MLFLOW_TRACKING_URI made absolute (subprocesses run elsewhere), else sqlite:///<cwd>/mlflow.db."""
    base = (cwd or Path.cwd()).resolve()
    uri = os.environ.get("MLFLOW_TRACKING_URI")
    if not uri:
        return f"sqlite:///{base / 'mlflow.db'}"
    prefix = "sqlite:///"
    if uri.startswith(prefix) and not uri[len(prefix) :].startswith("/"):
        return f"{prefix}{base / uri[len(prefix) :]}"
    return uri


def run_locally(
    spec: JobSpec,
    *,
    cwd: Path,
    output: Path,
    nproc: int | None,
    log_path: Path,
    extra: Any = None,
) -> Any:
    """Run the job's command here with outputs bound under `output`; returns the process backend's result."""
    from azure_dl.backends.local.process import run_command, torchrun_wrap
    from azure_dl.render import local_command

    bindings = {"model": output, "checkpoints": output / "checkpoints"}
    argv = local_command(spec, bindings, search=extra)
    if nproc and nproc > 1:
        argv = torchrun_wrap(argv, nproc)
    env = dict(os.environ)
    env.update(spec.env_vars)
    env["MLFLOW_TRACKING_URI"] = tracking_uri()
    return run_command(argv, cwd=cwd, env=env, log_path=log_path, render=True)


def report_done(result: Any, output: Path) -> None:
    """Where the results are (the script's own `done` line already showed the metrics)."""
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

    prepared = prepare(args, local=args.local)
    spec = prepared.spec
    yaml_path = write_yaml(render_job(spec, prepared.out), prepared.out / "job.yml")
    report_staging(prepared, yaml_path)
    if args.local:
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
    print_plan(plan_job(spec))
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
        ensure_compute=args.ensure_compute,
        vm_size=spec.vm_size,
        instance_count=spec.instance_count,
        low_priority=spec.low_priority,
        stream=args.stream,
    )
    return 0
