"""A finished sweep, reported: every trial's status and primary-metric value, and the best trial named.

`sweep --stream` prints this when the sweep ends. The trials are the sweep's child jobs and the values their final
MLflow metric (`models.sweep_info`); the best is picked the way `register --sweep` picks it
(`model_source.pick_best_trial`), so what the report names is what registration would take.
"""

from __future__ import annotations

from typing import Any

from azure_dl.backends.azureml.models import MetricReader, sweep_info
from azure_dl.console import note, print_table
from azure_dl.errors import AzureDLError
from azure_dl.model_source import Trial, pick_best_trial


def report_sweep(ml_client: Any, sweep_name: str, read_metric: MetricReader | None = None) -> str | None:
    """Print the trial table and the best trial; return the best trial's name (None when no trial scored)."""
    info = sweep_info(ml_client, sweep_name, read_metric)
    trials = [Trial(t.name, t.status, t.value) for t in info.trials]
    try:
        best: Trial | None = pick_best_trial(trials, info.primary_metric, info.goal, sweep=f"sweep {sweep_name}")
    except AzureDLError as exc:
        note(f"note: {exc.message}")
        best = None
    rows = [
        [
            ("* " if best is not None and trial.name == best.name else "") + trial.name,
            trial.status,
            f"{trial.value:.4f}" if trial.value is not None else "-",
        ]
        for trial in sorted(trials, key=lambda trial: trial.name)
    ]
    print_table(
        f"Sweep {sweep_name} ({info.goal} {info.primary_metric})", ["trial", "status", info.primary_metric], rows
    )
    if best is None:
        return None
    print(f"best trial: {best.name} {info.primary_metric}={best.value:.4f}")
    print(f"register it: azure-dl register --sweep {sweep_name} --name NAME")
    return best.name
