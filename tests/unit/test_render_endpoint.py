"""Rendered endpoint/deployment YAML: golden files, loaded by azure.ai.ml's own loaders, checked field by field,
and serialised to the REST body the SDK would send."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from azure_dl.endpoint_spec import DeploymentSpec, EndpointSpec, ModelRef, ProbeSpec
from azure_dl.environments import environment_spec
from azure_dl.render_endpoint import render_deployment, write_deployment_yaml, write_endpoint_yaml
from tests.golden_utils import assert_golden, normalise

pytestmark = pytest.mark.filterwarnings(
    "ignore::marshmallow.warnings.ChangedInMarshmallow4Warning",
    "ignore::marshmallow.warnings.RemovedInMarshmallow4Warning",
)


def stub_code(root: Path) -> Path:
    for script in ("score_resnet.py", "score_lstm.py"):
        path = root / "code" / "training_scripts" / script
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("def init():\n    pass\n\n\ndef run(raw_data):\n    return raw_data\n")
    return root / "code"


def resnet_deployment(out: Path) -> DeploymentSpec:
    return DeploymentSpec(
        name="green",
        endpoint_name="xray-endpoint",
        model=ModelRef("xray-resnet", "7"),
        task="image-classification",
        code=stub_code(out),
        environment=environment_spec("inference", copy_to=out / "environments"),
        instance_type="Standard_E4s_v3",
        instance_count=2,
        request_timeout_ms=20_000,
        max_concurrent_requests=2,
        liveness_probe=ProbeSpec(initial_delay=30, failure_threshold=10),
        env_vars={"AZURE_DL_MAX_BATCH": "32"},
        tags={"azure_dl.snapshot_sha256": "0" * 64},
        description="image-classification model xray-resnet:7",
    )


def lstm_deployment(out: Path) -> DeploymentSpec:
    return DeploymentSpec(
        name="blue",
        endpoint_name="reviews",
        model=ModelRef("reviews-lstm", "1"),
        task="text-classification",
        code=stub_code(out),
        environment=environment_spec("inference", copy_to=out / "environments"),
    )


ENDPOINTS = {
    "endpoint_key.yml": EndpointSpec("xray-endpoint", description="azure-dl managed online endpoint"),
    "endpoint_aml_token.yml": EndpointSpec("reviews", auth_mode="aml_token", tags={"team": "nlp"}),
}


def collecting_deployment(out: Path) -> DeploymentSpec:
    return DeploymentSpec(**{**lstm_deployment(out).__dict__, "collect_data": True})  # type: ignore[arg-type]


DEPLOYMENTS = {
    "deployment_resnet.yml": resnet_deployment,
    "deployment_lstm.yml": lstm_deployment,
    "deployment_collect_data.yml": collecting_deployment,
}


@pytest.mark.parametrize("golden", sorted(ENDPOINTS))
def test_endpoint_yaml_matches_golden_and_loads(golden: str, tmp_path: Path) -> None:
    from azure.ai.ml import load_online_endpoint
    from azure.ai.ml.entities import ManagedOnlineEndpoint

    spec = ENDPOINTS[golden]
    path = write_endpoint_yaml(spec, tmp_path / "endpoint.yml")
    assert_golden(golden, normalise(path.read_text(), out_dir=tmp_path))

    endpoint = load_online_endpoint(path)
    assert isinstance(endpoint, ManagedOnlineEndpoint)
    assert (endpoint.name, endpoint.auth_mode, endpoint.tags) == (spec.name, spec.auth_mode, dict(spec.tags))
    assert endpoint.description == (spec.description or None)
    assert not endpoint.traffic  # traffic moves after the smoke test, never in endpoint.yml
    rest = endpoint._to_rest_online_endpoint(location="eastus")
    assert rest.properties.auth_mode == {"key": "Key", "aml_token": "AMLToken"}[spec.auth_mode]


@pytest.mark.parametrize("golden", sorted(DEPLOYMENTS))
def test_deployment_yaml_matches_golden_and_survives_loading(golden: str, tmp_path: Path) -> None:
    from azure.ai.ml import load_online_deployment
    from azure.ai.ml.entities import ManagedOnlineDeployment

    spec = DEPLOYMENTS[golden](tmp_path)
    path = write_deployment_yaml(spec, tmp_path / "deployment.yml")
    text = path.read_text()
    assert str(tmp_path) not in text, "paths inside the dry-run folder are written relative to it"
    assert_golden(golden, normalise(text, out_dir=tmp_path))

    loaded = load_online_deployment(path)
    assert isinstance(loaded, ManagedOnlineDeployment)
    assert (loaded.name, loaded.endpoint_name) == (spec.name, spec.endpoint_name)
    assert loaded.model == spec.model.asset.removeprefix("azureml:")
    assert (tmp_path / loaded.code_configuration.code).resolve() == spec.code.resolve()
    assert loaded.code_configuration.scoring_script == spec.scoring_script
    assert (tmp_path / loaded.code_configuration.code / spec.scoring_script).is_file()
    assert loaded.environment.image == spec.environment.image
    conda = yaml.safe_load(spec.environment.conda_file.read_text())  # type: ignore[union-attr]
    assert loaded.environment.conda_file == conda
    assert (loaded.instance_type, loaded.instance_count) == (spec.instance_type, spec.instance_count)
    assert loaded.request_settings.request_timeout_ms == spec.request_timeout_ms
    assert loaded.request_settings.max_concurrent_requests_per_instance == spec.max_concurrent_requests
    for probe, expected in (
        (loaded.liveness_probe, spec.liveness_probe),
        (loaded.readiness_probe, spec.readiness_probe),
    ):
        assert (probe.initial_delay, probe.period, probe.timeout) == (
            expected.initial_delay,
            expected.period,
            expected.timeout,
        )
        assert (probe.success_threshold, probe.failure_threshold) == (
            expected.success_threshold,
            expected.failure_threshold,
        )
    assert loaded.environment_variables == {"WORKER_COUNT": str(spec.max_concurrent_requests), **spec.env_vars}
    assert loaded.tags == dict(spec.tags)


def test_deployment_rest_body_after_the_uploads_the_sdk_does(tmp_path: Path) -> None:
    from azure.ai.ml import load_online_deployment

    from tests.endpoint_fakes import fake_endpoint_client

    spec = resnet_deployment(tmp_path)
    loaded = load_online_deployment(write_deployment_yaml(spec, tmp_path / "deployment.yml"))
    client = fake_endpoint_client()
    client.online_endpoints.add_endpoint("xray-endpoint")
    client.online_deployments.begin_create_or_update(loaded).result()
    stored = client.online_deployments.get("green", endpoint_name="xray-endpoint")
    wire = dict(stored._to_rest_object(location="eastus"))  # the JSON body, camelCase as sent
    properties = wire["properties"]
    assert properties["instanceType"] == "Standard_E4s_v3" and wire["sku"]["capacity"] == 2
    assert properties["model"].endswith("/models/xray-resnet/versions/7")
    assert properties["codeConfiguration"]["scoringScript"] == "training_scripts/score_resnet.py"
    assert properties["requestSettings"] == {"maxConcurrentRequestsPerInstance": 2, "requestTimeout": "PT20S"}
    assert properties["livenessProbe"]["initialDelay"] == "PT30S"
    assert properties["livenessProbe"]["failureThreshold"] == 10
    assert properties["environmentVariables"] == {"WORKER_COUNT": "2", "AZURE_DL_MAX_BATCH": "32"}


def test_latest_model_is_rendered_for_an_unregistered_folder(tmp_path: Path) -> None:
    spec = lstm_deployment(tmp_path)
    document = render_deployment(
        DeploymentSpec(**{**spec.__dict__, "model": ModelRef("reviews-lstm")}),  # type: ignore[arg-type]
        tmp_path,
    )
    assert document["model"] == "azureml:reviews-lstm@latest"


def test_app_insights_is_on_by_default_and_the_flag_turns_it_off(tmp_path: Path) -> None:
    import dataclasses

    spec = lstm_deployment(tmp_path)
    assert render_deployment(spec, tmp_path)["app_insights_enabled"] is True
    off = dataclasses.replace(spec, app_insights=False)
    assert render_deployment(off, tmp_path)["app_insights_enabled"] is False


def test_data_collection_is_off_by_default_and_the_flag_reaches_the_rest_body(tmp_path: Path) -> None:
    """--collect-data: model_inputs and model_outputs enabled in the entity the SDK sends (dataCollector)."""
    from azure.ai.ml import load_online_deployment

    assert "data_collector" not in render_deployment(lstm_deployment(tmp_path), tmp_path)
    off = load_online_deployment(write_deployment_yaml(lstm_deployment(tmp_path), tmp_path / "off.yml"))
    assert off.data_collector is None

    loaded = load_online_deployment(write_deployment_yaml(collecting_deployment(tmp_path), tmp_path / "on.yml"))
    # The schema lower-cases "True" as it loads it.
    assert {name: c.enabled for name, c in loaded.data_collector.collections.items()} == {
        "model_inputs": "true",
        "model_outputs": "true",
    }
    wire = dict(loaded._to_rest_object(location="eastus"))["properties"]
    assert wire["dataCollector"] == {
        "collections": {
            "model_inputs": {"dataCollectionMode": "enabled"},
            "model_outputs": {"dataCollectionMode": "enabled"},
        }
    }


def test_collected_data_lands_in_the_documented_blob_store_path(tmp_path: Path) -> None:
    from azure_dl.render_endpoint import collected_data_path

    assert collected_data_path(lstm_deployment(tmp_path), "model_inputs") == (
        "azureml://datastores/workspaceblobstore/paths/modelDataCollector/reviews/blue/model_inputs/yyyy/MM/dd/HH/"
    )
