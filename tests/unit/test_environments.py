"""The environments in environments/ match requirements/constraints.txt (one source of pins) and render as specs."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from azure_dl import environments
from azure_dl.environments import (
    CONSTRAINTS,
    DEFINITIONS,
    ENVIRONMENTS_DIR,
    check,
    environment_spec,
    normalize,
    pinned_packages,
    read_constraints,
)
from azure_dl.errors import SpecError


def test_committed_environments_match_the_constraints() -> None:
    assert check() == []


@pytest.mark.parametrize("name", sorted(DEFINITIONS))
def test_every_pinned_package_matches_the_constraints_version(name: str) -> None:
    pins = read_constraints()
    packages = pinned_packages((ENVIRONMENTS_DIR / name / "conda.yml").read_text(encoding="utf-8"))
    assert packages, name
    for package, version in packages.items():
        assert version == pins[normalize(package)], f"{name}: {package}"


def test_training_environments_carry_torch_and_the_local_mlflow_and_inference_has_no_torch() -> None:
    pins = read_constraints()
    for name in ("train-gpu", "train-cpu"):
        packages = pinned_packages((ENVIRONMENTS_DIR / name / "conda.yml").read_text(encoding="utf-8"))
        assert packages["torch"] == pins["torch"]
        assert packages["mlflow"] == pins["mlflow"] == "3.15.0"
        assert {"azureml-mlflow", "onnx", "onnxscript", "onnxruntime", "pillow", "numpy"} <= set(packages)
    inference = pinned_packages((ENVIRONMENTS_DIR / "inference" / "conda.yml").read_text(encoding="utf-8"))
    assert "torch" not in inference
    assert {"onnxruntime", "azureml-inference-server-http", "numpy", "pillow"} <= set(inference)


def test_check_reports_a_drifted_version(tmp_path: Path) -> None:
    copy = tmp_path / "environments"
    shutil.copytree(ENVIRONMENTS_DIR, copy)
    conda = copy / "train-gpu" / "conda.yml"
    conda.write_text(conda.read_text(encoding="utf-8").replace("mlflow==3.15.0", "mlflow==3.1.0"), encoding="utf-8")
    problems = check(copy, CONSTRAINTS)
    assert len(problems) == 1 and "mlflow==3.1.0" in problems[0] and "3.15.0" in problems[0]


def test_check_reports_an_unpinned_package(tmp_path: Path) -> None:
    copy = tmp_path / "environments"
    shutil.copytree(ENVIRONMENTS_DIR, copy)
    conda = copy / "inference" / "conda.yml"
    conda.write_text(conda.read_text(encoding="utf-8").replace("numpy==", "numpy>="), encoding="utf-8")
    assert any("numpy is not pinned" in problem for problem in check(copy, CONSTRAINTS))


def test_write_regenerates_identical_files(tmp_path: Path) -> None:
    environments.write(tmp_path, CONSTRAINTS)
    for name in DEFINITIONS:
        for filename in ("conda.yml", "environment.yml"):
            assert (tmp_path / name / filename).read_text() == (ENVIRONMENTS_DIR / name / filename).read_text()


def test_environment_files_load_with_azure_ml() -> None:
    from azure.ai.ml import load_environment

    for name in DEFINITIONS:
        loaded = load_environment(ENVIRONMENTS_DIR / name / "environment.yml")
        assert str(loaded.image).startswith("mcr.microsoft.com/azureml/")
        assert isinstance(loaded.conda_file, dict) and loaded.conda_file["name"] == f"azure-dl-{name}"


def test_environment_spec_copies_the_definition(tmp_path: Path) -> None:
    spec = environment_spec("train-gpu", copy_to=tmp_path)
    assert spec.conda_file == tmp_path / "train-gpu" / "conda.yml" and spec.conda_file.is_file()
    assert spec.image is not None and "cuda" in spec.image
    assert environment_spec("azureml:AzureML-ACPT-pytorch-2.2-cuda12.1@latest").is_registered


@pytest.mark.parametrize("reference", ["train-tpu", "azureml:", "azureml:name:1:2", "azureml:bad name@latest"])
def test_bad_environment_references_are_refused(reference: str) -> None:
    with pytest.raises(SpecError):
        environment_spec(reference)


def test_cli_check_exit_code(capsys: pytest.CaptureFixture) -> None:
    assert environments.main(["--check"]) == 0
    assert "matches" in capsys.readouterr().out
