"""Pipeline definitions in pipelines/: the graph as data (ports, components, steps, inputs), loaded and checked.

The YAML files are Azure ML CLI v2 documents (a `type: pipeline` job whose steps reference command components);
this module reads them as plain data, SDK-free, so the local runner, the dry-run renderer and the Azure adaptor
all work from the same graph. Pipeline job inputs are literals in that format, so an input's declared type is
the type of the component inputs it is bound to (or the data type it states). Setting inputs from the command
line is pipeline_inputs.py; rendering DIR/pipeline.yml is pipeline_render.py; the cost plan is pipeline_plan.py.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
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
COMMAND_REF = re.compile(r"\$\{\{\s*(inputs|outputs)\.([A-Za-z_]\w*)\s*\}\}")
OPTIONAL_BLOCK = re.compile(r"\$\[\[(.*?)\]\]", re.DOTALL)

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
    for kind, name in COMMAND_REF.findall(str(raw["command"])):
        if name not in (inputs if kind == "inputs" else outputs):
            raise SpecError(f"{where}: the command refers to undeclared {kind[:-1]} {name!r}")
    outside_optional = OPTIONAL_BLOCK.sub("", str(raw["command"]))
    for kind, name in COMMAND_REF.findall(outside_optional):
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


def coerce_input(item: PipelineInput, text: str) -> Any:
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
