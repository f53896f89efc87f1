"""Run a sweep job: its trials as child command jobs `{sweep}_{n}`, at most `maxConcurrentTrials` at a time.

The trials' parameters come from `sweep_sampling`; each child is the sweep's `trial` command with
`${{search_space.NAME}}` replaced, the sweep's inputs, compute and experiment. While trials run, the early-termination
policy is applied to the primary metric each trial has logged (read through MLflow, `ChildJobs.metric_history`);
a stopped trial is Canceled, as Azure ML marks it. When every trial has ended (or `limits.timeout` passed), the best
trial is the one whose last logged primary-metric value is best for the goal, recorded on the sweep as Azure ML
records it (`properties.best_child_run_id`, `score`, `best_metric_status`).
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from azure_dl.workspace_service import early_termination, sweep_sampling
from azure_dl.workspace_service.child_jobs import TERMINAL, ChildJobs
from azure_dl.workspace_service.context import ServiceContext
from azure_dl.workspace_service.http import ApiError

_DURATION = re.compile(r"^P(?:(\d+)D)?(?:T(?:(\d+)H)?(?:(\d+)M)?(?:(\d+(?:\.\d+)?)S)?)?$")


def duration_s(text: Any) -> float | None:
    """An ISO 8601 duration (`PT5M`, `P1DT2H`) in seconds; None when absent; a 400 when unreadable."""
    if text in (None, ""):
        return None
    match = _DURATION.match(str(text))
    if match is None:
        raise ApiError(400, "UserError", f"{text!r} is not an ISO 8601 duration such as PT30M")
    days, hours, minutes, seconds = (float(group) if group else 0.0 for group in match.groups())
    return days * 86400 + hours * 3600 + minutes * 60 + seconds


@dataclass
class Trial:
    child: str
    parameters: dict[str, Any]
    state: str = "waiting"  # waiting, running, Completed, Failed, Canceled, early-terminated
    score: float | None = None


@dataclass
class SweepPlan:
    trials: list[Trial]
    metric: str
    goal: str
    concurrency: int
    policy: dict[str, Any] | None
    timeout_s: float | None
    note: str | None


@dataclass
class SweepOutcome:
    status: str
    error: str | None = None
    trials: list[Trial] = field(default_factory=list)
    best: Trial | None = None


def plan(name: str, properties: dict[str, Any]) -> SweepPlan:
    """The sweep's trials and rules, checked (a 400 for anything Azure ML would refuse)."""
    limits = properties.get("limits") or {}
    objective = properties.get("objective") or {}
    metric, goal = objective.get("primaryMetric"), str(objective.get("goal", "")).lower()
    if not metric or goal not in ("maximize", "minimize"):
        raise ApiError(400, "UserError", "a sweep needs objective.primaryMetric and objective.goal maximize|minimize")
    trial = properties.get("trial")
    if not isinstance(trial, dict) or not str(trial.get("command") or "").strip():
        raise ApiError(400, "UserError", "a sweep needs a trial with a command")
    total = int(limits.get("maxTotalTrials") or 1)
    parameters, note = sweep_sampling.trial_parameters(
        name, properties.get("searchSpace"), properties.get("samplingAlgorithm"), total
    )
    concurrency = int(limits.get("maxConcurrentTrials") or total)
    if concurrency < 1:
        raise ApiError(400, "UserError", f"limits.maxConcurrentTrials must be >= 1, got {concurrency}")
    return SweepPlan(
        trials=[Trial(child=f"{name}_{index}", parameters=values) for index, values in enumerate(parameters)],
        metric=str(metric),
        goal=goal,
        concurrency=concurrency,
        policy=early_termination.check_policy(properties.get("earlyTermination")),
        timeout_s=duration_s(limits.get("timeout")),
        note=note,
    )


def trial_properties(context: ServiceContext, sweep: dict[str, Any], trial: Trial) -> dict[str, Any]:
    """The REST properties of the command job that runs one trial."""
    body = sweep["trial"]
    properties: dict[str, Any] = {
        "jobType": "Command",
        "displayName": trial.child,
        "experimentName": sweep.get("experimentName") or "Default",
        "command": sweep_sampling.substitute(body["command"], trial.parameters),
        "codeId": body.get("codeId"),
        "environmentId": body.get("environmentId"),
        "environmentVariables": body.get("environmentVariables") or {},
        "inputs": sweep.get("inputs") or {},
        "outputs": {
            name: {k: v for k, v in out.items() if k != "uri"} for name, out in (sweep.get("outputs") or {}).items()
        },
        "computeId": sweep.get("computeId"),
        "properties": {"azureml.sweep": "true", "_aml_system_hyperparameters": repr(trial.parameters)},
        "tags": {f"hyperparameter.{key}": str(value) for key, value in trial.parameters.items()},
    }
    for key in ("distribution", "resources"):
        if body.get(key) or sweep.get(key):
            properties[key] = body.get(key) or sweep.get(key)
    trial_timeout = (sweep.get("limits") or {}).get("trialTimeout")
    if trial_timeout:
        properties["limits"] = {"jobLimitsType": "Command", "timeout": trial_timeout}
    return properties


def run_sweep(
    context: ServiceContext,
    name: str,
    properties: dict[str, Any],
    children: ChildJobs,
    *,
    cancelled: Callable[[], bool],
    log: Callable[[str], None],
    poll_s: float = 0.5,
    clock: Callable[[], float] = time.monotonic,
) -> SweepOutcome:
    sweep = plan(name, properties)
    if sweep.note:
        log(f"note: {sweep.note}")
    log(f"sweep {name}: {len(sweep.trials)} trial(s), {sweep.concurrency} at a time, {sweep.goal} {sweep.metric}")
    started = clock()
    evaluated: dict[str, int] = {}
    outcome = SweepOutcome(status="Completed", trials=sweep.trials)
    while True:
        running = [t for t in sweep.trials if t.state == "running"]
        timed_out = sweep.timeout_s is not None and clock() - started > sweep.timeout_s
        if cancelled() or timed_out:
            for trial in running:
                children.cancel(trial.child)
                trial.state = "Canceled"
            for trial in sweep.trials:
                if trial.state == "waiting":
                    trial.state = "not started"
            if cancelled():
                outcome.status, outcome.error = "Canceled", "the sweep was canceled"
                return outcome
            log(f"sweep {name}: limits.timeout reached; running trials were canceled")
            break
        for trial in running:
            status = children.status(trial.child)
            if status in TERMINAL:
                trial.state = status
                log(f"trial {trial.child}: {status.lower()} {trial.parameters}")
        running = [t for t in sweep.trials if t.state == "running"]
        if sweep.policy is not None and running:
            histories = {
                t.child: children.metric_history(t.child, sweep.metric) for t in sweep.trials if t.state != "waiting"
            }
            for child in early_termination.to_cancel(
                sweep.policy, sweep.goal, histories, {t.child for t in running}, evaluated
            ):
                trial = next(t for t in running if t.child == child)
                children.cancel(child)
                trial.state = "early-terminated"
                log(f"trial {child}: stopped by the {sweep.policy['policyType']} policy")
        running = [t for t in sweep.trials if t.state == "running"]
        for trial in [t for t in sweep.trials if t.state == "waiting"][: max(0, sweep.concurrency - len(running))]:
            children.launch(trial.child, trial_properties(context, properties, trial), parent=name)
            trial.state = "running"
            log(f"trial {trial.child}: started {trial.parameters}")
        if all(t.state not in ("waiting", "running") for t in sweep.trials):
            break
        time.sleep(poll_s)
    for trial in sweep.trials:
        history = children.metric_history(trial.child, sweep.metric) if trial.state != "not started" else []
        trial.score = history[-1] if history else None
    scored = [t for t in sweep.trials if t.score is not None]
    if scored:
        pick = max if sweep.goal == "maximize" else min
        outcome.best = pick(scored, key=lambda t: float(t.score or 0.0))
        log(f"best trial: {outcome.best.child} {sweep.metric}={outcome.best.score} {outcome.best.parameters}")
    elif all(t.state == "Failed" for t in sweep.trials):
        outcome.status, outcome.error = "Failed", f"every trial failed (e.g. {children.error(sweep.trials[0].child)})"
    else:
        outcome.status, outcome.error = "Failed", f"no trial logged the primary metric {sweep.metric!r}"
    return outcome


def best_properties(outcome: SweepOutcome) -> dict[str, str]:
    """What Azure ML's sweep records about its best trial (the properties of a finished HyperDrive run)."""
    if outcome.best is None:
        return {}
    return {
        "best_child_run_id": outcome.best.child,
        "score": str(outcome.best.score),
        "best_metric_status": "Succeeded",
    }
