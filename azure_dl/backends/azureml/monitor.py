"""Azure Monitor for online endpoints through azure-mgmt-monitor: the client, and the platform metrics of an
endpoint and its deployments (`metrics.list` on their ARM ids), read into monitor_metrics' summary rows.

The MonitorManagementClient talks to the ARM endpoint the MLClient resolved from its cloud metadata
(`ml_client._base_url`, where azure-ai-ml itself sends its ARM calls), with the MLClient's credential and the
`{ARM}/.default` scope, so it reaches the same place the SDK does: Azure's management endpoint, or the local
workspace service. The retry settings are the MLClient's (client.RETRY_SETTINGS).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from azure_dl import monitor_metrics
from azure_dl.backends.azureml.client import RETRY_SETTINGS, sdk_errors
from azure_dl.backends.azureml.endpoints import get_endpoint, list_deployments
from azure_dl.errors import AzureDLError, ConfigError
from azure_dl.monitor_metrics import (
    DEPLOYMENT_DIMENSION,
    DEPLOYMENT_SCOPE,
    ENDPOINT_SCOPE,
    STATUS_CLASS_DIMENSION,
    SummaryRow,
)

MONITOR_INSTALL_HINT = "pip install azure-mgmt-monitor (or reinstall azure-dl with its pinned dependencies)"
# What Azure Monitor gives a Kubernetes online endpoint: Microsoft Learn documents the online-endpoint platform
# metrics (RequestsPerMinute, RequestLatency_P*, CpuUtilizationPercentage, DeploymentCapacity, ...) for managed
# online endpoints; a Kubernetes endpoint's requests go through the Azure ML extension's inference router on the
# cluster and its pods run on the cluster's nodes, so their numbers are the cluster's own monitoring (Container
# insights, Azure Monitor managed Prometheus), which is not read through an Azure ML resource id.
KUBERNETES_NOTE = (
    "endpoint {name} runs on Kubernetes compute {compute}: Azure Monitor's online-endpoint platform metrics are "
    "documented for managed online endpoints, so none are read for it. Its requests pass the Azure ML "
    "extension's inference router on the cluster and its pods' CPU/memory are the cluster's: read them from the "
    "cluster's own monitoring (Container insights or Azure Monitor managed Prometheus on the AKS/Arc cluster)."
)


def monitor_client(ml_client: Any) -> Any:
    """A MonitorManagementClient for the MLClient's subscription, ARM endpoint and credential."""
    try:
        from azure.mgmt.monitor import MonitorManagementClient
    except ImportError as exc:
        raise ConfigError(
            f"azure-mgmt-monitor cannot be imported ({exc.name or exc})", hint=MONITOR_INSTALL_HINT
        ) from exc

    base = str(ml_client._base_url).rstrip("/")
    return MonitorManagementClient(
        ml_client._credential,
        ml_client.subscription_id,
        base_url=base,
        credential_scopes=[f"{base}/.default"],
        **RETRY_SETTINGS,
    )


@dataclass
class EndpointMetrics:
    """What `endpoint metrics` prints: summary rows, the per-interval answers for a plot, and notes."""

    endpoint: str
    rows: list[SummaryRow] = field(default_factory=list)
    traffic: dict[str, Any] = field(default_factory=dict)  # RequestsPerMinute + latency at the plot's grain
    notes: list[str] = field(default_factory=list)


def _names(metrics: tuple[monitor_metrics.MetricDef, ...]) -> str:
    return ",".join(metric.name for metric in metrics)


def _list(client: Any, resource_id: str, names: str, span: str, interval: str, filter_: str | None) -> dict[str, Any]:
    answer = client.metrics.list(
        resource_id,
        timespan=span,
        interval=interval,
        metricnames=names,
        aggregation=",".join(monitor_metrics.AGGREGATIONS),
        filter=filter_,
    )
    serialized: dict[str, Any] = answer.serialize(keep_readonly=True)
    return serialized


def read_metrics(
    ml_client: Any, name: str, *, deployment: str | None, window: timedelta, plot: bool = False
) -> EndpointMetrics:
    """The endpoint's traffic metrics (its or one deployment's), requests by status class, connection metrics,
    and each deployment's (or the one's) resource metrics over `window`, ending now."""
    endpoint = get_endpoint(ml_client, name)
    if endpoint is None:
        raise AzureDLError(f"endpoint {name} does not exist in workspace {ml_client.workspace_name}")
    result = EndpointMetrics(name)
    compute = getattr(endpoint, "compute", None)
    if compute:
        result.notes.append(KUBERNETES_NOTE.format(name=name, compute=str(compute).rsplit("/", 1)[-1]))
        return result
    deployments = [d.name for d in list_deployments(ml_client, name)]
    if deployment is not None and deployment not in deployments:
        raise AzureDLError(
            f"endpoint {name} has no deployment {deployment}",
            hint=f"its deployments: {', '.join(deployments) or 'none'}",
        )
    span = monitor_metrics.timespan(window)
    client = monitor_client(ml_client)
    scope = f"endpoint {name}" if deployment is None else f"deployment {deployment}"
    only = f"{DEPLOYMENT_DIMENSION} eq '{deployment}'" if deployment else None
    traffic = tuple(m for m in monitor_metrics.metrics_of(ENDPOINT_SCOPE) if DEPLOYMENT_DIMENSION in m.dimensions)
    connections = tuple(m for m in monitor_metrics.metrics_of(ENDPOINT_SCOPE) if m not in traffic)
    split = f"{STATUS_CLASS_DIMENSION} eq '*'" + (f" and {only}" if only else "")
    with sdk_errors(f"read the Azure Monitor metrics of endpoint {name}"):
        result.rows += monitor_metrics.summarise(scope, _list(client, endpoint.id, _names(traffic), span, "FULL", only))
        by_class = monitor_metrics.summarise(
            scope, _list(client, endpoint.id, "RequestsPerMinute", span, "FULL", split)
        )
        result.rows += [row for row in by_class if row.split]
        if deployment is None:
            answer = _list(client, endpoint.id, _names(connections), span, "FULL", None)
            result.rows += monitor_metrics.summarise(scope, answer)
        resource_metrics = _names(monitor_metrics.metrics_of(DEPLOYMENT_SCOPE))
        for each in [deployment] if deployment else deployments:
            answer = _list(client, f"{endpoint.id}/deployments/{each}", resource_metrics, span, "FULL", None)
            result.rows += monitor_metrics.summarise(f"deployment {each}", answer)
        if plot:
            grain = monitor_metrics.plot_interval(window)
            names = "RequestsPerMinute,RequestLatency_P50,RequestLatency_P99"
            result.traffic = _list(client, endpoint.id, names, span, grain, only)
    return result
