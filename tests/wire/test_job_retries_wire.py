"""A job PUT that fails (answer lost, or 503): the client's retry reaches the same job name; one job runs, once."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from azure_dl.cli.main import main
from azure_dl.workspace_service.faults import Faults
from azure_dl.workspace_service.job_runner import KIND, TERMINAL
from azure_dl.workspace_service.service import WorkspaceService


def _train_jobs(service: WorkspaceService) -> set[str]:
    assert service.context is not None
    return {record["name"] for record in service.context.store.list(KIND) if record["name"].startswith("azure-dl-own")}


@pytest.mark.parametrize(
    "fault",
    [
        pytest.param({"drop": True}, id="answer-dropped"),  # created, then the connection closed unanswered
        pytest.param({"status": 503, "retry_after": 0.2}, id="503"),  # refused before it was processed
    ],
)
def test_a_failed_job_put_is_retried_into_one_job(
    fault: dict[str, object],
    connection,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    faults: Faults,
    workspace_service: WorkspaceService,
    capsys: pytest.CaptureFixture[str],
) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.chdir(tmp_path)
    runs = tmp_path / "runs.txt"  # outside the job's folder: every run of the job appends a line
    (tmp_path / "own.py").write_text(f"open({str(runs)!r}, 'a').write('ran\\n')\n")
    before = _train_jobs(workspace_service)
    rule = faults.add("PUT", r"/jobs/azure-dl-own-[^/]+$", **fault)  # type: ignore[arg-type]
    code = main(["submit", "own.py", "--vm-size", "Standard_DS3_v2", "--ensure-compute", "--out", "run"])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert rule.remaining == 0  # the fault fired
    created = _train_jobs(workspace_service) - before
    assert len(created) == 1, created  # the retried PUT found the job it had created
    name = created.pop()
    assert f"Submitted job {name}" in out
    assert workspace_service.context is not None
    deadline = time.monotonic() + 30
    while workspace_service.context.store.get(KIND, name)["status"] not in TERMINAL and time.monotonic() < deadline:
        time.sleep(0.2)
    time.sleep(0.5)  # a second run, had the retry started one, would have been queued right behind the first
    assert workspace_service.context.store.get(KIND, name)["status"] == "Completed"
    assert runs.read_text() == "ran\n"  # it ran once
