"""`azure-dl jobs ...` end to end through the dispatcher, with the MLClient factory returning fake operations."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from azure_dl.backends.azureml import client as client_module
from azure_dl.cli.main import main
from tests.azure_fakes import FakeJobOperations, days_ago, fake_ml_client
from training_scripts.model_folder import TRAINING_OUTPUT_FILES

pytestmark = pytest.mark.filterwarnings(
    "ignore::marshmallow.warnings.ChangedInMarshmallow4Warning",
    "ignore::marshmallow.warnings.RemovedInMarshmallow4Warning",
)

WORKSPACE_FLAGS = ["--subscription", "sub-1", "--resource-group", "rg-1", "--workspace", "ws-1"]


@pytest.fixture
def jobs(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> FakeJobOperations:
    """Fake job operations behind every client the CLI makes; the settings it asked for are in `.settings`."""
    monkeypatch.chdir(tmp_path)  # no config.json above, and runs/ lands here
    operations = FakeJobOperations()
    ml_client = fake_ml_client(jobs=operations)
    requested: list[Any] = []

    def factory(settings: Any, auth: str = "default", **_: Any) -> Any:
        requested.append((settings, auth))
        return ml_client

    monkeypatch.setattr(client_module, "get_ml_client", factory)
    operations.requested = requested  # type: ignore[attr-defined]
    return operations


def test_list_prints_a_table(jobs: FakeJobOperations, capsys: pytest.CaptureFixture[str]) -> None:
    jobs.add_job("resnet-a1", experiment="resnet", created_at=days_ago(1), status="Running")
    jobs.add_job("lstm-b2", experiment="lstm", created_at=days_ago(2))
    assert main(["jobs", "list", "--experiment", "resnet", *WORKSPACE_FLAGS, "--auth", "cli"]) == 0
    out = capsys.readouterr().out
    assert "resnet-a1" in out and "Running" in out and "gpu-cluster" in out and "UTC" in out
    assert "lstm-b2" not in out
    settings, auth = jobs.requested[0]  # type: ignore[attr-defined]
    assert (settings.subscription_id, settings.resource_group, settings.workspace_name, auth) == (
        "sub-1",
        "rg-1",
        "ws-1",
        "cli",
    )


def test_list_takes_the_workspace_from_the_environment(
    jobs: FakeJobOperations, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("AZURE_SUBSCRIPTION_ID", "sub-env")
    monkeypatch.setenv("AZURE_RESOURCE_GROUP", "rg-env")
    monkeypatch.setenv("AZUREML_WORKSPACE_NAME", "ws-env")
    assert main(["jobs", "list"]) == 0
    assert jobs.requested[0][0].workspace_name == "ws-env"  # type: ignore[attr-defined]
    assert "no jobs" in capsys.readouterr().err


def test_missing_workspace_is_a_clean_error(jobs: FakeJobOperations, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["jobs", "list"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: Azure ML workspace setting missing: subscription_id, resource_group, workspace_name")
    assert "--subscription" in err and "AZURE_SUBSCRIPTION_ID" in err and "config.json" in err
    assert jobs.requested == []  # type: ignore[attr-defined]


def test_show_prints_status_compute_and_studio_link(
    jobs: FakeJobOperations, capsys: pytest.CaptureFixture[str]
) -> None:
    jobs.add_job("job-7", status="Failed", compute="gpu-a100")
    assert main(["jobs", "show", "job-7", "--no-metrics", *WORKSPACE_FLAGS]) == 0
    out = capsys.readouterr().out
    assert "Failed" in out and "gpu-a100" in out and "https://ml.azure.com/runs/job-7" in out


def test_logs_stream_and_a_failed_job_exits_non_zero(
    jobs: FakeJobOperations, capsys: pytest.CaptureFixture[str]
) -> None:
    jobs.add_job("ok", logs=["epoch 1/2", "epoch 2/2"])
    jobs.add_job("bad", status="Failed", logs=["Traceback ..."])
    assert main(["jobs", "logs", "ok", *WORKSPACE_FLAGS]) == 0
    assert "epoch 2/2" in capsys.readouterr().out
    assert main(["jobs", "logs", "bad", *WORKSPACE_FLAGS]) == 2
    assert "error: job bad did not complete" in capsys.readouterr().err


def test_cancel(jobs: FakeJobOperations, capsys: pytest.CaptureFixture[str]) -> None:
    jobs.add_job("run-1", status="Running")
    assert main(["jobs", "cancel", "run-1", *WORKSPACE_FLAGS]) == 0
    assert "Job run-1: Canceled" in capsys.readouterr().out
    assert main(["jobs", "cancel", "run-1", *WORKSPACE_FLAGS]) == 2
    assert "already ended" in capsys.readouterr().err


def test_download_to_the_default_folder(
    jobs: FakeJobOperations, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    files: dict[str, bytes | str] = {name: "{}" for name in TRAINING_OUTPUT_FILES}
    jobs.add_job("done-1", outputs={"model": files, "checkpoints": {"epoch_3.pt": b"ck"}})
    assert main(["jobs", "download", "done-1", *WORKSPACE_FLAGS]) == 0
    folder = tmp_path / "runs" / "done-1"
    assert all((folder / name).is_file() for name in TRAINING_OUTPUT_FILES)
    assert (folder / "checkpoints" / "epoch_3.pt").is_file()
    assert "complete training output folder" in capsys.readouterr().out


def test_download_of_an_incomplete_output_warns(
    jobs: FakeJobOperations, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    jobs.add_job("partial", outputs={"model": {"model.onnx": b"x"}})
    out = tmp_path / "dl"
    assert main(["jobs", "download", "partial", "--output", "model", "--out", str(out), *WORKSPACE_FLAGS]) == 0
    assert (out / "model.onnx").is_file()
    err = capsys.readouterr().err
    assert "not a complete training output folder" in err and "labels.json" in err


def test_jobs_without_an_action_prints_help(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["jobs"]) == 2
    assert "download" in capsys.readouterr().out
