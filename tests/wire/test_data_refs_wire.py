"""Defect (issue 11): an `azureml:NAME:VERSION` data input used to become an ARM id without a GET, so a missing
asset failed only at the job PUT, after the snapshot upload. It is now asked for first, over the wire."""

from __future__ import annotations

from pathlib import Path

import pytest

from azure_dl.errors import AzureDLError
from azure_dl.workspace_service.service import WorkspaceService

JOB_YAML = """\
$schema: https://azuremlschemas.azureedge.net/latest/commandJob.schema.json
command: python hello.py --data ${{{{inputs.data}}}}
code: ./src
environment: azureml:AzureML-sklearn-1.5@latest
inputs:
  data:
    type: uri_folder
    path: {path}
"""


def _job_yaml(tmp_path: Path, data_path: str) -> Path:
    (tmp_path / "src").mkdir(parents=True)
    (tmp_path / "src" / "hello.py").write_text("print('hello')\n")
    job = tmp_path / "job.yml"
    job.write_text(JOB_YAML.format(path=data_path))
    return job


def _uploads(service: WorkspaceService) -> int:
    assert service.context is not None
    return len(service.context.store.list("codes"))


@pytest.mark.parametrize("reference", ["azureml:missing-data:3", "azureml:missing-data@latest"])
def test_a_missing_data_asset_fails_before_any_upload_naming_it(
    ml_client, workspace_service: WorkspaceService, tmp_path: Path, reference: str
) -> None:  # type: ignore[no-untyped-def]
    from azure_dl.backends.azureml.jobs import submit_job_yaml

    before = _uploads(workspace_service)
    with pytest.raises(AzureDLError) as refused:
        submit_job_yaml(None, _job_yaml(tmp_path, reference), ml_client=ml_client)
    shown = reference.removeprefix("azureml:")
    assert f"data asset {shown} (input inputs.data) does not exist in workspace local" in str(refused.value)
    assert "az ml data list --name missing-data" in str(refused.value)
    assert _uploads(workspace_service) == before  # nothing was uploaded or registered


def test_an_existing_data_asset_passes_the_check(ml_client, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from azure.ai.ml import load_job
    from azure.ai.ml.entities import Data

    from azure_dl.backends.azureml.data_refs import asset_references, check_data_assets

    folder = tmp_path / "present"
    folder.mkdir()
    (folder / "x.txt").write_text("x")
    ml_client.data.create_or_update(Data(path=str(folder), type="uri_folder", name="present-data", version="2"))
    for reference in ("azureml:present-data:2", "azureml:present-data@latest"):
        job = load_job(_job_yaml(tmp_path / reference.replace(":", "-").replace("@", "-"), reference))
        assert asset_references(job) == [("inputs.data", "present-data", "2" if ":2" in reference else None)]
        check_data_assets(ml_client, job)  # no error: the GET found it
