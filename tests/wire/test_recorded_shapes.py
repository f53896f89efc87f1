"""The service's answers against the recorded live traffic (tests/fixtures/recordings/): per resource family the
status codes, the top-level keys and the `properties` keys must match what Azure ML answered."""

from __future__ import annotations

import json
import ssl
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path
from typing import Any

import pytest

from azure_dl.workspace_service.identity import issue_token
from azure_dl.workspace_service.job_runner import now
from azure_dl.workspace_service.paging import PAGE_SIZE_VARIABLE
from azure_dl.workspace_service.service import WorkspaceService

RECORDINGS = Path(__file__).resolve().parents[1] / "fixtures" / "recordings"
# Keys the service adds beyond one recording because other recordings of the same family carry them.
EXTRA_PROPERTIES = {"workspaces": {"containerRegistry"}}


def _recorded(name: str) -> list[dict[str, Any]]:
    entries: list[dict[str, Any]] = json.loads((RECORDINGS / name).read_text())["entries"]
    return entries


def _call(service: WorkspaceService, path: str, body: Any = None) -> tuple[int, dict[str, Any]]:
    """GET, or POST `body` as JSON, with a token from the service, as the SDK's pipeline would."""
    assert service.context is not None
    token, _ = issue_token(service.context, service.context.base_url)
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(service.context.base_url + path, data=data, headers=headers)
    context = ssl.create_default_context(cafile=str(service.data_dir / "tls" / "ca-bundle.pem"))
    try:
        with urllib.request.urlopen(request, context=context) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def test_workspace_get_matches_the_recording(workspace_service: WorkspaceService) -> None:
    missing, found = _recorded("workspace_get.json")
    assert workspace_service.context is not None
    base = workspace_service.context.workspace_id.rsplit("/", 1)[0]

    status, body = _call(workspace_service, f"{base}/not-there?api-version=2023-08-01-preview")
    assert status == missing["StatusCode"]
    assert body.keys() == missing["ResponseBody"].keys()
    assert body["error"]["code"] == missing["ResponseBody"]["error"]["code"]

    status, body = _call(workspace_service, f"{workspace_service.context.workspace_id}?api-version=2023-08-01-preview")
    assert status == found["StatusCode"]
    assert body.keys() == found["ResponseBody"].keys()
    recorded_properties = set(found["ResponseBody"]["properties"])
    assert set(body["properties"]) - recorded_properties <= EXTRA_PROPERTIES["workspaces"]
    assert recorded_properties - set(body["properties"]) == set()


def test_datastore_get_and_list_secrets_match_the_recording(workspace_service: WorkspaceService) -> None:
    found, secrets = _recorded("datastore_blob_store.json")
    assert workspace_service.context is not None
    store = f"{workspace_service.context.workspace_id}/datastores/workspaceblobstore"

    status, body = _call(workspace_service, f"{store}?api-version=2024-07-01-preview")
    assert status == found["StatusCode"]
    assert body.keys() == found["ResponseBody"].keys()
    assert body["properties"].keys() == found["ResponseBody"]["properties"].keys()

    status, body = _call(
        workspace_service, f"{store}/listSecrets?api-version=2024-07-01-preview", secrets["RequestBody"]
    )
    assert status == secrets["StatusCode"]
    assert body.keys() == secrets["ResponseBody"].keys()
    assert body["secretsType"] == secrets["ResponseBody"]["secretsType"]


def test_code_version_get_and_hash_list_match_the_recording(
    ml_client, workspace_service: WorkspaceService, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    listed, found = _recorded("code_create_and_get.json")
    source = tmp_path / "src"
    source.mkdir()
    (source / "shape.py").write_text("print('shape')\n")
    from azure.ai.ml.entities._assets import Code

    code = ml_client._code.create_or_update(Code(path=str(source), name="shape-code", version="3"))
    assert workspace_service.context is not None
    versions = f"{workspace_service.context.workspace_id}/codes/shape-code/versions"

    status, body = _call(workspace_service, f"{versions}/3?api-version=2023-04-01")
    assert status == found["StatusCode"]
    assert body.keys() == found["ResponseBody"].keys()
    assert body["properties"].keys() == found["ResponseBody"]["properties"].keys()
    assert body["properties"]["properties"].keys() == found["ResponseBody"]["properties"]["properties"].keys()

    digest = code.properties["hash_sha256"]
    status, body = _call(workspace_service, f"/{versions}?api-version=2023-04-01&hash={digest}&hashVersion=202208"[1:])
    assert status == listed["StatusCode"]
    assert [item.keys() for item in body["value"]] == [listed["ResponseBody"]["value"][0].keys()]


def test_curated_environment_get_matches_the_recording(workspace_service: WorkspaceService) -> None:
    (found,) = _recorded("environment_get_curated.json")
    assert workspace_service.context is not None
    url = f"{workspace_service.context.workspace_id}/environments/AzureML-sklearn-1.5/versions/1"
    status, body = _call(workspace_service, f"{url}?api-version=2023-04-01-preview")
    assert status == found["StatusCode"]
    assert body.keys() == found["ResponseBody"].keys()
    assert body["properties"].keys() == found["ResponseBody"]["properties"].keys()
    assert body["properties"]["environmentType"] == "Curated"


def _send(service: WorkspaceService, method: str, path: str, body: Any = None) -> tuple[int, dict[str, str], Any]:
    """Any verb with a token; the status, the headers and the JSON body (None when empty)."""
    assert service.context is not None
    token, _ = issue_token(service.context, service.context.base_url)
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(service.context.base_url + path, data=data, headers=headers, method=method)
    context = ssl.create_default_context(cafile=str(service.data_dir / "tls" / "ca-bundle.pem"))
    try:
        with urllib.request.urlopen(request, context=context) as response:
            raw = response.read()
            return response.status, dict(response.headers.items()), json.loads(raw) if raw else None
    except urllib.error.HTTPError as exc:
        raw = exc.read()
        return exc.code, dict(exc.headers.items()), json.loads(raw) if raw else None


def test_compute_create_poll_get_and_delete_match_the_recording(workspace_service: WorkspaceService) -> None:
    put, poll, got, deleted = _recorded("compute_aml_create_and_delete.json")
    assert workspace_service.context is not None
    url = f"{workspace_service.context.workspace_id}/computes/shape-cluster?api-version=2023-08-01-preview"
    sent = json.loads(json.dumps(put["RequestBody"]))
    # The recorded Standard_DS2_v2 is not in azure-dl's catalogue (the service refuses sizes it cannot count).
    sent["properties"]["properties"]["vmSize"] = "Standard_DS3_v2"

    status, headers, body = _send(workspace_service, "PUT", url, sent)
    assert status == put["StatusCode"]
    assert set(put["ResponseHeaders"]) <= set(headers)
    assert body.keys() == put["ResponseBody"].keys()
    # The answer is the finished cluster (the GET's keys); the recorded PUT answer is the same minus read-only
    # fields Azure fills in once it has provisioned.
    assert set(put["ResponseBody"]["properties"]) <= set(body["properties"])
    assert set(put["ResponseBody"]["properties"]["properties"]) <= set(body["properties"]["properties"])

    status_path = headers["Azure-AsyncOperation"].removeprefix(workspace_service.context.base_url)
    status, _, body = _send(workspace_service, "GET", status_path)
    assert (status, body) == (poll["StatusCode"], poll["ResponseBody"])

    status, _, body = _send(workspace_service, "GET", url)
    assert status == got["StatusCode"]
    assert body.keys() == got["ResponseBody"].keys()
    assert body["properties"].keys() == got["ResponseBody"]["properties"].keys()
    assert body["properties"]["properties"].keys() == got["ResponseBody"]["properties"]["properties"].keys()
    assert body["properties"]["properties"]["userAccountCredentials"]["adminUserPassword"] is None
    assert body["properties"]["properties"]["subnet"] is None  # as recorded: what made the SDK's update crash

    status, headers, body = _send(workspace_service, "DELETE", url + "&underlyingResourceAction=Delete")
    assert (status, body) == (deleted["StatusCode"], deleted["ResponseBody"])
    assert set(deleted["ResponseHeaders"]) <= set(headers)


def _put(service: WorkspaceService, path: str, body: Any) -> tuple[int, dict[str, Any]]:
    """PUT `body` as JSON with a token from the service."""
    assert service.context is not None
    token, _ = issue_token(service.context, service.context.base_url)
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    request = urllib.request.Request(
        service.context.base_url + path, data=json.dumps(body).encode(), headers=headers, method="PUT"
    )
    context = ssl.create_default_context(cafile=str(service.data_dir / "tls" / "ca-bundle.pem"))
    with urllib.request.urlopen(request, context=context) as response:
        return response.status, json.loads(response.read())


def test_model_version_container_and_not_found_match_the_recordings(
    ml_client, workspace_service: WorkspaceService, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    missing, put, found, listed = _recorded("model_crud_file.json")
    (containers,) = _recorded("model_list_containers.json")
    folder = tmp_path / "shape_model"
    folder.mkdir()
    (folder / "model.bin").write_text("shape")
    from azure.ai.ml.entities import Model

    created = ml_client.models.create_or_update(Model(name="shape-model", version="3", path=str(folder)))
    assert created.version == "3"
    assert workspace_service.context is not None
    models = f"{workspace_service.context.workspace_id}/models"

    status, body = _call(workspace_service, f"{models}/no-such-model/versions?api-version=2023-08-01-preview&$top=1")
    assert status == missing["StatusCode"]
    assert body["error"].keys() == missing["ResponseBody"]["error"].keys()
    assert body["error"]["code"] == missing["ResponseBody"]["error"]["code"]
    assert body["error"]["details"][0]["code"] == missing["ResponseBody"]["error"]["details"][0]["code"]

    status, body = _call(workspace_service, f"{models}/shape-model/versions/3?api-version=2023-08-01-preview")
    assert status == found["StatusCode"]
    assert body.keys() == found["ResponseBody"].keys() == put["ResponseBody"].keys()
    assert body["properties"].keys() == found["ResponseBody"]["properties"].keys()
    assert body["systemData"].keys() == found["ResponseBody"]["systemData"].keys()

    status, body = _call(workspace_service, f"{models}/shape-model/versions?api-version=2023-08-01-preview")
    assert status == listed["StatusCode"]
    assert [item["properties"].keys() for item in body["value"]] == [
        listed["ResponseBody"]["value"][0]["properties"].keys()
    ]

    status, body = _call(workspace_service, f"{models}?api-version=2023-08-01-preview&listViewType=ActiveOnly")
    assert status == containers["StatusCode"]
    (shape,) = [item for item in body["value"] if item["name"] == "shape-model"]
    recorded = containers["ResponseBody"]["value"][0]
    assert shape.keys() == recorded.keys() and shape["properties"].keys() == recorded["properties"].keys()
    assert (shape["properties"]["latestVersion"], shape["properties"]["nextVersion"]) == ("3", "4")


def test_data_version_put_get_and_container_match_the_recordings(workspace_service: WorkspaceService) -> None:
    put, got = _recorded("data_create_uri_file.json")
    (container,) = _recorded("data_get_latest_label.json")
    assert workspace_service.context is not None
    versions = f"{workspace_service.context.workspace_id}/data/shape-data/versions"

    # The request body the SDK sent to Azure, replayed: the answer has the recorded status and keys.
    status, body = _put(workspace_service, f"{versions}/2?api-version=2023-04-01-preview", put["RequestBody"])
    assert status == put["StatusCode"]
    assert body.keys() == put["ResponseBody"].keys()
    assert body["properties"].keys() == put["ResponseBody"]["properties"].keys()
    assert body["systemData"].keys() >= put["ResponseBody"]["systemData"].keys()
    # Like Azure, the service answers the datastore URI in its long form.
    recorded_uri = put["ResponseBody"]["properties"]["dataUri"]
    assert body["properties"]["dataUri"].split("/datastores/")[1] == recorded_uri.split("/datastores/")[1]
    assert body["properties"]["dataUri"].startswith(
        f"azureml://subscriptions/{workspace_service.context.subscription_id}/resourcegroups/"
    )

    status, body = _call(workspace_service, f"{versions}/2?api-version=2023-04-01-preview")
    assert status == got["StatusCode"]
    assert body.keys() == got["ResponseBody"].keys()
    assert body["properties"].keys() == got["ResponseBody"]["properties"].keys()

    status, body = _call(workspace_service, f"{versions.rsplit('/', 1)[0]}?api-version=2023-04-01-preview")
    assert status == container["StatusCode"]
    assert body.keys() == container["ResponseBody"].keys()
    assert body["properties"].keys() == container["ResponseBody"]["properties"].keys()
    assert (body["properties"]["latestVersion"], body["properties"]["nextVersion"]) == ("2", "3")


def test_online_endpoint_put_and_its_operation_match_the_recording(workspace_service: WorkspaceService) -> None:
    put, poll = _recorded("online_endpoint_create.json")
    assert workspace_service.context is not None
    url = f"{workspace_service.context.workspace_id}/onlineEndpoints/shape-endpoint?api-version=2022-02-01-preview"

    status, headers, body = _send(workspace_service, "PUT", url, put["RequestBody"])
    assert status == put["StatusCode"]
    assert set(put["ResponseHeaders"]) <= set(headers)
    assert body.keys() == put["ResponseBody"].keys()
    assert body["properties"].keys() == put["ResponseBody"]["properties"].keys()
    assert body["properties"]["provisioningState"] == put["ResponseBody"]["properties"]["provisioningState"]
    assert headers["Location"].startswith(workspace_service.context.base_url)

    operation = headers["Azure-AsyncOperation"].removeprefix(workspace_service.context.base_url)
    status, body = _call(workspace_service, operation)
    assert status == poll["StatusCode"]
    assert body.keys() == poll["ResponseBody"].keys() and body["status"] == "Succeeded"

    status, _headers, body = _send(workspace_service, "PUT", url, put["RequestBody"])
    assert status == 200 and body["properties"]["provisioningState"] == "Updating"  # a PUT of an existing one

    bad = url.replace("shape-endpoint", "9-starts-with-a-digit")
    status, _headers, body = _send(workspace_service, "PUT", bad, put["RequestBody"])
    assert status == 400 and "3-32 letters" in body["error"]["message"]
    status, _headers, body = _send(workspace_service, "POST", url.replace("?", "/listKeys?"), {})
    assert status == 400 and "AMLToken" in body["error"]["message"]  # the recorded endpoint has no keys


def test_online_endpoint_metrics_match_the_recorded_metrics_answer(workspace_service: WorkspaceService) -> None:
    (listed,) = _recorded("monitor_metrics_list.json")
    assert workspace_service.context is not None
    endpoint = f"{workspace_service.context.workspace_id}/onlineEndpoints/shape-metrics-ep"
    status, _ = _put(workspace_service, f"{endpoint}?api-version=2023-04-01", {"properties": {"authMode": "Key"}})
    assert status == 201

    # The recorded query (span, grain, Count), asking for an online endpoint's metric instead.
    query = listed["RequestUri"].split("?", 1)[1].replace("requests%2Fcount", "RequestsPerMinute")
    status, body = _call(workspace_service, f"{endpoint}/providers/Microsoft.Insights/metrics?{query}")
    recorded = listed["ResponseBody"]
    assert status == listed["StatusCode"]
    assert body.keys() == recorded.keys()
    assert body["interval"] == recorded["interval"] and len(body["value"][0]["timeseries"][0]["data"]) == 288
    assert body["value"][0].keys() == recorded["value"][0].keys()
    assert body["value"][0]["name"].keys() == recorded["value"][0]["name"].keys()
    series, recorded_series = body["value"][0]["timeseries"][0], recorded["value"][0]["timeseries"][0]
    assert series.keys() == recorded_series.keys()
    assert [point.keys() for point in series["data"][:2]] == [point.keys() for point in recorded_series["data"]]
    assert series["data"][0]["count"] == 0  # no requests: a count of 0, as recorded, not a missing value


def test_online_deployment_put_and_its_running_operation_match_the_recording(
    ml_client, workspace_service: WorkspaceService, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]

    from azure.ai.ml.entities import Model
    from azure.ai.ml.entities._assets import Code

    (endpoint_put, _poll) = _recorded("online_endpoint_create.json")
    put, poll = _recorded("online_deployment_create.json")
    source = tmp_path / "src"
    source.mkdir()
    (source / "score.py").write_text("def init():\n    pass\n\n\ndef run(raw):\n    return raw\n")
    code = ml_client._code.create_or_update(Code(path=str(source), name="shape-deployment-code", version="1"))
    weights = tmp_path / "weights"
    weights.mkdir()
    (weights / "model.bin").write_text("shape")
    model = ml_client.models.create_or_update(Model(name="shape-deployment-model", version="1", path=str(weights)))
    assert workspace_service.context is not None
    endpoint = f"{workspace_service.context.workspace_id}/onlineEndpoints/shape-deployments"
    status, _headers, _body = _send(
        workspace_service, "PUT", f"{endpoint}?api-version=2022-02-01-preview", endpoint_put["RequestBody"]
    )
    assert status == 201

    # The recorded request, replayed with this workspace's code and model.
    sent = json.loads(json.dumps(put["RequestBody"]))
    sent["properties"]["codeConfiguration"]["codeId"] = code.id
    sent["properties"]["model"] = model.id
    # No public recording has a dataCollector set (this one answers null): with one, the keys stay the recorded
    # ones and the collection reads back in the REST model's spelling, as azure-ai-ml expects ("Enabled").
    sent["properties"]["dataCollector"] = {"collections": {"model_inputs": {"dataCollectionMode": "enabled"}}}
    url = f"{endpoint}/deployments/shape-blue?api-version=2023-04-01-preview"
    status, headers, body = _send(workspace_service, "PUT", url, sent)
    recorded = put["ResponseBody"]
    assert status == put["StatusCode"]
    assert set(put["ResponseHeaders"]) <= set(headers)
    assert body.keys() == recorded.keys()
    assert body["properties"].keys() == recorded["properties"].keys()
    assert body["properties"]["properties"].keys() == recorded["properties"]["properties"].keys()
    assert body["properties"]["requestSettings"] == recorded["properties"]["requestSettings"]
    assert body["properties"]["readinessProbe"] == recorded["properties"]["readinessProbe"]
    assert body["sku"] == recorded["sku"]
    assert body["properties"]["provisioningState"] == "Creating"
    collected = body["properties"]["dataCollector"]
    assert (collected["collections"]["model_inputs"]["dataCollectionMode"], collected["rollingRate"]) == (
        "Enabled",
        "Hour",
    )

    operation = headers["Azure-AsyncOperation"].removeprefix(workspace_service.context.base_url)
    status, body = _call(workspace_service, operation)  # its scoring process is still starting
    assert (status, body.keys(), body["status"]) == (poll["StatusCode"], poll["ResponseBody"].keys(), "Updating")
    assert body["endTime"] == poll["ResponseBody"]["endTime"]
    deadline = time.monotonic() + 60
    while body["status"] == "Updating" and time.monotonic() < deadline:
        time.sleep(0.2)
        status, body = _call(workspace_service, operation)
    assert body["status"] == "Succeeded"

    # An update of the Succeeded deployment answers as the live one did: 201 and "Creating" (recorded), the
    # record itself reading "Updating" until the operation ends. The same request again changes nothing it runs,
    # so its operation is over at once.
    update, update_poll = _recorded("online_deployment_update.json")
    status, headers, body = _send(workspace_service, "PUT", url, sent)
    recorded = update["ResponseBody"]
    assert status == update["StatusCode"] == 201
    assert set(update["ResponseHeaders"]) <= set(headers)
    assert body.keys() == recorded.keys() and body["properties"].keys() == recorded["properties"].keys()
    assert body["properties"]["provisioningState"] == recorded["properties"]["provisioningState"] == "Creating"
    status, body = _call(
        workspace_service, headers["Azure-AsyncOperation"].removeprefix(workspace_service.context.base_url)
    )
    assert (status, body.keys(), body["status"]) == (
        update_poll["StatusCode"],
        update_poll["ResponseBody"].keys(),
        "Succeeded",
    )
    status, _headers, _body = _send(workspace_service, "DELETE", f"{endpoint}?api-version=2022-02-01-preview")
    assert status == 202


# Keys the service adds to a job beyond the command-job recording: a pipeline's child jobs carry `parentJobName`
# (the SDK reads it for them), so the service always answers it, null for a top-level job.
JOB_EXTRA_PROPERTIES = {"parentJobName"}


def test_command_job_put_and_get_match_the_recording(workspace_service: WorkspaceService) -> None:
    (created,) = _recorded("command_job_create.json")
    assert workspace_service.context is not None
    job = f"{workspace_service.context.workspace_id}/jobs/shapes_command_job?api-version=2023-04-01-preview"
    recorded_properties = set(created["ResponseBody"]["properties"])

    status, body = _call_put(workspace_service, job, created["RequestBody"])
    assert status == created["StatusCode"]
    assert body.keys() == created["ResponseBody"].keys()
    assert recorded_properties - set(body["properties"]) == set()
    assert set(body["properties"]) - recorded_properties <= JOB_EXTRA_PROPERTIES
    assert body["properties"]["outputs"]["default"].keys() >= {"uri", "mode", "jobOutputType"}

    status, body = _call(workspace_service, job)
    assert status == 200
    assert recorded_properties - set(body["properties"]) == set()


def _call_put(service: WorkspaceService, path: str, body: Any) -> tuple[int, dict[str, Any]]:
    """PUT `body` as JSON with a token from the service (the SDK's create_or_update for jobs)."""
    assert service.context is not None
    token, _ = issue_token(service.context, service.context.base_url)
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    request = urllib.request.Request(
        service.context.base_url + path, data=json.dumps(body).encode(), headers=headers, method="PUT"
    )
    context = ssl.create_default_context(cafile=str(service.data_dir / "tls" / "ca-bundle.pem"))
    try:
        with urllib.request.urlopen(request, context=context) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def test_a_paged_job_list_matches_the_recorded_next_link(
    workspace_service: WorkspaceService, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No public recording pages a jobs list: the recorded component list is the same service's paged ARM list."""
    (listed,) = _recorded("component_list_paged.json")
    recorded_path, recorded_query = listed["ResponseBody"]["nextLink"].split("?", 1)
    first_query = listed["RequestUri"].split("?", 1)[1]
    assert recorded_query.startswith(first_query + "&$skipToken=")
    assert workspace_service.context is not None
    jobs = f"{workspace_service.context.workspace_id}/jobs"
    for _ in range(2):  # at least two jobs, so a page of one has a next page
        job = {"properties": {"jobType": "Command", "command": "true", "experimentName": "shapes-paging"}}
        _call_put(workspace_service, f"{jobs}/shapes-page-{uuid.uuid4().hex[:8]}?api-version=2025-12-01", job)
    monkeypatch.setenv(PAGE_SIZE_VARIABLE, "1")

    status, body = _call(workspace_service, f"{jobs}?{first_query}")
    assert status == listed["StatusCode"]
    assert body.keys() == listed["ResponseBody"].keys()
    path, query = body["nextLink"].split("?", 1)
    assert path.removeprefix(workspace_service.context.base_url).rsplit("/", 1)[1] == "jobs"
    assert recorded_path.rsplit("/", 1)[1] == "components"
    assert query.startswith(first_query + "&$skipToken=")


def test_registry_discovery_and_environment_get_match_the_recording(workspace_service: WorkspaceService) -> None:
    discovered, got = _recorded("registry_environment_get.json")
    assert workspace_service.context is not None

    status, body = _call(workspace_service, "/registrymanagement/v1.0/registries/azureml/discovery?api-version=v1.0")
    assert status == discovered["StatusCode"]
    assert body.keys() == discovered["ResponseBody"].keys()
    # The SDK's registry base URL is this + "mferp/managementfrontend": it must point back at the service.
    assert body["primaryRegionResourceProviderUri"] == workspace_service.context.base_url + "/"

    recorded_path = got["RequestUri"].split("/mferp/", 1)[1].split("?")[0]
    assert recorded_path.endswith("/registries/testFeed/environments/env-test-2846625/versions/1")
    path = (
        f"/mferp/managementfrontend/subscriptions/{body['subscriptionId']}/resourceGroups/{body['resourceGroup']}"
        "/providers/Microsoft.MachineLearningServices/registries/azureml/environments/sklearn-1.5/versions/54"
    )
    status, environment = _call(workspace_service, f"{path}?api-version=2021-10-01-dataplanepreview")
    assert status == got["StatusCode"]
    assert environment.keys() == got["ResponseBody"].keys()
    assert environment["properties"].keys() == got["ResponseBody"]["properties"].keys()
    assert environment["systemData"].keys() == got["ResponseBody"]["systemData"].keys()
    assert environment["id"] == "azureml://registries/azureml/environments/sklearn-1.5/versions/54"
    assert (environment["name"], environment["type"]) == ("54", got["ResponseBody"]["type"])


def _raw(service: WorkspaceService, method: str, path: str, body: Any = None) -> tuple[int, dict[str, str], bytes]:
    """Any verb with a token; the status, the headers and the body's bytes (an empty body and `null` differ)."""
    assert service.context is not None
    token, _ = issue_token(service.context, service.context.base_url)
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(service.context.base_url + path, data=data, headers=headers, method=method)
    context = ssl.create_default_context(cafile=str(service.data_dir / "tls" / "ca-bundle.pem"))
    with urllib.request.urlopen(request, context=context) as response:
        return response.status, dict(response.headers.items()), response.read()


def _recorded_bytes(entry: dict[str, Any]) -> bytes:
    """The body bytes a recorded entry answered: a string as is, null as nothing, a document as JSON."""
    recorded = entry["ResponseBody"]
    if recorded is None:
        return b""
    return recorded.encode() if isinstance(recorded, str) else json.dumps(recorded).encode()


def test_job_cancel_and_its_polls_match_the_recording(
    workspace_service: WorkspaceService, monkeypatch: pytest.MonkeyPatch
) -> None:
    from azure_dl.workspace_service import jobs

    cancel, running, over = _recorded("job_cancel.json")
    assert workspace_service.context is not None
    job = f"{workspace_service.context.workspace_id}/jobs/shapes-cancel-{uuid.uuid4().hex[:8]}"
    sent = {"properties": {"jobType": "Command", "command": "sleep 30", "experimentName": "shapes-cancel"}}
    assert _call_put(workspace_service, f"{job}?api-version=2023-04-01-preview", sent)[0] == 201
    # Azure ends a job some time after the cancel is accepted: held back here, the first poll finds it running.
    runner = jobs.runner_for(workspace_service.context)
    held: list[str] = []
    monkeypatch.setattr(runner, "cancel", held.append)

    status, headers, answer = _raw(workspace_service, "POST", f"{job}/cancel?api-version=2023-04-01-preview")
    assert (status, answer) == (cancel["StatusCode"], _recorded_bytes(cancel))
    assert set(cancel["ResponseHeaders"]) <= set(headers)
    assert headers["x-ms-async-operation-timeout"] == cancel["ResponseHeaders"]["x-ms-async-operation-timeout"]
    assert "Azure-AsyncOperation" not in headers  # as recorded: the SDK polls Location alone
    poll = headers["Location"].removeprefix(workspace_service.context.base_url)

    status, headers, answer = _raw(workspace_service, "GET", poll)
    assert (status, answer) == (running["StatusCode"], _recorded_bytes(running))
    assert set(running["ResponseHeaders"]) <= set(headers)

    monkeypatch.undo()
    runner.cancel(held[0])
    # A canceled job that has not started ends when a worker takes it from the queue, which other tests' jobs
    # may hold for a while: ended here as the worker would end it (Canceled), so the test waits on nothing.
    runner.update(held[0], status="Canceled", endTime=now())
    status, _headers, answer = _raw(workspace_service, "GET", poll)
    assert (status, answer) == (over["StatusCode"], _recorded_bytes(over))
    assert _call(workspace_service, f"{job}?api-version=2023-04-01-preview")[1]["properties"]["status"] == "Canceled"


# Azure ML's job statuses (the REST JobStatus enum): a status the service answers must be one of them.
JOB_STATUSES = {
    "NotStarted", "Starting", "Provisioning", "Preparing", "Queued", "Running", "Finalizing", "CancelRequested",
    "Completed", "Failed", "Canceled", "NotResponding", "Paused", "Unknown", "Scheduled",
}  # fmt: skip


def _parent_shape_matches(body: dict[str, Any], recorded: dict[str, Any]) -> None:
    """Top-level and `properties` keys as recorded (plus JOB_EXTRA_PROPERTIES), a status Azure ML has."""
    assert body.keys() == recorded.keys()
    recorded_properties = set(recorded["properties"])
    assert recorded_properties - set(body["properties"]) == set()
    assert set(body["properties"]) - recorded_properties <= JOB_EXTRA_PROPERTIES
    assert body["properties"]["status"] in JOB_STATUSES and recorded["properties"]["status"] in JOB_STATUSES
    assert body["properties"]["outputs"].keys() == recorded["properties"]["outputs"].keys()


def _cancel_job(service: WorkspaceService, job: str) -> None:
    """Cancel the replayed job (its trials or steps need not run on)."""
    status, _headers, _answer = _raw(service, "POST", f"{job}/cancel?api-version=2023-04-01-preview")
    assert status == 202


def test_sweep_job_put_and_get_match_the_recording(workspace_service: WorkspaceService) -> None:
    put, got = _recorded("sweep_job_create.json")
    assert workspace_service.context is not None
    job = f"{workspace_service.context.workspace_id}/jobs/shapes-sweep-{uuid.uuid4().hex[:8]}"
    sent = json.loads(json.dumps(put["RequestBody"]))
    # Recorded on a cluster named testCompute, which this workspace has not: serverless, as azure-ai-ml names it.
    sent["properties"]["computeId"] = f"{workspace_service.context.workspace_id}/computes/serverless"
    sent["properties"]["trial"]["codeId"] = None  # the recorded code version is not in this workspace

    status, body = _call_put(workspace_service, f"{job}?api-version=2024-01-01-preview", sent)
    assert status == put["StatusCode"], body
    _parent_shape_matches(body, put["ResponseBody"])
    recorded_default = put["ResponseBody"]["properties"]["outputs"]["default"]
    assert body["properties"]["outputs"]["default"]["uri"].endswith("/ExperimentRun/dcid." + job.rsplit("/", 1)[1])
    assert recorded_default["uri"].startswith("azureml://datastores/workspaceartifactstore/ExperimentRun/dcid.")

    status, body = _call(workspace_service, f"{job}?api-version=2024-01-01-preview")
    assert status == got["StatusCode"]
    _parent_shape_matches(body, got["ResponseBody"])
    _cancel_job(workspace_service, job)


def test_pipeline_job_put_matches_the_recording(workspace_service: WorkspaceService) -> None:
    component, put = _recorded("pipeline_job_create.json")
    assert workspace_service.context is not None
    workspace = workspace_service.context.workspace_id
    version = f"{workspace}/components/azureml_anonymous/versions/{uuid.uuid4()}"
    assert _call_put(workspace_service, f"{version}?api-version=2022-10-01", component["RequestBody"])[0] == 201
    sent = json.loads(json.dumps(put["RequestBody"]))
    for step in sent["properties"]["jobs"].values():
        step["componentId"] = version
    # As recorded: the default compute is .../computes/serverless, no compute of the workspace.
    sent["properties"]["settings"]["default_compute"] = f"{workspace}/computes/serverless"
    job = f"{workspace}/jobs/shapes-pipeline-{uuid.uuid4().hex[:8]}"

    status, body = _call_put(workspace_service, f"{job}?api-version=2023-08-01-preview", sent)
    assert status == put["StatusCode"], body
    _parent_shape_matches(body, put["ResponseBody"])
    assert body["properties"]["jobs"].keys() == put["ResponseBody"]["properties"]["jobs"].keys()
    assert body["properties"]["settings"] == sent["properties"]["settings"]
    _cancel_job(workspace_service, job)


# The Run fields azure-ai-ml reads when it lists child jobs (entities/_job/base_job.py, _BaseJob._load_from_rest).
SDK_RUN_FIELDS = {
    "runId", "displayName", "description", "tags", "properties", "experimentId", "services", "status",
    "createdBy", "createdFrom", "createdUtc", "lastModifiedBy", "lastModifiedUtc", "compute",
}  # fmt: skip


def test_run_history_children_match_the_recording(workspace_service: WorkspaceService) -> None:
    (listed,) = _recorded("run_children.json")
    component, put = _recorded("pipeline_job_create.json")
    assert workspace_service.context is not None
    workspace = workspace_service.context.workspace_id
    version = f"{workspace}/components/azureml_anonymous/versions/{uuid.uuid4()}"
    assert _call_put(workspace_service, f"{version}?api-version=2022-10-01", component["RequestBody"])[0] == 201
    sent = json.loads(json.dumps(put["RequestBody"]))
    for step in sent["properties"]["jobs"].values():
        step["componentId"] = version
    sent["properties"]["settings"]["default_compute"] = f"{workspace}/computes/serverless"
    name = f"shapes-children-{uuid.uuid4().hex[:8]}"
    assert _call_put(workspace_service, f"{workspace}/jobs/{name}?api-version=2023-08-01-preview", sent)[0] == 201

    children = f"/history/v1.0{workspace}/runs/{name}/children?api-version=v1.0"
    deadline = time.monotonic() + 10
    status, body = _call(workspace_service, children)
    while not body["value"] and time.monotonic() < deadline:  # the steps start once the pipeline runs
        time.sleep(0.1)
        status, body = _call(workspace_service, children)
    recorded = listed["ResponseBody"]
    assert status == listed["StatusCode"]
    # Kept beyond the recording: the paged list's other fields, null (one page).
    assert body.keys() - recorded.keys() == {"nextLink", "continuationToken"} and body["nextLink"] is None
    recorded_run = recorded["value"][0]
    assert recorded_run.keys() >= SDK_RUN_FIELDS
    run = body["value"][0]
    assert run.keys() >= SDK_RUN_FIELDS
    assert run["createdBy"].keys() == recorded_run["createdBy"].keys()
    assert (run["parentRunId"], run["rootRunId"]) == (name, name)
    assert run["status"] in JOB_STATUSES
    _cancel_job(workspace_service, f"{workspace}/jobs/{name}")
