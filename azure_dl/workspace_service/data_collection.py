"""Model data collection for the local deployments: the collection agent a deployment's `Collector` sends to,
writing what Azure writes - JSON lines in the workspace blob store at
`modelDataCollector/{endpoint}/{deployment}/{collection}/yyyy/MM/dd/HH/{instance}.jsonl`.

How azureml-ai-monitoring 1.0.0 sends (its source: config/config.py, worker/sender.py): the scoring process reads
the collections from the JSON file named by AZUREML_MDC_CONFIG_PATH (`{"collections": {NAME: {"enabled": true,
"sampleRatePercentage": P}}, "runMode": "cloud"}`) and POSTs each collected DataFrame, as `to_json(orient=
"records")`, from a thread of its own to `http://AZUREML_MDC_HOST:AZUREML_MDC_PORT/modeldata/log` (default
127.0.0.1:50011: the agent beside the container on Azure), with CloudEvents headers: `ce-type`
(`azureml.inference.{collection}`), `trace-id` (the event id), `ce-time` (epoch seconds), `ce-x-request-id` (the
correlation id), `ce-model-version`, `ce-collect-data-type`, `ce-agent`. That transport is plain HTTP on loopback,
so the service is the agent itself: each deployment with an enabled collection gets its own small HTTP server on
127.0.0.1 and a free port (the agent learns the deployment from the port, as Azure's agent knows its pod), and
the deployment's process gets the three variables. What it writes follows Microsoft Learn's "Collect production
data from models deployed for real-time inferencing" (Blob storage output/format): one JSON object per line with
specversion, id, source (the deployment's ARM id), type, datacontenttype, time, data, correlationid, xrequestid,
modelversion, collectdatatype, agent, contentrange; folders rolled by the data_collector's rolling rate (Hour by
default); one file per agent start and folder. The blobs are written through blobs.BlobStore, so the blob routes
(and the SDK's datastore paths, and the data assets the SDK registers, `{endpoint}-{deployment}-{collection}`)
read them.

The PUT's `dataCollector` is checked here (a 400 naming the value) and answered in the REST model's spelling
(dataCollectionMode Enabled/Disabled: azure-ai-ml reads back only "Enabled" as enabled). Payload logging
(collections `request` / `response`, which Azure's front logs without the scoring script) is a 501 naming it: the
local scoring front does not log payloads. Agents live until the service stops (kept in context.helpers).
"""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from azure_dl.workspace_service import datastores
from azure_dl.workspace_service.blobs import BlobStore
from azure_dl.workspace_service.context import ServiceContext
from azure_dl.workspace_service.http import ApiError

CONFIG_PATH_ENV = "AZUREML_MDC_CONFIG_PATH"
HOST_ENV = "AZUREML_MDC_HOST"
PORT_ENV = "AZUREML_MDC_PORT"
CONFIG_FILE = "mdc-config.json"
ROOT = "modelDataCollector"
LOG_PATH = "/modeldata/log"
EVENT_PREFIX = "azureml.inference."
PAYLOAD_COLLECTIONS = ("request", "response")
# Folder per rolling rate (the REST model's RollingRateType), by the event's UTC time.
ROLLING = {"Year": "%Y", "Month": "%Y/%m", "Day": "%Y/%m/%d", "Hour": "%Y/%m/%d/%H", "Minute": "%Y/%m/%d/%H/%M"}
SHOWN = {"Year": "yyyy", "Month": "yyyy/MM", "Day": "yyyy/MM/dd", "Hour": "yyyy/MM/dd/HH", "Minute": "yyyy/MM/dd/HH/mm"}
DEFAULT_ROLLING = "Hour"
LOG_FILE = "server.log"  # deployment_processes.LOG_FILE (which imports this module)
HELPER = "data-collection"


def checked(where: str, properties: Mapping[str, Any]) -> dict[str, Any]:
    """The deployment properties with `dataCollector` checked and spelled as the REST model spells it."""
    collector = properties.get("dataCollector")
    if collector is None:
        return dict(properties)
    collections = collector.get("collections") if isinstance(collector, dict) else None
    if not isinstance(collections, dict) or not collections:
        raise ApiError(400, "BadArgument", f"{where}: dataCollector.collections must name at least one collection")
    rolling = str(collector.get("rollingRate") or DEFAULT_ROLLING).capitalize()
    if rolling not in ROLLING:
        raise ApiError(
            400, "BadArgument", f"{where}: dataCollector.rollingRate {rolling!r}: give one of {', '.join(ROLLING)}"
        )
    spelled = {}
    for name, collection in collections.items():
        settings = collection if isinstance(collection, dict) else {}
        mode = str(settings.get("dataCollectionMode") or "Disabled").capitalize()
        if mode not in ("Enabled", "Disabled"):
            raise ApiError(
                400, "BadArgument", f"{where}: collection {name}: dataCollectionMode {mode!r} is not Enabled/Disabled"
            )
        rate = settings.get("samplingRate")
        if rate is not None and (not isinstance(rate, int | float) or not 0 <= rate <= 1):
            raise ApiError(400, "BadArgument", f"{where}: collection {name}: samplingRate {rate!r} is not 0.0-1.0")
        if mode == "Enabled" and str(name).lower() in PAYLOAD_COLLECTIONS:
            raise ApiError(
                501,
                "NotImplemented",
                f"{where}: payload logging (collection {name!r}) is not done by the local workspace service; "
                "collect model_inputs/model_outputs from the scoring script (azureml-ai-monitoring's Collector)",
            )
        spelled[name] = {**settings, "dataCollectionMode": mode, "samplingRate": 1.0 if rate is None else rate}
    return {**properties, "dataCollector": {**collector, "collections": spelled, "rollingRate": rolling}}


def _enabled(properties: Mapping[str, Any]) -> dict[str, float]:
    """{collection: sampling rate} of the enabled collections."""
    collections = (properties.get("dataCollector") or {}).get("collections") or {}
    return {
        str(name): float(settings.get("samplingRate", 1.0))
        for name, settings in collections.items()
        if str(settings.get("dataCollectionMode", "")).lower() == "enabled"
    }


def container(context: ServiceContext) -> str:
    """The default datastore's (workspaceblobstore's) container: where Azure writes collected data by default."""
    record = context.store.get(datastores.KIND, datastores.DEFAULT_DATASTORE) or {}
    return str(record.get("containerName") or f"azureml-blobstore-{context.workspace}")


def local_folder(context: ServiceContext, endpoint: str, deployment: str, collection: str) -> Path:
    """A collection's files on disk (DIR/blobs/CONTAINER/modelDataCollector/E/D/COLLECTION)."""
    return context.data_dir / "blobs" / container(context) / ROOT / endpoint / deployment / collection


class Agent:
    """One deployment's collection agent: POST /modeldata/log -> a JSON line in its rolled blob."""

    def __init__(self, context: ServiceContext, endpoint: str, deployment: str) -> None:
        self.context, self.endpoint, self.deployment = context, endpoint, deployment
        self.collections: set[str] = set()
        self.rolling = DEFAULT_ROLLING
        self.instance = uuid.uuid4().hex  # Azure's {instance_id}: one file per agent start and folder
        self.blobs = BlobStore(context.data_dir / "blobs")
        self._lock = threading.Lock()
        agent = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                status, message = agent.receive(self.path, dict(self.headers.items()), self.rfile.read(length))
                body = message.encode()
                self.send_response(status)
                self.send_header("Content-Type", "text/plain; charset=utf-8")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass  # one line per request would double the deployment's log

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = int(self.server.server_address[1])
        threading.Thread(target=self.server.serve_forever, name=f"mdc-{endpoint}-{deployment}", daemon=True).start()

    @property
    def container(self) -> str:
        return container(self.context)

    def folder(self, collection: str) -> str:
        """The blob prefix of a collection (what the SDK registers as the collection's data asset path)."""
        return f"{ROOT}/{self.endpoint}/{self.deployment}/{collection}"

    def receive(self, path: str, headers: Mapping[str, str], body: bytes) -> tuple[int, str]:
        lower = {key.lower(): value for key, value in headers.items()}
        event_type = lower.get("ce-type", "")
        collection = event_type.removeprefix(EVENT_PREFIX)
        if path.split("?", 1)[0] != LOG_PATH or not event_type.startswith(EVENT_PREFIX):
            return 400, f"POST {LOG_PATH} with ce-type {EVENT_PREFIX}COLLECTION expected, got {path} {event_type!r}"
        if collection not in self.collections:
            return 400, f"collection {collection!r} is not enabled for deployment {self.deployment}"
        content_type = lower.get("content-type", "application/json")
        try:
            data: Any = json.loads(body) if content_type.startswith("application/json") else body.decode()
        except (ValueError, UnicodeDecodeError) as exc:
            return 400, f"the payload is not {content_type}: {exc}"
        try:
            seconds = float(lower.get("ce-time") or datetime.now(UTC).timestamp())
        except ValueError:
            return 400, f"ce-time {lower.get('ce-time')!r} is not epoch seconds"
        when = datetime.fromtimestamp(seconds, UTC)
        correlation = lower.get("ce-x-request-id")
        event = {
            "specversion": "1.0",
            "id": lower.get("trace-id") or str(uuid.uuid4()),
            "source": f"{self.context.workspace_id}/onlineEndpoints/{self.endpoint}/deployments/{self.deployment}",
            "type": event_type,
            "datacontenttype": content_type,
            "time": when.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "data": data,
            "correlationid": correlation,
            "xrequestid": correlation,
            "modelversion": lower.get("ce-model-version"),
            "collectdatatype": lower.get("ce-collect-data-type"),
            "agent": lower.get("ce-agent"),
            "contentrange": f"bytes 0-{max(len(body) - 1, 0)}/{len(body)}",
        }
        name = f"{self.folder(collection)}/{when.strftime(ROLLING[self.rolling])}/{self.instance}.jsonl"
        line = (json.dumps(event, separators=(",", ":")) + "\n").encode()
        with self._lock:  # a blob is rewritten whole (BlobStore keeps its ETag and MD5 beside it)
            current = self.blobs.data_path(self.container, name)
            existing = current.read_bytes() if current.is_file() else b""
            self.blobs.put(self.container, name, existing + line, "application/jsonl", {})
        return 200, "accepted"

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class Agents:
    """The service's agents by "ENDPOINT/DEPLOYMENT" (in context.helpers, so service.stop() stops them)."""

    def __init__(self) -> None:
        self._agents: dict[str, Agent] = {}
        self._lock = threading.Lock()

    def get(self, endpoint: str, deployment: str) -> Agent | None:
        with self._lock:
            return self._agents.get(f"{endpoint}/{deployment}")

    def ensure(self, context: ServiceContext, endpoint: str, deployment: str) -> Agent:
        with self._lock:
            agent = self._agents.get(f"{endpoint}/{deployment}")
            if agent is None:
                agent = self._agents[f"{endpoint}/{deployment}"] = Agent(context, endpoint, deployment)
            return agent

    def stop(self) -> None:
        with self._lock:
            agents, self._agents = list(self._agents.values()), {}
        for agent in agents:
            agent.stop()


_CREATE_LOCK = threading.Lock()


def agents(context: ServiceContext) -> Agents:
    with _CREATE_LOCK:
        found = context.helpers.get(HELPER)
        if not isinstance(found, Agents):
            found = context.helpers[HELPER] = Agents()
        return found


def environment(
    context: ServiceContext, endpoint: str, deployment: str, properties: Mapping[str, Any], folder: Path
) -> dict[str, str]:
    """The variables a deployment's scoring process gets for its enabled collections (none: {}), with its agent
    started and the library's config file written under `folder` (the deployment's log folder). The deployment's
    log (getLogs) says where the data lands, once per agent start or change of collections."""
    enabled = _enabled(properties)
    if not enabled:
        return {}
    agent = agents(context).ensure(context, endpoint, deployment)
    rolling = str((properties.get("dataCollector") or {}).get("rollingRate") or DEFAULT_ROLLING)
    changed = (agent.collections, agent.rolling) != (set(enabled), rolling)
    agent.collections, agent.rolling = set(enabled), rolling
    folder.mkdir(parents=True, exist_ok=True)
    config = {
        "collections": {name: {"enabled": True, "sampleRatePercentage": rate * 100} for name, rate in enabled.items()},
        "runMode": "cloud",
    }
    (folder / CONFIG_FILE).write_text(json.dumps(config, indent=1), encoding="utf-8")
    if changed:
        base = local_folder(context, endpoint, deployment, "COLLECTION").parent
        with (folder / LOG_FILE).open("a", encoding="utf-8") as log:
            log.write(
                f"azure-dl local workspace service: model data collection ({', '.join(sorted(enabled))}) writes "
                f"JSON lines to {base}/COLLECTION/{SHOWN[rolling]}/ = azureml://datastores/"
                f"{datastores.DEFAULT_DATASTORE}/paths/{ROOT}/{endpoint}/{deployment}/COLLECTION\n"
            )
    return {CONFIG_PATH_ENV: str(folder / CONFIG_FILE), HOST_ENV: "127.0.0.1", PORT_ENV: str(agent.port)}
