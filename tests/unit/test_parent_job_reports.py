"""What `sweep --stream` and `pipeline --stream` print at the end: trials and the best one; steps, ran or reused."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest

from azure_dl.backends.azureml.sweeps import report_sweep


class _Jobs:
    def __init__(self, children: list[Any]) -> None:
        self.children = children

    def get(self, name: str) -> Any:
        return SimpleNamespace(name=name, objective=SimpleNamespace(primary_metric="val_loss", goal="Minimize"))

    def list(self, parent_job_name: str) -> list[Any]:
        assert parent_job_name == "sw"
        return self.children


def _client(children: list[Any]) -> Any:
    return SimpleNamespace(jobs=_Jobs(children), workspace_name="w")


def test_the_report_names_the_best_completed_trial(capsys: pytest.CaptureFixture[str]) -> None:
    children = [
        SimpleNamespace(name="sw_0", status="Completed"),
        SimpleNamespace(name="sw_1", status="Completed"),
        SimpleNamespace(name="sw_2", status="Canceled"),
    ]
    values = {"sw_0": 0.4, "sw_1": 0.3, "sw_2": 0.1}
    best = report_sweep(_client(children), "sw", lambda job, metric: values[job])
    out = capsys.readouterr().out
    assert best == "sw_1"  # sw_2 is lower but was canceled: not a finished trial
    assert "best trial: sw_1 val_loss=0.3000" in out and "register --sweep sw" in out
    assert "sw_2" in out and "Canceled" in out


def test_no_scored_trial_is_said_not_raised(capsys: pytest.CaptureFixture[str]) -> None:
    children = [SimpleNamespace(name="sw_0", status="Failed")]
    assert report_sweep(_client(children), "sw", lambda job, metric: None) is None
    assert "no completed trial that reported val_loss" in capsys.readouterr().err


def test_pipeline_steps_report_says_which_were_reused(capsys: pytest.CaptureFixture[str]) -> None:
    from azure_dl.backends.azureml.pipelines import report_steps

    class _Children:
        def list(self, parent_job_name: str) -> list[Any]:
            return [
                SimpleNamespace(
                    name="a1",
                    display_name="prepare",
                    status="Completed",
                    properties={"azureml.isreused": "true", "azureml.reusedrunid": "old-a"},
                ),
                SimpleNamespace(name="b1", display_name="train", status="Completed", properties={}),
            ]

    rows = report_steps(SimpleNamespace(jobs=_Children()), "pipe")
    assert rows == [("prepare", "Completed", "old-a"), ("train", "Completed", None)]
    out = capsys.readouterr().out
    assert "reused old-a" in out and "ran" in out
