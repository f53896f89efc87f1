"""Managed online endpoints and deployments through the real SDK: create (long-running, polled until the
deployment's scoring process answers), traffic and mirror traffic round trips, keys and tokens, logs, the scoring
front's auth and routing, delete. Serving a real model: test_endpoints_serving_wire.py."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from azure_dl.workspace_service import deployment_processes
from azure_dl.workspace_service.service import WorkspaceService

pytestmark = pytest.mark.filterwarnings(
    "ignore::marshmallow.warnings.ChangedInMarshmallow4Warning",
    "ignore::marshmallow.warnings.RemovedInMarshmallow4Warning",
)


def _score(uri: str, key: str | None, headers: dict[str, str] | None = None) -> tuple[int, dict[str, Any], Any]:
    import requests

    sent = {"Content-Type": "application/json", **(headers or {})}
    if key is not None:
        sent["Authorization"] = f"Bearer {key}"
    response = requests.post(uri, json={"data": [1]}, headers=sent, timeout=10)
    return response.status_code, response.json(), response.headers


def _deployment(tmp_path: Path, name: str, endpoint: str, model: str):  # type: ignore[no-untyped-def]
    from azure.ai.ml.entities import CodeConfiguration, Environment, ManagedOnlineDeployment

    code = tmp_path / f"code-{name}"
    code.mkdir()
    (code / "score.py").write_text("def init():\n    pass\n\n\ndef run(raw):\n    return raw\n")
    conda = tmp_path / f"conda-{name}.yml"
    conda.write_text("name: score\ndependencies:\n  - python=3.11\n")
    return ManagedOnlineDeployment(
        name=name,
        endpoint_name=endpoint,
        model=model,
        code_configuration=CodeConfiguration(code=str(code), scoring_script="score.py"),
        environment=Environment(
            image="mcr.microsoft.com/azureml/minimal-py311-inference:latest", conda_file=str(conda)
        ),
        instance_type="Standard_DS3_v2",
        instance_count=1,
    )


@pytest.fixture()
def registered_model(ml_client, tmp_path: Path) -> str:  # type: ignore[no-untyped-def]
    from azure.ai.ml.entities import Model

    folder = tmp_path / "ep-model"
    folder.mkdir()
    (folder / "model.bin").write_text("endpoint model")
    model = ml_client.models.create_or_update(Model(name="ep-model", path=str(folder)))
    return f"azureml:{model.name}:{model.version}"


def test_an_endpoint_and_its_deployments_are_records_with_traffic_keys_and_delete(
    ml_client, registered_model: str, tmp_path: Path, workspace_service: WorkspaceService
) -> None:  # type: ignore[no-untyped-def]
    from azure.ai.ml.entities import ManagedOnlineEndpoint
    from azure.core.exceptions import HttpResponseError, ResourceNotFoundError

    created = ml_client.online_endpoints.begin_create_or_update(
        ManagedOnlineEndpoint(name="wire-ep", auth_mode="key", tags={"team": "nlp"})
    ).result()
    assert (created.provisioning_state, created.auth_mode, created.tags) == ("Succeeded", "key", {"team": "nlp"})
    assert created.scoring_uri.endswith("/inference/wire-ep/score")

    # Each deployment's operation is polled until its scoring process answers.
    for name in ("blue", "green"):
        done = ml_client.online_deployments.begin_create_or_update(
            _deployment(tmp_path, name, "wire-ep", registered_model)
        ).result()
        assert done.provisioning_state == "Succeeded"
    blue = ml_client.online_deployments.get("blue", "wire-ep")
    assert (blue.provisioning_state, blue.instance_type, blue.instance_count) == ("Succeeded", "Standard_DS3_v2", 1)
    assert "ep-model" in blue.model
    assert sorted(d.name for d in ml_client.online_deployments.list("wire-ep")) == ["blue", "green"]
    assert "ready for serving traffic" in ml_client.online_deployments.get_logs("blue", "wire-ep", lines=10)

    endpoint = ml_client.online_endpoints.get("wire-ep")
    assert endpoint.traffic == {"blue": 0, "green": 0}
    endpoint.traffic = {"blue": 90, "green": 10}
    ml_client.online_endpoints.begin_create_or_update(endpoint).result()
    assert ml_client.online_endpoints.get("wire-ep").traffic == {"blue": 90, "green": 10}
    endpoint.traffic, endpoint.mirror_traffic = {"blue": 100}, {"green": 10}
    ml_client.online_endpoints.begin_create_or_update(endpoint).result()
    got = ml_client.online_endpoints.get("wire-ep")
    assert (got.traffic, got.mirror_traffic) == ({"blue": 100}, {"green": 10})

    endpoint.traffic, endpoint.mirror_traffic = {"blue": 60, "nope": 40}, {}
    with pytest.raises(HttpResponseError, match="nope"):
        ml_client.online_endpoints.begin_create_or_update(endpoint)
    endpoint.traffic = {"blue": 60}
    with pytest.raises(HttpResponseError, match="add up to 100"):
        ml_client.online_endpoints.begin_create_or_update(endpoint)

    keys = ml_client.online_endpoints.get_keys("wire-ep")
    ml_client.online_endpoints.begin_regenerate_keys("wire-ep", key_type="primary").result()
    again = ml_client.online_endpoints.get_keys("wire-ep")
    assert again.primary_key != keys.primary_key and again.secondary_key == keys.secondary_key

    with pytest.raises(HttpResponseError, match="has 100% traffic"):
        ml_client.online_deployments.begin_delete("blue", "wire-ep").result()
    with pytest.raises(HttpResponseError, match="has 10% mirrorTraffic"):
        ml_client.online_deployments.begin_delete("green", "wire-ep").result()
    endpoint.traffic, endpoint.mirror_traffic = {"blue": 100}, {}
    ml_client.online_endpoints.begin_create_or_update(endpoint).result()
    assert workspace_service.context is not None
    processes = deployment_processes.of(workspace_service.context)
    green = processes.get("wire-ep", "green")
    assert green is not None and green.server.process is not None
    ml_client.online_deployments.begin_delete("green", "wire-ep").result()
    assert [d.name for d in ml_client.online_deployments.list("wire-ep")] == ["blue"]
    assert processes.get("wire-ep", "green") is None and green.server.process.poll() is not None  # stopped
    ml_client.online_endpoints.begin_delete("wire-ep").result()
    with pytest.raises(ResourceNotFoundError):
        ml_client.online_endpoints.get("wire-ep")
    with pytest.raises(ResourceNotFoundError):
        ml_client.online_deployments.get("blue", "wire-ep")


def test_the_scoring_front_authenticates_routes_and_forwards(ml_client, registered_model: str, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from azure.ai.ml.entities import ManagedOnlineEndpoint

    ml_client.online_endpoints.begin_create_or_update(
        ManagedOnlineEndpoint(name="wire-score", auth_mode="key")
    ).result()
    ml_client.online_deployments.begin_create_or_update(
        _deployment(tmp_path, "blue", "wire-score", registered_model)
    ).result()
    endpoint = ml_client.online_endpoints.get("wire-score")
    key = ml_client.online_endpoints.get_keys("wire-score").primary_key

    assert _score(endpoint.scoring_uri, None)[0] == 401
    assert _score(endpoint.scoring_uri, "not-the-key")[0] == 401
    status, answer, _ = _score(endpoint.scoring_uri, key)
    assert status == 404 and "no deployment" in answer["error"]["message"]  # no traffic yet
    status, answer, headers = _score(endpoint.scoring_uri, key, {"azureml-model-deployment": "blue"})
    assert (status, json.loads(answer)) == (200, {"data": [1]})  # the echo script's answer (a JSON string)
    assert headers["azureml-model-deployment"] == "blue"
    assert _score(endpoint.scoring_uri, key, {"azureml-model-deployment": "red"})[0] == 404

    endpoint.traffic = {"blue": 100}
    ml_client.online_endpoints.begin_create_or_update(endpoint).result()
    request = tmp_path / "request.json"
    request.write_text(json.dumps({"data": [1]}))
    answered = ml_client.online_endpoints.invoke("wire-score", request_file=str(request))
    assert json.loads(json.loads(answered)) == {"data": [1]}

    # AMLToken: a token from POST .../token, for this endpoint only.
    ml_client.online_endpoints.begin_create_or_update(
        ManagedOnlineEndpoint(name="wire-token", auth_mode="aml_token")
    ).result()
    token = ml_client.online_endpoints.get_keys("wire-token").access_token
    other = ml_client.online_endpoints.get("wire-token")
    assert _score(other.scoring_uri, token)[0] == 404  # authenticated; no deployment
    assert _score(endpoint.scoring_uri, token)[0] == 401  # not a key of the key endpoint
    for name in ("wire-score", "wire-token"):
        ml_client.online_endpoints.begin_delete(name).result()


def test_a_kubernetes_endpoint_on_a_compute_that_is_not_attached_is_refused_naming_it(ml_client) -> None:  # type: ignore[no-untyped-def]
    from azure.ai.ml.entities import KubernetesOnlineEndpoint
    from azure.core.exceptions import HttpResponseError

    # Attached clusters and Kubernetes endpoints on them: tests/wire/test_kubernetes_wire.py
    with pytest.raises(HttpResponseError, match="my-aks is not an attached Kubernetes compute") as raised:
        ml_client.online_endpoints.begin_create_or_update(
            KubernetesOnlineEndpoint(name="wire-k8s", compute="azureml:my-aks")
        )
    assert raised.value.status_code == 400
