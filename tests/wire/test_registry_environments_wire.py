"""The `azureml` registry's curated environments through the plain SDK: Microsoft's hello-dataset sample (its
environment is `azureml://registries/azureml/environments/sklearn-1.5/labels/latest`) runs to Completed; a registry
MLClient discovers the registry and reads its environments; unknown names are 404s naming them."""

from __future__ import annotations

import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from azure_dl.workspace_service import registries
from azure_dl.workspace_service.job_runner import ARTIFACT_CONTAINER, LOG_NAME, artifact_prefix
from azure_dl.workspace_service.service import WorkspaceService

EXAMPLES = Path(__file__).resolve().parents[1] / "fixtures" / "azureml_examples"


def _wait(ml_client: Any, name: str, timeout: float = 60.0) -> str:
    deadline = time.monotonic() + timeout
    status = "?"
    while time.monotonic() < deadline:
        job_status = ml_client.jobs.get(name).status
        status = str(getattr(job_status, "value", job_status))  # some entities answer a JobStatus enum
        if status in ("Completed", "Failed", "Canceled"):
            return status
        time.sleep(0.3)
    raise AssertionError(f"job {name} still {status} after {timeout}s")


def test_the_hello_dataset_sample_runs_with_its_registry_environment(
    ml_client: Any, workspace_service: WorkspaceService, tmp_path: Path
) -> None:
    from azure.ai.ml import load_job
    from azure.ai.ml.entities import Data

    # The sample reads the workspace data asset `sampledata@latest`, as a user's workspace has it.
    folder = tmp_path / "sampledata"
    folder.mkdir()
    (folder / "sample.txt").write_text("sample\n")
    ml_client.data.create_or_update(Data(name="sampledata", path=str(folder), type="uri_folder"))
    job = load_job(EXAMPLES / "command" / "hello-dataset.yml")
    job.name = f"hello-dataset-{uuid.uuid4().hex[:8]}"  # the SDK's names repeat under the test run's seeded random
    created = ml_client.jobs.create_or_update(job)
    assert created.environment == "azureml://registries/azureml/environments/sklearn-1.5/labels/latest"

    assert _wait(ml_client, job.name) == "Completed"
    blobs = workspace_service.data_dir / "blobs" / ARTIFACT_CONTAINER
    log = (blobs / f"{artifact_prefix(job.name)}/{LOG_NAME}").read_text().splitlines()
    assert "sklearn-1.5 version 54" in log[0] and "recorded, not built" in log[0], log
    assert "sample.txt" in log[1:], log  # `ls ${{inputs.sampledata}}` listed the mounted data


def test_an_unknown_registry_environment_is_refused_at_submit_naming_it(ml_client: Any) -> None:
    from azure.ai.ml import command
    from azure.core.exceptions import HttpResponseError

    job = command(command="true", environment="azureml://registries/azureml/environments/no-such-env/labels/latest")
    job.name = f"no-env-{uuid.uuid4().hex[:8]}"
    with pytest.raises(HttpResponseError) as raised:
        ml_client.jobs.create_or_update(job)
    assert raised.value.status_code == 404
    assert "no-such-env" in str(raised.value) and "sklearn-1.5" in str(raised.value)

    job = command(command="true", environment="azureml://registries/contoso/environments/sklearn-1.5/versions/1")
    job.name = f"no-reg-{uuid.uuid4().hex[:8]}"
    with pytest.raises(HttpResponseError) as raised:
        ml_client.jobs.create_or_update(job)
    assert raised.value.status_code == 404 and "contoso" in str(raised.value)


def test_a_registry_client_discovers_the_registry_and_reads_its_environments(connection: dict[str, str]) -> None:
    from azure.ai.ml import MLClient
    from azure.core.exceptions import HttpResponseError, ResourceNotFoundError
    from azure.identity import DefaultAzureCredential

    registry = MLClient(DefaultAzureCredential(), registry_name="azureml")
    latest = registry.environments.get("sklearn-1.5", label="latest")
    assert (latest.name, latest.version) == ("sklearn-1.5", "54")
    assert latest.image == registries.image("sklearn-1.5", 54)
    assert registry.environments.get("sklearn-1.5", version="26").version == "26"
    assert {env.name for env in registry.environments.list()} == set(registries.catalogue())
    with pytest.raises(ResourceNotFoundError):
        registry.environments.get("no-such-env", version="1")

    with pytest.raises(HttpResponseError) as raised:
        MLClient(DefaultAzureCredential(), registry_name="contoso")
    assert "contoso" in str(raised.value)
