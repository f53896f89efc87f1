"""Component versions over the wire: the SDK registers our pipeline components and reads them back, and the
service answers an anonymous component PUT in the recorded shape."""

from __future__ import annotations

import json
import ssl
import urllib.request
from pathlib import Path

from azure_dl.snapshot import package_dir, stage_snapshot
from azure_dl.workspace_service.identity import issue_token
from azure_dl.workspace_service.service import WorkspaceService

REPO = Path(__file__).resolve().parents[2]
RECORDING = REPO / "tests" / "fixtures" / "recordings" / "component_anonymous_create.json"


def _put(service: WorkspaceService, path: str, body: object) -> tuple[int, dict]:  # type: ignore[type-arg]
    assert service.context is not None
    token, _ = issue_token(service.context, service.context.base_url)
    request = urllib.request.Request(
        service.context.base_url + path,
        data=json.dumps(body).encode(),
        method="PUT",
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
    )
    context = ssl.create_default_context(cafile=str(service.data_dir / "tls" / "ca-bundle.pem"))
    try:
        with urllib.request.urlopen(request, context=context) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def test_anonymous_component_put_matches_the_recording(workspace_service: WorkspaceService) -> None:
    entry = json.loads(RECORDING.read_text())["entries"][0]
    assert workspace_service.context is not None
    path = f"{workspace_service.context.workspace_id}/components/azureml_anonymous/versions/779f9d31"
    status, body = _put(workspace_service, path + "?api-version=2024-01-01-preview", entry["RequestBody"])
    assert status == entry["StatusCode"]
    assert body.keys() == entry["ResponseBody"].keys()
    assert body["properties"].keys() == entry["ResponseBody"]["properties"].keys()
    assert body["properties"]["isAnonymous"] is True
    assert "_source" not in body["properties"]["componentSpec"]
    status, again = _put(workspace_service, path + "?api-version=2024-01-01-preview", entry["RequestBody"])
    assert status == 200 and again["id"] == body["id"]  # the same hash is the same component


def test_a_component_type_the_service_cannot_run_is_a_501_naming_it(workspace_service: WorkspaceService) -> None:
    entry = json.loads(RECORDING.read_text())["entries"][0]
    request_body = json.loads(json.dumps(entry["RequestBody"]))
    request_body["properties"]["componentSpec"]["type"] = "spark"
    assert workspace_service.context is not None
    path = f"{workspace_service.context.workspace_id}/components/sparky/versions/1?api-version=2024-01-01-preview"
    status, body = _put(workspace_service, path, request_body)
    assert status == 501
    assert "'spark'" in body["error"]["message"] and "command components only" in body["error"]["message"]


def test_the_sdk_registers_a_pipeline_component_and_reads_it_back(ml_client, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from azure.ai.ml import load_component

    component = load_component(REPO / "pipelines" / "components" / "evaluate.yml")
    # The file's `code: ../..` is this repository's root; the SDK walks every file under it (a checkout's .venv too:
    # ~30 s) before applying .amlignore. `azure-dl pipeline` uploads the staged snapshot instead, and so does this.
    component.code = str(stage_snapshot(package_dir(), tmp_path / "code").path)
    created = ml_client.components.create_or_update(component)
    assert (created.name, created.version) == ("azure_dl_evaluate", "1")
    fetched = ml_client.components.get("azure_dl_evaluate", "1")
    assert fetched.command == component.command
    assert set(fetched.inputs) == set(component.inputs)
    assert fetched.code is not None and "/codes/" in str(fetched.code)
