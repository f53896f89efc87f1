"""The pure parts of the service's deployment processes: request settings read as Azure defines them, the
admission slots behind 429, and what a deployment that cannot run is told (no process started)."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from azure_dl.workspace_service import deployment_processes
from azure_dl.workspace_service.context import ServiceContext
from azure_dl.workspace_service.http import ApiError
from azure_dl.workspace_service.store import Store


@pytest.mark.parametrize(
    ("value", "seconds"),
    [("PT5S", 5.0), ("PT0.5S", 0.5), ("PT1M30S", 90.0), ("PT1H", 3600.0), ("P1DT2S", 86402.0), (None, 7), ("5s", 7)],
)
def test_iso_durations_as_the_sdk_writes_them(value: str | None, seconds: float) -> None:
    assert deployment_processes._duration_s(value, 7.0) == seconds


def test_limits_follow_azures_admission_rule_and_timeout() -> None:
    properties = {"requestSettings": {"requestTimeout": "PT1.5S", "maxConcurrentRequestsPerInstance": 3}}
    assert deployment_processes.limits(properties, capacity=2) == (12, 1.5)  # 2 x 3 x 2 instances
    assert deployment_processes.limits({}, capacity=1) == (2, 5.0)  # Azure's defaults: 1 per instance, 5 s


def test_admission_slots_are_taken_and_given_back() -> None:
    running = deployment_processes.Running("e", "d", server=None, log_path=Path("x"), capacity=2, timeout_s=1)  # type: ignore[arg-type]
    assert running.admit() and running.admit()
    assert not running.admit()
    running.release()
    assert running.admit()
    assert isinstance(running.ready, threading.Event) and not running.ready.is_set()


def _context(tmp_path: Path) -> ServiceContext:
    return ServiceContext(
        base_url="https://127.0.0.1:1",
        subscription_id="s",
        resource_group="g",
        workspace="w",
        data_dir=tmp_path,
        store=Store(tmp_path / "state"),
        identity_secret="x",
        signing_key=b"k",
    )


def test_what_cannot_run_is_refused_naming_it(tmp_path: Path) -> None:
    context = _context(tmp_path)
    with pytest.raises(ApiError, match="without code_configuration") as no_code:
        deployment_processes.server_spec(context, "ep", "blue", {"model": None}, 1)
    assert no_code.value.status == 501
    code_id = f"{context.workspace_id}/codes/missing/versions/1"
    configuration = {"codeConfiguration": {"codeId": code_id, "scoringScript": "score.py"}}
    with pytest.raises(ApiError, match="code missing:1 does not exist") as missing:
        deployment_processes.server_spec(context, "ep", "blue", configuration, 1)
    assert missing.value.status == 400


def test_the_processes_of_a_service_live_in_its_helpers(tmp_path: Path) -> None:
    context = _context(tmp_path)
    processes = deployment_processes.of(context)
    assert deployment_processes.of(context) is processes and context.helpers == {"deployments": processes}
    processes.stop()  # nothing running: a no-op
