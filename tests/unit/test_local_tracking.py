"""The CLI's one MLflow tracking URI: absolute, whichever folder a subprocess later runs in."""

from __future__ import annotations

from pathlib import Path

import pytest

from azure_dl.backends.local.tracking import sqlite_store, tracking_uri


def test_without_the_variable_the_store_is_mlflow_db_in_the_working_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.chdir(tmp_path)
    assert tracking_uri() == f"sqlite:///{tmp_path.resolve() / 'mlflow.db'}" == sqlite_store(tmp_path)


def test_a_relative_sqlite_uri_is_made_absolute_and_others_pass_unchanged(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "sqlite:///runs/store.db")
    assert tracking_uri(tmp_path) == f"sqlite:///{tmp_path.resolve() / 'runs' / 'store.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "sqlite:////abs/store.db")
    assert tracking_uri(tmp_path) == "sqlite:////abs/store.db"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:5000")
    assert tracking_uri(tmp_path) == "http://127.0.0.1:5000"
