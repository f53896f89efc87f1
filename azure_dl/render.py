"""Pure rendering of specs as Azure ML CLI v2 YAML (plain dicts, no SDK), and of the same command for local runs.

`render_job` / `render_sweep` give the documents `az ml job create --file` and `azure.ai.ml.load_job` read; the
Azure backend loads exactly the file the dry-run wrote. `local_command` builds the argv a job's node would run
with inputs and outputs bound to local folders instead of `${{inputs.x}}` / `${{outputs.y}}` - both come from
one function, so what runs locally is what runs in the cloud.
"""

from __future__ import annotations

import math
import os
import re
import shlex
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from azure_dl.errors import SpecError
from azure_dl.spec import PLACEHOLDER, EarlyTermination, JobSpec, SearchParam, SweepSpec

COMMAND_SCHEMA = "https://azuremlschemas.azureedge.net/latest/commandJob.schema.json"
SWEEP_SCHEMA = "https://azuremlschemas.azureedge.net/latest/sweepJob.schema.json"
HEADER = "# Rendered by azure-dl: exactly what it submits. `az ml job create --file {name}` reads it too.\n"


def _placeholder(text: str) -> bool:
    return text.startswith("${{") and text.endswith("}}")


def command_argv(
    spec: JobSpec,
    *,
    python: str,
    input_value: Callable[[str], str],
    output_value: Callable[[str], str],
    search: Mapping[str, str] | None = None,
    search_flags: Mapping[str, str] | None = None,
) -> list[str]:
    """The argv of one process: interpreter, module or script, bound inputs and outputs, the script's own flags,
    then searched hyperparameters (`search` maps parameter name -> value, `search_flags` name -> flag)."""
    argv = [python, "-m", spec.module] if spec.module else [python, str(spec.script)]
    for name, entry in spec.inputs.items():
        if entry.flag is not None:  # the others are named by the script's flags as ${{inputs.NAME}}
            argv += [entry.flag, input_value(name)]
    for name, output in spec.outputs.items():
        argv += [output.flag, output_value(name)]

    def bind(match: re.Match[str]) -> str:
        return input_value(match[2]) if match[1] == "inputs" else output_value(match[2])

    argv += [PLACEHOLDER.sub(bind, arg) for arg in spec.args]
    for name, value in (search or {}).items():
        argv += [(search_flags or {})[name], value]
    return argv


def command_string(argv: list[str]) -> str:
    """Shell-quote every token except Azure ML's ${{...}} placeholders, which the service substitutes."""
    return " ".join(token if _placeholder(token) else shlex.quote(token) for token in argv)


def _relative(path: Path, base: Path) -> str:
    """`path` relative to the YAML's folder when inside it (portable), else absolute."""
    path, base = path.resolve(), base.resolve()
    if path == base or base in path.parents:
        return Path(os.path.relpath(path, base)).as_posix()
    return path.as_posix()


def _environment(spec: JobSpec, yaml_dir: Path) -> str | dict[str, str]:
    environment = spec.environment
    if environment.is_registered:
        return environment.name
    assert environment.image is not None and environment.conda_file is not None  # checked by EnvironmentSpec
    return {"image": environment.image, "conda_file": _relative(environment.conda_file, yaml_dir)}


def _inputs(spec: JobSpec, yaml_dir: Path) -> dict[str, dict[str, str]]:
    rendered = {}
    for name, entry in spec.inputs.items():
        path = _relative(Path(entry.value), yaml_dir) if entry.is_local else entry.value
        rendered[name] = {"type": entry.kind, "path": path, "mode": entry.mode}
    return rendered


def _outputs(spec: JobSpec) -> dict[str, dict[str, str]]:
    # No path: Azure ML writes to azureml/<job name>/<output> on the default datastore, and a restarted
    # (preempted) job keeps its name, so it finds its checkpoints again.
    return {name: {"type": output.kind, "mode": output.mode} for name, output in spec.outputs.items()}


def _resources(spec: JobSpec) -> dict[str, Any]:
    resources: dict[str, Any] = {"instance_count": spec.instance_count}
    if spec.compute is None:
        resources["instance_type"] = spec.vm_size  # serverless compute: the job asks for its VM size itself
    resources["shm_size"] = spec.shm_size
    return resources


def _cloud_argv(spec: JobSpec, search: tuple[SearchParam, ...] = ()) -> list[str]:
    return command_argv(
        spec,
        python="python",
        input_value=lambda name: f"${{{{inputs.{name}}}}}",
        output_value=lambda name: f"${{{{outputs.{name}}}}}",
        search={param.name: f"${{{{search_space.{param.name}}}}}" for param in search},
        search_flags={param.name: param.flag for param in search},
    )


def _trial_body(spec: JobSpec, yaml_dir: Path, search: tuple[SearchParam, ...]) -> dict[str, Any]:
    body: dict[str, Any] = {
        "code": _relative(spec.code, yaml_dir),
        "command": command_string(_cloud_argv(spec, search)),
        "environment": _environment(spec, yaml_dir),
    }
    if spec.env_vars:
        body["environment_variables"] = dict(spec.env_vars)
    body["resources"] = _resources(spec)
    if spec.is_distributed:
        # Azure ML starts process_count_per_instance copies of the command per node and sets MASTER_ADDR/PORT,
        # WORLD_SIZE, RANK and LOCAL_RANK, so the command itself is a plain `python -m ...`.
        body["distribution"] = {"type": "pytorch", "process_count_per_instance": spec.processes_per_node}
    return body


def _header(spec: JobSpec, schema: str, kind: str) -> dict[str, Any]:
    document: dict[str, Any] = {
        "$schema": schema,
        "type": kind,
        "display_name": spec.display_name,
        "experiment_name": spec.experiment,
    }
    if spec.tags:
        document["tags"] = dict(spec.tags)
    return document


def _queue_settings(spec: JobSpec) -> dict[str, str] | None:
    # Low priority on serverless compute is a job setting (the spot tier); on a cluster it is the cluster's tier,
    # set when the cluster is created (`--ensure-compute --low-priority`, `azure-dl compute ensure --low-priority`).
    if spec.low_priority and spec.compute is None:
        return {"job_tier": "spot"}
    return None


def render_job(spec: JobSpec, yaml_dir: Path) -> dict[str, Any]:
    """The command job document; relative paths (code, conda file, local inputs) are relative to `yaml_dir`."""
    document = _header(spec, COMMAND_SCHEMA, "command")
    body = _trial_body(spec, yaml_dir, ())
    document["code"] = body.pop("code")
    document["command"] = body.pop("command")
    document["environment"] = body.pop("environment")
    if spec.inputs:
        document["inputs"] = _inputs(spec, yaml_dir)
    if spec.outputs:
        document["outputs"] = _outputs(spec)
    if spec.compute is not None:
        document["compute"] = f"azureml:{spec.compute}"
    document.update(body)  # environment_variables, resources, distribution
    document["limits"] = {"timeout": math.ceil(spec.max_hours * 3600)}
    queue = _queue_settings(spec)
    if queue:
        document["queue_settings"] = queue
    return document


def render_search_param(param: SearchParam) -> dict[str, Any]:
    """One search_space entry. Azure ML's log-scale bounds are natural logarithms of the value's range."""
    if param.kind == "choice":
        return {"type": "choice", "values": list(param.values)}
    if param.kind == "randint":
        return {"type": "randint", "upper": param.upper}
    if param.kind in ("normal", "lognormal", "qnormal", "qlognormal"):
        entry: dict[str, Any] = {"type": param.kind, "mu": param.mu, "sigma": param.sigma}
    else:
        assert param.low is not None and param.high is not None  # checked by SearchParam
        log = param.kind in ("loguniform", "qloguniform")
        low, high = (math.log(param.low), math.log(param.high)) if log else (param.low, param.high)
        entry = {"type": param.kind, "min_value": low, "max_value": high}
    if param.kind.startswith("q"):
        entry["q"] = param.q
    return entry


def render_early_termination(policy: EarlyTermination) -> dict[str, Any] | None:
    if policy.policy == "none":
        return None
    entry: dict[str, Any] = {"type": policy.policy}
    if policy.policy == "bandit":
        if policy.slack_amount is not None:
            entry["slack_amount"] = policy.slack_amount
        else:
            entry["slack_factor"] = policy.slack_factor
    if policy.policy == "truncation_selection":
        entry["truncation_percentage"] = policy.truncation_percentage
    entry["evaluation_interval"] = policy.evaluation_interval
    entry["delay_evaluation"] = policy.delay_evaluation
    return entry


def render_sweep(sweep: SweepSpec, yaml_dir: Path) -> dict[str, Any]:
    """The sweep job document: the trial's command gets `--flag ${{search_space.name}}` per searched parameter."""
    trial = sweep.trial
    document = _header(trial, SWEEP_SCHEMA, "sweep")
    if trial.compute is not None:
        document["compute"] = f"azureml:{trial.compute}"
    if trial.inputs:
        document["inputs"] = _inputs(trial, yaml_dir)
    if trial.outputs:
        document["outputs"] = _outputs(trial)
    document["trial"] = _trial_body(trial, yaml_dir, sweep.search_space)
    document["search_space"] = {param.name: render_search_param(param) for param in sweep.search_space}
    if sweep.sampling == "random" and sweep.seed is not None:
        document["sampling_algorithm"] = {"type": "random", "seed": sweep.seed}
    else:
        document["sampling_algorithm"] = sweep.sampling
    document["objective"] = {"goal": sweep.goal, "primary_metric": sweep.primary_metric}
    policy = render_early_termination(sweep.early_termination)
    if policy:
        document["early_termination"] = policy
    document["limits"] = {
        "max_total_trials": sweep.max_total_trials,
        "max_concurrent_trials": sweep.max_concurrent_trials,
        "timeout": math.ceil(sweep.effective_timeout_hours * 3600),
        "trial_timeout": math.ceil(trial.max_hours * 3600),
    }
    queue = _queue_settings(trial)
    if queue:
        document["queue_settings"] = queue
    return document


def local_command(
    spec: JobSpec,
    bindings: Mapping[str, Path],
    *,
    python: str = sys.executable,
    search: Mapping[SearchParam, Any] | None = None,
) -> list[str]:
    """The argv the job would run, with inputs and outputs bound to local paths (for `--local`).

    Local inputs default to their own path; remote ones (datastore URIs, assets, URLs) must be bound. Every output
    must be bound. `search` adds sampled hyperparameters the way a sweep trial receives them.
    """
    missing_outputs = [name for name in spec.outputs if name not in bindings]
    if missing_outputs:
        raise SpecError(f"no local folder for output(s) {', '.join(missing_outputs)}")

    def input_value(name: str) -> str:
        if name in bindings:
            return str(bindings[name])
        entry = spec.inputs[name]
        if entry.is_local:
            return entry.value
        raise SpecError(
            f"input {name} ({entry.value}) is not a local path, so a local run cannot read it",
            hint="download it first (e.g. `az ml data download`) and pass the local folder with --data",
        )

    values = {param.name: _format_value(value) for param, value in (search or {}).items()}
    flags = {param.name: param.flag for param in (search or {})}
    return command_argv(
        spec,
        python=python,
        input_value=input_value,
        output_value=lambda name: str(bindings[name]),
        search=values,
        search_flags=flags,
    )


def _format_value(value: Any) -> str:
    return repr(value) if isinstance(value, float) else str(value)


def to_yaml(document: Mapping[str, Any], name: str = "job.yml") -> str:
    """Deterministic YAML text: keys in the order rendered (readable), no flow style, no line wrapping."""
    import yaml

    body = yaml.safe_dump(dict(document), sort_keys=False, default_flow_style=False, width=100_000, allow_unicode=True)
    return HEADER.format(name=name) + body


def write_yaml(document: Mapping[str, Any], path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(to_yaml(document, path.name), encoding="utf-8")
    return path
