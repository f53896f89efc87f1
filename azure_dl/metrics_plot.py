"""`endpoint metrics --png FILE`: requests per interval and the P50/P99 latency of an endpoint, as a PNG.

matplotlib is imported here only (with the Agg backend: no display needed), so the CLI's --help never loads it.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from azure_dl.monitor_metrics import series


def plot_traffic(answer: Mapping[str, Any], title: str, path: Path) -> Path:
    """Write the plot of a metrics answer holding RequestsPerMinute and RequestLatency_P50/P99 to `path`."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    requests = series(answer, "RequestsPerMinute", "Total")
    figure, (top, bottom) = plt.subplots(2, 1, sharex=True, figsize=(9, 5.5))
    try:
        top.bar(
            [t for t, _ in requests], [v for _, v in requests], width=0.0006 if len(requests) < 2 else _width(requests)
        )
        top.set_ylabel(f"requests per {answer.get('interval') or 'interval'}")
        top.set_title(title)
        for name in ("RequestLatency_P50", "RequestLatency_P99"):
            points = series(answer, name, "Average")
            bottom.plot([t for t, _ in points], [v for _, v in points], marker=".", label=name.removeprefix("Request"))
        bottom.set_ylabel("latency (ms)")
        bottom.legend(loc="upper left")
        figure.autofmt_xdate()
        path.parent.mkdir(parents=True, exist_ok=True)
        figure.savefig(path, dpi=100)
    finally:
        plt.close(figure)
    return path


def _width(points: list[tuple[Any, float]]) -> float:
    # Bars as wide as 80% of the grain, in matplotlib's date units (days); a single point gets a minute's grain.
    step = (points[1][0] - points[0][0]).total_seconds() if len(points) > 1 else 60.0
    return 0.8 * step / 86400
