"""Job runs in MLflow, named as Azure ML names them: the run id is the job name.

Azure ML answers `get_run(JOB_NAME)` for a job's run and lists runs with job names as run ids; `run_name` is the
job's display name. The MLflow REST API cannot choose a run id (runs/create makes a uuid), so `ensure_run`
creates the run through the server and then renames it in the server's SQLite store, in one transaction, in
every table with a `run_uuid` column (a fresh run only has rows in `runs` and `tags`). Nobody else knows the uuid
yet, so nothing races the rename.

The jobs runner calls `job_environment` before it starts a job's process and `finish_job_run` after it ends:
see `MlflowTracking` (reached as `mlflow_front.tracking(context)`).
"""

from __future__ import annotations

import re
import sqlite3
import threading
import time
from typing import Any
from urllib.parse import quote

from azure_dl.errors import ConfigError
from azure_dl.workspace_service.context import ServiceContext
from azure_dl.workspace_service.identity import issue_token
from azure_dl.workspace_service.metadata import CLOUD_NAME, metadata_url
from azure_dl.workspace_service.mlflow_server import MlflowError, MlflowServer

# MLflow's own rule for run ids (mlflow.utils.validation._RUN_ID_REGEX); Azure ML job names fit it.
_RUN_ID = re.compile(r"^[a-zA-Z0-9][\w\-]{0,255}$")
TERMINAL_STATUSES = ("FINISHED", "FAILED", "KILLED")
JOB_TOKEN_RESOURCE = "https://ml.azure.localhost"


def mlflow_tracking_uri(context: ServiceContext) -> str:
    """The workspace's `mlFlowTrackingUri` (workspaces.py answers the same)."""
    return f"azureml://{context.host}/mlflow/v1.0{context.workspace_id}"


class MlflowTracking:
    """The MLflow side of the service: its server, and the runs of jobs."""

    def __init__(self, context: ServiceContext, server: MlflowServer) -> None:
        self.context = context
        self.server = server
        self._lock = threading.Lock()

    def stop(self) -> None:
        self.server.stop()

    def ensure_experiment(self, name: str) -> str:
        """The id of experiment `name`, created when missing."""
        try:
            found = self.server.call("GET", f"experiments/get-by-name?experiment_name={_quote(name)}")
            return str(found["experiment"]["experiment_id"])
        except MlflowError as exc:
            if exc.error_code != "RESOURCE_DOES_NOT_EXIST":
                raise
        try:
            return str(self.server.call("POST", "experiments/create", {"name": name})["experiment_id"])
        except MlflowError as exc:  # created meanwhile by another caller
            if exc.error_code != "RESOURCE_ALREADY_EXISTS":
                raise
            found = self.server.call("GET", f"experiments/get-by-name?experiment_name={_quote(name)}")
            return str(found["experiment"]["experiment_id"])

    def get_run(self, run_id: str) -> dict[str, Any] | None:
        try:
            run: dict[str, Any] = self.server.call("GET", f"runs/get?run_id={_quote(run_id)}")["run"]
        except MlflowError as exc:
            if exc.error_code == "RESOURCE_DOES_NOT_EXIST":
                return None
            raise
        return run

    def ensure_run(self, job_name: str, experiment_name: str, display_name: str | None = None) -> dict[str, Any]:
        """The run whose id is `job_name` (created RUNNING in `experiment_name` when missing)."""
        if not _RUN_ID.match(job_name):
            raise ConfigError(
                f"job name {job_name!r} cannot be an MLflow run id",
                hint="use letters, digits, '_' and '-' (starting with a letter or digit), at most 256 characters",
            )
        with self._lock:
            existing = self.get_run(job_name)
            if existing is not None:
                return existing
            experiment_id = self.ensure_experiment(experiment_name)
            created = self.server.call(
                "POST",
                "runs/create",
                {
                    "experiment_id": experiment_id,
                    "run_name": display_name or job_name,
                    "start_time": int(time.time() * 1000),
                    "tags": [{"key": "mlflow.user", "value": "azure-dl"}],
                },
            )
            self._rename(str(created["run"]["info"]["run_id"]), job_name)
            run = self.get_run(job_name)
            assert run is not None, "the run was renamed in the same store"
            return run

    def _rename(self, old: str, new: str) -> None:
        with sqlite3.connect(self.server.database, timeout=30) as connection:
            tables = [row[0] for row in connection.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
            for table in tables:
                columns = {row[1] for row in connection.execute(f'PRAGMA table_info("{table}")')}
                if "run_uuid" in columns:
                    connection.execute(f'UPDATE "{table}" SET run_uuid = ? WHERE run_uuid = ?', (new, old))
            connection.execute(
                "UPDATE runs SET artifact_uri = replace(artifact_uri, ?, ?) WHERE run_uuid = ?", (old, new, new)
            )
        connection.close()

    def job_environment(self, job_name: str, experiment_name: str, display_name: str | None = None) -> dict[str, str]:
        """Variables for a job's process so that a plain `mlflow.start_run()` there resumes the job's run.

        As Azure ML does inside a job: the workspace's azureml:// tracking URI, the experiment, MLFLOW_RUN_ID and a
        token (MLFLOW_TRACKING_TOKEN, which azureml-mlflow sends instead of asking a credential), plus what
        azureml-mlflow needs to find this cloud (AZUREML_CURRENT_CLOUD, ARM_CLOUD_METADATA_URL: without them it
        would ask management.azure.com, and check artifact URLs against Azure's storage suffix). The caller adds
        the CA bundle variables of connection.env.
        """
        self.ensure_run(job_name, experiment_name, display_name)
        token, expires = issue_token(self.context, JOB_TOKEN_RESOURCE)
        return {
            "MLFLOW_TRACKING_URI": mlflow_tracking_uri(self.context),
            "MLFLOW_EXPERIMENT_NAME": experiment_name,
            "MLFLOW_RUN_ID": job_name,
            "MLFLOW_TRACKING_TOKEN": token,
            "AZUREML_CURRENT_CLOUD": CLOUD_NAME,
            "ARM_CLOUD_METADATA_URL": metadata_url(self.context),
            # The token's expiry, as Azure ML hands it to jobs; azureml-mlflow refreshes before it (token route).
            "AZUREML_RUN_TOKEN_EXPIRY": str(expires),
        }

    def finish_job_run(self, job_name: str, status: str) -> bool:
        """End the job's run with `status` (FINISHED, FAILED or KILLED) unless the job ended it; True if changed."""
        if status not in TERMINAL_STATUSES:
            raise ValueError(f"status {status!r} is not one of {', '.join(TERMINAL_STATUSES)}")
        run = self.get_run(job_name)
        if run is None or run["info"]["status"] in TERMINAL_STATUSES:
            return False
        self.server.call(
            "POST",
            "runs/update",
            {"run_id": job_name, "status": status, "end_time": int(time.time() * 1000)},
        )
        return True


def _quote(value: str) -> str:
    return quote(value, safe="")
