"""The `azureml` registry: its discovery document and its curated environments, so that the
`azureml://registries/azureml/environments/NAME/labels/latest` (or `/versions/N`) Microsoft's samples name resolves.

What azure-ai-ml 1.35.2 sends:
- A job naming such an environment: nothing extra. `OperationOrchestrator.get_asset_arm_id` passes a registry id
  through, and the job PUT carries it as `environmentId`; the service resolves it (Azure does too: the recorded
  `azureml:AzureML-sklearn-1.0-ubuntu20.04-py38-cpu@latest` came back as `azureml://registries/azureml/environments/
  AzureML-sklearn-1.0-ubuntu20.04-py38-cpu/versions/36`). `check_job_environment` refuses an unknown registry or
  environment at the PUT with a 404 naming it, so a typo fails at submit, not in the log.
- `MLClient(credential, registry_name="azureml")`: `GET {discovery}registrymanagement/v1.0/registries/azureml/
  discovery` (`_registry_utils.RegistryDiscovery`), where `{discovery}` is REGISTRY_DISCOVERY_ENDPOINT_URL (a cloud
  that is not built in has no other; connection.env sets it to this service). The answer's
  `primaryRegionResourceProviderUri` + `mferp/managementfrontend` is the registry's base URL (this service again),
  and `subscriptionId`/`resourceGroup` its scope. Then, api-version 2021-10-01-dataplanepreview:
  `environments.get(N, version=V)` GETs `.../registries/azureml/environments/N/versions/V`; `label="latest"` lists
  `.../environments/N/versions?$orderBy=createdtime desc&$top=1`; `environments.list(N)` lists the versions,
  `environments.list()` the containers (`.../environments`), and a container is `.../environments/N`.
Shapes: Azure/azure-sdk-assets python/sdk/ml/azure-ai-ml/tests/recordings/environment/e2etests/
test_environment.pyTestEnvironmenttest_registry_environment_create_conda_and_get.json (trimmed copy:
tests/fixtures/recordings/registry_environment_get.json).

The catalogue is azure_dl/data/azureml_registry.toml (what it holds and why, there). Nothing is pulled or built: a
job runs in the service's Python whatever environment it names, and its log says so (`environment_note`).
The registry is read-only (Microsoft's): a PUT is a 403, and other registry assets (models, components, data,
code) answer 501 naming them.
"""

from __future__ import annotations

import re
import sys
import tomllib
from datetime import UTC, datetime, timedelta
from functools import cache
from importlib import resources
from typing import Any

from azure_dl.workspace_service import paging
from azure_dl.workspace_service.context import PROVIDER, ServiceContext
from azure_dl.workspace_service.http import ApiError, Request, Response, Router, json_response
from azure_dl.workspace_service.identity import TENANT_ID, authenticated

REGISTRY = "azureml"
REGISTRY_ID = "5f0c9a1e-2b7d-4c3a-9e8f-0a2d1c0ffee1"  # fixed: the registry keeps its id across restarts
REGISTRY_RESOURCE_GROUP = "azureml-registry"
REGION = "local"
DISCOVERY_ROUTE = "/registrymanagement/v1.0/registries/{registry}/discovery"
MFE_PREFIX = "mferp/managementfrontend"
SCOPE = (
    f"/{MFE_PREFIX}/subscriptions/{{subscription}}/resourceGroups/{{group}}/providers/{PROVIDER}"
    "/registries/{registry}"
)
CATALOGUE = "azureml_registry.toml"
# Versions of a catalogued environment are dated a day apart, newest = `latest`, so `$orderBy=createdtime desc`
# (the SDK's `labels/latest`) finds the catalogue's latest first; a fixed origin keeps bodies stable.
_PUBLISHED = datetime(2026, 1, 1, tzinfo=UTC)
_ENVIRONMENT_ID = re.compile(
    r"^azureml://registries/(?P<registry>[^/]+)/environments/(?P<name>[^/]+)"
    r"/(?:versions/(?P<version>[^/]+)|labels/(?P<label>[^/]+))$",
    re.IGNORECASE,
)


@cache
def catalogue() -> dict[str, dict[str, Any]]:
    """The catalogued environments by name: `latest` (a version number) and `description`."""
    text = resources.files("azure_dl").joinpath("data", CATALOGUE).read_text(encoding="utf-8")
    environments: dict[str, dict[str, Any]] = tomllib.loads(text)["environments"]
    return environments


def _no_registry(name: str) -> ApiError:
    return ApiError(
        404,
        "ResourceNotFound",
        f"The registry '{name}' was not found: the local workspace service serves only the '{REGISTRY}' registry "
        "(its curated environments).",
    )


def _entry(registry: str, name: str) -> dict[str, Any]:
    if registry.lower() != REGISTRY:
        raise _no_registry(registry)
    entry = catalogue().get(name)
    if entry is None:
        raise ApiError(
            404,
            "ResourceNotFound",
            f"The environment '{name}' was not found in registry '{REGISTRY}' of the local workspace service; it "
            f"serves {', '.join(sorted(catalogue()))} (azure_dl/data/{CATALOGUE}).",
        )
    return entry


def _version_number(name: str, version: str) -> int:
    if not version.isdigit() or int(version) < 1:
        raise ApiError(
            404,
            "ResourceNotFound",
            f"The environment version '{name}:{version}' was not found in registry '{REGISTRY}': registry "
            "environment versions are whole numbers from 1.",
        )
    return int(version)


def resolve(environment_id: str) -> tuple[str, int] | None:
    """(name, version) for an `azureml://registries/...` environment id; None for any other id.

    Raises a 404 ApiError naming the registry, environment, version or label that does not exist.
    """
    # Some SDK paths prefix an asset id with `azureml:`; the id itself starts `azureml://`.
    bare = environment_id.strip()
    bare = bare[len("azureml:") :] if bare.lower().startswith("azureml:azureml://") else bare
    match = _ENVIRONMENT_ID.match(bare)
    if match is None:
        if bare.lower().startswith("azureml://registries/"):
            raise ApiError(
                400,
                "UserError",
                f"environment {environment_id!r}: a registry environment is azureml://registries/REGISTRY/"
                "environments/NAME/versions/N or .../labels/latest",
            )
        return None
    name = match["name"]
    entry = _entry(match["registry"], name)
    if match["label"] is not None:
        if match["label"].lower() != "latest":
            raise ApiError(
                404,
                "ResourceNotFound",
                f"The label '{match['label']}' of environment '{name}' was not found in registry '{REGISTRY}': "
                "registry environments have the label 'latest'.",
            )
        return name, int(entry["latest"])
    return name, _version_number(name, match["version"])


def check_job_environment(properties: dict[str, Any]) -> None:
    """A job's `environmentId`, if a registry one, must name a catalogued environment (404 naming it if not)."""
    environment_id = properties.get("environmentId")
    if isinstance(environment_id, str):
        resolve(environment_id)


def environment_note(environment_id: str | None) -> str:
    """The first line of a job's log: which environment it names, and that it runs in the service's Python."""
    shown = environment_id or "(none)"
    try:
        resolved = resolve(environment_id) if environment_id else None
    except ApiError:
        resolved = None
    if resolved is not None:
        name, version = resolved
        shown += f" (registry {REGISTRY}: {name} version {version}, image {image(name, version)})"
    return (
        f"azure-dl local workspace service: environment {shown} is recorded, not built; "
        f"this job runs in the service's Python ({sys.executable})\n"
    )


def image(name: str, version: int) -> str:
    return f"mcr.microsoft.com/azureml/curated/{name.lower()}:{version}"


def _system_data(version: int, latest: int) -> dict[str, str]:
    created = (_PUBLISHED - timedelta(days=max(latest - version, 0))).isoformat()
    return {
        "createdAt": created,
        "createdBy": "Microsoft",
        "createdByType": "Application",
        "lastModifiedAt": created,
        "lastModifiedBy": "Microsoft",
        "lastModifiedByType": "Application",
    }


def version_body(name: str, version: int) -> dict[str, Any]:
    entry = catalogue()[name]
    return {
        "id": f"azureml://registries/{REGISTRY}/environments/{name}/versions/{version}",
        "name": str(version),
        "type": "environments",
        "properties": {
            "description": entry["description"],
            "tags": {},
            "properties": {},
            "isArchived": False,
            "isAnonymous": False,
            "environmentType": "Curated",
            "image": image(name, version),
            "condaFile": None,
            "osType": "Linux",
        },
        "systemData": _system_data(version, int(entry["latest"])),
    }


def container_body(name: str) -> dict[str, Any]:
    entry = catalogue()[name]
    latest = int(entry["latest"])
    return {
        "id": f"azureml://registries/{REGISTRY}/environments/{name}",
        "name": name,
        "type": "environments",
        "properties": {
            "description": entry["description"],
            "tags": {},
            "properties": {},
            "isArchived": False,
            "latestVersion": str(latest),
            "nextVersion": str(latest + 1),
        },
        "systemData": _system_data(latest, latest),
    }


def discovery(context: ServiceContext, registry: str) -> dict[str, Any]:
    """Shaped after the recorded discovery answer; every URL is this service."""
    return {
        "registryId": REGISTRY_ID,
        "registryName": registry,
        "tenantId": TENANT_ID,
        "primaryRegion": REGION,
        "regions": [REGION],
        "subscriptionId": context.subscription_id,
        "resourceGroup": REGISTRY_RESOURCE_GROUP,
        "workspaceName": None,
        "primaryRegionResourceProviderUri": f"{context.base_url}/",
        "registryFqdns": {REGION: {"uri": context.base_url}},
    }


def register(router: Router, context: ServiceContext) -> None:
    def _scoped(request: Request) -> str:
        """The registry named by a registry route, after checking the scope discovery handed out."""
        registry = request.params["registry"]
        if registry.lower() != REGISTRY:
            raise _no_registry(registry)
        if request.params["subscription"].lower() != context.subscription_id.lower():
            raise ApiError(
                404, "ResourceNotFound", f"registry {registry}: unknown subscription {request.params['subscription']}"
            )
        if request.params["group"].lower() != REGISTRY_RESOURCE_GROUP.lower():
            raise ApiError(
                404, "ResourceNotFound", f"registry {registry}: unknown resource group {request.params['group']}"
            )
        return registry

    def _discovery(request: Request) -> Response:
        registry = request.params["registry"]
        if registry.lower() != REGISTRY:
            raise _no_registry(registry)
        return json_response(200, discovery(context, REGISTRY))

    def _version(request: Request) -> Response:
        registry = _scoped(request)
        name, version = request.params["name"], request.params["version"]
        _entry(registry, name)
        return json_response(200, version_body(name, _version_number(name, version)))

    def _versions(request: Request) -> Response:
        name = request.params["name"]
        entry = _entry(_scoped(request), name)
        order = request.query.get("$orderBy", "createdtime desc").lower()
        numbers = list(range(1, int(entry["latest"]) + 1))
        shown, next_link = paging.page(context, request, numbers, lambda n: (n,), descending="desc" in order)
        return json_response(200, paging.document([version_body(name, n) for n in shown], next_link))

    def _container(request: Request) -> Response:
        name = request.params["name"]
        _entry(_scoped(request), name)
        return json_response(200, container_body(name))

    def _containers(request: Request) -> Response:
        _scoped(request)
        shown, next_link = paging.page(context, request, sorted(catalogue()), lambda n: (n,), descending=False)
        return json_response(200, paging.document([container_body(n) for n in shown], next_link))

    def _read_only(request: Request) -> Response:
        _scoped(request)
        raise ApiError(
            403,
            "AuthorizationFailed",
            f"registry {REGISTRY} is Microsoft's and read-only: create the environment in the workspace instead",
        )

    def _other_assets(request: Request) -> Response:
        _scoped(request)
        raise ApiError(
            501,
            "NotImplemented",
            f"registry {request.params['assets']} ({request.method} {request.path}) are not served by the local "
            f"workspace service: only registry {REGISTRY}'s curated environments are",
        )

    environments = SCOPE + "/environments"
    router.add("GET", DISCOVERY_ROUTE, authenticated(context, _discovery))
    router.add("GET", environments, authenticated(context, _containers))
    router.add("GET", environments + "/{name}", authenticated(context, _container))
    router.add("GET", environments + "/{name}/versions", authenticated(context, _versions))
    router.add("GET", environments + "/{name}/versions/{version}", authenticated(context, _version))
    for method in ("PUT", "POST", "DELETE", "PATCH"):
        router.add(method, environments + "/{rest:path}", authenticated(context, _read_only))
    for method in ("GET", "PUT", "POST", "DELETE", "PATCH"):
        router.add(method, SCOPE + "/{assets}/{rest:path}", authenticated(context, _other_assets))
        router.add(method, SCOPE + "/{assets}", authenticated(context, _other_assets))
