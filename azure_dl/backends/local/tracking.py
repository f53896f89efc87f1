"""Where local runs and the local registry keep MLflow data: one tracking URI for the whole CLI."""

from __future__ import annotations

import os
from pathlib import Path

SQLITE_PREFIX = "sqlite:///"


def sqlite_store(folder: Path) -> str:
    """The SQLite tracking URI of `folder`/mlflow.db (absolute)."""
    return f"{SQLITE_PREFIX}{folder.resolve() / 'mlflow.db'}"


def tracking_uri(cwd: Path | None = None) -> str:
    """The user's MLFLOW_TRACKING_URI made absolute (subprocesses run elsewhere), else sqlite:///<cwd>/mlflow.db."""
    base = (cwd or Path.cwd()).resolve()
    uri = os.environ.get("MLFLOW_TRACKING_URI")
    if not uri:
        return sqlite_store(base)
    if uri.startswith(SQLITE_PREFIX) and not uri[len(SQLITE_PREFIX) :].startswith("/"):
        return f"{SQLITE_PREFIX}{base / uri[len(SQLITE_PREFIX) :]}"
    return uri
