"""Command jobs through the real SDK: submit, stream, status, download, failure, cancel, list, re-PUT, restart."""

from __future__ import annotations

import os
import time
import uuid
from pathlib import Path

import pytest

from azure_dl.workspace_service.job_runner import KIND
from azure_dl.workspace_service.service import WorkspaceService

ENVIRONMENT = "azureml:AzureML-sklearn-1.5:1"


def _code(tmp_path: Path, script: str) -> Path:
    source = tmp_path / "src"
    source.mkdir()
    (source / "main.py").write_text(script)
    return source


def _command(**kwargs):  # type: ignore[no-untyped-def]
    from azure.ai.ml import command

    job = command(environment=ENVIRONMENT, **kwargs)
    # The SDK's generated names come from `random`, which the test run seeds: names would repeat across tests.
    job.name = f"job-{uuid.uuid4().hex[:12]}"
    return job


def _wait(ml_client, name: str, timeout: float = 20.0) -> str:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = ml_client.jobs.get(name).status
        if status in ("Completed", "Failed", "Canceled"):
            return str(status)
        time.sleep(0.2)
    raise AssertionError(f"job {name} still {status} after {timeout}s")


def test_a_job_runs_streams_and_downloads_its_outputs_and_logs(
    ml_client, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:  # type: ignore[no-untyped-def]
    from azure.ai.ml import Input, Output

    script = (
        "import os, sys, time\n"
        "time.sleep(3)  # still running when stream() first asks: the SDK prints logs only from its poll loop\n"
        "text = open(sys.argv[1]).read()\n"
        "print('read', text.strip(), 'epochs', sys.argv[2], 'run', os.environ['AZUREML_RUN_ID'])\n"
        "os.makedirs('outputs', exist_ok=True)\n"
        "open('outputs/model.txt', 'w').write('weights')\n"
        "open(os.path.join(sys.argv[3], 'result.txt'), 'w').write(text.upper())\n"
    )
    data = tmp_path / "data.txt"
    data.write_text("hello input\n")
    job = _command(
        code=str(_code(tmp_path, script)),
        command="python main.py ${{inputs.data}} ${{inputs.epochs}} ${{outputs.out}} $[[--missing ${{inputs.nope}}]]",
        inputs={"data": Input(type="uri_file", path=str(data)), "epochs": 3},
        outputs={"out": Output(type="uri_folder")},
    )
    created = ml_client.jobs.create_or_update(job)
    ml_client.jobs.stream(created.name)
    streamed = capsys.readouterr().out
    assert f"read hello input epochs 3 run {created.name}" in streamed
    assert ml_client.jobs.get(created.name).status == "Completed"

    target = tmp_path / "download"
    ml_client.jobs.download(created.name, download_path=str(target), all=True)
    assert (target / "artifacts" / "outputs" / "model.txt").read_text() == "weights"
    assert "read hello input" in (target / "artifacts" / "user_logs" / "std_log.txt").read_text()
    ml_client.jobs.download(created.name, download_path=str(target), output_name="out")
    assert (target / "named-outputs" / "out" / "result.txt").read_text() == "HELLO INPUT\n"


def test_a_failing_job_ends_failed_with_its_exit_code_and_log_tail(ml_client, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from azure.ai.ml.exceptions import JobException

    job = _command(code=str(_code(tmp_path, "print('about to fail')\nraise SystemExit(3)\n")), command="python main.py")
    created = ml_client.jobs.create_or_update(job)
    with pytest.raises(JobException, match="about to fail"):
        ml_client.jobs.stream(created.name)
    assert ml_client.jobs.get(created.name).status == "Failed"


def test_cancel_stops_the_process_group_and_ends_canceled(
    ml_client, workspace_service: WorkspaceService, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    script = (
        "import os, time\nopen('pid', 'w').write(str(os.getpid()))\nprint('sleeping', flush=True)\ntime.sleep(60)\n"
    )
    created = ml_client.jobs.create_or_update(_command(code=str(_code(tmp_path, script)), command="python main.py"))
    pid_file = workspace_service.data_dir / "jobs" / created.name / "wd" / "pid"
    deadline = time.monotonic() + 15
    while not pid_file.is_file() and time.monotonic() < deadline:
        time.sleep(0.1)
    pid = int(pid_file.read_text())
    ml_client.jobs.begin_cancel(created.name).result()
    assert ml_client.jobs.get(created.name).status == "Canceled"
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)


def test_list_and_a_second_put_of_the_same_name_start_nothing(
    ml_client, workspace_service: WorkspaceService, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    job = _command(code=str(_code(tmp_path, "print('once')\n")), command="python main.py")
    name = ml_client.jobs.create_or_update(job).name
    _wait(ml_client, name)
    assert workspace_service.context is not None
    started = workspace_service.context.store.get(KIND, name)
    job.name = name
    again = ml_client.jobs.create_or_update(job)
    assert (again.name, again.status) == (name, "Completed")
    assert workspace_service.context.store.get(KIND, name) == started
    assert name in [listed.name for listed in ml_client.jobs.list()]


def test_unknown_compute_and_sweep_jobs_are_refused(ml_client, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from azure.core.exceptions import HttpResponseError

    job = _command(code=str(_code(tmp_path, "print(1)\n")), command="python main.py", compute="no-such-cluster")
    with pytest.raises(HttpResponseError, match="no-such-cluster"):
        ml_client.jobs.create_or_update(job, skip_validation=True)
