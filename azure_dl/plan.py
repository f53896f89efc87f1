"""The plan printed before anything costs money: what runs where, on how many GPUs, and the most it can cost.

The cost bound is list price x nodes x hours, where the hours are the job's time limit (Azure ML cancels the job
then), so it is a true upper bound for the VMs. For a sweep it is the smaller of "every trial runs to its limit"
and "every concurrent slot is busy until the sweep's timeout". An unknown price gives an unknown bound, never 0.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from azure_dl.catalog import DEFAULT_REGION, LOW_PRIORITY_NOTE
from azure_dl.cluster_needs import ClusterNeeds
from azure_dl.spec import JobSpec
from azure_dl.sweep_spec import SweepSpec

UNKNOWN_PRICE_HINT = "run `azure-dl catalog refresh --region REGION` to fetch list prices"


@dataclass(frozen=True)
class Upload:
    """A local file or folder that submitting uploads (the code snapshot, local inputs), with its size."""

    name: str
    path: Path
    size_bytes: int


def tree_size(path: Path) -> int:
    """Bytes under `path` (a file's own size); symlinks are not followed, as the upload does not follow them."""
    if path.is_file():
        return path.stat().st_size
    total = 0
    for root, _, files in os.walk(path):
        for name in files:
            file = Path(root) / name
            if not file.is_symlink():
                total += file.stat().st_size
    return total


def job_uploads(spec: JobSpec) -> tuple[Upload, ...]:
    """What submitting `spec` uploads: its code folder and each local input."""
    items = [("code", spec.code)] + [(name, Path(entry.value)) for name, entry in spec.inputs.items() if entry.is_local]
    return uploads_of(items)


def uploads_of(items: Iterable[tuple[str, Path]]) -> tuple[Upload, ...]:
    return tuple(Upload(name, path, tree_size(path)) for name, path in items)


def human_size(size: int) -> str:
    value = float(size)
    for unit in ("B", "KB", "MB", "GB"):
        if value < 1024 or unit == "GB":
            break
        value /= 1024
    return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"


def uploads_text(uploads: Iterable[Upload]) -> str:
    items = list(uploads)
    if not items:
        return "nothing (every input is already in Azure)"
    parts = ", ".join(f"{item.name} {human_size(item.size_bytes)}" for item in items)
    return f"{parts}; total {human_size(sum(item.size_bytes for item in items))}"


@dataclass(frozen=True)
class CostPlan:
    kind: str  # "command job" or "sweep job"
    name: str
    experiment: str
    compute: str
    vm_size: str
    vm_summary: str
    gpus: str
    processes: str
    nodes: int
    hours: float  # the time limit each node is bounded by (per trial for sweeps)
    node_hours: float  # the most VM-hours the whole plan can bill
    price_per_hour: float | None
    price_source: str
    cost_bound: float | None
    low_priority: bool
    bound_formula: str
    needs: ClusterNeeds  # what the submission's preflight checks or ensures
    region: str = DEFAULT_REGION
    low_priority_estimate: float | None = None
    uploads: tuple[Upload, ...] = ()
    profile: str | None = None  # a preset's profile (scenario/local); None for a user's script
    settings: tuple[str, ...] = ()  # the script flags in effect

    def rows(self) -> list[tuple[str, str]]:
        if self.price_per_hour is not None:
            price = f"{self.price_per_hour:.4f} USD per VM-hour in {self.region} ({self.price_source})"
        else:
            price = f"unknown in {self.region} ({UNKNOWN_PRICE_HINT})"
        if self.low_priority and self.low_priority_estimate is not None:
            price += f"; low priority about {self.low_priority_estimate:.4f} USD/h ({LOW_PRIORITY_NOTE})"
        bound = (
            f"{self.cost_bound:.2f} USD = {self.bound_formula}"
            if self.cost_bound is not None
            else f"unknown (price unknown; bound = {self.bound_formula})"
        )
        if not self.low_priority:
            priority = "dedicated"
        elif self.compute.startswith("cluster"):
            priority = (
                "low priority, as the cluster's tier (created by --ensure-compute --low-priority or "
                "`azure-dl compute ensure NAME --low-priority`): preemptible, billed below this list price; "
                "the job resumes from its checkpoints output"
            )
        else:
            priority = "low priority (spot tier): preemptible, billed below this list price; resumes from checkpoints"
        rows = [
            ("job", f"{self.kind} {self.name} (experiment {self.experiment})"),
            ("compute", self.compute),
            ("VM size", f"{self.vm_size} ({self.vm_summary})"),
            ("GPUs", self.gpus),
            ("processes", self.processes),
            ("time limit", _hours(self.hours) + (" per trial" if self.kind == "sweep job" else "")),
            ("price", price),
            ("cost bound", bound),
            ("priority", priority),
            ("uploads", uploads_text(self.uploads)),
        ]
        if self.profile:
            rows.insert(1, ("profile", f"{self.profile}: {' '.join(self.settings)}"))
        return rows


def _hours(hours: float) -> str:
    return f"{hours:g} h"


def _plan(spec: JobSpec, *, kind: str, node_hours: float, formula: str, region: str, concurrent: int = 1) -> CostPlan:
    vm = spec.vm
    quote = vm.price_in(region)
    price = quote.per_hour if quote is not None else None
    nodes = spec.instance_count
    node_word = "node" if nodes == 1 else "nodes"
    if vm.is_gpu:
        gpus = f"{vm.gpu_model} ({vm.gpu_memory_gb} GB) x {vm.gpu_count} per node x {nodes} {node_word}"
        gpus += f" = {vm.gpu_count * nodes} GPU(s)"
    else:
        gpus = f"none (CPU size) x {nodes} {node_word}"
    if spec.is_distributed:
        processes = f"{spec.processes_per_node} per node, world size {spec.world_size} (PyTorch distribution)"
    else:
        processes = "1 (not distributed)"
    return CostPlan(
        kind=kind,
        name=spec.display_name,
        experiment=spec.experiment,
        compute=f"cluster {spec.compute}" if spec.compute else f"serverless ({spec.vm_size} per job)",
        vm_size=vm.name,
        vm_summary=f"{vm.series or 'series unknown'}, {vm.vcpus} vCPUs, {vm.ram_gb:g} GB RAM",
        gpus=gpus,
        processes=processes,
        nodes=nodes,
        hours=spec.max_hours,
        node_hours=node_hours,
        price_per_hour=price,
        price_source=quote.source if quote is not None else "",
        # The bound uses the list price even for low priority: Azure ML's low-priority rate is not published
        # per size, and a bound must not be an estimate.
        cost_bound=None if price is None else price * node_hours,
        low_priority=spec.low_priority,
        bound_formula=f"{f'{price:.4f}' if price is not None else 'price'} x {nodes} node(s) x {formula}",
        region=region,
        low_priority_estimate=quote.low_priority_estimate if quote is not None else None,
        uploads=job_uploads(spec),
        profile=spec.tags.get("profile"),
        settings=spec.args,
        # Concurrent trials each need their nodes at once: that is the cluster size to ensure and the quota to check.
        needs=ClusterNeeds(
            compute=spec.compute,
            vm_size=spec.vm_size,
            nodes=nodes * concurrent,
            low_priority=spec.low_priority,
            job_nodes=nodes,
        ),
    )


def plan_job(spec: JobSpec, *, region: str = DEFAULT_REGION) -> CostPlan:
    node_hours = spec.instance_count * spec.max_hours
    return _plan(spec, kind="command job", node_hours=node_hours, formula=_hours(spec.max_hours), region=region)


def plan_sweep(sweep: SweepSpec, *, region: str = DEFAULT_REGION) -> CostPlan:
    trial = sweep.trial
    all_trials = sweep.max_total_trials * trial.max_hours
    busy_slots = sweep.max_concurrent_trials * sweep.effective_timeout_hours
    if all_trials <= busy_slots:
        formula = f"{sweep.max_total_trials} trials x {_hours(trial.max_hours)}"
    else:
        formula = f"{sweep.max_concurrent_trials} concurrent x {_hours(sweep.effective_timeout_hours)} sweep timeout"
    node_hours = trial.instance_count * min(all_trials, busy_slots)
    return _plan(
        trial,
        kind="sweep job",
        node_hours=node_hours,
        formula=formula,
        region=region,
        concurrent=sweep.max_concurrent_trials,
    )


def print_plan(plan: CostPlan) -> None:
    from azure_dl.console import print_key_values

    print_key_values("Plan (nothing has been created or billed yet)", plan.rows())
