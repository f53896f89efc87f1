"""Runs command jobs on this machine: a queue (default 2 at once), one process group per job under `bash -c`.

A job's life: Queued (in the queue) -> Preparing (code copied to DIR/jobs/NAME/wd) -> Running -> Finalizing
(./outputs and ./logs copied to the artifact store) -> Completed / Failed / Canceled, each persisted in the store
(kind "jobs"). The log (stdout and stderr together) is written as it comes to the artifact store's blob
ExperimentRun/dcid.NAME/user_logs/std_log.txt, where `jobs.stream` and `jobs.download` read it. Command text,
inputs and outputs are resolved by job_command.py.
"""

from __future__ import annotations

import contextlib
import os
import queue
import shlex
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from azure_dl.workspace_service import job_command, registries
from azure_dl.workspace_service.blobs import BlobStore
from azure_dl.workspace_service.context import ServiceContext

KIND = "jobs"
ARTIFACT_CONTAINER = "azureml"  # the workspaceartifactstore's container (datastores.seed)
TERMINAL = ("Completed", "Failed", "Canceled")
LOG_NAME = "user_logs/std_log.txt"
DEFAULT_CONCURRENCY = 2
# A job a client submitted stays Queued at least this long. The SDK's `jobs.stream` prints logs only from inside
# its poll loop, which it enters only if the job has not ended at its first status read, right after the PUT: on
# Azure a job is always still queued then (provisioning takes minutes), here a short job could already be done and
# its log would never be shown. Child jobs (trials, steps) do not wait: nobody streams them.
MIN_QUEUED_S = 1.0
CANCEL_GRACE_S = 5.0
_LOG_FLUSH_S = 0.3


def now() -> str:
    return datetime.now(UTC).isoformat()


def artifact_prefix(name: str) -> str:
    return f"ExperimentRun/dcid.{name}"


def _no_environment(_job: str, _experiment: str) -> dict[str, str]:
    return {}


def _no_hook(_job: str, _status: str) -> None:
    return None


class JobRunner:
    """The queue and the running processes of one service; `stop()` ends them (SIGTERM, then SIGKILL)."""

    def __init__(
        self,
        context: ServiceContext,
        *,
        concurrency: int = DEFAULT_CONCURRENCY,
        extra_environment: Callable[[str, str], dict[str, str]] = _no_environment,
        on_finished: Callable[[str, str], None] = _no_hook,
    ) -> None:
        self.context = context
        self.blobs = BlobStore(context.data_dir / "blobs")
        self.extra_environment = extra_environment
        self.on_finished = on_finished
        self._queue: queue.Queue[str | None] = queue.Queue()
        self._processes: dict[str, subprocess.Popen[bytes]] = {}
        self._canceled: set[str] = set()
        self._submitted: set[str] = set()
        self._claimed: set[str] = set()  # taken by a worker, or ended by a cancel while still queued
        self._not_before: dict[str, float] = {}
        self._lock = threading.Lock()
        self._stopping = False
        self._workers = [
            threading.Thread(target=self._work, name=f"job-runner-{i}", daemon=True) for i in range(concurrency)
        ]
        self._fail_leftovers()
        for worker in self._workers:
            worker.start()

    # -- state -------------------------------------------------------------------------------------------------
    def update(self, name: str, **changes: Any) -> dict[str, Any]:
        with self._lock:
            record = self.context.store.get(KIND, name)
            assert record is not None, f"job {name} has no record"
            record.update(changes)
            self.context.store.put(KIND, name, record)
            return record

    def _fail_leftovers(self) -> None:
        # A job not finished when a previous service process ended can never finish: it is Failed, never stuck.
        for record in self.context.store.list(KIND):
            if record["status"] not in TERMINAL:
                record.update(
                    status="Failed",
                    endTime=now(),
                    error={"code": "ServiceStopped", "message": "the service stopped while it ran"},
                )
                self.context.store.put(KIND, record["name"], record)

    # -- public ------------------------------------------------------------------------------------------------
    def submit(self, name: str, *, min_queued_s: float = 0.0) -> None:
        """Queue job `name`; it starts no sooner than `min_queued_s` from now (see MIN_QUEUED_S)."""
        with self._lock:
            self._submitted.add(name)
            if min_queued_s > 0:
                self._not_before[name] = time.monotonic() + min_queued_s
        self._queue.put(name)

    def cancel(self, name: str) -> None:
        with self._lock:
            self._canceled.add(name)
            process = self._processes.get(name)
            # Still in the queue: it ends now, not when a worker is free (which may be after another job's end).
            in_queue = name in self._submitted and name not in self._claimed
            if in_queue:
                self._claimed.add(name)
        if in_queue:
            self._finish(name, "Canceled", None)
            return
        if process is not None:
            _signal_group(process, signal.SIGTERM)
            timer = threading.Timer(CANCEL_GRACE_S, _signal_group, (process, signal.SIGKILL))
            timer.daemon = True
            timer.start()

    def is_canceled(self, name: str) -> bool:
        """Whether `name` was canceled (or the service is stopping): parent jobs poll this."""
        with self._lock:
            return self._stopping or name in self._canceled

    def stop(self) -> None:
        self._stopping = True
        with self._lock:
            running = list(self._processes.items())
            self._canceled.update(name for name, _ in running)
        for _, process in running:
            _signal_group(process, signal.SIGTERM)
        deadline = time.monotonic() + CANCEL_GRACE_S
        for _, process in running:
            try:
                process.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                _signal_group(process, signal.SIGKILL)
        for _ in self._workers:
            self._queue.put(None)
        for worker in self._workers:
            worker.join(timeout=CANCEL_GRACE_S)

    # -- work --------------------------------------------------------------------------------------------------
    def _work(self) -> None:
        while True:
            name = self._queue.get()
            if name is None or self._stopping:
                return
            try:
                self._run(name)
            except Exception as exc:  # a bug or a bad record must end the job, not the worker
                self._finish(name, "Failed", {"code": "ServiceError", "message": f"{type(exc).__name__}: {exc}"})

    def _finish(self, name: str, status: str, error: dict[str, str] | None, exit_code: int | None = None) -> None:
        self.update(name, status=status, error=error, endTime=now(), exitCode=exit_code)
        with contextlib.suppress(Exception):  # a hook's failure must not change the job's outcome
            self.on_finished(name, status)

    def _run(self, name: str) -> None:
        with self._lock:
            not_before = self._not_before.pop(name, 0.0)
        if (wait := not_before - time.monotonic()) > 0:
            time.sleep(wait)
        with self._lock:  # claimed here or by cancel(), never both: a canceled job cannot come back to Preparing
            if name in self._claimed:
                return
            self._claimed.add(name)
            canceled = name in self._canceled
        if canceled:
            self._finish(name, "Canceled", None)
            return
        record = self.update(name, status="Preparing")
        properties = record["properties"]
        job_dir = self.context.data_dir / "jobs" / name
        workdir = job_dir / "wd"
        shutil.rmtree(workdir, ignore_errors=True)
        workdir.mkdir(parents=True)
        try:
            job_command.copy_code(self.context, properties.get("codeId"), workdir)
            command = job_command.render(self.context, name, properties)
        except job_command.JobSetupError as exc:
            self._finish(name, "Failed", {"code": "UserError", "message": str(exc)})
            return
        env = self._environment(name, record, job_dir)
        log = LogWriter(self.blobs, f"{artifact_prefix(name)}/{LOG_NAME}")
        log.write(registries.environment_note(properties.get("environmentId")).encode())
        process = subprocess.Popen(
            ["bash", "-c", command],
            cwd=workdir,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: cancel and stop reach every child
        )
        with self._lock:
            self._processes[name] = process
        if name in self._canceled:  # canceled between Preparing and here
            _signal_group(process, signal.SIGTERM)
        self.update(name, status="Running", startTime=now())
        assert process.stdout is not None
        stdout = process.stdout
        for chunk in iter(lambda: stdout.read1(65536), b""):  # type: ignore[attr-defined]
            log.write(chunk)
        code = process.wait()
        with self._lock:
            self._processes.pop(name, None)
        log.close()
        self.update(name, status="Finalizing")
        self._upload_artifacts(name, workdir)
        self._register_outputs(name, properties)
        if name in self._canceled:
            self._finish(name, "Canceled", None, code)
        elif code == 0:
            self._finish(name, "Completed", None, code)
        else:
            tail = "\n".join(log.text().splitlines()[-20:])
            message = f"the command exited with code {code}; the end of its log:\n{tail}"
            self._finish(name, "Failed", {"code": "UserError", "message": message}, code)

    def _environment(self, name: str, record: dict[str, Any], job_dir: Path) -> dict[str, str]:
        shim = job_dir / "bin"
        shim.mkdir(exist_ok=True)
        for command in ("python", "python3"):
            _write_interpreter_shim(shim / command)
        properties = record["properties"]
        experiment = properties.get("experimentName") or "Default"
        env = dict(os.environ)
        env.update({str(k): str(v) for k, v in (properties.get("environmentVariables") or {}).items()})
        env.update(
            {
                "PATH": f"{shim}{os.pathsep}{os.environ.get('PATH', '')}",
                "AZUREML_RUN_ID": name,
                "AZUREML_ARM_WORKSPACE_NAME": self.context.workspace,
                "AZUREML_WORKSPACE_NAME": self.context.workspace,
                "AZUREML_ARM_SUBSCRIPTION": self.context.subscription_id,
                "AZUREML_ARM_RESOURCEGROUP": self.context.resource_group,
                "AZUREML_EXPERIMENT_NAME": experiment,
                "AZUREML_CR_EXECUTION_WORKING_DIR_PATH": str(job_dir / "wd"),
                "PYTHONUNBUFFERED": "1",  # the log streams as it is written
            }
        )
        env.update(self.extra_environment(name, experiment))
        return env

    def _upload_artifacts(self, name: str, workdir: Path) -> None:
        # ./outputs and ./logs are what Azure ML uploads to the run's artifacts at the end.
        for folder in ("outputs", "logs"):
            root = workdir / folder
            if not root.is_dir():
                continue
            for path in sorted(p for p in root.rglob("*") if p.is_file()):
                blob = f"{artifact_prefix(name)}/{folder}/{path.relative_to(root).as_posix()}"
                self.blobs.put(ARTIFACT_CONTAINER, blob, path.read_bytes(), "application/octet-stream", {})

    def _register_outputs(self, name: str, properties: dict[str, Any]) -> None:
        # The job wrote its named outputs straight into the blob folders; a blob is listed (and so downloaded)
        # only with its metadata, which put() writes.
        for output in properties.get("outputs") or {}:
            folder = job_command.output_folder(self.context, name, output)
            if output == "default" or not folder.is_dir():
                continue
            container = folder.relative_to(self.blobs.root).parts[0]
            for path in sorted(p for p in folder.rglob("*") if p.is_file()):
                blob = path.relative_to(self.blobs.root / container).as_posix()
                self.blobs.put(container, blob, path.read_bytes(), "application/octet-stream", {})


def _signal_group(process: subprocess.Popen[bytes], signum: int) -> None:
    if process.poll() is None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(process.pid, signum)


class LogWriter:
    """The job's log as one blob, rewritten at most every _LOG_FLUSH_S (each write keeps its metadata valid)."""

    def __init__(self, blobs: BlobStore, blob: str) -> None:
        self.blobs, self.blob = blobs, blob
        self._data = bytearray()
        self._last = 0.0
        self.flush()

    def write(self, chunk: bytes) -> None:
        self._data.extend(chunk)
        if time.monotonic() - self._last >= _LOG_FLUSH_S:
            self.flush()

    def flush(self) -> None:
        self.blobs.put(ARTIFACT_CONTAINER, self.blob, bytes(self._data), "text/plain; charset=utf-8", {})
        self._last = time.monotonic()

    def close(self) -> None:
        self.flush()

    def text(self) -> str:
        return self._data.decode(errors="replace")


def _write_interpreter_shim(path: Path) -> None:
    """`python` in a job is the service's interpreter, whatever PATH says.

    A script that execs it, not a symlink: a symlinked venv interpreter outside the venv no longer finds its
    `pyvenv.cfg`, so it would run without the venv's packages (torch among them).
    """
    path.write_text(f'#!/bin/sh\nexec {shlex.quote(sys.executable)} "$@"\n', encoding="utf-8")
    path.chmod(0o755)
