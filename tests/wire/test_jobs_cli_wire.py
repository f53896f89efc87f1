"""`azure-dl jobs show|logs|download` on a finished job, over the wire: its MLflow metrics, its log, its files."""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest

from azure_dl.cli.main import main
from azure_dl.workspace_service.job_runner import KIND, TERMINAL
from azure_dl.workspace_service.service import WorkspaceService

SCRIPT = """\
import os, mlflow
mlflow.log_metric("val_accuracy", 0.75)
os.makedirs("outputs", exist_ok=True)
open("outputs/notes.txt", "w").write("kept")
print("trained on the local workspace")
"""


def test_jobs_show_logs_and_download_read_a_finished_job(
    connection,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    workspace_service: WorkspaceService,
    capsys: pytest.CaptureFixture[str],
) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.chdir(tmp_path)
    (tmp_path / "mine.py").write_text(SCRIPT)
    assert main(["submit", "mine.py", "--vm-size", "Standard_DS3_v2", "--ensure-compute", "--out", "run"]) == 0
    name = re.search(r"^Submitted job (\S+)", capsys.readouterr().out, re.M).group(1)  # type: ignore[union-attr]
    assert workspace_service.context is not None
    deadline = time.monotonic() + 60
    while workspace_service.context.store.get(KIND, name)["status"] not in TERMINAL:
        assert time.monotonic() < deadline, "the job did not end"
        time.sleep(0.2)

    assert main(["jobs", "show", name]) == 0
    shown = capsys.readouterr().out
    assert "Completed" in shown and re.search(r"val_accuracy\s+│\s+0\.75", shown), shown  # logged through MLflow

    assert main(["jobs", "logs", name]) == 0  # ended: the saved log, not an empty stream
    assert "trained on the local workspace" in capsys.readouterr().out

    assert main(["jobs", "download", name, "--out", "downloaded"]) == 0
    assert (tmp_path / "downloaded" / "artifacts" / "outputs" / "notes.txt").read_text() == "kept"
    assert (
        "trained on the local workspace"
        in (tmp_path / "downloaded" / "artifacts" / "user_logs" / "std_log.txt").read_text()
    )
