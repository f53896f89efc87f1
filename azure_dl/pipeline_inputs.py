"""Setting a pipeline's inputs from `--input NAME=VALUE` (pipeline inputs, a step's own inputs, a step's optional
file inputs such as train.glove) and checking that every data input can be read where the pipeline runs."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any, Literal

from azure_dl.errors import SpecError
from azure_dl.pipeline_spec import (
    DATA_TYPES,
    Binding,
    PipelineInput,
    PipelineSpec,
    Port,
    Step,
    check_input_value,
    check_uri,
    coerce_input,
    is_uri,
)


def parse_overrides(pairs: Iterable[str]) -> dict[str, str]:
    """`NAME=VALUE` strings (from repeated --input) into a mapping; the last one for a name wins."""
    parsed: dict[str, str] = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or not name.strip():
            raise SpecError(f"--input expects NAME=VALUE, got {pair!r}")
        parsed[name.strip()] = value
    return parsed


def apply_overrides(spec: PipelineSpec, overrides: Mapping[str, str]) -> PipelineSpec:
    """Set inputs from strings, converted and checked against their declared types.

    NAME sets a pipeline input; STEP.INPUT sets one step's component input that the pipeline does not bind to an
    upstream output (e.g. `train.max_steps=5`, an optional input the pipeline leaves unset).
    """
    values: dict[str, Any] = {}
    for name, text in overrides.items():
        if "." not in name and name not in spec.inputs:
            name = _step_file_input(spec, name) or name
        if "." in name:
            spec = _override_step_input(spec, name, text)
            continue
        item = spec.inputs.get(name)
        if item is None:
            valid = "\n    ".join(i.describe() for i in spec.inputs.values())
            raise SpecError(f"pipeline {spec.name!r} has no input {name!r}; valid inputs:\n    {valid}")
        value = coerce_input(item, text)
        check_input_value(item, value)
        values[name] = value
    return spec.with_inputs(values)


def _unbound_file_ports(step: Step) -> list[Port]:
    return [
        port
        for port in step.component.inputs.values()
        if port.type in DATA_TYPES and port.optional and port.name not in step.inputs
    ]


def _step_file_input(spec: PipelineSpec, name: str) -> str | None:
    """`glove` -> `train.glove` when exactly one step has an optional file input of that name left unbound."""
    owners = [step.name for step in spec.steps.values() if any(p.name == name for p in _unbound_file_ports(step))]
    return f"{owners[0]}.{name}" if len(owners) == 1 else None


def _bind_step_file_input(spec: PipelineSpec, step: Step, port: Port, text: str) -> PipelineSpec:
    """An optional file input of a step (train.glove) becomes a pipeline input of the same name bound to it, so it
    is uploaded, checked and rendered exactly like `data`; left unset, the step's `$[[...]]` block drops out."""
    name = port.name if port.name not in spec.inputs else f"{step.name}_{port.name}"
    if not text.strip():
        raise SpecError(f"empty value for --input {step.name}.{port.name}", hint="give a path or URI")
    item = PipelineInput(name, port.type, text, (port,))
    steps = dict(spec.steps)
    steps[step.name] = replace(step, inputs={**step.inputs, port.name: Binding("parent", value=name)})
    return replace(spec, steps=steps, inputs={**spec.inputs, name: item})


def _override_step_input(spec: PipelineSpec, name: str, text: str) -> PipelineSpec:
    step_name, _, port_name = name.partition(".")
    step = spec.steps.get(step_name)
    if step is None:
        raise SpecError(
            f"pipeline {spec.name!r} has no step {step_name!r} (in --input {name}); steps: {', '.join(spec.steps)}"
        )
    port = step.component.inputs.get(port_name)
    if port is not None and port in _unbound_file_ports(step):
        return _bind_step_file_input(spec, step, port, text)
    if port is None or port.type in DATA_TYPES:
        literal = [p.describe() for p in _literal_ports(step)]
        literal += [f"{p.name} ({p.type}, optional)" for p in _unbound_file_ports(step)]
        raise SpecError(
            f"step {step_name!r} has no settable input {port_name!r}",
            hint=f"settable inputs of {step_name}: {', '.join(literal) or 'none'}",
        )
    item = PipelineInput(name, port.type, None, (port,))
    value = coerce_input(item, text)
    check_input_value(item, value)
    steps = dict(spec.steps)
    steps[step_name] = replace(step, inputs={**step.inputs, port_name: Binding("literal", value=value)})
    return replace(spec, steps=steps)


def _literal_ports(step: Step) -> list[PipelineInput]:
    return [
        PipelineInput(port.name, port.type, port.default)
        for port in step.component.inputs.values()
        if port.type not in DATA_TYPES
    ]


def validate_inputs(spec: PipelineSpec, *, target: Literal["local", "azure"], base_dir: Path | None = None) -> None:
    """Data inputs exist (local paths) or are well-formed URIs; a local run needs local data."""
    base = base_dir or Path.cwd()
    for item in spec.inputs.values():
        if item.type not in DATA_TYPES:
            if item.value is None and any(not p.optional for p in item.ports):
                raise SpecError(f"input {item.name!r} has no value", hint=f"set it with --input {item.name}=VALUE")
            continue
        if item.value is None or str(item.value) == "":
            raise SpecError(f"data input {item.name!r} has no value", hint=f"set it with --input {item.name}=PATH")
        text = str(item.value)
        if is_uri(text):
            check_uri(text)
            if target == "local":
                raise SpecError(
                    f"input {item.name!r} is a remote URI ({text}); a local run reads local files",
                    hint=f"download it and pass --input {item.name}=PATH",
                )
            continue
        path = Path(text).expanduser()
        path = path if path.is_absolute() else base / path
        if not path.exists():
            raise SpecError(f"input {item.name!r}: local path {str(path)!r} does not exist")
        if item.type == "uri_folder" and not path.is_dir():
            raise SpecError(f"input {item.name!r} is a uri_folder but {str(path)!r} is a file")
        if item.type == "uri_file" and not path.is_file():
            raise SpecError(f"input {item.name!r} is a uri_file but {str(path)!r} is not a file")
