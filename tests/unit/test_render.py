"""Rendering: the YAML loads with azure.ai.ml.load_job with every field intact and serialises for REST, and the
local command is the cloud command with folders bound."""

from __future__ import annotations

import math
import sys
from pathlib import Path
from typing import Any

import pytest

from azure_dl import catalog
from azure_dl.environments import environment_spec
from azure_dl.errors import SpecError
from azure_dl.render import command_string, local_command, render_job, render_sweep, to_yaml, write_yaml
from azure_dl.spec import (
    EnvironmentSpec,
    InputSpec,
    JobSpec,
    OutputSpec,
)
from azure_dl.sweep_spec import EarlyTermination, SearchParam, SweepSpec


@pytest.fixture(autouse=True)
def packaged_catalog_only(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(catalog.CATALOG_ENV_VAR, str(tmp_path / "none.toml"))


@pytest.fixture
def out(tmp_path: Path) -> Path:
    folder = tmp_path / "out"
    (folder / "snapshot" / "training_scripts").mkdir(parents=True)
    (folder / "snapshot" / "training_scripts" / "__init__.py").write_text("")
    (folder / "data" / "a").mkdir(parents=True)
    return folder


def make_job(out: Path, **changes: Any) -> JobSpec:
    fields: dict[str, Any] = {
        "display_name": "resnet",
        "experiment": "azure-dl-resnet",
        "code": out / "snapshot",
        "module": "training_scripts.train_resnet",
        "vm_size": "Standard_NC4as_T4_v3",
        "environment": environment_spec("train-gpu", copy_to=out / "environments"),
        "max_hours": 1.5,
        "compute": "nc4as-t4-v3",
        "inputs": {
            "data": InputSpec(str(out / "data"), "--data"),
            "val_data": InputSpec("azureml://datastores/workspaceblobstore/paths/val/", "--val-data"),
            "test_data": InputSpec("azureml:xray-test:2", "--test-data"),
        },
        "outputs": {"model": OutputSpec("--output"), "checkpoints": OutputSpec("--checkpoint-dir")},
        "args": ("--epochs", "3", "--name", "two words"),
        "env_vars": {"NCCL_DEBUG": "INFO"},
        "tags": {"preset": "resnet"},
    }
    fields.update(changes)
    return JobSpec(**fields)


def load(path: Path) -> Any:
    from azure.ai.ml import load_job

    return load_job(path)


def test_command_job_round_trips_through_load_job(out: Path) -> None:
    spec = make_job(out, instance_count=2, vm_size="Standard_NC64as_T4_v3", compute="nc64as-t4-v3")
    path = write_yaml(render_job(spec, out), out / "job.yml")
    job = load(path)
    assert job.type == "command"
    assert job.compute == "nc64as-t4-v3"
    assert Path(job.code) == Path("snapshot")
    assert job.command == (
        "python -m training_scripts.train_resnet --data ${{inputs.data}} --val-data ${{inputs.val_data}} "
        "--test-data ${{inputs.test_data}} --output ${{outputs.model}} --checkpoint-dir ${{outputs.checkpoints}} "
        "--epochs 3 --name 'two words'"
    )
    assert job.environment.image == "mcr.microsoft.com/azureml/openmpi5.0-cuda12.6-ubuntu24.04:latest"
    assert job.environment.conda_file["name"] == "azure-dl-train-gpu"
    assert job.inputs["data"].path == "data"
    assert job.inputs["val_data"].path == "azureml://datastores/workspaceblobstore/paths/val/"
    assert job.inputs["test_data"].path.endswith("xray-test:2")  # the SDK drops the azureml: prefix
    assert job.inputs["data"].type == "uri_folder" and job.inputs["data"].mode == "ro_mount"
    assert {name: (o.type, o.mode) for name, o in job.outputs.items()} == {
        "model": ("uri_folder", "rw_mount"),
        "checkpoints": ("uri_folder", "rw_mount"),
    }
    assert job.distribution.type == "pytorch" and job.distribution.process_count_per_instance == 4
    assert job.resources.instance_count == 2 and job.resources.shm_size == "16g"
    assert job.limits.timeout == 5400
    assert job.environment_variables == {"NCCL_DEBUG": "INFO"}
    assert job.tags == {"preset": "resnet"} and job.experiment_name == "azure-dl-resnet"
    rest = job._to_job()._to_rest_object().as_dict()["properties"]
    assert rest["computeId"] == "nc64as-t4-v3"
    assert rest["distribution"] == {"processCountPerInstance": 4, "distributionType": "PyTorch"}
    assert rest["limits"]["timeout"] == "PT1H30M"


def test_single_gpu_job_has_no_distribution(out: Path) -> None:
    document = render_job(make_job(out), out)
    assert "distribution" not in document
    assert load(write_yaml(document, out / "job.yml")).distribution is None


def test_serverless_low_priority_uses_the_spot_tier_and_asks_for_the_vm(out: Path) -> None:
    spec = make_job(out, compute=None, low_priority=True)
    document = render_job(spec, out)
    assert "compute" not in document
    assert document["resources"]["instance_type"] == "Standard_NC4as_T4_v3"
    assert document["queue_settings"] == {"job_tier": "spot"}
    job = load(write_yaml(document, out / "job.yml"))
    assert job.queue_settings.job_tier == "spot" and job.resources.instance_type == "Standard_NC4as_T4_v3"
    job._to_job()._to_rest_object()


def test_cluster_low_priority_is_the_clusters_tier_not_a_job_field(out: Path) -> None:
    assert "queue_settings" not in render_job(make_job(out, low_priority=True), out)


def test_registered_environment_renders_as_a_reference(out: Path) -> None:
    spec = make_job(out, environment=EnvironmentSpec("azureml:AzureML-ACPT-pytorch-2.2-cuda12.1@latest"))
    job = load(write_yaml(render_job(spec, out), out / "job.yml"))
    assert render_job(spec, out)["environment"] == "azureml:AzureML-ACPT-pytorch-2.2-cuda12.1@latest"
    assert "AzureML-ACPT-pytorch-2.2-cuda12.1" in str(job.environment)


def test_yaml_is_deterministic(out: Path) -> None:
    spec = make_job(out)
    assert to_yaml(render_job(spec, out)) == to_yaml(render_job(make_job(out), out))


def test_local_command_is_the_cloud_command_with_folders_bound(out: Path, tmp_path: Path) -> None:
    spec = make_job(out, inputs={"data": InputSpec(str(out / "data"), "--data")})
    bindings = {"model": tmp_path / "model", "checkpoints": tmp_path / "model" / "checkpoints"}
    argv = local_command(spec, bindings)
    assert argv == [
        sys.executable,
        "-m",
        "training_scripts.train_resnet",
        "--data",
        str(out / "data"),
        "--output",
        str(tmp_path / "model"),
        "--checkpoint-dir",
        str(tmp_path / "model" / "checkpoints"),
        "--epochs",
        "3",
        "--name",
        "two words",
    ]
    cloud = render_job(spec, out)["command"]
    substituted = cloud.replace("${{inputs.data}}", str(out / "data"))
    substituted = substituted.replace("${{outputs.model}}", str(tmp_path / "model"))
    substituted = substituted.replace("${{outputs.checkpoints}}", str(tmp_path / "model" / "checkpoints"))
    assert substituted == command_string(["python", *argv[1:]])


def test_local_command_refuses_remote_inputs_and_unbound_outputs(out: Path, tmp_path: Path) -> None:
    spec = make_job(out)
    with pytest.raises(SpecError, match="not a local path"):
        local_command(spec, {"model": tmp_path, "checkpoints": tmp_path / "c"})
    with pytest.raises(SpecError, match="no local folder for output"):
        local_command(spec, {"model": tmp_path})


def make_sweep(out: Path, **changes: Any) -> SweepSpec:
    fields: dict[str, Any] = {
        "trial": make_job(out, args=("--epochs", "3")),
        "search_space": (
            SearchParam.parse("lr=loguniform(1e-5, 1e-2)"),
            SearchParam.parse("batch_size=choice(16, 32, 64)"),
        ),
        "primary_metric": "val_macro_f1",
        "early_termination": EarlyTermination("bandit", slack_factor=0.2, evaluation_interval=2, delay_evaluation=3),
        "max_total_trials": 6,
        "max_concurrent_trials": 2,
    }
    fields.update(changes)
    return SweepSpec(**fields)


def test_random_sweep_round_trips_with_search_space_objective_policy_and_limits(out: Path) -> None:
    spec = make_sweep(out, seed=7)
    job = load(write_yaml(render_sweep(spec, out), out / "sweep.yml"))
    assert job.type == "sweep"
    assert job.compute == "nc4as-t4-v3"
    assert "--lr ${{search_space.lr}} --batch-size ${{search_space.batch_size}}" in job.trial.command
    lr = job.search_space["lr"]
    assert lr.type == "loguniform"
    assert math.isclose(lr.min_value, math.log(1e-5)) and math.isclose(lr.max_value, math.log(1e-2))
    assert job.search_space["batch_size"].values == [16, 32, 64]
    assert job.sampling_algorithm.type == "random" and job.sampling_algorithm.seed == 7
    assert (job.objective.goal, job.objective.primary_metric) == ("maximize", "val_macro_f1")
    policy = job.early_termination
    assert (policy.type, policy.slack_factor, policy.evaluation_interval, policy.delay_evaluation) == (
        "bandit",
        0.2,
        2,
        3,
    )
    limits = job.limits
    assert (limits.max_total_trials, limits.max_concurrent_trials) == (6, 2)
    assert limits.timeout == 3 * 5400 and limits.trial_timeout == 5400
    assert job.inputs["data"].path == "data" and set(job.outputs) == {"model", "checkpoints"}
    assert job.trial.resources["shm_size"] == "14g"  # half the RAM of an NC4as_T4_v3
    rest = job._to_rest_object().as_dict()["properties"]
    assert rest["samplingAlgorithm"]["samplingAlgorithmType"] == "Random"
    assert rest["earlyTermination"]["policyType"] == "Bandit"


def test_grid_and_bayesian_sweeps_render_their_algorithm(out: Path) -> None:
    grid = make_sweep(
        out,
        sampling="grid",
        search_space=(SearchParam.parse("batch_size=choice(16, 32)"), SearchParam.parse("lr=choice(0.01, 0.001)")),
        early_termination=EarlyTermination("median_stopping"),
    )
    loaded = load(write_yaml(render_sweep(grid, out), out / "grid.yml"))
    assert str(loaded.sampling_algorithm) == "grid" and loaded.early_termination.type == "median_stopping"
    loaded._to_rest_object()
    bayes = make_sweep(
        out,
        sampling="bayesian",
        search_space=(SearchParam.parse("lr=uniform(1e-4, 1e-2)"), SearchParam.parse("hidden=quniform(32, 256, 32)")),
        early_termination=EarlyTermination("none"),
    )
    document = render_sweep(bayes, out)
    assert "early_termination" not in document
    loaded = load(write_yaml(document, out / "bayes.yml"))
    assert str(loaded.sampling_algorithm) == "bayesian"
    assert loaded.search_space["hidden"].q == 32
    loaded._to_rest_object()


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        ("x=randint(10)", {"type": "randint", "upper": 10}),
        ("x=normal(0.5, 0.1)", {"type": "normal", "mu": 0.5, "sigma": 0.1}),
        ("x=qlognormal(1, 0.5, 2)", {"type": "qlognormal", "mu": 1, "sigma": 0.5, "q": 2}),
        ("x=uniform(0.1, 0.5)", {"type": "uniform", "min_value": 0.1, "max_value": 0.5}),
    ],
)
def test_every_distribution_loads(out: Path, expression: str, expected: dict[str, Any]) -> None:
    spec = make_sweep(out, search_space=(SearchParam.parse(expression),), early_termination=EarlyTermination())
    document = render_sweep(spec, out)
    assert document["search_space"]["x"] == expected
    job = load(write_yaml(document, out / "sweep.yml"))
    assert job.search_space["x"].type == expected["type"]
    job._to_rest_object()


def test_truncation_policy_loads(out: Path) -> None:
    spec = make_sweep(out, early_termination=EarlyTermination("truncation", truncation_percentage=30))
    job = load(write_yaml(render_sweep(spec, out), out / "sweep.yml"))
    assert job.early_termination.type == "truncation_selection"
    assert job.early_termination.truncation_percentage == 30
