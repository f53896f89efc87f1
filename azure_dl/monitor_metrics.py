"""Azure Monitor platform metrics of online endpoints and deployments, as data: their REST names, what the
`endpoint metrics` table shows of each, the `--since` window, and the summary rows read from a metrics answer.

The names are the ones Microsoft Learn lists ("Supported metrics for Microsoft.MachineLearningServices/workspaces/
onlineEndpoints" and ".../onlineEndpoints/deployments"). Requests split by status class are RequestsPerMinute
with the `statusCodeClass` dimension (there is no separate errors metric); a deployment's requests are the
endpoint's RequestsPerMinute filtered on the `deployment` dimension. Memory is `CpuMemoryUtilizationPercentage`
and instance count `DeploymentCapacity`. No SDK here: answers arrive as plain dicts in the REST shape
(`Response.serialize(keep_readonly=True)`).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from azure_dl.errors import SpecError

ENDPOINT_SCOPE = "endpoint"
DEPLOYMENT_SCOPE = "deployment"
AGGREGATIONS = ("Total", "Average", "Maximum", "Minimum", "Count")
STATUS_CLASS_DIMENSION = "statusCodeClass"
DEPLOYMENT_DIMENSION = "deployment"


@dataclass(frozen=True)
class MetricDef:
    """One platform metric: its REST name, scope, unit, the aggregation the table shows, and its dimensions."""

    name: str
    label: str
    scope: str
    unit: str
    shown: str  # the aggregation the summary table reports ("Total" for counts, else "Average")
    dimensions: tuple[str, ...] = ()
    description: str = ""


_TRAFFIC = (DEPLOYMENT_DIMENSION, STATUS_CLASS_DIMENSION, "statusCode", "modelStatusCode")
_LATENCY = (DEPLOYMENT_DIMENSION,)

METRICS: tuple[MetricDef, ...] = (
    MetricDef(
        "RequestsPerMinute", "Requests", ENDPOINT_SCOPE, "Count", "Total", _TRAFFIC,
        "The number of requests sent to the online endpoint within a minute.",
    ),
    MetricDef(
        "RequestLatency", "Request latency", ENDPOINT_SCOPE, "Milliseconds", "Average", _LATENCY,
        "The complete interval of time taken for a request to be responded.",
    ),
    *(
        MetricDef(
            f"RequestLatency_P{p}", f"Request latency P{p}", ENDPOINT_SCOPE, "Milliseconds", "Average", _LATENCY,
            f"The {p}th percentile of the request latency, aggregated over the period.",
        )
        for p in (50, 90, 95, 99)
    ),
    MetricDef(
        "ConnectionsActive", "Active connections", ENDPOINT_SCOPE, "Count", "Average", (),
        "The total number of concurrent TCP connections active from clients.",
    ),
    MetricDef(
        "NewConnectionsPerSecond", "New connections per second", ENDPOINT_SCOPE, "CountPerSecond", "Average", (),
        "The average number of new TCP connections per second established from clients.",
    ),
    MetricDef(
        "NetworkBytes", "Network bytes", ENDPOINT_SCOPE, "BytesPerSecond", "Average", (),
        "The bytes per second served for the endpoint.",
    ),
    MetricDef(
        "CpuUtilizationPercentage", "CPU utilization", DEPLOYMENT_SCOPE, "Percent", "Average", ("instanceId",),
        "Percentage of CPU utilization on an instance.",
    ),
    MetricDef(
        "CpuMemoryUtilizationPercentage", "Memory utilization", DEPLOYMENT_SCOPE, "Percent", "Average",
        ("instanceId",), "Percentage of memory utilization on an instance.",
    ),
    MetricDef(
        "DeploymentCapacity", "Instances", DEPLOYMENT_SCOPE, "Count", "Average", ("instanceId", "State"),
        "The number of instances in the deployment.",
    ),
)  # fmt: skip

BY_NAME: dict[str, MetricDef] = {metric.name: metric for metric in METRICS}


def metrics_of(scope: str) -> tuple[MetricDef, ...]:
    return tuple(metric for metric in METRICS if metric.scope == scope)


def lookup(name: str) -> MetricDef | None:
    """The metric named `name` (case-insensitive, as Azure Monitor reads metricnames), or None."""
    return next((metric for metric in METRICS if metric.name.lower() == name.lower()), None)


_SINCE = re.compile(r"^(\d+)\s*([mhd])$")
_UNITS = {"m": "minutes", "h": "hours", "d": "days"}
MAX_SINCE = timedelta(days=93)  # Azure Monitor keeps platform metrics 93 days


def parse_since(text: str) -> timedelta:
    """'30m', '1h', '2d' -> a timedelta (1 minute to 93 days)."""
    match = _SINCE.match(text.strip().lower())
    if match is None or int(match.group(1)) == 0:
        raise SpecError(f"--since {text!r} is not a window", hint="give minutes, hours or days, e.g. 30m, 1h, 2d")
    window = timedelta(**{_UNITS[match.group(2)]: int(match.group(1))})
    if window > MAX_SINCE:
        raise SpecError(f"--since {text} is longer than Azure Monitor keeps metrics", hint="give at most 93d")
    return window


def timespan(window: timedelta, now: datetime | None = None) -> str:
    """The `timespan` query value: 'START/END' in UTC, ending now (rounded up to the second, so that what was
    recorded in the current second is inside it)."""
    moment = (now or datetime.now(UTC)).astimezone(UTC)
    end = moment.replace(microsecond=0) + (timedelta(seconds=1) if moment.microsecond else timedelta(0))
    start = end - window
    return f"{start.strftime('%Y-%m-%dT%H:%M:%SZ')}/{end.strftime('%Y-%m-%dT%H:%M:%SZ')}"


def plot_interval(window: timedelta) -> str:
    """A grain that gives at most ~120 points over `window` (Azure Monitor's grains: PT1M ... P1D)."""
    for grain, span in (("PT1M", 1), ("PT5M", 5), ("PT15M", 15), ("PT30M", 30), ("PT1H", 60), ("PT6H", 360)):
        if window <= timedelta(minutes=span * 120):
            return grain
    return "P1D"


@dataclass(frozen=True)
class SummaryRow:
    scope: str  # "endpoint E" or "deployment D"
    metric: MetricDef
    split: str  # a dimension value ("2xx") or "" for the whole metric
    value: float
    samples: int  # data points that carried the shown aggregation: 0 = no samples, and the value shows 0


def _points(metric: Mapping[str, Any]) -> Iterable[tuple[str, Mapping[str, Any]]]:
    for series in metric.get("timeseries") or []:
        split = ",".join(str(m.get("value")) for m in series.get("metadatavalues") or [])
        for point in series.get("data") or []:
            yield split, point


def summarise(scope: str, answer: Mapping[str, Any]) -> list[SummaryRow]:
    """One row per metric (and per dimension value, when the answer is split) of a metrics answer.

    A metric's value is its shown aggregation over the whole answer: the sum of the points' totals for counts,
    the mean of the points' averages otherwise. A metric with no samples is a row with value 0 and samples 0.
    """
    rows: list[SummaryRow] = []
    for entry in answer.get("value") or []:
        name = (entry.get("name") or {}).get("value") or ""
        metric = lookup(name) or MetricDef(name, name, scope, str(entry.get("unit") or ""), "Average")
        key = metric.shown.lower()
        values: dict[str, list[float]] = {}
        for split, point in _points(entry):
            bucket = values.setdefault(split, [])
            if point.get(key) is not None:
                bucket.append(float(point[key]))
        for split, found in sorted(values.items()) or [("", [])]:
            mean = sum(found) / len(found) if found else 0.0
            value = sum(found) if metric.shown == "Total" else mean
            rows.append(SummaryRow(scope, metric, split, value, len(found)))
    return rows


def _number(value: float, unit: str) -> str:
    if unit == "Count" and float(value).is_integer():
        return str(int(value))
    return f"{value:.1f}"


def table_rows(rows: Sequence[SummaryRow]) -> list[list[str]]:
    """The printed table: scope, metric (REST name, split), aggregation, value, unit, samples."""
    printed = []
    for row in rows:
        name = f"{row.metric.name} [{row.split}]" if row.split else row.metric.name
        samples = str(row.samples) if row.samples else "0 (no samples)"
        value = _number(row.value, row.metric.unit)
        printed.append([row.scope, name, row.metric.shown, value, row.metric.unit, samples])
    return printed


TABLE_COLUMNS = ("scope", "metric", "aggregation", "value", "unit", "samples")


def series(answer: Mapping[str, Any], name: str, aggregation: str) -> list[tuple[datetime, float]]:
    """(time, value) points of metric `name` in an answer; a point without the aggregation counts as 0."""
    points: list[tuple[datetime, float]] = []
    key = aggregation.lower()
    for entry in answer.get("value") or []:
        if ((entry.get("name") or {}).get("value") or "").lower() != name.lower():
            continue
        for _split, point in _points(entry):
            when = datetime.fromisoformat(str(point["timeStamp"]).replace("Z", "+00:00"))
            points.append((when, float(point.get(key) or 0.0)))
    return sorted(points)
