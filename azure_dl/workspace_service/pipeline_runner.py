"""Run a pipeline job: its steps as child command jobs in dependency order, unchanged deterministic steps reused.

Each step becomes a command job built from its component (command, code, environment, declared outputs) with the
inputs `pipeline_graph.resolve_inputs` binds. A step whose component is deterministic and whose component content
and resolved inputs match a step that completed before (in any pipeline of this workspace) is not run: its child
job is recorded as Completed and reused, with the properties Azure ML sets on a reused node
(`azureml.isreused`, `azureml.reusedrunid`), and later steps read the outputs of the job it reuses. Ready steps
are launched together; the command-job queue decides how many run at once. With
`settings.continue_on_step_failure` false (the default) a failed step cancels the steps still running and the
pipeline is Failed naming it.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from azure_dl.workspace_service import pipeline_graph
from azure_dl.workspace_service.child_jobs import TERMINAL, ChildJobs
from azure_dl.workspace_service.context import ServiceContext

REUSE_KIND = "step_reuse"
_MODES = {"rw_mount": "ReadWriteMount", "upload": "Upload", "direct": "Direct", "ro_mount": "ReadOnlyMount"}


@dataclass
class StepRun:
    child: str
    state: str  # "running", "ran", "reused", "failed", "canceled", "skipped"
    reused_from: str | None = None


@dataclass
class PipelineOutcome:
    status: str  # Completed, Failed or Canceled
    error: str | None = None
    steps: dict[str, StepRun] = field(default_factory=dict)
    outputs: dict[str, str] = field(default_factory=dict)  # pipeline output -> the URI its step wrote


def _strip_azureml(value: Any) -> Any:
    # Component specs name assets as "azureml:/subscriptions/..."; a job names them by the bare ARM id.
    return value[len("azureml:") :] if isinstance(value, str) and value.startswith("azureml:/") else value


def _distribution(spec: dict[str, Any]) -> dict[str, Any] | None:
    distribution = spec.get("distribution")
    if not isinstance(distribution, dict):
        return None
    kind = str(distribution.get("type", "")).lower()
    names = {"pytorch": "PyTorch", "mpi": "Mpi", "tensorflow": "TensorFlow"}
    rest: dict[str, Any] = {"distributionType": names.get(kind, kind)}
    if "process_count_per_instance" in distribution:
        rest["processCountPerInstance"] = int(distribution["process_count_per_instance"])
    return rest


def child_properties(
    context: ServiceContext,
    parent: dict[str, Any],
    step: pipeline_graph.Step,
    inputs: dict[str, dict[str, Any]],
    compute: str | None,
) -> dict[str, Any]:
    """The REST properties of the command job that runs `step`."""
    spec = step.spec
    outputs = {
        name: {
            "jobOutputType": str(declared.get("type", "uri_folder")),
            "mode": _MODES.get(declared.get("mode"), "ReadWriteMount"),
        }
        for name, declared in (spec.get("outputs") or {}).items()
    }
    compute = compute or parent.get("computeId") or (parent.get("settings") or {}).get("default_compute")
    if compute and "/" not in compute:
        compute = f"{context.workspace_id}/computes/{compute}"
    properties: dict[str, Any] = {
        "jobType": "Command",
        "displayName": step.name,
        "experimentName": parent.get("experimentName") or "Default",
        "command": spec["command"],
        "codeId": _strip_azureml(spec.get("code")),
        "environmentId": _strip_azureml(spec.get("environment")),
        "environmentVariables": spec.get("environment_variables") or {},
        "inputs": inputs,
        "outputs": outputs,
        "computeId": compute,
        "properties": {"azureml.nodeid": step.name, "azureml.pipeline": "true"},
        "tags": {},
    }
    if (distribution := _distribution(spec)) is not None:
        properties["distribution"] = distribution
    resources = spec.get("resources") or {}
    if "instance_count" in resources:
        properties["resources"] = {"instanceCount": int(resources["instance_count"])}
    if step.limits.get("timeout"):
        properties["limits"] = {"jobLimitsType": "Command", "timeout": step.limits["timeout"]}
    return properties


def _reusable(context: ServiceContext, children: ChildJobs, key: str) -> dict[str, Any] | None:
    entry = context.store.get(REUSE_KIND, key)
    if entry is None:
        return None
    try:
        completed = children.status(entry["job"]) == "Completed"
    except Exception:  # the job it names is gone: run the step again
        return None
    return entry if completed else None


def run_pipeline(
    context: ServiceContext,
    name: str,
    properties: dict[str, Any],
    children: ChildJobs,
    *,
    cancelled: Callable[[], bool],
    log: Callable[[str], None],
    poll_s: float = 0.5,
) -> PipelineOutcome:
    """Run every step to the end (or the first failure) and say how the pipeline ended."""
    steps = pipeline_graph.parse(context, properties)
    parent_inputs = properties.get("inputs") or {}
    keep_going = bool((properties.get("settings") or {}).get("continue_on_step_failure", False))
    outcome = PipelineOutcome(status="Completed")
    step_outputs: dict[str, dict[str, str]] = {}
    keys: dict[str, str] = {}
    pending = {step.name: step for step in steps}
    log(f"pipeline {name}: {len(steps)} step(s): {', '.join(step.name for step in steps)}")
    while pending or any(run.state == "running" for run in outcome.steps.values()):
        if cancelled():
            for run in outcome.steps.values():
                if run.state == "running":
                    children.cancel(run.child)
                    run.state = "canceled"
            outcome.status, outcome.error = "Canceled", "the pipeline was canceled"
            return outcome
        for step in [s for s in steps if s.name in pending]:
            upstream_states = {outcome.steps[u].state for u in step.upstream if u in outcome.steps}
            if upstream_states & {"failed", "canceled", "skipped"}:
                outcome.steps[step.name] = StepRun(child="", state="skipped")
                del pending[step.name]
                log(f"step {step.name}: skipped (a step it reads from did not complete)")
                continue
            if not all(u in outcome.steps and outcome.steps[u].state in ("ran", "reused") for u in step.upstream):
                continue
            del pending[step.name]
            _start(context, name, properties, step, parent_inputs, step_outputs, children, outcome, keys, log)
        for step_name, run in list(outcome.steps.items()):
            if run.state != "running":
                continue
            status = children.status(run.child)
            if status not in TERMINAL:
                continue
            if status == "Completed":
                run.state = "ran"
                step_outputs[step_name] = _outputs_of(children, run.child, steps, step_name)
                if keys.get(step_name):
                    context.store.put(REUSE_KIND, keys[step_name], {"job": run.child, "step": step_name})
                log(f"step {step_name}: completed (job {run.child})")
            else:
                run.state = "failed" if status == "Failed" else "canceled"
                error = children.error(run.child) or status
                log(f"step {step_name}: {status.lower()} (job {run.child}): {error}")
                if outcome.status == "Completed":
                    outcome.status, outcome.error = "Failed", f"step {step_name} {status.lower()}: {error}"
                if not keep_going:
                    _stop_the_rest(children, outcome, pending, log)
        if pending or any(run.state == "running" for run in outcome.steps.values()):
            time.sleep(poll_s)
    for step in steps:
        for port, pipeline_output in step.output_bindings.items():
            if outcome.steps[step.name].state in ("ran", "reused"):
                outcome.outputs[pipeline_output] = step_outputs[step.name][port]
    return outcome


def _outputs_of(children: ChildJobs, child: str, steps: list[pipeline_graph.Step], step_name: str) -> dict[str, str]:
    step = next(s for s in steps if s.name == step_name)
    return {port: children.output_uri(child, port) for port in (step.spec.get("outputs") or {})}


def _start(
    context: ServiceContext,
    name: str,
    properties: dict[str, Any],
    step: pipeline_graph.Step,
    parent_inputs: dict[str, Any],
    step_outputs: dict[str, dict[str, str]],
    children: ChildJobs,
    outcome: PipelineOutcome,
    keys: dict[str, str],
    log: Callable[[str], None],
) -> None:
    inputs = pipeline_graph.resolve_inputs(step, parent_inputs, step_outputs)
    compute = pipeline_graph.resolve_compute(step, parent_inputs)
    child_props = child_properties(context, properties, step, inputs, compute)
    child = str(uuid.uuid4())
    key = pipeline_graph.reuse_key(step, inputs) if step.deterministic else ""
    keys[step.name] = key
    entry = _reusable(context, children, key) if key else None
    if entry is not None:
        source = entry["job"]
        children.record_reused(child, child_props, parent=name, reused_from=source)
        outcome.steps[step.name] = StepRun(child=child, state="reused", reused_from=source)
        step_outputs[step.name] = {port: children.output_uri(source, port) for port in (step.spec.get("outputs") or {})}
        log(f"step {step.name}: reused (job {source}: same component and inputs)")
        return
    children.launch(child, child_props, parent=name)
    outcome.steps[step.name] = StepRun(child=child, state="running")
    log(f"step {step.name}: started (job {child})")


def _stop_the_rest(
    children: ChildJobs, outcome: PipelineOutcome, pending: dict[str, pipeline_graph.Step], log: Callable[[str], None]
) -> None:
    for step_name, run in outcome.steps.items():
        if run.state == "running":
            children.cancel(run.child)
            run.state = "canceled"
            log(f"step {step_name}: canceled (an earlier step failed)")
    for step_name in list(pending):
        outcome.steps[step_name] = StepRun(child="", state="skipped")
        del pending[step_name]
