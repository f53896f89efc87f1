"""The pipeline's plan: per step, its compute, VM size (a cluster azure-dl named after its size), time limit and
cost bound = list price in the plan's region x time limit; unknown (never 0) where a price or size is unknown."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from azure_dl.cluster_needs import ClusterNeeds
from azure_dl.pipeline_spec import PipelineSpec, Step


@dataclass(frozen=True)
class StepPlan:
    """One step of the plan: where it runs and the most it can cost (None = unknown)."""

    step: str
    component: str
    compute: str
    vm_size: str | None
    vm_summary: str
    hours: float | None
    price_per_hour: float | None
    cost_bound: float | None


@dataclass(frozen=True)
class PipelinePlan:
    name: str
    experiment: str
    steps: tuple[StepPlan, ...]
    registers: tuple[str, ...]
    region: str = "eastus"
    price_sources: tuple[str, ...] = ()  # where the steps' prices come from, with their dates

    @property
    def cost_bound(self) -> float | None:
        bounds = [step.cost_bound for step in self.steps]
        return None if any(b is None for b in bounds) else sum(b for b in bounds if b is not None)

    @property
    def needs(self) -> tuple[ClusterNeeds, ...]:
        """One entry per cluster the steps use: a pipeline step runs on 1 dedicated node."""
        sizes: dict[str, str | None] = {}
        for step in self.steps:
            sizes[step.compute] = step.vm_size
        return tuple(ClusterNeeds(compute, vm_size, nodes=1, low_priority=False) for compute, vm_size in sizes.items())


def _vm_for_compute(compute: str) -> Any:
    """The catalogue size a cluster is named after (azure-dl names one cluster per size), or None."""
    from azure_dl.catalog import list_vm_sizes

    return next((size for size in list_vm_sizes() if size.compute_name == compute), None)


def _timeout_hours(step: Step) -> float | None:
    timeout = (step.raw.get("limits") or {}).get("timeout")
    return float(timeout) / 3600 if isinstance(timeout, int | float) else None


def plan_pipeline(spec: PipelineSpec, *, region: str = "eastus") -> PipelinePlan:
    """Per step: compute, VM size from the catalogue, time limit and cost bound = list price in `region` x limit."""
    steps = []
    sources: set[str] = set()
    for step in spec.steps.values():
        compute = spec.compute_of(step) or "default compute"
        vm = _vm_for_compute(compute.removeprefix("azureml:"))
        hours = _timeout_hours(step)
        quote = vm.price_in(region) if vm is not None else None
        price = quote.per_hour if quote is not None else None
        if quote is not None:
            sources.add(quote.source)
        summary = f"{vm.gpu_summary}, {vm.vcpus} vCPUs" if vm is not None else "unknown (not a catalogue-named cluster)"
        steps.append(
            StepPlan(
                step=step.name,
                component=str(step.component.raw.get("display_name") or step.component.name),
                compute=compute,
                vm_size=vm.name if vm is not None else None,
                vm_summary=summary,
                hours=hours,
                price_per_hour=price,
                cost_bound=price * hours if price is not None and hours is not None else None,
            )
        )
    registers = tuple(o.model_name for o in spec.outputs.values() if o.type == "custom_model" and o.model_name)
    experiment = str(spec.raw.get("experiment_name") or spec.name)
    return PipelinePlan(spec.name, experiment, tuple(steps), registers, region, tuple(sorted(sources)))


def plan_rows(plan: PipelinePlan) -> list[list[str]]:
    def money(value: float | None) -> str:
        return f"{value:.2f} USD" if value is not None else "unknown"

    rows = []
    for step in plan.steps:
        price = f"{step.price_per_hour:.4f}/h" if step.price_per_hour is not None else "unknown"
        hours = f"{step.hours:g} h" if step.hours is not None else "no limit"
        size = f"{step.vm_size} ({step.vm_summary})" if step.vm_size else step.vm_summary
        rows.append([step.step, step.component, step.compute, size, hours, price, money(step.cost_bound)])
    rows.append(["total", "", "", "", "", "", money(plan.cost_bound)])
    return rows


PLAN_COLUMNS = ("step", "component", "compute", "VM size", "time limit", "price (USD)", "cost bound")
