"""Sweep and pipeline jobs over the wire: Microsoft's sample YAML with the plain SDK, and the CLI's presets.

The samples are Azure/azureml-examples' own files (tests/fixtures/azureml_examples/, unmodified), loaded with
`load_job` and submitted with a plain MLClient; the CLI tests run `azure-dl sweep lstm` and `pipeline resnet`
(tiny settings) against the same service, the second pipeline run reusing every unchanged step.
"""

from __future__ import annotations

import re
import time
import uuid
from pathlib import Path

import pytest

from azure_dl.cli.main import main
from azure_dl.workspace_service.blobs import BlobStore
from azure_dl.workspace_service.job_runner import ARTIFACT_CONTAINER, KIND, LOG_NAME, artifact_prefix
from azure_dl.workspace_service.service import WorkspaceService
from training_scripts.synth import synth_images

EXAMPLES = Path(__file__).parents[1] / "fixtures" / "azureml_examples"
CPU = "Standard_DS3_v2"


@pytest.fixture()
def cwd(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("AZURE_DL_CATALOG", str(tmp_path / "no-user-catalog.toml"))  # the packaged catalogue only
    return tmp_path


def _wait(ml_client, name: str, timeout: float = 120.0) -> str:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    status = "unknown"
    while time.monotonic() < deadline:
        job_status = ml_client.jobs.get(name).status
        status = str(getattr(job_status, "value", job_status))  # a sweep's status is a JobStatus enum
        if status in ("Completed", "Failed", "Canceled"):
            return status
        time.sleep(0.3)
    raise AssertionError(f"job {name} still {status} after {timeout}s")


def _log(service: WorkspaceService, job: str) -> str:
    path = BlobStore(service.data_dir / "blobs").data_path(ARTIFACT_CONTAINER, f"{artifact_prefix(job)}/{LOG_NAME}")
    return path.read_text() if path.is_file() else ""


def test_the_sample_sweep_runs_its_trials_and_names_the_best(connection, ml_client) -> None:  # type: ignore[no-untyped-def]
    from azure.ai.ml import load_job
    from azure.ai.ml.entities import Environment

    # The sample names a workspace environment (azureml:sklearn-1.0@latest), as a user's workspace has it.
    ml_client.environments.create_or_update(
        Environment(name="sklearn-1.0", image="mcr.microsoft.com/azureml/openmpi4.1.0-ubuntu20.04:latest")
    )
    job = load_job(EXAMPLES / "sweep" / "hello-sweep.yml")
    job.name = f"hello-sweep-{uuid.uuid4().hex[:8]}"  # the SDK's names repeat under the test run's seeded random
    created = ml_client.jobs.create_or_update(job)
    assert created.status in ("NotStarted", "Queued", "Running")
    assert _wait(ml_client, job.name) == "Completed"

    trials = list(ml_client.jobs.list(parent_job_name=job.name))
    assert sorted(trial.name for trial in trials) == [f"{job.name}_{i}" for i in range(4)]  # max_total_trials
    assert {str(trial.status) for trial in trials} == {"Completed"}
    swept = ml_client.jobs.get(job.name)
    best = swept.properties["best_child_run_id"]
    # minimize random_metric: the best is the trial with the smallest value it logged through MLflow
    import mlflow

    mlflow.set_tracking_uri(ml_client.workspaces.get(ml_client.workspace_name).mlflow_tracking_uri)
    values = {trial.name: mlflow.get_run(trial.name).data.metrics["random_metric"] for trial in trials}
    assert best == min(values, key=lambda name: values[name])
    assert float(swept.properties["score"]) == pytest.approx(values[best])
    assert job.name not in {listed.name for listed in ml_client.jobs.list() if listed.name.startswith(f"{job.name}_")}


def test_the_sample_pipeline_binds_one_steps_output_to_the_next(
    connection, ml_client, workspace_service: WorkspaceService
) -> None:  # type: ignore[no-untyped-def]
    from azure.ai.ml import load_job
    from azure.ai.ml.entities import AmlCompute

    # The sample's steps run on `cpu-cluster`, which a user's workspace has.
    ml_client.compute.begin_create_or_update(AmlCompute(name="cpu-cluster", size=CPU, max_instances=1)).result()
    job = load_job(EXAMPLES / "pipeline" / "hello-pipeline-io.yml")
    job.name = f"hello-pipeline-{uuid.uuid4().hex[:8]}"
    ml_client.jobs.create_or_update(job)
    assert _wait(ml_client, job.name) == "Completed"

    steps = {step.display_name: step for step in ml_client.jobs.list(parent_job_name=job.name)}
    assert sorted(steps) == ["hello_job", "world_job"]
    assert {str(step.status) for step in steps.values()} == {"Completed"}
    assert "hello" in _log(workspace_service, steps["hello_job"].name)
    assert "world" in _log(workspace_service, steps["world_job"].name)  # it read hello_job's output


def test_a_pipeline_with_an_unknown_compute_is_refused_at_submit(
    connection, ml_client, workspace_service: WorkspaceService
) -> None:  # type: ignore[no-untyped-def]
    from azure.ai.ml import load_job
    from azure.ai.ml.exceptions import MlException

    job = load_job(EXAMPLES / "pipeline" / "hello-pipeline-io.yml")
    job.name = f"hello-pipeline-{uuid.uuid4().hex[:8]}"
    for step in job.jobs.values():
        step.compute = "no-such-cluster"
    # The SDK validates each step's compute with a GET first; the answer names the missing one.
    with pytest.raises(MlException, match="The compute 'no-such-cluster' was not found"):
        ml_client.jobs.create_or_update(job)
    assert workspace_service.context is not None and workspace_service.context.store.get(KIND, job.name) is None


def test_cli_sweep_runs_and_reports_the_best_trial(
    connection, cwd: Path, workspace_service: WorkspaceService, capsys: pytest.CaptureFixture[str]
) -> None:  # type: ignore[no-untyped-def]
    code = main(
        [
            *("sweep", "lstm", "--ensure-compute", "--max-trials", "2", "--stream", "--out", "sweep"),
            *("--", "--epochs", "2"),
        ]
    )
    out, err = capsys.readouterr()
    assert code == 0, err
    best = re.search(r"^best trial: (\S+) val_macro_f1=", out, re.M)
    assert best is not None, out
    sweep = best.group(1).rsplit("_", 1)[0]
    record = workspace_service.context.store.get(KIND, sweep) if workspace_service.context else None
    assert record is not None and record["properties"]["properties"]["best_child_run_id"] == best.group(1)
    assert f"register it: azure-dl register --sweep {sweep}" in out

    # ... and registering it takes the best trial's model output (gate first), as the report said.
    assert main(["register", "--sweep", sweep, "--name", "sentiment-best"]) == 0, capsys.readouterr().err
    registered = capsys.readouterr().out
    assert f"azureml://jobs/{best.group(1)}/outputs/model" in registered
    assert "Deploy it: azure-dl deploy sentiment-best:1" in registered


def _model_versions(service: WorkspaceService, name: str) -> int:
    assert service.context is not None
    return sum(1 for record in service.context.store.list("models") if record["name"] == name)


def test_cli_pipeline_runs_and_a_second_run_reuses_every_unchanged_step(
    connection, cwd: Path, workspace_service: WorkspaceService, capsys: pytest.CaptureFixture[str]
) -> None:  # type: ignore[no-untyped-def]
    synth_images(cwd / "xrays", per_class=24, image_size=32)
    arguments = [
        *("pipeline", "resnet", "--ensure-compute", "--stream", "--profile", "local"),
        *("--input", "data=xrays", "--input", "epochs=1", "--input", "image_size=32", "--input", "batch_size=8"),
        *("--input", "gate_threshold=0"),  # a one-epoch model on 48 images: the gate is not what this tests
    ]
    assert main([*arguments, "--out", "first"]) == 0, capsys.readouterr().err
    first = capsys.readouterr().out
    assert re.search(r"│ train\s+│ Completed\s+│ ran", first), first
    registered = _model_versions(workspace_service, "azure-dl-resnet")
    assert registered >= 1  # the pipeline's custom_model output, registered when it completed
    assert main([*arguments, "--out", "second"]) == 0, capsys.readouterr().err
    second = capsys.readouterr().out
    for step in ("prepare", "train", "evaluate"):
        assert re.search(rf"│ {step}\s+│ Completed\s+│ reused", second), second
    assert _model_versions(workspace_service, "azure-dl-resnet") == registered + 1


PLAIN_SDK_SCRIPT = """\
import os, sys, uuid
from azure.ai.ml import MLClient, load_job
from azure.identity import DefaultAzureCredential

ml_client = MLClient(
    DefaultAzureCredential(),
    os.environ["AZURE_SUBSCRIPTION_ID"],
    os.environ["AZURE_RESOURCE_GROUP"],
    os.environ["AZUREML_WORKSPACE_NAME"],
)
job = load_job(sys.argv[1])
job.name = "hello-world-" + uuid.uuid4().hex[:8]
created = ml_client.jobs.create_or_update(job)
ml_client.jobs.stream(created.name)
status = ml_client.jobs.get(created.name).status
print("final status:", getattr(status, "value", status))
ml_client.jobs.download(created.name, download_path=sys.argv[2])
"""


def test_a_plain_sdk_script_submits_the_sample_command_yaml_and_streams_it(
    connection: dict[str, str], ml_client, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    import os
    import subprocess
    import sys

    from azure.ai.ml.entities import AmlCompute

    ml_client.compute.begin_create_or_update(AmlCompute(name="cpu-cluster", size=CPU, max_instances=1)).result()
    script = tmp_path / "submit.py"  # no azure-dl import: what a user's own SDK v2 code does
    script.write_text(PLAIN_SDK_SCRIPT)
    finished = subprocess.run(
        [sys.executable, str(script), str(EXAMPLES / "command" / "hello-world.yml"), str(tmp_path / "got")],
        env={**os.environ, **connection},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert finished.returncode == 0, finished.stderr[-3000:]
    assert "Execution Summary" in finished.stdout and "final status: Completed" in finished.stdout
    # The job's log. The SDK's stream prints it only when the job has not ended at its first status read (on a
    # loaded machine an `echo` can end sooner, despite job_runner.MIN_QUEUED_S), so it is checked where it lies.
    log = (tmp_path / "got" / "artifacts" / "user_logs" / "std_log.txt").read_text()
    assert re.search(r"^hello world$", log, re.M), log


def test_canceling_a_sweep_stops_its_running_trials(connection, ml_client, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from azure.ai.ml import command
    from azure.ai.ml.sweep import Choice

    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "slow.py").write_text(
        "import time, sys\nprint('trial', sys.argv[1], flush=True)\ntime.sleep(60)\n"
    )
    trial = command(
        code=str(tmp_path / "src"),
        command="python slow.py ${{inputs.x}}",
        inputs={"x": 1},
        environment="azureml:AzureML-sklearn-1.5:1",
    )
    sweep = trial(x=Choice([1, 2])).sweep(
        sampling_algorithm="grid", primary_metric="loss", goal="minimize", compute=None
    )
    sweep.set_limits(max_total_trials=2, max_concurrent_trials=2)
    sweep.name = f"slow-sweep-{uuid.uuid4().hex[:8]}"
    ml_client.jobs.create_or_update(sweep)
    deadline = time.monotonic() + 30
    while not any(str(t.status) == "Running" for t in ml_client.jobs.list(parent_job_name=sweep.name)):
        assert time.monotonic() < deadline, "no trial started"
        time.sleep(0.3)

    ml_client.jobs.begin_cancel(sweep.name).result()
    assert _wait(ml_client, sweep.name, timeout=20) == "Canceled"
    deadline = time.monotonic() + 15  # SIGTERM reaches each trial's process group
    while {str(t.status) for t in ml_client.jobs.list(parent_job_name=sweep.name)} != {"Canceled"}:
        assert time.monotonic() < deadline, "a trial kept running after its sweep was canceled"
        time.sleep(0.3)
