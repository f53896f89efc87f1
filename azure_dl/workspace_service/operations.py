"""Long-running operations as Azure ML's management front end answers them: the status and result routes, and the
headers a PUT/DELETE/POST that starts one carries.

The live service answers an online endpoint PUT with 201, `Azure-AsyncOperation` (a `mfeOperationsStatus` URL),
`Location` (the resource) and `x-ms-async-operation-timeout: PT30M`; the client polls the status URL until
`status` is terminal, then GETs the resource (Azure/azure-sdk-assets python/sdk/ml/azure-ai-ml/tests/recordings/
online_services/e2etests/test_online_endpoint.pyTestOnlineEndpointtest_online_endpoint_e2e.json; trimmed copy:
tests/fixtures/recordings/online_endpoint_create.json). Most work here (recording the resource) is done before
the answer, so the first poll finds it finished; a deployment that starts its scoring processes answers at once
and its operation stays "Updating" until they are ready (`started` / `complete`; the recorded deployment polls,
tests/fixtures/recordings/online_deployment_create.json). One header is added: `Retry-After: 1`. The live
answers carry none, so azure-core would wait its default polling interval (30 s for these clients, 5 s where
azure-ai-ml passes one) before each poll; an operation that is already done need not make a test or a user wait
that long, and a running one's polls carry it too.
Operations are kept under kind "operations" (id -> status document), so a poll after a restart still answers.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from azure_dl.workspace_service.context import LOCATION, PROVIDER, ServiceContext
from azure_dl.workspace_service.http import Request, Response, Router, json_response, not_found
from azure_dl.workspace_service.identity import authenticated

KIND = "operations"
API_VERSION = "2022-02-01-preview"  # the api-version the recorded status URLs carry
RETRY_AFTER_S = "1"  # an integer: the generated clients deserialize this header as int
_NEVER = "0001-01-01T00:00:00+00:00"  # the live service's endTime of an unfinished operation


def _now() -> str:
    return datetime.now(UTC).isoformat()


def _status_path(context: ServiceContext, operation_id: str, kind: str) -> str:
    return f"/subscriptions/{context.subscription_id}/providers/{PROVIDER}/locations/{LOCATION}/{kind}/{operation_id}"


def status_url(context: ServiceContext, operation_id: str) -> str:
    """The Azure-AsyncOperation URL of operation `operation_id` (also in a deployment's properties, as recorded)."""
    return f"{context.base_url}{_status_path(context, operation_id, 'mfeOperationsStatus')}?api-version={API_VERSION}"


def started(context: ServiceContext, resource_url: str) -> tuple[str, dict[str, str]]:
    """Record an operation that is still running (status "Updating" and the endTime of an unfinished one, as
    recorded) and return its id and the headers that announce it; `complete()` ends it."""
    operation_id = f"oeidp:{uuid.uuid4()}:{uuid.uuid4()}"
    document: dict[str, Any] = {
        "id": _status_path(context, operation_id, "mfeOperationsStatus"),
        "name": operation_id,
        "startTime": _now(),
        "endTime": _NEVER,
        "percentComplete": 0.0,
        "status": "Updating",  # what the live service answers while an operation runs (recorded)
    }
    context.store.put(KIND, operation_id, document)
    return operation_id, {
        "Azure-AsyncOperation": status_url(context, operation_id),
        "Location": resource_url,
        "x-ms-async-operation-timeout": "PT30M",
        "Retry-After": RETRY_AFTER_S,
    }


def complete(context: ServiceContext, operation_id: str, *, error: dict[str, str] | None = None) -> None:
    """End operation `operation_id`: Succeeded, or Failed with `error` ({"code", "message"})."""
    document = context.store.get(KIND, operation_id)
    if document is None or document["status"] != "Updating":  # unknown, or ended already (a restart's re-run)
        return
    document.update({"endTime": _now(), "percentComplete": 1.0, "status": "Failed" if error else "Succeeded"})
    if error:
        document["error"] = error
    context.store.put(KIND, operation_id, document)


def finished(
    context: ServiceContext,
    resource_url: str,
    *,
    error: dict[str, str] | None = None,
) -> dict[str, str]:
    """Record an operation that is already over (Succeeded, or Failed with `error`) and return the headers that
    announce it: Azure-AsyncOperation, Location and the timeout, as the live service sends them."""
    operation_id, headers = started(context, resource_url)
    complete(context, operation_id, error=error)
    return headers


def result_location(context: ServiceContext, headers: dict[str, str]) -> dict[str, str]:
    """The headers of a POST or DELETE: Location names the operation's result (a POST's final GET reads it)."""
    operation_id = headers["Azure-AsyncOperation"].rsplit("/", 1)[1].split("?", 1)[0]
    path = _status_path(context, operation_id, "mfeOperationResults")
    return {**headers, "Location": f"{context.base_url}{path}?api-version={API_VERSION}"}


def register(router: Router, context: ServiceContext) -> None:
    route = "/subscriptions/{subscription}/providers/" + PROVIDER + "/locations/{location}"

    def _operation(request: Request) -> dict[str, Any]:
        if request.params["subscription"].lower() != context.subscription_id.lower():
            raise not_found("subscription", request.params["subscription"])
        document = context.store.get(KIND, request.params["operation"])
        if document is None:
            raise not_found("operation", request.params["operation"])
        return document

    def _status(request: Request) -> Response:
        document = _operation(request)
        # While it runs, each poll says when to poll again (else azure-core waits its default interval, 5-30 s).
        headers = {"Retry-After": RETRY_AFTER_S} if document["status"] == "Updating" else {}
        return json_response(200, document, headers)

    def _result(request: Request) -> Response:
        document = _operation(request)
        if document["status"] == "Failed":
            return json_response(400, {"error": document["error"]})
        return json_response(200, {})

    router.add("GET", route + "/mfeOperationsStatus/{operation}", authenticated(context, _status))
    router.add("GET", route + "/mfeOperationResults/{operation}", authenticated(context, _result))
