"""The scoring processes behind the online deployments: one azmlinfsrv process group per deployment.

A deployment PUT starts `backends/local/endpoints.LocalEndpoint` (the real inference server, through
endpoint_launcher.py, on 127.0.0.1 and a free port) with the deployment's OWN code - the code asset's uploaded
files (`codeConfiguration.codeId` -> its container under DIR/blobs) and `codeConfiguration.scoringScript` in it -
and the registered model's files as AZUREML_MODEL_DIR (`properties.model` -> the model version's datastore path
under DIR/blobs), with the deployment's `environmentVariables` (and, with `appInsightsEnabled`, azmlinfsrv's
Application Insights settings, pointing at this service: app_insights.py). The environment asset is not built:
the server runs in the service's own Python, which has azmlinfsrv (the log says so). Workers: `sku.capacity`
(instance_count) x the deployment's WORKER_COUNT (default 1), all in that one process group - an instance is one
gunicorn worker here, not a VM. Readiness is azmlinfsrv's `GET /` answering "Healthy"; an init() that raises
exits the worker, and the deployment fails with the log's last lines as its error.

An update of a running deployment rolls over, as Azure's does (it reserves 20% extra instances "for performing
upgrades", Microsoft Learn, "Virtual machine quota allocation for deployment"): the new process group starts beside
the old one, which keeps answering; once the new one is healthy the scoring front's route switches to it in one
step, and the old one takes no new request, finishes those it has, and stops. If the new one fails init() or never
answers, it is stopped and the old one keeps serving (the deployment's operation and state say Failed, with the
log's tail). A newer update while one is rolling replaces the new group, never the serving one.

`Processes` is kept in `context.helpers` (so service.stop() stops every process group, serving or starting);
delete of a deployment or of its endpoint stops that deployment's groups. The logs are
DIR/deployments/ENDPOINT/DEPLOYMENT/server.log, and server.N.log for the group of the N-th rolling update (so a failed
update's error is its own log's tail); getLogs reads them in that order (`log_files`).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from azure_dl.backends.local import endpoints as local_endpoints
from azure_dl.errors import AzureDLError
from azure_dl.workspace_service import app_insights, codes, data_collection, models
from azure_dl.workspace_service.context import ServiceContext
from azure_dl.workspace_service.http import ApiError

WORKER_COUNT_ENV = "WORKER_COUNT"
STARTUP_TIMEOUT_S = 120.0
STOP_GRACE_S = 5.0  # a deleted deployment's in-flight requests get this long to finish
LOG_FILE = "server.log"
# Azure admits at most 2 x max_concurrent_requests_per_instance x instance_count requests to a deployment at a
# time and answers 429 to the rest (Microsoft Learn, "Troubleshoot online endpoints", HTTP status codes).
ADMISSION_FACTOR = 2


@dataclass
class Running:
    """One deployment's process group, as the scoring front sees it."""

    endpoint: str
    deployment: str
    server: local_endpoints.LocalEndpoint
    log_path: Path
    capacity: int
    timeout_s: float
    ready: threading.Event = field(default_factory=threading.Event)
    failed: str | None = None
    retired: bool = False  # replaced by a rolled-over group: takes no new request
    _in_flight: int = 0
    _lock: threading.Condition = field(default_factory=threading.Condition)

    @property
    def port(self) -> int:
        return self.server.spec.port

    def admit(self) -> bool:
        """Take one of the deployment's request slots; False when all are taken (the caller answers 429).
        Retired when the group was replaced meanwhile: the caller asks Processes for the current one."""
        with self._lock:
            if self.retired:
                raise Retired(self.deployment)
            if self._in_flight >= self.capacity:
                return False
            self._in_flight += 1
            return True

    def release(self) -> None:
        with self._lock:
            self._in_flight -= 1
            self._lock.notify_all()

    def retire(self) -> None:
        """Take no new request, wait (bounded by the request timeout) for those in flight, then stop the group."""
        with self._lock:
            self.retired = True
            self._lock.wait_for(lambda: self._in_flight <= 0, timeout=self.timeout_s + 1)
        self.server.stop(grace_s=STOP_GRACE_S)


class Retired(Exception):
    """A request reached a process group that a rolling update had just replaced."""


def log_dir(context: ServiceContext, endpoint: str, deployment: str) -> Path:
    return context.data_dir / "deployments" / endpoint / deployment


def log_files(directory: Path) -> list[Path]:
    """A deployment's server logs, oldest group first: server.log, then server.N.log of each rolling update."""
    stem, suffix = Path(LOG_FILE).stem, Path(LOG_FILE).suffix
    numbers = {path: path.stem.rsplit(".", 1)[1] for path in directory.glob(f"{stem}.*{suffix}")}
    ordered = sorted((path for path, n in numbers.items() if n.isdigit()), key=lambda path: int(numbers[path]))
    return ([directory / LOG_FILE] if (directory / LOG_FILE).is_file() else []) + ordered


def _duration_s(value: Any, default: float) -> float:
    """Seconds of an ISO 8601 duration as the SDK writes them (PT5S, PT0.5S, PT1M30S, P1DT2H); `default` if none."""
    if not isinstance(value, str) or not value.upper().startswith("P"):
        return default
    text = value.upper()[1:]
    days, _, clock = text.partition("T")
    total = 0.0
    try:
        if days:
            total += float(days.rstrip("D")) * 86400
        number = ""
        for char in clock:
            if char.isdigit() or char == ".":
                number += char
                continue
            total += float(number) * {"H": 3600, "M": 60, "S": 1}[char]
            number = ""
    except (ValueError, KeyError):
        return default
    return total


def _code_folder(context: ServiceContext, where: str, code_id: str) -> Path:
    """The uploaded files of the code version `code_id` (an ARM id): its folder under DIR/blobs."""
    parts = code_id.rstrip("/").split("/")
    if "codes" not in parts or "versions" not in parts:
        raise ApiError(400, "BadArgument", f"{where}: codeConfiguration.codeId {code_id!r} is not a code version id")
    name, version = parts[parts.index("codes") + 1], parts[parts.index("versions") + 1]
    record = context.store.get(codes.KIND, f"{name}/{version}")
    if record is None:
        raise ApiError(400, "BadArgument", f"{where}: code {name}:{version} does not exist in this workspace")
    # codeUri = https://HOST/ACCOUNT/CONTAINER/FOLDER (path-style, datastores.account_url): the blobs under DIR.
    segments = urlsplit(str(record["properties"].get("codeUri") or "")).path.strip("/").split("/")[1:]
    root = (context.data_dir / "blobs").resolve()
    folder = root.joinpath(*segments).resolve()
    if not segments or not folder.is_relative_to(root) or not folder.is_dir():
        raise ApiError(400, "BadArgument", f"{where}: code {name}:{version} has no uploaded files in this workspace")
    return folder


def _model(context: ServiceContext, where: str, model_id: Any) -> tuple[Path | None, str, str]:
    """(the model version's files, its name, its version); no files for a deployment without a model."""
    if not model_id:
        return None, "model", "1"
    parts = str(model_id).rstrip("/").split("/")
    if "models" not in parts or "versions" not in parts or "registries" in parts:
        raise ApiError(
            501,
            "NotImplemented",
            f"{where}: model {model_id} is not a model version of this workspace; the local workspace service "
            "serves workspace models only (register it here first)",
        )
    name, version = parts[parts.index("models") + 1], parts[parts.index("versions") + 1]
    record = models.find_version(context, name, version)
    files = models.local_files(context, record["properties"]["modelUri"]) if record else None
    if files is None or not files.is_dir():
        raise ApiError(400, "BadArgument", f"{where}: model {name}:{version} has no files in this workspace")
    return files, name, version


def server_spec(
    context: ServiceContext, endpoint: str, name: str, properties: Mapping[str, Any], capacity: int
) -> local_endpoints.ServerSpec:
    """What LocalEndpoint runs for a deployment's properties: its code, scoring script, model and variables; an
    ApiError naming the value for anything it cannot run (checked before the PUT is answered)."""
    where = f"deployment {name} of endpoint {endpoint}"
    configuration = properties.get("codeConfiguration") or {}
    if not configuration.get("codeId") or not configuration.get("scoringScript"):
        raise ApiError(
            501,
            "NotImplemented",
            f"{where}: deployments without code_configuration (no-code MLflow deployments) are not run by the "
            "local workspace service; give code_configuration with code and scoring_script",
        )
    code = _code_folder(context, where, str(configuration["codeId"]))
    script = str(configuration["scoringScript"])
    if not (code / script).resolve().is_relative_to(code.resolve()) or not (code / script).is_file():
        raise ApiError(400, "BadArgument", f"{where}: scoring script {script!r} is not a file of the uploaded code")
    model_dir, model_name, model_version = _model(context, where, properties.get("model"))
    if model_dir is None:  # Azure still sets AZUREML_MODEL_DIR; an empty folder stands in for it
        model_dir = log_dir(context, endpoint, name) / "no-model"
        model_dir.mkdir(parents=True, exist_ok=True)
    variables = {str(k): str(v) for k, v in (properties.get("environmentVariables") or {}).items()}
    # As on Azure, the platform's Application Insights settings win over the deployment's own variables.
    enabled = bool(properties.get("appInsightsEnabled"))
    variables.update(app_insights.deployment_environment(context, endpoint, name, enabled=enabled))
    variables.update(data_collection.environment(context, endpoint, name, properties, log_dir(context, endpoint, name)))
    per_instance = variables.get(WORKER_COUNT_ENV, "1")
    if not per_instance.isdigit() or int(per_instance) < 1:
        raise ApiError(400, "BadArgument", f"{where}: {WORKER_COUNT_ENV}={per_instance!r}; give a whole number >= 1")
    return local_endpoints.ServerSpec(
        model_dir=model_dir,
        task="custom",  # unused: the scoring script is named
        model_name=model_name,
        model_version=model_version,
        port=local_endpoints.free_port(),
        workers=capacity * int(per_instance),
        code_dir=code,
        scoring_script=script,
        environment=variables,
    )


def limits(properties: Mapping[str, Any], capacity: int) -> tuple[int, float]:
    """(requests admitted at once, seconds a request may take) from requestSettings, with Azure's defaults."""
    settings = properties.get("requestSettings") or {}
    per_instance = settings.get("maxConcurrentRequestsPerInstance") or 1
    timeout_s = _duration_s(settings.get("requestTimeout"), 5.0)
    return ADMISSION_FACTOR * int(per_instance) * capacity, timeout_s


# What a deployment's process group is made of (server_spec); a PUT that changes none of these starts no new group.
# What the processes are started from (server_spec): Application Insights and data collection become variables.
_RUN_BY = (
    "codeConfiguration",
    "model",
    "environmentId",
    "environmentVariables",
    "appInsightsEnabled",
    "dataCollector",
)


def runs_the_same(before: Mapping[str, Any], after: Mapping[str, Any]) -> bool:
    """Whether two records of a deployment run the same processes: its code, model, environment, variables,
    Application Insights and data collection settings and instance count are unchanged (what else a PUT may
    change - scale settings, probes, request settings, tags - the service keeps, or applies to the serving group
    in place)."""
    same_properties = all(before["properties"].get(key) == after["properties"].get(key) for key in _RUN_BY)
    return same_properties and before["sku"]["capacity"] == after["sku"]["capacity"] and before["state"] == "Succeeded"


class Processes:
    """The running deployments, by "ENDPOINT/DEPLOYMENT": the group that serves, and one being rolled in."""

    def __init__(self) -> None:
        self._running: dict[str, Running] = {}
        self._rolling: dict[str, Running] = {}  # started by an update, not yet serving
        self._retiring: list[Running] = []  # replaced by an update, finishing their requests
        self._lock = threading.Lock()

    def get(self, endpoint: str, deployment: str) -> Running | None:
        """The group the scoring front sends the deployment's requests to."""
        with self._lock:
            return self._running.get(f"{endpoint}/{deployment}")

    def rolling(self, endpoint: str, deployment: str) -> Running | None:
        """The group an update is starting (None when no update is rolling)."""
        with self._lock:
            return self._rolling.get(f"{endpoint}/{deployment}")

    def start(
        self,
        running_spec: local_endpoints.ServerSpec,
        endpoint: str,
        deployment: str,
        log_path: Path,
        limit: tuple[int, float],
        on_done: Callable[[str | None], None],
    ) -> Running:
        """Start a process group for the deployment and wait for it on a thread; `on_done(None)` once it is ready
        (and serving), `on_done(error message)` if it exits or never answers. A deployment whose group serves is
        rolled over (the module docstring); otherwise the new group replaces whatever was there."""
        key = f"{endpoint}/{deployment}"
        log_path.parent.mkdir(parents=True, exist_ok=True)
        with self._lock:
            serving = self._running.get(key)
            roll = serving is not None and serving.ready.is_set() and not serving.failed
            if roll:  # a log of its own, so that a failure's tail is its own lines, not the serving group's
                log_path = log_path.with_name(f"{log_path.stem}.{len(log_files(log_path.parent))}{log_path.suffix}")
            running = Running(
                endpoint, deployment, local_endpoints.LocalEndpoint(running_spec, log_path=log_path), log_path, *limit
            )
            superseded = self._rolling.pop(key, None)
            replaced = None if roll else self._running.pop(key, None)
            (self._rolling if roll else self._running)[key] = running
            log_path.touch()
        for old in (superseded, replaced):
            if old is not None:
                old.server.stop(grace_s=STOP_GRACE_S)
        with log_path.open("a", encoding="utf-8") as log:
            log.write(
                f"azure-dl local workspace service: starting azmlinfsrv for deployment {deployment} of endpoint "
                f"{endpoint} with {running_spec.workers} worker(s) on 127.0.0.1:{running_spec.port}, scoring "
                f"script {running_spec.scoring_script}"
                + ("; rolling update: the serving group answers until this one is ready" if roll else "")
                + "; the environment asset is not built, the server runs in the service's Python\n"
            )

        def _fail(message: str) -> None:
            running.failed = message
            running.server.stop(grace_s=0)
            with self._lock:
                if self._rolling.get(key) is running:  # a failed update: the serving group stays
                    del self._rolling[key]
            on_done(message)

        def _wait() -> None:
            try:
                running.server.start()
                if not self._holds(key, running):  # deleted or replaced while it was starting
                    running.server.stop(grace_s=0)
                    return
                running.server.wait_ready(STARTUP_TIMEOUT_S)
            except AzureDLError as exc:
                _fail(exc.message)
                return
            except Exception as exc:  # any start failure fails the operation, never the thread
                _fail(f"{type(exc).__name__}: {exc}")
                return
            running.ready.set()
            with self._lock:  # the switch: from here on the front routes to the new group
                old = self._running.get(key) if self._rolling.get(key) is running else None
                if old is not None:
                    self._running[key] = self._rolling.pop(key)
                    self._retiring.append(old)  # until it has stopped: service.stop() must find it
            on_done(None)
            if old is not None:
                with log_path.open("a", encoding="utf-8") as log:
                    log.write(
                        f"azure-dl local workspace service: deployment {deployment} now answers on port "
                        f"{running_spec.port}; the group on port {old.port} finishes its requests and stops\n"
                    )
                try:
                    old.retire()
                finally:
                    with self._lock:
                        self._retiring.remove(old)

        threading.Thread(target=_wait, name=f"deployment-{endpoint}-{deployment}", daemon=True).start()
        return running

    def _holds(self, key: str, running: Running) -> bool:
        with self._lock:
            return self._running.get(key) is running or self._rolling.get(key) is running

    def stop_one(self, endpoint: str, deployment: str) -> None:
        """Stop the deployment's groups: the serving one and one being rolled in."""
        key = f"{endpoint}/{deployment}"
        with self._lock:
            groups = [self._running.pop(key, None), self._rolling.pop(key, None)]
            groups += [r for r in self._retiring if (r.endpoint, r.deployment) == (endpoint, deployment)]
        for running in groups:
            if running is not None:
                running.server.stop(grace_s=STOP_GRACE_S)

    def stop(self) -> None:
        with self._lock:
            keys = set(self._running) | set(self._rolling)
            retiring = list(self._retiring)
        for key in keys:
            endpoint, _, deployment = key.partition("/")
            self.stop_one(endpoint, deployment)
        for running in retiring:  # stop() is idempotent: its retire() thread may be stopping it too
            running.server.stop(grace_s=0)

    def pids(self, endpoint: str, deployment: str) -> list[int]:
        """The process-group ids the deployment has now (serving, rolling in, retiring): what must stop."""
        key = f"{endpoint}/{deployment}"
        with self._lock:
            groups = [self._running.get(key), self._rolling.get(key)]
            groups += [r for r in self._retiring if (r.endpoint, r.deployment) == (endpoint, deployment)]
        return [r.server.process.pid for r in groups if r is not None and r.server.process is not None]


HELPER = "deployments"  # its name in context.helpers
_CREATE_LOCK = threading.Lock()


def of(context: ServiceContext) -> Processes:
    """The service's Processes, made (and put in context.helpers, so service.stop() stops them) on first use."""
    with _CREATE_LOCK:
        processes = context.helpers.get(HELPER)
        if not isinstance(processes, Processes):
            processes = context.helpers[HELPER] = Processes()
        return processes
