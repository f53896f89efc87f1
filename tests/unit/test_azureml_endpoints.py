"""Blue/green rollout, traffic, rollback, delete and the client target, against fake online endpoint operations."""

from __future__ import annotations

import base64
import io
import json
from pathlib import Path
from typing import Any

import pytest

from azure_dl.backends.azureml.endpoint_smoke import (
    SmokeTestFailed,
    check_response,
    sample_request,
    write_sample_request,
)
from azure_dl.backends.azureml.endpoints import (
    PREVIOUS_TRAFFIC_TAG,
    choose_deployment_name,
    delete_deployment,
    delete_endpoint,
    endpoint_target,
    read_endpoint,
    rollback,
    rollout,
    set_traffic,
)
from azure_dl.endpoint_spec import DeploymentSpec, EndpointSpec, ModelRef
from azure_dl.environments import environment_spec
from azure_dl.errors import AzureDLError, SpecError
from azure_dl.render_endpoint import write_deployment_yaml, write_endpoint_yaml
from tests.azure_fakes import http_error
from tests.endpoint_fakes import answer, fake_endpoint_client, sequence

pytestmark = pytest.mark.filterwarnings(
    "ignore::marshmallow.warnings.ChangedInMarshmallow4Warning",
    "ignore::marshmallow.warnings.RemovedInMarshmallow4Warning",
)

ENDPOINT = "reviews"


class Staged:
    def __init__(self, root: Path, deployment: str = "green", auth: str = "key") -> None:
        code = root / "code" / "training_scripts"
        code.mkdir(parents=True, exist_ok=True)
        (code / "score_lstm.py").write_text("def init():\n    pass\n\n\ndef run(raw_data):\n    return raw_data\n")
        spec = DeploymentSpec(
            name=deployment,
            endpoint_name=ENDPOINT,
            model=ModelRef("reviews-lstm", "2"),
            task="text-classification",
            code=root / "code",
            environment=environment_spec("inference", copy_to=root / "environments"),
        )
        self.endpoint_yaml = write_endpoint_yaml(EndpointSpec(ENDPOINT, auth_mode=auth), root / "endpoint.yml")
        self.deployment_yaml = write_deployment_yaml(spec, root / "deployment.yml")
        self.request = write_sample_request(root / "sample-request.json", "text-classification")


def go(client: Any, staged: Staged, **kwargs: Any) -> Any:
    return rollout(client, staged.endpoint_yaml, staged.deployment_yaml, staged.request, **kwargs)


def live_endpoint(client: Any, traffic: dict[str, int] | None = None) -> None:
    client.online_endpoints.add_endpoint(ENDPOINT, traffic=traffic or {"blue": 100})


def test_first_deployment_creates_the_endpoint_then_takes_all_traffic_after_the_smoke_test(tmp_path: Path) -> None:
    client = fake_endpoint_client()
    result = go(client, Staged(tmp_path, deployment="blue"), labels=["negative", "positive"])

    assert sequence(client) == [
        "online_endpoints.begin_create_or_update",
        "online_deployments.begin_create_or_update",
        "online_endpoints.invoke",
        "online_endpoints.begin_create_or_update",
    ]
    created = client.online_endpoints.calls_to("begin_create_or_update")[0].args[0]
    assert (created.name, created.auth_mode, created.traffic) == (ENDPOINT, "key", {})
    deployment = client.online_deployments.calls_to("begin_create_or_update")[0].args[0]
    assert (deployment.name, deployment.model) == ("blue", "reviews-lstm:2")
    assert deployment.instance_type == "Standard_DS3_v2"
    invoke = client.online_endpoints.calls_to("invoke")[0]
    assert invoke.kwargs["deployment_name"] == "blue" and invoke.kwargs["request"]["texts"]
    update = client.online_endpoints.calls_to("begin_create_or_update")[1].args[0]
    assert update.traffic == {"blue": 100}
    assert json.loads(update.tags[PREVIOUS_TRAFFIC_TAG]) == {"mirror": {}, "traffic": {}}
    assert result.created_endpoint and result.traffic_changed
    assert result.state.live == {"blue": 100}
    assert result.state.scoring_uri == f"https://{ENDPOINT}.eastus.inference.ml.azure.com/score"


def test_new_version_on_a_live_endpoint_stays_at_zero_without_traffic(tmp_path: Path) -> None:
    client = fake_endpoint_client()
    live_endpoint(client)
    result = go(client, Staged(tmp_path))
    assert sequence(client) == ["online_deployments.begin_create_or_update", "online_endpoints.invoke"]
    assert result.state.traffic == {"blue": 100, "green": 0}
    assert not result.created_endpoint and not result.traffic_changed


def test_traffic_moves_only_after_the_green_smoke_test(tmp_path: Path) -> None:
    client = fake_endpoint_client()
    live_endpoint(client)
    result = go(client, Staged(tmp_path), traffic={"blue": 90, "green": 10})
    assert sequence(client) == [
        "online_deployments.begin_create_or_update",
        "online_endpoints.invoke",
        "online_endpoints.begin_create_or_update",
    ]
    update = client.online_endpoints.calls_to("begin_create_or_update")[0].args[0]
    assert update.traffic == {"blue": 90, "green": 10}
    assert json.loads(update.tags[PREVIOUS_TRAFFIC_TAG]) == {"mirror": {}, "traffic": {"blue": 100}}
    assert result.state.live == {"blue": 90, "green": 10}


@pytest.mark.parametrize(
    "failure",
    [
        lambda deployment, request: (_ for _ in ()).throw(http_error(424, "model init failed: no module x")),
        lambda deployment, request: "<html>Bad gateway</html>",
        lambda deployment, request: json.dumps({"predictions": []}),
        lambda deployment, request: json.dumps({"predictions": [{"label": "cat", "score": 0.9}]}),
    ],
    ids=["http-424", "not-json", "no-predictions", "unknown-label"],
)
def test_a_failing_smoke_test_leaves_traffic_untouched(tmp_path: Path, failure: Any) -> None:
    client = fake_endpoint_client(responder=failure)
    live_endpoint(client)
    with pytest.raises(SmokeTestFailed) as raised:
        go(client, Staged(tmp_path), traffic={"blue": 0, "green": 100}, labels=["negative", "positive"])
    assert "smoke test of deployment green failed" in str(raised.value)
    assert f"azure-dl endpoint delete {ENDPOINT} --deployment green" in str(raised.value)
    assert sequence(client) == ["online_deployments.begin_create_or_update", "online_endpoints.invoke"]
    assert read_endpoint(client, ENDPOINT).live == {"blue": 100}


def test_mirror_traffic_to_the_new_deployment(tmp_path: Path) -> None:
    client = fake_endpoint_client()
    live_endpoint(client)
    result = go(client, Staged(tmp_path), mirror={"green": 10})
    update = client.online_endpoints.calls_to("begin_create_or_update")[0].args[0]
    assert (update.traffic, update.mirror_traffic) == ({"blue": 100, "green": 0}, {"green": 10})
    assert result.state.mirror == {"green": 10}


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"traffic": {"blue": 80, "green": 10}}, "sums to 90"),
        ({"traffic": {"blue": 90, "red": 10}}, "does not have"),
        ({"mirror": {"green": 60}}, "at most 50%"),
        ({"traffic": {"blue": 90, "green": 10}, "mirror": {"green": 5}}, "takes 10% of live traffic"),
    ],
)
def test_invalid_traffic_is_refused_before_anything_is_created(tmp_path: Path, kwargs: Any, message: str) -> None:
    client = fake_endpoint_client()
    live_endpoint(client)
    with pytest.raises(SpecError, match=message):
        go(client, Staged(tmp_path), **kwargs)
    assert sequence(client) == []


def test_updating_the_live_deployment_in_place_is_refused(tmp_path: Path) -> None:
    client = fake_endpoint_client()
    live_endpoint(client)
    with pytest.raises(SpecError, match="not a blue/green rollout"):
        go(client, Staged(tmp_path, deployment="blue"))
    assert sequence(client) == []


def test_an_existing_endpoint_keeps_its_auth_mode(tmp_path: Path) -> None:
    client = fake_endpoint_client()
    live_endpoint(client)
    with pytest.raises(SpecError, match="uses key auth, not aml_token"):
        go(client, Staged(tmp_path, auth="aml_token"))
    assert sequence(client) == []


def test_rollback_restores_the_previous_split_and_can_be_undone(tmp_path: Path) -> None:
    client = fake_endpoint_client()
    live_endpoint(client)
    go(client, Staged(tmp_path), traffic={"blue": 90, "green": 10})
    assert rollback(client, ENDPOINT).live == {"blue": 100}
    update = client.online_endpoints.calls_to("begin_create_or_update")[-1].args[0]
    assert json.loads(update.tags[PREVIOUS_TRAFFIC_TAG])["traffic"] == {"blue": 90, "green": 10}
    assert rollback(client, ENDPOINT).live == {"blue": 90, "green": 10}


def test_rollback_without_a_recorded_split_or_to_a_deleted_deployment_is_refused(tmp_path: Path) -> None:
    client = fake_endpoint_client()
    live_endpoint(client)
    with pytest.raises(AzureDLError, match="no earlier traffic split"):
        rollback(client, ENDPOINT)
    go(client, Staged(tmp_path), traffic={"blue": 0, "green": 100})
    delete_deployment(client, ENDPOINT, "blue")
    with pytest.raises(AzureDLError, match="deleted deployment"):
        rollback(client, ENDPOINT)


def test_live_traffic_to_a_mirrored_deployment_stops_the_mirror(tmp_path: Path) -> None:
    client = fake_endpoint_client()
    live_endpoint(client)
    go(client, Staged(tmp_path), mirror={"green": 20})
    notes: list[str] = []
    state = set_traffic(client, ENDPOINT, {"blue": 50, "green": 50}, log=notes.append)
    assert (state.live, state.mirror) == ({"blue": 50, "green": 50}, {})
    assert notes == ["mirror traffic to green stopped: it now takes live traffic"]
    assert set_traffic(client, ENDPOINT, None, {}).mirror == {}


def test_delete_refuses_a_deployment_that_takes_traffic(tmp_path: Path) -> None:
    client = fake_endpoint_client()
    live_endpoint(client)
    go(client, Staged(tmp_path))
    with pytest.raises(AzureDLError, match="takes 100% of live traffic") as raised:
        delete_deployment(client, ENDPOINT, "blue")
    assert f"azure-dl endpoint traffic {ENDPOINT} green=100" in str(raised.value)
    delete_deployment(client, ENDPOINT, "green")
    assert read_endpoint(client, ENDPOINT).deployment_names == ["blue"]
    with pytest.raises(AzureDLError, match="has no deployment green"):
        delete_deployment(client, ENDPOINT, "green")
    delete_endpoint(client, ENDPOINT)
    assert not read_endpoint(client, ENDPOINT).exists
    assert client.online_endpoints.calls_to("begin_delete")[0].kwargs == {"name": ENDPOINT}


@pytest.mark.parametrize(("auth", "secret"), [("key", "primary-key-of-reviews"), ("aml_token", "aml-token-of-reviews")])
def test_endpoint_target(auth: str, secret: str) -> None:
    client = fake_endpoint_client()
    client.online_endpoints.add_endpoint(ENDPOINT, auth_mode=auth, traffic={"blue": 100})
    uri, key = endpoint_target(client, ENDPOINT)
    assert (uri, key) == (f"https://{ENDPOINT}.eastus.inference.ml.azure.com/score", secret)
    assert endpoint_target(client, ENDPOINT, deployment="blue") == (uri, key)
    with pytest.raises(AzureDLError, match="has no deployment green"):
        endpoint_target(client, ENDPOINT, deployment="green")
    with pytest.raises(AzureDLError, match="does not exist"):
        endpoint_target(client, "other-endpoint")


def test_read_endpoint_never_asks_for_keys() -> None:
    client = fake_endpoint_client()
    client.online_endpoints.add_endpoint(ENDPOINT, traffic={"blue": 100})
    state = read_endpoint(client, ENDPOINT)
    assert state.deployments[0].model == "old-model:1" and state.auth_mode == "key"
    assert client.online_endpoints.calls_to("get_keys") == []


def test_choose_deployment_name(tmp_path: Path) -> None:
    client = fake_endpoint_client()
    assert choose_deployment_name(read_endpoint(client, ENDPOINT)) == "blue"
    live_endpoint(client)
    assert choose_deployment_name(read_endpoint(client, ENDPOINT)) == "green"
    go(client, Staged(tmp_path))
    assert choose_deployment_name(read_endpoint(client, ENDPOINT)) == "green"  # the one at 0%
    set_traffic(client, ENDPOINT, {"blue": 50, "green": 50})
    with pytest.raises(SpecError, match="both take traffic"):
        choose_deployment_name(read_endpoint(client, ENDPOINT))


def test_sample_image_request_is_a_png_of_the_models_resize_size() -> None:
    from PIL import Image

    request = sample_request("image-classification", {"resize_size": 40})
    image = Image.open(io.BytesIO(base64.b64decode(request["images"][0])))
    assert (image.format, image.size, request["top_k"]) == ("PNG", (40, 40), 1)
    assert sample_request("text-classification")["texts"][0]


def test_check_response_accepts_a_json_string_answer_and_checks_scores() -> None:
    body = answer({"texts": ["a"]})
    assert check_response(json.dumps(body), 1, ["negative", "positive"])[0]["label"] == "negative"
    with pytest.raises(SmokeTestFailed, match="expected a probability"):
        check_response(json.dumps({"predictions": [{"label": "negative", "score": 3}]}), 1)
