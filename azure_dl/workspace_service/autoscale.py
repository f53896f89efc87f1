"""Azure Monitor autoscale settings of online deployments: PUT/GET/DELETE and the resource group's list under
`/subscriptions/S/resourceGroups/RG/providers/Microsoft.Insights/autoscalesettings/NAME`, as
azure-mgmt-monitor's `autoscale_settings` sends them (api-version 2022-10-01).

Autoscaling a managed online deployment is an Azure Monitor autoscale setting whose `targetResourceUri` is the
deployment's ARM id, with rules on its metrics (CpuUtilizationPercentage, ...). No public recording holds these
calls, so the body follows the REST API's AutoscaleSettingResource and the answers Azure gives (`az monitor
autoscale show`): capacities as strings, `predictiveAutoscalePolicy.scaleMode` "Disabled" when none is given,
`notifications` [], `enabled` true; a PUT answers 201 for a new setting and 200 for a replaced one, DELETE 200
(204 when there was none), GET of an unknown name 404.

Checked as Azure checks them, each a 400 naming the value: the target is an existing online deployment of this
workspace (the local service has nothing else to scale), and one setting per target; 1-20 profiles, each with
whole-number capacities minimum <= default <= maximum and at most 10 rules whose metric is an online endpoint or
deployment metric (azure_dl/monitor_metrics.py), operator, statistic, time aggregation, direction and action type
spelled as Azure spells them. A Kubernetes deployment is refused: it scales by its own scale settings
(TargetUtilization), not by Azure Monitor. The settings are kept, not acted on: the service samples no CPU, so no
rule can fire. Kept as kind "autoscale-settings", key = the name in lower case (ARM names are case-insensitive).
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any

from azure_dl import monitor_metrics
from azure_dl.workspace_service import online_deployments
from azure_dl.workspace_service.context import LOCATION, ServiceContext
from azure_dl.workspace_service.http import ApiError, Request, Response, Router, json_response, not_found
from azure_dl.workspace_service.identity import authenticated
from azure_dl.workspace_service.workspaces import check_scope

KIND = "autoscale-settings"
ROUTE = "/subscriptions/{subscription}/resourceGroups/{group}/providers/Microsoft.Insights/autoscalesettings"
TYPE = "Microsoft.Insights/autoscaleSettings"
MAX_PROFILES = 20
MAX_RULES = 10
OPERATORS = ("Equals", "NotEquals", "GreaterThan", "GreaterThanOrEqual", "LessThan", "LessThanOrEqual")
STATISTICS = ("Average", "Min", "Max", "Sum", "Count")
TIME_AGGREGATIONS = ("Average", "Minimum", "Maximum", "Total", "Count", "Last")
DIRECTIONS = ("None", "Increase", "Decrease")
ACTION_TYPES = ("ChangeCount", "PercentChangeCount", "ExactCount", "ServiceAllowedNextValue")
_DEPLOYMENT_ID = re.compile(
    r"^/subscriptions/(?P<subscription>[^/]+)/resourceGroups/(?P<group>[^/]+)/providers/"
    r"Microsoft\.MachineLearningServices/workspaces/(?P<workspace>[^/]+)/onlineEndpoints/(?P<endpoint>[^/]+)/"
    r"deployments/(?P<deployment>[^/]+)$",
    re.IGNORECASE,
)


def _bad(message: str) -> ApiError:
    return ApiError(400, "BadRequest", message)


def _now() -> str:
    return datetime.now(UTC).isoformat()


def _one_of(value: Any, allowed: tuple[str, ...], where: str) -> str:
    found = next((a for a in allowed if a.lower() == str(value).lower()), None)
    if found is None:
        raise _bad(f"{where} is {value!r}; give one of {', '.join(allowed)}")
    return found


def _whole(value: Any, where: str) -> int:
    try:
        number = int(str(value))
    except ValueError:
        raise _bad(f"{where} is {value!r}; give a whole number") from None
    if number < 0:
        raise _bad(f"{where} is {number}; give 0 or more")
    return number


def check_target(context: ServiceContext, uri: Any) -> dict[str, Any]:
    """The online deployment record `uri` names; 400 unless it is one of this workspace's."""
    match = _DEPLOYMENT_ID.match(str(uri or ""))
    if match is None:
        raise _bad(
            f"targetResourceUri {uri!r} is not an online deployment; the local workspace service autoscales "
            "online deployments only (.../onlineEndpoints/E/deployments/D)"
        )
    parts = match.groupdict()
    ours = (context.subscription_id, context.resource_group, context.workspace)
    if tuple(parts[k].lower() for k in ("subscription", "group", "workspace")) != tuple(v.lower() for v in ours):
        raise _bad(f"targetResourceUri {uri} is not in this workspace ({context.workspace_id})")
    record = context.store.get(online_deployments.KIND, f"{parts['endpoint']}/{parts['deployment']}")
    if record is None:
        raise _bad(f"targetResourceUri {uri}: endpoint {parts['endpoint']} has no deployment {parts['deployment']}")
    if str(record["properties"].get("endpointComputeType") or "").lower() == "kubernetes":
        raise _bad(
            f"deployment {parts['deployment']} of endpoint {parts['endpoint']} runs on Kubernetes: it scales by its "
            "own scale settings (scaleType TargetUtilization), not by an Azure Monitor autoscale setting"
        )
    return record


def _rule(rule: Any, where: str) -> dict[str, Any]:
    if not isinstance(rule, dict) or not isinstance(rule.get("metricTrigger"), dict):
        raise _bad(f"{where} needs metricTrigger and scaleAction")
    trigger, action = rule["metricTrigger"], rule.get("scaleAction")
    if not isinstance(action, dict):
        raise _bad(f"{where} needs scaleAction (direction, type, value, cooldown)")
    metric = monitor_metrics.lookup(str(trigger.get("metricName") or ""))
    if metric is None:
        raise _bad(
            f"{where}: metric {trigger.get('metricName')!r} is not an online endpoint or deployment metric; "
            f"valid: {', '.join(m.name for m in monitor_metrics.METRICS)}"
        )
    try:
        threshold = float(trigger.get("threshold"))
    except (TypeError, ValueError):
        raise _bad(f"{where}: threshold {trigger.get('threshold')!r} is not a number") from None
    return {
        "metricTrigger": {
            **trigger,
            "metricName": metric.name,
            "operator": _one_of(trigger.get("operator"), OPERATORS, f"{where}.operator"),
            "statistic": _one_of(trigger.get("statistic") or "Average", STATISTICS, f"{where}.statistic"),
            "timeAggregation": _one_of(
                trigger.get("timeAggregation") or "Average", TIME_AGGREGATIONS, f"{where}.timeAggregation"
            ),
            "timeGrain": trigger.get("timeGrain") or "PT1M",
            "timeWindow": trigger.get("timeWindow") or "PT5M",
            "threshold": threshold,
        },
        "scaleAction": {
            "direction": _one_of(action.get("direction"), DIRECTIONS, f"{where}.direction"),
            "type": _one_of(action.get("type") or "ChangeCount", ACTION_TYPES, f"{where}.type"),
            "value": str(_whole(action.get("value", 1), f"{where}.value")),
            "cooldown": action.get("cooldown") or "PT5M",
        },
    }


def _profiles(name: str, profiles: Any) -> list[dict[str, Any]]:
    if not isinstance(profiles, list) or not 1 <= len(profiles) <= MAX_PROFILES:
        raise _bad(f"autoscale setting {name}: give 1 to {MAX_PROFILES} profiles")
    checked = []
    for index, profile in enumerate(profiles):
        where = f"autoscale setting {name}: profiles[{index}]"
        capacity = profile.get("capacity") if isinstance(profile, dict) else None
        if not isinstance(capacity, dict):
            raise _bad(f"{where} needs capacity (minimum, maximum, default)")
        low, high = (
            _whole(capacity.get("minimum"), f"{where}.minimum"),
            _whole(capacity.get("maximum"), f"{where}.maximum"),
        )
        default = _whole(capacity.get("default", low), f"{where}.default")
        if not low <= default <= high:
            raise _bad(f"{where}: capacity must be minimum <= default <= maximum, got {low}, {default}, {high}")
        rules = profile.get("rules") or []
        if not isinstance(rules, list) or len(rules) > MAX_RULES:
            raise _bad(f"{where}: at most {MAX_RULES} rules")
        checked.append(
            {
                **profile,
                "capacity": {"minimum": str(low), "maximum": str(high), "default": str(default)},
                "rules": [_rule(rule, f"{where}.rules[{i}]") for i, rule in enumerate(rules)],
            }
        )
    return checked


def body(context: ServiceContext, record: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": f"{context.resource_group_id}/providers/microsoft.insights/autoscalesettings/{record['name']}",
        "name": record["name"],
        "type": TYPE,
        "location": record["location"],
        "tags": record["tags"],
        "properties": record["properties"],
        "systemData": {
            "createdAt": record["createdAt"],
            "createdBy": "azure-dl",
            "lastModifiedAt": record["modifiedAt"],
        },
    }


def for_target(context: ServiceContext, uri: str) -> dict[str, Any] | None:
    """The setting whose target is `uri` (case-insensitive), if any."""
    return next(
        (r for r in context.store.list(KIND) if r["properties"]["targetResourceUri"].lower() == uri.lower()), None
    )


def register(router: Router, context: ServiceContext) -> None:
    def _found(request: Request) -> dict[str, Any]:
        check_scope(context, request)
        record = context.store.get(KIND, request.params["name"].lower())
        if record is None:
            raise not_found("autoscale setting", request.params["name"])
        return record

    def _get(request: Request) -> Response:
        return json_response(200, body(context, _found(request)))

    def _list(request: Request) -> Response:
        check_scope(context, request)
        return json_response(200, {"value": [body(context, record) for record in context.store.list(KIND)]})

    def _put(request: Request) -> Response:
        check_scope(context, request)
        name = request.params["name"]
        document = request.json()
        properties = document.get("properties") if isinstance(document, dict) else None
        if not isinstance(properties, dict):
            raise _bad(f"autoscale setting {name}: the body needs properties (profiles, targetResourceUri)")
        target = str(properties.get("targetResourceUri") or "")
        check_target(context, target)
        other = for_target(context, target)
        if other is not None and other["name"].lower() != name.lower():
            raise _bad(
                f"autoscale setting {other['name']} already targets {target}; a resource has one autoscale setting "
                "(update or delete that one)"
            )
        policy = properties.get("predictiveAutoscalePolicy") or {"scaleMode": "Disabled", "scaleLookAheadTime": None}
        existing = context.store.get(KIND, name.lower())
        now = _now()
        record = {
            "name": existing["name"] if existing else name,
            "location": document.get("location") or LOCATION,
            "tags": document.get("tags") or {},
            "properties": {
                "profiles": _profiles(name, properties.get("profiles")),
                "notifications": properties.get("notifications") or [],
                "enabled": properties.get("enabled", True) is not False,
                "predictiveAutoscalePolicy": policy,
                "name": existing["name"] if existing else name,
                "targetResourceUri": target,
                "targetResourceLocation": properties.get("targetResourceLocation") or LOCATION,
            },
            "createdAt": existing["createdAt"] if existing else now,
            "modifiedAt": now,
        }
        context.store.put(KIND, name.lower(), record)
        return json_response(200 if existing else 201, body(context, record))

    def _delete(request: Request) -> Response:
        check_scope(context, request)
        return Response(200 if context.store.delete(KIND, request.params["name"].lower()) else 204)

    router.add("GET", ROUTE, authenticated(context, _list))
    router.add("GET", ROUTE + "/{name}", authenticated(context, _get))
    router.add("PUT", ROUTE + "/{name}", authenticated(context, _put))
    router.add("DELETE", ROUTE + "/{name}", authenticated(context, _delete))
