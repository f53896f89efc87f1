"""Kubernetes compute: attach an AKS or Arc cluster to the workspace once the Azure ML extension is on it, and
list the instance types an attached cluster offers.

The extension check is an ARM GET of `{clusterId}/providers/Microsoft.KubernetesConfiguration/extensions`
(api-version 2023-05-01) sent to the ARM endpoint and with the credential of the MLClient (as monitor.py does),
looking for an extension of type Microsoft.AzureML.Kubernetes that provisioned; without one, the error carries the
documented `az k8s-extension create` command for that cluster ("Deploy Azure Machine Learning extension on AKS or
Arc Kubernetes cluster"). The attach is the SDK's own `compute.begin_attach(KubernetesCompute(...))`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from azure_dl.backends.azureml.client import RETRY_SETTINGS, sdk_errors
from azure_dl.errors import AzureDLError, SpecError

EXTENSION_TYPE = "microsoft.azureml.kubernetes"
EXTENSIONS_API_VERSION = "2023-05-01"
_CLUSTER_ID = re.compile(
    r"^/subscriptions/(?P<subscription>[^/]+)/resourceGroups/(?P<group>[^/]+)/providers/"
    r"(?P<provider>Microsoft\.ContainerService/managedClusters|Microsoft\.Kubernetes/connectedClusters)/"
    r"(?P<name>[^/]+)$",
    re.IGNORECASE,
)


def parse_cluster_id(resource_id: str) -> dict[str, str]:
    match = _CLUSTER_ID.match(resource_id.strip())
    if match is None:
        raise SpecError(
            f"--resource-id {resource_id!r} is not an AKS or Arc cluster's ARM id",
            hint="give /subscriptions/S/resourceGroups/RG/providers/Microsoft.ContainerService/managedClusters/NAME "
            "(AKS) or .../Microsoft.Kubernetes/connectedClusters/NAME (Arc); `az aks show --query id` prints it",
        )
    return match.groupdict()


def extension_command(resource_id: str) -> str:
    """The documented command that installs the Azure ML extension (inference enabled) on the cluster."""
    parts = parse_cluster_id(resource_id)
    cluster_type = "managedClusters" if "containerservice" in parts["provider"].lower() else "connectedClusters"
    return (
        "az k8s-extension create --name azureml --extension-type Microsoft.AzureML.Kubernetes "
        "--config enableInference=True inferenceRouterServiceType=LoadBalancer allowInsecureConnections=True "
        f"--cluster-type {cluster_type} --cluster-name {parts['name']} --resource-group {parts['group']} "
        f"--subscription {parts['subscription']} --scope cluster"
    )


def _arm_get(ml_client: Any, path: str, params: dict[str, str]) -> Any:
    from azure.core.pipeline import policies
    from azure.core.rest import HttpRequest
    from azure.mgmt.core import ARMPipelineClient

    base = str(ml_client._base_url).rstrip("/")
    client: ARMPipelineClient[Any, Any] = ARMPipelineClient(
        base_url=base,
        policies=[
            policies.HeadersPolicy(),
            policies.RetryPolicy(**RETRY_SETTINGS),
            policies.BearerTokenCredentialPolicy(ml_client._credential, f"{base}/.default"),
        ],
    )
    return client.send_request(HttpRequest("GET", f"{base}{path}", params=params))


def azureml_extension_installed(ml_client: Any, resource_id: str) -> bool:
    """Whether the cluster has a provisioned Azure ML extension; an AzureDLError when the cluster is not found."""
    path = f"{resource_id}/providers/Microsoft.KubernetesConfiguration/extensions"
    with sdk_errors(f"list the extensions of cluster {resource_id}"):
        response = _arm_get(ml_client, path, {"api-version": EXTENSIONS_API_VERSION})
    if response.status_code == 404:
        raise AzureDLError(
            f"cluster {resource_id} was not found", hint="check --resource-id (`az aks show --query id`)"
        )
    if response.status_code != 200:
        raise AzureDLError(
            f"could not list the extensions of cluster {resource_id}: {response.status_code} {response.text()[:300]}"
        )
    for extension in response.json().get("value") or []:
        properties = extension.get("properties") or {}
        if (
            str(properties.get("extensionType") or "").lower() == EXTENSION_TYPE
            and properties.get("provisioningState") == "Succeeded"
        ):
            return True
    return False


def attach(ml_client: Any, name: str, resource_id: str, namespace: str) -> Any:
    """Attach the cluster as Kubernetes compute `name` (after the extension check); returns the compute."""
    parse_cluster_id(resource_id)
    if not azureml_extension_installed(ml_client, resource_id):
        raise AzureDLError(
            f"cluster {resource_id} does not have the Azure ML extension (Microsoft.AzureML.Kubernetes); "
            "install it first, then attach again:\n  " + extension_command(resource_id)
        )
    from azure.ai.ml.entities import KubernetesCompute

    with sdk_errors(f"attach cluster {resource_id} as compute {name}"):
        return ml_client.compute.begin_attach(
            KubernetesCompute(name=name, resource_id=resource_id, namespace=namespace)
        ).result()


@dataclass(frozen=True)
class InstanceType:
    name: str
    default: bool
    requests: dict[str, Any]
    limits: dict[str, Any]
    node_selector: dict[str, str] | None


def kubernetes_compute(ml_client: Any, name: str) -> Any:
    """The attached Kubernetes compute `name`; an AzureDLError naming the type of any other compute."""
    from azure.core.exceptions import ResourceNotFoundError

    with sdk_errors(f"read compute {name}"):
        try:
            compute = ml_client.compute.get(name)
        except ResourceNotFoundError:
            raise AzureDLError(f"compute {name} does not exist in workspace {ml_client.workspace_name}") from None
    if str(compute.type).lower() != "kubernetes":
        raise AzureDLError(
            f"compute {name} is {compute.type}, not Kubernetes: instance types belong to attached Kubernetes clusters",
            hint="attach one with `azure-dl compute attach-k8s NAME --resource-id ID`",
        )
    return compute


def instance_types(ml_client: Any, name: str) -> list[InstanceType]:
    """The instance types of attached Kubernetes compute `name`, as its compute body lists them."""
    # KubernetesCompute.properties is the REST KubernetesProperties as_dict(): the wire's camelCase keys.
    properties = kubernetes_compute(ml_client, name).properties or {}
    default = properties.get("defaultInstanceType")
    found = []
    for type_name, schema in (properties.get("instanceTypes") or {}).items():
        resources = schema.get("resources") or {}
        found.append(
            InstanceType(
                name=type_name,
                default=type_name == default,
                requests=resources.get("requests") or {},
                limits=resources.get("limits") or {},
                node_selector=schema.get("nodeSelector"),
            )
        )
    return found
