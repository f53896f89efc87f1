"""Kubernetes online endpoint and deployment documents: golden YAML that azure.ai.ml loads as Kubernetes entities,
the REST body they give (instance type, resources, target-utilization scale settings), the spec's checks, and the
`deploy --compute --dry-run` plan, which says that the cost is the cluster's."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from azure_dl.cli.main import main
from azure_dl.endpoint_spec import DeploymentSpec, EndpointSpec, KubernetesSpec, ModelRef
from azure_dl.environments import environment_spec
from azure_dl.errors import SpecError
from azure_dl.render_endpoint import write_deployment_yaml, write_endpoint_yaml
from tests.golden_utils import assert_golden, normalise
from tests.unit.test_render_endpoint import stub_code

pytestmark = pytest.mark.filterwarnings(
    "ignore::marshmallow.warnings.ChangedInMarshmallow4Warning",
    "ignore::marshmallow.warnings.RemovedInMarshmallow4Warning",
)

KUBERNETES = KubernetesSpec(
    "aks-ready",
    requests={"cpu": "1", "memory": "4Gi"},
    limits={"cpu": "2", "memory": "4Gi"},
    min_instances=1,
    max_instances=3,
    target_utilization=60,
)


def _deployment(out: Path, kubernetes: KubernetesSpec = KUBERNETES, instance_type: str = "cpu-small") -> DeploymentSpec:
    return DeploymentSpec(
        name="blue",
        endpoint_name="reviews-k8s",
        model=ModelRef("reviews-lstm", "1"),
        task="text-classification",
        code=stub_code(out),
        environment=environment_spec("inference", copy_to=out / "environments"),
        instance_type=instance_type,
        kubernetes=kubernetes,
    )


def test_kubernetes_documents_match_golden_and_load_as_kubernetes_entities(tmp_path: Path) -> None:
    from azure.ai.ml import load_online_deployment, load_online_endpoint
    from azure.ai.ml.entities import KubernetesOnlineDeployment, KubernetesOnlineEndpoint

    endpoint_path = write_endpoint_yaml(EndpointSpec("reviews-k8s", compute="aks-ready"), tmp_path / "endpoint.yml")
    deployment_path = write_deployment_yaml(_deployment(tmp_path), tmp_path / "deployment.yml")
    assert_golden("endpoint_kubernetes.yml", normalise(endpoint_path.read_text(), out_dir=tmp_path))
    assert_golden("deployment_kubernetes.yml", normalise(deployment_path.read_text(), out_dir=tmp_path))

    endpoint = load_online_endpoint(endpoint_path)
    assert isinstance(endpoint, KubernetesOnlineEndpoint) and endpoint.compute == "aks-ready"
    deployment = load_online_deployment(deployment_path)
    assert isinstance(deployment, KubernetesOnlineDeployment)
    body = dict(deployment._to_rest_object(location="local"))["properties"]  # the JSON body, camelCase as sent
    assert body["endpointComputeType"] == "Kubernetes" and body["instanceType"] == "cpu-small"
    assert body["containerResourceRequirements"] == {
        "containerResourceRequests": {"cpu": "1", "memory": "4Gi"},
        "containerResourceLimits": {"cpu": "2", "memory": "4Gi"},
    }
    assert body["scaleSettings"] == {
        "scaleType": "TargetUtilization",
        "minInstances": 1,
        "maxInstances": 3,
        "targetUtilizationPercentage": 60,
        "pollingInterval": "PT10S",
    }
    assert body["livenessProbe"]["initialDelay"] == "PT10S"


def test_the_kubernetes_spec_refuses_what_the_service_would(tmp_path: Path) -> None:
    with pytest.raises(SpecError, match="1 <= min <= max"):
        KubernetesSpec("aks-ready", min_instances=3, max_instances=2)
    with pytest.raises(SpecError, match="1-100"):
        KubernetesSpec("aks-ready", target_utilization=0)
    with pytest.raises(SpecError, match="compute name"):
        KubernetesSpec("a")
    with pytest.raises(SpecError, match="not a Kubernetes instance type name"):
        _deployment(tmp_path, instance_type="Standard_DS3_v2")
    with pytest.raises(SpecError, match="compute name"):
        EndpointSpec("reviews-k8s", compute="-bad")


def test_a_dry_run_on_kubernetes_compute_plans_the_clusters_cost(
    trained_lstm: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    model = Path(shutil.copytree(trained_lstm, tmp_path / "lstm"))
    out = tmp_path / "dry"
    args = ["deploy", str(model), "--endpoint", "reviews-k8s", "--compute", "aks-ready", "--dry-run", "--out", str(out)]
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert "defaultinstancetype on Kubernetes compute aks-ready" in printed
    assert "the cluster's: its nodes bill as AKS/Arc nodes" in printed
    assert "USD" not in printed
    assert "compute: azureml:aks-ready" in (out / "endpoint.yml").read_text()
    assert "type: kubernetes" in (out / "deployment.yml").read_text()
    assert main([*args[:-2], "--out", str(tmp_path / "bad"), "--instance-type", "Not_A_K8s_Type"]) == 2
    assert "not a Kubernetes instance type name" in capsys.readouterr().err


def test_a_kubernetes_deployment_takes_data_collection_too(tmp_path: Path) -> None:
    """Microsoft Learn documents model data collection for managed and Kubernetes online endpoints alike."""
    from dataclasses import replace

    from azure.ai.ml import load_online_deployment
    from azure.ai.ml.entities import KubernetesOnlineDeployment

    path = write_deployment_yaml(replace(_deployment(tmp_path), collect_data=True), tmp_path / "deployment.yml")
    deployment = load_online_deployment(path)
    assert isinstance(deployment, KubernetesOnlineDeployment)
    body = dict(deployment._to_rest_object(location="local"))["properties"]
    assert set(body["dataCollector"]["collections"]) == {"model_inputs", "model_outputs"}
