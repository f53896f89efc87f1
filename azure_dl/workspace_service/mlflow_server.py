"""The real MLflow tracking server behind the service: `python -m mlflow server` as a child process group.

It runs from the service's own interpreter on a SQLite file under DIR/mlflow/, bound to 127.0.0.1 on a free port.
Starting takes seconds (imports, and the schema migrations on a fresh database: about 10 s measured here on a
loaded 2-core machine), so `start()` only launches it and a thread waits for `/health`; callers that need it
call `wait_ready()`, bounded, which raises `ApiError(503)` with the log's tail when it never comes up.
`stop()` sends SIGTERM to the whole group (the CLI starts uvicorn as a grandchild), then SIGKILL.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from azure_dl.workspace_service.http import ApiError

HOST = "127.0.0.1"
READY_TIMEOUT_S = 90.0  # how long a request waits for a server that is still starting
STOP_GRACE_S = 5.0
LOG_FILE = "server.log"
DATABASE_FILE = "mlflow.db"


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((HOST, 0))
        port: int = probe.getsockname()[1]
        return port


class MlflowServer:
    """One `mlflow server` for the service's lifetime; `port` is known once start() returns."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.port = 0
        self._process: subprocess.Popen[bytes] | None = None
        self._ready = threading.Event()
        self._failure: str | None = None
        self._stopping = False

    @property
    def database(self) -> Path:
        return self.root / DATABASE_FILE

    @property
    def log_path(self) -> Path:
        return self.root / LOG_FILE

    def start(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        self.port = _free_port()
        command = [
            sys.executable,
            "-m",
            "mlflow",
            "server",
            "--backend-store-uri",
            f"sqlite:///{self.database}",
            # Never handed to clients: the front rewrites every run's artifact_uri to the workspace's
            # artifact service (mlflow_artifacts.py). Runs created behind its back would write here.
            "--default-artifact-root",
            str(self.root / "artifacts"),
            "--no-serve-artifacts",
            "--host",
            HOST,
            "--port",
            str(self.port),
            "--workers",
            "1",
        ]
        env = {key: value for key, value in os.environ.items() if not key.startswith("MLFLOW_")}
        with self.log_path.open("ab") as log:
            self._process = subprocess.Popen(
                command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env, start_new_session=True
            )
        threading.Thread(target=self._watch_start, name="mlflow-server-start", daemon=True).start()

    def _healthy(self) -> bool:
        connection = http.client.HTTPConnection(HOST, self.port, timeout=2)
        try:
            connection.request("GET", "/health")
            return connection.getresponse().status == 200
        except OSError:
            return False
        finally:
            connection.close()

    def _watch_start(self) -> None:
        deadline = time.monotonic() + READY_TIMEOUT_S
        process = self._process
        assert process is not None
        while time.monotonic() < deadline and not self._stopping:
            if process.poll() is not None:
                self._failure = f"mlflow server exited with status {process.returncode} before it answered"
                break
            if self._healthy():
                self._ready.set()
                return
            time.sleep(0.2)
        else:
            if not self._stopping:
                self._failure = f"mlflow server did not answer on {HOST}:{self.port} within {READY_TIMEOUT_S:.0f} s"
        self._ready.set()  # wake the waiters: they read _failure

    def _log_tail(self) -> str:
        with contextlib.suppress(OSError):
            return self.log_path.read_text(errors="replace")[-800:]
        return ""

    def wait_ready(self, timeout: float = READY_TIMEOUT_S) -> None:
        """Return once the server answers; ApiError(503) naming why and where the log is otherwise."""
        if self._process is None or self._stopping:
            raise ApiError(503, "ServiceUnavailable", "the local MLflow tracking server is not running")
        if not self._ready.wait(timeout):
            raise ApiError(
                503,
                "ServiceUnavailable",
                f"the local MLflow tracking server is still starting after {timeout:.0f} s; retry "
                f"(its log: {self.log_path})",
            )
        if self._failure is not None:
            raise ApiError(
                503,
                "ServiceUnavailable",
                f"{self._failure}; its log ({self.log_path}) ends with: {self._log_tail()}",
            )

    def request(self, method: str, target: str, body: bytes, headers: dict[str, str]) -> tuple[int, bytes, str]:
        """One HTTP exchange with the server: (status, body, content type)."""
        self.wait_ready()
        connection = http.client.HTTPConnection(HOST, self.port, timeout=120)
        try:
            connection.request(method, target, body=body or None, headers=headers)
            response = connection.getresponse()
            return response.status, response.read(), response.getheader("Content-Type") or "application/json"
        except OSError as exc:
            raise ApiError(
                503, "ServiceUnavailable", f"the local MLflow tracking server did not answer {target}: {exc}"
            ) from exc
        finally:
            connection.close()

    def call(self, method: str, endpoint: str, document: dict[str, Any] | None = None) -> dict[str, Any]:
        """An MLflow REST call (`endpoint` such as "runs/get?run_id=X") answered 200, as JSON; else ApiError."""
        body = json.dumps(document).encode() if document is not None else b""
        status, data, _ = self.request(
            method, f"/api/2.0/mlflow/{endpoint}", body, {"Content-Type": "application/json"}
        )
        answer: dict[str, Any] = json.loads(data) if data else {}
        if status != 200:
            raise MlflowError(status, str(answer.get("error_code", "")), str(answer.get("message", data[:300])))
        return answer

    def stop(self) -> None:
        self._stopping = True
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=STOP_GRACE_S)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=STOP_GRACE_S)
        # The group may outlive its leader (uvicorn's worker): make sure nothing of it is left.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)


class MlflowError(Exception):
    """An MLflow REST error (`error_code` as MLflow names it, e.g. RESOURCE_DOES_NOT_EXIST)."""

    def __init__(self, status: int, error_code: str, message: str) -> None:
        super().__init__(f"{error_code}: {message}")
        self.status = status
        self.error_code = error_code
        self.message = message
