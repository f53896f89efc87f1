"""Fake `ml_client.models`, `online_endpoints` and `online_deployments` (and sweep-aware `jobs`) for the Azure tests.

Built on tests/azure_fakes.FakeOperations: every call is recorded with a deep copy of the entity passed; each
entity is serialised the way the SDK does before its HTTP call (models: `_to_rest_object()`; endpoints:
`_to_rest_online_endpoint(location)`; deployments: `_to_rest_object(location)` after the uploads
`upload_dependencies` would do), so an entity the service could not receive fails the test; answers are real SDK
entities rebuilt from that REST form. The service rules the SDK leaves to the service (traffic names existing
deployments, one mirror target, a deployment's endpoint exists) are enforced here too.
"""

from __future__ import annotations

import copy
import hashlib
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from tests.azure_fakes import (
    LOCATION,
    FakeJobOperations,
    FakeOperations,
    FakePoller,
    arm_id,
    fake_ml_client,
    http_error,
    not_found,
)

Responder = Callable[[str, dict[str, Any]], str]  # (deployment, request) -> response body


class Timed:
    """Also log each call as (group, method, kwargs) in a list shared by all groups: the order across groups."""

    group = ""
    timeline: list[tuple[str, str, dict[str, Any]]] | None = None

    def _record(self, method: str, *args: Any, **kwargs: Any) -> None:
        if self.timeline is not None:
            self.timeline.append((self.group, method, kwargs))
        super()._record(method, *args, **kwargs)  # type: ignore[misc]


# ---------------------------------------------------------------------------------------------------------- models
class FakeModelOperations(Timed, FakeOperations):
    """`ml_client.models`: create_or_update (uploads a local folder), list(name=), get, download."""

    def __init__(self) -> None:
        super().__init__()
        self.models: dict[str, dict[str, Any]] = {}
        self.uploaded: dict[str, dict[str, bytes]] = {}  # "name:version" -> {relative path: bytes}

    def _returned(self, model: Any, version: str, files: dict[str, bytes]) -> Any:
        from azure.ai.ml.entities import Model

        model = copy.deepcopy(model)
        digest = hashlib.sha256(json.dumps(sorted(files)).encode()).hexdigest()[:16]
        model.path = f"azureml://datastores/workspaceblobstore/paths/LocalUpload/{digest}/model"
        model.version = version
        rest = model._to_rest_object()
        rest.id = arm_id("models", f"{model.name}/versions/{version}")
        rest.name = version
        if rest.properties.flavors is None:
            rest.properties.flavors = {}
        return Model._from_rest_object(rest)

    def add_model(self, name: str, version: str, files: dict[str, bytes], tags: dict[str, str] | None = None) -> Any:
        """Put a model version in the workspace, as if registered earlier."""
        from azure.ai.ml.entities import Model

        returned = self._returned(Model(name=name, path=".", type="custom_model", tags=tags or {}), version, files)
        self.models.setdefault(name, {})[version] = returned
        self.uploaded[f"{name}:{version}"] = dict(files)
        return returned

    def create_or_update(self, model: Any) -> Any:
        self._record("create_or_update", copy.deepcopy(model))
        folder = Path(model.path)
        assert folder.is_dir(), f"the model path {folder} is not a local folder to upload"
        files = {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}
        assert files, f"{folder} is empty: the SDK refuses empty folders"
        versions = self.models.get(model.name, {})
        version = str(model.version or (max((int(v) for v in versions), default=0) + 1))
        returned = self._returned(model, version, files)
        self.models.setdefault(model.name, {})[version] = returned
        self.uploaded[f"{model.name}:{version}"] = files
        self._raise_after("create_or_update")
        return returned

    def list(self, name: str | None = None, **kwargs: Any) -> Iterator[Any]:
        self._record("list", name=name, **kwargs)
        versions = self.models.get(name or "", {})
        return iter([versions[v] for v in sorted(versions, key=int)])

    def get(self, name: str, version: str | None = None, label: str | None = None) -> Any:
        self._record("get", name, version=version, label=label)
        versions = self.models.get(name, {})
        if version is None or version not in versions:
            raise not_found("Model", f"{name}:{version}")
        return versions[version]

    def download(self, name: str, version: str, download_path: str | Path = ".") -> None:
        self._record("download", name, version=version, download_path=download_path)
        self.get(name, version)
        root = Path(download_path) / name / "model"
        for relative, content in self.uploaded[f"{name}:{version}"].items():
            (root / relative).parent.mkdir(parents=True, exist_ok=True)
            (root / relative).write_bytes(content)


# ------------------------------------------------------------------------------------------------- deployments
class FakeOnlineDeploymentOperations(Timed, FakeOperations):
    """`ml_client.online_deployments`: begin_create_or_update, get, list, begin_delete."""

    def __init__(self) -> None:
        super().__init__()
        self.deployments: dict[tuple[str, str], Any] = {}
        self.endpoints: FakeOnlineEndpointOperations | None = None  # linked by fake_endpoint_client

    def names(self, endpoint: str) -> list[str]:
        return sorted(name for ep, name in self.deployments if ep == endpoint)

    def add_deployment(self, endpoint: str, name: str, model: str = "azureml:old-model:1") -> Any:
        """A deployment already running on `endpoint` (the endpoint must exist in the linked fake)."""
        from azure.ai.ml.entities import CodeConfiguration, ManagedOnlineDeployment

        deployment = ManagedOnlineDeployment(
            name=name,
            endpoint_name=endpoint,
            model=model,
            code_configuration=CodeConfiguration(code=arm_id("codes", "old/versions/1"), scoring_script="score.py"),
            environment=arm_id("environments", "old/versions/1"),
            instance_type="Standard_DS3_v2",
            instance_count=1,
        )
        return self._store(deployment)

    def _store(self, deployment: Any) -> Any:
        from azure.ai.ml._restclient.arm_ml_service.models import DefaultScaleSettings
        from azure.ai.ml.entities import OnlineDeployment

        rest = deployment._to_rest_object(location=LOCATION)
        rest.name = deployment.name
        rest.id = arm_id("onlineEndpoints", f"{deployment.endpoint_name}/deployments/{deployment.name}")
        rest.properties.provisioning_state = "Succeeded"
        rest.properties.scale_settings = DefaultScaleSettings()
        returned = OnlineDeployment._from_rest_object(rest)
        returned.endpoint_name = deployment.endpoint_name
        self.deployments[(deployment.endpoint_name, deployment.name)] = returned
        return returned

    def begin_create_or_update(self, deployment: Any, **kwargs: Any) -> FakePoller:
        from azure.ai.ml.entities import Environment

        self._record("begin_create_or_update", copy.deepcopy(deployment), **kwargs)
        assert self.endpoints is not None
        if deployment.endpoint_name not in self.endpoints.endpoints:
            raise not_found("OnlineEndpoint", deployment.endpoint_name)
        # What upload_dependencies does before serialising: local code and the inline environment become assets.
        uploaded = copy.deepcopy(deployment)
        code = Path(deployment.base_path, deployment.code_configuration.code)
        script = code / deployment.code_configuration.scoring_script
        assert script.is_file(), f"scoring script {script} missing (the SDK validates it before uploading)"
        uploaded.code_configuration.code = arm_id(
            "codes", f"{hashlib.sha256(str(code).encode()).hexdigest()[:8]}/versions/1"
        )
        assert isinstance(deployment.environment, Environment), "expected the inline inference environment"
        assert deployment.environment.image and deployment.environment.conda_file, "environment needs image + conda"
        uploaded.environment = arm_id(
            "environments", f"CliV2AnonymousEnvironment/versions/{deployment.environment.version}"
        )
        name, _, version = str(deployment.model).partition(":")
        assert version and "@" not in version, (
            f"deployments are created with a pinned model version, got {deployment.model}"
        )
        uploaded.model = arm_id("models", f"{name}/versions/{version}")
        returned = self._store(uploaded)
        self._raise_after("begin_create_or_update")
        return FakePoller(returned)

    def get(self, name: str, endpoint_name: str, **kwargs: Any) -> Any:
        self._record("get", name, endpoint_name=endpoint_name)
        if (endpoint_name, name) not in self.deployments:
            raise not_found("OnlineDeployment", name)
        return self.deployments[(endpoint_name, name)]

    def list(self, endpoint_name: str, **kwargs: Any) -> Iterator[Any]:
        self._record("list", endpoint_name)
        return iter([self.deployments[(endpoint_name, name)] for name in self.names(endpoint_name)])

    def begin_delete(self, name: str, endpoint_name: str, **kwargs: Any) -> FakePoller:
        self._record("begin_delete", name=name, endpoint_name=endpoint_name)
        if (endpoint_name, name) not in self.deployments:
            raise not_found("OnlineDeployment", name)
        assert self.endpoints is not None
        endpoint = self.endpoints.endpoints.get(endpoint_name)
        if endpoint is not None and (endpoint.traffic or {}).get(name):
            raise http_error(400, f"deployment {name} has traffic", code="BadArgument")
        del self.deployments[(endpoint_name, name)]
        return FakePoller(None)


# --------------------------------------------------------------------------------------------------- endpoints
def answer(request: dict[str, Any], labels: tuple[str, ...] = ("negative", "positive")) -> str:
    """What a working scoring script returns for `request`: one prediction per item."""
    items = request.get("images") or request.get("texts") or []
    probabilities = {labels[0]: 0.8, labels[1]: 0.2}
    return json.dumps(
        {"predictions": [{"label": labels[0], "score": 0.8, "probabilities": probabilities}] * len(items)}
    )


class FakeOnlineEndpointOperations(Timed, FakeOperations):
    """`ml_client.online_endpoints`: begin_create_or_update, get, list, get_keys, invoke, begin_delete."""

    def __init__(self, deployments: FakeOnlineDeploymentOperations, responder: Responder | None = None) -> None:
        super().__init__()
        self.endpoints: dict[str, Any] = {}
        self.deployment_ops = deployments
        self.responder: Responder = responder or (lambda deployment, request: answer(request))
        deployments.endpoints = self

    def add_endpoint(self, name: str, *, auth_mode: str = "key", traffic: dict[str, int] | None = None) -> Any:
        """An existing endpoint; `traffic` names deployments that are created with it."""
        from azure.ai.ml.entities import ManagedOnlineEndpoint

        self._store(ManagedOnlineEndpoint(name=name, auth_mode=auth_mode))
        for deployment in traffic or {}:
            self.deployment_ops.add_deployment(name, deployment)
        if traffic:
            endpoint = copy.deepcopy(self.endpoints[name])
            endpoint.traffic = dict(traffic)
            self._store(endpoint)
        return self.endpoints[name]

    def _store(self, endpoint: Any) -> Any:
        from azure.ai.ml.entities import OnlineEndpoint

        rest = endpoint._to_rest_online_endpoint(location=LOCATION)
        rest.name = endpoint.name
        rest.id = arm_id("onlineEndpoints", endpoint.name)
        rest.properties.scoring_uri = f"https://{endpoint.name}.{LOCATION}.inference.ml.azure.com/score"
        rest.properties.provisioning_state = "Succeeded"
        returned = OnlineEndpoint._from_rest_object(rest)
        self.endpoints[endpoint.name] = returned
        return returned

    def _check_service_rules(self, endpoint: Any) -> None:
        names = set(self.deployment_ops.names(endpoint.name))
        traffic = {k: int(v) for k, v in (endpoint.traffic or {}).items() if int(v)}
        mirror = {k: int(v) for k, v in (endpoint.mirror_traffic or {}).items() if int(v)}
        unknown = (set(traffic) | set(mirror)) - names
        if unknown:
            raise http_error(400, f"traffic names unknown deployments {sorted(unknown)}", code="BadArgument")
        if traffic and sum(traffic.values()) != 100:
            raise http_error(400, "traffic must sum to 100", code="BadArgument")
        if len(mirror) > 1 or any(v > 50 for v in mirror.values()) or set(mirror) & set(traffic):
            raise http_error(400, f"invalid mirror traffic {mirror}", code="BadArgument")

    def begin_create_or_update(self, endpoint: Any, **kwargs: Any) -> FakePoller:
        self._record("begin_create_or_update", copy.deepcopy(endpoint), **kwargs)
        endpoint = copy.deepcopy(endpoint)
        # What the SDK does before serialising: deployments at 0% are left out of the maps.
        endpoint.traffic = {k.lower(): v for k, v in (endpoint.traffic or {}).items() if v and int(v)}
        endpoint.mirror_traffic = {k.lower(): v for k, v in (endpoint.mirror_traffic or {}).items() if v and int(v)}
        self._check_service_rules(endpoint)
        returned = self._store(endpoint)
        self._raise_after("begin_create_or_update")
        return FakePoller(returned)

    def get(self, name: str, **kwargs: Any) -> Any:
        self._record("get", name)
        if name not in self.endpoints:
            raise not_found("OnlineEndpoint", name)
        endpoint = copy.deepcopy(self.endpoints[name])
        # The SDK fills in 0 for each deployment without traffic or mirror traffic.
        for deployment in self.deployment_ops.names(name):
            if not endpoint.traffic.get(deployment) and not endpoint.mirror_traffic.get(deployment):
                endpoint.traffic[deployment] = 0
        return endpoint

    def list(self, **kwargs: Any) -> Iterator[Any]:
        self._record("list")
        return iter(list(self.endpoints.values()))

    def get_keys(self, name: str) -> Any:
        from azure.ai.ml.entities import EndpointAuthKeys, EndpointAuthToken

        self._record("get_keys", name)
        endpoint = self.get(name)
        if str(endpoint.auth_mode).lower() == "key":
            return EndpointAuthKeys(primary_key=f"primary-key-of-{name}", secondary_key=f"secondary-key-of-{name}")
        return EndpointAuthToken(access_token=f"aml-token-of-{name}")

    def invoke(
        self, endpoint_name: str, *, request_file: str | None = None, deployment_name: str | None = None, **kwargs: Any
    ) -> str:
        from azure.ai.ml.exceptions import ErrorTarget, ValidationException

        assert request_file is not None
        request = json.loads(Path(request_file).read_text(encoding="utf-8"))
        self._record("invoke", endpoint_name, deployment_name=deployment_name, request=request)
        if endpoint_name not in self.endpoints:
            raise not_found("OnlineEndpoint", endpoint_name)
        if deployment_name and deployment_name not in self.deployment_ops.names(endpoint_name):
            message = f"Deployment name {deployment_name} not found for this endpoint"
            raise ValidationException(
                message=message, target=ErrorTarget.ONLINE_ENDPOINT, no_personal_data_message=message
            )
        return self.responder(deployment_name or "", request)

    def begin_delete(self, name: str | None = None, **kwargs: Any) -> FakePoller:
        self._record("begin_delete", name=name)
        if name not in self.endpoints:
            raise not_found("OnlineEndpoint", str(name))
        del self.endpoints[name]
        for key in [key for key in self.deployment_ops.deployments if key[0] == name]:
            del self.deployment_ops.deployments[key]
        return FakePoller(None)


# ------------------------------------------------------------------------------------------------------- sweeps
class FakeSweepJobOperations(Timed, FakeJobOperations):
    """`ml_client.jobs` that also knows sweeps: get(sweep) has an objective, list(parent_job_name=) its trials."""

    def __init__(self) -> None:
        super().__init__()
        self.children: dict[str, list[str]] = {}

    def add_sweep(self, name: str, *, primary_metric: str = "val_macro_f1", goal: str = "maximize") -> Any:
        from azure.ai.ml import command
        from azure.ai.ml.sweep import Choice

        from tests.azure_fakes import _as_returned

        node = command(
            command="python -m training_scripts.train_resnet --lr ${{inputs.lr}}",
            inputs={"lr": 0.01},
            environment="azureml:azure-dl-train-gpu:1",
            compute="gpu-cluster",
            experiment_name="azure-dl-tests",
        )
        sweep = node(lr=Choice([0.01, 0.1])).sweep(
            primary_metric=primary_metric, goal=goal, sampling_algorithm="random"
        )
        sweep.set_limits(max_total_trials=2)
        job = sweep._to_job() if hasattr(sweep, "_to_job") else sweep
        job.name = name
        self.jobs[name] = _as_returned(job, status="Completed")
        self.children[name] = []
        return self.jobs[name]

    def add_trial(
        self, sweep: str, name: str, *, status: str = "Completed", files: dict[str, bytes] | None = None
    ) -> Any:
        job = self.add_job(name, status=status, outputs={"model": dict(files or {})})
        self.children[sweep].append(name)
        return job

    def list(self, **kwargs: Any) -> Iterator[Any]:
        parent = kwargs.get("parent_job_name")
        if parent is None:
            return super().list(**kwargs)
        self._record("list", **kwargs)
        return iter([self.jobs[name] for name in self.children.get(parent, [])])


# -------------------------------------------------------------------------------------------------------- client
def fake_endpoint_client(responder: Responder | None = None, **operations: Any) -> Any:
    """A real MLClient whose models, online_endpoints, online_deployments and jobs are the fakes above."""
    deployments = FakeOnlineDeploymentOperations()
    groups: dict[str, Any] = {
        "models": FakeModelOperations(),
        "online_deployments": deployments,
        "online_endpoints": FakeOnlineEndpointOperations(deployments, responder),
        "jobs": FakeSweepJobOperations(),
    }
    groups.update(operations)
    timeline: list[tuple[str, str, dict[str, Any]]] = []
    for name, group in groups.items():
        if isinstance(group, Timed):
            group.group, group.timeline = name, timeline
    return fake_ml_client(**groups)


def sequence(client: Any) -> list[str]:
    """'group.method' of every call so far, in order, across the fake groups (gets and lists left out)."""
    timeline = client.online_endpoints.timeline or []
    return [f"{group}.{method}" for group, method, _ in timeline if method not in ("get", "list")]
