"""Sweep and pipeline jobs: their trials and steps run as child command jobs on the service's job runner.

A parent job is a record of kind "jobs" like a command job, run by a thread instead of a process: the thread
drives `sweep_runner.run_sweep` or `pipeline_runner.run_pipeline` through `RunnerChildren` (the `ChildJobs`
protocol on the job runner, the store and MLflow), writes the parent's log where `jobs.stream` looks for it
(a pipeline's logs/azureml/executionlogs.txt, a sweep's azureml-logs/hyperdrive.txt, as Azure ML names them), and
ends the parent Completed, Failed or Canceled. Children are records with a `parent`; run history lists them
(runs/{parent}/children), the workspace's job list leaves them out. A sweep records its best trial in its
properties (`best_child_run_id`, `score`), as HyperDrive does; a pipeline's named `custom_model` outputs are
registered as model versions when it completes, as Azure ML does.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

from azure_dl.workspace_service import mlflow_front, models, pipeline_graph, pipeline_runner, sweep_runner
from azure_dl.workspace_service.child_jobs import TERMINAL
from azure_dl.workspace_service.context import ServiceContext
from azure_dl.workspace_service.job_command import check_compute, output_uris
from azure_dl.workspace_service.job_runner import KIND, JobRunner, LogWriter, artifact_prefix, now

PARENT_TYPES = ("Sweep", "Pipeline")
LOG_NAMES = {"Pipeline": "logs/azureml/executionlogs.txt", "Sweep": "azureml-logs/hyperdrive.txt"}
_MODEL_OUTPUT_TYPES = ("custom_model", "mlflow_model", "triton_model")


class RunnerChildren:
    """`child_jobs.ChildJobs` on the job runner: children are command jobs with a `parent` in their record."""

    def __init__(self, context: ServiceContext, runner: JobRunner) -> None:
        self.context = context
        self.runner = runner

    def _record(self, name: str) -> dict[str, Any]:
        record = self.context.store.get(KIND, name)
        if record is None:
            raise KeyError(f"child job {name} has no record")
        return record

    def launch(self, name: str, properties: dict[str, Any], *, parent: str) -> None:
        record = {"name": name, "properties": properties, "status": "Queued", "createdAt": now(), "error": None}
        self.context.store.put(KIND, name, {**record, "parent": parent})
        self.runner.submit(name)

    def record_reused(self, name: str, properties: dict[str, Any], *, parent: str, reused_from: str) -> None:
        source = self._record(reused_from)
        root = source.get("parent") or reused_from
        reused = {
            **(properties.get("properties") or {}),
            # What Azure ML records on a reused pipeline node.
            "azureml.isreused": "true",
            "azureml.reusedrunid": reused_from,
            "azureml.reusedpipelinerunid": str(root),
            "azureml.reusednodeid": str((source["properties"].get("properties") or {}).get("azureml.nodeid", "")),
            "azureml.rootpipelinerunid": parent,
        }
        stamp = now()
        record = {
            "name": name,
            "properties": {**properties, "properties": reused, "outputs": source["properties"].get("outputs") or {}},
            "status": "Completed",
            "createdAt": stamp,
            "startTime": stamp,
            "endTime": stamp,
            "error": None,
            "parent": parent,
            # Its outputs are the reused job's: output_uri answers with those.
            "reusedFrom": reused_from,
        }
        self.context.store.put(KIND, name, record)

    def status(self, name: str) -> str:
        return str(self._record(name)["status"])

    def cancel(self, name: str) -> None:
        if self.status(name) not in TERMINAL:
            self.runner.cancel(name)

    def output_uri(self, name: str, output: str) -> str:
        record = self._record(name)
        owner = str(record.get("reusedFrom") or name)
        uris = output_uris(self.context, owner, self._record(owner)["properties"])
        if output not in uris:
            raise KeyError(f"job {owner} has no output {output!r}")
        return str(uris[output]["uri"])

    def error(self, name: str) -> str | None:
        error = self._record(name).get("error")
        return str(error.get("message")) if isinstance(error, dict) and error.get("message") else None

    def metric_history(self, name: str, metric: str) -> list[float]:
        try:
            server = mlflow_front.tracking(self.context).server
            answer = server.call("GET", f"metrics/get-history?run_id={quote(name)}&metric_key={quote(metric)}")
        except Exception:  # no run (the trial logged nothing) or no tracking: no history
            return []
        points = sorted(answer.get("metrics") or [], key=lambda m: (int(m.get("step", 0)), int(m["timestamp"])))
        return [float(point["value"]) for point in points]


def check(context: ServiceContext, name: str, properties: dict[str, Any]) -> None:
    """Refuse (400/501 ApiError) what the runners would refuse, before the PUT is accepted."""
    if properties["jobType"] == "Sweep":
        sweep_runner.plan(name, properties)
        return
    parent_inputs = properties.get("inputs") or {}
    default = properties.get("computeId") or (properties.get("settings") or {}).get("default_compute")
    for step in pipeline_graph.parse(context, properties):
        check_compute(
            context, f"{name} step {step.name}", pipeline_graph.resolve_compute(step, parent_inputs) or default
        )


def start(context: ServiceContext, runner: JobRunner, name: str) -> threading.Thread:
    """Run parent job `name` (already stored, Queued) in a thread of its own."""
    thread = threading.Thread(target=_run, args=(context, runner, name), name=f"parent-{name}", daemon=True)
    thread.start()
    return thread


def _run(context: ServiceContext, runner: JobRunner, name: str) -> None:
    record = runner.update(name, status="Running", startTime=now())
    properties = record["properties"]
    job_type = properties["jobType"]
    log_writer = LogWriter(runner.blobs, f"{artifact_prefix(name)}/{LOG_NAMES[job_type]}")

    def log(line: str) -> None:
        log_writer.write(f"{datetime.now(UTC):%Y-%m-%d %H:%M:%S} {line}\n".encode())

    def cancelled() -> bool:
        return runner.is_canceled(name)

    children = RunnerChildren(context, runner)
    try:
        if job_type == "Sweep":
            _finish_sweep(
                runner,
                name,
                log,
                sweep_runner.run_sweep(context, name, properties, children, cancelled=cancelled, log=log),
            )
        else:
            outcome = pipeline_runner.run_pipeline(context, name, properties, children, cancelled=cancelled, log=log)
            if outcome.status == "Completed":
                _register_model_outputs(context, name, properties, outcome.outputs, log)
            _end(runner, name, outcome.status, outcome.error, log)
    except Exception as exc:  # a bug or a bad record must end the parent, not leave it Running
        log(f"the local service could not run {name}: {type(exc).__name__}: {exc}")
        _end(runner, name, "Failed", f"{type(exc).__name__}: {exc}", log, code="ServiceError")
    finally:
        log_writer.close()


def _finish_sweep(runner: JobRunner, name: str, log: Callable[[str], None], outcome: sweep_runner.SweepOutcome) -> None:
    best = sweep_runner.best_properties(outcome)
    if best:
        record = runner.context.store.get(KIND, name) or {}
        job_properties = {**(record["properties"].get("properties") or {}), **best}
        runner.update(name, properties={**record["properties"], "properties": job_properties})
    _end(runner, name, outcome.status, outcome.error, log)


def _end(
    runner: JobRunner,
    name: str,
    status: str,
    error: str | None,
    log: Callable[[str], None],
    *,
    code: str = "UserError",
) -> None:
    log(f"{name}: {status}" + (f": {error}" if error else ""))
    runner.update(
        name,
        status=status,
        endTime=now(),
        error={"code": code, "message": error} if error and status == "Failed" else None,
    )


def _register_model_outputs(
    context: ServiceContext,
    name: str,
    properties: dict[str, Any],
    produced: dict[str, str],
    log: Callable[[str], None],
) -> None:
    for output, spec in (properties.get("outputs") or {}).items():
        if not isinstance(spec, dict) or str(spec.get("jobOutputType", "")).lower() not in _MODEL_OUTPUT_TYPES:
            continue
        if output not in produced:
            log(f"output {output}: no step wrote it, so no model was registered")
            continue
        model_name = str(spec.get("assetName") or f"azureml_{name}_output_{output}")
        version = models.register_job_output(
            context, model_name, produced[output], job_name=name, model_type=str(spec["jobOutputType"]).lower()
        )
        log(f"output {output}: registered model {model_name}:{version}")


def children_of(context: ServiceContext, parent: str) -> list[dict[str, Any]]:
    """The child records of `parent`, oldest first."""
    records = [record for record in context.store.list(KIND) if record.get("parent") == parent]
    return sorted(records, key=lambda record: record["createdAt"])
