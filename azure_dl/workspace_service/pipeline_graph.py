"""A pipeline job's steps as a graph: bindings checked at PUT time, steps ordered, each step made a command job.

The wire form is what azure-ai-ml sends (captured from `azure-dl pipeline lstm` against this service, and the
shape of the recorded pipeline PUTs in Azure/azure-sdk-assets recordings/pipeline_job/): `properties.jobs` maps a
step name to `{"type": "command", "componentId": ..., "computeId": ..., "inputs": {NAME: {"value":
"${{parent.inputs.X}}" | "${{parent.jobs.S.outputs.O}}" | a literal, "job_input_type": "literal"}}, "outputs":
{NAME: {"value": "${{parent.outputs.P}}"}}, "limits": ...}`; the pipeline's own inputs are ordinary job inputs
(`jobInputType` literal / uri_file / uri_folder). A step's command, code, environment and declared inputs and
outputs come from its component's `componentSpec` (components.py).
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field
from typing import Any

from azure_dl.workspace_service import components
from azure_dl.workspace_service.context import ServiceContext
from azure_dl.workspace_service.http import ApiError

_PARENT_INPUT = re.compile(r"^\$\{\{parent\.inputs\.(\w+)\}\}$")
_STEP_OUTPUT = re.compile(r"^\$\{\{parent\.jobs\.(\w+)\.outputs\.(\w+)\}\}$")
_PARENT_OUTPUT = re.compile(r"^\$\{\{parent\.outputs\.(\w+)\}\}$")
_ANY_BINDING = re.compile(r"\$\{\{[^}]*\}\}")
URI_TYPES = ("uri_file", "uri_folder", "custom_model", "mlflow_model", "mltable")


@dataclass
class Step:
    """One step: its component, what each input is bound to, and which pipeline outputs its outputs feed."""

    name: str
    component_id: str
    spec: dict[str, Any]
    compute: str | None
    inputs: dict[str, Any]  # input name -> a binding string or a literal value
    output_bindings: dict[str, str] = field(default_factory=dict)  # step output -> pipeline output
    limits: dict[str, Any] = field(default_factory=dict)
    upstream: set[str] = field(default_factory=set)

    @property
    def deterministic(self) -> bool:
        return str(self.spec.get("is_deterministic", True)).lower() != "false"


def _value(entry: Any) -> Any:
    return entry.get("value", entry.get("uri")) if isinstance(entry, dict) else entry


def _bad(step: str, message: str) -> ApiError:
    return ApiError(400, "UserError", f"pipeline step '{step}': {message}")


def parse(context: ServiceContext, properties: dict[str, Any]) -> list[Step]:
    """The steps in an order that runs every step after the steps it reads from; a 400 for any bad binding."""
    jobs = properties.get("jobs")
    if not isinstance(jobs, dict) or not jobs:
        raise ApiError(400, "UserError", "a pipeline job needs at least one step in properties.jobs")
    parent_inputs = properties.get("inputs") or {}
    parent_outputs = properties.get("outputs") or {}
    steps: dict[str, Step] = {}
    for name, node in jobs.items():
        if not isinstance(node, dict):
            raise _bad(name, "is not an object")
        if node.get("type") != "command":
            raise ApiError(
                501,
                "NotImplemented",
                f"pipeline step '{name}' is a {node.get('type')!r} node; the local workspace service runs command "
                "steps only (sweep, parallel, spark, pipeline-component and control-flow nodes are not implemented)",
            )
        component = components.find(context, str(node.get("componentId") or ""))
        if component is None:
            raise _bad(name, f"component {node.get('componentId')!r} does not exist in this workspace")
        spec = component["properties"]["componentSpec"]
        step = Step(
            name=name,
            component_id=str(node["componentId"]),
            spec=spec,
            compute=node.get("computeId"),
            inputs={key: _value(entry) for key, entry in (node.get("inputs") or {}).items()},
            limits=node.get("limits") or {},
        )
        declared = spec.get("inputs") or {}
        for key in step.inputs:
            if key not in declared:
                raise _bad(name, f"input '{key}' is not an input of its component (it has {', '.join(declared)})")
        for key, entry in (node.get("outputs") or {}).items():
            match = _PARENT_OUTPUT.match(str(_value(entry)))
            if key not in (spec.get("outputs") or {}):
                raise _bad(name, f"output '{key}' is not an output of its component")
            if match:
                if match.group(1) not in parent_outputs:
                    target = match.group(1)
                    raise _bad(name, f"output '{key}' is bound to pipeline output '{target}', which is not declared")
                step.output_bindings[key] = match.group(1)
        steps[name] = step
    for step in steps.values():
        for key, bound in [*step.inputs.items(), ("compute", step.compute)]:
            text = str(bound) if bound is not None else ""
            if (match := _PARENT_INPUT.match(text)) is not None:
                if match.group(1) not in parent_inputs:
                    raise _bad(step.name, f"{key} is bound to pipeline input '{match.group(1)}', which is not declared")
            elif (match := _STEP_OUTPUT.match(text)) is not None:
                source, output = match.groups()
                if source not in steps:
                    raise _bad(step.name, f"{key} reads step '{source}', which is not in this pipeline")
                if output not in (steps[source].spec.get("outputs") or {}):
                    raise _bad(step.name, f"{key} reads output '{output}' of step '{source}', which it does not have")
                step.upstream.add(source)
            elif _ANY_BINDING.search(text):
                raise ApiError(
                    501, "NotImplemented", f"pipeline step '{step.name}': the binding {text!r} is not implemented"
                )
        for key, declared in (step.spec.get("inputs") or {}).items():
            optional = str(declared.get("optional", False)).lower() == "true"
            if key not in step.inputs and "default" not in declared and not optional:
                raise _bad(step.name, f"required input '{key}' is not bound")
    return _ordered(steps)


def _ordered(steps: dict[str, Step]) -> list[Step]:
    ordered: list[Step] = []
    done: set[str] = set()
    while len(ordered) < len(steps):
        ready = [s for s in steps.values() if s.name not in done and s.upstream <= done]
        if not ready:
            cycle = sorted(name for name in steps if name not in done)
            raise ApiError(400, "UserError", f"pipeline steps {', '.join(cycle)} depend on each other in a cycle")
        for step in ready:  # declaration order among the steps that are ready
            ordered.append(step)
            done.add(step.name)
    return ordered


def resolve_inputs(
    step: Step, parent_inputs: dict[str, Any], step_outputs: dict[str, dict[str, str]]
) -> dict[str, dict[str, Any]]:
    """The step's inputs as command-job inputs: pipeline inputs and upstream outputs put in, defaults filled."""
    declared = step.spec.get("inputs") or {}
    resolved: dict[str, dict[str, Any]] = {}
    for key, spec in declared.items():
        kind = str(spec.get("type", "string"))
        if key in step.inputs:
            bound = step.inputs[key]
            text = str(bound)
            if (match := _PARENT_INPUT.match(text)) is not None:
                source = parent_inputs.get(match.group(1))
                if source is None or (isinstance(source, dict) and _value(source) is None):
                    continue  # an unset optional pipeline input: the step's $[[...]] block drops out
                entry = dict(source) if isinstance(source, dict) else {"jobInputType": "literal", "value": source}
            elif (match := _STEP_OUTPUT.match(text)) is not None:
                entry = {"jobInputType": "uri_folder", "uri": step_outputs[match.group(1)][match.group(2)]}
            else:
                entry = {"jobInputType": "literal", "value": bound}
        elif "default" in spec:
            entry = {"jobInputType": "literal", "value": spec["default"]}
        else:
            continue
        if kind in URI_TYPES and entry.get("jobInputType") == "literal" and isinstance(entry.get("value"), str):
            entry = {"jobInputType": kind, "uri": entry["value"]}  # a path given as a literal string
        resolved[key] = entry
    return resolved


def resolve_compute(step: Step, parent_inputs: dict[str, Any]) -> str | None:
    text = str(step.compute or "")
    match = _PARENT_INPUT.match(text)
    if match is not None:
        text = str(_value(parent_inputs.get(match.group(1))) or "")
    return text or None


def reuse_key(step: Step, inputs: dict[str, dict[str, Any]]) -> str:
    """What decides reuse: the component's content and the resolved inputs. Not the compute or the limits (a
    step's result does not depend on where it ran), and not the component's name (anonymous ones differ per run).
    """
    spec = {key: value for key, value in step.spec.items() if key not in ("name", "version", "display_name")}
    document = {"spec": spec, "inputs": inputs}
    return hashlib.sha256(json.dumps(document, sort_keys=True, default=str).encode()).hexdigest()
