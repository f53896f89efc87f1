"""One local workspace service per test run, and its connection.env applied to os.environ per test.

The SDK caches the cloud it resolved (AZUREML_CURRENT_CLOUD and a module-level dict), so the variables stay as
the service wrote them for the whole run: one service, one set of values.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from azure_dl.workspace_service.faults import Faults
from azure_dl.workspace_service.service import WorkspaceService, read_connection_file

# Variables that would divert DefaultAzureCredential or the SDK away from the service.
_CLEARED = (
    "AZURE_CLIENT_ID",
    "AZURE_CLIENT_SECRET",
    "AZURE_TENANT_ID",
    "AZURE_USERNAME",
    "AZURE_FEDERATED_TOKEN_FILE",
    "MSI_ENDPOINT",
    "MSI_SECRET",
    "IDENTITY_SERVER_THUMBPRINT",
    "IMDS_ENDPOINT",
    "AZUREML_CURRENT_CLOUD",
)


@pytest.fixture(scope="session")
def workspace_service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[WorkspaceService]:
    service = WorkspaceService(tmp_path_factory.mktemp("workspace-service"))
    service.start()
    yield service
    service.stop()


@pytest.fixture()
def connection(workspace_service: WorkspaceService, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """`set -a; . DIR/connection.env; set +a`, for one test."""
    for name in _CLEARED:
        monkeypatch.delenv(name, raising=False)
    values = read_connection_file(workspace_service.connection_file)
    for key, value in values.items():
        monkeypatch.setenv(key, value)
    _refresh_azureml_mlflow_clouds()
    return values


def _refresh_azureml_mlflow_clouds() -> None:
    """azureml-mlflow reads ARM_CLOUD_METADATA_URL once, when it is imported (`cloud.KNOWN_CLOUDS`): a unit test
    that imported it earlier in this process leaves it without the local cloud, so it is read again here, as a
    fresh process (what a user runs) would read it."""
    import sys

    cloud = sys.modules.get("azureml.mlflow._common._cloud.cloud")
    if cloud is not None:
        cloud.KNOWN_CLOUDS.update(cloud.get_known_clouds())


@pytest.fixture()
def ml_client(connection: dict[str, str]):  # type: ignore[no-untyped-def]
    """A plain MLClient with DefaultAzureCredential, as a user's script makes it."""
    from azure.ai.ml import MLClient
    from azure.identity import DefaultAzureCredential

    return MLClient(
        DefaultAzureCredential(),
        connection["AZURE_SUBSCRIPTION_ID"],
        connection["AZURE_RESOURCE_GROUP"],
        connection["AZUREML_WORKSPACE_NAME"],
    )


def data_dir(service: WorkspaceService) -> Path:
    return service.data_dir


@pytest.fixture()
def quota_file(workspace_service: WorkspaceService) -> Iterator[Path]:
    """DIR/quota.toml for one test (the service reads it per request); removed after, back to the defaults."""
    path = workspace_service.data_dir / "quota.toml"
    yield path
    path.unlink(missing_ok=True)


@pytest.fixture(scope="module")
def module_ml_client(workspace_service: WorkspaceService):  # type: ignore[no-untyped-def]
    """One MLClient for a module's tests (making one costs ~0.4 s of metadata calls); use it with `connection`,
    which puts the variables (the CA bundle above all) back in place for each test."""
    from azure.ai.ml import MLClient
    from azure.identity import DefaultAzureCredential

    values = read_connection_file(workspace_service.connection_file)
    with pytest.MonkeyPatch.context() as patch:
        for name in _CLEARED:
            patch.delenv(name, raising=False)
        for key, value in values.items():
            patch.setenv(key, value)
        client = MLClient(
            DefaultAzureCredential(),
            values["AZURE_SUBSCRIPTION_ID"],
            values["AZURE_RESOURCE_GROUP"],
            values["AZUREML_WORKSPACE_NAME"],
        )
    return client


@pytest.fixture()
def faults(workspace_service: WorkspaceService) -> Iterator[Faults]:
    """The service's fault rules (faults.py), empty before and after the test: the service is shared by the run.

    A job-PUT idempotency test is then one line: `faults.add("PUT", f"/jobs/{name}$", drop=True)`.
    """
    workspace_service.faults.clear()
    yield workspace_service.faults
    workspace_service.faults.clear()


@pytest.fixture(scope="module")
def module_connection(workspace_service: WorkspaceService) -> Iterator[dict[str, str]]:
    """`connection` for a whole module, for module-scoped fixtures that run the CLI or the SDK (such as starting a
    module's deployments once); per-test `connection` still applies on top and undoes back to these values."""
    values = read_connection_file(workspace_service.connection_file)
    with pytest.MonkeyPatch.context() as patch:
        for name in _CLEARED:
            patch.delenv(name, raising=False)
        for key, value in values.items():
            patch.setenv(key, value)
        yield values


@pytest.fixture(autouse=True)
def _no_pinned_invoke_deployment() -> Iterator[None]:
    """azure-ai-ml 1.35.2's `online_endpoints.invoke(..., deployment_name=D)` writes the azureml-model-deployment
    header into a class-level dict (EndpointInvokeFields.DEFAULT_HEADER), so every later invoke in the process
    goes to D: drop it after each test, so that no test's smoke test (azure-dl deploy) pins another's invoke."""
    yield
    import sys

    if "azure.ai.ml" in sys.modules:
        from azure.ai.ml.constants._endpoint import EndpointInvokeFields

        EndpointInvokeFields.DEFAULT_HEADER.pop(EndpointInvokeFields.MODEL_DEPLOYMENT, None)
