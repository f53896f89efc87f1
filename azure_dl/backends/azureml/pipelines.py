"""Submit a rendered pipeline.yml to Azure ML: load it with azure.ai.ml.load_job (validation) and create it.

The file is the one `azure-dl pipeline --dry-run` writes; nothing is rebuilt here. Before creating the job each
cluster the steps name is checked (exists, right size, quota) or, with `ensure_compute`, created - the same
`preflight` a command job gets (azure_dl/backends/azureml/preflight.py). Azure ML itself registers the pipeline's named
`custom_model` output when the register step succeeds.
"""

from __future__ import annotations

import argparse
import contextlib
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from azure_dl.backends.azureml import jobs
from azure_dl.backends.azureml.client import job_studio_url, sdk_errors
from azure_dl.backends.azureml.data_refs import check_data_assets
from azure_dl.backends.azureml.preflight import preflight
from azure_dl.cluster_needs import ClusterNeeds
from azure_dl.errors import AzureDLError, SpecError
from azure_dl.workspace import WorkspaceSettings


def load_pipeline_yaml(path: Path) -> Any:
    """The PipelineJob entity of `path`, validated offline by the SDK (a SpecError says what is wrong)."""
    from azure.ai.ml.entities import PipelineJob

    job = jobs.load_job_yaml(path)
    if not isinstance(job, PipelineJob):
        raise SpecError(f"{path} is a {type(job).__name__}, not a pipeline job (type: pipeline)")
    result = job._validate()
    if not result.passed:
        problems = "; ".join(f"{where}: {message}" for where, message in result.error_messages.items())
        raise SpecError(f"{path} is not a valid Azure ML pipeline: {problems}")
    return job


def submit_pipeline_yaml(
    workspace_args: argparse.Namespace | WorkspaceSettings | None,
    pipeline_yaml: Path,
    *,
    needs: Iterable[ClusterNeeds],
    ensure_compute: bool = False,
    stream: bool = False,
    ml_client: Any = None,
) -> jobs.SubmittedJob:
    """Create the pipeline job in `pipeline_yaml` and print its name and studio URL (then follow it with `stream`).

    `needs` are the clusters the steps use (`plan_pipeline(...).needs`: VM size as planned, None when unknown, one
    dedicated node each). Without `ensure_compute` every cluster must exist with that size; with it, missing
    clusters are created (quota first).
    """
    job = load_pipeline_yaml(Path(pipeline_yaml))
    client = ml_client if ml_client is not None else jobs.client_for(workspace_args)
    check_data_assets(client, job)  # before the cluster checks and any upload
    for cluster in needs:
        preflight(client, cluster, ensure=ensure_compute, source=Path(pipeline_yaml))

    created = jobs.create_job(client, job)
    url = getattr(created, "studio_url", None) or job_studio_url(client, created.name)
    print(f"Submitted pipeline {created.name}")
    print(f"Studio: {url}")
    status = jobs.status_text(created)
    if stream:
        try:
            jobs.stream_job(client, created.name)
        except AzureDLError:
            # A failed pipeline still shows which steps ran, were reused, failed or never started.
            with contextlib.suppress(AzureDLError):
                report_steps(client, created.name)
            raise
        with sdk_errors(f"read pipeline job {created.name}"):
            status = jobs.status_text(client.jobs.get(created.name))
        print(f"pipeline {created.name}: {status}")
        report_steps(client, created.name)
    return jobs.SubmittedJob(name=created.name, studio_url=url, status=status)


def _is_reused(child: Any) -> str | None:
    """The job a reused step took its outputs from (Azure ML's `azureml.reusedrunid`), None when it ran."""
    properties = getattr(child, "properties", None) or {}
    if str(properties.get("azureml.isreused", "")).lower() == "true":
        return str(properties.get("azureml.reusedrunid") or "an earlier run")
    return None


def report_steps(ml_client: Any, pipeline_name: str) -> list[tuple[str, str, str | None]]:
    """Print one row per step (its status, and the job it reused when unchanged); return the rows."""
    from azure_dl.console import print_table

    with sdk_errors(f"list the steps of pipeline {pipeline_name}"):
        children = [child for child in ml_client.jobs.list(parent_job_name=pipeline_name) if child is not None]
    rows = [
        (str(getattr(child, "display_name", None) or child.name), jobs.status_text(child), _is_reused(child))
        for child in children
    ]
    print_table(
        f"Steps of pipeline {pipeline_name}",
        ["step", "status", "ran or reused"],
        [[step, status, f"reused {source}" if source else "ran"] for step, status, source in rows],
    )
    return rows
