"""Application Insights for the online deployments: the ingestion endpoint their telemetry is sent to.

On Azure a deployment with `app_insights_enabled` sends its telemetry to the workspace's Application Insights:
azmlinfsrv turns it on when AML_APP_INSIGHTS_ENABLED=true and AML_APP_INSIGHTS_KEY (an instrumentation key) are
set, and sends through azure-monitor-opentelemetry-exporter, which takes its ingestion endpoint from
APPLICATIONINSIGHTS_CONNECTION_STRING when the key alone names none. Here that endpoint is this service, so the
same server code sends the same telemetry: a request item per scoring call (duration, result code, success) and a
trace item per line the scoring script prints or logs, and exceptions.

`POST /appinsights/v2.1/track` is Application Insights' track API (a JSON array of envelopes, or one per line;
answered with itemsReceived / itemsAccepted / errors, 206 when some were refused). Each accepted envelope is
appended to DIR/app-insights/telemetry.jsonl, as it arrived. No bearer token is asked for: the instrumentation
key in each envelope is what Application Insights checks, and an envelope with another key is refused.
"""

from __future__ import annotations

import gzip
import json
import threading
import uuid
from pathlib import Path
from typing import Any

from azure_dl.workspace_service import tls
from azure_dl.workspace_service.context import ServiceContext
from azure_dl.workspace_service.http import ApiError, Request, Response, Router, json_response

TRACK_PATH = "/appinsights/v2.1/track"
TELEMETRY_FILE = Path("app-insights") / "telemetry.jsonl"
# Statsbeat is the exporter's own usage telemetry, sent to Microsoft's endpoints: unreachable here, and not the
# user's telemetry.
_STATSBEAT_OFF = "APPLICATIONINSIGHTS_STATSBEAT_DISABLED_ALL"
_WRITE_LOCK = threading.Lock()


def instrumentation_key(context: ServiceContext) -> str:
    """The workspace's Application Insights key: a UUID fixed by the workspace's id, as a real one is per resource."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL, context.workspace_id.lower() + "/applicationInsights"))


def telemetry_path(context: ServiceContext) -> Path:
    return context.data_dir / TELEMETRY_FILE


def deployment_environment(context: ServiceContext, endpoint: str, deployment: str, *, enabled: bool) -> dict[str, str]:
    """The variables that turn azmlinfsrv's Application Insights client on (sending here) or explicitly off."""
    if not enabled:
        return {"AML_APP_INSIGHTS_ENABLED": "false"}
    key = instrumentation_key(context)
    bundle = str(tls.bundle_path(context.data_dir / "tls"))
    return {
        "AML_APP_INSIGHTS_ENABLED": "true",
        "AML_APP_INSIGHTS_KEY": key,
        "APPLICATIONINSIGHTS_CONNECTION_STRING": (
            f"InstrumentationKey={key};IngestionEndpoint={context.base_url}/appinsights"
        ),
        _STATSBEAT_OFF: "true",
        # azmlinfsrv writes these into every item ("Workspace Name", "Service Name", the cloud role): here they say
        # which deployment sent it.
        "WORKSPACE_NAME": context.workspace,
        "SERVICE_NAME": f"{endpoint}/{deployment}",
        "REQUESTS_CA_BUNDLE": bundle,  # the exporter posts through requests, which must trust this service
    }


def _envelopes(request: Request) -> list[Any]:
    body = request.body
    if (request.header("Content-Encoding") or "").lower() == "gzip":
        try:
            body = gzip.decompress(body)
        except OSError as exc:
            raise ApiError(400, "BadRequest", f"the body says gzip and is not: {exc}") from exc
    text = body.decode("utf-8", errors="replace").strip()
    if not text:
        raise ApiError(400, "BadRequest", "no telemetry items in the body; send a JSON array of envelopes")
    try:
        document = json.loads(text)
    except ValueError:
        try:  # the track API also takes one envelope per line
            document = [json.loads(line) for line in text.splitlines() if line.strip()]
        except ValueError as exc:
            raise ApiError(400, "BadRequest", f"the body is neither a JSON array nor JSON lines: {exc}") from exc
    return document if isinstance(document, list) else [document]


def register(router: Router, context: ServiceContext) -> None:
    key = instrumentation_key(context)

    def _track(request: Request) -> Response:
        items = _envelopes(request)
        accepted: list[Any] = []
        errors = []
        for index, item in enumerate(items):
            item_key = item.get("iKey") if isinstance(item, dict) else None
            if item_key == key:
                accepted.append(item)
            else:
                errors.append(
                    {"index": index, "statusCode": 400, "message": f"Invalid instrumentation key {item_key!r}"}
                )
        if accepted:
            path = telemetry_path(context)
            path.parent.mkdir(parents=True, exist_ok=True)
            with _WRITE_LOCK, path.open("a", encoding="utf-8") as out:
                out.writelines(json.dumps(item, separators=(",", ":")) + "\n" for item in accepted)
        answer = {"itemsReceived": len(items), "itemsAccepted": len(accepted), "errors": errors}
        return json_response(206 if errors else 200, answer)

    router.add("POST", TRACK_PATH, _track)
