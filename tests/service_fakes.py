"""Stand-ins for the local workspace service's parts, for unit tests of its pipeline and sweep machinery."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from azure_dl.workspace_service import components
from azure_dl.workspace_service.context import ServiceContext
from azure_dl.workspace_service.store import Store

WS = "/subscriptions/s/resourceGroups/g/providers/Microsoft.MachineLearningServices/workspaces/w"


def service_context(tmp_path: Path) -> ServiceContext:
    return ServiceContext("https://127.0.0.1:1", "s", "g", "w", tmp_path, Store(tmp_path / "state"), "x", b"k")


def component(context: ServiceContext, version: str, inputs: dict[str, Any], outputs: dict[str, Any]) -> str:
    spec = {"type": "command", "command": "python run.py", "inputs": inputs, "outputs": outputs}
    record = {"name": "azureml_anonymous", "version": version, "properties": {"componentSpec": spec}}
    context.store.put(components.KIND, components.key("azureml_anonymous", version), record)
    return f"{WS}/components/azureml_anonymous/versions/{version}"


def literal(value: str) -> dict[str, str]:
    return {"value": value, "job_input_type": "literal"}


class FakeChildren:
    """Children that complete after `polls` status calls, or fail/hang as told; metrics as scripted."""

    def __init__(self, fail: set[str] | None = None, metrics: dict[str, list[float]] | None = None) -> None:
        self.launched: dict[str, dict[str, Any]] = {}
        self.reused: dict[str, str] = {}
        self.cancelled: list[str] = []
        self.calls: dict[str, int] = {}
        self.fail = fail or set()
        self.metrics = metrics or {}
        self.done: dict[str, str] = {}

    def launch(self, name: str, properties: dict[str, Any], *, parent: str) -> None:
        self.launched[name] = properties

    def record_reused(self, name: str, properties: dict[str, Any], *, parent: str, reused_from: str) -> None:
        self.reused[name] = reused_from
        self.done[name] = "Completed"

    def status(self, name: str) -> str:
        if name in self.done:
            return self.done[name]
        self.calls[name] = self.calls.get(name, 0) + 1
        if self.calls[name] < 2:
            return "Running"
        display = self.launched[name]["displayName"]
        self.done[name] = "Failed" if display in self.fail else "Completed"
        return self.done[name]

    def cancel(self, name: str) -> None:
        self.cancelled.append(name)
        self.done[name] = "Canceled"

    def output_uri(self, name: str, output: str) -> str:
        return f"azureml://datastores/workspaceblobstore/paths/azureml/{name}/{output}/"

    def error(self, name: str) -> str | None:
        return "exit code 1" if self.done.get(name) == "Failed" else None

    def metric_history(self, name: str, metric: str) -> list[float]:
        return self.metrics.get(name, [])
