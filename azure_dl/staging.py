"""Staging a command job: what it runs (a preset or a script), its validated JobSpec, and the files under --out
(snapshot, environment files, synthetic data when no data is given). Shared by submit and sweep; no network.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from azure_dl.errors import SpecError
from azure_dl.flag_values import pairs_to_dict
from azure_dl.git_info import git_commit

if TYPE_CHECKING:  # imported where used, keeping `--help` light
    from azure_dl.presets import Preset
    from azure_dl.snapshot import Snapshot
    from azure_dl.spec import InputSpec, JobSpec

DATA_FLAGS = (("data", "--data"), ("val_data", "--val-data"), ("test_data", "--test-data"))
OUTPUT_FLAGS = (("model", "--output"), ("checkpoints", "--checkpoint-dir"))


@dataclass(frozen=True)
class JobOptions:
    """What the user asked for, as the submit/sweep flags give it; None means "the preset's (or the) default"."""

    target: str
    code: Path | None = None
    data: str | None = None
    val_data: str | None = None
    test_data: str | None = None
    compute: str | None = None
    vm_size: str | None = None
    instance_count: int = 1
    nproc: int | None = None
    environment: str | None = None
    max_hours: float | None = None
    low_priority: bool = False
    env: Sequence[tuple[str, str]] = ()
    tag: Sequence[tuple[str, str]] = ()
    experiment: str | None = None
    out: Path | None = None
    script_args: Sequence[str] = ()
    profile: str | None = None  # "scenario" or "local"; None: local without --data, else scenario
    glove: str | None = None
    pretrained: str | None = None
    job_inputs: Sequence[tuple[str, str]] = ()  # --input NAME=VALUE[:uri_file|uri_folder]


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


PROFILES = ("scenario", "local")
INPUT_KIND_SUFFIXES = (":uri_file", ":uri_folder")
ZIP_MEMBER = ".zip:"  # ARCHIVE.zip:MEMBER, as training_scripts/glove.py reads it


def _input(value: str, flag: str | None, default_kind: str) -> InputSpec:
    from azure_dl.spec import InputSpec, infer_input_kind

    return InputSpec(value, flag, kind=infer_input_kind(value, default_kind))


def split_input_kind(value: str) -> tuple[str, str | None]:
    """`PATH:uri_file` -> (PATH, 'uri_file'). Only a literal trailing kind counts, so `azureml:NAME:3` stays whole."""
    for suffix in INPUT_KIND_SUFFIXES:
        if value.endswith(suffix) and len(value) > len(suffix):
            return value[: -len(suffix)], suffix[1:]
    return value, None


def effective_profile(options: JobOptions, preset: Preset | None) -> str | None:
    """Which of the preset's profiles runs: the scenario, unless the job trains the synthetic demo data."""
    if options.profile is not None and options.profile not in PROFILES:
        raise SpecError(f"unknown profile {options.profile!r}", hint=f"use --profile {' or '.join(PROFILES)}")
    if preset is None:
        if options.profile is not None:
            raise SpecError("--profile chooses between a preset's settings; your script has its own defaults")
        return None
    if options.profile is not None:
        return options.profile
    return "local" if options.data is None else "scenario"


def _file_inputs(options: JobOptions, target: Target) -> tuple[dict[str, InputSpec], list[str]]:
    """--glove / --pretrained: a uri_file input bound to the script's flag, or (for `default`/`none`) a setting."""
    inputs: dict[str, InputSpec] = {}
    settings: list[str] = []
    offered = target.preset.file_inputs if target.preset else {}
    for name in ("glove", "pretrained"):
        value = getattr(options, name)
        if value is None:
            continue
        if name not in offered:
            owner = "lstm" if name == "glove" else "resnet"
            raise SpecError(
                f"--{name} is an input of the {owner} preset, not of {target.name}",
                hint="for your own script use --input NAME=PATH_OR_URI and pass -- --flag ${{inputs.NAME}}",
            )
        flag, setting_values = offered[name]
        archive, separator, member = value.rpartition(ZIP_MEMBER)
        if value in setting_values:
            settings += [flag, value]
        elif separator and archive and member:
            # ARCHIVE.zip:MEMBER (GloVe's published glove.6B.zip holds four sets): the archive is the input and
            # the script reads the member straight out of it, so the flag is the mounted path plus `:MEMBER`.
            inputs[name] = _input(archive + ".zip", None, "uri_file")
            settings += [flag, f"${{{{inputs.{name}}}}}:{member}"]
        else:
            inputs[name] = _input(value, flag, "uri_file")
    return inputs, settings


def _generic_inputs(pairs: Sequence[tuple[str, str]], taken: Sequence[str]) -> dict[str, InputSpec]:
    inputs: dict[str, InputSpec] = {}
    for name, raw in pairs:
        if name in inputs or name in taken:
            raise SpecError(f"input {name!r} is given twice", hint="give each --input NAME once")
        value, kind = split_input_kind(raw)
        inputs[name] = _input(value, None, "uri_folder") if kind is None else _input_of_kind(value, kind)
    return inputs


def _input_of_kind(value: str, kind: str) -> InputSpec:
    from azure_dl.spec import InputSpec

    return InputSpec(value, None, kind=kind)


def _flag_of(token: str) -> str | None:
    return token.split("=", 1)[0] if token.startswith("--") else None


def check_no_laptop_paths(script_args: Sequence[str], code_folder: Path, file_flags: Mapping[str, str]) -> None:
    """In a cloud job, a script flag naming a file or folder on this machine would fail on the node after it was
    paid for: refuse it before anything is staged, naming the flag and the option that uploads the file instead.

    A path inside the code folder travels with the snapshot, so it is fine. `file_flags` maps a script flag to
    the azure-dl option that uploads its file (--glove for the LSTM's --glove).
    """
    code_folder = code_folder.resolve()
    previous: str | None = None
    for token in script_args:
        flag = _flag_of(token)
        if flag is not None and "=" not in token:
            previous = flag
            continue
        value = token.split("=", 1)[1] if flag is not None else token
        owner = flag or previous
        previous = None
        if not value or "${{" in value:
            continue
        path = Path(value).expanduser()
        try:
            exists = path.exists()
        except OSError:  # e.g. a name too long to be a path: not a path then
            continue
        if not exists:
            continue
        resolved = path.resolve()
        if resolved == code_folder or code_folder in resolved.parents:
            continue
        flag_text = owner or "--flag"
        if owner is not None and owner in file_flags:
            hint = f"use {file_flags[owner]} {value} instead: it uploads the file as a job input"
        else:
            name = flag_text.lstrip("-").replace("-", "_") or "file"
            placeholder = "${{inputs." + name + "}}"
            hint = f"upload it as a job input: --input {name}={value} and pass -- {flag_text} {placeholder}"
        raise SpecError(
            f"script flag {owner or value} names {value}, a path on this machine that the job cannot read", hint=hint
        )


def build_spec(
    options: JobOptions, target: Target, *, local: bool, drop_flags: frozenset[str] = frozenset()
) -> JobSpec:
    """The job as the options describe it, validated; code is still the source folder (staging comes later).

    `drop_flags` are removed from the preset's profile (a sweep searches them instead).
    """
    from azure_dl.catalog import get_vm_size
    from azure_dl.environments import default_environment, environment_spec
    from azure_dl.presets import DEFAULT_GPU_VM_SIZE, merge_flags, without_flags
    from azure_dl.spec import JobSpec, OutputSpec

    preset = target.preset
    vm = get_vm_size(options.vm_size or (preset.default_vm_size if preset else DEFAULT_GPU_VM_SIZE))
    compute: str | None = options.compute or vm.compute_name
    if compute == "serverless":
        compute = None
    default_kind = preset.data_kind if preset else "uri_folder"
    inputs = {
        name: _input(getattr(options, name), flag, default_kind)
        for name, flag in DATA_FLAGS
        if getattr(options, name) is not None
    }
    file_inputs, settings = _file_inputs(options, target)
    inputs |= file_inputs
    inputs |= _generic_inputs(options.job_inputs, taken=[*inputs, *(name for name, _ in OUTPUT_FLAGS)])
    bound = {entry.flag for entry in inputs.values() if entry.flag is not None}
    for token in options.script_args:
        if _flag_of(token) in bound:
            raise SpecError(
                f"script flag {_flag_of(token)} is also bound to a job input",
                hint="give it once: the job input (e.g. --data, --glove) passes the flag to the script",
            )
    if not local:
        file_flags = {flag: f"--{name}" for name, (flag, _) in (preset.file_inputs if preset else {}).items()}
        check_no_laptop_paths(options.script_args, target.code_source, file_flags)
    profile_name = effective_profile(options, preset)
    profile = () if preset is None else preset.local_args if profile_name == "local" else preset.scenario_args
    profile = without_flags(profile, drop_flags | bound | {token for token in settings if token.startswith("--")})
    tags = {"preset" if preset else "script": target.name if preset else str(target.script)}
    if profile_name:
        tags["profile"] = profile_name
    tags |= pairs_to_dict(options.tag, "tag")
    return JobSpec(
        display_name=target.name,
        experiment=options.experiment or (preset.experiment if preset else f"azure-dl-{_slug(target.name)}"),
        code=target.code_source,
        module=target.module,
        script=target.script,
        args=merge_flags(profile, [*settings, *options.script_args]),
        inputs=inputs,
        outputs={name: OutputSpec(flag) for name, flag in OUTPUT_FLAGS},
        environment=environment_spec(options.environment or default_environment(vm.is_gpu)),
        vm_size=vm.name,
        compute=compute,
        instance_count=options.instance_count,
        # Locally, --nproc is torchrun's process count on this machine, not a property of the VM.
        process_count_per_instance=None if local else options.nproc,
        env_vars=pairs_to_dict(options.env, "environment variable"),
        max_hours=options.max_hours if options.max_hours is not None else (preset.max_hours if preset else 2.0),
        low_priority=options.low_priority,
        tags=tags,
    )


def _slug(text: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "-" for c in text).strip("-_.") or "script"


def default_out(name: str) -> Path:
    return Path("runs") / f"{name}-{datetime.now(UTC):%Y%m%d-%H%M%S}"


def synthesize(
    preset: Preset,
    data_dir: Path,
    *,
    text_file: str = "texts.csv",
    data_flag: str = "--data",
    data_usage: str = "--data URI_OR_PATH",
) -> Path:
    """Generate the preset's synthetic data into data_dir (images: a class-per-folder tree; text: data_dir/text_file).

    The data is deterministic, so a re-run writes the same files (and a pipeline reuses its prepare step).
    `data_flag` / `data_usage` name, in errors, how the user gives real data instead.
    """
    try:
        from training_scripts import synth
    except ImportError as exc:
        raise SpecError(
            f"no {data_flag} given and the synthetic data generator (training_scripts/synth.py) is not available",
            hint=f"pass {data_usage}",
        ) from exc
    data_dir.mkdir(parents=True, exist_ok=True)
    try:
        if preset.synth == "images":
            synth.synth_images(data_dir, overwrite=True, **preset.synth_options)
            return data_dir
        path = data_dir / text_file
        synth.synth_text(path, **preset.synth_options)  # replaces an existing file
        return path
    except (ValueError, FileExistsError) as exc:  # e.g. data_dir holds files synth did not write
        raise SpecError(
            f"cannot write synthetic data into {data_dir}: {exc}",
            hint=f"choose a new --out folder, or pass {data_flag}",
        ) from exc


def profile_line(profile: str, args: Sequence[str]) -> str:
    """`profile: scenario (...) --seq-len 100 ...`: which settings run, as the script receives them."""
    why = {
        "scenario": "the scenario's settings; --profile local for the small laptop model",
        "local": "a small model for the synthetic data; --profile scenario for the scenario's settings",
    }[profile]
    return f"profile: {profile} ({why}): {' '.join(args)}"


@dataclass(frozen=True)
class Prepared:
    """A validated job staged under `out`: its spec points at the snapshot; `notes` are for the user."""

    spec: JobSpec
    snapshot: Snapshot
    out: Path
    notes: tuple[str, ...]


def prepare(
    options: JobOptions,
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

    target = resolve_target(options.target, options.code)
    draft = build_spec(options, target, local=local, drop_flags=drop_flags)
    if also_validate is not None:
        also_validate(draft)
    out = (options.out or default_out(target.name)).resolve()
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
    profile = draft.tags.get("profile")
    if profile:
        notes.insert(0, profile_line(profile, draft.args))
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
