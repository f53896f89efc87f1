"""The metric names and the `endpoint metrics` table and plot (azure_dl/monitor_metrics.py, metrics_plot.py), and the
service's sample file and timespan parsing (workspace_service/endpoint_metrics.py), without a network."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from azure_dl import monitor_metrics
from azure_dl.errors import SpecError
from azure_dl.metrics_plot import plot_traffic
from azure_dl.workspace_service.endpoint_metrics import Recorder, Sample, parse_timespan
from azure_dl.workspace_service.http import ApiError


def test_the_names_are_the_ones_microsoft_learn_lists_for_endpoints_and_deployments() -> None:
    endpoint = {m.name for m in monitor_metrics.metrics_of(monitor_metrics.ENDPOINT_SCOPE)}
    deployment = {m.name for m in monitor_metrics.metrics_of(monitor_metrics.DEPLOYMENT_SCOPE)}
    assert endpoint == {
        "RequestsPerMinute",
        "RequestLatency",
        "RequestLatency_P50",
        "RequestLatency_P90",
        "RequestLatency_P95",
        "RequestLatency_P99",
        "ConnectionsActive",
        "NewConnectionsPerSecond",
        "NetworkBytes",
    }
    assert deployment == {"CpuUtilizationPercentage", "CpuMemoryUtilizationPercentage", "DeploymentCapacity"}
    assert monitor_metrics.lookup("requestlatency_p99") is monitor_metrics.BY_NAME["RequestLatency_P99"]
    assert monitor_metrics.lookup("Errors") is None  # errors are RequestsPerMinute split by statusCodeClass
    assert "statusCodeClass" in monitor_metrics.BY_NAME["RequestsPerMinute"].dimensions


@pytest.mark.parametrize(
    ("text", "window"), [("30m", timedelta(minutes=30)), ("1h", timedelta(hours=1)), ("2D", timedelta(days=2))]
)
def test_since_reads_minutes_hours_and_days(text: str, window: timedelta) -> None:
    assert monitor_metrics.parse_since(text) == window


@pytest.mark.parametrize("text", ["0h", "1y", "h", "94d", "-1h"])
def test_since_refuses_what_is_not_a_window_azure_keeps(text: str) -> None:
    with pytest.raises(SpecError, match="--since"):
        monitor_metrics.parse_since(text)


def test_timespan_ends_now_in_utc() -> None:
    now = datetime(2026, 1, 2, 3, 4, 5, 678, tzinfo=UTC)
    assert monitor_metrics.timespan(timedelta(hours=1), now) == "2026-01-02T02:04:06Z/2026-01-02T03:04:06Z"
    assert monitor_metrics.timespan(timedelta(hours=1), now.replace(microsecond=0)).endswith("T03:04:05Z")
    assert monitor_metrics.plot_interval(timedelta(hours=1)) == "PT1M"
    assert monitor_metrics.plot_interval(timedelta(days=2)) == "PT30M"


def _answer(*metrics: dict[str, Any], interval: str = "FULL") -> dict[str, Any]:
    return {"interval": interval, "value": list(metrics)}


def _metric(name: str, *series: tuple[str, list[dict[str, Any]]]) -> dict[str, Any]:
    return {
        "name": {"value": name},
        "unit": "Count",
        "timeseries": [
            {"metadatavalues": [{"name": {"value": "statusCodeClass"}, "value": split}] if split else [], "data": data}
            for split, data in series
        ],
    }


def test_summary_sums_counts_averages_the_rest_and_shows_zero_without_samples() -> None:
    answer = _answer(
        _metric("RequestsPerMinute", ("", [{"timeStamp": "t", "total": 3.0}, {"timeStamp": "t", "total": 4.0}])),
        _metric("RequestLatency_P50", ("", [{"timeStamp": "t", "average": 10.0}, {"timeStamp": "t", "average": 20.0}])),
        _metric("ConnectionsActive", ("", [{"timeStamp": "t"}])),
    )
    rows = monitor_metrics.summarise("endpoint e", answer)
    assert [(r.metric.name, r.value, r.samples) for r in rows] == [
        ("RequestsPerMinute", 7.0, 2),
        ("RequestLatency_P50", 15.0, 2),
        ("ConnectionsActive", 0.0, 0),
    ]
    printed = monitor_metrics.table_rows(rows)
    assert printed[0] == ["endpoint e", "RequestsPerMinute", "Total", "7", "Count", "2"]
    assert printed[1][3] == "15.0"
    assert printed[2][3:] == ["0", "Count", "0 (no samples)"]


def test_a_split_answer_gives_one_row_per_status_class() -> None:
    answer = _answer(
        _metric(
            "RequestsPerMinute",
            ("2xx", [{"timeStamp": "t", "total": 9.0}]),
            ("4xx", [{"timeStamp": "t", "total": 1.0}]),
        )
    )
    rows = monitor_metrics.table_rows(monitor_metrics.summarise("endpoint e", answer))
    assert [(row[1], row[3]) for row in rows] == [("RequestsPerMinute [2xx]", "9"), ("RequestsPerMinute [4xx]", "1")]


def test_the_plot_is_a_png_of_requests_and_latency(tmp_path: Path) -> None:
    stamps = ["2026-01-01T00:00:00Z", "2026-01-01T00:01:00Z", "2026-01-01T00:02:00Z"]
    answer = _answer(
        _metric("RequestsPerMinute", ("", [{"timeStamp": s, "total": float(i)} for i, s in enumerate(stamps)])),
        _metric("RequestLatency_P50", ("", [{"timeStamp": s, "average": 5.0} for s in stamps])),
        _metric("RequestLatency_P99", ("", [{"timeStamp": s} for s in stamps])),  # no samples: plotted as 0
        interval="PT1M",
    )
    assert monitor_metrics.series(answer, "RequestsPerMinute", "Total")[2][1] == 2.0
    path = plot_traffic(answer, "e", tmp_path / "plots" / "e.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_the_sample_file_survives_a_restart_and_skips_a_torn_line(tmp_path: Path) -> None:
    path = tmp_path / "endpoint-metrics.jsonl"
    first = Recorder(path)
    now = datetime.now(UTC).timestamp()
    first.add(Sample(now, "e", "blue", 200, 12.5))
    first.add(Sample(now, "other", "", 401, 1.0))
    with path.open("a") as handle:
        handle.write('{"at": 1, "endpo')  # a write cut short by a crash
    again = Recorder(path)
    assert again.of("e", now - 1, now + 1) == [Sample(now, "e", "blue", 200, 12.5)]
    old = json.dumps({"at": now - 94 * 86400, "endpoint": "e", "deployment": "", "status": 200, "latency_ms": 1})
    path.write_text(old + "\n")
    assert Recorder(path).of("e", 0, now + 1) == []  # older than Azure Monitor's 93 days


def test_timespans_as_azure_monitor_reads_them() -> None:
    now = datetime(2026, 1, 1, 12, tzinfo=UTC)
    assert parse_timespan(None, now) == (now - timedelta(hours=1), now)
    assert parse_timespan("PT86400.0S", now) == (now - timedelta(days=1), now)
    assert parse_timespan("2026-01-01T10:00:00Z/PT1H", now)[1] == datetime(2026, 1, 1, 11, tzinfo=UTC)
    assert parse_timespan("2026-01-01T10:00:00Z/2026-01-01T10:30:00Z", now)[1].minute == 30
    with pytest.raises(ApiError, match="ends before it starts"):
        parse_timespan("2026-01-01T10:00:00Z/2026-01-01T09:00:00Z", now)
    with pytest.raises(ApiError, match="ISO 8601"):
        parse_timespan("yesterday", now)
