"""Submitting a rendered pipeline.yml, against fake job/compute operations on a real (offline) MLClient."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import pytest

from azure_dl.backends.azureml import client as client_module
from azure_dl.backends.azureml.pipelines import load_pipeline_yaml, submit_pipeline_yaml
from azure_dl.cluster_needs import ClusterNeeds
from azure_dl.errors import ConfigError, SpecError
from azure_dl.pipeline_inputs import apply_overrides
from azure_dl.pipeline_render import write_pipeline_yaml
from azure_dl.pipeline_spec import load_pipeline
from tests.azure_fakes import (
    FakeComputeOperations,
    FakeJobOperations,
    fake_ml_client,
    family_usage,
    regional_usage,
    rest_serialise,
)

pytestmark = pytest.mark.filterwarnings(
    "ignore::marshmallow.warnings.ChangedInMarshmallow4Warning",
    "ignore::marshmallow.warnings.RemovedInMarshmallow4Warning",
)

COMPUTES = {"d4s-v3": "Standard_D4s_v3", "nc4as-t4-v3": "Standard_NC4as_T4_v3"}
NEEDS = tuple(ClusterNeeds(name, size) for name, size in COMPUTES.items())


@pytest.fixture()
def pipeline_yaml(tmp_path: Path) -> Path:
    from azure_dl.snapshot import package_dir, stage_snapshot

    (tmp_path / "data" / "cats").mkdir(parents=True)
    spec = apply_overrides(load_pipeline("resnet"), {"data": str(tmp_path / "data"), "epochs": "4"})
    snapshot = stage_snapshot(package_dir(), tmp_path / "snapshot")
    return write_pipeline_yaml(spec, tmp_path, code_dir=snapshot.path)


def _client(*, clusters: dict[str, str] = COMPUTES) -> tuple[Any, FakeJobOperations, FakeComputeOperations]:
    usages = [family_usage("standardNCASv3_T4Family", 64), family_usage("standardDSv3Family", 64), regional_usage(100)]
    compute = FakeComputeOperations(usages)
    for name, size in clusters.items():
        compute.add_cluster(name, size)
    jobs = FakeJobOperations()
    return fake_ml_client(jobs=jobs, compute=compute), jobs, compute


def test_submits_the_pipeline_exactly_as_loaded(pipeline_yaml: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from azure.ai.ml import load_job
    from azure.ai.ml.entities import PipelineJob

    client, jobs, _ = _client()
    submitted = submit_pipeline_yaml(None, pipeline_yaml, needs=NEEDS, ml_client=client)

    (call,) = jobs.calls_to("create_or_update")
    sent = call.args[0]
    assert isinstance(sent, PipelineJob) and sent.name == submitted.name
    reference = load_job(pipeline_yaml)
    reference.name = sent.name
    assert rest_serialise(sent).as_dict() == rest_serialise(reference).as_dict()
    wire = rest_serialise(sent).as_dict()["properties"]
    assert wire["outputs"]["registered_model"] == {"assetName": "azure-dl-resnet", "jobOutputType": "custom_model"}
    assert wire["inputs"]["gpu_compute"]["value"] == "nc4as-t4-v3"
    assert wire["jobs"]["train"]["computeId"] == "${{parent.inputs.gpu_compute}}"
    out = capsys.readouterr().out
    assert f"Submitted pipeline {sent.name}" in out and submitted.studio_url in out


def test_refuses_a_missing_cluster_before_creating_anything(pipeline_yaml: Path) -> None:
    client, jobs, _ = _client(clusters={"d4s-v3": "Standard_D4s_v3"})
    with pytest.raises(ConfigError, match="compute cluster 'nc4as-t4-v3' does not exist"):
        submit_pipeline_yaml(None, pipeline_yaml, needs=NEEDS, ml_client=client)
    assert jobs.calls_to("create_or_update") == []


def test_ensure_compute_creates_missing_clusters(pipeline_yaml: Path) -> None:
    client, jobs, compute = _client(clusters={})
    submit_pipeline_yaml(None, pipeline_yaml, needs=NEEDS, ensure_compute=True, ml_client=client)
    created = {call.args[0].name: call.args[0].size for call in compute.calls_to("begin_create_or_update")}
    assert created == COMPUTES
    assert len(jobs.calls_to("create_or_update")) == 1


def test_stream_follows_the_pipeline(pipeline_yaml: Path) -> None:
    client, jobs, _ = _client()
    submitted = submit_pipeline_yaml(None, pipeline_yaml, needs=NEEDS, stream=True, ml_client=client)
    assert [call.args[0] for call in jobs.calls_to("stream")] == [submitted.name]


def test_a_command_job_yaml_is_not_a_pipeline(tmp_path: Path) -> None:
    job = tmp_path / "job.yml"
    job.write_text("type: command\ncommand: echo hi\nenvironment: azureml:env:1\ncompute: azureml:cpu\n")
    with pytest.raises(SpecError, match="not a pipeline job"):
        load_pipeline_yaml(job)


def test_cli_submits_by_default(pipeline_yaml: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from azure_dl.cli import pipeline as pipeline_cli

    client, jobs, _ = _client()
    monkeypatch.setattr(client_module, "client_from_args", lambda args: client)
    monkeypatch.setenv("AZURE_DL_CATALOG", str(tmp_path / "no-user-catalogue.toml"))
    parser = argparse.ArgumentParser(prog="azure-dl")
    pipeline_cli.add_parser(parser.add_subparsers(dest="verb"))
    args = parser.parse_args(["pipeline", "resnet", "--out", str(tmp_path / "cli"), "--input", "epochs=2"])
    assert args.handler(args) == 0
    (call,) = jobs.calls_to("create_or_update")
    assert rest_serialise(call.args[0]).as_dict()["properties"]["inputs"]["epochs"]["value"] == "2"
    assert (tmp_path / "cli" / "data" / "synth.json").is_file()  # synthetic images by default, uploaded at submit


def test_cli_dry_run_writes_and_plans_without_a_client(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from azure_dl.cli import pipeline as pipeline_cli

    def no_client(args: object) -> None:
        raise AssertionError("a dry-run must not create an MLClient")

    monkeypatch.setattr(client_module, "client_from_args", no_client)
    monkeypatch.setenv("AZURE_DL_CATALOG", str(tmp_path / "no-user-catalogue.toml"))
    parser = argparse.ArgumentParser(prog="azure-dl")
    pipeline_cli.add_parser(parser.add_subparsers(dest="verb"))
    args = parser.parse_args(["pipeline", "lstm", "--dry-run", "--out", str(tmp_path / "dry")])
    assert args.handler(args) == 0
    out = capsys.readouterr().out
    assert (
        "Standard_D4s_v3" in out
        and "Standard_NC4as_T4_v3" not in out
        and "dry run: nothing was created or billed" in out
    )
    assert load_pipeline_yaml(tmp_path / "dry" / "pipeline.yml").inputs["data"].path == "data/reviews.csv"
