"""What a parent job (pipeline, sweep) needs from the command-job machinery to run its children.

Pipelines and sweeps run their steps and trials as ordinary command jobs, child jobs of the parent (Azure ML lists
them with `jobs.list(parent_job_name=PARENT)`). The parent runners (`pipeline_runner.py`, `sweep_runner.py`) talk
to the command-job machinery only through this protocol, so they are tested with a fake and the real one can
change underneath them.
"""

from __future__ import annotations

from typing import Any, Protocol

TERMINAL = ("Completed", "Failed", "Canceled", "NotResponding", "Paused")


class ChildJobs(Protocol):
    def launch(self, name: str, properties: dict[str, Any], *, parent: str) -> None:
        """Create command job `name` (REST `properties`, jobType Command) as a child of `parent`, and queue it."""

    def record_reused(self, name: str, properties: dict[str, Any], *, parent: str, reused_from: str) -> None:
        """Create child `name` as Completed without running it: it reuses the outputs of job `reused_from`."""

    def status(self, name: str) -> str:
        """The child's status, one of Azure ML's (NotStarted ... Completed, Failed, Canceled)."""

    def cancel(self, name: str) -> None:
        """Stop the child (its process group) and mark it Canceled."""

    def output_uri(self, name: str, output: str) -> str:
        """The azureml:// URI where the child's named output is (the uri_folder later steps read)."""

    def error(self, name: str) -> str | None:
        """The failed child's error message, None when it has none."""

    def metric_history(self, name: str, metric: str) -> list[float]:
        """The values the child logged for `metric`, in order (empty when none, or no tracking)."""
