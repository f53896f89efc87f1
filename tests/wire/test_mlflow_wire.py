"""MLflow through the workspace's azureml:// tracking URI, with the real mlflow + azureml-mlflow on both sides of a
job: a process started with `job_environment(...)` logs with plain MLflow calls, and the workspace reads the run
back by the job's name (params, metric history, artifacts listed and downloaded, search by experiment)."""

from __future__ import annotations

import json
import os
import ssl
import subprocess
import sys
import textwrap
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from azure_dl.workspace_service import mlflow_front
from azure_dl.workspace_service.identity import issue_token
from azure_dl.workspace_service.mlflow_artifacts import run_prefix
from azure_dl.workspace_service.service import WorkspaceService

REPO = Path(__file__).resolve().parents[2]
EXPERIMENT = "wire-mlflow"

_JOB_SCRIPT = """
import pathlib, mlflow
run = mlflow.start_run()
print("RUN", run.info.run_id, run.info.experiment_id)
mlflow.log_param("learning_rate", 0.01)
for step in range(3):
    mlflow.log_metric("loss", 1.0 / (step + 1), step=step)
report = pathlib.Path("summary.txt")
report.write_text("best loss 0.33\\n")
mlflow.log_artifact(str(report), artifact_path="reports")
mlflow.end_run()
"""

_TRACKER_SCRIPT = """
import pathlib
from training_scripts.tracking import Tracker
out = pathlib.Path("out"); (out / "nested").mkdir(parents=True)
(out / "metrics.json").write_text("{}"); (out / "nested" / "model.txt").write_text("weights")
with Tracker("ignored-when-the-job-names-one") as tracker:
    tracker.log_params({"optimizer": {"name": "adam", "lr": 0.001}, "api_key": "dropped"})
    tracker.log_metrics({"val_loss": 0.5}, step=1)
    tracker.log_metrics({"val_loss": 0.25}, step=2)
    tracker.log_artifacts(out, artifact_path="outputs")
    print("RUN", tracker.run_id)
"""


def _context(service: WorkspaceService):  # type: ignore[no-untyped-def]
    assert service.context is not None
    return service.context


def _run_job(script: str, env: dict[str, str], cwd: Path) -> str:
    """The job's process: the connection variables of the test plus the job's own, as the jobs runner sets them."""
    full_env = {**os.environ, **env, "PYTHONPATH": str(REPO)}
    result = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(script)],
        cwd=cwd,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


@pytest.fixture()
def tracking_uri(ml_client, monkeypatch: pytest.MonkeyPatch) -> str:  # type: ignore[no-untyped-def]
    """The workspace's URI as the SDK reports it, made the default (azureml-mlflow's artifact repository takes its
    credentials from the default tracking store)."""
    uri: str = ml_client.workspaces.get(ml_client.workspace_name).mlflow_tracking_uri
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    return uri


def test_a_job_logs_to_its_run_and_the_workspace_reads_it_by_job_name(
    workspace_service: WorkspaceService, tracking_uri: str, tmp_path: Path
) -> None:
    import mlflow
    from mlflow.tracking import MlflowClient

    context = _context(workspace_service)
    env = mlflow_front.job_environment(context, "wire_job_plain", EXPERIMENT)
    # The workspace GET answers /mlflow/v1.0/ (as Azure ML does); azure-ai-ml's Workspace reports it as v2.0.
    assert env["MLFLOW_TRACKING_URI"] == tracking_uri.replace("/mlflow/v2.0/", "/mlflow/v1.0/")
    assert (env["MLFLOW_RUN_ID"], env["MLFLOW_EXPERIMENT_NAME"]) == ("wire_job_plain", EXPERIMENT)

    output = _run_job(_JOB_SCRIPT, env, tmp_path)
    assert "RUN wire_job_plain" in output

    client = MlflowClient(tracking_uri=tracking_uri)
    run = client.get_run("wire_job_plain")
    assert (run.info.run_id, run.info.run_name, run.info.status) == ("wire_job_plain", "wire_job_plain", "FINISHED")
    assert run.data.params == {"learning_rate": "0.01"}
    history = client.get_metric_history("wire_job_plain", "loss")
    assert [(metric.step, round(metric.value, 3)) for metric in history] == [(0, 1.0), (1, 0.5), (2, 0.333)]
    assert run.info.artifact_uri.startswith(f"azureml://{context.host}/mlflow/v2.0/")
    assert run.info.artifact_uri.endswith("/runs/wire_job_plain/artifacts")

    listed = client.list_artifacts("wire_job_plain", "reports")
    assert [(item.path, item.is_dir) for item in listed] == [("reports/summary.txt", False)]
    assert [(item.path, item.is_dir) for item in client.list_artifacts("wire_job_plain")] == [("reports", True)]
    downloaded = Path(client.download_artifacts("wire_job_plain", "reports/summary.txt", str(tmp_path / "dl")))
    assert downloaded.read_text() == "best loss 0.33\n"

    stored = workspace_service.data_dir / "blobs" / "azureml" / run_prefix("wire_job_plain") / "reports/summary.txt"
    assert stored.read_text() == "best loss 0.33\n"

    found = mlflow.search_runs(experiment_names=[EXPERIMENT], output_format="list")
    assert "wire_job_plain" in [listed_run.info.run_id for listed_run in found]


def test_the_training_scripts_tracker_logs_to_the_job_run(
    workspace_service: WorkspaceService, tracking_uri: str, tmp_path: Path
) -> None:
    from mlflow.tracking import MlflowClient

    env = mlflow_front.job_environment(_context(workspace_service), "wire_job_tracker", EXPERIMENT)
    assert "RUN wire_job_tracker" in _run_job(_TRACKER_SCRIPT, env, tmp_path)

    client = MlflowClient(tracking_uri=tracking_uri)
    run = client.get_run("wire_job_tracker")
    assert run.info.status == "FINISHED"
    assert run.data.params == {"optimizer.name": "adam", "optimizer.lr": "0.001"}
    assert run.data.metrics == {"val_loss": 0.25}
    artifacts = workspace_service.data_dir / "blobs" / "azureml" / run_prefix("wire_job_tracker") / "outputs"
    assert sorted(p.relative_to(artifacts).as_posix() for p in artifacts.rglob("*") if p.is_file()) == [
        "metrics.json",
        "nested/model.txt",
    ]


def test_read_mlflow_run_finds_the_metrics_of_a_job(ml_client, workspace_service: WorkspaceService) -> None:  # type: ignore[no-untyped-def]
    from azure_dl.backends.azureml.jobs import read_mlflow_run

    context = _context(workspace_service)
    mlflow_front.job_environment(context, "wire_job_read", EXPERIMENT)
    tracking = mlflow_front.tracking(context)
    tracking.server.call(
        "POST", "runs/log-metric", {"run_id": "wire_job_read", "key": "acc", "value": 0.9, "timestamp": 1, "step": 0}
    )
    run = read_mlflow_run(ml_client, "wire_job_read")
    assert run.info.run_id == "wire_job_read"
    assert run.data.metrics == {"acc": 0.9}


def test_finish_job_run_ends_a_run_the_job_left_open_and_only_once(workspace_service: WorkspaceService) -> None:
    context = _context(workspace_service)
    first = mlflow_front.job_environment(context, "wire_job_crashed", EXPERIMENT, display_name="crashed run")
    again = mlflow_front.job_environment(context, "wire_job_crashed", EXPERIMENT)
    assert first["MLFLOW_RUN_ID"] == again["MLFLOW_RUN_ID"] == "wire_job_crashed"
    tracking = mlflow_front.tracking(context)
    run = tracking.get_run("wire_job_crashed")
    assert run is not None
    assert (run["info"]["status"], run["info"]["run_name"]) == ("RUNNING", "crashed run")

    assert mlflow_front.finish_job_run(context, "wire_job_crashed", "FAILED") is True
    assert mlflow_front.finish_job_run(context, "wire_job_crashed", "FINISHED") is False
    ended = tracking.get_run("wire_job_crashed")
    assert ended is not None and ended["info"]["status"] == "FAILED" and ended["info"]["end_time"]


def _call(service: WorkspaceService, path: str, body: Any = None, token: bool = True) -> tuple[int, dict[str, Any]]:
    context = _context(service)
    headers = {"Content-Type": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {issue_token(context, context.base_url)[0]}"
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(context.base_url + path, data=data, headers=headers)
    tls = ssl.create_default_context(cafile=str(service.data_dir / "tls" / "ca-bundle.pem"))
    try:
        with urllib.request.urlopen(request, context=tls) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def test_the_tracking_routes_refuse_what_they_do_not_serve(workspace_service: WorkspaceService) -> None:
    context = _context(workspace_service)
    api = f"/mlflow/v2.0{context.workspace_id}/api/2.0/mlflow"
    status, _ = _call(workspace_service, f"{api}/experiments/get-by-name?experiment_name=x", token=False)
    assert status == 401
    status, body = _call(workspace_service, f"{api}/logged-models", {"experiment_id": "0"})
    assert status == 501 and "logged models" in body["message"]
    other = context.workspace_id.replace(f"/workspaces/{context.workspace}", "/workspaces/elsewhere")
    status, _ = _call(workspace_service, f"/mlflow/v2.0{other}/api/2.0/mlflow/experiments/search", {})
    assert status == 404
    history = f"/history/v1.0{context.workspace_id}/experiments/{EXPERIMENT}/runs/no_such_run/artifacts"
    status, body = _call(workspace_service, f"{history}/batch/metadata", {"paths": [{"path": "a.txt"}]})
    assert status == 404 and "no_such_run" in body["error"]["message"]
    status, body = _call(workspace_service, f"{history}/contentinfo?path=a.txt")
    assert status == 404


def test_job_environment_refuses_a_job_name_mlflow_cannot_hold(workspace_service: WorkspaceService) -> None:
    from azure_dl.errors import ConfigError

    with pytest.raises(ConfigError, match="cannot be an MLflow run id"):
        mlflow_front.job_environment(_context(workspace_service), "has a space", EXPERIMENT)
