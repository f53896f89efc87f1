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
        job_status = ml_client.jobs.get(name).status
        status = str(getattr(job_status, "value", job_status))  # some entities answer a JobStatus enum
        if status in ("Completed", "Failed", "Canceled"):
            return status
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
    code = str(_code(tmp_path, script))
    # Two sleeping jobs take both of the runner's workers; a third waits in the queue behind them.
    running = [ml_client.jobs.create_or_update(_command(code=code, command="python main.py")) for _ in range(2)]
    pid_files = [workspace_service.data_dir / "jobs" / job.name / "wd" / "pid" for job in running]
    deadline = time.monotonic() + 15
    while not all(path.is_file() for path in pid_files) and time.monotonic() < deadline:
        time.sleep(0.1)
    pids = [int(path.read_text()) for path in pid_files]
    queued = ml_client.jobs.create_or_update(_command(code=code, command="python main.py"))

    # Canceled in the queue, it ends at once (not when a worker is free), and never runs.
    started = time.monotonic()
    ml_client.jobs.begin_cancel(queued.name).result()
    assert ml_client.jobs.get(queued.name).status == "Canceled"
    assert time.monotonic() - started < 10
    assert not (workspace_service.data_dir / "jobs" / queued.name).exists()

    for job in running:
        ml_client.jobs.begin_cancel(job.name).result()
        assert ml_client.jobs.get(job.name).status == "Canceled"
    for pid in pids:
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


def test_an_unknown_compute_is_refused(ml_client, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from azure.core.exceptions import HttpResponseError

    job = _command(code=str(_code(tmp_path, "print(1)\n")), command="python main.py", compute="no-such-cluster")
    with pytest.raises(HttpResponseError, match="no-such-cluster"):
        ml_client.jobs.create_or_update(job, skip_validation=True)


def test_a_job_left_running_by_a_stopped_service_is_failed_on_the_next_start(tmp_path: Path) -> None:
    from azure_dl.workspace_service.store import Store

    # What a killed service leaves behind: a job recorded as Running whose process died with it.
    Store(tmp_path / "state").put(
        KIND,
        "orphan",
        {"name": "orphan", "properties": {"jobType": "Command"}, "status": "Running", "createdAt": "2026-01-01"},
    )
    with WorkspaceService(tmp_path) as service:
        assert service.context is not None
        record = service.context.store.get(KIND, "orphan")
    assert record is not None and record["status"] == "Failed"  # never stuck Running
    assert record["error"]["code"] == "ServiceStopped" and record["endTime"]


def test_a_pytorch_distribution_runs_its_processes_under_torchrun(ml_client, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    script = (
        "import os, sys\n"
        "with open(os.path.join(sys.argv[1], f\"rank{os.environ['RANK']}.txt\"), 'w') as f:\n"
        "    f.write(os.environ['WORLD_SIZE'])\n"
    )
    from azure.ai.ml import Output

    job = _command(
        code=str(_code(tmp_path, script)),
        command="python main.py ${{outputs.ranks}}",
        outputs={"ranks": Output(type="uri_folder")},
        distribution={"type": "pytorch", "process_count_per_instance": 2},
    )
    ml_client.jobs.create_or_update(job)
    assert _wait(ml_client, job.name, timeout=60) == "Completed"
    ml_client.jobs.download(job.name, download_path=str(tmp_path / "got"), output_name="ranks")
    ranks = sorted(p.name for p in (tmp_path / "got" / "named-outputs" / "ranks").iterdir())
    assert ranks == ["rank0.txt", "rank1.txt"]  # two processes, one per rank, as torchrun starts them
    assert (tmp_path / "got" / "named-outputs" / "ranks" / "rank1.txt").read_text() == "2"
