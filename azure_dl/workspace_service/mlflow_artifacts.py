"""Run artifacts as azureml-mlflow sends them: Azure ML's run-history artifact routes, files in the artifact store.

azureml-mlflow's artifact repository (`RunArtifactsClient`) does not use mlflow-artifacts: for a run it calls, under
the tracking host, `/history/v1.0/{workspace}/experiments/{experiment}/runs/{run}/artifacts`:
- `POST .../batch/metadata` with `{"paths": [{"path": P}]}`: registers the paths and answers, per path, an
  `artifactContentInformation` whose `contentUri` is a blob URL with a SAS; the client then uploads with
  azure-storage-blob (Put Blob) to that URL, i.e. to this service's blob routes (blobs.py);
- `GET .../artifacts` (list_in_container): every artifact of the run, `{"value": [Artifact], "nextLink"}`;
- `GET .../artifacts/contentinfo?path=P`: the `contentUri` to download P from (404 when there is none).
The blobs are `ExperimentRun/dcid.RUN/P` in the workspaceartifactstore container (origin `ExperimentRun`,
container `dcid.RUN`, as Azure ML names them), where `jobs.download(all=True)` looks for a job's artifacts.
`GET .../runs/{run}/token` refreshes a job's MLFLOW_TRACKING_TOKEN (azureml-mlflow asks ~95 s before it expires).
The experiment segment names the experiment by name or id (`experimentids/` routes): artifacts are keyed by run id
only, as run ids are unique in a workspace. Re-logging a path replaces the file (Azure ML would refuse it).
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

from azure_dl.workspace_service import datastores
from azure_dl.workspace_service.blobs import BlobStore
from azure_dl.workspace_service.context import PROVIDER, ServiceContext
from azure_dl.workspace_service.http import ApiError, Request, Response, Router, json_response, not_found
from azure_dl.workspace_service.identity import authenticated, issue_token
from azure_dl.workspace_service.mlflow_runs import JOB_TOKEN_RESOURCE
from azure_dl.workspace_service.workspaces import check_scope

ORIGIN = "ExperimentRun"
RUN_ROUTE = (
    "/history/v1.0/subscriptions/{subscription}/resourceGroups/{group}/providers/"
    + PROVIDER
    + "/workspaces/{workspace}/{experiments}/{experiment}/runs/{run}"
)


def run_prefix(run_id: str) -> str:
    """Where run `run_id`'s artifacts live in the artifact store container."""
    return f"{ORIGIN}/dcid.{run_id}"


def artifact_container(context: ServiceContext) -> str:
    record = context.store.get(datastores.KIND, datastores.ARTIFACT_DATASTORE)
    assert record is not None, "datastores.register seeds the artifact store"
    return str(record["containerName"])


def _iso(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp, UTC).isoformat().replace("+00:00", "Z")


class RunArtifacts:
    """The artifact routes' logic over the blob files of the artifact store."""

    def __init__(self, context: ServiceContext, run_exists: Callable[[str], bool]) -> None:
        self.context = context
        self.blobs = BlobStore(context.data_dir / "blobs")
        self.container = artifact_container(context)
        self.run_exists = run_exists

    def _blob_name(self, run_id: str, path: str) -> str:
        name = f"{run_prefix(run_id)}/{path.lstrip('/')}"
        try:
            self.blobs.data_path(self.container, name)
        except ValueError as exc:
            raise ApiError(400, "BadArgument", f"artifact path {path!r} of run {run_id}: {exc}") from exc
        return name

    def content_info(self, run_id: str, path: str) -> dict[str, Any]:
        sas = f"sv=2021-08-06&sr=b&sp=rcw&se=2099-01-01T00:00:00Z&sig={secrets.token_hex(16)}"
        blob = quote(self._blob_name(run_id, path), safe="/")
        return {
            "contentUri": f"{datastores.account_url(self.context)}/{self.container}/{blob}?{sas}",
            "origin": ORIGIN,
            "container": f"dcid.{run_id}",
            "path": path,
            "tags": {},
        }

    def artifact(self, run_id: str, path: str) -> dict[str, Any]:
        meta = self.blobs.meta(self.container, self._blob_name(run_id, path))
        file = self.blobs.data_path(self.container, self._blob_name(run_id, path))
        created = file.stat().st_mtime if file.is_file() else datetime.now(UTC).timestamp()
        return {
            "artifactId": f"{ORIGIN}/dcid.{run_id}/{path}",
            "origin": ORIGIN,
            "container": f"dcid.{run_id}",
            "path": path,
            "etag": meta["etag"] if meta else None,
            "createdTime": _iso(created),
            "dataPath": None,
            "tags": {},
        }

    def paths(self, run_id: str) -> list[str]:
        folder = self.blobs.data_path(self.container, run_prefix(run_id))
        if not folder.is_dir():
            return []
        return sorted(path.relative_to(folder).as_posix() for path in folder.rglob("*") if path.is_file())

    def batch_create(self, run_id: str, document: Any) -> dict[str, Any]:
        entries = document.get("paths") if isinstance(document, dict) else None
        if not isinstance(entries, list) or not all(isinstance(e, dict) and e.get("path") for e in entries):
            raise ApiError(400, "BadArgument", 'the body must be {"paths": [{"path": "..."}, ...]}')
        if not self.run_exists(run_id):
            raise not_found("run", run_id)
        paths = [str(entry["path"]) for entry in entries]
        return {
            "artifacts": {path: self.artifact(run_id, path) for path in paths},
            "artifactContentInformation": {path: self.content_info(run_id, path) for path in paths},
            "errors": {},
        }


def register(router: Router, context: ServiceContext, run_exists: Callable[[str], bool]) -> None:
    artifacts = RunArtifacts(context, run_exists)

    def _scoped(request: Request) -> str:
        check_scope(context, request)
        if request.params["experiments"].lower() not in ("experiments", "experimentids"):
            raise not_found("route", request.path)
        return request.params["run"]

    def _list(request: Request) -> Response:
        run_id = _scoped(request)
        value = [artifacts.artifact(run_id, path) for path in artifacts.paths(run_id)]
        return json_response(200, {"value": value, "continuationToken": None, "nextLink": None})

    def _content_info(request: Request) -> Response:
        run_id = _scoped(request)
        path = request.query.get("path", "")
        if not path:
            raise ApiError(400, "BadArgument", "contentinfo needs a `path` query parameter")
        if path not in artifacts.paths(run_id):
            raise not_found("artifact", f"{run_prefix(run_id)}/{path}")
        return json_response(200, artifacts.content_info(run_id, path))

    def _batch(request: Request) -> Response:
        run_id = _scoped(request)
        return json_response(200, artifacts.batch_create(run_id, request.json()))

    def _token(request: Request) -> Response:
        run_id = _scoped(request)
        if not run_exists(run_id):
            raise not_found("run", run_id)
        token, expires = issue_token(context, JOB_TOKEN_RESOURCE)
        return json_response(200, {"token": token, "expiryTimeUtc": _iso(expires)})

    router.add("GET", RUN_ROUTE + "/artifacts", authenticated(context, _list))
    router.add("GET", RUN_ROUTE + "/artifacts/contentinfo", authenticated(context, _content_info))
    router.add("POST", RUN_ROUTE + "/artifacts/batch/metadata", authenticated(context, _batch))
    router.add("GET", RUN_ROUTE + "/token", authenticated(context, _token))
