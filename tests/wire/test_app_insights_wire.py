"""Application Insights on the local service: a deployment made with `app_insights_enabled` sends azmlinfsrv's own
telemetry (a request item per scoring call, a trace per printed line) to the service's ingestion endpoint, under
the workspace's instrumentation key; one without it sends nothing; the track API refuses another key."""

from __future__ import annotations

import json
import ssl
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest
import requests

from azure_dl.workspace_service import app_insights
from azure_dl.workspace_service.service import WorkspaceService

pytestmark = pytest.mark.filterwarnings(
    "ignore::marshmallow.warnings.ChangedInMarshmallow4Warning",
    "ignore::marshmallow.warnings.RemovedInMarshmallow4Warning",
)

ENDPOINT = "insights-ep"
SCORE_PY = "def init():\n    pass\n\n\ndef run(raw):\n    print('scored', raw)\n    return raw\n"


def _deploy(ml_client, tmp_path: Path, name: str, app_insights_enabled: bool):  # type: ignore[no-untyped-def]
    """Start creating the deployment; returns the SDK's poller."""
    from azure.ai.ml.entities import CodeConfiguration, Environment, ManagedOnlineDeployment, Model

    (tmp_path / "model").mkdir(parents=True, exist_ok=True)
    (tmp_path / "model" / "model.bin").write_text("echo")
    model = ml_client.models.create_or_update(Model(name="insights-model", path=str(tmp_path / "model")))
    (tmp_path / "code").mkdir(exist_ok=True)
    (tmp_path / "code" / "score.py").write_text(SCORE_PY)
    (tmp_path / "conda.yml").write_text("name: score\ndependencies:\n  - python=3.11\n")
    deployment = ManagedOnlineDeployment(
        name=name,
        endpoint_name=ENDPOINT,
        model=f"azureml:{model.name}:{model.version}",
        code_configuration=CodeConfiguration(code=str(tmp_path / "code"), scoring_script="score.py"),
        environment=Environment(
            image="mcr.microsoft.com/azureml/minimal-py311-inference:latest", conda_file=str(tmp_path / "conda.yml")
        ),
        instance_type="Standard_DS3_v2",
        instance_count=1,
        app_insights_enabled=app_insights_enabled,
    )
    return ml_client.online_deployments.begin_create_or_update(deployment)


def _telemetry(service: WorkspaceService) -> list[dict[str, Any]]:
    assert service.context is not None
    path = app_insights.telemetry_path(service.context)
    return [json.loads(line) for line in path.read_text().splitlines()] if path.is_file() else []


def _requests_of(items: list[dict[str, Any]], deployment: str) -> list[dict[str, Any]]:
    return [
        item["data"]["baseData"]
        for item in items
        if item["data"]["baseType"] == "RequestData"
        and item["data"]["baseData"]["properties"]["Service Name"] == f"{ENDPOINT}/{deployment}"
    ]


def test_a_deployment_with_app_insights_sends_its_requests_and_prints(
    connection: dict[str, str], module_ml_client, workspace_service: WorkspaceService, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    from azure.ai.ml.entities import ManagedOnlineEndpoint

    ml_client = module_ml_client
    ml_client.online_endpoints.begin_create_or_update(ManagedOnlineEndpoint(name=ENDPOINT, auth_mode="key")).result()
    pollers = [
        _deploy(ml_client, tmp_path / "on", "watched", app_insights_enabled=True),
        _deploy(ml_client, tmp_path / "off", "unwatched", app_insights_enabled=False),
    ]
    for poller in pollers:
        poller.result()
    key = ml_client.online_endpoints.get_keys(ENDPOINT).primary_key
    uri = ml_client.online_endpoints.get(ENDPOINT).scoring_uri
    bundle = connection["REQUESTS_CA_BUNDLE"]
    for deployment, count in (("watched", 3), ("unwatched", 2)):
        for index in range(count):
            answer = requests.post(
                uri,
                json={"n": index},
                headers={"Authorization": f"Bearer {key}", "azureml-model-deployment": deployment},
                timeout=30,
                verify=bundle,
            )
            assert answer.status_code == 200, answer.text

    # azmlinfsrv's exporter sends in batches every 5 s, and what is left when the server stops: deleting the
    # endpoint stops it, so nothing is lost and nothing is waited for.
    ml_client.online_endpoints.begin_delete(ENDPOINT).result()
    deadline = time.monotonic() + 10
    while len(_requests_of(_telemetry(workspace_service), "watched")) < 3 and time.monotonic() < deadline:
        time.sleep(0.2)
    items = _telemetry(workspace_service)
    assert workspace_service.context is not None
    assert {item["iKey"] for item in items} == {app_insights.instrumentation_key(workspace_service.context)}
    scored = _requests_of(items, "watched")
    assert len(scored) == 3, items
    # azmlinfsrv puts the HTTP status in its own properties (the item's responseCode stays "0", as on Azure).
    assert all(record["properties"]["resultCode"] == "200" and record["success"] for record in scored)
    assert all(record["properties"]["Workspace Name"] == workspace_service.context.workspace for record in scored)
    printed = [item for item in items if item["data"]["baseType"] == "MessageData"]
    assert any("scored" in item["data"]["baseData"]["message"] for item in printed), printed
    assert _requests_of(items, "unwatched") == []


def test_the_track_api_refuses_an_envelope_with_another_key(workspace_service: WorkspaceService) -> None:
    assert workspace_service.context is not None
    good = {"iKey": app_insights.instrumentation_key(workspace_service.context), "name": "x", "data": {}}
    bad = {**good, "iKey": "00000000-0000-0000-0000-000000000000"}
    request = urllib.request.Request(
        workspace_service.context.base_url + app_insights.TRACK_PATH,
        data=json.dumps([good, bad]).encode(),
        method="POST",
        headers={"Content-Type": "application/json"},
    )
    context = ssl.create_default_context(cafile=str(workspace_service.data_dir / "tls" / "ca-bundle.pem"))
    with urllib.request.urlopen(request, context=context) as response:
        assert response.status == 206
        answer = json.loads(response.read())
    assert (answer["itemsReceived"], answer["itemsAccepted"]) == (2, 1)
    assert answer["errors"][0]["index"] == 1 and "instrumentation key" in answer["errors"][0]["message"]
