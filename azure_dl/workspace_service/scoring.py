"""The scoring front of the online endpoints: `POST {base}/inference/{endpoint}/score`, the endpoint's scoringUri.

It does what Azure's front does before and after a request reaches a container: authentication by the endpoint's
authMode (Key: the primary or secondary key; AMLToken: a token from POST .../token for this endpoint; AADToken: a
token from the service's identity endpoint) with 401 without one; routing - the `azureml-model-deployment` header
names the deployment, else the endpoint's traffic shares pick one at random by weight - and, for requests routed
by traffic, a copy to each mirror deployment with its mirror share as the chance, sent on its own thread and its
answer dropped (a header-routed request is not mirrored). Then the request goes to the deployment's azmlinfsrv
(deployment_processes.py), and the answer is Azure's (Microsoft Learn, "Troubleshoot online endpoints", HTTP
status codes): the container's 200 as it is; any other status of the container as 424 with the container's
status in `ms-azureml-model-error-statuscode`, its reason in `ms-azureml-model-error-reason` and its own body;
408 when the container takes longer than the deployment's request_timeout_ms; 429 beyond 2 x
max_concurrent_requests_per_instance x instance_count requests in flight; 503 while the deployment is starting
or after it failed; 502 when its server does not answer. During a rolling update (deployment_processes.py) the
serving group answers until the new one is ready, then the new one: a request never lands between the two. Every
answer names the deployment it reached in the `azureml-model-deployment` header, as Azure sends it. `_score`
handles one request from start to end.
"""

from __future__ import annotations

import base64
import contextlib
import hmac
import http.client
import json
import random
import threading
from typing import Any

from azure_dl.workspace_service import deployment_processes, endpoint_metrics, online_endpoints
from azure_dl.workspace_service.context import ServiceContext
from azure_dl.workspace_service.http import ApiError, Request, Response, Router
from azure_dl.workspace_service.identity import check_bearer

DEPLOYMENT_HEADER = "azureml-model-deployment"
MODEL_ERROR_STATUS_HEADER = "ms-azureml-model-error-statuscode"
MODEL_ERROR_REASON_HEADER = "ms-azureml-model-error-reason"


def _claims(token: str) -> dict[str, Any]:
    payload = token.split(".")[1]
    decoded: dict[str, Any] = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    return decoded


def check_caller(context: ServiceContext, endpoint: dict[str, Any], request: Request) -> None:
    """401 unless the request carries what the endpoint's authMode asks for."""
    name = endpoint["name"]
    scheme, _, secret = (request.header("Authorization") or "").partition(" ")
    if scheme.lower() != "bearer" or not secret:
        raise ApiError(401, "Unauthorized", f"endpoint {name} needs Authorization: Bearer <{endpoint['authMode']}>")
    if endpoint["authMode"] == "Key":
        if not any(hmac.compare_digest(secret, key) for key in endpoint["keys"].values()):
            raise ApiError(401, "Unauthorized", f"the key is not a key of endpoint {name} (keys may be regenerated)")
        return
    try:
        check_bearer(context, request)
    except ApiError as exc:
        raise ApiError(401, "Unauthorized", f"endpoint {name}: {exc.message}") from None
    if endpoint["authMode"] == "AMLToken" and _claims(secret).get("aud") != online_endpoints.token_audience(
        context, name
    ):
        raise ApiError(401, "Unauthorized", f"the token was issued for another endpoint, not {name}")


def pick_deployment(context: ServiceContext, endpoint: dict[str, Any], request: Request) -> str:
    """The deployment a request goes to: the header's, else one drawn by the traffic shares."""
    name = endpoint["name"]
    wanted = request.header(DEPLOYMENT_HEADER)
    if wanted:
        known = {record["name"] for record in online_endpoints.deployments_of(context, name)}
        if wanted not in known:
            raise ApiError(404, "DeploymentNotFound", f"endpoint {name} has no deployment {wanted!r}")
        return wanted
    traffic = {deployment: share for deployment, share in (endpoint.get("traffic") or {}).items() if share}
    if not traffic:
        raise ApiError(
            404,
            "NoTraffic",
            f"no deployment of endpoint {name} takes traffic: set the endpoint's traffic or send the "
            f"{DEPLOYMENT_HEADER} header",
        )
    deployments, weights = zip(*sorted(traffic.items()), strict=True)
    return str(random.choices(deployments, weights=weights)[0])


def _container_call(
    running: deployment_processes.Running, method: str, path: str, body: bytes, content_type: str | None
) -> tuple[int, str, bytes, str]:
    """(status, reason, body, content type) of the deployment's server; TimeoutError past its request timeout,
    OSError when it does not answer."""
    connection = http.client.HTTPConnection("127.0.0.1", running.port, timeout=running.timeout_s)
    try:
        headers = {"Content-Type": content_type or "application/json"}
        connection.request(method, path, body=body if method == "POST" else None, headers=headers)
        answer = connection.getresponse()
        return answer.status, answer.reason, answer.read(), answer.getheader("Content-Type") or "application/json"
    finally:
        connection.close()


def forward(
    context: ServiceContext, endpoint: str, deployment: str, request: Request, path: str = "/score"
) -> Response:
    """The front's answer for `request` sent to `deployment`'s server (see the module docstring for the mapping)."""
    where = f"deployment {deployment} of endpoint {endpoint}"
    while True:  # once more when a rolling update switched groups between the lookup and the admission
        running = deployment_processes.of(context).get(endpoint, deployment)
        if running is None or running.failed or not running.ready.is_set():
            state = "is starting" if running is not None and not running.failed else "is not running"
            reason = f" (it failed: {running.failed.splitlines()[0]})" if running is not None and running.failed else ""
            raise ApiError(503, "ServiceUnavailable", f"{where} {state}{reason}; see its logs (getLogs)")
        try:
            admitted = running.admit()
            break
        except deployment_processes.Retired:
            continue
    if not admitted:
        raise ApiError(
            429,
            "TooManyRequests",
            f"{where} has {running.capacity} requests in flight, its limit (2 x max_concurrent_requests_per_instance"
            " x instance_count); retry later, or raise those settings",
        )
    try:
        status, reason, data, content_type = _container_call(
            running, request.method, path, request.body, request.header("Content-Type")
        )
    except TimeoutError:
        raise ApiError(
            408,
            "RequestTimeout",
            f"{where} did not answer within its request_timeout_ms ({running.timeout_s * 1000:.0f} ms)",
        ) from None
    except OSError as exc:
        raise ApiError(502, "BadGateway", f"the inference server of {where} did not answer: {exc}") from None
    finally:
        running.release()
    if status == 200:
        return Response(200, data, {"Content-Type": content_type})
    model_error = {MODEL_ERROR_STATUS_HEADER: str(status), MODEL_ERROR_REASON_HEADER: reason or "model error"}
    return Response(424, data, {"Content-Type": content_type, **model_error})


def _mirror(context: ServiceContext, endpoint: dict[str, Any], request: Request) -> None:
    """Copies of a traffic-routed request to the mirror deployments, each with its share as the chance; the
    answers are dropped (so are errors: a mirror never changes what the client gets)."""
    for deployment, share in (endpoint.get("mirrorTraffic") or {}).items():
        if share and random.uniform(0, 100) < share:

            def _send(target: str = deployment) -> None:
                with contextlib.suppress(ApiError):
                    forward(context, endpoint["name"], target, request)

            threading.Thread(target=_send, name=f"mirror-{endpoint['name']}-{deployment}", daemon=True).start()


def register(router: Router, context: ServiceContext) -> None:
    def _score(request: Request) -> Response:
        """One scoring request: authenticate, route, mirror, forward, answer (also its errors, here)."""
        deployment: str | None = None
        try:
            endpoint = online_endpoints.find(context, request.params["endpoint"])
            check_caller(context, endpoint, request)
            deployment = pick_deployment(context, endpoint, request)
            if not request.header(DEPLOYMENT_HEADER):
                _mirror(context, endpoint, request)
            response = forward(context, endpoint["name"], deployment, request)
        except ApiError as exc:
            response = exc.response()
        if deployment is not None:
            response.headers[DEPLOYMENT_HEADER] = deployment
        return response

    def _swagger(request: Request) -> Response:
        endpoint = online_endpoints.find(context, request.params["endpoint"])
        check_caller(context, endpoint, request)
        deployment = pick_deployment(context, endpoint, request)
        return forward(context, endpoint["name"], deployment, request, "/swagger.json")

    prefix = online_endpoints.SCORING_PREFIX + "/{endpoint}"
    router.add("POST", prefix + "/score", endpoint_metrics.recorded(context, _score))
    router.add("GET", prefix + "/swagger.json", _swagger)
