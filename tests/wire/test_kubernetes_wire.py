"""Kubernetes compute against the local service: `compute attach-k8s` checks the Azure ML extension (printing the
install command when it is missing), attaches a cluster declared in DIR/kubernetes.toml, `compute instance-types`
lists its instance types, and the service refuses what Azure would (an undeclared cluster, a missing extension).
Then the issue's Done-when sequence on a Kubernetes target through the CLI: attach, register, deploy blue, score,
deploy green at 90/10, metrics, autoscale (the deployment's scale settings), rollback, delete."""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from azure_dl.cli.main import main
from azure_dl.workspace_service.service import WorkspaceService

pytestmark = pytest.mark.filterwarnings(
    "ignore::marshmallow.warnings.ChangedInMarshmallow4Warning",
    "ignore::marshmallow.warnings.RemovedInMarshmallow4Warning",
)

GROUP = "/subscriptions/11111111-0000-0000-0000-000000000000/resourceGroups/aks-rg/providers"
READY = f"{GROUP}/Microsoft.ContainerService/managedClusters/aks-ready"
BARE = f"{GROUP}/Microsoft.Kubernetes/connectedClusters/arc-bare"
UNKNOWN = f"{GROUP}/Microsoft.ContainerService/managedClusters/aks-unknown"
CLUSTERS = f"""
[[cluster]]
id = "{READY}"
azureml_extension = true
default_instance_type = "cpu-small"
[cluster.instance_types.cpu-small]
requests = {{ cpu = "1", memory = "4Gi" }}
limits = {{ cpu = "2", memory = "4Gi" }}
[cluster.instance_types.gpu]
requests = {{ cpu = "4", memory = "16Gi", "nvidia.com/gpu" = 1 }}
limits = {{ cpu = "4", memory = "16Gi", "nvidia.com/gpu" = 1 }}
node_selector = {{ agentpool = "gpu" }}

[[cluster]]
id = "{BARE}"
"""


@pytest.fixture()
def ml_client(connection: dict[str, str], module_ml_client):  # type: ignore[no-untyped-def]
    return module_ml_client


@pytest.fixture()
def kubernetes_file(workspace_service: WorkspaceService) -> Iterator[Path]:
    path = workspace_service.data_dir / "kubernetes.toml"
    path.write_text(CLUSTERS)
    yield path
    path.unlink(missing_ok=True)


def test_attach_checks_the_extension_attaches_and_lists_instance_types(
    ml_client, kubernetes_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:  # type: ignore[no-untyped-def]
    assert main(["compute", "attach-k8s", "arc-k8s", "--resource-id", BARE]) != 0
    err = capsys.readouterr().err
    assert "does not have the Azure ML extension" in err
    assert "az k8s-extension create --name azureml --extension-type Microsoft.AzureML.Kubernetes" in err
    assert "--cluster-type connectedClusters --cluster-name arc-bare --resource-group aks-rg" in err

    assert main(["compute", "attach-k8s", "nope-k8s", "--resource-id", UNKNOWN]) != 0
    assert f"cluster {UNKNOWN} was not found" in capsys.readouterr().err
    assert main(["compute", "attach-k8s", "bad-k8s", "--resource-id", "/subscriptions/x/aks"]) != 0
    assert "is not an AKS or Arc cluster" in capsys.readouterr().err

    assert main(["compute", "attach-k8s", "aks-ready", "--resource-id", READY, "--namespace", "ml"]) == 0
    out = capsys.readouterr().out
    assert f"Attached cluster {READY} as Kubernetes compute aks-ready (namespace ml)" in out
    assert "cpu-small (default)" in out and "nvidia.com/gpu=1" in out and "agentpool=gpu" in out

    compute = ml_client.compute.get("aks-ready")
    assert (compute.type, compute.resource_id, compute.namespace) == ("kubernetes", READY, "ml")
    assert "aks-ready" in [c.name for c in ml_client.compute.list()]

    assert main(["compute", "instance-types", "aks-ready"]) == 0
    assert "cpu=1, memory=4Gi" in capsys.readouterr().out
    try:
        ml_client.compute.begin_delete("aks-ready").result()  # detaches; the cluster stays declared
    finally:
        from azure.core.exceptions import ResourceNotFoundError

        with pytest.raises(ResourceNotFoundError):
            ml_client.compute.get("aks-ready")


def test_the_service_refuses_an_undeclared_cluster_and_a_missing_extension_by_name(
    ml_client, kubernetes_file: Path
) -> None:  # type: ignore[no-untyped-def]
    from azure.ai.ml.entities import KubernetesCompute
    from azure.core.exceptions import HttpResponseError

    with pytest.raises(HttpResponseError, match="does not have the Azure ML extension") as caught:
        ml_client.compute.begin_attach(KubernetesCompute(name="arc-bare", resource_id=BARE)).result()
    assert caught.value.status_code == 400
    with pytest.raises(HttpResponseError, match=f"cluster {UNKNOWN} is not attachable here"):
        ml_client.compute.begin_attach(KubernetesCompute(name="aks-unknown", resource_id=UNKNOWN)).result()


def test_instance_types_of_an_amlcompute_cluster_name_its_type(ml_client, capsys) -> None:  # type: ignore[no-untyped-def]
    from azure.ai.ml.entities import AmlCompute

    ml_client.compute.begin_create_or_update(
        AmlCompute(name="k8s-not", size="Standard_DS3_v2", max_instances=1)
    ).result()
    try:
        assert main(["compute", "instance-types", "k8s-not"]) != 0
        assert "is amlcompute, not Kubernetes" in capsys.readouterr().err
    finally:
        ml_client.compute.begin_delete("k8s-not").result()


def _kubernetes_deployment(tmp_path: Path, endpoint: str, model: str, instance_type: str):  # type: ignore[no-untyped-def]
    from azure.ai.ml.entities import CodeConfiguration, Environment, KubernetesOnlineDeployment

    (tmp_path / "code").mkdir(exist_ok=True)
    (tmp_path / "code" / "score.py").write_text("def init():\n    pass\n\n\ndef run(raw):\n    return raw\n")
    (tmp_path / "conda.yml").write_text("name: score\ndependencies:\n  - python=3.11\n")
    return KubernetesOnlineDeployment(
        name="other",
        endpoint_name=endpoint,
        model=model,
        code_configuration=CodeConfiguration(code=str(tmp_path / "code"), scoring_script="score.py"),
        environment=Environment(
            image="mcr.microsoft.com/azureml/minimal-py311-inference:latest", conda_file=str(tmp_path / "conda.yml")
        ),
        instance_type=instance_type,
        instance_count=1,
    )


MODEL = "reviews-srv"  # the serving tests' name: the same trained folder registers as the same version
ENDPOINT = "reviews-k8s"


def test_the_done_when_sequence_on_a_kubernetes_target_through_the_cli(
    ml_client,
    kubernetes_file: Path,
    workspace_service: WorkspaceService,
    trained_lstm: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:  # type: ignore[no-untyped-def]
    """attach-k8s, register, deploy blue, score, deploy green at 90/10, metrics, autoscale, rollback, delete: the
    issue's Done-when sequence on a Kubernetes target, each step through `main([...])` and checked through the SDK."""
    from azure.core.exceptions import HttpResponseError, ResourceNotFoundError
    from azure.mgmt.monitor.models import AutoscaleProfile, AutoscaleSettingResource, ScaleCapacity

    from azure_dl.backends.azureml.monitor import monitor_client
    from azure_dl.workspace_service import deployment_processes

    assert workspace_service.context is not None
    processes = deployment_processes.of(workspace_service.context)
    assert main(["compute", "attach-k8s", "k8s", "--resource-id", READY]) == 0
    try:
        run = Path(shutil.copytree(trained_lstm, tmp_path / "runs" / "lstm"))  # as test_endpoints_serving_wire has it
        assert main(["register", str(run), "--name", MODEL]) == 0
        version = ml_client.models.get(MODEL, label="latest").version
        out = tmp_path / "out"
        assert main(["deploy", f"{MODEL}:{version}", "--endpoint", ENDPOINT, "--compute", "k8s", "--yes",
                     "--out", str(out / "blue")]) == 0  # fmt: skip
        endpoint = ml_client.online_endpoints.get(ENDPOINT)
        assert endpoint.compute.endswith("/computes/k8s") and endpoint.traffic == {"blue": 100}
        blue = ml_client.online_deployments.get("blue", ENDPOINT)
        assert (blue.type.lower(), blue.instance_type) == ("kubernetes", "cpu-small")  # the cluster's default

        # The service refuses an instance type the cluster does not have, naming those it has.
        with pytest.raises(HttpResponseError, match="'cpu-large' is not one of compute k8s's: cpu-small, gpu"):
            ml_client.online_deployments.begin_create_or_update(
                _kubernetes_deployment(tmp_path, ENDPOINT, f"azureml:{MODEL}:{version}", "cpu-large")
            )

        capsys.readouterr()
        assert main(["score", ENDPOINT, "--text", "A wonderful, moving film - loved it!", "--json"]) == 0
        (prediction,) = json.loads(capsys.readouterr().out)["predictions"]
        assert prediction["label"] in json.loads((run / "labels.json").read_text())

        assert main(["deploy", f"{MODEL}:{version}", "--endpoint", ENDPOINT, "--compute", "k8s", "--deployment",
                     "green", "--traffic", "blue=90,green=10", "--yes", "--out", str(out / "green")]) == 0  # fmt: skip
        assert ml_client.online_endpoints.get(ENDPOINT).traffic == {"blue": 90, "green": 10}
        assert ml_client.online_deployments.get("green", ENDPOINT).type.lower() == "kubernetes"

        capsys.readouterr()
        assert main(["endpoint", "metrics", ENDPOINT]) == 0
        err = capsys.readouterr().err
        assert "runs on Kubernetes compute k8s" in err and "cluster's own monitoring" in err

        autoscale = ["endpoint", "autoscale", ENDPOINT, "--deployment", "blue"]
        serving = processes.pids(ENDPOINT, "blue")
        assert main([*autoscale, "--min", "1", "--max", "3", "--cpu", "70"]) == 0, capsys.readouterr().err
        assert processes.pids(ENDPOINT, "blue") == serving  # kept, not acted on: the same processes serve
        scale = ml_client.online_deployments.get("blue", ENDPOINT).scale_settings
        assert (scale.type, scale.min_instances, scale.max_instances, scale.target_utilization_percentage) == (
            "target_utilization",
            1,
            3,
            70,
        )
        capsys.readouterr()
        assert main([*autoscale, "--show"]) == 0
        assert "min 1, max 3, target CPU 70%" in capsys.readouterr().out
        # Azure Monitor autoscale does not scale a Kubernetes deployment: the service says what does.
        setting = AutoscaleSettingResource(
            location="local",
            target_resource_uri=ml_client.online_deployments.get("blue", ENDPOINT).id,
            profiles=[
                AutoscaleProfile(name="p", capacity=ScaleCapacity(minimum="1", maximum="2", default="1"), rules=[])
            ],
        )
        with pytest.raises(HttpResponseError, match="runs on Kubernetes"):
            monitor_client(ml_client).autoscale_settings.create_or_update(ml_client.resource_group_name, "k8s", setting)

        assert main(["endpoint", "rollback", ENDPOINT]) == 0
        assert ml_client.online_endpoints.get(ENDPOINT).traffic == {"blue": 100, "green": 0}

        pids = processes.pids(ENDPOINT, "blue") + processes.pids(ENDPOINT, "green")
        assert len(pids) == 2 and all(_alive(pid) for pid in pids)
        assert main(["endpoint", "delete", ENDPOINT, "--yes"]) == 0
        assert not any(_alive(pid) for pid in pids)
        assert processes.get(ENDPOINT, "blue") is None and processes.get(ENDPOINT, "green") is None
        with pytest.raises(ResourceNotFoundError):
            ml_client.online_endpoints.get(ENDPOINT)
    finally:
        if main(["endpoint", "show", ENDPOINT]) == 0:  # a failed step left it: stop its processes
            main(["endpoint", "delete", ENDPOINT, "--yes"])
        ml_client.compute.begin_delete("k8s").result()


def _alive(pid: int) -> bool:
    try:
        os.killpg(pid, 0)  # the group: gunicorn's workers too
    except ProcessLookupError:
        return False
    return True
