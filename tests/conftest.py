"""Shared test fixtures: an isolated MLflow store per test, reset RNGs, and markers that skip themselves."""

from __future__ import annotations

import os
import random
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]

# Two cores run the suite (and its training subprocesses): one intra-op thread per process avoids
# oversubscription, which made small models about 10x slower. Set before torch is first imported.
os.environ.setdefault("OMP_NUM_THREADS", "1")
# azure-ai-ml's jobs.stream() sleeps between status reads on a curve that grows from 2 s to 60 s (bounded by its
# AZUREML_RUN_POLLING_INTERVAL_MIN/MAX environment variables, read once at import): a job of the local service that
# ends at 50 s was noticed up to 6 s late. One second apart changes no answer, only how soon a test sees it.
os.environ.setdefault("AZUREML_RUN_POLLING_INTERVAL_MIN", "1")
os.environ.setdefault("AZUREML_RUN_POLLING_INTERVAL_MAX", "1")

# Tiny datasets and models trained once per session by the real scripts (tests/trained.py).
pytest_plugins = ["tests.trained"]


@pytest.fixture(autouse=True)
def mlflow_store(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """Every test gets its own SQLite tracking store; subprocesses inherit it through the environment."""
    store = tmp_path_factory.mktemp("mlflow") / "mlflow.db"
    uri = f"sqlite:///{store}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.setenv("MLFLOW_REGISTRY_URI", uri)
    monkeypatch.delenv("MLFLOW_RUN_ID", raising=False)
    monkeypatch.delenv("MLFLOW_EXPERIMENT_NAME", raising=False)
    # Never let a test talk to a real workspace by accident.
    for name in ("AZURE_SUBSCRIPTION_ID", "AZURE_RESOURCE_GROUP", "AZUREML_WORKSPACE_NAME"):
        monkeypatch.delenv(name, raising=False)
    yield uri
    mlflow = sys.modules.get("mlflow")
    if mlflow is not None:
        leaked = mlflow.active_run()
        while mlflow.active_run() is not None:
            mlflow.end_run()
        assert leaked is None, f"test leaked an active MLflow run: {leaked.info.run_id}"


@pytest.fixture(autouse=True)
def reset_rng() -> None:
    """Same random state at the start of every test (torch only when a test already imported it)."""
    random.seed(0)
    numpy = sys.modules.get("numpy")
    if numpy is not None:
        numpy.random.seed(0)
    torch = sys.modules.get("torch")
    if torch is not None:
        torch.manual_seed(0)


def _cuda_available() -> bool:
    try:
        import torch
    except ImportError:
        return False
    return bool(torch.cuda.is_available())


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    gpu_items = [item for item in items if "gpu" in item.keywords]
    if gpu_items and not _cuda_available():
        skip_gpu = pytest.mark.skip(reason="needs CUDA")
        for item in gpu_items:
            item.add_marker(skip_gpu)
    if not os.environ.get("AZURE_DL_TEST_WORKSPACE"):
        skip_azure = pytest.mark.skip(reason="needs a real Azure ML workspace (set AZURE_DL_TEST_WORKSPACE)")
        for item in items:
            if "azure" in item.keywords:
                item.add_marker(skip_azure)
