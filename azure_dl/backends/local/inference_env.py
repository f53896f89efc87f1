"""The deployment's inference environment (environments/inference) as a virtual environment built once and cached.

`azure-dl serve --env inference` runs the scoring script with exactly the packages a deployment gets (no torch,
no azure_dl), like MLflow's `--env-manager virtualenv`. The environment is built with this Python's `venv` and
pip, installing the pip packages of environments/inference/conda.yml with requirements/constraints.txt as pip
constraints (so their dependencies get the locked versions too), into
`$AZURE_DL_CACHE/envs/inference-<hash>` (default cache `~/.cache/azure-dl`). The hash covers the bytes of
conda.yml and constraints.txt and the Python version: change either file and the next call builds a new
environment; otherwise it is reused. A file lock keeps two concurrent builds apart, and a marker file written last
tells a finished environment from one a failed or interrupted build left behind (which is rebuilt).
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from azure_dl.errors import AzureDLError

CACHE_ENV = "AZURE_DL_CACHE"
DEFAULT_CACHE = Path.home() / ".cache" / "azure-dl"
MARKER_FILE = "azure-dl-env.json"
KEY_VERSION = "1"  # bump when the way environments are built changes
# Imported once after the install: a broken environment fails its build, not the first request.
SMOKE_IMPORTS = "import numpy, PIL, onnxruntime, azureml_inference_server_http.amlserver"

Runner = Callable[[list[str]], int]


@dataclass(frozen=True)
class EnvironmentSpec:
    """The packages of one environment folder and the files that define them."""

    name: str
    conda_file: Path
    constraints: Path
    python_version: str  # "3.11", from the conda file
    requirements: tuple[str, ...]  # "package==version"
    pip_options: tuple[str, ...]  # e.g. ("--index-url", URL)

    def key(self, python_version: str) -> str:
        """16 hex digits of sha256 over the conda file, the constraints and the interpreter's version."""
        digest = hashlib.sha256()
        for part in (KEY_VERSION.encode(), python_version.encode(), self.conda_file.read_bytes()):
            digest.update(part + b"\0")
        digest.update(self.constraints.read_bytes())
        return digest.hexdigest()[:16]


def read_spec(folder: Path | None = None, constraints: Path | None = None) -> EnvironmentSpec:
    """The environment defined by `folder`/conda.yml (default environments/inference)."""
    import yaml

    from azure_dl.environments import CONDA_FILE, CONSTRAINTS, ENVIRONMENTS_DIR

    folder = folder or ENVIRONMENTS_DIR / "inference"
    constraints = constraints or CONSTRAINTS
    conda_file = folder / CONDA_FILE
    for path in (conda_file, constraints):
        if not path.is_file():
            raise AzureDLError(
                f"{path} not found", hint="azure-dl reads environments/ from its source checkout (pip install -e .)"
            )
    data = yaml.safe_load(conda_file.read_text(encoding="utf-8")) or {}
    python_version = ""
    requirements: list[str] = []
    options: list[str] = []
    for dependency in data.get("dependencies", []):
        if isinstance(dependency, str) and dependency.replace(" ", "").startswith("python="):
            python_version = dependency.split("=", 1)[1].strip()
        elif isinstance(dependency, dict):
            for item in dependency.get("pip", []):
                item = str(item).strip()
                if item.startswith("-"):  # pip options such as --index-url URL
                    options.extend(item.split())
                else:
                    requirements.append(item)
    if not requirements:
        raise AzureDLError(f"{conda_file} lists no pip packages")
    return EnvironmentSpec(
        name=folder.name,
        conda_file=conda_file,
        constraints=constraints,
        python_version=python_version,
        requirements=tuple(requirements),
        pip_options=tuple(options),
    )


def interpreter_version(python: str = sys.executable) -> str:
    if python == sys.executable:
        return f"{sys.version_info.major}.{sys.version_info.minor}"
    out = subprocess.run(
        [python, "-c", "import sys; print(f'{sys.version_info.major}.{sys.version_info.minor}')"],
        capture_output=True,
        text=True,
        check=True,
    )
    return out.stdout.strip()


def cache_root() -> Path:
    value = os.environ.get(CACHE_ENV)
    return Path(value).expanduser() if value else DEFAULT_CACHE


def env_dir(spec: EnvironmentSpec, python_version: str, root: Path | None = None) -> Path:
    return (root or cache_root()) / "envs" / f"{spec.name}-{spec.key(python_version)}"


def venv_python(venv: Path) -> Path:
    return venv / "bin" / "python"


def build_commands(spec: EnvironmentSpec, venv: Path, python: str = sys.executable) -> list[list[str]]:
    """venv creation, one pip install under the constraints, and a smoke import."""
    env_python = str(venv_python(venv))
    return [
        [python, "-m", "venv", str(venv)],
        [
            env_python,
            "-m",
            "pip",
            "install",
            "--disable-pip-version-check",
            "--no-input",
            *spec.pip_options,
            "--constraint",
            str(spec.constraints),
            *spec.requirements,
        ],
        [env_python, "-c", SMOKE_IMPORTS],
    ]


def read_marker(venv: Path) -> dict[str, Any] | None:
    """What a finished build recorded, or None when the environment is missing or unfinished."""
    try:
        data = json.loads((venv / MARKER_FILE).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return None
    return data if isinstance(data, dict) and venv_python(venv).exists() else None


def _run(argv: list[str]) -> int:
    return subprocess.run(argv, check=False).returncode


def ensure_inference_env(
    spec: EnvironmentSpec | None = None,
    *,
    root: Path | None = None,
    python: str = sys.executable,
    rebuild: bool = False,
    runner: Runner = _run,
    log: Callable[[str], None] = print,
) -> Path:
    """The Python of the cached environment for `spec` (default environments/inference), built if needed."""
    spec = spec or read_spec()
    version = interpreter_version(python)
    if spec.python_version and spec.python_version != version:
        raise AzureDLError(
            f"{spec.conda_file} pins Python {spec.python_version} but azure-dl runs on Python {version}",
            hint=f"run azure-dl with Python {spec.python_version} to test the deployment's environment, "
            "or serve with --env local",
        )
    venv = env_dir(spec, version, root)
    venv.parent.mkdir(parents=True, exist_ok=True)
    with (venv.parent / f"{venv.name}.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # a second build of the same environment waits for the first
        if not rebuild and read_marker(venv) is not None:
            return venv_python(venv)
        shutil.rmtree(venv, ignore_errors=True)
        log(f"building the {spec.name} environment once into {venv} ({', '.join(spec.requirements)})")
        started = time.monotonic()
        for argv in build_commands(spec, venv, python):
            code = runner(argv)
            if code != 0:
                shutil.rmtree(venv, ignore_errors=True)
                raise AzureDLError(
                    f"building the {spec.name} environment failed (exit {code}): {' '.join(argv[:6])} ...",
                    hint="pip needs the package registry; check the network or proxy, then run the command again",
                )
        seconds = round(time.monotonic() - started, 1)
        marker = {
            "name": spec.name,
            "key": spec.key(version),
            "python": version,
            "requirements": list(spec.requirements),
            "constraints": str(spec.constraints),
            "build_seconds": seconds,
            "built_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        }
        (venv / MARKER_FILE).write_text(json.dumps(marker, indent=2) + "\n", encoding="utf-8")
        log(f"built the {spec.name} environment in {seconds:.0f} s; later calls reuse it")
        return venv_python(venv)
