"""Pure rendering of endpoint and deployment specs as Azure ML CLI v2 YAML (plain dicts, no SDK).

`render_endpoint` / `render_deployment` give the documents `az ml online-endpoint create --file` and
`az ml online-deployment create --file` read, and that azure.ai.ml.load_online_endpoint / load_online_deployment
load; the Azure backend loads exactly the files the dry-run writes. Traffic is not part of endpoint.yml: a new
deployment must exist before traffic can name it, so traffic moves in a separate update after the smoke test.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from azure_dl.endpoint_spec import DeploymentSpec, EndpointSpec, ProbeSpec

ENDPOINT_SCHEMA = "https://azuremlschemas.azureedge.net/latest/managedOnlineEndpoint.schema.json"
DEPLOYMENT_SCHEMA = "https://azuremlschemas.azureedge.net/latest/managedOnlineDeployment.schema.json"
KUBERNETES_ENDPOINT_SCHEMA = "https://azuremlschemas.azureedge.net/latest/kubernetesOnlineEndpoint.schema.json"
KUBERNETES_DEPLOYMENT_SCHEMA = "https://azuremlschemas.azureedge.net/latest/kubernetesOnlineDeployment.schema.json"
# Model data collection: the two collections the scoring scripts write (training_scripts/data_collection.py
# names its Collector objects the same), and where Azure puts collected data by default (Microsoft Learn,
# "Collect production data from models deployed for real-time inferencing"; azure-ai-ml's DEFAULT_MDC_PATH).
COLLECTIONS = ("model_inputs", "model_outputs")
COLLECTED_DATA_ROOT = "azureml://datastores/workspaceblobstore/paths/modelDataCollector"
HEADER = "# Rendered by azure-dl: exactly what it creates. `az ml {command} create --file {name}` reads it too.\n"


def _relative(path: Path, base: Path) -> str:
    """`path` relative to the YAML's folder when inside it (portable), else absolute."""
    path, base = path.resolve(), base.resolve()
    if path == base or base in path.parents:
        return Path(os.path.relpath(path, base)).as_posix()
    return path.as_posix()


def render_endpoint(spec: EndpointSpec) -> dict[str, Any]:
    """The managed (or, with a compute, Kubernetes) online endpoint document (no traffic: see the module docstring)."""
    schema = KUBERNETES_ENDPOINT_SCHEMA if spec.compute else ENDPOINT_SCHEMA
    document: dict[str, Any] = {"$schema": schema, "name": spec.name}
    if spec.compute:
        document["compute"] = f"azureml:{spec.compute}"
    document["auth_mode"] = spec.auth_mode
    if spec.description:
        document["description"] = spec.description
    if spec.tags:
        document["tags"] = dict(spec.tags)
    return document


def _probe(probe: ProbeSpec) -> dict[str, int]:
    return {
        "initial_delay": probe.initial_delay,
        "period": probe.period,
        "timeout": probe.timeout,
        "success_threshold": probe.success_threshold,
        "failure_threshold": probe.failure_threshold,
    }


def _environment(spec: DeploymentSpec, yaml_dir: Path) -> str | dict[str, str]:
    environment = spec.environment
    if environment.is_registered:
        return environment.name
    assert environment.image is not None and environment.conda_file is not None  # checked by EnvironmentSpec
    return {"image": environment.image, "conda_file": _relative(environment.conda_file, yaml_dir)}


def worker_env(spec: DeploymentSpec) -> dict[str, str]:
    """Environment variables of the container: the inference server runs WORKER_COUNT workers, which must match
    max_concurrent_requests_per_instance (Azure ML's deployment schema notes), then the user's own."""
    return {"WORKER_COUNT": str(spec.max_concurrent_requests), **dict(spec.env_vars)}


def data_collector() -> dict[str, Any]:
    """The deployment's `data_collector`: the collections the scoring scripts' Collector objects are named after
    (as Microsoft Learn's "Collect production data" spells the YAML; `enabled` is the string the SDK's schema
    takes). Rolling rate and sampling rate stay Azure's defaults (hourly folders, every request)."""
    return {"collections": {name: {"enabled": "True"} for name in COLLECTIONS}}


def collected_data_path(spec: DeploymentSpec, collection: str) -> str:
    """Where Azure writes a collection: the workspace blob store, one folder per hour, JSON lines."""
    return f"{COLLECTED_DATA_ROOT}/{spec.endpoint_name}/{spec.name}/{collection}/yyyy/MM/dd/HH/"


def render_deployment(spec: DeploymentSpec, yaml_dir: Path) -> dict[str, Any]:
    """The managed (or Kubernetes) online deployment document; code and conda file paths are relative to `yaml_dir`."""
    kubernetes = spec.kubernetes
    document: dict[str, Any] = {
        "$schema": KUBERNETES_DEPLOYMENT_SCHEMA if kubernetes else DEPLOYMENT_SCHEMA,
        "name": spec.name,
    }
    if kubernetes:
        document["type"] = "kubernetes"
    document["endpoint_name"] = spec.endpoint_name
    if spec.description:
        document["description"] = spec.description
    document["model"] = spec.model.asset
    document["code_configuration"] = {"code": _relative(spec.code, yaml_dir), "scoring_script": spec.scoring_script}
    document["environment"] = _environment(spec, yaml_dir)
    document["environment_variables"] = worker_env(spec)
    document["instance_type"] = spec.instance_type
    document["instance_count"] = spec.instance_count
    if kubernetes:
        if kubernetes.requests or kubernetes.limits:
            document["resources"] = {"requests": dict(kubernetes.requests), "limits": dict(kubernetes.limits)}
        document["scale_settings"] = {
            "type": "target_utilization",
            "min_instances": kubernetes.min_instances,
            "max_instances": kubernetes.max_instances,
            "target_utilization_percentage": kubernetes.target_utilization,
            "polling_interval": kubernetes.polling_interval_s,
        }
    document["request_settings"] = {
        "request_timeout_ms": spec.request_timeout_ms,
        "max_concurrent_requests_per_instance": spec.max_concurrent_requests,
    }
    document["app_insights_enabled"] = spec.app_insights
    if spec.collect_data:
        document["data_collector"] = data_collector()
    document["liveness_probe"] = _probe(spec.liveness_probe)
    document["readiness_probe"] = _probe(spec.readiness_probe)
    if spec.tags:
        document["tags"] = dict(spec.tags)
    return document


def to_yaml(document: Mapping[str, Any], name: str, command: str) -> str:
    """Deterministic YAML text with a header saying which `az ml` command reads it."""
    from azure_dl.yaml_text import dump_yaml

    body = dump_yaml(document)
    return HEADER.format(command=command, name=name) + body


def write_endpoint_yaml(spec: EndpointSpec, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(to_yaml(render_endpoint(spec), path.name, "online-endpoint"), encoding="utf-8")
    return path


def write_deployment_yaml(spec: DeploymentSpec, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    document = render_deployment(spec, path.parent)
    path.write_text(to_yaml(document, path.name, "online-deployment"), encoding="utf-8")
    return path
