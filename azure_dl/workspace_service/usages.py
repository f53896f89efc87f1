"""vCPU quota and usage per VM family (`compute.list_usage()`) and the VM sizes (`compute.list_sizes()`).

`GET /subscriptions/{s}/providers/Microsoft.MachineLearningServices/locations/{l}/usages` answers, per catalogued
VM family, a dedicated and a low-priority row, plus the regional dedicated and low-priority totals, in the
spellings Azure ML uses ("Standard DSv2 Family Cluster Dedicated vCPUs", "Total Cluster Dedicated Regional
vCPUs"). The limits come from DIR/quota.toml, read on every request so a test or a user can change them while the
service runs; the usage is what Azure counts, the cores of allocated nodes: each cluster's allocated nodes
(`computes.allocated_nodes`, its minNodeCount) x the size's vCPUs. `.../vmSizes` lists azure-dl's catalogue.

DIR/quota.toml (every key optional; absent file = the defaults)::

    [dedicated]
    family_vcpus = 100        # each catalogued family not named below (default 100)
    regional_vcpus = 1500     # "Total Cluster Dedicated Regional vCPUs" (default: the sum of the family limits)
    [dedicated.families]
    standardNCASv3_T4Family = 0   # a family as the catalogue or Azure spells it (case, spaces, "Standard" ignored)

    [low_priority]
    family_vcpus = -1         # -1 = no separate family limit, as Azure reports it (default -1)
    regional_vcpus = 1500     # "Total Cluster Low Priority Regional vCPUs" (default: the dedicated regional total)
    [low_priority.families]
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass
from typing import Any

from azure_dl.catalog import VMSize, list_vm_sizes, lookup_vm_size
from azure_dl.workspace_service import computes
from azure_dl.workspace_service.context import LOCATION, PROVIDER, ServiceContext
from azure_dl.workspace_service.http import ApiError, Request, Response, Router, json_response, not_found
from azure_dl.workspace_service.identity import authenticated

QUOTA_FILE = "quota.toml"
DEFAULT_FAMILY_VCPUS = 100
NO_SEPARATE_LIMIT = -1
ROUTE = "/subscriptions/{subscription}/providers/" + PROVIDER + "/locations/{location}"
PRIORITIES = {"dedicated": "Dedicated", "low_priority": "Low Priority"}
_KEYS = {"family_vcpus", "regional_vcpus", "families"}


def family_key(text: str) -> str:
    """'standardNCASv3_T4Family', 'Standard NCASv3_T4 Family' and 'NCASv3_T4' all give 'ncasv3t4'."""
    flat = re.sub(r"[^a-z0-9]", "", text.lower()).removeprefix("standard")
    return flat[: flat.index("family")] if "family" in flat else flat


@dataclass(frozen=True)
class Limits:
    """One priority's limits: per family key, and the regional total."""

    families: dict[str, int]
    regional: int


def _whole(value: Any, where: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < NO_SEPARATE_LIMIT:
        raise ApiError(
            400,
            "InvalidQuotaFile",
            f"{QUOTA_FILE}: {where} must be a whole number of vCPUs (>= 0, or -1 for no separate limit), got {value!r}",
        )
    return value


def _section(document: dict[str, Any], priority: str) -> dict[str, Any]:
    section = document.get(priority, {})
    if not isinstance(section, dict) or set(section) - _KEYS:
        unknown = sorted(set(section) - _KEYS) if isinstance(section, dict) else section
        raise ApiError(
            400, "InvalidQuotaFile", f"{QUOTA_FILE}: [{priority}] takes {', '.join(sorted(_KEYS))}; got {unknown!r}"
        )
    return section


def read_limits(context: ServiceContext, families: list[str]) -> dict[str, Limits]:
    """The limits per priority ("dedicated", "low_priority") for the catalogued `families` (their keys)."""
    path = context.data_dir / QUOTA_FILE
    try:
        document = tomllib.loads(path.read_text()) if path.is_file() else {}
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ApiError(400, "InvalidQuotaFile", f"{path} is not valid TOML: {exc}; fix or remove it") from exc
    unknown = sorted(set(document) - set(PRIORITIES))
    if unknown:
        raise ApiError(400, "InvalidQuotaFile", f"{path}: unknown tables {unknown}; use [dedicated], [low_priority]")
    limits: dict[str, Limits] = {}
    for priority in PRIORITIES:
        section = _section(document, priority)
        default = DEFAULT_FAMILY_VCPUS if priority == "dedicated" else NO_SEPARATE_LIMIT
        family_default = _whole(section.get("family_vcpus", default), f"[{priority}] family_vcpus")
        named = {
            family_key(name): _whole(value, f"[{priority}.families] {name}")
            for name, value in (section.get("families") or {}).items()
        }
        per_family = {key: named.get(key, family_default) for key in families}
        if "regional_vcpus" in section:
            regional = _whole(section["regional_vcpus"], f"[{priority}] regional_vcpus")
        elif priority == "dedicated":
            regional = sum(max(limit, 0) for limit in per_family.values())
        else:
            regional = limits["dedicated"].regional
        limits[priority] = Limits(per_family, regional)
    return limits


def _in_use(context: ServiceContext) -> dict[tuple[str, str], int]:
    """vCPUs of allocated nodes per (priority, family key)."""
    used: dict[tuple[str, str], int] = {}
    for record in context.store.list(computes.KIND):
        cluster = record["properties"]["properties"]
        size = lookup_vm_size(cluster["vmSize"])
        if size is None:  # removed from the catalogue since the cluster was made: nothing to count it against
            continue
        priority = "low_priority" if cluster["vmPriority"] == "LowPriority" else "dedicated"
        key = (priority, family_key(size.family))
        used[key] = used.get(key, 0) + computes.allocated_nodes(record) * size.vcpus
    return used


def _spaced(family: str) -> str:
    """'standardNCASv3_T4Family' -> 'Standard NCASv3_T4 Family', as Azure's localized names read."""
    core = re.sub(r"(?i)^standard", "", family)
    core = re.sub(r"(?i)family$", "", core)
    return f"Standard {core} Family"


def _row(context: ServiceContext, kind: str, value: str, localized: str, used: int, limit: int) -> dict[str, Any]:
    return {
        "id": f"/subscriptions/{context.subscription_id}/providers/{PROVIDER}/locations/{LOCATION}/usages/{value}",
        "amlWorkspaceLocation": LOCATION,
        "type": f"{PROVIDER}/{kind}/usages",
        "unit": "Count",
        "currentValue": used,
        "limit": limit,
        "name": {"value": value, "localizedValue": localized},
    }


def usage_rows(context: ServiceContext) -> list[dict[str, Any]]:
    families: dict[str, str] = {}  # key -> the catalogue's spelling (first size of the family wins)
    for size in list_vm_sizes():
        families.setdefault(family_key(size.family), size.family)
    limits = read_limits(context, list(families))
    used = _in_use(context)
    rows: list[dict[str, Any]] = []
    for priority, label in PRIORITIES.items():
        wire = "dedicatedCores" if priority == "dedicated" else "lowPriorityCores"
        total = sum(vcpus for (p, _), vcpus in used.items() if p == priority)
        rows.append(
            _row(
                context,
                wire,
                f"Total{label.replace(' ', '')}Cores",
                f"Total Cluster {label} Regional vCPUs",
                total,
                limits[priority].regional,
            )
        )
        for key, family in families.items():
            rows.append(
                _row(
                    context,
                    f"vmFamily/{wire}",
                    family,
                    f"{_spaced(family)} Cluster {label} vCPUs",
                    used.get((priority, key), 0),
                    limits[priority].families[key],
                )
            )
    return rows


def _size(size: VMSize) -> dict[str, Any]:
    return {
        "name": size.name,
        "family": size.family,
        "vCPUs": size.vcpus,
        "gpus": size.gpu_count,
        "osVhdSizeMB": None,
        "maxResourceVolumeMB": None,
        "memoryGB": size.ram_gb,
        "lowPriorityCapable": True,
        "premiumIO": True,
        "estimatedVMPrices": None,
        "supportedComputeTypes": ["AmlCompute"],
    }


def register(router: Router, context: ServiceContext) -> None:
    def _check(request: Request) -> None:
        if request.params["subscription"].lower() != context.subscription_id.lower():
            raise not_found("subscription", request.params["subscription"])
        if request.params["location"].lower() != LOCATION:
            raise ApiError(
                400,
                "InvalidLocation",
                f"location {request.params['location']!r}: the local workspace service has one location, "
                f"{LOCATION!r} (omit --location, or pass {LOCATION})",
            )

    def _usages(request: Request) -> Response:
        _check(request)
        return json_response(200, {"value": usage_rows(context)})

    def _sizes(request: Request) -> Response:
        _check(request)
        return json_response(200, {"value": [_size(size) for size in list_vm_sizes(include_retired=False)]})

    router.add("GET", ROUTE + "/usages", authenticated(context, _usages))
    router.add("GET", ROUTE + "/vmSizes", authenticated(context, _sizes))
