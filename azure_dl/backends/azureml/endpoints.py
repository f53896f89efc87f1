"""Managed online endpoints: create from the rendered YAML, blue/green rollout behind a smoke test, traffic with
rollback, delete, show, and the scoring URI + credential a client needs (the smoke test is endpoint_smoke.py).

The sequence follows Azure/azureml-examples (sdk/python/endpoints/online/managed, safe rollout): the new version
goes in as a deployment that takes no live traffic, is invoked directly (`deployment_name=`), and only then does
traffic move. Before every traffic change the split it replaces is written into an endpoint tag, so
`rollback` can restore it. Keys and tokens are returned to the caller only; nothing here prints or logs them.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from azure_dl.backends.azureml.client import redact, require_sdk, sdk_errors
from azure_dl.backends.azureml.endpoint_smoke import smoke_test
from azure_dl.endpoint_spec import (
    check_name,
    live,
    validate_mirror,
    validate_traffic,
)
from azure_dl.errors import AzureDLError, SpecError

PREVIOUS_TRAFFIC_TAG = "azure_dl.previous_traffic"
_MAX_VALIDATION_MESSAGE = 3000

Log = Callable[[str], None]


# --------------------------------------------------------------------------------------------------- loading
def _load(path: Path, loader_name: str, what: str, command: str) -> Any:
    path = Path(path)
    if not path.is_file():
        raise SpecError(f"{what} file {path} does not exist", hint="render it with `azure-dl deploy ... --dry-run`")
    require_sdk()
    import azure.ai.ml
    from azure.ai.ml.exceptions import MlException
    from marshmallow.exceptions import ValidationError

    try:
        return getattr(azure.ai.ml, loader_name)(path)
    except (MlException, ValidationError) as exc:
        message = redact(str(getattr(exc, "message", None) or exc))[:_MAX_VALIDATION_MESSAGE]
        raise SpecError(
            f"{path} is not a valid Azure ML {what}: {message}",
            hint=f"the file must follow the Azure ML CLI v2 schema that `az ml {command} create --file` reads",
        ) from None


def load_endpoint_yaml(path: Path) -> Any:
    """The ManagedOnlineEndpoint azure.ai.ml.load_online_endpoint makes of `path` (validating it)."""
    return _load(path, "load_online_endpoint", "online endpoint", "online-endpoint")


def load_deployment_yaml(path: Path) -> Any:
    """The ManagedOnlineDeployment azure.ai.ml.load_online_deployment makes of `path` (validating it)."""
    return _load(path, "load_online_deployment", "online deployment", "online-deployment")


# --------------------------------------------------------------------------------------------------- reading
@dataclass(frozen=True)
class DeploymentInfo:
    name: str
    model: str
    instance_type: str
    instance_count: int
    state: str


@dataclass(frozen=True)
class EndpointState:
    """An endpoint as `show` and the rollout see it; `exists` is False for a name the workspace does not have."""

    name: str
    exists: bool
    auth_mode: str | None = None
    scoring_uri: str | None = None
    provisioning_state: str | None = None
    traffic: Mapping[str, int] = field(default_factory=dict)
    mirror: Mapping[str, int] = field(default_factory=dict)
    deployments: tuple[DeploymentInfo, ...] = ()
    previous: Mapping[str, Mapping[str, int]] | None = None

    @property
    def deployment_names(self) -> list[str]:
        return [deployment.name for deployment in self.deployments]

    @property
    def live(self) -> dict[str, int]:
        return live(self.traffic)


def _text(value: Any) -> str:
    return str(getattr(value, "value", value)) if value is not None else ""


def _model_name(model: Any) -> str:
    """'name:version' from an ARM id (.../models/<name>/versions/<version>) or whatever the service gave."""
    text = str(getattr(model, "id", None) or model or "")
    parts = text.split("/")
    if "models" in parts and "versions" in parts:
        return f"{parts[parts.index('models') + 1]}:{parts[parts.index('versions') + 1]}"
    return text.removeprefix("azureml:")


def get_endpoint(ml_client: Any, name: str) -> Any | None:
    """The endpoint entity, or None when the workspace has no endpoint of that name."""
    from azure.core.exceptions import ResourceNotFoundError

    with sdk_errors(f"read endpoint {name}"):
        try:
            return ml_client.online_endpoints.get(name)
        except ResourceNotFoundError:
            return None


def list_deployments(ml_client: Any, endpoint: str) -> list[Any]:
    with sdk_errors(f"list the deployments of endpoint {endpoint}"):
        return [deployment for deployment in ml_client.online_deployments.list(endpoint) if deployment is not None]


def parse_previous(tags: Mapping[str, str] | None) -> dict[str, dict[str, int]] | None:
    """The traffic split recorded before the last change ({"traffic": ..., "mirror": ...}), if any."""
    raw = (tags or {}).get(PREVIOUS_TRAFFIC_TAG)
    if not raw:
        return None
    try:
        data = json.loads(raw)
        return {key: {str(k): int(v) for k, v in (data.get(key) or {}).items()} for key in ("traffic", "mirror")}
    except (ValueError, AttributeError, TypeError):
        return None


def read_endpoint(ml_client: Any, name: str) -> EndpointState:
    """The endpoint's auth mode, scoring URI, traffic, mirror traffic and deployments (never its keys)."""
    endpoint = get_endpoint(ml_client, name)
    if endpoint is None:
        return EndpointState(name=name, exists=False)
    deployments = tuple(
        DeploymentInfo(
            name=deployment.name,
            model=_model_name(deployment.model),
            instance_type=str(deployment.instance_type or ""),
            instance_count=int(deployment.instance_count or 0),
            state=_text(deployment.provisioning_state),
        )
        for deployment in sorted(list_deployments(ml_client, name), key=lambda d: d.name)
    )
    return EndpointState(
        name=name,
        exists=True,
        auth_mode=_text(endpoint.auth_mode),
        scoring_uri=endpoint.scoring_uri,
        provisioning_state=_text(endpoint.provisioning_state),
        traffic={key: int(value) for key, value in (endpoint.traffic or {}).items()},
        mirror={key: int(value) for key, value in (endpoint.mirror_traffic or {}).items() if int(value) > 0},
        deployments=deployments,
        previous=parse_previous(endpoint.tags),
    )


def choose_deployment_name(state: EndpointState) -> str:
    """blue for a new endpoint; otherwise whichever of blue/green is free, or the one taking no traffic."""
    names = state.deployment_names
    for candidate in ("blue", "green"):
        if candidate not in names:
            return candidate
    idle = [name for name in ("blue", "green") if not state.traffic.get(name) and not state.mirror.get(name)]
    if idle:
        return idle[0]
    raise SpecError(
        f"endpoint {state.name} has deployments blue and green and both take traffic",
        hint="name the new deployment with --deployment NAME, or move all traffic to one of them first "
        f"(azure-dl endpoint traffic {state.name} blue=100)",
    )


# ---------------------------------------------------------------------------------------------------- traffic
def _record_previous(endpoint: Any) -> None:
    previous = {
        "traffic": {k: int(v) for k, v in (endpoint.traffic or {}).items() if int(v) > 0},
        "mirror": {k: int(v) for k, v in (endpoint.mirror_traffic or {}).items() if int(v) > 0},
    }
    endpoint.tags = {**(endpoint.tags or {}), PREVIOUS_TRAFFIC_TAG: json.dumps(previous, sort_keys=True)}


def set_traffic(
    ml_client: Any,
    name: str,
    traffic: Mapping[str, int] | None = None,
    mirror: Mapping[str, int] | None = None,
    *,
    log: Log | None = None,
) -> EndpointState:
    """Validate and apply a new split (None keeps the current one) and mirror; the old split goes into a tag.

    A mirror to a deployment that the new split gives live traffic is dropped (Azure ML refuses both at once).
    """
    endpoint = get_endpoint(ml_client, name)
    if endpoint is None:
        raise AzureDLError(f"endpoint {name} does not exist in workspace {ml_client.workspace_name}")
    names = [deployment.name for deployment in list_deployments(ml_client, name)]
    current = {key: int(value) for key, value in (endpoint.traffic or {}).items()}
    new_traffic = validate_traffic(traffic, names) if traffic is not None else {n: current.get(n, 0) for n in names}
    if mirror is None:
        kept = {k: int(v) for k, v in (endpoint.mirror_traffic or {}).items() if int(v) > 0}
        dropped = [k for k in kept if new_traffic.get(k, 0) > 0]
        for key in dropped:
            if log:
                log(f"mirror traffic to {key} stopped: it now takes live traffic")
            kept.pop(key)
        mirror = kept if live(new_traffic) else {}
    new_mirror = validate_mirror(mirror, new_traffic, names)
    _record_previous(endpoint)
    endpoint.traffic = new_traffic
    endpoint.mirror_traffic = new_mirror
    with sdk_errors(f"update the traffic of endpoint {name}"):
        ml_client.online_endpoints.begin_create_or_update(endpoint).result()
    return read_endpoint(ml_client, name)


def rollback(ml_client: Any, name: str) -> EndpointState:
    """Restore the split recorded before the last traffic change (the current one is recorded in its place)."""
    endpoint = get_endpoint(ml_client, name)
    if endpoint is None:
        raise AzureDLError(f"endpoint {name} does not exist in workspace {ml_client.workspace_name}")
    previous = parse_previous(endpoint.tags)
    if not previous or not live(previous["traffic"]):
        raise AzureDLError(
            f"endpoint {name} has no earlier traffic split to roll back to",
            hint=f"set one explicitly: azure-dl endpoint traffic {name} NAME=100",
        )
    names = [deployment.name for deployment in list_deployments(ml_client, name)]
    gone = sorted(set(previous["traffic"]) - set(names))
    if gone:
        raise AzureDLError(
            f"cannot roll back endpoint {name}: the earlier split sends traffic to deleted deployment(s) "
            f"{', '.join(gone)} ({json.dumps(previous['traffic'])})",
            hint=f"set a split over its deployments ({', '.join(names)}): azure-dl endpoint traffic {name} NAME=100",
        )
    return set_traffic(ml_client, name, previous["traffic"], previous["mirror"])


# ---------------------------------------------------------------------------------------------------- rollout
@dataclass(frozen=True)
class RolloutResult:
    endpoint: str
    deployment: str
    created_endpoint: bool
    predictions: list[dict[str, Any]]
    state: EndpointState
    traffic_changed: bool


def check_rollout(
    state: EndpointState,
    deployment: str,
    traffic: Mapping[str, int] | None,
    mirror: Mapping[str, int] | None,
) -> tuple[dict[str, int] | None, dict[str, int] | None]:
    """What traffic and mirror the rollout will set, validated against the endpoint BEFORE anything is created.

    Returns (traffic or None to keep it, mirror or None to keep it). The new deployment must not be one that takes
    live or mirrored traffic now (that would be an in-place update, not blue/green).
    """
    check_name(deployment, "deployment")
    if state.traffic.get(deployment, 0) > 0 or state.mirror.get(deployment, 0) > 0:
        raise SpecError(
            f"deployment {deployment} of endpoint {state.name} takes traffic now; updating it in place is not a "
            "blue/green rollout",
            hint="give the new version another name (--deployment NAME; blue/green is chosen when omitted)",
        )
    names = [*state.deployment_names, *([deployment] if deployment not in state.deployment_names else [])]
    new_traffic: dict[str, int] | None
    if traffic is not None:
        new_traffic = validate_traffic(traffic, names)
    elif not state.live:
        new_traffic = validate_traffic({deployment: 100}, names)  # the first live deployment takes everything
    else:
        new_traffic = None
    new_mirror = None
    if mirror is not None:
        effective = new_traffic if new_traffic is not None else {n: state.traffic.get(n, 0) for n in names}
        new_mirror = validate_mirror(mirror, effective, names)
    return new_traffic, new_mirror


def create_endpoint(ml_client: Any, endpoint: Any) -> Any:
    with sdk_errors(f"create endpoint {endpoint.name}"):
        return ml_client.online_endpoints.begin_create_or_update(endpoint).result()


def create_deployment(ml_client: Any, deployment: Any) -> Any:
    with sdk_errors(f"create deployment {deployment.name} of endpoint {deployment.endpoint_name}"):
        return ml_client.online_deployments.begin_create_or_update(deployment).result()


def rollout(
    ml_client: Any,
    endpoint_yaml: Path,
    deployment_yaml: Path,
    request_file: Path,
    *,
    traffic: Mapping[str, int] | None = None,
    mirror: Mapping[str, int] | None = None,
    labels: Sequence[str] | None = None,
    log: Log | None = None,
) -> RolloutResult:
    """Blue/green: (endpoint) -> new deployment at 0% -> smoke test it directly -> move traffic (only if it passed).

    On a new endpoint (or one with no live traffic) the deployment takes 100% unless `traffic` says otherwise.
    """
    say = log or (lambda message: None)
    endpoint = load_endpoint_yaml(endpoint_yaml)
    deployment = load_deployment_yaml(deployment_yaml)
    if deployment.endpoint_name != endpoint.name:
        raise SpecError(f"{deployment_yaml} is for endpoint {deployment.endpoint_name}, not {endpoint.name}")
    state = read_endpoint(ml_client, endpoint.name)
    new_traffic, new_mirror = check_rollout(state, deployment.name, traffic, mirror)
    created = False
    if not state.exists:
        say(f"creating endpoint {endpoint.name} ({endpoint.auth_mode} auth)")
        create_endpoint(ml_client, endpoint)
        created = True
    elif state.auth_mode and _text(endpoint.auth_mode).lower() != state.auth_mode.lower():
        raise SpecError(
            f"endpoint {endpoint.name} uses {state.auth_mode} auth, not {endpoint.auth_mode}",
            hint="changing it would break every client: leave --auth out, or deploy to a new endpoint",
        )
    say(f"creating deployment {deployment.name} ({deployment.instance_type} x {deployment.instance_count}) at 0%")
    create_deployment(ml_client, deployment)
    say(f"smoke test: invoking deployment {deployment.name} directly")
    predictions = smoke_test(ml_client, endpoint.name, deployment.name, request_file, labels=labels)
    say(f"smoke test passed: {predictions[0].get('label')} ({float(predictions[0].get('score', 0)):.3f})")
    changed = new_traffic is not None or new_mirror is not None
    if changed:
        final = set_traffic(ml_client, endpoint.name, new_traffic, new_mirror, log=say)
    else:
        final = read_endpoint(ml_client, endpoint.name)
    return RolloutResult(endpoint.name, deployment.name, created, predictions, final, changed)


# ----------------------------------------------------------------------------------------------------- delete
def delete_deployment(ml_client: Any, endpoint: str, deployment: str) -> None:
    """Delete one deployment; refused while it takes live or mirrored traffic."""
    state = read_endpoint(ml_client, endpoint)
    if not state.exists:
        raise AzureDLError(f"endpoint {endpoint} does not exist in workspace {ml_client.workspace_name}")
    if deployment not in state.deployment_names:
        raise AzureDLError(
            f"endpoint {endpoint} has no deployment {deployment}",
            hint=f"its deployments: {', '.join(state.deployment_names) or 'none'}",
        )
    share = state.traffic.get(deployment, 0)
    mirrored = state.mirror.get(deployment, 0)
    if share or mirrored:
        others = [name for name in state.deployment_names if name != deployment]
        move = f"azure-dl endpoint traffic {endpoint} {others[0]}=100" if others else f"delete the endpoint {endpoint}"
        raise AzureDLError(
            f"deployment {deployment} takes {share}% of live traffic"
            + (f" and {mirrored}% mirrored" if mirrored else "")
            + "; deleting it would drop those requests",
            hint=f"move its traffic first ({move}{' --mirror none' if mirrored else ''})",
        )
    with sdk_errors(f"delete deployment {deployment} of endpoint {endpoint}"):
        ml_client.online_deployments.begin_delete(name=deployment, endpoint_name=endpoint).result()


def delete_endpoint(ml_client: Any, endpoint: str) -> None:
    """Delete the endpoint with all its deployments (billing stops)."""
    if get_endpoint(ml_client, endpoint) is None:
        raise AzureDLError(f"endpoint {endpoint} does not exist in workspace {ml_client.workspace_name}")
    with sdk_errors(f"delete endpoint {endpoint}"):
        ml_client.online_endpoints.begin_delete(name=endpoint).result()


# ---------------------------------------------------------------------------------------------------- clients
def endpoint_target(ml_client: Any, name: str, deployment: str | None = None) -> tuple[str, str]:
    """(scoring URI, credential) for a client of endpoint `name`: the primary key for key auth, a fresh token for
    aml_token auth. With `deployment`, it is checked to exist (send it as the `azureml-model-deployment` header).
    The credential is a secret: never print, log or store it."""
    from azure.ai.ml.entities import EndpointAuthKeys

    endpoint = get_endpoint(ml_client, name)
    if endpoint is None:
        raise AzureDLError(
            f"endpoint {name} does not exist in workspace {ml_client.workspace_name}",
            hint="list endpoints in Azure ML studio, or create one with azure-dl deploy MODEL --endpoint NAME",
        )
    if deployment is not None:
        names = [item.name for item in list_deployments(ml_client, name)]
        if deployment not in names:
            raise AzureDLError(
                f"endpoint {name} has no deployment {deployment}", hint=f"its deployments: {', '.join(names) or 'none'}"
            )
    if not endpoint.scoring_uri:
        raise AzureDLError(
            f"endpoint {name} has no scoring URI yet (provisioning state: {_text(endpoint.provisioning_state)})",
            hint="wait until it is provisioned: azure-dl endpoint show " + name,
        )
    with sdk_errors(f"read the credentials of endpoint {name}"):
        keys = ml_client.online_endpoints.get_keys(name)
    secret = keys.primary_key if isinstance(keys, EndpointAuthKeys) else getattr(keys, "access_token", None)
    if not secret:
        raise AzureDLError(f"endpoint {name} returned no key or token for its {_text(endpoint.auth_mode)} auth")
    return str(endpoint.scoring_uri), str(secret)
