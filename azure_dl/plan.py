"""The plan printed before anything costs money: what runs where, on how many GPUs, and the most it can cost.

The cost bound is list price x nodes x hours, where the hours are the job's time limit (Azure ML cancels the job
then), so it is a true upper bound for the VMs. For a sweep it is the smaller of "every trial runs to its limit"
and "every concurrent slot is busy until the sweep's timeout". An unknown price gives an unknown bound, never 0.
"""

from __future__ import annotations

from dataclasses import dataclass

from azure_dl.spec import JobSpec, SweepSpec

UNKNOWN_PRICE_HINT = "run `azure-dl catalog refresh --region REGION` to fetch list prices"


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

    def rows(self) -> list[tuple[str, str]]:
        price = (
            f"{self.price_per_hour:.4f} USD per VM-hour ({self.price_source})"
            if self.price_per_hour is not None
            else f"unknown ({UNKNOWN_PRICE_HINT})"
        )
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
        return [
            ("job", f"{self.kind} {self.name} (experiment {self.experiment})"),
            ("compute", self.compute),
            ("VM size", f"{self.vm_size} ({self.vm_summary})"),
            ("GPUs", self.gpus),
            ("processes", self.processes),
            ("time limit", _hours(self.hours) + (" per trial" if self.kind == "sweep job" else "")),
            ("price", price),
            ("cost bound", bound),
            ("priority", priority),
        ]


def _hours(hours: float) -> str:
    return f"{hours:g} h"


def _plan(spec: JobSpec, *, kind: str, node_hours: float, formula: str) -> CostPlan:
    vm = spec.vm
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
        price_per_hour=vm.price_per_hour,
        price_source=vm.price_source,
        cost_bound=None if vm.price_per_hour is None else vm.price_per_hour * node_hours,
        low_priority=spec.low_priority,
        bound_formula=f"{_price_text(spec)} x {nodes} node(s) x {formula}",
    )


def plan_job(spec: JobSpec) -> CostPlan:
    node_hours = spec.instance_count * spec.max_hours
    return _plan(spec, kind="command job", node_hours=node_hours, formula=_hours(spec.max_hours))


def plan_sweep(sweep: SweepSpec) -> CostPlan:
    trial = sweep.trial
    all_trials = sweep.max_total_trials * trial.max_hours
    busy_slots = sweep.max_concurrent_trials * sweep.effective_timeout_hours
    if all_trials <= busy_slots:
        formula = f"{sweep.max_total_trials} trials x {_hours(trial.max_hours)}"
    else:
        formula = f"{sweep.max_concurrent_trials} concurrent x {_hours(sweep.effective_timeout_hours)} sweep timeout"
    node_hours = trial.instance_count * min(all_trials, busy_slots)
    return _plan(trial, kind="sweep job", node_hours=node_hours, formula=formula)


def _price_text(spec: JobSpec) -> str:
    price = spec.vm.price_per_hour
    return f"{price:.4f}" if price is not None else "price"


def print_plan(plan: CostPlan) -> None:
    from azure_dl.console import print_key_values

    print_key_values("Plan (nothing has been created or billed yet)", plan.rows())
