"""The scoring front of the online endpoints: `POST {base}/inference/{endpoint}/score`, the endpoint's scoringUri.

It does what Azure's front does before a request reaches a container: authentication by the endpoint's authMode
(Key: the primary or secondary key; AMLToken: a token from POST .../token for this endpoint; AADToken: a token
from the service's identity endpoint) with 401 without one, then routing - the `azureml-model-deployment` header
names the deployment, else the endpoint's traffic shares pick one at random by weight. Then it stops: no scoring
script runs behind it yet (online_deployments.py), so the answer is 501 naming the deployment it would have
reached (also in the `azureml-model-deployment` header, as Azure sends it). Never a hang.
"""

from __future__ import annotations

import base64
import hmac
import json
import random
from typing import Any

from azure_dl.workspace_service import endpoint_metrics, online_deployments, online_endpoints
from azure_dl.workspace_service.context import ServiceContext
from azure_dl.workspace_service.http import ApiError, Request, Response, Router, json_response
from azure_dl.workspace_service.identity import check_bearer

DEPLOYMENT_HEADER = "azureml-model-deployment"


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


def register(router: Router, context: ServiceContext) -> None:
    def _score(request: Request) -> Response:
        endpoint = online_endpoints.find(context, request.params["endpoint"])
        check_caller(context, endpoint, request)
        deployment = pick_deployment(context, endpoint, request)
        document = {
            "error": {
                "code": "NotImplemented",
                "message": online_deployments.not_running(endpoint["name"], deployment),
            }
        }
        return json_response(501, document, {DEPLOYMENT_HEADER: deployment})

    def _swagger(request: Request) -> Response:
        endpoint = online_endpoints.find(context, request.params["endpoint"])
        check_caller(context, endpoint, request)
        raise ApiError(
            501, "NotImplemented", f"endpoint {endpoint['name']}: no scoring script runs, so there is no swagger"
        )

    prefix = online_endpoints.SCORING_PREFIX + "/{endpoint}"
    router.add("POST", prefix + "/score", endpoint_metrics.recorded(context, _score))
    router.add("GET", prefix + "/swagger.json", _swagger)
