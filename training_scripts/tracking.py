"""MLflow tracking for the training scripts: rank 0 only, mlflow imported lazily, a no-op where it is missing.

Where runs go: ``MLFLOW_TRACKING_URI`` unchanged when set (Azure ML sets it inside jobs; the azure-dl CLI sets an
absolute one locally); otherwise a SQLite file ``mlflow.db`` in the working directory (absolute URI). A new
experiment created here on a SQLite store keeps its artifacts beside the database, in ``mlartifacts/``.

Which run: ``MLFLOW_RUN_ID`` when set (an Azure ML job's own run), else the run recorded in the checkpoint being
resumed, else a new run in the experiment named by ``MLFLOW_EXPERIMENT_NAME`` or by the caller.

Only plain artifacts are logged (files and folders): with MLflow 3.x, ``mlflow.<flavor>.log_model`` against an
Azure ML workspace fails with a 404 on the logged-models API. Parameters are flattened (``a.b``) and anything that
looks like a secret (keys, tokens, passwords, connection strings, SAS) is left out or redacted. A tracking error
never stops training: it becomes one warning per operation.

Usage::

    with Tracker("resnet", enabled=ctx.is_main) as tracker:
        tracker.start(resume_run_id)      # optional: the first log call starts a new run otherwise
        tracker.log_params(vars(args))
        tracker.log_metrics({"val_loss": 0.3}, step=1)
        tracker.log_artifacts(output_dir)
    # leaving the block ends the run: FINISHED, or FAILED on an exception (KILLED on Ctrl-C)
"""

from __future__ import annotations

import itertools
import os
import re
from collections.abc import Mapping
from pathlib import Path
from types import ModuleType, TracebackType
from typing import Any
from urllib.parse import unquote, urlparse

from training_scripts import progress

REDACTED = "<redacted>"
_SECRET_WORDS = {
    "key",
    "apikey",
    "token",
    "secret",
    "password",
    "passwd",
    "pwd",
    "sas",
    "credential",
    "credentials",
    "connection",
    "connectionstring",
    "signature",
    "auth",
    "authorization",
}
# Values that carry a secret whatever their key is called: storage connection strings and SAS query strings.
_SECRET_VALUE = re.compile(r"(AccountKey=|SharedAccessKey=|SharedAccessSignature=|[?&]sig=|password=)", re.IGNORECASE)
_MAX_PARAM_LENGTH = 6000  # MLflow's limit on a parameter value


def is_secret_key(key: str) -> bool:
    """True for names like api_key, sas_token, storage.AccountKey, DB_PASSWORD, connection_string."""
    spaced = re.sub(r"([a-z0-9])([A-Z])", r"\1_\2", key)  # camelCase -> camel_Case
    words = [word.lower() for word in re.split(r"[^A-Za-z0-9]+", spaced) if word]
    joined_pairs = (first + second for first, second in itertools.pairwise(words))  # "api key" -> "apikey"
    return any(word in _SECRET_WORDS for word in (*words, *joined_pairs))


def flatten_params(params: Mapping[str, Any], prefix: str = "") -> dict[str, str]:
    """Nested dicts become dotted keys; secret-looking keys are dropped and secret-looking values redacted."""
    flat: dict[str, str] = {}
    for key, value in params.items():
        name = f"{prefix}{key}"
        if is_secret_key(str(key)):
            continue
        if isinstance(value, Mapping):
            flat.update(flatten_params(value, prefix=f"{name}."))
            continue
        text = str(value)
        if _SECRET_VALUE.search(text):
            text = REDACTED
        flat[name] = text if len(text) <= _MAX_PARAM_LENGTH else text[: _MAX_PARAM_LENGTH - 3] + "..."
    return flat


def tracking_uri() -> str:
    """MLFLOW_TRACKING_URI unchanged, else sqlite:///<absolute working directory>/mlflow.db."""
    configured = os.environ.get("MLFLOW_TRACKING_URI")
    if configured:
        return configured
    return f"sqlite:///{(Path.cwd() / 'mlflow.db').resolve()}"


def _sqlite_artifact_location(uri: str) -> str | None:
    if not uri.startswith("sqlite:///"):
        return None
    database = Path(unquote(urlparse(uri).path))
    return (database.parent / "mlartifacts").resolve().as_uri()


def _import_mlflow() -> ModuleType | None:
    try:
        import mlflow
    except ImportError:
        return None
    return mlflow


class Tracker:
    """One MLflow run for one training; every method is a no-op when disabled (ranks other than 0, no mlflow)."""

    def __init__(self, experiment: str, *, enabled: bool = True, run_name: str | None = None) -> None:
        self.experiment = os.environ.get("MLFLOW_EXPERIMENT_NAME") or experiment
        self.run_name = run_name
        self.enabled = enabled
        self.run_id: str | None = None
        self.tracking_uri: str | None = None
        self._mlflow: ModuleType | None = None
        self._started = False
        self._warned: set[str] = set()
        if enabled:
            self._mlflow = _import_mlflow()
            if self._mlflow is None:
                self.enabled = False
                progress.warning("mlflow is not installed: metrics, parameters and artifacts are not tracked")

    @property
    def active(self) -> bool:
        return self.enabled and self._started

    def _warn_once(self, operation: str, exc: BaseException) -> None:
        if operation not in self._warned:
            self._warned.add(operation)
            progress.warning(
                f"MLflow {operation} failed, training goes on untracked there: {type(exc).__name__}: {exc}"
            )

    def start(self, resume_run_id: str | None = None) -> str | None:
        """Open the run (MLFLOW_RUN_ID > `resume_run_id` > a new run); returns its id. Idempotent."""
        if not self.enabled or self._started:
            return self.run_id
        mlflow = self._mlflow
        assert mlflow is not None
        self._started = True
        uri = tracking_uri()
        if not os.environ.get("MLFLOW_TRACKING_URI"):
            mlflow.set_tracking_uri(uri)
        self.tracking_uri = uri
        env_run = os.environ.get("MLFLOW_RUN_ID")
        try:
            if env_run:
                run = mlflow.start_run(run_id=env_run)
            elif resume_run_id:
                try:
                    run = mlflow.start_run(run_id=resume_run_id)
                except Exception as exc:
                    progress.warning(
                        f"the checkpoint's MLflow run {resume_run_id} cannot be reopened at {uri} "
                        f"({type(exc).__name__}); logging to a new run"
                    )
                    run = self._start_new_run(mlflow, uri)
            else:
                run = self._start_new_run(mlflow, uri)
        except Exception as exc:
            self._warn_once("start_run", exc)
            self.enabled = False
            return None
        self.run_id = run.info.run_id
        return self.run_id

    def _start_new_run(self, mlflow: ModuleType, uri: str) -> Any:
        if mlflow.get_experiment_by_name(self.experiment) is None:
            mlflow.create_experiment(self.experiment, artifact_location=_sqlite_artifact_location(uri))
        experiment = mlflow.set_experiment(self.experiment)
        return mlflow.start_run(experiment_id=experiment.experiment_id, run_name=self.run_name)

    def _call(self, operation: str, *args: Any, **kwargs: Any) -> None:
        if not self.enabled:
            return
        if not self._started:
            self.start()
        if not self.enabled or self._mlflow is None:
            return
        try:
            getattr(self._mlflow, operation)(*args, **kwargs)
        except Exception as exc:
            self._warn_once(operation, exc)

    def log_params(self, params: Mapping[str, Any]) -> None:
        """Flattened, secrets left out. Re-logging a param with a new value on a resumed run only warns."""
        flat = flatten_params(params)
        if flat:
            self._call("log_params", flat)

    def log_metrics(self, metrics: Mapping[str, float | int | None], step: int | None = None) -> None:
        """Numbers only; None (e.g. an undefined AUROC) is left out."""
        numeric = {
            key: float(value)
            for key, value in metrics.items()
            if isinstance(value, int | float) and not isinstance(value, bool)
        }
        if numeric:
            self._call("log_metrics", numeric, step=step)

    def log_artifact(self, path: str | os.PathLike[str], artifact_path: str | None = None) -> None:
        self._call("log_artifact", str(path), artifact_path=artifact_path)

    def log_artifacts(self, directory: str | os.PathLike[str], artifact_path: str | None = None) -> None:
        self._call("log_artifacts", str(directory), artifact_path=artifact_path)

    def set_tags(self, tags: Mapping[str, Any]) -> None:
        self._call("set_tags", {key: str(value) for key, value in flatten_params(tags).items()})

    def end(self, status: str = "FINISHED") -> None:
        """End the run with FINISHED, FAILED or KILLED (safe to call twice)."""
        if not self.active or self._mlflow is None:
            return
        try:
            self._mlflow.end_run(status=status)
        except Exception as exc:
            self._warn_once("end_run", exc)
        self._started = False
        self.enabled = False

    def __enter__(self) -> Tracker:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, traceback: TracebackType | None
    ) -> None:
        if exc_type is None:
            self.end("FINISHED")
        elif issubclass(exc_type, KeyboardInterrupt):
            self.end("KILLED")
        else:
            # An exception may say how its run ended (engine.TrainingInterrupted: KILLED, resumable).
            self.end(getattr(exc_type, "mlflow_status", "FAILED"))
