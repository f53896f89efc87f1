"""What a job, sweep or pipeline step asks of its compute cluster, as data the plans yield and preflight takes.

`plan.plan_job`, `plan.plan_sweep` and `pipeline_plan.plan_pipeline` compute these from the validated specs; the
Azure backend's `preflight` checks (or, with --ensure-compute, creates or grows) the cluster against them before
anything is submitted, so the numbers are decided once, here, not re-derived beside the YAML.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ClusterNeeds:
    """One cluster's needs. `compute` None means serverless; `vm_size` None means unknown (not checked).

    `nodes` is how many nodes must run at once: the size the cluster is grown to and the quota checked on (a
    sweep: nodes per trial x concurrent trials). `job_nodes` is what one job or trial needs at the least, which an
    existing cluster must reach (more concurrent trials than fit simply queue); None means `nodes`.
    """

    compute: str | None
    vm_size: str | None
    nodes: int = 1
    low_priority: bool = False
    job_nodes: int | None = None

    @property
    def least_nodes(self) -> int:
        """The nodes an existing cluster must scale to for one job (or trial) to run."""
        return self.job_nodes if self.job_nodes is not None else self.nodes
