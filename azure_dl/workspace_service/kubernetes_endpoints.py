"""Kubernetes online endpoints and deployments: the checks online_endpoints.py and online_deployments.py apply when
an endpoint names `properties.compute` or a deployment says `endpointComputeType: Kubernetes`.

A Kubernetes endpoint runs on an attached Kubernetes compute (kubernetes_computes.py); its compute cannot change
once created. A Kubernetes deployment belongs to a Kubernetes endpoint (and a managed one to a managed endpoint),
names one of its compute's instance types (none: the compute's defaultInstanceType, as Azure ML picks), takes its
containerResourceRequirements from that instance type when it sends none (the SDK cannot read a Kubernetes
deployment without them), and
scales by `scaleSettings`: Default, or TargetUtilization with 1 <= minInstances <= maxInstances and a
targetUtilizationPercentage of 1-100 (what `endpoint autoscale` sets on Kubernetes). Each violation is a 400 that
names the value. Past these checks a Kubernetes deployment is recorded, and served, as a managed one is.
"""

from __future__ import annotations

from typing import Any

from azure_dl.workspace_service import kubernetes_computes
from azure_dl.workspace_service.context import ServiceContext
from azure_dl.workspace_service.http import ApiError


def _bad(message: str) -> ApiError:
    return ApiError(400, "BadArgument", message)


def attached(context: ServiceContext, compute: str) -> dict[str, Any] | None:
    """The attached Kubernetes compute a `compute` value (a name, azureml:NAME or an ARM id) names, if any."""
    name = str(compute).rsplit("/", 1)[-1].removeprefix("azureml:")
    return context.store.get(kubernetes_computes.KIND, name)


def endpoint_compute(
    context: ServiceContext, endpoint: str, compute: Any, existing: dict[str, Any] | None
) -> str | None:
    """The ARM id of the endpoint's compute (None for a managed endpoint), checked."""
    before = (existing or {}).get("compute")
    if not compute:
        if before:
            raise _bad(f"online endpoint {endpoint} runs on Kubernetes compute {before}; its compute cannot be removed")
        return None
    record = attached(context, str(compute))
    if record is None:
        raise _bad(
            f"online endpoint {endpoint}: compute {compute} is not an attached Kubernetes compute of this workspace "
            "(attach one with `azure-dl compute attach-k8s`; omit compute for a managed endpoint)"
        )
    compute_id = f"{context.workspace_id}/computes/{record['name']}"
    if existing is not None and (before or "").lower() != compute_id.lower():
        raise _bad(f"online endpoint {endpoint}: its compute is {before or 'managed'} and cannot change to {compute}")
    return compute_id


def checked_deployment(
    context: ServiceContext, endpoint: dict[str, Any], name: str, properties: dict[str, Any]
) -> dict[str, Any]:
    """The Kubernetes deployment's properties with the instance type filled in; 400s as the module says."""
    where = f"deployment {name} of endpoint {endpoint['name']}"
    compute = attached(context, endpoint.get("compute") or "")
    if compute is None:
        raise _bad(f"{where}: a Kubernetes deployment needs a Kubernetes endpoint; {endpoint['name']} is managed")
    cluster = compute["properties"]["properties"]
    types = cluster["instanceTypes"]
    instance_type = properties.get("instanceType") or cluster["defaultInstanceType"]
    if instance_type not in types:
        raise _bad(
            f"{where}: instance type {instance_type!r} is not one of compute {compute['name']}'s: {', '.join(types)}"
        )
    scale = properties.get("scaleSettings") or {"scaleType": "Default"}
    scale_type = str(scale.get("scaleType") or "Default")
    if scale_type.lower() == "targetutilization":
        low, high = scale.get("minInstances", 1), scale.get("maxInstances", 1)
        target = scale.get("targetUtilizationPercentage", 70)
        numbers = (low, high, target)
        if not all(isinstance(n, int) and not isinstance(n, bool) for n in numbers) or not 1 <= low <= high:
            raise _bad(f"{where}: scaleSettings needs 1 <= minInstances <= maxInstances, got {low} and {high}")
        if not 1 <= target <= 100:
            raise _bad(f"{where}: targetUtilizationPercentage {target} is not 1-100")
    elif scale_type.lower() != "default":
        raise _bad(f"{where}: scaleSettings.scaleType {scale_type!r} is not Default or TargetUtilization")
    resources = properties.get("containerResourceRequirements")
    if not resources:
        of_type = types[instance_type].get("resources") or {}

        def _set(values: dict[str, Any] | None) -> dict[str, Any]:
            return {key: value for key, value in (values or {}).items() if value is not None}

        resources = {
            "containerResourceRequests": _set(of_type.get("requests")),
            "containerResourceLimits": _set(of_type.get("limits")),
        }
    return {
        **properties,
        "instanceType": instance_type,
        "scaleSettings": scale,
        "containerResourceRequirements": resources,
    }


def check_managed_deployment(endpoint: dict[str, Any], name: str) -> None:
    if endpoint.get("compute"):
        raise _bad(
            f"deployment {name} of endpoint {endpoint['name']}: the endpoint runs on Kubernetes compute "
            f"{endpoint['compute']}, so its deployments are endpointComputeType Kubernetes, not Managed"
        )
