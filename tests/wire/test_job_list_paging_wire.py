"""`ml_client.jobs.list()` pages as Azure does: a page of jobs, newest first, and a nextLink the SDK follows;
archived jobs leave the default list; the asset lists page the same way.

Azure's page holds 50 items (paging.py); the test lowers it through AZURE_DL_SERVE_PAGE_SIZE (read per
request), so that the jobs in the run's service, five quick ones at least, span three or four pages.
"""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from azure_dl.workspace_service.job_runner import KIND
from azure_dl.workspace_service.paging import PAGE_SIZE_VARIABLE, TOKEN_PARAMETER
from azure_dl.workspace_service.service import WorkspaceService
from tests.wire.test_recorded_shapes import _send


def _quick_job(ml_client: Any, tag: str) -> str:
    from azure.ai.ml import command

    job = command(command="true", environment="azureml:AzureML-sklearn-1.5:1", tags={"paging": tag})
    job.name = f"page-{uuid.uuid4().hex[:10]}"
    return str(ml_client.jobs.create_or_update(job).name)


def _expected_order(service: WorkspaceService) -> list[str]:
    assert service.context is not None
    records = [
        r for r in service.context.store.list(KIND) if not r.get("parent") and not r["properties"].get("isArchived")
    ]
    records.sort(key=lambda r: (r["createdAt"], r["name"]), reverse=True)
    return [r["name"] for r in records]


def test_the_sdk_follows_next_links_and_lists_every_job_once_newest_first(
    ml_client: Any, workspace_service: WorkspaceService, monkeypatch: pytest.MonkeyPatch
) -> None:
    tag = uuid.uuid4().hex[:8]
    created = [_quick_job(ml_client, tag) for _ in range(5)]
    # Three or four pages whatever the run's earlier tests left in the shared service (each page is a request).
    size = max(2, -(-len(_expected_order(workspace_service)) // 3))
    monkeypatch.setenv(PAGE_SIZE_VARIABLE, str(size))

    listed = [job.name for job in ml_client.jobs.list()]

    assert len(listed) == len(set(listed)), f"a job was listed twice: {listed}"
    assert listed == _expected_order(workspace_service)
    assert [name for name in listed if name in created] == created[::-1]

    # The wire: a full page, a nextLink shaped as Azure's (same query, plus $skipToken), no nextLink at the end.
    assert workspace_service.context is not None
    url = f"{workspace_service.context.workspace_id}/jobs?api-version=2025-12-01&listViewType=ActiveOnly"
    status, _, first = _send(workspace_service, "GET", url)
    assert status == 200 and len(first["value"]) == size
    base, query = first["nextLink"].split("?", 1)
    assert base == workspace_service.context.base_url + url.split("?")[0]
    assert query.startswith("api-version=2025-12-01&listViewType=ActiveOnly&" + TOKEN_PARAMETER + "=")
    pages = [first]
    while "nextLink" in pages[-1]:
        _, _, following = _send(workspace_service, "GET", pages[-1]["nextLink"].removeprefix(base.split("/sub")[0]))
        pages.append(following)
    assert "nextLink" not in pages[-1]  # as Azure answers a last page
    assert [job["name"] for page in pages for job in page["value"]] == listed


def test_a_token_this_service_did_not_hand_out_is_a_400_naming_it(workspace_service: WorkspaceService) -> None:
    assert workspace_service.context is not None
    url = f"{workspace_service.context.workspace_id}/jobs?api-version=2025-12-01&$skipToken=not-a-token!"
    status, _, body = _send(workspace_service, "GET", url)
    assert status == 400
    assert "not-a-token!" in body["error"]["message"]


def test_an_unknown_list_view_type_is_a_400(workspace_service: WorkspaceService) -> None:
    assert workspace_service.context is not None
    url = f"{workspace_service.context.workspace_id}/jobs?api-version=2025-12-01&listViewType=Everything"
    status, _, body = _send(workspace_service, "GET", url)
    assert status == 400
    assert "Everything" in body["error"]["message"]


def test_an_archived_job_leaves_the_default_list_and_comes_back_on_restore(ml_client: Any) -> None:
    from azure.ai.ml.constants import ListViewType

    name = _quick_job(ml_client, "archive")
    ml_client.jobs.archive(name)
    # The default list is every job of the run's shared service: it is read once (the archived-only list is short).
    assert name not in [job.name for job in ml_client.jobs.list()]
    assert name in [job.name for job in ml_client.jobs.list(list_view_type=ListViewType.ARCHIVED_ONLY)]
    ml_client.jobs.restore(name)
    assert name not in [job.name for job in ml_client.jobs.list(list_view_type=ListViewType.ARCHIVED_ONLY)]


def test_environment_lists_page_too(ml_client: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """The asset lists share the paging (models, data, components and environments): environments stand for them."""
    from azure.ai.ml.entities import Environment

    name = f"page-env-{uuid.uuid4().hex[:8]}"
    for version in ("1", "2", "3"):
        ml_client.environments.create_or_update(
            Environment(
                name=name, version=version, image=f"mcr.microsoft.com/azureml/openmpi4.1.0-ubuntu20.04:{version}"
            )
        )
    monkeypatch.setenv(PAGE_SIZE_VARIABLE, "1")

    assert [env.version for env in ml_client.environments.list(name)] == ["3", "2", "1"]
    names = [env.name for env in ml_client.environments.list()]
    assert name in names and len(names) == len(set(names)) and names == sorted(names)
