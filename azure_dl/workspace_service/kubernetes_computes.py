"""Kubernetes compute (AKS or Arc clusters attached to the workspace), the clusters that can be attached, and the
Azure ML extension check, for the local service. computes.py hands a `computeType: Kubernetes` PUT here.

There is no cluster on this machine, so the clusters that could be attached are declared in DIR/kubernetes.toml
(read on every request, like quota.toml), each with its ARM id, whether the Azure ML extension is installed, and
its instance types::

    [[cluster]]
    id = "/subscriptions/S/resourceGroups/RG/providers/Microsoft.ContainerService/managedClusters/aks1"
    azureml_extension = true            # default false: attaching is refused, naming the missing extension
    default_instance_type = "cpu-small" # default: the first instance type
    [cluster.instance_types.cpu-small]  # none declared: Azure ML's defaultinstancetype
    requests = { cpu = "1", memory = "4Gi" }
    limits = { cpu = "2", memory = "4Gi" }
    node_selector = { agentpool = "cpu" }

An attach PUT (what `ml_client.compute.begin_attach(KubernetesCompute(...))` sends: computeType Kubernetes,
resourceId, properties.namespace) is refused with a 400 naming the id when the id is not declared or not an AKS
(`Microsoft.ContainerService/managedClusters`) or Arc (`Microsoft.Kubernetes/connectedClusters`) cluster, and
naming the extension (`Microsoft.AzureML.Kubernetes`) when it is not installed. The answer carries the cluster's
instance types in `properties.properties.instanceTypes` and `defaultInstanceType`, as Azure's Kubernetes compute
body does (there is no separate instance-types route in Azure ML's REST API). The extension list the CLI checks
before attaching is served too: `GET {clusterId}/providers/Microsoft.KubernetesConfiguration/extensions`.
Records: kind "kubernetes-computes" (kept apart from AmlCompute, so quota counts no AKS node), key = the name.
"""

from __future__ import annotations

import re
import tomllib
from datetime import UTC, datetime
from typing import Any

from azure_dl.workspace_service.context import LOCATION, PROVIDER, ServiceContext
from azure_dl.workspace_service.http import ApiError, Request, Response, Router, json_response
from azure_dl.workspace_service.identity import authenticated

FILE = "kubernetes.toml"
KIND = "kubernetes-computes"
COMPUTE_TYPE = "Kubernetes"
EXTENSION_TYPE = "Microsoft.AzureML.Kubernetes"
DEFAULT_NAMESPACE = "default"
# Azure ML's own default when a cluster defines none (Microsoft Learn, "Create and manage instance types").
DEFAULT_INSTANCE_TYPES: dict[str, dict[str, Any]] = {
    "defaultinstancetype": {
        "requests": {"cpu": "100m", "memory": "2Gi"},
        "limits": {"cpu": "2", "memory": "2Gi", "nvidia.com/gpu": None},
    }
}
_CLUSTER_ID = re.compile(
    r"^/subscriptions/[^/]+/resourceGroups/[^/]+/providers/"
    r"(Microsoft\.ContainerService/managedClusters|Microsoft\.Kubernetes/connectedClusters)/[^/]+$",
    re.IGNORECASE,
)
_CLUSTER_KEYS = {"id", "azureml_extension", "default_instance_type", "instance_types"}
EXTENSIONS_SUFFIX = "/providers/Microsoft.KubernetesConfiguration/extensions"


def _bad(message: str) -> ApiError:
    return ApiError(400, "BadRequest", message)


def declared_clusters(context: ServiceContext) -> dict[str, dict[str, Any]]:
    """The clusters of DIR/kubernetes.toml by lower-case id, checked; {} without the file."""
    path = context.data_dir / FILE
    if not path.is_file():
        return {}
    try:
        document = tomllib.loads(path.read_text())
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ApiError(400, "InvalidKubernetesFile", f"{path} is not valid TOML: {exc}; fix or remove it") from exc
    clusters: dict[str, dict[str, Any]] = {}
    for index, cluster in enumerate(document.get("cluster") or []):
        unknown = sorted(set(cluster) - _CLUSTER_KEYS)
        if unknown or not _CLUSTER_ID.match(str(cluster.get("id") or "")):
            raise ApiError(
                400,
                "InvalidKubernetesFile",
                f"{path}: [[cluster]] {index + 1} needs id = an AKS or Arc cluster's ARM id "
                f"(unknown keys: {unknown or 'none'}; takes {', '.join(sorted(_CLUSTER_KEYS))})",
            )
        clusters[str(cluster["id"]).lower()] = cluster
    return clusters


def instance_types(cluster: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Instance types in Azure's InstanceTypeSchema shape (nodeSelector, resources.requests/limits)."""
    declared = cluster.get("instance_types") or {}
    if not declared:
        return {name: {"nodeSelector": None, "resources": dict(spec)} for name, spec in DEFAULT_INSTANCE_TYPES.items()}
    return {
        name: {
            "nodeSelector": spec.get("node_selector"),
            "resources": {"requests": spec.get("requests") or {}, "limits": spec.get("limits") or {}},
        }
        for name, spec in declared.items()
    }


def checked_attach(context: ServiceContext, name: str, properties: dict[str, Any]) -> dict[str, Any]:
    """The Kubernetes properties of an attach PUT, with the cluster's instance types; 400s as the docstring says."""
    resource_id = str(properties.get("resourceId") or "")
    if not _CLUSTER_ID.match(resource_id):
        raise _bad(
            f"compute {name}: resourceId {resource_id or '(none)'!r} is not an AKS cluster "
            "(.../Microsoft.ContainerService/managedClusters/NAME) or an Arc cluster "
            "(.../Microsoft.Kubernetes/connectedClusters/NAME)"
        )
    cluster = declared_clusters(context).get(resource_id.lower())
    if cluster is None:
        raise _bad(
            f"compute {name}: cluster {resource_id} is not attachable here: the local workspace service attaches "
            f"the clusters declared in {context.data_dir / FILE} ([[cluster]] id = ...)"
        )
    if not cluster.get("azureml_extension", False):
        raise _bad(
            f"compute {name}: cluster {resource_id} does not have the Azure ML extension ({EXTENSION_TYPE}) "
            "installed; install it with `az k8s-extension create --extension-type Microsoft.AzureML.Kubernetes ...`"
        )
    sent = properties.get("properties") or {}
    types = instance_types(cluster)
    default = str(cluster.get("default_instance_type") or next(iter(types)))
    if default not in types:
        raise _bad(f"{FILE}: default_instance_type {default!r} of {resource_id} is not one of {', '.join(types)}")
    return {
        "resourceId": str(cluster["id"]),
        "description": properties.get("description"),
        "properties": {
            "namespace": sent.get("namespace") or DEFAULT_NAMESPACE,
            "defaultInstanceType": default,
            "instanceTypes": types,
            "extensionInstanceReleaseTrain": "stable",
            "relayConnectionString": None,
            "serviceBusConnectionString": None,
            "extensionPrincipalId": None,
            "vcName": None,
        },
    }


def _now() -> str:
    return datetime.now(UTC).isoformat()


def record(
    name: str, document: dict[str, Any], attached: dict[str, Any], existing: dict[str, Any] | None
) -> dict[str, Any]:
    now = _now()
    return {
        "name": name,
        "location": document.get("location") or LOCATION,
        "tags": document.get("tags") or {},
        "identity": document.get("identity"),
        "properties": attached,
        "createdOn": existing["createdOn"] if existing else now,
        "modifiedOn": now,
    }


def body(context: ServiceContext, stored: dict[str, Any]) -> dict[str, Any]:
    attached = stored["properties"]
    document: dict[str, Any] = {
        "id": f"{context.workspace_id}/computes/{stored['name']}",
        "name": stored["name"],
        "type": f"{PROVIDER}/workspaces/computes",
        "location": stored["location"],
        "tags": stored.get("tags") or {},
        "properties": {
            "createdOn": stored["createdOn"],
            "modifiedOn": stored["modifiedOn"],
            "disableLocalAuth": False,
            "description": attached.get("description"),
            "resourceId": attached["resourceId"],
            "computeType": COMPUTE_TYPE,
            "computeLocation": stored["location"],
            "provisioningState": "Succeeded",
            "provisioningErrors": None,
            "isAttachedCompute": True,
            "properties": attached["properties"],
        },
    }
    if stored.get("identity"):
        document["identity"] = stored["identity"]
    return document


def register(router: Router, context: ServiceContext) -> None:
    def _extensions(request: Request) -> Response:
        cluster_id = request.path[: -len(EXTENSIONS_SUFFIX)]
        cluster = declared_clusters(context).get(cluster_id.lower())
        if cluster is None:
            raise ApiError(
                404,
                "ResourceNotFound",
                f"The cluster '{cluster_id}' was not found: the local workspace service knows the clusters declared "
                f"in {context.data_dir / FILE}",
            )
        extensions = []
        if cluster.get("azureml_extension", False):
            extensions.append(
                {
                    "id": f"{cluster['id']}{EXTENSIONS_SUFFIX}/azureml",
                    "name": "azureml",
                    "type": "Microsoft.KubernetesConfiguration/extensions",
                    "properties": {
                        "extensionType": EXTENSION_TYPE.lower(),
                        "provisioningState": "Succeeded",
                        "releaseTrain": "stable",
                        "configurationSettings": {"enableInference": "True"},
                    },
                }
            )
        return json_response(200, {"value": extensions})

    for provider in ("Microsoft.ContainerService/managedClusters", "Microsoft.Kubernetes/connectedClusters"):
        route = "/subscriptions/{subscription}/resourceGroups/{group}/providers/" + provider + "/{cluster}"
        router.add("GET", route + EXTENSIONS_SUFFIX, authenticated(context, _extensions))
