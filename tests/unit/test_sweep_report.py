"""`sweep --stream`'s closing report: every trial and the best one, picked as `register --sweep` picks it."""

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
