"""The job environments in environments/ (train-gpu, train-cpu, inference), kept in step with one source of pins.

Each environment is a folder with an Azure ML environment definition (`environment.yml`: base image + conda file,
usable as is with `az ml environment create --file`) and a `conda.yml`. The package versions in every conda.yml
come from requirements/constraints.txt, the file the local install resolves in one pip call, so that a job runs
the same torch, MLflow and ONNX Runtime as the laptop. `python -m azure_dl.environments --check` verifies that;
`--write` regenerates the files from the definitions below.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from azure_dl.errors import ConfigError, SpecError
from azure_dl.spec import EnvironmentSpec

REPO_ROOT = Path(__file__).resolve().parents[1]
ENVIRONMENTS_DIR = REPO_ROOT / "environments"
CONSTRAINTS = REPO_ROOT / "requirements" / "constraints.txt"
PYTHON_VERSION = "3.11"  # the version the constraints were resolved with
ENVIRONMENT_FILE = "environment.yml"
CONDA_FILE = "conda.yml"

# Released base images: https://github.com/Azure/AzureML-Containers (images/*/release-notes.md lists dated tags).
GPU_IMAGE = "mcr.microsoft.com/azureml/openmpi5.0-cuda12.6-ubuntu24.04:latest"
CPU_IMAGE = "mcr.microsoft.com/azureml/openmpi5.0-ubuntu24.04:latest"


@dataclass(frozen=True)
class EnvironmentDefinition:
    name: str
    image: str
    description: str
    packages: tuple[str, ...]  # pip package names; versions come from the constraints
    pip_options: tuple[str, ...] = ()


# pydicom: DICOM (.dcm) X-rays, read by the ResNet's data loading and by the image scoring script; pylibjpeg and
# its plugins decode the compressed transfer syntaxes (JPEG, JPEG-LS, JPEG 2000, RLE) for both.
DICOM_CODECS = ("pydicom", "pylibjpeg", "pylibjpeg-libjpeg", "pylibjpeg-openjpeg", "pylibjpeg-rle")
_TRAINING = (
    "torch",
    "numpy",
    "pillow",
    "matplotlib",
    "mlflow",
    "azureml-mlflow",
    "onnx",
    "onnxscript",
    "onnxruntime",
    *DICOM_CODECS,
)

DEFINITIONS: dict[str, EnvironmentDefinition] = {
    "train-gpu": EnvironmentDefinition(
        name="train-gpu",
        image=GPU_IMAGE,
        description="azure-dl training on NVIDIA GPUs: torch (the CUDA build PyPI ships for Linux), MLflow, ONNX",
        packages=_TRAINING,
    ),
    "train-cpu": EnvironmentDefinition(
        name="train-cpu",
        image=CPU_IMAGE,
        description="azure-dl training on CPU sizes: torch (CPU build from the PyTorch index), MLflow, ONNX",
        packages=_TRAINING,
        # The CPU wheel is a fraction of the CUDA one; PyPI stays available for everything else.
        pip_options=("--index-url https://download.pytorch.org/whl/cpu", "--extra-index-url https://pypi.org/simple"),
    ),
    "inference": EnvironmentDefinition(
        name="inference",
        image=CPU_IMAGE,
        description="azure-dl scoring: ONNX Runtime + the Azure ML inference server (no torch)",
        # azureml-ai-monitoring: model data collection (deploy --collect-data); it brings pandas.
        packages=(
            "onnxruntime",
            "azureml-inference-server-http",
            "azureml-ai-monitoring",
            "numpy",
            "pillow",
            *DICOM_CODECS,
        ),
    ),
}


def normalize(name: str) -> str:
    """PEP 503 name normalisation (Pillow == pillow, azureml_mlflow == azureml-mlflow)."""
    return re.sub(r"[-_.]+", "-", name).lower()


def read_constraints(path: Path = CONSTRAINTS) -> dict[str, str]:
    """{normalised package name: exact version} from a pip constraints file."""
    if not path.is_file():
        raise ConfigError(f"constraints file {path} not found", hint="run from an azure-dl checkout (make lock)")
    pins: dict[str, str] = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        line = line.split("#", 1)[0].strip()
        name, sep, version = line.partition("==")
        if sep:
            pins[normalize(name)] = version.strip()
    return pins


def render_conda(definition: EnvironmentDefinition, pins: dict[str, str]) -> str:
    """The conda.yml text of one environment, every pip package pinned from `pins`."""
    missing = [p for p in definition.packages if normalize(p) not in pins]
    if missing:
        raise ConfigError(
            f"{', '.join(missing)} not pinned in {CONSTRAINTS}", hint="add them to pyproject and make lock"
        )
    pip_lines = [*definition.pip_options, *(f"{p}=={pins[normalize(p)]}" for p in definition.packages)]
    lines = [
        f"# {definition.description}.",
        "# Generated from requirements/constraints.txt by `python -m azure_dl.environments --write`; edit the",
        "# definitions in azure_dl/environments.py (or this file, then run --check) - the versions must match.",
        f"name: azure-dl-{definition.name}",
        "channels:",
        "  - conda-forge",
        "dependencies:",
        f"  - python={PYTHON_VERSION}",
        "  - pip",
        "  - pip:",
        *(f"      - {line}" for line in pip_lines),
    ]
    return "\n".join(lines) + "\n"


def render_environment_file(definition: EnvironmentDefinition) -> str:
    """The Azure ML CLI v2 environment definition (`az ml environment create --file environment.yml`)."""
    return (
        "$schema: https://azuremlschemas.azureedge.net/latest/environment.schema.json\n"
        f"name: azure-dl-{definition.name}\n"
        f"description: {json.dumps(definition.description)}\n"
        f"image: {definition.image}\n"
        f"conda_file: {CONDA_FILE}\n"
    )


_REQUIREMENT = re.compile(
    r"^(?P<name>[A-Za-z0-9][A-Za-z0-9_.-]*)\s*(?:(?P<op>==|>=|<=|~=|!=|>|<)\s*(?P<version>\S+))?$"
)


def pinned_packages(conda_text: str) -> dict[str, str | None]:
    """{package: version, or None if not pinned with ==} of the pip section of a conda file."""
    import yaml

    data = yaml.safe_load(conda_text) or {}
    packages: dict[str, str | None] = {}
    for dependency in data.get("dependencies", []):
        if not isinstance(dependency, dict):
            continue
        for requirement in dependency.get("pip", []):
            requirement = str(requirement).strip()
            if requirement.startswith("-"):  # pip options such as --index-url
                continue
            match = _REQUIREMENT.match(requirement.split(";", 1)[0].strip())
            if match:
                packages[match["name"]] = match["version"] if match["op"] == "==" else None
    return packages


def check(directory: Path = ENVIRONMENTS_DIR, constraints: Path = CONSTRAINTS) -> list[str]:
    """Every problem found: missing files, unpinned packages, versions that differ from the constraints."""
    pins = read_constraints(constraints)
    problems: list[str] = []
    for name, definition in DEFINITIONS.items():
        folder = directory / name
        for filename in (ENVIRONMENT_FILE, CONDA_FILE):
            if not (folder / filename).is_file():
                problems.append(f"{folder / filename} is missing (python -m azure_dl.environments --write)")
        conda = folder / CONDA_FILE
        if not conda.is_file():
            continue
        packages = pinned_packages(conda.read_text(encoding="utf-8"))
        for package, version in packages.items():
            expected = pins.get(normalize(package))
            if version is None:
                problems.append(f"{conda}: {package} is not pinned with == (constraints: {expected})")
            elif expected is None:
                problems.append(f"{conda}: {package}=={version} is not in {constraints.name}")
            elif version != expected:
                problems.append(f"{conda}: {package}=={version} but {constraints.name} pins {expected}")
        for package in definition.packages:
            if package not in packages and normalize(package) not in {normalize(p) for p in packages}:
                problems.append(f"{conda}: {package} is missing")
    return problems


def write(directory: Path = ENVIRONMENTS_DIR, constraints: Path = CONSTRAINTS) -> list[Path]:
    """(Re)generate every environment folder from DEFINITIONS and the constraints."""
    pins = read_constraints(constraints)
    written = []
    for name, definition in DEFINITIONS.items():
        folder = directory / name
        folder.mkdir(parents=True, exist_ok=True)
        for filename, text in (
            (CONDA_FILE, render_conda(definition, pins)),
            (ENVIRONMENT_FILE, render_environment_file(definition)),
        ):
            (folder / filename).write_text(text, encoding="utf-8")
            written.append(folder / filename)
    return written


def available() -> list[str]:
    return sorted(DEFINITIONS)


def default_environment(gpu: bool) -> str:
    return "train-gpu" if gpu else "train-cpu"


def read_image(folder: Path) -> str:
    """The `image:` of an environment.yml (a plain key: value file, read without a YAML parser)."""
    for line in (folder / ENVIRONMENT_FILE).read_text(encoding="utf-8").splitlines():
        key, sep, value = line.partition(":")
        if sep and key.strip() == "image":
            return value.strip()
    raise ConfigError(f"{folder / ENVIRONMENT_FILE} has no image")


def environment_spec(
    reference: str, *, copy_to: Path | None = None, directory: Path = ENVIRONMENTS_DIR
) -> EnvironmentSpec:
    """An EnvironmentSpec for `azureml:NAME:VERSION` / `azureml:NAME@latest`, or for one of environments/.

    With `copy_to`, the environment folder is copied there (copy_to/NAME/) and the spec points at the copy, so
    that a dry-run folder holds everything its job.yml refers to.
    """
    if reference.startswith("azureml:"):
        return EnvironmentSpec(name=reference)
    if reference not in DEFINITIONS:
        raise SpecError(
            f"unknown environment {reference!r}",
            hint=f"use one of {', '.join(available())} or a registered one: azureml:<name>:<version> / @latest",
        )
    folder = directory / reference
    if not (folder / CONDA_FILE).is_file():
        raise ConfigError(
            f"environment files not found in {folder}",
            hint="azure-dl reads environments/ from its source checkout; reinstall with `pip install -e .` or pass "
            "--environment azureml:<name>@latest",
        )
    if copy_to is not None:
        target = copy_to / reference
        if target.exists():
            shutil.rmtree(target)
        shutil.copytree(folder, target)
        folder = target
    return EnvironmentSpec(name=reference, image=read_image(folder), conda_file=folder / CONDA_FILE)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m azure_dl.environments", description=__doc__)
    group = parser.add_mutually_exclusive_group(required=True)
    group.add_argument("--check", action="store_true", help="verify environments/ against the constraints")
    group.add_argument("--write", action="store_true", help="regenerate environments/ from the constraints")
    args = parser.parse_args(argv)
    if args.write:
        for path in write():
            print(f"wrote {path}")
        return 0
    problems = check()
    for problem in problems:
        print(problem, file=sys.stderr)
    if not problems:
        print(f"environments/ matches {CONSTRAINTS}")
    return 1 if problems else 0


if __name__ == "__main__":
    raise SystemExit(main())
