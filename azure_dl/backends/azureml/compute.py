"""AmlCompute clusters (create or update, never a silent resize; delete) and the per-family vCPU quota check.

A job sent to a VM family whose quota is below what it needs queues forever, so quota is checked before a cluster
is created and before a job is submitted to one.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from azure_dl.backends.azureml.client import sdk_errors
from azure_dl.errors import AzureDLError, ConfigError

DEFAULT_IDLE_SECONDS = 1800
QUOTA_DOCS = "https://learn.microsoft.com/azure/machine-learning/how-to-manage-quotas"
_NAME_RE = re.compile(r"^[A-Za-z][A-Za-z0-9-]*$")


class QuotaError(AzureDLError):
    """The subscription's vCPU quota for a VM family (or region) is below what a cluster or job needs."""


@dataclass(frozen=True)
class EnsureResult:
    """What ensure_compute did: 'created', 'updated' or 'unchanged', and the cluster as Azure ML returned it."""

    compute: Any
    action: str


@dataclass(frozen=True)
class QuotaLine:
    """One row of compute.list_usage(), read defensively (the SDK's Usage entity is loosely typed)."""

    name: str
    family_key: str | None  # normalised family, None for the regional totals
    low_priority: bool
    limit: int
    in_use: int
    scope: str  # "family" | "region"

    @property
    def available(self) -> int:
        return max(self.limit - self.in_use, 0)


@dataclass(frozen=True)
class QuotaCheck:
    """The quota lines that decide whether `nodes` x `vm_size` can run, and warnings that do not block."""

    vm_size: str
    family: str
    nodes: int
    vcpus_per_node: int
    low_priority: bool
    family_line: QuotaLine | None
    region_line: QuotaLine | None
    warnings: tuple[str, ...] = field(default=())

    @property
    def needed(self) -> int:
        return self.vcpus_per_node * self.nodes


def family_key(text: str) -> str | None:
    """A comparable key for a VM family in any of Azure's spellings, or None when `text` names no family.

    'standardNCASv3_T4Family', 'StandardNCASv3_T4Family' and 'Standard NCASv3_T4 Family Cluster Dedicated vCPUs'
    all give 'ncasv3t4'.
    """
    flat = re.sub(r"[^a-z0-9]", "", text.lower())
    if "family" not in flat:
        return None
    flat = flat[: flat.index("family")]
    return flat.removeprefix("standard") or None


def _name_texts(usage: Any) -> tuple[str, str]:
    name = getattr(usage, "name", None)
    if isinstance(name, dict):
        value = name.get("value") or ""
        localized = name.get("localized_value") or name.get("localizedValue") or ""
    else:
        value = getattr(name, "value", None) or ""
        localized = getattr(name, "localized_value", None) or ""
    return str(value), str(localized)


def _int_attr(usage: Any, *names: str) -> int | None:
    for name in names:
        value = getattr(usage, name, None)
        if value is not None:
            return int(value)
    return None


def read_usage(usage: Any) -> QuotaLine | None:
    """A QuotaLine for a subscription-level row of list_usage(), None for per-workspace/per-cluster rows."""
    usage_type = str(getattr(usage, "type", None) or "")
    if "workspace" in usage_type.lower():
        return None
    value, localized = _name_texts(usage)
    # azure-ai-ml 1.35's Usage._from_rest_object copies the REST model's as_dict(), which uses wire names:
    # `currentValue` arrives while `current_value` stays None.
    limit = _int_attr(usage, "limit")
    in_use = _int_attr(usage, "current_value", "currentValue") or 0
    if limit is None:
        return None
    every_text = " ".join((value, localized, str(getattr(usage, "id", None) or ""), usage_type)).lower()
    low_priority = "lowpriority" in re.sub(r"[^a-z]", "", every_text)
    key = family_key(value) or family_key(localized) or family_key(str(getattr(usage, "id", None) or ""))
    if key is not None:
        return QuotaLine(localized or value, key, low_priority, limit, in_use, "family")
    if "regional" in every_text or "dedicatedcores" in every_text or "lowprioritycores" in every_text:
        return QuotaLine(localized or value, None, low_priority, limit, in_use, "region")
    return None


def list_quota(ml_client: Any, location: str | None = None) -> list[QuotaLine]:
    """The subscription's Azure ML vCPU quota lines in the workspace's region (or `location`)."""
    with sdk_errors("read the compute quota (compute.list_usage)"):
        usages = list(ml_client.compute.list_usage(location=location))
    return [line for line in (read_usage(usage) for usage in usages) if line is not None]


def _vm_size(name: str) -> Any:
    from azure_dl.catalog import get_vm_size

    return get_vm_size(name)


def _request_hint(family: str, low_priority: bool) -> str:
    kind = "low-priority" if low_priority else "dedicated"
    return (
        f"request more {kind} vCPUs for {family} in Azure ML studio (Quota) or the Azure portal "
        f"(Subscriptions > Usage + quotas, provider Machine Learning) - see {QUOTA_DOCS}; "
        "or choose a VM size in a family with quota, or fewer nodes"
    )


def check_quota(
    ml_client: Any, vm_size: str, nodes: int, location: str | None = None, *, low_priority: bool = False
) -> QuotaCheck:
    """Raise QuotaError when the family (or regional) vCPU limit is below `nodes` x the size's vCPUs.

    Dedicated nodes count against the VM family's quota and the regional dedicated total; low-priority nodes
    against the separate regional low-priority total (and a family low-priority limit where one is set).
    Quota that exists but is in use by other clusters only warns: the job waits instead of queueing forever.
    """
    if nodes < 1:
        raise ConfigError(f"node count must be at least 1, got {nodes}")
    size = _vm_size(vm_size)
    lines = list_quota(ml_client, location)
    wanted = family_key(size.family)
    same_kind = [line for line in lines if line.low_priority is low_priority]
    family_line = next((line for line in same_kind if line.scope == "family" and line.family_key == wanted), None)
    region_line = next((line for line in same_kind if line.scope == "region"), None)
    check = QuotaCheck(size.name, size.family, nodes, size.vcpus, low_priority, family_line, region_line)
    kind = "low-priority" if low_priority else "dedicated"
    where = f"in {location}" if location else "in the workspace's region"
    need = f"{check.needed} vCPUs ({nodes} node{'s' if nodes != 1 else ''} x {size.vcpus} of {size.name})"
    warnings: list[str] = []
    # A negative limit (-1) means "no separate limit at this level" (the REST API's family low-priority rows).
    for line, label in ((family_line, f"family {size.family}"), (region_line, f"regional {kind} total")):
        if line is None or line.limit < 0:
            continue
        if line.limit < check.needed:
            raise QuotaError(
                f"not enough {kind} vCPU quota {where} for {size.name}: the job needs {need}, "
                f"but the {label} ({line.name}) allows {line.limit} ({line.in_use} in use, {line.available} free)",
                hint=_request_hint(size.family, low_priority),
            )
        if line.available < check.needed:
            warnings.append(
                f"{line.in_use} of {line.limit} {kind} vCPUs of the {label} are in use: the job needs {need} "
                "and waits until other nodes scale down"
            )
    if family_line is None and not low_priority:
        warnings.append(
            f"no {kind} quota line for family {size.family} {where} (compute.list_usage): the size may not be "
            "offered there; run `azure-dl compute quota` to see the families"
        )
    return QuotaCheck(
        check.vm_size, check.family, nodes, size.vcpus, low_priority, family_line, region_line, tuple(warnings)
    )


def get_compute(ml_client: Any, name: str) -> Any | None:
    """The compute called `name` in the workspace, or None when there is none."""
    from azure.core.exceptions import ResourceNotFoundError

    found = None
    with sdk_errors(f"read compute {name}"):
        try:
            found = ml_client.compute.get(name)
        except ResourceNotFoundError:
            found = None
    return found


def tier_of(value: Any) -> str:
    """'low_priority' or 'dedicated' for any spelling of an AmlCompute tier (None means dedicated)."""
    flat = re.sub(r"[^a-z]", "", str(value or "dedicated").lower())
    return "low_priority" if flat == "lowpriority" else "dedicated"


def _validate(name: str, max_nodes: int, min_nodes: int, idle_seconds: int) -> None:
    if not _NAME_RE.match(name):
        raise ConfigError(
            f"invalid compute cluster name {name!r}",
            hint="use letters, digits and '-', starting with a letter (e.g. gpu-t4)",
        )
    if max_nodes < 1:
        raise ConfigError(f"--max-nodes must be at least 1, got {max_nodes}")
    if not 0 <= min_nodes <= max_nodes:
        raise ConfigError(
            f"min nodes must be between 0 and max nodes ({max_nodes}), got {min_nodes}",
            hint="keep min nodes at 0 so that an idle cluster costs nothing",
        )
    if idle_seconds < 0:
        raise ConfigError(f"idle time before scale-down must not be negative, got {idle_seconds} s")


def ensure_compute(
    ml_client: Any,
    name: str,
    vm_size: str,
    max_nodes: int,
    *,
    low_priority: bool = False,
    idle_seconds: int = DEFAULT_IDLE_SECONDS,
    min_nodes: int = 0,
    only_grow: bool = False,
) -> EnsureResult:
    """Create the AmlCompute cluster `name`, or update its node counts and idle time; never change its VM size.

    An existing cluster of another VM size or priority is an error (Azure cannot resize a cluster in place, and
    doing it by delete + create would surprise whoever shares it). With `only_grow` (used by submit) an existing
    cluster keeps its settings unless its max nodes is below `max_nodes`.
    """
    _validate(name, max_nodes, min_nodes, idle_seconds)
    from azure.ai.ml.entities import AmlCompute

    tier = "low_priority" if low_priority else "dedicated"
    existing = get_compute(ml_client, name)
    if existing is None:
        cluster = AmlCompute(
            name=name,
            size=vm_size,
            min_instances=min_nodes,
            max_instances=max_nodes,
            idle_time_before_scale_down=idle_seconds,
            tier=tier,
        )
        with sdk_errors(f"create compute cluster {name}"):
            created = ml_client.compute.begin_create_or_update(cluster).result()
        return EnsureResult(created if created is not None else cluster, "created")

    if str(getattr(existing, "type", "")).lower() != "amlcompute":
        raise ConfigError(
            f"compute {name!r} exists but is a {getattr(existing, 'type', 'different kind of compute')}, "
            "not a compute cluster (AmlCompute)",
            hint="choose another cluster name",
        )
    current_size = str(getattr(existing, "size", "") or "")
    if current_size.lower() != vm_size.lower():
        raise ConfigError(
            f"compute cluster {name!r} already exists with VM size {current_size}, not {vm_size}; "
            "azure-dl does not resize an existing cluster",
            hint=f"delete it first (azure-dl compute delete {name}) or choose another cluster name",
        )
    current_tier = tier_of(getattr(existing, "tier", None))
    if current_tier != tier:
        raise ConfigError(
            f"compute cluster {name!r} already exists as {current_tier.replace('_', '-')}, not "
            f"{tier.replace('_', '-')}; the priority of a cluster cannot be changed",
            hint=f"delete it first (azure-dl compute delete {name}) or choose another cluster name",
        )

    old = (existing.min_instances, existing.max_instances, _seconds(existing.idle_time_before_scale_down))
    new = (old[0], max(old[1] or 0, max_nodes), old[2]) if only_grow else (min_nodes, max_nodes, idle_seconds)
    if new == old:
        return EnsureResult(existing, "unchanged")
    with sdk_errors(f"update compute cluster {name}"):
        updated = _update_scale(ml_client, name, *new)
    if updated is None:
        existing.min_instances, existing.max_instances, existing.idle_time_before_scale_down = new
    return EnsureResult(updated if updated is not None else existing, "updated")


def _update_scale(ml_client: Any, name: str, min_nodes: int | None, max_nodes: int, idle: int | None) -> Any:
    """PATCH only the cluster's scale settings (the REST API's Compute_Update) and return the cluster as updated.

    Neither public SDK call changes only that. `compute.begin_create_or_update` on the cluster as read back
    re-derives its network settings and dies in `None.lower()` when `subnet` is null (as Azure answers for a
    cluster without a VNet); `compute.begin_update` PUTs the whole entity again, with
    remoteLoginPortPublicAccess read back as a bool (NotSpecified comes back as Disabled). The REST operations
    behind `ml_client.compute` (azure-ai-ml 1.35: `_operation`) have the PATCH that Azure defines for this.
    """
    from azure.ai.ml._utils.utils import to_iso_duration_format
    from azure.ai.ml.entities import Compute

    operations = getattr(ml_client.compute, "_operation", None)
    if operations is None or not hasattr(operations, "begin_update"):
        raise AzureDLError(
            f"cannot update compute cluster {name}: this azure-ai-ml has no compute update (PATCH) operation",
            hint="install the azure-ai-ml version pinned in requirements/constraints.txt",
        )
    scale: dict[str, Any] = {"maxNodeCount": max_nodes, "minNodeCount": min_nodes or 0}
    if idle:
        # The wire format the SDK itself sends for an idle time (ISO 8601, e.g. PT30M).
        scale["nodeIdleTimeBeforeScaleDown"] = to_iso_duration_format(idle)
    # ClusterUpdateParameters as JSON: the generated model of 1.35.2 recurses on its own flattened `properties`.
    parameters = {"properties": {"properties": {"scaleSettings": scale}}}
    poller = operations.begin_update(
        ml_client.resource_group_name,
        ml_client.workspace_name,
        name,
        parameters,
        cls=lambda _response, deserialized, _headers: Compute._from_rest_object(deserialized),
    )
    return poller.result()


def _seconds(value: Any) -> int | None:
    return int(value) if value is not None else None


def delete_compute(ml_client: Any, name: str) -> None:
    """Delete the compute `name` and wait until Azure ML reports it gone."""
    from azure.core.exceptions import ResourceNotFoundError

    with sdk_errors(f"delete compute {name}"):
        try:
            ml_client.compute.begin_delete(name).result()
        except ResourceNotFoundError:
            raise AzureDLError(
                f"there is no compute named {name!r} in the workspace", hint="list them in Azure ML studio (Compute)"
            ) from None
