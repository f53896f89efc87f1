"""Defect (issue 11): Ctrl-C while following a job's logs. The SDK's stream loop catches KeyboardInterrupt and
raises its own JobException from it; the CLI must take its "stopped following the logs; the job keeps running"
path (exit 130), not report the job as failed (exit 2). Driven through the SDK's real stream function: over
the wire is not possible until the service has jobs."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest


class _Pipeline:
    def with_policies(self, **_policies: Any) -> _Pipeline:
        return self


def _client_streaming_with_ctrl_c(monkeypatch: pytest.MonkeyPatch) -> Any:
    """An ml_client whose jobs.stream runs azure-ai-ml's stream_logs_until_completion on a running job; the
    first wait between polls is interrupted as Ctrl-C would interrupt it."""
    from azure.ai.ml.operations import _job_ops_helper

    def _ctrl_c(_elapsed: float) -> int:
        raise KeyboardInterrupt

    monkeypatch.setattr(_job_ops_helper, "_wait_before_polling", _ctrl_c)
    job = SimpleNamespace(
        name="job-1", properties=SimpleNamespace(job_type="Command", services={}, properties={}, outputs=None)
    )
    runs = SimpleNamespace(get_run_details=lambda _name: SimpleNamespace(status="Running"))

    def _stream(_name: str) -> None:
        _job_ops_helper.stream_logs_until_completion(runs, job, None, requests_pipeline=_Pipeline())

    # jobs.get answers the job as running: `stream_job` streams only jobs that have not ended.
    running = SimpleNamespace(name="job-1", status="Running")
    return SimpleNamespace(jobs=SimpleNamespace(stream=_stream, get=lambda _name: running), workspace_name="ws")


def test_the_sdk_raises_its_own_error_from_the_interrupt(monkeypatch: pytest.MonkeyPatch) -> None:
    # What the fix relies on: if the SDK stops chaining the KeyboardInterrupt, this fails first.
    from azure.ai.ml.exceptions import JobException

    client = _client_streaming_with_ctrl_c(monkeypatch)
    with pytest.raises(JobException) as raised:
        client.jobs.stream("job-1")
    assert isinstance(raised.value.__cause__, KeyboardInterrupt)


def test_ctrl_c_while_streaming_says_the_job_keeps_running(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from azure_dl.backends.azureml.jobs import stream_job

    client = _client_streaming_with_ctrl_c(monkeypatch)
    with pytest.raises(KeyboardInterrupt):
        stream_job(client, "job-1")
    err = capsys.readouterr().err
    assert "stopped following the logs; job job-1 keeps running" in err
    assert "did not complete" not in err


def test_jobs_logs_exits_130_on_ctrl_c(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    from azure_dl.cli import jobs as jobs_verb
    from azure_dl.cli.main import main

    client = _client_streaming_with_ctrl_c(monkeypatch)
    monkeypatch.setattr(jobs_verb, "workspace_client", lambda _args: client)
    assert main(["jobs", "logs", "job-1"]) == 130
    err = capsys.readouterr().err
    assert "keeps running (cancel it with `azure-dl jobs cancel job-1`)" in err
    assert "error:" not in err
