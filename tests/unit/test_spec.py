"""JobSpec / SweepSpec validation: each invalid value is refused at construction with a message that names it."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest

from azure_dl import catalog
from azure_dl.errors import SpecError
from azure_dl.spec import (
    EnvironmentSpec,
    InputSpec,
    JobSpec,
    OutputSpec,
    classify_input,
    infer_input_kind,
)
from azure_dl.sweep_spec import EarlyTermination, SearchParam, SweepSpec


@pytest.fixture(autouse=True)
def packaged_catalog_only(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(catalog.CATALOG_ENV_VAR, str(tmp_path / "none.toml"))


@pytest.fixture
def code(tmp_path: Path) -> Path:
    folder = tmp_path / "code"
    folder.mkdir()
    (folder / "train.py").write_text("print('hi')\n")
    return folder


@pytest.fixture
def env(tmp_path: Path) -> EnvironmentSpec:
    conda = tmp_path / "conda.yml"
    conda.write_text("name: x\n")
    return EnvironmentSpec(name="train-gpu", image="mcr.microsoft.com/azureml/x:latest", conda_file=conda)


def job(code: Path, env: EnvironmentSpec, **changes: Any) -> JobSpec:
    fields: dict[str, Any] = {
        "display_name": "train",
        "experiment": "azure-dl-test",
        "code": code,
        "script": "train.py",
        "vm_size": "Standard_NC4as_T4_v3",
        "environment": env,
        "max_hours": 2.0,
        "compute": "nc4as-t4-v3",
        "outputs": {"model": OutputSpec("--output"), "checkpoints": OutputSpec("--checkpoint-dir")},
    }
    fields.update(changes)
    return JobSpec(**fields)


def test_a_valid_job_resolves_the_vm_and_defaults(code: Path, env: EnvironmentSpec) -> None:
    spec = job(code, env, vm_size="standard_nc64as_t4_v3", instance_count=2)
    assert spec.vm_size == "Standard_NC64as_T4_v3"
    assert spec.processes_per_node == 4 and spec.world_size == 8 and spec.is_distributed
    assert spec.shm_size == "16g"
    single = job(code, env)
    assert single.processes_per_node == 1 and not single.is_distributed
    assert job(code, env, vm_size="Standard_DS3_v2").shm_size == "7g"  # half of 14 GB RAM


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"vm_size": "Standard_NC6s_v3"}, "retired on 30 Sep 2025"),
        ({"vm_size": "Standard_NC4"}, "unknown VM size 'Standard_NC4'"),
        ({"instance_count": 0}, "instance count must be at least 1, got 0"),
        ({"process_count_per_instance": 2}, "2 processes per node requested but Standard_NC4as_T4_v3 has 1 GPU"),
        ({"vm_size": "Standard_D4s_v3", "process_count_per_instance": 4}, "a CPU size with no GPU"),
        ({"max_hours": -1.0}, "max hours must be a positive number, got -1.0"),
        ({"max_hours": 0}, "max hours must be a positive number"),
        ({"script": None}, "empty command"),
        ({"script": "missing.py"}, "script 'missing.py' not found"),
        ({"script": "../train.py"}, "must be a path inside the code folder"),
        ({"module": "training scripts", "script": None}, "not a Python module name"),
        ({"compute": "-bad"}, "compute name '-bad' is not valid"),
        ({"experiment": "has space"}, "experiment name 'has space'"),
        ({"shm_size": "lots"}, "shm_size 'lots' is not a size"),
        ({"shm_size": "64g"}, "exceeds the 28 GB of RAM"),
        ({"env_vars": {"1BAD": "x"}}, "environment variable name '1BAD'"),
        (
            {"outputs": {"checkpoints": OutputSpec("--checkpoint-dir", mode="upload")}},
            "checkpoints output must be rw_mount",
        ),
        (
            {"outputs": {"model": OutputSpec("--output"), "checkpoints": OutputSpec("--output")}},
            "flag --output is bound to both",
        ),
    ],
)
def test_invalid_jobs_are_refused_with_the_value(
    code: Path, env: EnvironmentSpec, changes: dict[str, Any], message: str
) -> None:
    with pytest.raises(SpecError) as error:
        job(code, env, **changes)
    assert message in str(error.value)


def test_missing_code_folder(tmp_path: Path, env: EnvironmentSpec) -> None:
    with pytest.raises(SpecError, match=r"code folder .* does not exist"):
        job(tmp_path / "nope", env)


@pytest.mark.parametrize(
    "name", ["STORAGE_KEY", "HF_TOKEN", "DB_PASSWORD", "MY_SECRET", "AZURE_STORAGE_CONNECTION_STRING"]
)
def test_secret_looking_env_var_names_are_refused_without_echoing_the_value(
    code: Path, env: EnvironmentSpec, name: str
) -> None:
    with pytest.raises(SpecError) as error:
        job(code, env, env_vars={name: "hunter2-value"})
    text = str(error.value)
    assert name in text and "hunter2-value" not in text
    assert "Key Vault" in text


@pytest.mark.parametrize(
    "value",
    ["DefaultEndpointsProtocol=https;AccountName=a;AccountKey=abc==", "https://a.blob.core.windows.net/c?sv=1&sig=xyz"],
)
def test_secret_looking_values_are_refused(code: Path, env: EnvironmentSpec, value: str) -> None:
    with pytest.raises(SpecError) as error:
        job(code, env, env_vars={"SETTING": value})
    assert value not in str(error.value)
    with pytest.raises(SpecError):
        job(code, env, args=("--glove", value))


def test_harmless_env_vars_pass(code: Path, env: EnvironmentSpec) -> None:
    spec = job(code, env, env_vars={"NCCL_DEBUG": "INFO", "MONKEYS": "3"})
    assert spec.env_vars["NCCL_DEBUG"] == "INFO"


@pytest.mark.parametrize(
    ("value", "source"),
    [
        ("azureml://datastores/workspaceblobstore/paths/data/images/", "datastore"),
        (
            "azureml://subscriptions/s/resourcegroups/rg/workspaces/ws/datastores/workspaceblobstore/paths/x.csv",
            "datastore",
        ),
        ("azureml://jobs/abc_123/outputs/model", "job_output"),
        ("azureml:chest-xray:3", "asset"),
        ("azureml:chest-xray@latest", "asset"),
        ("https://example.org/data/images.zip", "url"),
        ("relative/folder", "local"),
    ],
)
def test_input_forms(value: str, source: str) -> None:
    assert classify_input(value) == source


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("azureml://datastore/workspaceblobstore/data", "malformed datastore URI"),
        ("azureml://datastores/blob store/paths/x", "malformed datastore URI"),
        ("azureml:chest-xray", "malformed data asset reference"),
        ("azureml:chest xray:1", "malformed data asset reference"),
        ("s3://bucket/key", "unsupported input URL"),
        ("http://example.org/data", "unsupported input URL"),
    ],
)
def test_malformed_inputs_are_refused(value: str, message: str) -> None:
    with pytest.raises(SpecError) as error:
        InputSpec(value, "--data")
    assert message in str(error.value) and value in str(error.value)


def test_missing_local_data_path(tmp_path: Path) -> None:
    with pytest.raises(SpecError, match=r"local data path .*does-not-exist.* does not exist"):
        InputSpec(str(tmp_path / "does-not-exist"), "--data")


def test_local_inputs_become_absolute_and_kinds_are_inferred(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "images").mkdir()
    (tmp_path / "texts.csv").write_text("text,label\n")
    spec = InputSpec("images", "--data")
    assert spec.value == str(tmp_path / "images") and spec.is_local
    assert infer_input_kind("texts.csv", "uri_folder") == "uri_file"
    assert infer_input_kind("azureml://datastores/d/paths/a.jsonl", "uri_folder") == "uri_file"
    assert infer_input_kind("azureml://datastores/d/paths/images/", "uri_file") == "uri_folder"
    assert infer_input_kind("azureml:chest-xray:3", "uri_folder") == "uri_folder"
    with pytest.raises(SpecError, match="expects a file"):
        InputSpec("images", "--data", kind="uri_file")


# ---------------------------------------------------------------------------------------------------- sweeps


def sweep(code: Path, env: EnvironmentSpec, **changes: Any) -> SweepSpec:
    fields: dict[str, Any] = {
        "trial": job(code, env),
        "search_space": (SearchParam.parse("lr=loguniform(1e-5, 1e-2)"), SearchParam.parse("batch_size=choice(16,32)")),
        "primary_metric": "val_macro_f1",
    }
    fields.update(changes)
    return SweepSpec(**fields)


def test_search_param_parsing() -> None:
    lr = SearchParam.parse("lr=loguniform(1e-5, 1e-2)")
    assert (lr.kind, lr.low, lr.high, lr.flag) == ("loguniform", 1e-5, 1e-2, "--lr")
    batch = SearchParam.parse("batch_size=choice(16, 32, 64)")
    assert batch.values == (16, 32, 64) and batch.flag == "--batch-size"
    assert SearchParam.parse("optimizer=choice(adam, sgd)").values == ("adam", "sgd")
    assert SearchParam.parse("hidden=quniform(32, 256, 32)").q == 32
    assert SearchParam.parse("seed=randint(100)").upper == 100
    assert SearchParam.parse("dropout=normal(0.3, 0.1)").sigma == 0.1


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("lr", "cannot read search parameter"),
        ("lr=loguniform(0, 1)", "needs low > 0"),
        ("lr=uniform(1, 1)", "needs low < high"),
        ("lr=uniform(a, b)", "takes numbers"),
        ("lr=quniform(1, 2)", "takes 3 numbers"),
        ("lr=beta(1, 2)", "unknown distribution 'beta'"),
        ("bs=choice()", "at least one value"),
    ],
)
def test_bad_search_params(text: str, message: str) -> None:
    with pytest.raises(SpecError) as error:
        SearchParam.parse(text)
    assert message in str(error.value)


def test_bayesian_refuses_early_termination(code: Path, env: EnvironmentSpec) -> None:
    space = (SearchParam.parse("lr=uniform(1e-5, 1e-2)"),)
    with pytest.raises(SpecError, match="Bayesian sampling does not support early termination"):
        sweep(code, env, sampling="bayesian", search_space=space, early_termination=EarlyTermination("bandit"))
    assert sweep(code, env, sampling="bayesian", search_space=space).sampling == "bayesian"


@pytest.mark.parametrize("expression", ["lr=loguniform(1e-5, 1e-2)", "seed=randint(10)", "x=normal(0, 1)"])
def test_bayesian_allows_only_choice_uniform_quniform(code: Path, env: EnvironmentSpec, expression: str) -> None:
    with pytest.raises(SpecError, match="Bayesian sampling supports only choice, uniform and quniform"):
        sweep(code, env, sampling="bayesian", search_space=(SearchParam.parse(expression),))


def test_grid_needs_choice_only(code: Path, env: EnvironmentSpec) -> None:
    with pytest.raises(SpecError, match="grid sampling supports only choice; lr is loguniform"):
        sweep(code, env, sampling="grid")
    grid = sweep(code, env, sampling="grid", search_space=(SearchParam.parse("batch_size=choice(16, 32, 64)"),))
    assert grid.grid_size == 3


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"max_total_trials": 0}, "max total trials must be at least 1"),
        ({"max_concurrent_trials": 9}, "max concurrent trials must be between 1 and max total trials (8)"),
        ({"goal": "biggest"}, "goal 'biggest'"),
        ({"sampling": "sobol"}, "unknown sampling 'sobol'"),
        ({"search_space": ()}, "at least one search parameter"),
        ({"timeout_hours": -2.0}, "sweep timeout must be a positive number"),
        ({"primary_metric": " "}, "needs a primary metric"),
    ],
)
def test_invalid_sweeps(code: Path, env: EnvironmentSpec, changes: dict[str, Any], message: str) -> None:
    with pytest.raises(SpecError) as error:
        sweep(code, env, **changes)
    assert message in str(error.value)


def test_searched_flag_may_not_also_be_fixed(code: Path, env: EnvironmentSpec) -> None:
    with pytest.raises(SpecError, match="--lr is both fixed"):
        sweep(code, env, trial=job(code, env, args=("--lr", "0.1")))


def test_early_termination_policies() -> None:
    assert EarlyTermination("bandit").slack_factor == 0.1
    assert EarlyTermination("truncation").policy == "truncation_selection"
    with pytest.raises(SpecError, match="unknown early termination policy"):
        EarlyTermination("asha")
    with pytest.raises(SpecError, match="not both"):
        EarlyTermination("bandit", slack_factor=0.1, slack_amount=0.2)
    with pytest.raises(SpecError, match="1-99"):
        EarlyTermination("truncation_selection", truncation_percentage=0)


def test_default_sweep_timeout_covers_every_wave(code: Path, env: EnvironmentSpec) -> None:
    spec = sweep(code, env, max_total_trials=5, max_concurrent_trials=2)
    assert spec.effective_timeout_hours == 3 * spec.trial.max_hours
    assert dataclasses.replace(spec, timeout_hours=1.5).effective_timeout_hours == 1.5
