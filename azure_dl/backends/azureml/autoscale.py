"""`endpoint autoscale`: a managed online deployment's Azure Monitor autoscale setting (create/replace, show,
delete) through azure-mgmt-monitor, the documented way to autoscale managed online endpoints ("Autoscale online
endpoints in Azure Machine Learning": a setting targeting the deployment, rules on CpuUtilizationPercentage).

The setting is named ENDPOINT-DEPLOYMENT-autoscale and holds one profile: minimum/maximum instances, default =
the deployment's instance count kept within them, a scale-out rule (average CPU over 5 minutes above --cpu: one
more instance, 5 minutes cooldown) and a scale-in rule (below the scale-in threshold: one fewer).

A Kubernetes online deployment is not scaled by Azure Monitor: its own scale settings do it (`scale_settings:
target_utilization`, the Azure ML extension's autoscaler on the cluster), so on one the same verb sets
min/max instances and the target CPU utilization there, --show reads them and --delete goes back to the fixed
instance count (scale type default).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from azure_dl.backends.azureml.client import sdk_errors
from azure_dl.backends.azureml.monitor import monitor_client
from azure_dl.errors import AzureDLError, SpecError

CPU_METRIC = "CpuUtilizationPercentage"
WINDOW = timedelta(minutes=5)  # the rules' averaging window and cooldown (the documented example's)
KUBERNETES_POLLING_S = 10  # how often the cluster's autoscaler reads utilization (Azure ML's default)
MAX_INSTANCES = 50  # what this verb accepts; Azure's own limit is the subscription's quota


@dataclass(frozen=True)
class AutoscaleRequest:
    """What the flags ask for, validated."""

    minimum: int
    maximum: int
    cpu: int  # scale out above this average CPU %
    scale_in_below: int  # scale in below this average CPU %

    @classmethod
    def checked(cls, minimum: int, maximum: int, cpu: int, scale_in_below: int | None) -> AutoscaleRequest:
        if not 1 <= minimum <= maximum <= MAX_INSTANCES:
            raise SpecError(
                f"--min {minimum} --max {maximum}: give 1 <= min <= max <= {MAX_INSTANCES}",
                hint="a managed online deployment keeps at least one instance",
            )
        if not 1 <= cpu <= 100:
            raise SpecError(f"--cpu {cpu} is not a percentage", hint="give 1-100, e.g. --cpu 70")
        below = scale_in_below if scale_in_below is not None else max(1, cpu // 2)
        if not 0 <= below < cpu:
            raise SpecError(
                f"--scale-in-below {below} must be under --cpu {cpu}", hint="or the two rules would fight each other"
            )
        return cls(minimum, maximum, cpu, below)


def setting_name(endpoint: str, deployment: str) -> str:
    return f"{endpoint}-{deployment}-autoscale"


def _rule(deployment_id: str, operator: str, threshold: int, direction: str) -> Any:
    from azure.mgmt.monitor.models import MetricTrigger, ScaleAction, ScaleRule

    return ScaleRule(
        metric_trigger=MetricTrigger(
            metric_name=CPU_METRIC,
            metric_resource_uri=deployment_id,
            time_grain=timedelta(minutes=1),
            statistic="Average",
            time_window=WINDOW,
            time_aggregation="Average",
            operator=operator,
            threshold=threshold,
        ),
        scale_action=ScaleAction(direction=direction, type="ChangeCount", value="1", cooldown=WINDOW),
    )


def build_setting(location: str, deployment_id: str, instances: int, wanted: AutoscaleRequest) -> Any:
    """The AutoscaleSettingResource for a deployment now running `instances` instances."""
    from azure.mgmt.monitor.models import AutoscaleProfile, AutoscaleSettingResource, ScaleCapacity

    default = min(max(instances, wanted.minimum), wanted.maximum)
    profile = AutoscaleProfile(
        name="azure-dl-cpu",
        capacity=ScaleCapacity(minimum=str(wanted.minimum), maximum=str(wanted.maximum), default=str(default)),
        rules=[
            _rule(deployment_id, "GreaterThan", wanted.cpu, "Increase"),
            _rule(deployment_id, "LessThan", wanted.scale_in_below, "Decrease"),
        ],
    )
    return AutoscaleSettingResource(
        location=location, profiles=[profile], enabled=True, target_resource_uri=deployment_id
    )


def _deployment(ml_client: Any, endpoint: str, deployment: str) -> Any:
    from azure.core.exceptions import ResourceNotFoundError

    with sdk_errors(f"read deployment {deployment} of endpoint {endpoint}"):
        try:
            return ml_client.online_deployments.get(deployment, endpoint)
        except ResourceNotFoundError:
            raise AzureDLError(f"endpoint {endpoint} has no deployment {deployment}") from None


def is_kubernetes(deployment: Any) -> bool:
    return str(getattr(deployment, "type", "")).lower() == "kubernetes"


def _kubernetes_rows(deployment: Any) -> list[tuple[str, str]]:
    scale = deployment.scale_settings
    kind = str(getattr(scale, "type", "default")).lower()
    rows = [("scaled by", "the deployment's own scale settings (Kubernetes: not Azure Monitor)")]
    if kind == "target_utilization":
        rows.append(
            (
                "instances",
                f"min {scale.min_instances}, max {scale.max_instances}, "
                f"target CPU {scale.target_utilization_percentage}% (polled every {scale.polling_interval} s)",
            )
        )
    else:
        rows.append(("instances", f"fixed at {deployment.instance_count} (scale type default)"))
    return rows


def _update_kubernetes(ml_client: Any, found: Any, scale: Any) -> Any:
    found.scale_settings = scale
    with sdk_errors(f"update the scale settings of deployment {found.name}"):
        ml_client.online_deployments.begin_create_or_update(found).result()
    return found


def set_autoscale(ml_client: Any, endpoint: str, deployment: str, wanted: AutoscaleRequest) -> list[tuple[str, str]]:
    """Create or replace the deployment's autoscale setting (Kubernetes: its scale settings); what now holds."""
    found = _deployment(ml_client, endpoint, deployment)
    if is_kubernetes(found):
        from azure.ai.ml.entities import TargetUtilizationScaleSettings

        scale = TargetUtilizationScaleSettings(
            min_instances=wanted.minimum,
            max_instances=wanted.maximum,
            target_utilization_percentage=wanted.cpu,
            polling_interval=KUBERNETES_POLLING_S,
        )
        return _kubernetes_rows(_update_kubernetes(ml_client, found, scale))
    location = getattr(ml_client.online_endpoints.get(endpoint), "location", None) or "local"
    setting = build_setting(location, found.id, int(found.instance_count or 1), wanted)
    with sdk_errors(f"set the autoscale setting of deployment {deployment}"):
        answered = monitor_client(ml_client).autoscale_settings.create_or_update(
            ml_client.resource_group_name, setting_name(endpoint, deployment), setting
        )
    return describe(answered)


def show_autoscale(ml_client: Any, endpoint: str, deployment: str) -> list[tuple[str, str]] | None:
    """What scales the deployment, or None when nothing does (no setting; Kubernetes: a fixed count)."""
    found = _deployment(ml_client, endpoint, deployment)
    if is_kubernetes(found):
        scaled = str(getattr(found.scale_settings, "type", "default")).lower() == "target_utilization"
        return _kubernetes_rows(found) if scaled else None
    setting = _setting(ml_client, endpoint, deployment)
    return describe(setting) if setting is not None else None


def delete_autoscale(ml_client: Any, endpoint: str, deployment: str) -> str:
    """Stop autoscaling the deployment (it keeps its current instance count); what was done."""
    found = _deployment(ml_client, endpoint, deployment)
    if is_kubernetes(found):
        from azure.ai.ml.entities import DefaultScaleSettings

        _update_kubernetes(ml_client, found, DefaultScaleSettings())
        return f"Deployment {deployment} is back to a fixed {found.instance_count} instance(s) (scale type default)."
    name = setting_name(endpoint, deployment)
    with sdk_errors(f"delete the autoscale setting of deployment {deployment}"):
        monitor_client(ml_client).autoscale_settings.delete(ml_client.resource_group_name, name)
    return f"Deleted autoscale setting {name}; the deployment keeps its current instance count."


def _setting(ml_client: Any, endpoint: str, deployment: str) -> Any | None:
    from azure.core.exceptions import ResourceNotFoundError

    with sdk_errors(f"read the autoscale setting of deployment {deployment}"):
        try:
            return monitor_client(ml_client).autoscale_settings.get(
                ml_client.resource_group_name, setting_name(endpoint, deployment)
            )
        except ResourceNotFoundError:
            return None


def _text(value: Any) -> str:
    if isinstance(value, timedelta):
        return f"{int(value.total_seconds() // 60)}m"
    return str(getattr(value, "value", value))


def describe(setting: Any) -> list[tuple[str, str]]:
    """Label/value pairs of a setting for the terminal."""
    profile = setting.profiles[0]
    pairs = [
        ("setting", setting.name),
        ("target", setting.target_resource_uri),
        ("enabled", "yes" if setting.enabled else "no"),
        (
            "instances",
            f"min {profile.capacity.minimum}, max {profile.capacity.maximum}, default {profile.capacity.default}",
        ),
    ]
    for rule in profile.rules or []:
        trigger, action = rule.metric_trigger, rule.scale_action
        sign = "+" if _text(action.direction) == "Increase" else "-"
        pairs.append(
            (
                "rule",
                f"{trigger.metric_name} {_text(trigger.time_aggregation)} over {_text(trigger.time_window)} "
                f"{_text(trigger.operator)} {trigger.threshold:g} -> {sign}{action.value} "
                f"(cooldown {_text(action.cooldown)})",
            )
        )
    return pairs
