"""Check the `azureml:NAME:VERSION` / `azureml:NAME@latest` data inputs of a loaded job with a GET before submitting.

The SDK turns such a reference into an ARM id without asking the workspace, so a missing asset (a typo, a
version never registered) would fail only at the job PUT, after the code snapshot was uploaded and the cluster
checked or grown. This asks for each referenced asset first, and names the input and what to do when it is missing.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from azure_dl.backends.azureml.client import sdk_errors
from azure_dl.errors import AzureDLError

# spec.ASSET_REF's shape; load_job strips the `azureml:` prefix of an input path (it keeps `NAME:VERSION`).
ASSET_PATH = re.compile(
    r"^(?:azureml:)?(?P<name>[A-Za-z0-9][A-Za-z0-9_.-]{0,254})(?::(?P<version>[A-Za-z0-9_.-]+)|@latest)$"
)


def _path_of(value: Any) -> str | None:
    # A command/sweep job's inputs are Input objects; a pipeline's (and its steps') wrap one in `_data`, and
    # their `path` property raises (an SDK ValidationException) when the input is a literal such as 0.01.
    for candidate in (value, getattr(value, "_data", None)):
        if isinstance(candidate, str):
            return candidate
        if candidate is None or isinstance(candidate, (int, float, bool)):
            continue
        try:
            path = candidate.path
        except Exception:  # any SDK refusal means "no path here"
            continue
        if isinstance(path, str):
            return path
    return None


def _inputs_of(job: Any, where: str) -> Iterator[tuple[str, str]]:
    inputs = getattr(job, "inputs", None)
    if isinstance(inputs, dict):
        for name, value in inputs.items():
            path = _path_of(value)
            if path is not None:
                yield f"{where}inputs.{name}", path
    for step_name, step in (getattr(job, "jobs", None) or {}).items():  # pipeline steps
        yield from _inputs_of(step, f"{where}jobs.{step_name}.")


def asset_references(job: Any) -> list[tuple[str, str, str | None]]:
    """(where, name, version or None for @latest) of each data asset reference among the job's inputs."""
    found = []
    for where, path in _inputs_of(job, ""):
        match = ASSET_PATH.match(path)
        if match is not None and not Path(path).exists():  # a local file called `a:1` stays a local file
            found.append((where, match.group("name"), match.group("version")))
    return found


def check_data_assets(ml_client: Any, job: Any) -> None:
    """Raise an AzureDLError naming the input when a data asset the job references does not exist."""
    from azure.ai.ml.exceptions import MlException
    from azure.core.exceptions import ResourceNotFoundError

    workspace = getattr(ml_client, "workspace_name", None) or "the workspace"
    for where, name, version in asset_references(job):
        shown = f"{name}:{version}" if version else f"{name}@latest"
        try:
            with sdk_errors(f"read data asset {shown} ({where})"):
                try:
                    if version:
                        ml_client.data.get(name, version=version)
                    else:
                        ml_client.data.get(name, label="latest")
                except (ResourceNotFoundError, MlException) as exc:
                    # @latest of a missing asset comes back as the SDK's own MlException raised from the 404.
                    if _not_found(exc):
                        raise _MissingAsset from None
                    raise
        except _MissingAsset:
            raise AzureDLError(
                f"data asset {shown} (input {where}) does not exist in workspace {workspace}",
                hint=f"list its versions with `az ml data list --name {name}`, or create it first: "
                f"`az ml data create --name {name}{f' --version {version}' if version else ''} --path PATH "
                "--type uri_folder` (or ml_client.data.create_or_update); a local path also works as the input",
            ) from None


def _not_found(exc: BaseException) -> bool:
    from azure.core.exceptions import ResourceNotFoundError

    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        if isinstance(current, ResourceNotFoundError):
            return True
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return False


class _MissingAsset(Exception):
    """Internal: the asset is not there (kept apart from other SDK errors, which sdk_errors reports)."""
