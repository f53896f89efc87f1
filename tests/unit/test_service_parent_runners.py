"""The pipeline and sweep runners of the local service, against a fake of the command-job machinery."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from azure_dl.workspace_service import pipeline_runner, sweep_runner
from azure_dl.workspace_service.context import ServiceContext
from tests.service_fakes import WS, FakeChildren, component, literal, service_context


def _pipeline(context: ServiceContext) -> dict[str, Any]:
    prepare = component(context, "p", {"data": {"type": "uri_file"}}, {"prepared": {"type": "uri_folder"}})
    train = component(
        context, "t", {"data": {"type": "uri_folder"}}, {"model": {"type": "uri_folder", "mode": "rw_mount"}}
    )
    return {
        "jobType": "Pipeline",
        "experimentName": "exp",
        "inputs": {
            "data": {
                "uri": "azureml://datastores/workspaceblobstore/paths/LocalUpload/h/d.csv",
                "jobInputType": "uri_file",
            },
            "cpu": {"value": "cpu-1", "jobInputType": "literal"},
        },
        "outputs": {"registered_model": {"assetName": "m", "jobOutputType": "custom_model"}},
        "jobs": {
            "prepare": {
                "type": "command",
                "componentId": prepare,
                "computeId": "${{parent.inputs.cpu}}",
                "inputs": {"data": literal("${{parent.inputs.data}}")},
            },
            "train": {
                "type": "command",
                "componentId": train,
                "inputs": {"data": literal("${{parent.jobs.prepare.outputs.prepared}}")},
                "outputs": {"model": {"value": "${{parent.outputs.registered_model}}", "type": "literal"}},
            },
        },
    }


def _run(
    context: ServiceContext, properties: dict[str, Any], children: FakeChildren
) -> pipeline_runner.PipelineOutcome:
    lines: list[str] = []
    return pipeline_runner.run_pipeline(
        context, "pipe", properties, children, cancelled=lambda: False, log=lines.append, poll_s=0
    )


def test_a_pipeline_runs_in_order_binds_outputs_and_a_second_run_reuses(tmp_path: Path) -> None:
    context = service_context(tmp_path)
    properties = _pipeline(context)
    first = FakeChildren()
    outcome = _run(context, properties, first)
    assert outcome.status == "Completed"
    assert {name: run.state for name, run in outcome.steps.items()} == {"prepare": "ran", "train": "ran"}
    prepare_child = outcome.steps["prepare"].child
    train_props = first.launched[outcome.steps["train"].child]
    assert train_props["inputs"]["data"]["uri"].endswith(f"/azureml/{prepare_child}/prepared/")
    assert train_props["outputs"]["model"] == {"jobOutputType": "uri_folder", "mode": "ReadWriteMount"}
    assert first.launched[prepare_child]["computeId"] == f"{WS}/computes/cpu-1"
    assert outcome.outputs["registered_model"].endswith(f"/{outcome.steps['train'].child}/model/")

    second = FakeChildren()
    second.done.update(first.done)  # the first run's jobs still exist, Completed
    again = _run(context, properties, second)
    assert {name: run.state for name, run in again.steps.items()} == {"prepare": "reused", "train": "reused"}
    assert again.steps["prepare"].reused_from == prepare_child and second.launched == {}

    properties["inputs"]["data"]["uri"] = "azureml://datastores/workspaceblobstore/paths/LocalUpload/other/d.csv"
    third = FakeChildren()
    third.done.update(first.done)
    changed = _run(context, properties, third)
    assert changed.steps["prepare"].state == "ran"  # new data: nothing downstream can be reused either
    assert changed.steps["train"].state == "ran"


def test_a_failed_step_fails_the_pipeline_and_skips_what_reads_it(tmp_path: Path) -> None:
    context = service_context(tmp_path)
    children = FakeChildren(fail={"prepare"})
    outcome = _run(context, _pipeline(context), children)
    assert outcome.status == "Failed" and "step prepare failed: exit code 1" in str(outcome.error)
    assert outcome.steps["train"].state == "skipped" and outcome.outputs == {}


SWEEP = {
    "jobType": "Sweep",
    "experimentName": "exp",
    "computeId": f"{WS}/computes/cpu-1",
    "limits": {"jobLimitsType": "Sweep", "maxTotalTrials": 3, "maxConcurrentTrials": 2},
    "objective": {"goal": "maximize", "primaryMetric": "accuracy"},
    "samplingAlgorithm": {"samplingAlgorithmType": "Grid"},
    "searchSpace": {"lr": ["choice", [[0.1, 0.01, 0.001]]]},
    "trial": {
        "codeId": f"{WS}/codes/c/versions/1",
        "command": "python t.py --lr ${{search_space.lr}}",
        "environmentId": "azureml:AzureML-x:1",
    },
}


def test_a_sweep_runs_trials_as_children_and_names_the_best(tmp_path: Path) -> None:
    context = service_context(tmp_path)
    children = FakeChildren(metrics={"sw_0": [0.5, 0.6], "sw_1": [0.7, 0.9], "sw_2": [0.8]})
    outcome = sweep_runner.run_sweep(
        context, "sw", SWEEP, children, cancelled=lambda: False, log=lambda _: None, poll_s=0
    )
    assert outcome.status == "Completed"
    assert [children.launched[f"sw_{i}"]["command"] for i in range(3)] == [
        "python t.py --lr 0.1",
        "python t.py --lr 0.01",
        "python t.py --lr 0.001",
    ]
    assert outcome.best is not None and outcome.best.child == "sw_1" and outcome.best.score == 0.9
    assert sweep_runner.best_properties(outcome)["best_child_run_id"] == "sw_1"
    assert children.launched["sw_0"]["tags"] == {"hyperparameter.lr": "0.1"}


def test_a_sweep_never_runs_more_than_max_concurrent_trials(tmp_path: Path) -> None:
    context = service_context(tmp_path)

    class Counting(FakeChildren):
        peak = 0

        def launch(self, name: str, properties: dict[str, Any], *, parent: str) -> None:
            super().launch(name, properties, parent=parent)
            running = [n for n in self.launched if n not in self.done]
            Counting.peak = max(Counting.peak, len(running))

    children = Counting(metrics={f"sw_{i}": [0.1] for i in range(3)})
    sweep_runner.run_sweep(context, "sw", SWEEP, children, cancelled=lambda: False, log=lambda _: None, poll_s=0)
    assert Counting.peak == 2


def test_early_termination_cancels_a_trial_behind_the_slack(tmp_path: Path) -> None:
    context = service_context(tmp_path)
    properties = {**SWEEP, "earlyTermination": {"policyType": "Bandit", "slackFactor": 0.1, "evaluationInterval": 1}}
    properties["limits"] = {**SWEEP["limits"], "maxConcurrentTrials": 3}
    children = FakeChildren(metrics={"sw_0": [0.9], "sw_1": [0.2], "sw_2": [0.85]})
    outcome = sweep_runner.run_sweep(
        context, "sw", properties, children, cancelled=lambda: False, log=lambda _: None, poll_s=0
    )
    assert "sw_1" in children.cancelled
    assert next(t for t in outcome.trials if t.child == "sw_1").state == "early-terminated"
    assert outcome.best is not None and outcome.best.child == "sw_0"


def test_a_sweep_where_no_trial_logs_the_metric_fails_saying_so(tmp_path: Path) -> None:
    outcome = sweep_runner.run_sweep(
        service_context(tmp_path), "sw", SWEEP, FakeChildren(), cancelled=lambda: False, log=lambda _: None, poll_s=0
    )
    assert outcome.status == "Failed" and "accuracy" in str(outcome.error)


@pytest.mark.parametrize(("text", "seconds"), [("PT5M", 300.0), ("P1DT2H", 93600.0), ("PT1.5S", 1.5), (None, None)])
def test_iso_durations(text: str | None, seconds: float | None) -> None:
    assert sweep_runner.duration_s(text) == seconds
