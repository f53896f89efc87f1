"""Pipeline definitions in pipelines/: load a pipeline and its components, override inputs, validate, render, plan.

The YAML files are Azure ML CLI v2 documents (a `type: pipeline` job whose steps reference command components);
this module reads them as plain data, SDK-free, so the local runner, the dry-run renderer and the Azure adaptor
all work from the same graph. Pipeline job inputs are literals in that format, so an input's declared type is
the type of the component inputs it is bound to (or the data type it states). The rendered DIR/pipeline.yml
inlines the components, points their `code` at the staged snapshot and copies the environments, so the folder
is self-contained; the plan bounds each step's cost by list price x its time limit.
"""

from __future__ import annotations

import copy
import math
import os
import re
import shlex
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

import yaml

from azure_dl.errors import SpecError

PIPELINES_DIR = Path(__file__).resolve().parents[1] / "pipelines"
PRESETS = ("resnet", "lstm")

DATA_TYPES = frozenset({"uri_folder", "uri_file", "custom_model", "mlflow_model", "mltable"})
LITERAL_TYPES = frozenset({"integer", "number", "string", "boolean"})

_PARENT_INPUT = re.compile(r"^\$\{\{\s*parent\.inputs\.([A-Za-z_]\w*)\s*\}\}$")
_PARENT_OUTPUT = re.compile(r"^\$\{\{\s*parent\.outputs\.([A-Za-z_]\w*)\s*\}\}$")
_STEP_OUTPUT = re.compile(r"^\$\{\{\s*parent\.jobs\.([A-Za-z_]\w*)\.outputs\.([A-Za-z_]\w*)\s*\}\}$")
_COMMAND_REF = re.compile(r"\$\{\{\s*(inputs|outputs)\.([A-Za-z_]\w*)\s*\}\}")
_OPTIONAL_BLOCK = re.compile(r"\$\[\[(.*?)\]\]", re.DOTALL)

# Data URIs Azure ML accepts for job inputs; anything else is treated as a local path.
_URI_PATTERNS = {
    "azureml asset": re.compile(r"^azureml:[A-Za-z0-9][\w.-]*(:[\w.-]+|@latest)$"),
    "azureml path": re.compile(
        r"^azureml://(datastores/[^/]+/paths/.+|subscriptions/.+|jobs/[^/]+/outputs/.+|registries/.+)$"
    ),
    "web": re.compile(r"^https?://[^/\s]+/\S*$"),
    "storage": re.compile(r"^(wasbs?|abfss?)://[^@/\s]+@[^/\s]+/\S*$|^adl://[^/\s]+/\S*$"),
}
_URI_PREFIXES = ("azureml:", "http://", "https://", "wasb://", "wasbs://", "abfs://", "abfss://", "adl://")


@dataclass(frozen=True)
class Port:
    """One declared input or output of a component."""

    name: str
    type: str
    optional: bool = False
    default: Any = None
    enum: tuple[str, ...] | None = None
    min: float | None = None
    max: float | None = None
    description: str = ""


@dataclass(frozen=True)
class Component:
    """A command component: its YAML (as loaded), declared ports and command template."""

    path: Path
    raw: dict[str, Any]
    inputs: dict[str, Port]
    outputs: dict[str, Port]

    @property
    def name(self) -> str:
        return str(self.raw.get("name", self.path.stem))

    @property
    def command(self) -> str:
        return str(self.raw["command"])


@dataclass(frozen=True)
class Binding:
    """Where a step input's value comes from: a literal, a pipeline input, or an upstream step's output."""

    kind: Literal["literal", "parent", "step"]
    value: Any = None
    step: str = ""
    output: str = ""


@dataclass(frozen=True)
class Step:
    """One node of the graph: a component with bound inputs, the compute it asks for, and promoted outputs."""

    name: str
    component: Component
    inputs: dict[str, Binding]
    outputs: dict[str, str | None]  # component output -> pipeline output it is promoted to (or None)
    compute: str | None
    compute_input: str | None  # the pipeline input the compute is bound to, if any
    raw: dict[str, Any]

    @property
    def upstream(self) -> set[str]:
        return {b.step for b in self.inputs.values() if b.kind == "step"}


@dataclass(frozen=True)
class PipelineInput:
    """A pipeline-level input with the type it was declared with (directly or through its bindings)."""

    name: str
    type: str
    value: Any
    ports: tuple[Port, ...] = ()  # component ports it feeds (their enum/min/max constrain the value)

    def describe(self) -> str:
        default = "no default" if self.value is None else f"default {self.value!r}"
        return f"{self.name} ({self.type}, {default})"


@dataclass(frozen=True)
class PipelineOutput:
    """A pipeline-level output; a `custom_model` with a `name` is registered as a model when the step succeeds."""

    name: str
    type: str
    model_name: str | None = None


@dataclass(frozen=True)
class PipelineSpec:
    """A loaded, validated pipeline graph: inputs with values, steps in dependency order, outputs."""

    name: str
    path: Path
    raw: dict[str, Any]
    inputs: dict[str, PipelineInput]
    outputs: dict[str, PipelineOutput]
    steps: dict[str, Step] = field(default_factory=dict)  # insertion order = dependency order

    def input_values(self) -> dict[str, Any]:
        return {name: item.value for name, item in self.inputs.items()}

    def with_inputs(self, values: Mapping[str, Any]) -> PipelineSpec:
        """A copy with the given (already type-checked) input values."""
        inputs = dict(self.inputs)
        for name, value in values.items():
            inputs[name] = replace(inputs[name], value=value)
        return replace(self, inputs=inputs)

    def resolve_step_inputs(self, step: Step) -> dict[str, Any]:
        """Literal and pipeline-input bindings resolved to values (upstream outputs are left to the runner)."""
        values: dict[str, Any] = {}
        for port, binding in step.inputs.items():
            if binding.kind == "literal":
                values[port] = binding.value
            elif binding.kind == "parent":
                values[port] = self.inputs[binding.value].value
        return values

    def compute_of(self, step: Step) -> str | None:
        if step.compute_input is not None:
            return str(self.inputs[step.compute_input].value)
        return step.compute


def pipeline_path(preset_or_path: str | Path) -> Path:
    """pipelines/<preset>.yml for a preset name, or the given YAML file."""
    candidate = Path(preset_or_path)
    if candidate.suffix in (".yml", ".yaml"):
        if not candidate.is_file():
            raise SpecError(f"pipeline file {str(candidate)!r} does not exist")
        return candidate.resolve()
    path = PIPELINES_DIR / f"{preset_or_path}.yml"
    if not path.is_file():
        raise SpecError(
            f"unknown pipeline {str(preset_or_path)!r}",
            hint=f"choose one of {', '.join(PRESETS)} or give a pipeline YAML file",
        )
    return path


def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        loaded = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise SpecError(f"{path} is not valid YAML: {exc}") from exc
    if not isinstance(loaded, dict):
        raise SpecError(f"{path} must hold a YAML mapping, found {type(loaded).__name__}")
    return loaded


def _port(name: str, raw: Any, where: str) -> Port:
    if not isinstance(raw, dict) or "type" not in raw:
        raise SpecError(f"{where}: port {name!r} needs a mapping with a 'type'")
    port_type = str(raw["type"])
    if port_type not in DATA_TYPES | LITERAL_TYPES:
        raise SpecError(f"{where}: port {name!r} has unknown type {port_type!r}")
    enum = raw.get("enum")
    return Port(
        name=name,
        type=port_type,
        optional=bool(raw.get("optional", False)),
        default=raw.get("default"),
        enum=tuple(str(v) for v in enum) if enum else None,
        min=raw.get("min"),
        max=raw.get("max"),
        description=str(raw.get("description", "")),
    )


def load_component(path: Path) -> Component:
    """Read a command component YAML and check its command refers only to declared ports."""
    raw = _read_yaml(path)
    where = str(path)
    if raw.get("type") != "command" or "command" not in raw:
        raise SpecError(f"{where}: only command components with a 'command' are supported")
    inputs = {name: _port(name, spec, where) for name, spec in (raw.get("inputs") or {}).items()}
    outputs = {name: _port(name, spec, where) for name, spec in (raw.get("outputs") or {}).items()}
    for kind, name in _COMMAND_REF.findall(str(raw["command"])):
        if name not in (inputs if kind == "inputs" else outputs):
            raise SpecError(f"{where}: the command refers to undeclared {kind[:-1]} {name!r}")
    outside_optional = _OPTIONAL_BLOCK.sub("", str(raw["command"]))
    for kind, name in _COMMAND_REF.findall(outside_optional):
        if kind == "inputs" and inputs[name].optional:
            raise SpecError(f"{where}: optional input {name!r} must sit inside $[[...]] in the command")
    return Component(path=path, raw=raw, inputs=inputs, outputs=outputs)


def _binding(value: Any) -> Binding:
    if isinstance(value, dict) and "path" in value:
        value = value["path"]
    if isinstance(value, str):
        if match := _PARENT_INPUT.match(value):
            return Binding("parent", value=match.group(1))
        if match := _STEP_OUTPUT.match(value):
            return Binding("step", step=match.group(1), output=match.group(2))
        if "${{" in value:
            raise SpecError(f"unsupported binding {value!r}: use ${{{{parent.inputs.X}}}} or parent.jobs.S.outputs.Y")
    return Binding("literal", value=value)


def _dependency_order(steps: dict[str, Step], where: str) -> dict[str, Step]:
    ordered: dict[str, Step] = {}
    visiting: set[str] = set()

    def visit(name: str, chain: tuple[str, ...]) -> None:
        if name in ordered:
            return
        if name in visiting:
            raise SpecError(f"{where}: steps form a cycle: {' -> '.join((*chain, name))}")
        visiting.add(name)
        for upstream in sorted(steps[name].upstream):
            visit(upstream, (*chain, name))
        visiting.discard(name)
        ordered[name] = steps[name]

    for name in steps:
        visit(name, ())
    return ordered


def _literal_type(value: Any) -> str:
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    return "string"


def load_pipeline(preset_or_path: str | Path) -> PipelineSpec:
    """Load pipelines/<preset>.yml (or a pipeline YAML file) with its components and check the graph."""
    path = pipeline_path(preset_or_path)
    raw = _read_yaml(path)
    where = str(path)
    if raw.get("type") != "pipeline":
        raise SpecError(f"{where}: expected 'type: pipeline', found {raw.get('type')!r}")
    jobs = raw.get("jobs") or {}
    if not jobs:
        raise SpecError(f"{where}: a pipeline needs at least one step under 'jobs'")

    outputs: dict[str, PipelineOutput] = {}
    for name, spec in (raw.get("outputs") or {}).items():
        spec = spec or {}
        outputs[name] = PipelineOutput(name, str(spec.get("type", "uri_folder")), spec.get("name"))

    steps: dict[str, Step] = {}
    for step_name, node in jobs.items():
        if not isinstance(node, dict) or not isinstance(node.get("component"), str):
            raise SpecError(f"{where}: step {step_name!r} must reference a component file with 'component:'")
        component = load_component((path.parent / node["component"]).resolve())
        bound = {port: _binding(value) for port, value in (node.get("inputs") or {}).items()}
        for port in bound:
            if port not in component.inputs:
                raise SpecError(
                    f"{where}: step {step_name!r} sets unknown input {port!r}",
                    hint=f"{component.name} takes: {', '.join(component.inputs)}",
                )
        for port in component.inputs.values():
            if port.name not in bound and not port.optional and port.default is None:
                raise SpecError(f"{where}: step {step_name!r} leaves required input {port.name!r} unbound")
        promoted: dict[str, str | None] = {}
        for port_name, value in (node.get("outputs") or {}).items():
            if port_name not in component.outputs:
                raise SpecError(f"{where}: step {step_name!r} binds unknown output {port_name!r}")
            match = _PARENT_OUTPUT.match(value) if isinstance(value, str) else None
            if match and match.group(1) not in outputs:
                raise SpecError(f"{where}: step {step_name!r} promotes to undeclared pipeline output {value}")
            promoted[port_name] = match.group(1) if match else None
        for port_name in component.outputs:
            promoted.setdefault(port_name, None)
        compute = node.get("compute")
        compute_match = _PARENT_INPUT.match(compute) if isinstance(compute, str) else None
        steps[step_name] = Step(
            name=step_name,
            component=component,
            inputs=bound,
            outputs=promoted,
            compute=None if compute_match else compute,
            compute_input=compute_match.group(1) if compute_match else None,
            raw=node,
        )

    for step in steps.values():
        for port, binding in step.inputs.items():
            if binding.kind == "step":
                source = steps.get(binding.step)
                if source is None or binding.output not in source.component.outputs:
                    raise SpecError(
                        f"{where}: step {step.name!r} input {port!r} reads "
                        f"{binding.step}.outputs.{binding.output}, which no step produces"
                    )

    inputs = _pipeline_inputs(raw.get("inputs") or {}, steps, where)
    name = path.stem if path.parent == PIPELINES_DIR else str(raw.get("display_name") or path.stem)
    spec = PipelineSpec(name, path, raw, inputs, outputs, _dependency_order(steps, where))
    for item in spec.inputs.values():
        if item.value is not None:
            check_input_value(item, item.value)
    return spec


def _pipeline_inputs(raw_inputs: dict[str, Any], steps: dict[str, Step], where: str) -> dict[str, PipelineInput]:
    feeds: dict[str, list[Port]] = {name: [] for name in raw_inputs}
    computes: set[str] = set()
    for step in steps.values():
        for port, binding in step.inputs.items():
            if binding.kind == "parent":
                if binding.value not in raw_inputs:
                    raise SpecError(
                        f"{where}: step {step.name!r} input {port!r} reads undeclared pipeline input {binding.value!r}"
                    )
                feeds[binding.value].append(step.component.inputs[port])
        if step.compute_input is not None:
            if step.compute_input not in raw_inputs:
                raise SpecError(f"{where}: step {step.name!r} compute reads undeclared input {step.compute_input!r}")
            computes.add(step.compute_input)

    inputs: dict[str, PipelineInput] = {}
    for name, raw in raw_inputs.items():
        ports = tuple(feeds[name])
        if isinstance(raw, dict):
            declared = str(raw.get("type", "uri_folder"))
            value = raw.get("path", raw.get("value"))
        else:
            value = raw
            port_types = {p.type for p in ports}
            if name in computes:
                port_types.add("string")
            if len(port_types) > 1 and port_types != {"integer", "number"}:
                raise SpecError(f"{where}: input {name!r} feeds ports of different types: {sorted(port_types)}")
            # An integer that also feeds a number port must stay an integer.
            declared = "integer" if "integer" in port_types else (port_types.pop() if port_types else "")
            declared = declared or _literal_type(value)
        for fed in ports:
            if (fed.type in DATA_TYPES) != (declared in DATA_TYPES):
                raise SpecError(f"{where}: input {name!r} ({declared}) feeds {fed.name!r} of type {fed.type}")
        inputs[name] = PipelineInput(name, declared, value, ports)
    return inputs


def is_uri(value: str) -> bool:
    """True for a remote data reference (azureml:, azureml://, http(s)://, storage URLs); False for a local path."""
    return value.startswith(_URI_PREFIXES)


def check_uri(value: str) -> None:
    if not any(pattern.match(value) for pattern in _URI_PATTERNS.values()):
        raise SpecError(
            f"malformed data URI {value!r}",
            hint=(
                "use azureml:<asset>:<version>, azureml:<asset>@latest, "
                "azureml://datastores/<store>/paths/<path>, https://..., or a local path"
            ),
        )


def _coerce(item: PipelineInput, text: str) -> Any:
    kind = item.type
    if kind == "integer":
        if not re.fullmatch(r"[+-]?\d+", text.strip()):
            raise SpecError(f"input {item.name!r} takes an integer, got {text!r}")
        return int(text)
    if kind == "number":
        try:
            number = float(text)
        except ValueError:
            raise SpecError(f"input {item.name!r} takes a number, got {text!r}") from None
        if not math.isfinite(number):
            raise SpecError(f"input {item.name!r} takes a finite number, got {text!r}")
        return number
    if kind == "boolean":
        lowered = text.strip().lower()
        if lowered not in ("true", "false"):
            raise SpecError(f"input {item.name!r} takes true or false, got {text!r}")
        return lowered == "true"
    return text


def check_input_value(item: PipelineInput, value: Any) -> None:
    """Enforce the enum/min/max of every component port the input feeds."""
    for port in item.ports:
        if port.enum is not None and str(value) not in port.enum:
            raise SpecError(f"input {item.name!r} must be one of {', '.join(port.enum)}; got {value!r}")
        if port.min is not None and isinstance(value, int | float) and value < port.min:
            raise SpecError(f"input {item.name!r} must be >= {port.min}; got {value!r}")
        if port.max is not None and isinstance(value, int | float) and value > port.max:
            raise SpecError(f"input {item.name!r} must be <= {port.max}; got {value!r}")


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
        value = _coerce(item, text)
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
    value = _coerce(item, text)
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


def render_command(component: Component, inputs: Mapping[str, Any], outputs: Mapping[str, str]) -> str:
    """The component's command with ${{inputs.x}}/${{outputs.y}} replaced, as Azure ML does on a node.

    A `$[[...]]` block is kept only when every input it mentions has a value (Azure ML's optional arguments).
    """

    def has_value(name: str) -> bool:
        value = inputs.get(name, component.inputs[name].default)
        return value is not None and value != ""

    def optional_block(match: re.Match[str]) -> str:
        names = [name for kind, name in _COMMAND_REF.findall(match.group(1)) if kind == "inputs"]
        return match.group(1) if all(has_value(name) for name in names) else ""

    def substitute(match: re.Match[str]) -> str:
        kind, name = match.groups()
        if kind == "outputs":
            return shlex.quote(str(outputs[name]))
        value = inputs.get(name, component.inputs[name].default)
        if value is None:
            raise SpecError(f"component {component.name!r}: input {name!r} has no value")
        return shlex.quote(_format_literal(value))

    text = _OPTIONAL_BLOCK.sub(optional_block, component.command)
    return " ".join(_COMMAND_REF.sub(substitute, text).split())


def _format_literal(value: Any) -> str:
    if isinstance(value, bool):
        return "True" if value else "False"
    return str(value)


def command_argv(command: str, python: str) -> list[str]:
    """Split a rendered command; a leading `python` becomes the given interpreter (the local virtual env)."""
    argv = shlex.split(command)
    if argv and argv[0] in ("python", "python3"):
        argv[0] = python
    return argv


# ------------------------------------------------------------------------------------------------------ rendering
RENDER_HEADER = (
    "# Rendered by azure-dl from {source}: components inlined, code = the staged snapshot. Submit it with\n"
    "# `azure-dl pipeline {name}` (or `az ml job create --file {file}`).\n"
)


def _relative(path: Path, base: Path) -> str:
    """`path` relative to the YAML's folder when inside it (portable), else absolute."""
    path, base = path.resolve(), base.resolve()
    if path == base or base in path.parents:
        return Path(os.path.relpath(path, base)).as_posix()
    return path.as_posix()


def _inline_component(component: Component, out_dir: Path, code_dir: Path, envs: dict[str, Any]) -> dict[str, Any]:
    from azure_dl.environments import environment_spec

    inline = copy.deepcopy(component.raw)
    inline.pop("$schema", None)
    inline["code"] = _relative(code_dir, out_dir)
    environment = inline.get("environment")
    if isinstance(environment, dict) and environment.get("conda_file"):
        # Components name an environments/<name>/conda.yml; the image comes from that folder's environment.yml.
        name = Path(str(environment["conda_file"])).parent.name
        if name not in envs:
            envs[name] = environment_spec(name, copy_to=out_dir / "environments")
        env = envs[name]
        inline["environment"] = {"image": env.image, "conda_file": _relative(Path(env.conda_file), out_dir)}
    return inline


def pipeline_document(spec: PipelineSpec, out_dir: Path, *, code_dir: Path) -> dict[str, Any]:
    """The pipeline job as plain data, self-contained relative to `out_dir` (environments copied there)."""
    document = copy.deepcopy(spec.raw)
    inputs: dict[str, Any] = {}
    for item in spec.inputs.values():
        if item.type not in DATA_TYPES:
            inputs[item.name] = item.value
            continue
        entry: dict[str, Any] = {"type": item.type}
        if item.value is not None:
            text = str(item.value)
            entry["path"] = text if is_uri(text) else _relative(Path(text).expanduser(), out_dir)
        inputs[item.name] = entry
    document["inputs"] = inputs
    environments: dict[str, Any] = {}
    jobs: dict[str, Any] = {}
    for step in spec.steps.values():
        node = copy.deepcopy(step.raw)
        node["component"] = _inline_component(step.component, out_dir, code_dir, environments)
        for port, binding in step.inputs.items():
            if binding.kind == "literal":
                node.setdefault("inputs", {})[port] = binding.value
            elif binding.kind == "parent":  # a file input bound by --input (the YAML's own bindings are kept)
                node.setdefault("inputs", {}).setdefault(port, f"${{{{parent.inputs.{binding.value}}}}}")
        jobs[step.name] = node
    document["jobs"] = jobs
    return document


def write_pipeline_yaml(spec: PipelineSpec, out_dir: Path, *, code_dir: Path, name: str = "pipeline.yml") -> Path:
    """Render DIR/pipeline.yml (what the dry-run shows and the Azure adaptor submits)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    document = pipeline_document(spec, out_dir, code_dir=code_dir)
    body = yaml.safe_dump(document, sort_keys=False, default_flow_style=False, width=100_000, allow_unicode=True)
    source = spec.path.relative_to(PIPELINES_DIR.parent) if PIPELINES_DIR.parent in spec.path.parents else spec.path
    path = out_dir / name
    path.write_text(RENDER_HEADER.format(source=source, name=spec.name, file=name) + body, encoding="utf-8")
    return path


# ----------------------------------------------------------------------------------------------------------- plan
@dataclass(frozen=True)
class StepPlan:
    """One step of the plan: where it runs and the most it can cost (None = unknown)."""

    step: str
    component: str
    compute: str
    vm_size: str | None
    vm_summary: str
    hours: float | None
    price_per_hour: float | None
    cost_bound: float | None


@dataclass(frozen=True)
class PipelinePlan:
    name: str
    experiment: str
    steps: tuple[StepPlan, ...]
    registers: tuple[str, ...]
    region: str = "eastus"
    price_sources: tuple[str, ...] = ()  # where the steps' prices come from, with their dates

    @property
    def cost_bound(self) -> float | None:
        bounds = [step.cost_bound for step in self.steps]
        return None if any(b is None for b in bounds) else sum(b for b in bounds if b is not None)


def _vm_for_compute(compute: str) -> Any:
    """The catalogue size a cluster is named after (azure-dl names one cluster per size), or None."""
    from azure_dl.catalog import list_vm_sizes

    return next((size for size in list_vm_sizes() if size.compute_name == compute), None)


def _timeout_hours(step: Step) -> float | None:
    timeout = (step.raw.get("limits") or {}).get("timeout")
    return float(timeout) / 3600 if isinstance(timeout, int | float) else None


def plan_pipeline(spec: PipelineSpec, *, region: str = "eastus") -> PipelinePlan:
    """Per step: compute, VM size from the catalogue, time limit and cost bound = list price in `region` x limit."""
    steps = []
    sources: set[str] = set()
    for step in spec.steps.values():
        compute = spec.compute_of(step) or "default compute"
        vm = _vm_for_compute(compute.removeprefix("azureml:"))
        hours = _timeout_hours(step)
        quote = vm.price_in(region) if vm is not None else None
        price = quote.per_hour if quote is not None else None
        if quote is not None:
            sources.add(quote.source)
        summary = f"{vm.gpu_summary}, {vm.vcpus} vCPUs" if vm is not None else "unknown (not a catalogue-named cluster)"
        steps.append(
            StepPlan(
                step=step.name,
                component=str(step.component.raw.get("display_name") or step.component.name),
                compute=compute,
                vm_size=vm.name if vm is not None else None,
                vm_summary=summary,
                hours=hours,
                price_per_hour=price,
                cost_bound=price * hours if price is not None and hours is not None else None,
            )
        )
    registers = tuple(o.model_name for o in spec.outputs.values() if o.type == "custom_model" and o.model_name)
    experiment = str(spec.raw.get("experiment_name") or spec.name)
    return PipelinePlan(spec.name, experiment, tuple(steps), registers, region, tuple(sorted(sources)))


def plan_rows(plan: PipelinePlan) -> list[list[str]]:
    def money(value: float | None) -> str:
        return f"{value:.2f} USD" if value is not None else "unknown"

    rows = []
    for step in plan.steps:
        price = f"{step.price_per_hour:.4f}/h" if step.price_per_hour is not None else "unknown"
        hours = f"{step.hours:g} h" if step.hours is not None else "no limit"
        size = f"{step.vm_size} ({step.vm_summary})" if step.vm_size else step.vm_summary
        rows.append([step.step, step.component, step.compute, size, hours, price, money(step.cost_bound)])
    rows.append(["total", "", "", "", "", "", money(plan.cost_bound)])
    return rows


PLAN_COLUMNS = ("step", "component", "compute", "VM size", "time limit", "price (USD)", "cost bound")
