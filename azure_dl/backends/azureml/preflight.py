"""Before a submission: the cluster a job, sweep or pipeline needs is checked, or created / grown, quota first.

`preflight` takes the `ClusterNeeds` the plan yielded. Without `ensure` the cluster must exist with the planned
VM size, the priority asked for, and enough nodes for one job (or trial); with `ensure` a missing cluster is
created and a small one grown to `needs.nodes`, after the quota check on that same node count.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from azure_dl.backends.azureml.compute import check_quota, ensure_compute, get_compute, tier_of
from azure_dl.cluster_needs import ClusterNeeds
from azure_dl.errors import ConfigError, SpecError


def _note(message: str) -> None:
    print(message, file=sys.stderr)


def _print_quota_warnings(warnings: tuple[str, ...]) -> None:
    for warning in warnings:
        _note(f"warning: {warning}")


def preflight(client: Any, needs: ClusterNeeds, *, ensure: bool, source: Path) -> None:
    """Check (or with `ensure`, create or grow) the cluster `needs` names; `source` is the YAML, for messages.

    Raises ConfigError / QuotaError / SpecError naming the cluster and what to do; a serverless job (no
    compute) is only noted, since there is no cluster to check.
    """
    if ensure:
        _ensure_cluster(client, needs, source)
    elif needs.compute:
        _check_cluster(client, needs)
    else:
        _note("the job names no compute cluster (serverless compute): cluster and quota checks skipped")


def _ensure_cluster(client: Any, needs: ClusterNeeds, source: Path) -> None:
    compute_name, vm_size = needs.compute, needs.vm_size
    if not compute_name:
        raise SpecError(
            f"{source} names no compute cluster, so there is none to ensure",
            hint="render the job with a cluster name (--compute NAME), or submit without --ensure-compute",
        )
    if not vm_size:
        raise SpecError(f"ensuring compute cluster {compute_name!r} needs its VM size", hint="pass --vm-size SIZE")
    # The quota is checked on the node count the cluster is grown to: all of them may run at once.
    quota = check_quota(client, vm_size, needs.nodes, low_priority=needs.low_priority)
    _print_quota_warnings(quota.warnings)
    result = ensure_compute(client, compute_name, vm_size, needs.nodes, low_priority=needs.low_priority, only_grow=True)
    cluster = result.compute
    _note(
        f"compute cluster {compute_name}: {result.action} ({cluster.size}, "
        f"{cluster.min_instances}-{cluster.max_instances} nodes)"
    )


def _check_cluster(client: Any, needs: ClusterNeeds) -> None:
    from azure_dl.catalog import lookup_vm_size

    compute_name, vm_size, nodes = str(needs.compute), needs.vm_size, needs.least_nodes
    cluster = get_compute(client, compute_name)
    if cluster is None:
        raise ConfigError(
            f"compute cluster {compute_name!r} does not exist in workspace {client.workspace_name}",
            hint=f"create it with `azure-dl compute ensure {compute_name} --size SIZE --max-nodes N`, "
            "or submit with --ensure-compute",
        )
    if str(getattr(cluster, "type", "")).lower() != "amlcompute":
        _note(f"compute {compute_name!r} is a {cluster.type}, not a cluster: size and quota checks skipped")
        return
    size = str(cluster.size or "")
    if vm_size and size.lower() != vm_size.lower():
        raise ConfigError(
            f"compute cluster {compute_name!r} has VM size {size}, but the job was planned for {vm_size}",
            hint=f"pass --vm-size {size}, or choose another cluster (--compute NAME) for {vm_size}",
        )
    tier = tier_of(getattr(cluster, "tier", None))
    if needs.low_priority and tier != "low_priority":
        # A cluster's tier decides the priority of its nodes; --low-priority cannot change it per job.
        raise ConfigError(
            f"--low-priority was asked for, but compute cluster {compute_name!r} is dedicated: its nodes are "
            "billed at the dedicated price whatever the job says",
            hint="drop --low-priority to run on it as dedicated, or choose (or create, with --ensure-compute) "
            "a low-priority cluster: --compute NAME --low-priority",
        )
    if (cluster.max_instances or 0) < nodes:
        raise ConfigError(
            f"compute cluster {compute_name!r} scales to at most {cluster.max_instances} nodes, "
            f"but the job needs {nodes}",
            hint=f"grow it: azure-dl compute ensure {compute_name} --size {size} --max-nodes {nodes} "
            "(or submit with --ensure-compute)",
        )
    if lookup_vm_size(size) is None:
        _note(f"VM size {size} of cluster {compute_name!r} is not in the catalogue: quota not checked")
        return
    quota = check_quota(client, size, nodes, low_priority=tier == "low_priority")
    _print_quota_warnings(quota.warnings)
