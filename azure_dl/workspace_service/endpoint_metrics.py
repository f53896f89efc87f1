"""Azure Monitor platform metrics of the online endpoints: every request the scoring front answers is recorded
(endpoint, deployment, status, latency), and `GET {resourceId}/providers/Microsoft.Insights/metrics` answers
from those records for an endpoint or a deployment, as azure-mgmt-monitor's `metrics.list` asks.

The request: `timespan` (START/END, START/DURATION or a duration ending now; default the last hour), `interval`
(an ISO 8601 grain, default PT1M, or FULL: one point for the whole span), `metricnames` (comma separated, names
as Microsoft Learn lists them: azure_dl/monitor_metrics.py), `aggregation` (Average, Count, Maximum, Minimum,
Total; default Average) and `$filter` (`dim eq 'value'` clauses joined by `and`; `'*'` splits by that dimension).
The answer follows the recorded live shape (Azure/azure-sdk-assets python/sdk/monitor/azure-monitor-query/tests/
recordings/test_metrics_client.pyTestMetricsClienttest_metrics_granularity.json; trimmed copy:
tests/fixtures/recordings/monitor_metrics_list.json): `value[]` with `name.value`, `unit`, `timeseries[].data[]`
of `timeStamp` plus the asked aggregations, `metadatavalues` naming a split's dimension value.

What is measured, and what is not: RequestsPerMinute (total = requests in the point's span, average = per
minute, maximum/minimum = the busiest/quietest minute; 0 when there were none, as Azure answers for counts),
RequestLatency (mean) and RequestLatency_P50/P90/P95/P99 (nearest-rank percentiles over the point's requests),
both time from the request reaching the front to its answer; dimensions deployment, statusCodeClass ("2xx"),
statusCode. DeploymentCapacity is the instance count of a deployment whose provisioning succeeded (0 samples for
one that does not run). The front does not count connections or bytes and no container's CPU or memory is
sampled, so ConnectionsActive, NewConnectionsPerSecond, NetworkBytes, CpuUtilizationPercentage and
CpuMemoryUtilizationPercentage answer points without values ("no samples"), never invented ones.

Records live in memory and in DIR/endpoint-metrics.jsonl (one JSON object a line, appended), so a restart keeps
them; records older than the 93 days Azure Monitor keeps are dropped when the file is read.
"""

from __future__ import annotations

import json
import math
import re
import threading
import time
from collections import Counter
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from azure_dl import monitor_metrics
from azure_dl.monitor_metrics import DEPLOYMENT_SCOPE, ENDPOINT_SCOPE, MetricDef
from azure_dl.workspace_service import online_deployments, online_endpoints
from azure_dl.workspace_service.context import LOCATION, ServiceContext
from azure_dl.workspace_service.http import ApiError, Handler, Request, Response, Router, json_response
from azure_dl.workspace_service.identity import authenticated
from azure_dl.workspace_service.workspaces import check_scope

FILE = "endpoint-metrics.jsonl"
RETENTION = timedelta(days=93)
MAX_POINTS = 50_000  # points per series; Azure Monitor refuses very fine grains over long spans too
DEFAULT_SPAN = timedelta(hours=1)
# Azure's response header that names the deployment a scoring request reached (scoring.py sets it).
DEPLOYMENT_HEADER = "azureml-model-deployment"
PROVIDER_SUFFIX = "/providers/Microsoft.Insights/metrics"
ENDPOINT_ROUTE = online_endpoints.ROUTE + "/{endpoint}" + PROVIDER_SUFFIX
DEPLOYMENT_ROUTE = online_endpoints.ROUTE + "/{endpoint}/deployments/{deployment}" + PROVIDER_SUFFIX
NAMESPACES = {
    ENDPOINT_SCOPE: "Microsoft.MachineLearningServices/workspaces/onlineEndpoints",
    DEPLOYMENT_SCOPE: "Microsoft.MachineLearningServices/workspaces/onlineEndpoints/deployments",
}
_AGGREGATIONS = {name.lower(): name.lower() for name in monitor_metrics.AGGREGATIONS}
_DURATION = re.compile(r"^P(?:(\d+)D)?(?:T(?:(\d+)H)?(?:(\d+)M)?(?:(\d+(?:\.\d+)?)S)?)?$", re.IGNORECASE)
_CLAUSE = re.compile(r"^\s*(\w+)\s+eq\s+'([^']*)'\s*$", re.IGNORECASE)


@dataclass(frozen=True)
class Sample:
    """One answered scoring request."""

    at: float  # epoch seconds when it reached the front
    endpoint: str
    deployment: str  # "" when the front answered before routing (401, no traffic)
    status: int
    latency_ms: float

    def dimension(self, name: str) -> str:
        return {
            "deployment": self.deployment,
            "statuscodeclass": f"{self.status // 100}xx",
            "statuscode": str(self.status),
            "modelstatuscode": "",
        }.get(name.lower(), "")


class Recorder:
    """The samples of one service, appended to its JSON-lines file as they come."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._samples: list[Sample] = []
        oldest = time.time() - RETENTION.total_seconds()
        if path.is_file():
            for line in path.read_text().splitlines():
                try:
                    sample = Sample(**json.loads(line))
                except (ValueError, TypeError):  # a line cut short by a crash: skip it, keep the rest
                    continue
                if sample.at >= oldest:
                    self._samples.append(sample)

    def add(self, sample: Sample) -> None:
        with self._lock:
            self._samples.append(sample)
            with self.path.open("a") as handle:
                handle.write(json.dumps(asdict(sample)) + "\n")

    def of(self, endpoint: str, start: float, end: float) -> list[Sample]:
        with self._lock:
            return [s for s in self._samples if s.endpoint == endpoint and start <= s.at < end]


_recorders: dict[Path, Recorder] = {}
_recorders_lock = threading.Lock()


def recorder(context: ServiceContext) -> Recorder:
    with _recorders_lock:
        found = _recorders.get(context.data_dir)
        if found is None:
            found = _recorders[context.data_dir] = Recorder(context.data_dir / FILE)
        return found


def recorded(context: ServiceContext, handler: Handler) -> Handler:
    """`handler` (the scoring route), with each answer it gives to an existing endpoint recorded as a sample."""

    def _timed(request: Request) -> Response:
        started, at = time.perf_counter(), time.time()
        try:
            response = handler(request)
        except ApiError as exc:
            response = exc.response()
        endpoint = request.params.get("endpoint", "")
        if context.store.get(online_endpoints.KIND, endpoint) is not None:
            deployment = response.headers.get(DEPLOYMENT_HEADER) or ""
            latency = (time.perf_counter() - started) * 1000
            recorder(context).add(Sample(at, endpoint, deployment, response.status, round(latency, 3)))
        return response

    return _timed


def _bad(message: str) -> ApiError:
    return ApiError(400, "BadRequest", message)


def _duration(text: str, what: str) -> timedelta:
    match = _DURATION.match(text.strip())
    if match is None or not any(match.groups()):
        raise _bad(f"{what} {text!r} is not an ISO 8601 duration (e.g. PT1M, PT1H, P1D)")
    days, hours, minutes, seconds = (float(group) if group else 0.0 for group in match.groups())
    span = timedelta(days=days, hours=hours, minutes=minutes, seconds=seconds)
    if span <= timedelta(0):
        raise _bad(f"{what} {text!r} is not longer than zero")
    return span


def _instant(text: str) -> datetime:
    try:
        moment = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError as exc:
        raise _bad(f"timespan: {text!r} is not an ISO 8601 time (e.g. 2026-01-01T00:00:00Z)") from exc
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def parse_timespan(text: str | None, now: datetime | None = None) -> tuple[datetime, datetime]:
    """START/END, START/DURATION, or DURATION (ending now); none = the last hour."""
    end = now or datetime.now(UTC)
    if not text:
        return end - DEFAULT_SPAN, end
    first, slash, second = text.partition("/")
    if not slash:
        return end - _duration(first, "timespan"), end
    start = _instant(first)
    stop = start + _duration(second, "timespan") if second.strip().upper().startswith("P") else _instant(second)
    if stop <= start:
        raise _bad(f"timespan {text!r} ends before it starts")
    return start, stop


def _filters(text: str | None) -> dict[str, str]:
    """`deployment eq 'blue' and statusCodeClass eq '*'` -> {"deployment": "blue", "statuscodeclass": "*"}."""
    if not text:
        return {}
    found: dict[str, str] = {}
    for clause in re.split(r"\s+and\s+", text.strip(), flags=re.IGNORECASE):
        match = _CLAUSE.match(clause)
        if match is None:
            raise _bad(
                f"$filter clause {clause!r} is not supported by the local service: use DIMENSION eq 'VALUE' "
                "(or '*' to split), joined by 'and'"
            )
        found[match.group(1)] = match.group(2)
    return found


def _percentile(values: list[float], p: int) -> float:
    ordered = sorted(values)
    return ordered[max(0, math.ceil(p / 100 * len(ordered)) - 1)]


def _request_values(samples: list[Sample], start: float, span_s: float) -> dict[str, float]:
    minutes = max(1, round(span_s / 60))
    per_minute = Counter(int((s.at - start) // 60) for s in samples)
    busiest = max(per_minute.values(), default=0)
    quietest = min(per_minute.values(), default=0) if len(per_minute) >= minutes else 0
    return {
        "total": len(samples),
        "count": len(samples),
        "average": len(samples) / minutes,
        "maximum": busiest,
        "minimum": quietest,
    }


def _point_values(
    context: ServiceContext, metric: MetricDef, samples: list[Sample], start: float, span_s: float, target: Target
) -> dict[str, float]:
    """The aggregations of one point; {} where nothing was sampled."""
    if metric.name == "RequestsPerMinute":
        return _request_values(samples, start, span_s)
    if metric.name.startswith("RequestLatency"):
        if not samples:
            return {}
        latencies = [s.latency_ms for s in samples]
        _, _, p = metric.name.partition("_P")
        value = _percentile(latencies, int(p)) if p else sum(latencies) / len(latencies)
        return {"average": value, "maximum": value, "minimum": value, "total": value, "count": len(samples)}
    if metric.name == "DeploymentCapacity" and target.deployment is not None:
        record = context.store.get(online_deployments.KIND, f"{target.endpoint}/{target.deployment}")
        if record is None or record.get("state") != "Succeeded":
            return {}
        capacity = float(record["sku"]["capacity"])
        return {"average": capacity, "maximum": capacity, "minimum": capacity, "total": capacity, "count": 1}
    return {}  # not measured by the local service (module docstring)


@dataclass(frozen=True)
class Target:
    endpoint: str
    deployment: str | None

    @property
    def scope(self) -> str:
        return DEPLOYMENT_SCOPE if self.deployment is not None else ENDPOINT_SCOPE


def _stamp(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _metric(
    context: ServiceContext,
    request: Request,
    target: Target,
    metric: MetricDef,
    window: tuple[datetime, datetime],
    grain: timedelta,
    aggregations: list[str],
) -> dict[str, Any]:
    start, end = window
    dimensions = {d.lower(): d for d in metric.dimensions}
    filters = _filters(request.query.get("$filter"))
    for name in filters:
        if name.lower() not in dimensions:
            raise _bad(
                f"metric {metric.name} has no dimension {name!r}; "
                f"its dimensions: {', '.join(metric.dimensions) or 'none'}"
            )
    samples = recorder(context).of(target.endpoint, start.timestamp(), end.timestamp())
    if target.deployment is not None:
        samples = [s for s in samples if s.deployment == target.deployment]
    fixed = {name.lower(): value for name, value in filters.items() if value != "*"}
    split = [name.lower() for name, value in filters.items() if value == "*"]
    samples = [s for s in samples if all(s.dimension(name) == value for name, value in fixed.items())]
    groups: dict[tuple[str, ...], list[Sample]] = {}
    for sample in samples:
        groups.setdefault(tuple(sample.dimension(name) for name in split), []).append(sample)
    if not split:
        groups = {(): samples}
    series = []
    for values, members in sorted(groups.items()):
        buckets: dict[int, list[Sample]] = {}
        for sample in members:
            buckets.setdefault(int((sample.at - start.timestamp()) // grain.total_seconds()), []).append(sample)
        points, moment, index = [], start, 0
        while moment < end:
            stop = min(moment + grain, end)
            inside = buckets.get(index, [])
            span_s = (stop - moment).total_seconds()
            index += 1
            computed = _point_values(context, metric, inside, moment.timestamp(), span_s, target)
            point: dict[str, Any] = {"timeStamp": _stamp(moment)}
            point.update({key: computed[key] for key in aggregations if key in computed})
            points.append(point)
            moment = stop
        metadata = [
            {"name": {"value": dimensions[name], "localizedValue": dimensions[name]}, "value": value}
            for name, value in zip(split, values, strict=True)
        ]
        series.append({"metadatavalues": metadata, "data": points})
    resource = request.path[: -len(PROVIDER_SUFFIX)]
    return {
        "id": f"{resource}{PROVIDER_SUFFIX}/{metric.name}",
        "type": "Microsoft.Insights/metrics",
        "name": {"value": metric.name, "localizedValue": metric.label},
        "displayDescription": metric.description,
        "unit": metric.unit,
        "timeseries": series,
        "errorCode": "Success",
    }


def _metrics(context: ServiceContext, request: Request, target: Target) -> Response:
    start, end = parse_timespan(request.query.get("timespan"))
    interval = (request.query.get("interval") or "PT1M").strip()
    grain = end - start if interval.upper() == "FULL" else _duration(interval, "interval")
    if (end - start) / grain > MAX_POINTS:
        raise _bad(f"interval {interval} over {_stamp(start)}/{_stamp(end)} gives more than {MAX_POINTS} points")
    aggregations = []
    for name in (request.query.get("aggregation") or "Average").split(","):
        if name.strip().lower() not in _AGGREGATIONS:
            raise _bad(f"aggregation {name.strip()!r} is not one of {', '.join(monitor_metrics.AGGREGATIONS)}")
        aggregations.append(_AGGREGATIONS[name.strip().lower()])
    names = [name.strip() for name in (request.query.get("metricnames") or "").split(",") if name.strip()]
    if not names:
        raise _bad("metricnames is empty: name the metrics to read (comma separated)")
    offered = monitor_metrics.metrics_of(target.scope)
    chosen = []
    for name in names:
        metric = monitor_metrics.lookup(name)
        if metric is None or metric.scope != target.scope:
            raise _bad(
                f"Failed to find metric configuration for provider: Microsoft.MachineLearningServices, resource "
                f"type: {NAMESPACES[target.scope]}, metric: {name}. Valid metrics: "
                + ", ".join(m.name for m in offered)
            )
        chosen.append(metric)
    return json_response(
        200,
        {
            "cost": 0,
            "timespan": f"{_stamp(start)}/{_stamp(end)}",
            "interval": interval,
            "value": [_metric(context, request, target, m, (start, end), grain, aggregations) for m in chosen],
            "namespace": NAMESPACES[target.scope],
            "resourceregion": LOCATION,
        },
    )


def register(router: Router, context: ServiceContext) -> None:
    recorder(context)  # read DIR/endpoint-metrics.jsonl now, not on the first scoring request

    def _endpoint(request: Request) -> Response:
        check_scope(context, request)
        name = online_endpoints.find(context, request.params["endpoint"])["name"]
        return _metrics(context, request, Target(name, None))

    def _deployment(request: Request) -> Response:
        check_scope(context, request)
        endpoint = online_endpoints.find(context, request.params["endpoint"])["name"]
        deployment = online_deployments.find(context, endpoint, request.params["deployment"])["name"]
        return _metrics(context, request, Target(endpoint, deployment))

    router.add("GET", ENDPOINT_ROUTE, authenticated(context, _endpoint))
    router.add("GET", DEPLOYMENT_ROUTE, authenticated(context, _deployment))
