"""Archiving a job: `jobs.archive(name)` / `jobs.restore(name)`, so the job list's ActiveOnly view hides it.

azure-ai-ml 1.35.2 (`JobOperations._archive_or_restore`) PATCHes run history's
`history/v1.0/.../experiments/{experiment}/runs/{run}` with `{"hidden": true|false}` (run history's `hidden` is the
job's `isArchived`, as ML Studio's Archive button sets it) and reads a Run back; only when that fails does it PUT
the job again. The flag lands in the job's `properties.isArchived`, which jobs.py answers and its list filters on
(`listViewType` ActiveOnly, the SDK's default, hides archived jobs; ArchivedOnly and All show them). A pipeline's
child cannot be archived on its own (the SDK refuses it before sending anything).
"""

from __future__ import annotations

from azure_dl.workspace_service import jobs
from azure_dl.workspace_service.context import PROVIDER, ServiceContext
from azure_dl.workspace_service.http import ApiError, Request, Response, Router, json_response, not_found
from azure_dl.workspace_service.identity import authenticated
from azure_dl.workspace_service.job_runner import KIND
from azure_dl.workspace_service.workspaces import check_scope

ROUTE = (
    "/history/v1.0/subscriptions/{subscription}/resourceGroups/{group}/providers/"
    + PROVIDER
    + "/workspaces/{workspace}/experiments/{experiment}/runs/{run}"
)


def register(router: Router, context: ServiceContext) -> None:
    def _patch(request: Request) -> Response:
        check_scope(context, request)
        name = request.params["run"]
        record = context.store.get(KIND, name)
        if record is None:
            raise not_found("run", name)
        document = request.json()
        unsupported = sorted(set(document) - {"hidden"}) if isinstance(document, dict) else None
        if unsupported is None or unsupported or not isinstance(document.get("hidden"), bool):
            raise ApiError(
                400,
                "UserError",
                f"run {name}: the local workspace service changes only `hidden` (archive/restore) on a run, "
                f"not {', '.join(unsupported or ['a body without a boolean hidden'])}",
            )
        # Through the runner's update (its lock), so a status change the job makes meanwhile is not lost.
        properties = {**record["properties"], "isArchived": document["hidden"]}
        record = jobs.runner_for(context).update(name, properties=properties)
        experiment = record["properties"].get("experimentName") or "Default"
        return json_response(
            200,
            {"runId": name, "experimentId": experiment, "status": record["status"], "hidden": document["hidden"]},
        )

    router.add("PATCH", ROUTE, authenticated(context, _patch))
