"""The cached inference environment, offline: spec parsing, cache key, build commands, reuse and rebuilds."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from azure_dl.backends.local import inference_env
from azure_dl.errors import AzureDLError

PY = f"{sys.version_info.major}.{sys.version_info.minor}"
CONDA = f"""name: azure-dl-inference
dependencies:
  - python={PY}
  - pip
  - pip:
      - --index-url https://example.invalid/simple
      - onnxruntime==1.32.0
      - pillow==13.0.0
"""


@pytest.fixture
def spec(tmp_path: Path) -> inference_env.EnvironmentSpec:
    folder = tmp_path / "environments" / "inference"
    folder.mkdir(parents=True)
    (folder / "conda.yml").write_text(CONDA)
    constraints = tmp_path / "constraints.txt"
    constraints.write_text("onnxruntime==1.32.0\npillow==13.0.0\nnumpy==2.4.6\n")
    return inference_env.read_spec(folder, constraints)


def test_the_repos_inference_environment_has_no_torch() -> None:
    spec = inference_env.read_spec()
    names = {requirement.split("==")[0].lower() for requirement in spec.requirements}
    assert {"onnxruntime", "azureml-inference-server-http", "numpy", "pillow"} <= names
    assert "torch" not in names and spec.name == "inference"
    assert all("==" in requirement for requirement in spec.requirements)


def test_read_spec_separates_pip_options_from_requirements(spec: inference_env.EnvironmentSpec) -> None:
    assert spec.python_version == PY
    assert spec.requirements == ("onnxruntime==1.32.0", "pillow==13.0.0")
    assert spec.pip_options == ("--index-url", "https://example.invalid/simple")


def test_the_key_changes_with_the_conda_file_the_constraints_and_python(spec: inference_env.EnvironmentSpec) -> None:
    key = spec.key(PY)
    assert key == spec.key(PY) and len(key) == 16
    assert spec.key("3.12") != key
    spec.constraints.write_text(spec.constraints.read_text() + "six==1.17.0\n")
    after_constraints = spec.key(PY)
    assert after_constraints != key
    spec.conda_file.write_text(CONDA.replace("13.0.0", "12.0.0"))
    assert spec.key(PY) not in (key, after_constraints)


def test_build_commands_install_under_the_constraints(spec: inference_env.EnvironmentSpec, tmp_path: Path) -> None:
    venv = tmp_path / "venv"
    create, install, smoke = inference_env.build_commands(spec, venv, python="/usr/bin/python3.11")
    assert create == ["/usr/bin/python3.11", "-m", "venv", str(venv)]
    assert install[:4] == [str(venv / "bin" / "python"), "-m", "pip", "install"]
    assert install[install.index("--constraint") + 1] == str(spec.constraints)
    assert install[-2:] == ["onnxruntime==1.32.0", "pillow==13.0.0"]
    assert install[install.index("--index-url") + 1] == "https://example.invalid/simple"
    assert smoke[0] == str(venv / "bin" / "python") and "onnxruntime" in smoke[2]


class FakeRunner:
    """Records commands; creates the venv's python when `python -m venv` runs; can fail one step."""

    def __init__(self, fail_at: int | None = None) -> None:
        self.calls: list[list[str]] = []
        self.fail_at = fail_at

    def __call__(self, argv: list[str]) -> int:
        self.calls.append(argv)
        if self.fail_at is not None and len(self.calls) - 1 == self.fail_at:
            return 1
        if argv[1:3] == ["-m", "venv"]:
            python = Path(argv[3]) / "bin" / "python"
            python.parent.mkdir(parents=True)
            python.write_text("")
        return 0


def test_built_once_then_reused_and_rebuilt_on_request(spec: inference_env.EnvironmentSpec, tmp_path: Path) -> None:
    runner = FakeRunner()
    python = inference_env.ensure_inference_env(spec, root=tmp_path / "cache", runner=runner, log=lambda _m: None)
    venv = tmp_path / "cache" / "envs" / f"inference-{spec.key(PY)}"
    assert python == venv / "bin" / "python"
    assert len(runner.calls) == 3
    marker = inference_env.read_marker(venv)
    assert marker is not None and marker["requirements"] == list(spec.requirements)
    inference_env.ensure_inference_env(spec, root=tmp_path / "cache", runner=runner, log=lambda _m: None)
    assert len(runner.calls) == 3  # reused
    inference_env.ensure_inference_env(spec, root=tmp_path / "cache", runner=runner, rebuild=True, log=print)
    assert len(runner.calls) == 6


def test_an_unfinished_environment_is_rebuilt(spec: inference_env.EnvironmentSpec, tmp_path: Path) -> None:
    venv = inference_env.env_dir(spec, PY, tmp_path)
    (venv / "bin").mkdir(parents=True)
    (venv / "bin" / "python").write_text("")  # no marker: an interrupted build
    runner = FakeRunner()
    inference_env.ensure_inference_env(spec, root=tmp_path, runner=runner, log=lambda _m: None)
    assert len(runner.calls) == 3 and inference_env.read_marker(venv) is not None


def test_a_failed_build_leaves_nothing_and_says_what_to_do(spec: inference_env.EnvironmentSpec, tmp_path: Path) -> None:
    with pytest.raises(AzureDLError, match="building the inference environment failed") as error:
        inference_env.ensure_inference_env(spec, root=tmp_path, runner=FakeRunner(fail_at=1), log=lambda _m: None)
    assert "package registry" in str(error.value)
    assert not inference_env.env_dir(spec, PY, tmp_path).exists()


def test_a_python_other_than_the_pinned_one_is_refused(spec: inference_env.EnvironmentSpec, tmp_path: Path) -> None:
    spec.conda_file.write_text(CONDA.replace(f"python={PY}", "python=3.9"))
    other = inference_env.read_spec(spec.conda_file.parent, spec.constraints)
    with pytest.raises(AzureDLError, match=r"pins Python 3\.9"):
        inference_env.ensure_inference_env(other, root=tmp_path, runner=FakeRunner(), log=lambda _m: None)


def test_the_cache_root_follows_azure_dl_cache(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("AZURE_DL_CACHE", str(tmp_path))
    assert inference_env.cache_root() == tmp_path
    monkeypatch.delenv("AZURE_DL_CACHE")
    assert inference_env.cache_root() == Path.home() / ".cache" / "azure-dl"
