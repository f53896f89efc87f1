"""MLflow behind the workspace: the tracking API under the workspace's azureml:// URI, forwarded to a real server.

The workspace's `mlFlowTrackingUri` is `azureml://127.0.0.1:PORT/mlflow/v1.0/subscriptions/.../workspaces/WS`.
azureml-mlflow (its `azureml` tracking-store plugin) turns it into `https://127.0.0.1:PORT/mlflow/v2.0/<same
scope>` (v2.0 for any MLflow 2.x/3.x) and sends MLflow's REST API under it (`.../api/2.0/mlflow/runs/get`, ...)
with a bearer token: from DefaultAzureCredential (scope `<resourceManager>/.default`), or inside a job the
MLFLOW_TRACKING_TOKEN the service signed (mlflow_runs.job_environment). Those requests are token-checked like every
other route and forwarded to the local `mlflow server` (mlflow_server.py); in the answers each run's
`artifact_uri` becomes `azureml://HOST/mlflow/v2.0/<scope>/experiments/EXP_ID/runs/RUN_ID/artifacts`, the form
Azure ML answers, so that MLflow picks azureml-mlflow's artifact repository and artifacts go through the
workspace's artifact service (mlflow_artifacts.py), not to the server's disk.

Refused with 501, naming the feature: MLflow 3 logged models (`mlflow.<flavor>.log_model`; Azure ML answers 404
there too; their search is forwarded, and finds none) and the mlflow-artifacts proxy (artifacts go through the
artifact service). The query string is forwarded as single-valued parameters (the router keeps the last value of a
repeated one).
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import urlencode

from azure_dl.workspace_service import mlflow_artifacts
from azure_dl.workspace_service.context import PROVIDER, ServiceContext
from azure_dl.workspace_service.http import ApiError, Request, Response, Router
from azure_dl.workspace_service.identity import authenticated
from azure_dl.workspace_service.mlflow_runs import MlflowTracking, mlflow_tracking_uri
from azure_dl.workspace_service.mlflow_server import MlflowServer
from azure_dl.workspace_service.workspaces import check_scope

HELPER = "mlflow"
API_VERSIONS = ("v1.0", "v2.0")
WORKSPACE_SCOPE = (
    "/subscriptions/{subscription}/resourceGroups/{group}/providers/" + PROVIDER + "/workspaces/{workspace}"
)
ROUTE = "/mlflow/{version}" + WORKSPACE_SCOPE + "/api/{endpoint:path}"
_UNSUPPORTED = {
    "2.0/mlflow/logged-models": "MLflow logged models (mlflow.<flavor>.log_model with MLflow 3; Azure ML answers "
    "404 for them too): log the model's files with mlflow.log_artifacts instead",
    "2.0/mlflow-artifacts": "the mlflow-artifacts proxy: artifacts go through the workspace's artifact service "
    "(use an azureml:// artifact URI, as azureml-mlflow does)",
}
# MLflow 3's list_artifacts / download_artifacts look for a logged model of the run first: the search answers
# (none, as none can be created here), so plain artifacts still list.
_ALLOWED = {"2.0/mlflow/logged-models/search"}

__all__ = ["finish_job_run", "job_environment", "mlflow_tracking_uri", "register", "tracking"]


def tracking(context: ServiceContext) -> MlflowTracking:
    """The running service's MLflow side (its server, and job runs)."""
    helper = context.helpers.get(HELPER)
    if not isinstance(helper, MlflowTracking):
        raise RuntimeError("mlflow_front.register has not run for this service context")
    return helper


def job_environment(
    context: ServiceContext, job_name: str, experiment_name: str, display_name: str | None = None
) -> dict[str, str]:
    """MLFLOW_* (and cloud) variables for job `job_name`'s process; creates its experiment and run if needed."""
    return tracking(context).job_environment(job_name, experiment_name, display_name)


def finish_job_run(context: ServiceContext, job_name: str, status: str) -> bool:
    """Mark the job's run FINISHED, FAILED or KILLED unless the job ended it itself; True if it changed."""
    return tracking(context).finish_job_run(job_name, status)


def artifact_uri(context: ServiceContext, experiment_id: str, run_id: str) -> str:
    return f"azureml://{context.host}/mlflow/v2.0{context.workspace_id}/experiments/{experiment_id}/runs/{run_id}/artifacts"


def _rewrite_artifact_uris(context: ServiceContext, document: Any) -> None:
    """Every run info in an answer gets the artifact URI of the workspace's artifact service."""
    if isinstance(document, dict):
        if "artifact_uri" in document and "run_id" in document and "experiment_id" in document:
            document["artifact_uri"] = artifact_uri(context, str(document["experiment_id"]), str(document["run_id"]))
        for value in document.values():
            _rewrite_artifact_uris(context, value)
    elif isinstance(document, list):
        for value in document:
            _rewrite_artifact_uris(context, value)


def _mlflow_error(error: ApiError) -> Response:
    # MLflow's clients read {"error_code", "message"}; the status code stays what the service means.
    codes = {501: "NOT_IMPLEMENTED", 503: "TEMPORARILY_UNAVAILABLE", 404: "ENDPOINT_NOT_FOUND"}
    body = {"error_code": codes.get(error.status, error.code), "message": error.message}
    return Response(error.status, json.dumps(body).encode(), {"Content-Type": "application/json"})


def register(router: Router, context: ServiceContext) -> None:
    server = MlflowServer(context.data_dir / "mlflow")
    server.start()  # in the background: requests that need it wait (mlflow_server.wait_ready)
    helper = MlflowTracking(context, server)
    context.helpers[HELPER] = helper

    def _forward(request: Request) -> Response:
        check_scope(context, request)
        endpoint = request.params["endpoint"]
        try:
            if request.params["version"] not in API_VERSIONS:
                raise ApiError(
                    404, "NotFound", f"MLflow API {request.params['version']} is not served (use v1.0 or v2.0)"
                )
            for prefix, feature in _UNSUPPORTED.items():
                if endpoint.startswith(prefix) and endpoint not in _ALLOWED:
                    raise ApiError(501, "NotImplemented", f"the local workspace does not serve {feature}")
            target = f"/api/{endpoint}" + (f"?{urlencode(request.query)}" if request.query else "")
            headers = {"Content-Type": request.header("Content-Type") or "application/json"}
            status, body, content_type = server.request(request.method, target, request.body, headers)
        except ApiError as exc:
            return _mlflow_error(exc)
        if status == 200 and content_type.startswith("application/json") and body:
            document = json.loads(body)
            _rewrite_artifact_uris(context, document)
            body = json.dumps(document).encode()
        return Response(status, body, {"Content-Type": content_type})

    for method in ("GET", "POST", "PATCH", "DELETE"):
        router.add(method, ROUTE, authenticated(context, _forward))
    mlflow_artifacts.register(router, context, lambda run_id: helper.get_run(run_id) is not None)
